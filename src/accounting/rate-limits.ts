/**
 * Submission rate limits: a token bucket per user and per project
 * (jobsPerMinute, burst), which reserve checks before any budget
 * (src/redis/lua/includes/rate.lua). Postgres holds the limits
 * (rate_limits); Redis a copy beside each bucket's state. Each change is one
 * admin change (src/audit/change.ts): the row and its audit row in one
 * transaction, the Redis copy written before COMMIT and undone if anything
 * fails. Start-up and the rebuild copy every limit over again (syncRateLimits);
 * a bucket's state is not kept in Postgres, so after Redis lost it a bucket
 * starts full.
 */
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { Actor } from '../db/audit.ts';
import { allRateLimits, deleteRateLimit, getRateLimit, rateLimitsPage, upsertRateLimit, type RateLimitRow } from '../db/rate-limits.ts';
import { copyEachLocked } from '../db/limits.ts';
import { adminChange } from '../audit/change.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Accounting } from './counters.ts';
import type { RateBucketState, ScopeDefinitions } from './definitions.ts';
import { rateScope, type RateKind } from './scopes.ts';
import type { RateLimit } from './types.ts';

/** Units of 1/jobsPerMinute ms one job takes: a minute (as includes/rate.lua counts). */
const UNIT = 60_000;
export const MAX_JOBS_PER_MINUTE = 1_000_000;
export const MAX_BURST = 100_000;

export interface RateLimitView extends RateLimit {
  scope: string;
  kind: RateKind;
  name: string;
  /** Jobs that would pass the bucket back to back now. */
  tokensNow: number;
  updatedAt: Date;
}

/** The advisory lock a rate limit's changes (and start-up's copy of it) serialize on. */
const lockKey = (scope: string) => `rate:${scope}`;

export class RateLimits {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly clock: Clock = systemClock,
    private readonly log?: Logger,
  ) {}

  async get(kind: RateKind, name: string): Promise<RateLimitView | null> {
    const scope = rateScope(kind, name);
    const [row, redis] = await Promise.all([getRateLimit(this.pool, scope), this.accounting.definitions.rate(scope)]);
    return row && this.view(row, redis?.bucket ?? null);
  }

  /**
   * Limits by scope (every project's, then every user's; byte order), a page
   * at a time after the scope `after`, optionally of one kind or whose names
   * hold `q`; `user` and `projects` narrow it to what the caller may see
   * (null: all). `nextCursor`: the page's last scope when more follow.
   */
  async page(f: { after: string | null; kind: RateKind | null; q: string | null; user: string | null; projects: readonly string[] | null; limit: number }): Promise<{ limits: RateLimitView[]; nextCursor: string | null }> {
    const rows = await rateLimitsPage(this.pool, { ...f, limit: f.limit + 1 });
    const onPage = rows.slice(0, f.limit);
    const buckets = await this.accounting.definitions.rateLimitsOf(onPage.map((r) => r.scope));
    return { limits: onPage.map((r, i) => this.view(r, buckets[i]?.bucket ?? null)), nextCursor: rows.length > f.limit ? onPage.at(-1)!.scope : null };
  }

  private view(row: RateLimitRow, bucket: RateBucketState | null): RateLimitView {
    const at = row.scope.indexOf(':');
    return { scope: row.scope, kind: row.scope.slice(0, at) as RateKind, name: row.scope.slice(at + 1), jobsPerMinute: row.jobsPerMinute, burst: row.burst, tokensNow: tokensAt(row, bucket, this.clock.now()), updatedAt: row.updatedAt };
  }

  /** Set a limit (audited with before and after). The bucket keeps its state: a changed limit hands out no fresh burst. */
  async set(kind: RateKind, name: string, limit: RateLimit, actor: Actor, reason: string | null): Promise<RateLimitView> {
    assertRateLimit(limit);
    const scope = rateScope(kind, name);
    await adminChange(this.pool, [lockKey(scope)], async (tx) => {
      const prior = await getRateLimit(tx.db, scope);
      const row = await upsertRateLimit(tx.db, scope, limit.jobsPerMinute, limit.burst);
      await tx.audit(actor, { action: 'rate-limit.set', target: scope, before: prior && auditable(prior), after: auditable(row), reason });
      tx.redis(this.step(scope, limit, prior));
    }, this.log);
    return (await this.get(kind, name))!;
  }

  /** Remove a limit; false when there was none (nothing audited). The bucket's state goes with it. */
  async remove(kind: RateKind, name: string, actor: Actor, reason: string | null): Promise<boolean> {
    const scope = rateScope(kind, name);
    return adminChange(this.pool, [lockKey(scope)], async (tx) => {
      const prior = await getRateLimit(tx.db, scope);
      await deleteRateLimit(tx.db, scope);
      // Redis is made to agree whatever Postgres said (it may have drifted).
      tx.redis(this.step(scope, null, prior));
      if (!prior) return false;
      await tx.audit(actor, { action: 'rate-limit.remove', target: scope, before: auditable(prior), after: null, reason });
      return true;
    }, this.log);
  }

  /** Write `limit` to Redis; undone to what Postgres held before (a removed bucket restarts full). */
  private step(scope: string, limit: RateLimit | null, prior: RateLimitRow | null) {
    const defs = this.accounting.definitions;
    return { apply: () => defs.defineRate(scope, limit), undo: () => defs.defineRate(scope, prior) };
  }
}

/**
 * Copy every rate limit from Postgres to Redis and drop the ones Postgres no
 * longer has (start-up, rebuild), each under its lock, so a change
 * committing meanwhile is never undone. Returns how many there are.
 */
export async function syncRateLimits(pool: Pool, defs: ScopeDefinitions): Promise<number> {
  const rows = await allRateLimits(pool);
  const scopes = new Set([...rows.map((r) => r.scope), ...(await defs.rateScopes())]);
  await copyEachLocked(pool, scopes, lockKey, async (db, scope) => {
    const row = await getRateLimit(db, scope);
    await defs.defineRate(scope, row);
    return row !== null;
  });
  return rows.length;
}

/** A limit the API and the table accept, or a RangeError saying why. */
export function assertRateLimit(l: RateLimit): void {
  if (!Number.isInteger(l.jobsPerMinute) || l.jobsPerMinute < 1 || l.jobsPerMinute > MAX_JOBS_PER_MINUTE) {
    throw new RangeError(`jobsPerMinute must be a whole number from 1 to ${MAX_JOBS_PER_MINUTE}, got ${l.jobsPerMinute}`);
  }
  if (!Number.isInteger(l.burst) || l.burst < 1 || l.burst > MAX_BURST) throw new RangeError(`burst must be a whole number from 1 to ${MAX_BURST}, got ${l.burst}`);
}

/**
 * How many jobs would pass a bucket back to back at `now`: burst when it
 * was never used or has refilled, 0 while its next slot is in the future.
 * Integer arithmetic as the script's (includes/rate.lua).
 */
export function tokensAt(limit: RateLimit, bucket: RateBucketState | null, now: number): number {
  if (!bucket) return limit.burst;
  const jpm = limit.jobsPerMinute;
  const rem = bucket.scale === jpm ? bucket.remainder : Math.ceil((bucket.remainder * jpm) / bucket.scale);
  const ahead = Math.max(0, (bucket.tatMs - now) * jpm + rem);
  const tolerance = (limit.burst - 1) * UNIT;
  return ahead > tolerance ? 0 : Math.min(limit.burst, Math.floor((tolerance - ahead) / UNIT) + 1);
}

const auditable = (r: RateLimitRow) => ({ jobsPerMinute: r.jobsPerMinute, burst: r.burst });
