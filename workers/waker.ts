/**
 * The waker: held jobs start by themselves when they fit. Whatever may make
 * room signals the scopes concerned in the wake set, in the same atomic step
 * as the change (src/redis/lua/includes/wake.lua): a settle under the
 * estimate or any job counted against a GPU cap ending, a job leaving a line
 * (released, overridden, cancelled), a limit or cap set, raised, removed or
 * adjusted; and each minute the waker signals the GPU caps whose peak window
 * just raised them. The waker takes the signals oldest first
 * and decides the first job of each line again (and while they start, the
 * next 8, 64, … up to 500), exactly as an admin's
 * release does (release.lua: first in, first out, all or nothing per job).
 * A job admitted this way leaves its lines, which signals them again, so a
 * line moves until its first job no longer fits; then nothing signals it
 * until room appears again.
 *
 * A limit whose release mode is 'manual' is left to an admin: its line is not
 * woken, and a job that waits in such a line stops the lines it is first in.
 *
 * Correctness never depends on it: release.lua decides, and is idempotent;
 * several wakers (one per reconciler) may run, each signal is taken by one.
 * A signal taken by a waker that then died is found again at start-up, when
 * every line is signalled once.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Clock } from '../src/clock.ts';
import type { Logger } from '../src/log.ts';
import type { Pool } from '../src/db/pool.ts';
import type { Metrics } from '../src/metrics.ts';
import { Keys } from '../src/redis/keys.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { scopeLabel } from '../src/accounting/scopes.ts';
import { masters } from '../queues/connection.ts';
import { parseCap } from '../src/accounting/definitions.ts';
import { capAt } from '../src/accounting/gpu-caps.ts';
import { minuteOfWeek } from '../src/periods.ts';
import { queueNames } from '../queues/names.ts';

/** Most jobs of one line decided per release call (a release storm's batch). */
const HEADS = 500;
/** Signals taken per round. */
const SIGNALS = 64;
/** How long one blocking wait for a signal lasts; close() cuts it short. */
const BLOCK_SECONDS = 5;
const RETRY_MS = [100, 500, 2_000, 5_000];

export interface WakerDeps {
  config: Config;
  connection: Redis;
  pool: Pool;
  log: Logger;
  clock: Clock;
  metrics?: Metrics;
}

export interface WakeReport {
  /** Scope bases taken from the wake set. */
  lines: number;
  admitted: number;
}

export function createWaker(deps: WakerDeps) {
  const { config, connection: redis, pool, clock } = deps;
  const log = deps.log.child({ role: 'waker' });
  const keys = new Keys(queueNames(config).prefix, config.redisCluster);
  const held = new HeldJobs(config, redis, pool, clock, log);
  // BZPOPMIN blocks its connection.
  const blocking = redis.duplicate();
  let closed = false;
  let loop: Promise<void> | null = null;

  /** Is this scope base's limit released by an admin only? */
  async function manual(base: string): Promise<boolean> {
    return (await redis.hget(keys.def(base), 'release')) === 'manual';
  }

  /**
   * Decide one line's first job again, and while every job decided starts,
   * the next ones, 8 times as many each time (up to HEADS). release.lua's
   * 'wake' mode stops at the first job that stays (the jobs behind it stay
   * too, first in, first out), and at one that left the line or also waits
   * in a manual line (an admin's) since it was read; the growing steps keep
   * what it reads ahead of that job small. How many were admitted.
   */
  async function wakeLine(base: string): Promise<number> {
    // Most signals find the line empty (every limit is signalled when it is set): one read then.
    if ((await redis.exists(keys.line(base))) === 0 || (await manual(base))) return 0;
    const note = `woken: room in ${scopeLabel(base)}`;
    let admitted = 0;
    for (let n = 1; ; n = Math.min(n * 8, HEADS)) {
      const take = await redis.zrange(keys.line(base), '0', String(n - 1));
      if (take.length === 0) break;
      const r = await held.wake(base, take, note);
      admitted += r.admitted.length;
      if (r.admitted.length < take.length || take.length < n) break;
    }
    if (admitted > 0) log.info({ line: base, admitted }, 'held jobs started: room appeared');
    return admitted;
  }

  /** Take up to SIGNALS signals (waiting up to `blockSeconds` for the first; 0: not at all) and wake their lines. */
  async function round(blockSeconds: number): Promise<WakeReport> {
    const bases: string[] = [];
    if (blockSeconds > 0) {
      const first = await blocking.bzpopmin(keys.wake, blockSeconds);
      if (!first) return { lines: 0, admitted: 0 };
      bases.push(first[1]);
    }
    const more = await redis.zpopmin(keys.wake, SIGNALS - bases.length);
    for (let i = 0; i < more.length; i += 2) bases.push(more[i]!);
    let admitted = 0;
    for (let i = 0; i < bases.length; i++) {
      try {
        admitted += await wakeLine(bases[i]!);
      } catch (err) {
        // Put back what this round took and did not finish, so no signal is lost to a Redis hiccup.
        const rest = bases.slice(i);
        await redis.zadd(keys.wake, 'NX', ...rest.flatMap((b) => [clock.now(), b])).catch(() => undefined);
        throw err;
      }
    }
    if (admitted > 0) deps.metrics?.woken.inc(admitted);
    return { lines: bases.length, admitted };
  }

  /** Wake until no signal is left; for tests and the start-up sweep. */
  async function drain(): Promise<WakeReport> {
    const total: WakeReport = { lines: 0, admitted: 0 };
    for (;;) {
      const r = await round(0);
      if (r.lines === 0) return total;
      total.lines += r.lines;
      total.admitted += r.admitted;
    }
  }

  /** Signal every line there is (start-up: a signal taken by a waker that died is not lost). */
  async function sweep(): Promise<number> {
    const prefix = keys.line('');
    let n = 0;
    for (const node of await masters(redis)) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        if (found.length > 0) {
          await redis.zadd(keys.wake, 'NX', ...found.flatMap((k) => [clock.now(), k.slice(prefix.length)]));
          n += found.length;
        }
        cursor = next;
      } while (cursor !== '0');
    }
    return n;
  }

  /**
   * A cap's peak window ending (or starting with a higher value) makes room
   * without any job ending: each minute, signal the caps whose value now is
   * above the one a minute ago.
   */
  const capWas = new Map<string, number>();
  async function peakTick(now = clock.now()): Promise<string[]> {
    const wm = minuteOfWeek(now, config.timeZone);
    const raised: string[] = [];
    for (const [scope, def] of Object.entries(await redis.hgetall(keys.caps))) {
      const cap = parseCap(def);
      if (!cap) continue;
      const max = capAt(cap, wm);
      const was = capWas.get(scope);
      if (was !== undefined && max > was) raised.push(scope);
      capWas.set(scope, max);
    }
    if (raised.length > 0) await redis.zadd(keys.wake, 'NX', ...raised.flatMap((b) => [now, b]));
    return raised;
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!closed) {
      try {
        await round(BLOCK_SECONDS);
        failures = 0;
      } catch (err) {
        if (closed) return;
        const wait = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!;
        log.error({ err, retryInMs: wait }, 'waking held jobs failed; trying again');
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  let peakTimer: NodeJS.Timeout | null = null;

  return {
    round,
    drain,
    sweep,
    peakTick,
    /** Signal every line once, then follow the signals. */
    async start(): Promise<void> {
      const lines = await sweep().catch((err: unknown) => {
        log.error({ err }, 'start-up sweep of held lines failed; lines wait for their next signal');
        return 0;
      });
      if (lines > 0) log.info({ lines }, 'held lines signalled at start-up');
      loop = run();
      await peakTick().catch(() => undefined);
      peakTimer = setInterval(() => void peakTick().catch((err: unknown) => log.error({ err }, 'peak window check failed')), 60_000).unref();
    },
    async close(): Promise<void> {
      closed = true;
      if (peakTimer) clearInterval(peakTimer);
      // Ends a BZPOPMIN in progress at once.
      blocking.disconnect();
      await loop;
      await held.close();
    },
  };
}

export type Waker = ReturnType<typeof createWaker>;
