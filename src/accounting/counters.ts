/**
 * Accounting: the hot counters in Redis and the two atomic operations on them.
 * It decides nothing about queues; it answers "reserved", "already" or "does
 * not fit, because ..." as values. The typed wrappers here are the only code
 * that knows each script's key and argument order.
 */
import type { Redis } from 'ioredis';
import { Keys } from '../redis/keys.ts';
import { callScript } from '../redis/scripts.ts';
import { PERIOD_KINDS, periodAt, previousPeriod, type PeriodKind } from '../periods.ts';
import type { Shortfall } from './reasons.ts';
import { csv, decodeReserve, hasDuplicate, parseShortfalls, reserveBatch, type DryRunWarning, type JobMeta, type NoLimitPolicy, type ReserveOutcome, type ReserveReply, type ReserveRequest } from './reserve-wire.ts';
// The reserve script's types are part of Accounting's interface: importers keep finding them here.
export type { DryRunWarning, JobMeta, NoLimitPolicy, ReserveOutcome, ReserveRequest } from './reserve-wire.ts';
import { EVENT_VERSION, type EventData, type EventType } from '../events/types.ts';

export type ReleaseOutcome =
  | { kind: 'admitted'; amountGpuMs: number; scopes: string[] }
  | { kind: 'held'; shortfalls: Shortfall[]; ahead: number; line?: string }
  | { kind: 'not-held'; state: string };

/** How a budget or quota behaves at its limit: hold there, or admit past it with a warning. */
export type ScopePolicy = 'hard' | 'soft';
/** A scope's period; 'none' never resets. */
export type ScopePeriod = 'none' | PeriodKind;

/** What an admin set on a scope base (Redis copy of the Postgres row). */
export interface ScopeDefinition {
  limitGpuMs: number;
  policy: ScopePolicy;
  /** Soft only: percent past the limit still admitted; null = a soft limit never holds. */
  gracePercent: number | null;
  period: ScopePeriod;
  rollover: boolean;
  /** Most that rolls over into a new period; null = all of it. */
  rolloverCapGpuMs: number | null;
  /** When the budget was first set (a period before that has nothing to roll over). */
  setAt: number;
  /** Percents of the limit that raise THRESHOLD_CROSSED; null = 75, 90, 100. */
  thresholds?: number[] | null;
}

/** A scope as admission sees it now (see scope.lua). */
export interface ScopeState {
  base: string;
  /** Counter id: the base, or '<base>@<period label>'. */
  id: string;
  /** limit + carry + adjust; null when none is set. */
  limitGpuMs: number | null;
  /** Where admission stops: the limit (hard), limit + grace (soft), null (soft without grace, or no limit). */
  ceilingGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  carryGpuMs: number;
  adjustGpuMs: number;
  exemptUsedGpuMs: number;
  exemptReservedGpuMs: number;
}

export type SettleKind = 'settle' | 'release';

export type SettleOutcome =
  | { kind: 'settled'; reservedGpuMs: number; actualGpuMs: number }
  | { kind: 'already'; reservedGpuMs: number; actualGpuMs: number }
  | { kind: 'no-reservation' };

export interface ScopeCounters {
  scope: string;
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
}

export interface OpenReservation {
  jobId: string;
  state: 'held' | 'reserved' | 'settled' | 'cancelled';
  amountGpuMs: number;
  scopes: string[];
  admittedAt: number;
  meta: JobMeta;
}

export class Accounting {
  readonly keys: Keys;

  constructor(
    private readonly redis: Redis,
    queuePrefix: string,
    private readonly settledRetainSeconds: number,
    /** IANA zone of the calendar periods (days, weeks, months). */
    readonly timeZone = 'UTC',
  ) {
    // The key layout follows the connection: it cannot disagree with where the keys are.
    this.keys = new Keys(queuePrefix, redis.isCluster);
  }

  /**
   * The periods argument of the scripts: for each kind, the current and
   * previous label at `now`. Kept until the next boundary (or a clock set
   * back): the calendar math costs tens of microseconds, a batch needs it once.
   */
  periodsArg(now: number): string {
    const c = this.periodsCache;
    if (c && now >= c.from && now < c.until) return c.json;
    const out: Record<string, { label: string; prev: string; prevStart: number }> = {};
    let from = -Infinity;
    let until = Infinity;
    for (const kind of PERIOD_KINDS) {
      const p = periodAt(kind, now, this.timeZone);
      const prev = previousPeriod(p, this.timeZone);
      out[kind] = { label: p.label, prev: prev.label, prevStart: prev.start };
      from = Math.max(from, p.start);
      until = Math.min(until, p.end);
    }
    this.periodsCache = { from, until, json: JSON.stringify(out) };
    return this.periodsCache.json;
  }

  private periodsCache: { from: number; until: number; json: string } | null = null;

  async reserve(jobId: string, amountGpuMs: number, scopes: string[], meta: JobMeta, now: number, noLimit: NoLimitPolicy = 'hold'): Promise<ReserveOutcome> {
    return (await this.reserveMany([{ jobId, amountGpuMs, scopes, meta }], now, noLimit))[0]!;
  }

  /**
   * Reserve a batch in one script call; each job is decided on its own, in
   * order, seeing the reservations of the jobs before it.
   */
  async reserveMany(reqs: ReserveRequest[], now: number, noLimit: NoLimitPolicy = 'hold'): Promise<ReserveOutcome[]> {
    return (await this.decide(reqs, now, noLimit, false)).outcomes;
  }

  /**
   * Preflight: decide a batch exactly as reserveMany would, now, and write
   * nothing. `warnings` are the threshold and exhaustion events it would raise.
   */
  async dryRun(reqs: ReserveRequest[], now: number, noLimit: NoLimitPolicy = 'hold'): Promise<{ outcomes: ReserveOutcome[]; warnings: DryRunWarning[] }> {
    return this.decide(reqs, now, noLimit, true);
  }

  private async decide(reqs: ReserveRequest[], now: number, noLimit: NoLimitPolicy, dry: boolean): Promise<{ outcomes: ReserveOutcome[]; warnings: DryRunWarning[] }> {
    if (reqs.length === 0) return { outcomes: [], warnings: [] };
    for (const r of reqs) {
      assertAmount(r.amountGpuMs, 1);
      // Every job is counted somewhere, and once per scope (the script adds it per entry).
      if (r.scopes.length === 0 || hasDuplicate(r.scopes)) {
        throw new RangeError(`job ${r.jobId}: scopes must be non-empty and distinct, got [${r.scopes.join(', ')}]`);
      }
    }
    const k = this.keys;
    const { batch, sigs, jobSig } = reserveBatch(reqs, now);
    const out = (await callScript(this.redis, 'reserve', [k.open, k.ledger, k.allHeld, k.exemptTypes], [
      String(now), noLimit, k.prefix, this.periodsArg(now), batch, dry ? '1' : '0',
    ])) as ReserveReply;
    return decodeReserve(out, reqs, sigs, jobSig);
  }

  /**
   * Re-run admission for held jobs, oldest first ('fifo'), or admit them
   * regardless of budget ('override'). `note` goes to the ledger.
   */
  async release(jobIds: string[], mode: 'fifo' | 'override', note: string, now: number): Promise<ReleaseOutcome[]> {
    if (jobIds.length === 0) return [];
    const k = this.keys;
    const out = (await callScript(this.redis, 'release', [k.open, k.ledger, k.allHeld], [
      String(now), mode, note, k.prefix, this.periodsArg(now), ...jobIds,
    ])) as (number | string)[][];
    return out.map((r): ReleaseOutcome => {
      if (r[0] === 1) return { kind: 'admitted', amountGpuMs: Number(r[1]), scopes: csv(r[2]) };
      if (r[0] === 4) return { kind: 'held', shortfalls: [], ahead: Number(r[1]), line: String(r[2]) };
      if (r[0] === -1) return { kind: 'not-held', state: String(r[1]) };
      return { kind: 'held', shortfalls: parseShortfalls([r[0]!, ...r.slice(2)], Number(r[1])), ahead: 0 };
    });
  }

  /** Cancel a held job; it is remembered as cancelled for SETTLED_RETAIN_SECONDS. */
  async cancel(jobId: string): Promise<{ kind: 'cancelled' } | { kind: 'not-held'; state: string }> {
    const k = this.keys;
    const r = (await callScript(this.redis, 'cancel', [k.allHeld], [k.prefix, jobId, String(this.settledRetainSeconds)])) as (number | string)[];
    return r[0] === 1 ? { kind: 'cancelled' } : { kind: 'not-held', state: String(r[1]) };
  }

  /** How many jobs each project has held now. */
  async heldCounts(): Promise<Record<string, number>> {
    const h = await this.redis.hgetall(this.keys.heldCount);
    return Object.fromEntries(Object.entries(h).map(([p, n]) => [p, Number(n)]));
  }

  /** Held job ids, oldest first: all of them, or one project's. */
  async heldIds(project?: string): Promise<string[]> {
    return this.redis.zrange(project ? this.keys.held(project) : this.keys.allHeld, '0', '-1');
  }

  async settle(
    jobId: string,
    scopes: string[],
    actualGpuMs: number,
    kind: SettleKind,
    now: number,
    note = '',
  ): Promise<SettleOutcome> {
    assertAmount(actualGpuMs, 0);
    const k = this.keys;
    const r = (await callScript(
      this.redis,
      'settle',
      [k.reservation(jobId), k.open, k.ledger, ...scopes.map((s) => k.scope(s))],
      [jobId, String(actualGpuMs), String(now), kind, String(this.settledRetainSeconds), note, ...scopes],
    )) as (number | string)[];
    if (r[0] === 1) return { kind: 'settled', reservedGpuMs: Number(r[1]), actualGpuMs: Number(r[2]) };
    if (r[0] === 2) return { kind: 'already', reservedGpuMs: Number(r[1]), actualGpuMs: Number(r[2]) };
    if (r[0] === -1) return { kind: 'no-reservation' };
    throw new Error(`settle(${jobId}): scopes ${scopes.join(',')} are not the reservation's (${String(r[1])})`);
  }

  /** Read the reservation record of one job, whatever its state. */
  async reservation(jobId: string): Promise<OpenReservation | null> {
    const h = await this.redis.hgetall(this.keys.reservation(jobId));
    if (!h.amount) return null;
    return {
      jobId,
      state: h.state as OpenReservation['state'],
      amountGpuMs: Number(h.amount),
      scopes: h.scopes ? h.scopes.split(',') : [],
      admittedAt: Number(h.admittedAt),
      meta: JSON.parse(h.meta ?? '{}') as JobMeta,
    };
  }

  async openCount(): Promise<number> {
    return this.redis.zcard(this.keys.open);
  }

  /** Which of these job ids still hold an open reservation. */
  async whichOpen(jobIds: string[]): Promise<Set<string>> {
    if (jobIds.length === 0) return new Set();
    const scores = await this.redis.zmscore(this.keys.open, ...jobIds);
    return new Set(jobIds.filter((_, i) => scores[i] !== null));
  }

  /** A scope's counters in its current period, as admission sees them (the short form). */
  async readScope(scope: string, now = Date.now()): Promise<ScopeCounters> {
    const [s] = await this.scopes([scope], now);
    return { scope, limitGpuMs: s!.limitGpuMs, usedGpuMs: s!.usedGpuMs, reservedGpuMs: s!.reservedGpuMs };
  }

  /**
   * Scopes as admission sees them at `now` (current period, effective limit);
   * a new period's rollover is computed and stored on first touch.
   */
  async scopes(bases: string[], now: number): Promise<ScopeState[]> {
    if (bases.length === 0) return [];
    const k = this.keys;
    const out = (await callScript(this.redis, 'scope', [k.open], [String(now), k.prefix, this.periodsArg(now), ...bases])) as string[][];
    return out.map(([id, limit, ceiling, used, reserved, carry, adjust, exemptUsed, exemptReserved], i) => ({
      base: bases[i]!,
      id: id!,
      limitGpuMs: limit === '' ? null : Number(limit),
      ceilingGpuMs: ceiling === '' ? null : Number(ceiling),
      usedGpuMs: Number(used),
      reservedGpuMs: Number(reserved),
      carryGpuMs: Number(carry),
      adjustGpuMs: Number(adjust),
      exemptUsedGpuMs: Number(exemptUsed),
      exemptReservedGpuMs: Number(exemptReserved),
    }));
  }

  /** Set (or with null, remove) a one-off hard limit on a scope: the short form of define(). */
  async setLimit(scope: string, limitGpuMs: number | null, now = Date.now()): Promise<void> {
    if (limitGpuMs === null) return this.define(scope, null);
    return this.define(scope, { limitGpuMs, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: now });
  }

  /**
   * Replace a scope's definition (null removes it: no limit). One MULTI, so
   * the reserve script never sees half a definition.
   */
  async define(scope: string, d: ScopeDefinition | null): Promise<void> {
    const key = this.keys.def(scope);
    if (d === null) {
      await this.redis.unlink(key);
      return;
    }
    assertAmount(d.limitGpuMs, 0);
    if (d.rolloverCapGpuMs !== null) assertAmount(d.rolloverCapGpuMs, 0);
    const fields: Record<string, string> = {
      limit: String(d.limitGpuMs),
      policy: d.policy,
      period: d.period,
      rollover: d.rollover ? '1' : '0',
      setAt: String(d.setAt),
    };
    if (d.gracePercent !== null) fields.grace = String(d.gracePercent);
    if (d.thresholds != null) fields.thresholds = d.thresholds.join(',');
    if (d.rolloverCapGpuMs !== null) fields.rolloverCap = String(d.rolloverCapGpuMs);
    await this.redis.multi().unlink(key).hset(key, fields).exec();
  }

  async definition(scope: string): Promise<ScopeDefinition | null> {
    const h = await this.redis.hgetall(this.keys.def(scope));
    if (h.limit === undefined) return null;
    return {
      limitGpuMs: Number(h.limit),
      policy: h.policy === 'soft' ? 'soft' : 'hard',
      gracePercent: h.grace === undefined ? null : Number(h.grace),
      period: (h.period ?? 'none') as ScopePeriod,
      rollover: h.rollover === '1',
      rolloverCapGpuMs: h.rolloverCap === undefined ? null : Number(h.rolloverCap),
      setAt: Number(h.setAt ?? 0),
      thresholds: h.thresholds === undefined ? null : h.thresholds.split(',').filter(Boolean).map(Number),
    };
  }

  /** Add (or with a negative delta, take) GPU-ms to the limit of one period's counters ('<scope>@<period label>', or a one-off scope). */
  async adjustCounter(counterId: string, deltaGpuMs: number): Promise<void> {
    if (!Number.isSafeInteger(deltaGpuMs)) throw new RangeError(`adjustment must be a whole number of GPU-ms, got ${deltaGpuMs}`);
    await this.redis.hincrby(this.keys.scope(counterId), 'adjust', deltaGpuMs);
  }

  /**
   * Append an event that a process (not a script) emits to the events stream.
   * `dedupeKey` makes a repeated emit (a retried job, two schedulers) store
   * and deliver once.
   */
  async emitEvent<T extends EventType>(type: T, data: EventData[T], dedupeKey?: string, at = Date.now()): Promise<void> {
    await this.redis.xadd(this.keys.events, 'MAXLEN', '~', '100000', '*', 'type', type, 'v', String(EVENT_VERSION), 'at', String(at),
      'data', JSON.stringify(data), ...(dedupeKey ? ['dedupe', dedupeKey] : []));
  }

  /** Exempt job types: admitted without counting, tracked in exemptUsed/exemptReserved. */
  async exemptTypes(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.exemptTypes)).sort();
  }

  async setExempt(jobType: string, exempt: boolean): Promise<void> {
    if (exempt) await this.redis.sadd(this.keys.exemptTypes, jobType);
    else await this.redis.srem(this.keys.exemptTypes, jobType);
  }
}

function assertAmount(n: number, min: number): void {
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`amount must be an integer >= ${min} GPU-ms, got ${n}`);
}
