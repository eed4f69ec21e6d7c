/**
 * Accounting: the hot counters in Redis and the atomic operations on them
 * (reserve, release, cancel, settle), and reads of them. It decides nothing
 * about queues; it answers "reserved", "already" or "does not fit, because
 * ..." as values (types.ts). The methods here are the only code that knows
 * each script's key and argument order; reserve-wire.ts and replies.ts the
 * only code that knows their encodings.
 */
import type { Redis } from 'ioredis';
import { Keys } from '../redis/keys.ts';
import { callScript } from '../redis/scripts.ts';
import { pipelined } from '../redis/pipelined.ts';
import { PERIOD_KINDS, minuteOfWeek, periodAt, previousPeriod } from '../periods.ts';
import { EventLog } from '../events/emit.ts';
import { assertAmount } from './amounts.ts';
import { ScopeDefinitions } from './definitions.ts';
import { decodeCancel, decodeRelease, decodeScopes, decodeSettle } from './replies.ts';
import { decodeReserve, hasDuplicate, parseCharge, parsePrice, reserveBatch, type ReserveReply } from './reserve-wire.ts';
import { THROTTLED_KEEP_MS } from '../redis/wire.ts';
import type {
  DryRunWarning, JobMeta, NoLimitPolicy, UnpricedPolicy, OpenReservation, ReleaseOutcome, ReserveOutcome, ReserveRequest, ScopeCounters, ScopeState, SettleKind, SettleOutcome,
} from './types.ts';

export class Accounting {
  readonly keys: Keys;
  /** What admins set, as the scripts read it. */
  readonly definitions: ScopeDefinitions;
  /** Events raised by processes (the scripts raise theirs themselves). */
  readonly events: EventLog;

  constructor(
    protected readonly redis: Redis,
    queuePrefix: string,
    private readonly settledRetainSeconds: number,
    /** IANA zone of the calendar periods (days, weeks, months). */
    readonly timeZone = 'UTC',
    /** A job whose GPU type has no rate: priced at the default rate, or rejected (UNKNOWN_GPU_TYPE_POLICY). */
    readonly unpricedPolicy: UnpricedPolicy = 'default',
  ) {
    // The key layout follows the connection: it cannot disagree with where the keys are.
    this.keys = new Keys(queuePrefix, redis.isCluster);
    this.definitions = new ScopeDefinitions(redis, this.keys);
    this.events = new EventLog(redis, this.keys);
  }

  /**
   * The periods argument of the scripts: for each kind, the current and
   * previous label at `now`, and `wm`, the local minute of the week (GPU
   * caps' peak windows). Kept until the next minute (or a clock set back):
   * the calendar math costs tens of microseconds, a batch needs it once.
   */
  periodsArg(now: number): string {
    const minute = now - (now % 60_000);
    const m = this.minuteCache;
    if (m && m.minute === minute) return m.json;
    const days = this.daysArg(now);
    const json = `${days.slice(0, -1)},"wm":${minuteOfWeek(minute, this.timeZone)}}`;
    this.minuteCache = { minute, json };
    return json;
  }

  private minuteCache: { minute: number; json: string } | null = null;

  /** The periods part of periodsArg, kept until the next boundary. */
  private daysArg(now: number): string {
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
    const { batch, sigs, jobSig, jobGroup } = reserveBatch(reqs, now);
    const out = (await callScript(this.redis, 'reserve', [k.open, k.ledger, k.allHeld, k.factors], [
      String(now), noLimit, k.prefix, this.periodsArg(now), batch, dry ? '1' : '0', this.unpricedPolicy,
    ])) as ReserveReply;
    return decodeReserve(out, reqs, sigs, jobSig, jobGroup);
  }

  /**
   * Re-run admission for held jobs, oldest first ('fifo'), or admit them
   * regardless of budget ('override'); 'wake': the first jobs of the line
   * of scope base `line` (release.lua). `note` goes to the ledger.
   */
  async release(jobIds: string[], mode: 'fifo' | 'override' | 'wake', note: string, now: number, line = ''): Promise<ReleaseOutcome[]> {
    if (jobIds.length === 0) return [];
    const k = this.keys;
    const out = (await callScript(this.redis, 'release', [k.open, k.ledger, k.allHeld], [
      String(now), mode, note, k.prefix, this.periodsArg(now), String(this.settledRetainSeconds), this.unpricedPolicy, line, ...jobIds,
    ])) as (number | string)[][];
    return out.map(decodeRelease);
  }

  /** Cancel a held job; it is remembered as cancelled for SETTLED_RETAIN_SECONDS. `now`: the time of the wake signal for its lines. */
  async cancel(jobId: string, now = Date.now()): Promise<{ kind: 'cancelled' } | { kind: 'not-held'; state: string }> {
    const k = this.keys;
    return decodeCancel((await callScript(this.redis, 'cancel', [k.allHeld], [k.prefix, jobId, String(this.settledRetainSeconds), String(now)])) as (number | string)[]);
  }

  /** The GPU types with a rate (the default's not among them), for a rejection's reason. */
  async pricedGpuTypes(): Promise<string[]> {
    return (await this.redis.hkeys(this.keys.rates)).filter((t) => t !== '*').sort();
  }

  /**
   * Move counters' used amounts by corrections' charges (GPU-ms, milli-units,
   * micro-dollars per counter id), in one MULTI. Not a decision: nothing is
   * read first, and HINCRBY commutes with the scripts' own changes.
   */
  async addUsed(deltas: [counterId: string, delta: [number, number, number]][]): Promise<void> {
    if (deltas.length === 0) return;
    const m = this.redis.multi();
    for (const [id, [g, u, d]] of deltas) {
      const key = this.keys.scope(id);
      if (g !== 0) m.hincrby(key, 'used', g);
      if (u !== 0) m.hincrby(key, 'unitsUsed', u);
      if (d !== 0) m.hincrby(key, 'usdUsed', d);
      m.sadd(this.keys.counters, id);
    }
    await m.exec();
  }

  /** Counters' used amounts by counter id, the fields addUsed moves (GPU-ms, milli-units, micro-dollars; 0 when absent). */
  async usedOf(ids: string[]): Promise<Map<string, [number, number, number]>> {
    const got = (await pipelined(this.redis, ids, (p, id) => p.hmget(this.keys.scope(id), 'used', 'unitsUsed', 'usdUsed'))) as (string | null)[][];
    return new Map(ids.map((id, i) => [id, got[i]!.map((v) => Number(v ?? 0)) as [number, number, number]]));
  }

  /** The GPU types a project may use (null: any), as reserve reads them. */
  async allowedGpuTypes(project: string): Promise<string[] | null> {
    const csv = await this.redis.hget(this.keys.gpuAllowed, project);
    return csv === null ? null : csv.split(',').filter(Boolean);
  }

  /** How many jobs each project has held now. */
  async heldCounts(): Promise<Record<string, number>> {
    const h = await this.redis.hgetall(this.keys.heldCount);
    return Object.fromEntries(Object.entries(h).map(([p, n]) => [p, Number(n)]));
  }

  /** Lines signalled for the waker and not yet taken (workers/waker.ts). */
  async wakePending(): Promise<number> {
    return this.redis.zcard(this.keys.wake);
  }

  /** How many jobs wait on intake for their submission rate: due since `now` − THROTTLED_KEEP_MS (older ones never came back). */
  async throttledCount(now: number): Promise<number> {
    return this.redis.zcount(this.keys.throttled, String(now - THROTTLED_KEEP_MS), '+inf');
  }

  /** GPUs in flight counted against each cap (includes/caps.lua). */
  async inFlight(caps: string[]): Promise<number[]> {
    if (caps.length === 0) return [];
    return (await Promise.all(caps.map((c) => this.redis.hget(this.keys.scope(c), 'reserved')))).map((v) => Number(v ?? 0));
  }

  /**
   * Count the running jobs among `ids` that count against `cap` and are not
   * counted yet (caps-count.lua); how many it added. `gpus`: each job's.
   */
  async countCap(cap: string, jobs: { id: string; gpus: number }[]): Promise<number> {
    if (jobs.length === 0) return 0;
    return Number(await callScript(this.redis, 'caps-count', [this.keys.open], [this.keys.prefix, cap, ...jobs.flatMap((j) => [j.id, String(j.gpus)])]));
  }

  /** Job ids with an open reservation, oldest first, and each one's metadata (null: its record is gone). */
  async openJobs(): Promise<{ id: string; meta: JobMeta | null }[]> {
    const ids = await this.redis.zrange(this.keys.open, '0', '-1');
    const metas = await pipelined(this.redis, ids, (p, id) => p.hget(this.keys.reservation(id), 'meta'));
    return ids.map((id, i) => ({ id, meta: typeof metas[i] === 'string' ? (JSON.parse(metas[i] as string) as JobMeta) : null }));
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
      [k.prefix, jobId, String(actualGpuMs), String(now), kind, String(this.settledRetainSeconds), note, ...scopes],
    )) as (number | string)[];
    return decodeSettle(jobId, scopes, r);
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
      // Admitted since rates: what it was charged and at what price.
      ...(h.charge && h.rate && h.factor ? { charges: parseCharge(h.charge)!, price: parsePrice(`${h.rate}|${h.factor}`) } : {}),
      ...(h.exempt === '1' ? { exempt: true } : {}),
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
    return decodeScopes(bases, out);
  }

}
