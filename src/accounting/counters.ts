/**
 * Accounting: the hot counters in Redis and the two atomic operations on them.
 * It decides nothing about queues; it answers "reserved", "already" or "does
 * not fit, because ..." as values. The typed wrappers here are the only code
 * that knows each script's key and argument order.
 */
import type { Redis } from 'ioredis';
import { Keys } from '../redis/keys.ts';
import { callScript } from '../redis/scripts.ts';
import type { Shortfall } from './reasons.ts';

export interface JobMeta {
  project: string;
  user: string;
  jobType?: string | undefined;
  gpuType?: string | undefined;
  /** GPUs the job runs on: the fallback actual is wall time x gpus. */
  gpus: number;
}

export type ReserveOutcome =
  | { kind: 'reserved'; amountGpuMs: number }
  | { kind: 'already'; amountGpuMs: number; state: 'reserved' | 'settled' }
  /**
   * Held (now, or before when `retried`): `shortfalls` says which scopes it
   * does not fit; `ahead` > 0 means it waits behind that many older held
   * jobs of its project (first in, first out), fit or not.
   */
  | { kind: 'held'; shortfalls: Shortfall[]; ahead: number; retried: boolean }
  | { kind: 'cancelled' }
  /** A scope has no limit and the policy for that is to reject. */
  | { kind: 'rejected'; scope: string };

/** What to do with a job when one of its scopes has no limit configured. */
export type NoLimitPolicy = 'hold' | 'reject';

export type ReleaseOutcome =
  | { kind: 'admitted'; amountGpuMs: number }
  | { kind: 'held'; shortfalls: Shortfall[]; ahead: number }
  | { kind: 'not-held'; state: string };

export interface ReserveRequest {
  jobId: string;
  /** Submission order: a held job's place in its project's line (see submissionOrder). */
  order?: number;
  amountGpuMs: number;
  scopes: string[];
  meta: JobMeta;
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
  ) {
    this.keys = new Keys(queuePrefix);
  }

  async reserve(jobId: string, amountGpuMs: number, scopes: string[], meta: JobMeta, now: number, noLimit: NoLimitPolicy = 'hold'): Promise<ReserveOutcome> {
    return (await this.reserveMany([{ jobId, amountGpuMs, scopes, meta }], now, noLimit))[0]!;
  }

  /**
   * Reserve a batch in one script call; each job is decided on its own, in
   * order, seeing the reservations of the jobs before it.
   */
  async reserveMany(reqs: ReserveRequest[], now: number, noLimit: NoLimitPolicy = 'hold'): Promise<ReserveOutcome[]> {
    if (reqs.length === 0) return [];
    for (const r of reqs) {
      assertAmount(r.amountGpuMs, 1);
      // Every job is counted somewhere, and once per scope (the script adds it per entry).
      if (r.scopes.length === 0 || new Set(r.scopes).size !== r.scopes.length) {
        throw new RangeError(`job ${r.jobId}: scopes must be non-empty and distinct, got [${r.scopes.join(', ')}]`);
      }
    }
    const k = this.keys;
    // Numbers travel as strings: Lua would format a number with 14 digits only.
    const batch = reqs.map((r) => [r.jobId, String(r.order ?? now), String(r.amountGpuMs), r.meta.project, JSON.stringify(r.meta), r.scopes]);
    const out = (await callScript(this.redis, 'reserve', [k.open, k.ledger, k.allHeld], [String(now), noLimit, k.prefix, JSON.stringify(batch)])) as (
      | number
      | string
    )[][];
    return out.map((r, i): ReserveOutcome => {
      const need = reqs[i]!.amountGpuMs;
      switch (r[0]) {
        case 1: return { kind: 'reserved', amountGpuMs: Number(r[1]) };
        case 2: return { kind: 'already', amountGpuMs: Number(r[1]), state: r[2] as 'reserved' | 'settled' };
        case 4: return { kind: 'held', shortfalls: parseShortfalls([r[0]!, ...r.slice(2)], need), ahead: Number(r[1]), retried: false };
        case 5: return { kind: 'cancelled' };
        case 7: return { kind: 'rejected', scope: String(r[1]) };
        default: return { kind: 'held', shortfalls: parseShortfalls(r, need), ahead: 0, retried: r[0] === 3 };
      }
    });
  }

  /**
   * Re-run admission for held jobs, oldest first ('fifo'), or admit them
   * regardless of budget ('override'). `note` goes to the ledger.
   */
  async release(jobIds: string[], mode: 'fifo' | 'override', note: string, now: number): Promise<ReleaseOutcome[]> {
    if (jobIds.length === 0) return [];
    const k = this.keys;
    const out = (await callScript(this.redis, 'release', [k.open, k.ledger, k.allHeld], [String(now), mode, note, k.prefix, ...jobIds])) as (
      | number
      | string
    )[][];
    return out.map((r): ReleaseOutcome => {
      if (r[0] === 1) return { kind: 'admitted', amountGpuMs: Number(r[1]) };
      if (r[0] === 4) return { kind: 'held', shortfalls: [], ahead: Number(r[1]) };
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

  async readScope(scope: string): Promise<ScopeCounters> {
    const [limit, used, reserved] = await this.redis.hmget(this.keys.scope(scope), 'limit', 'used', 'reserved');
    return {
      scope,
      limitGpuMs: limit === null ? null : Number(limit),
      usedGpuMs: Number(used ?? 0),
      reservedGpuMs: Number(reserved ?? 0),
    };
  }

  /** Set (or with null, remove) a scope's limit. A single HSET: atomic on its own. */
  async setLimit(scope: string, limitGpuMs: number | null): Promise<void> {
    if (limitGpuMs === null) {
      await this.redis.hdel(this.keys.scope(scope), 'limit');
      return;
    }
    assertAmount(limitGpuMs, 0);
    await this.redis.hset(this.keys.scope(scope), 'limit', String(limitGpuMs));
  }
}

/** Shortfalls from a script reply { code, n, (scope, code, limit, used, reserved) * n }. */
function parseShortfalls(r: (number | string)[], neededGpuMs: number): Shortfall[] {
  const out: Shortfall[] = [];
  for (let i = 0; i < Number(r[1]); i++) {
    const [scope, code, limit, used, reserved] = r.slice(2 + i * 5, 7 + i * 5);
    out.push({
      scope: String(scope),
      code: code === 1 ? 'no-limit' : 'over-limit',
      limitGpuMs: code === 1 ? null : Number(limit),
      usedGpuMs: Number(used),
      reservedGpuMs: Number(reserved),
      neededGpuMs,
    });
  }
  return out;
}

/**
 * A job's place in its project's held line. BullMQ's own job ids count up per
 * queue, so they are the exact submission order; a custom (non-numeric) id
 * falls back to its submission time in ms, which sorts after every numeric id.
 */
export function submissionOrder(jobId: string, timestampMs: number): number {
  return /^\d{1,15}$/.test(jobId) ? Number(jobId) : timestampMs;
}

function assertAmount(n: number, min: number): void {
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`amount must be an integer >= ${min} GPU-ms, got ${n}`);
}
