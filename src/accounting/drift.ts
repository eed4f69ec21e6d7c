/**
 * Drift audit: do the Redis counters equal what the Postgres ledger says?
 * Works while admissions go on. One script reads every counter (the
 * scripts register each one they change) and the ledger stream's last id S
 * at one instant (snapshot.lua); once the ledger
 * writer has written every entry up to S, the ledger rows up to S (each row
 * keeps its stream id) must sum to exactly those counters:
 *   used     = Σ actual of settle/release rows
 *   reserved = Σ estimated of reserve rows − Σ estimated of settle/release rows
 * per counter id, counted and exempt apart. Any difference is drift: a bug,
 * a hand edit, or a Redis that lost data (then `gatekeeper rebuild`).
 * Ledger entries set aside in the quarantine (Postgres refused them) are
 * counted on the ledger's side from their raw fields, and named in the
 * report, so the audit stays exact while they wait for a replay. GPU caps,
 * which the ledger does not count, are checked against the open
 * reservations in Redis (caps-audit.lua).
 */
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import { ledgerTotals, type CounterTotals } from '../db/ledger.ts';
import { waitingLedgerEntries } from '../db/quarantine.ts';
import { inSnapshot } from '../db/transaction.ts';
import { parseEntry } from '../ledger/writer.ts';
import type { Accounting } from './counters.ts';
import { callScript } from '../redis/scripts.ts';
import { compareIds, fields } from '../streams/replies.ts';

export interface Drift {
  /**
   * Counter id ('<scope>@<period>' or the scope). For a GPU cap ('gpus-…')
   * the numbers are GPUs in flight, in `reservedGpuMs`: Redis's counter
   * against the sum over the open reservations that count against it
   * (caps-audit.lua), on the `ledger` side.
   */
  counter: string;
  redis: CounterTotals;
  ledger: CounterTotals;
}

export interface DriftReport {
  /** The ledger stream position both sides were compared at. */
  streamId: string;
  counters: number;
  drift: Drift[];
  /**
   * Ledger entries up to streamId waiting in the quarantine: counted on the
   * ledger's side from their fields (`counted`), or not when they cannot be
   * read (then they show as drift).
   */
  quarantined: { id: number; streamId: string; error: string; counted: boolean }[];
}

const ZERO: CounterTotals = { usedGpuMs: 0, reservedGpuMs: 0, exemptUsedGpuMs: 0, exemptReservedGpuMs: 0, unitsUsed: 0, unitsReserved: 0, usdUsed: 0, usdReserved: 0 };
const GROUP = 'ledger-writers';

/** Add a raw ledger entry's rows to `totals`, as the SQL sums them; false if the entry cannot be read. */
function addEntry(totals: Map<string, CounterTotals>, fields: string[]): boolean {
  let rows;
  try {
    rows = parseEntry(fields);
  } catch {
    return false;
  }
  if (rows.some((r) => !Number.isSafeInteger(Number(r.estimated)) || !Number.isSafeInteger(Number(r.actual ?? 0)))) return false;
  for (const r of rows) {
    const estimated = Number(r.estimated);
    const actual = Number(r.actual ?? 0);
    // As CHARGED_SQL reads a row: one from before rates was charged its GPU-ms only.
    const est = triple(r.charge) ?? [estimated, 0, 0];
    const got = triple(r.actualCharge) ?? [actual, 0, 0];
    const sign = r.kind === 'reserve' ? 1 : -1;
    const ended = r.kind !== 'reserve';
    for (const counter of r.scopes) {
      const t = { ...(totals.get(counter) ?? ZERO) };
      if (r.exempt) {
        t.exemptReservedGpuMs += sign * estimated;
        if (ended) t.exemptUsedGpuMs += actual;
      } else {
        t.reservedGpuMs += sign * est[0]!;
        t.unitsReserved += sign * est[1]!;
        t.usdReserved += sign * est[2]!;
        if (ended) {
          t.usedGpuMs += got[0]!;
          t.unitsUsed += got[1]!;
          t.usdUsed += got[2]!;
        }
      }
      totals.set(counter, t);
    }
  }
  return true;
}

const triple = (v: string | null): number[] | null => (v === null ? null : v.split('|').map(Number));

export class DriftAudit {
  constructor(
    private readonly redis: Redis,
    private readonly accounting: Accounting,
    private readonly pool: Pool,
  ) {}

  async run(opts: { waitForLedgerMs?: number } = {}): Promise<DriftReport> {
    const k = this.accounting.keys;
    const [streamId, streamExists, values] = (await callScript(this.redis, 'snapshot', [k.ledger, k.counters], [k.prefix])) as [string, number, string[][]];
    const redisSide = new Map<string, CounterTotals>();
    for (const [id, ...v] of values) {
      const [u, r, eu, er, uu, ur, du, dr] = v.map(Number) as number[];
      redisSide.set(id!, { usedGpuMs: u!, reservedGpuMs: r!, exemptUsedGpuMs: eu!, exemptReservedGpuMs: er!, unitsUsed: uu!, unitsReserved: ur!, usdUsed: du!, usdReserved: dr! });
    }
    // No stream: nothing is waiting to be written (or it was lost with Redis).
    if (streamExists === 1) await this.waitForLedger(streamId, opts.waitForLedgerMs ?? 30_000);
    const { ledgerSide, quarantined } = await this.ledgerSide(streamId);
    const drift: Drift[] = [];
    for (const counter of new Set([...redisSide.keys(), ...ledgerSide.keys()])) {
      const a = redisSide.get(counter) ?? ZERO;
      const b = ledgerSide.get(counter) ?? ZERO;
      if ((Object.keys(ZERO) as (keyof CounterTotals)[]).some((f) => a[f] !== b[f])) drift.push({ counter, redis: a, ledger: b });
    }
    drift.push(...(await this.capDrift()));
    drift.sort((x, y) => x.counter.localeCompare(y.counter));
    return { streamId, counters: new Set([...redisSide.keys(), ...ledgerSide.keys()]).size, drift, quarantined };
  }

  /** GPU caps whose counter differs from the open reservations counted against them. */
  private async capDrift(): Promise<Drift[]> {
    const k = this.accounting.keys;
    const out = (await callScript(this.redis, 'caps-audit', [k.open], [k.prefix])) as string[];
    const drift: Drift[] = [];
    for (let i = 0; i < out.length; i += 3) {
      if (out[i + 1] === out[i + 2]) continue;
      drift.push({ counter: out[i]!, redis: { ...ZERO, reservedGpuMs: Number(out[i + 1]) }, ledger: { ...ZERO, reservedGpuMs: Number(out[i + 2]) } });
    }
    return drift;
  }

  /**
   * The ledger rows and the quarantined ledger entries up to `upTo`, read in
   * one snapshot (a replay moves an entry from one to the other in one
   * transaction, so it is counted exactly once whenever the audit runs).
   */
  private async ledgerSide(upTo: string): Promise<{ ledgerSide: Map<string, CounterTotals>; quarantined: DriftReport['quarantined'] }> {
    const { ledgerSide, waiting } = await inSnapshot(this.pool, async (client) => ({
      ledgerSide: await ledgerTotals(client, upTo),
      waiting: (await waitingLedgerEntries(client)).filter((q) => compareIds(q.streamId, upTo) <= 0),
    }));
    const quarantined = waiting.map((q) => ({ id: q.id, streamId: q.streamId, error: q.error, counted: addEntry(ledgerSide, q.fields) }));
    return { ledgerSide, quarantined };
  }

  /** Until the ledger writers have written (and acknowledged) every entry up to `id`. */
  private async waitForLedger(id: string, timeoutMs: number): Promise<void> {
    if (id === '0-0') return;
    const key = this.accounting.keys.ledger;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const groups = (await this.redis.xinfo('GROUPS', key).catch(() => [])) as unknown[];
      const group = groups.map(fields).find((g) => g.name === GROUP);
      const delivered = group ? String(group['last-delivered-id']) : '0-0';
      const pending = group ? ((await this.redis.xpending(key, GROUP, '-', id, 1)) as unknown[]) : [];
      if (group && compareIds(delivered, id) >= 0 && pending.length === 0) return;
      if (Date.now() > deadline) throw new Error(`the ledger writer has not reached stream entry ${id} within ${timeoutMs} ms (is a reconciler running?)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
