/**
 * Drains the ledger stream (written by the reserve/settle scripts in the same
 * atomic step as the counters) into the Postgres ledger table.
 *
 * Exactly once: entries are read through a consumer group, inserted with
 * ON CONFLICT DO NOTHING against the per-job unique indexes, and only then
 * acknowledged and deleted. A writer killed between insert and XACK re-reads
 * the entry (its own pending list on restart, or another writer claims it
 * after `claimIdleMs`) and the insert is a no-op. Postgres down: nothing is
 * acknowledged, the stream keeps the entries, and the loop retries.
 * An entry Postgres refuses on its own merits is quarantined, and the rest
 * are written (src/streams/dead-letter.ts).
 */
import type { Redis } from 'ioredis';
import type { Pool, Queryable } from '../db/pool.ts';
import { insertLedgerRows, type LedgerRow } from '../db/ledger.ts';
import type { Logger } from '../log.ts';
import { StreamConsumer, type StreamConsumerOptions, type StreamEntry } from '../streams/consumer.ts';
import { deadLetter, type Quarantined } from '../streams/dead-letter.ts';
import { EntryError } from '../streams/poison.ts';
import { printable } from '../text.ts';

export interface LedgerWriterOptions extends Omit<StreamConsumerOptions, 'deleteAfterAck' | 'onPoison'> {
  /** Time zone of the usage rollup's days (GATEKEEPER_TIMEZONE). @default UTC */
  timeZone?: string;
  /** Told of each entry set aside (metrics, an event). */
  onQuarantined?: (q: Quarantined) => Promise<void> | void;
}

export class LedgerWriter {
  private readonly consumer: StreamConsumer;
  private readonly timeZone: string;

  constructor(
    redis: Redis,
    streamKey: string,
    private readonly pool: Pool,
    log: Logger,
    opts: LedgerWriterOptions = {},
  ) {
    const { timeZone, onQuarantined, ...consumerOpts } = opts;
    this.timeZone = timeZone ?? 'UTC';
    // The ledger stream is a queue into Postgres: entries are deleted once written.
    this.consumer = new StreamConsumer(redis, streamKey, 'ledger-writers', log, (e) => writeLedgerEntries(this.pool, e, this.timeZone), {
      ...consumerOpts,
      deleteAfterAck: true,
      onPoison: deadLetter(pool, 'ledger', log, onQuarantined),
    });
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  stop(): Promise<void> {
    return this.consumer.stop();
  }

  /** Write one batch; returns how many stream entries it took. */
  drainOnce(): Promise<number> {
    return this.consumer.drainOnce();
  }
}

/**
 * Write ledger entries in one statement, whatever their number, adding the
 * rows really inserted to the daily usage rollups (insertLedgerRows in
 * src/db/ledger.ts). An entry that cannot be parsed throws EntryError.
 * `repair` (an admin's replay) writes text Postgres cannot hold in the label
 * columns as visible escapes; the amounts and the meta JSON stay exact.
 */
export async function writeLedgerEntries(db: Queryable, entries: StreamEntry[], timeZone: string, opts: { repair?: boolean } = {}): Promise<void> {
  const rows = entries.flatMap((e) => {
    const [ms, seq] = e.id.split('-');
    let parsed: LedgerRow[];
    try {
      parsed = parseEntry(e.fields);
    } catch (err) {
      throw new EntryError(`ledger entry ${e.id} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    return parsed.map((r) => ({ ...(opts.repair ? repaired(r) : r), streamMs: ms!, streamSeq: seq! }));
  });
  await insertLedgerRows(db, rows, timeZone);
}

/**
 * A stream entry, in one of two forms:
 * - settle.lua, release.lua (and reserve.lua before the groups form): a
 *   header (kind, at, note?) followed by one group of fields per job, each
 *   group starting with `jobId`;
 * - reserve.lua: `kind reserve at <ms> groups <n>`, then n fields
 *   `g <counter ids>\t<meta JSON>\t<1 if exempt, else 0>\t<unitsMilli|usdMicro|factor>`,
 *   then one field per job, `<job id> <estimated>,<group number>,<submitted at ms or ''>,<gpuMs|milliUnits|microUsd>`.
 *   Entries written before an upgrade still drain: the first form, and the
 *   groups form before rates (`g <ids>\t<meta>[\t1]`, `<estimated>,<group>[,<submitted at>]`).
 */
export function parseEntry(flat: string[]): LedgerRow[] {
  if (flat[0] === 'kind' && flat[1] === 'reserve' && flat[4] === 'groups') return parseReserveEntry(flat);
  const header: Record<string, string> = {};
  const groups: Record<string, string>[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [k, v] = [flat[i]!, flat[i + 1]!];
    if (k === 'jobId') groups.push({});
    (groups.length > 0 ? groups[groups.length - 1]! : header)[k] = v;
  }
  return groups.map((g) => row(
    { kind: header.kind!, at: header.at, note: header.note, override: header.override === '1' },
    { jobId: g.jobId!, estimated: g.estimated!, actual: g.actual, admittedAt: g.admittedAt, scopes: g.scopes ?? '', meta: g.meta, exempt: g.exempt === '1', submittedMs: g.ts,
      price: g.price, charge: g.charge, actualCharge: g.actualCharge },
  ));
}

/** The reserve script's entry: a header, its groups, then one field per job (see parseEntry). */
function parseReserveEntry(flat: string[]): LedgerRow[] {
  const at = flat[3];
  const n = Number(flat[5]);
  const groups = Array.from({ length: n }, (_, i) => {
    const v = flat[7 + 2 * i]!;
    const tab = v.indexOf('\t');
    // The meta JSON escapes tabs, so the fields after it are the last tab-separated ones.
    const priced = /\t([01])\t(\d+\|\d+\|\d+)$/.exec(v);
    const legacyExempt = !priced && v.endsWith('\t1');
    const end = priced ? priced.index : legacyExempt ? v.length - 2 : v.length;
    const meta = v.slice(tab + 1, end);
    return { scopes: v.slice(0, tab), meta, parsed: parseMeta(meta), exempt: priced ? priced[1] === '1' : legacyExempt, price: priced?.[2] };
  });
  const rows: LedgerRow[] = [];
  for (let i = 6 + 2 * n; i + 1 < flat.length; i += 2) {
    const [estimated, group, submittedMs, charge] = flat[i + 1]!.split(',');
    const g = groups[Number(group) - 1]!;
    rows.push(row({ kind: 'reserve', at, override: false }, {
      jobId: flat[i]!, estimated: estimated!, scopes: g.scopes, meta: g.meta, exempt: g.exempt, submittedMs: submittedMs || undefined, price: g.price, charge,
    }, g.parsed));
  }
  return rows;
}

/** An 'a|b|c' of whole numbers, or null (absent: an entry from before rates); anything else is a bad entry. */
function triple(v: string | undefined): string | null {
  if (v === undefined || v === '') return null;
  if (!/^\d{1,16}\|\d{1,16}\|\d{1,16}$/.test(v)) throw new Error(`not a price or charge: ${JSON.stringify(v.slice(0, 60))}`);
  return v;
}

type ParsedMeta = { project?: string; user?: string; jobType?: string; gpuType?: string; run?: string };
const parseMeta = (json: string | undefined) => JSON.parse(json ?? '{}') as ParsedMeta;
const ts = (ms: string | undefined) => (ms ? new Date(Number(ms)).toISOString() : null);

/** One ledger row; `meta` is the job's metadata parsed (a reserve entry parses each group's once). */
/** A row whose label columns hold only text Postgres can store (an admin's repairing replay). */
function repaired(r: LedgerRow): LedgerRow {
  const p = (v: string | null) => (v === null ? null : printable(v));
  return { ...r, jobId: printable(r.jobId), project: printable(r.project), user: printable(r.user), jobType: p(r.jobType), gpuType: p(r.gpuType), run: p(r.run), note: p(r.note) };
}

function row(
  header: { kind: string; at?: string; note?: string; override: boolean },
  job: {
    jobId: string; estimated: string; actual?: string; admittedAt?: string; scopes: string; meta?: string; exempt: boolean; submittedMs?: string | undefined;
    price?: string | undefined; charge?: string | undefined; actualCharge?: string | undefined;
  },
  meta: ParsedMeta = parseMeta(job.meta),
): LedgerRow {
  return {
    kind: header.kind,
    jobId: job.jobId,
    project: meta.project ?? '',
    user: meta.user ?? '',
    jobType: meta.jobType ?? null,
    gpuType: meta.gpuType ?? null,
    scopes: job.scopes.split(',').filter(Boolean),
    estimated: job.estimated,
    actual: job.actual ?? null,
    admittedAt: ts(job.admittedAt ?? (header.kind === 'reserve' ? header.at : undefined)),
    at: ts(header.at),
    note: header.note || null,
    override: header.override,
    exempt: job.exempt,
    run: meta.run ?? null,
    meta: header.kind === 'reserve' ? (job.meta ?? null) : null,
    submittedMs: header.kind === 'reserve' ? (job.submittedMs ?? null) : null,
    price: triple(job.price),
    charge: triple(job.charge),
    actualCharge: header.kind === 'reserve' ? null : triple(job.actualCharge),
  };
}
