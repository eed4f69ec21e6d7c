/**
 * The Redis copy of what admins set: each scope's definition (limit, policy,
 * period, rollover, thresholds), per-period adjustments, the rate card and
 * the usage factors (0: exempt). Postgres holds the rows (src/accounting/budgets.ts writes both, in
 * one change with its audit row); the scripts read this copy.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';
import { pipelined } from '../redis/pipelined.ts';
import type { GpuCapDefinition } from '../db/gpu-caps.ts';
import { assertAmount } from './amounts.ts';
import type { RateLimit, ScopeDefinition, ScopePeriod } from './types.ts';

export class ScopeDefinitions {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Set (or with null, remove) a one-off hard limit on a scope: the short form of define(). */
  async setLimit(scope: string, limitGpuMs: number | null, now = Date.now()): Promise<void> {
    if (limitGpuMs === null) return this.define(scope, null, now);
    return this.define(scope, { limitGpuMs, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: now }, now);
  }

  /**
   * Replace a scope's definition (null removes it: no limit). One MULTI, so
   * the reserve script never sees half a definition. It signals the scope in
   * the wake set (`now`, the signal's time, orders the waker's work); null:
   * a copy of what Postgres holds (start-up, rebuild), which makes no room
   * and signals nothing: the waker signals every line when it starts, the
   * rebuild every line it restores.
   */
  async define(scope: string, d: ScopeDefinition | null, now: number | null = Date.now()): Promise<void> {
    const key = this.keys.def(scope);
    if (d === null) {
      // No limit now: its held jobs may fit (a quota or run cap without one admits everything).
      await this.signal(this.redis.multi().unlink(key), scope, now).exec();
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
    if (d.unit && d.unit !== 'gpuHours') fields.unit = d.unit;
    fields.c = compactDefinition(fields);
    // Not in 'c': only the waker reads it, never the reserve script.
    if (d.release === 'manual') fields.release = 'manual';
    // A changed limit may make room: the waker decides its line's head again.
    await this.signal(this.redis.multi().unlink(key).hset(key, fields), scope, now).exec();
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
      unit: h.unit === 'units' || h.unit === 'usd' ? h.unit : 'gpuHours',
      release: h.release === 'manual' ? 'manual' : 'auto',
    };
  }

  /** Add (or with a negative delta, take) GPU-ms to the limit of one period's counters ('<scope>@<period label>', or a one-off scope). */
  async adjustCounter(counterId: string, deltaGpuMs: number, now = Date.now()): Promise<void> {
    if (!Number.isSafeInteger(deltaGpuMs)) throw new RangeError(`adjustment must be a whole number of GPU-ms, got ${deltaGpuMs}`);
    const scope = counterId.split('@')[0]!;
    await this.redis.multi().hincrby(this.keys.scope(counterId), 'adjust', deltaGpuMs).zadd(this.keys.wake, 'NX', now, scope).exec();
  }

  /** Exempt job types (usage factor 0): admitted without counting, tracked in exemptUsed/exemptReserved. */
  async exemptTypes(): Promise<string[]> {
    return Object.entries(await this.factors()).filter(([, f]) => f === '0').map(([t]) => t).sort();
  }

  /** Every usage factor as the scripts read it: job type -> thousandths ('1000' counts fully, '0' exempt). */
  async factors(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.factors);
  }

  /** Set (or with null, remove: counts fully again) a job type's usage factor, in thousandths. */
  async setFactor(jobType: string, factorMilli: number | null): Promise<void> {
    if (factorMilli === null) await this.redis.hdel(this.keys.factors, jobType);
    else await this.redis.hset(this.keys.factors, jobType, String(factorMilli));
  }

  /** Every GPU type's rate history as the scripts read it: field ('*': the default) -> 'from:unitsMilli:usdMicro;...'. */
  async rates(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.rates);
  }

  /** Set (or with null, remove) one field of the rates hash: a history written by compactRates. */
  async setRates(field: string, compact: string | null): Promise<void> {
    if (compact === null) await this.redis.hdel(this.keys.rates, field);
    else await this.redis.hset(this.keys.rates, field, compact);
  }

  /** Drop the exempt-types set versions before usage factors kept (the factors hash holds them as 0 now). */
  async dropOldExemptSet(): Promise<void> {
    await this.redis.unlink(this.keys.exemptTypes);
  }

  /**
   * Set (or with null, remove) a submission rate limit ('user:<u>' or
   * 'project:<p>', lua/includes/rate.lua). Setting keeps the bucket's state,
   * so changing a limit does not hand out a fresh burst; removing drops it.
   */
  async defineRate(scope: string, limit: RateLimit | null): Promise<void> {
    const key = this.keys.rate(scope);
    // With its entry in the index, in one MULTI: reserve reads buckets only while the index has any.
    if (limit === null) await this.redis.multi().unlink(key).srem(this.keys.rateScopes, scope).exec();
    else await this.redis.multi().hset(key, { jpm: String(limit.jobsPerMinute), burst: String(limit.burst) }).sadd(this.keys.rateScopes, scope).exec();
  }

  /** A rate limit as the script reads it, and its bucket's state (null: never used). */
  async rate(scope: string): Promise<{ limit: RateLimit; bucket: RateBucketState | null } | null> {
    return (await this.rateLimitsOf([scope]))[0]!;
  }

  /** `rate` of each scope, in one pipeline. */
  async rateLimitsOf(scopes: string[]): Promise<({ limit: RateLimit; bucket: RateBucketState | null } | null)[]> {
    const got = (await pipelined(this.redis, scopes, (p, s) => p.hmget(this.keys.rate(s), 'jpm', 'burst', 't'))) as (string | null)[][];
    return got.map(([jpm, burst, t]) => {
      if (jpm === null || burst === null) return null;
      const m = /^(\d+):(\d+):(\d+)$/.exec(t ?? '');
      return { limit: { jobsPerMinute: Number(jpm), burst: Number(burst) }, bucket: m ? { tatMs: Number(m[1]), remainder: Number(m[2]), scale: Number(m[3]) } : null };
    });
  }

  /** Every scope with a rate limit in Redis. */
  async rateScopes(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.rateScopes)).sort();
  }

  /**
   * Set (or with null, remove) a GPU cap's Redis copy: its field of the
   * 'caps' hash (includes/caps.lua), and 'release' in its definition hash
   * when manual (the waker reads it). One MULTI, which also signals the
   * cap's line (a raised or removed cap may make room), unless `now` is null
   * (a copy, as define's).
   */
  async defineCap(scope: string, d: GpuCapDefinition | null, now: number | null = Date.now()): Promise<void> {
    const m = this.redis.multi().unlink(this.keys.def(scope));
    if (d === null) m.hdel(this.keys.caps, scope);
    else {
      m.hset(this.keys.caps, scope, compactCap(d));
      if (d.release === 'manual') m.hset(this.keys.def(scope), 'release', 'manual');
    }
    await this.signal(m, scope, now).exec();
  }

  /** Set (or with null, remove: any type) the GPU types a project may use, as reserve reads them. */
  async defineAllowedGpuTypes(project: string, allowed: string[] | null): Promise<void> {
    if (allowed === null) await this.redis.hdel(this.keys.gpuAllowed, project);
    else await this.redis.hset(this.keys.gpuAllowed, project, allowed.join(','));
  }

  /** Every project with a list in Redis. */
  async allowedGpuTypesProjects(): Promise<string[]> {
    return this.redis.hkeys(this.keys.gpuAllowed);
  }

  /** Add to `m` the wake signal of `scope` at `now` (none for null). */
  private signal(m: ReturnType<Redis['multi']>, scope: string, now: number | null): ReturnType<Redis['multi']> {
    return now === null ? m : m.zadd(this.keys.wake, 'NX', now, scope);
  }

  /** Every GPU cap in Redis, as the scripts read them: scope -> 'max|peakMax|days|from|to'. */
  async capDefs(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.caps);
  }

  /** Make a job type exempt (factor 0), or count it fully again if it was exempt (another factor stays). */
  async setExempt(jobType: string, exempt: boolean): Promise<void> {
    if (exempt) return this.setFactor(jobType, 0);
    if ((await this.redis.hget(this.keys.factors, jobType)) === '0') await this.setFactor(jobType, null);
  }
}

/** A bucket's state as reserve left it: the theoretical arrival time of its next job, in ms and 1/jpm ms. */
export interface RateBucketState {
  tatMs: number;
  remainder: number;
  /** The jobsPerMinute the remainder is counted in. */
  scale: number;
}

/**
 * The definition's fields in one ('c', see lua/includes/scopes.lua): the
 * reserve script reads one field instead of eight (docs/benchmarks.md).
 */
export function compactDefinition(f: Record<string, string>): string {
  const unit = f.unit === 'units' ? 'u' : f.unit === 'usd' ? 'd' : 'h';
  return [f.limit, f.policy, f.grace ?? '', f.period, f.rollover, f.rolloverCap ?? '', f.setAt, unit, f.thresholds ?? '*'].join('|');
}

/** A GPU cap as one field of the 'caps' hash: max|peakMax|days|from|to (includes/caps.lua). */
export function compactCap(d: GpuCapDefinition): string {
  const p = d.peak;
  return p ? `${d.maxGpus}|${p.maxGpus}|${p.days}|${p.fromMinute}|${p.toMinute}` : `${d.maxGpus}||||`;
}

/** compactCap's inverse (null for a field that does not parse). */
export function parseCap(c: string): Omit<GpuCapDefinition, 'release'> | null {
  const m = /^(\d+)\|(\d*)\|(\d*)\|(\d*)\|(\d*)$/.exec(c);
  if (!m) return null;
  const peak = m[2] === '' ? null : { maxGpus: Number(m[2]), days: Number(m[3]), fromMinute: Number(m[4]), toMinute: Number(m[5]) };
  return { maxGpus: Number(m[1]), peak };
}
