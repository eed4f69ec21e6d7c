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
 * Write ledger entries in one statement, whatever their number: the rows go
 * as array parameters through unnest, so a backlog of many batched reserve
 * entries never meets Postgres' 65,535-parameter limit. The same statement
 * adds the rows it really inserted (not those a re-read brings again) to the
 * daily usage rollups (usage_daily, usage_by_day), so they count each job
 * once. An entry that cannot be parsed throws EntryError. `repair` (an
 * admin's replay) writes text Postgres cannot hold in the label columns as
 * visible escapes; the amounts and the meta JSON stay exact.
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
  const col = <K extends keyof LedgerRow>(k: K) => rows.map((r) => r[k]);
  await db.query(
    `WITH ins AS (
       INSERT INTO ledger (kind, job_id, project, user_name, job_type, gpu_type, scopes,
                           estimated_gpu_ms, actual_gpu_ms, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms)
       SELECT kind, job_id, project, user_name, job_type, gpu_type, string_to_array(scopes, ','),
              estimated, actual, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                   $8::bigint[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::boolean[], $14::boolean[], $15::text[],
                   $17::bigint[], $18::bigint[], $19::text[], $20::bigint[])
            AS r(kind, job_id, project, user_name, job_type, gpu_type, scopes,
                 estimated, actual, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms)
       ON CONFLICT DO NOTHING
       RETURNING kind, project, user_name, job_type, gpu_type, exempt, estimated_gpu_ms, actual_gpu_ms, at),
     ended AS (SELECT (at AT TIME ZONE $16::text)::date AS day, * FROM ins WHERE kind <> 'reserve'),
     by_day AS (
       INSERT INTO usage_by_day AS b (kind, name, day, exempt, jobs, actual_gpu_ms)
       SELECT 'project', project, day, exempt, count(*), sum(coalesce(actual_gpu_ms, 0)) FROM ended GROUP BY 2, 3, 4
       UNION ALL
       SELECT 'user', user_name, day, exempt, count(*), sum(coalesce(actual_gpu_ms, 0)) FROM ended GROUP BY 2, 3, 4
       ON CONFLICT (kind, name, day, exempt) DO UPDATE SET jobs = b.jobs + EXCLUDED.jobs, actual_gpu_ms = b.actual_gpu_ms + EXCLUDED.actual_gpu_ms)
     INSERT INTO usage_daily AS u (day, project, user_name, job_type, gpu_type, exempt, jobs, estimated_gpu_ms, actual_gpu_ms)
     SELECT day, project, user_name, coalesce(job_type, ''), coalesce(gpu_type, ''), exempt,
            count(*), sum(estimated_gpu_ms), sum(coalesce(actual_gpu_ms, 0))
     FROM ended GROUP BY 1, 2, 3, 4, 5, 6
     ON CONFLICT (day, project, user_name, job_type, gpu_type, exempt) DO UPDATE
       SET jobs = u.jobs + EXCLUDED.jobs, estimated_gpu_ms = u.estimated_gpu_ms + EXCLUDED.estimated_gpu_ms,
           actual_gpu_ms = u.actual_gpu_ms + EXCLUDED.actual_gpu_ms`,
    [
      col('kind'), col('jobId'), col('project'), col('user'), col('jobType'), col('gpuType'),
      rows.map((r) => r.scopes.join(',')),
      col('estimated'), col('actual'), col('admittedAt'), col('at'), col('note'), col('override'), col('exempt'), col('run'),
      timeZone,
      rows.map((r) => r.streamMs), rows.map((r) => r.streamSeq), col('meta'), col('submittedMs'),
    ],
  );
}

export interface LedgerRow {
  kind: string;
  jobId: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  scopes: string[];
  estimated: string;
  actual: string | null;
  admittedAt: string | null;
  at: string | null;
  note: string | null;
  override: boolean;
  /** An exempt job type: tracked, never counted against a limit. */
  exempt: boolean;
  run: string | null;
  /** Reserve rows: the job's meta JSON exactly as the script stored it (rebuild restores it byte for byte). */
  meta: string | null;
  /** Reserve rows: the intake job's submission time, epoch ms (with the id, the job's identity); null if not known. */
  submittedMs: string | null;
}

/**
 * A stream entry, in one of two forms:
 * - settle.lua, release.lua (and reserve.lua before the groups form): a
 *   header (kind, at, note?) followed by one group of fields per job, each
 *   group starting with `jobId`;
 * - reserve.lua: `kind reserve at <ms> groups <n>`, then n fields
 *   `g <counter ids>\t<meta JSON>[\t1 if exempt]`, then one field per job,
 *   `<job id> <estimated>,<group number>[,<submitted at ms>]`. Entries of the first form written
 *   before an upgrade still drain.
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
    { jobId: g.jobId!, estimated: g.estimated!, actual: g.actual, admittedAt: g.admittedAt, scopes: g.scopes ?? '', meta: g.meta, exempt: g.exempt === '1', submittedMs: g.ts },
  ));
}

/** The reserve script's entry: a header, its groups, then one field per job (see parseEntry). */
function parseReserveEntry(flat: string[]): LedgerRow[] {
  const at = flat[3];
  const n = Number(flat[5]);
  const groups = Array.from({ length: n }, (_, i) => {
    const v = flat[7 + 2 * i]!;
    const tab = v.indexOf('\t');
    const rest = v.slice(tab + 1);
    const exempt = rest.endsWith('\t1');
    const meta = exempt ? rest.slice(0, -2) : rest;
    return { scopes: v.slice(0, tab), meta, parsed: parseMeta(meta), exempt };
  });
  const rows: LedgerRow[] = [];
  for (let i = 6 + 2 * n; i + 1 < flat.length; i += 2) {
    const [estimated, group, submittedMs] = flat[i + 1]!.split(',');
    const g = groups[Number(group) - 1]!;
    rows.push(row({ kind: 'reserve', at, override: false }, { jobId: flat[i]!, estimated: estimated!, scopes: g.scopes, meta: g.meta, exempt: g.exempt, submittedMs }, g.parsed));
  }
  return rows;
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
  job: { jobId: string; estimated: string; actual?: string; admittedAt?: string; scopes: string; meta?: string; exempt: boolean; submittedMs?: string | undefined },
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
  };
}
