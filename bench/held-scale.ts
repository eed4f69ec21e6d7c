/**
 * Part of `npm run bench`'s capacity part (bench/capacity.ts): what held
 * jobs and open reservations cost Redis, at the reserve script's level.
 *  - Bytes per open reservation and per held job: `used_memory` before and
 *    after BENCH_MEM_JOBS (20,000) reservations, and over the fill of the
 *    held lines; the ledger and event streams' share is shown apart (MEMORY
 *    USAGE), since the ledger writer and the stream cap trim them.
 *  - Flatness: admit (a project with room), hold (a project without, so the
 *    job joins a line of BENCH_HELD jobs) and release (the oldest held, after
 *    the limit is raised by just enough) cost per job, BENCH_HELD_CALLS (20)
 *    calls of 128 jobs each, at 0, BENCH_HELD/10 and BENCH_HELD (1,000,000)
 *    held, the three taken in turn. Target: Redis' time in the script per
 *    job (INFO commandstats; the least disturbed of the calls, as other load
 *    on the machine lengthens the rest) at the most held within 1.5 x that
 *    at none; the median call's wall time is shown beside it.
 * Figures: docs/benchmarks.md.
 */
import type { Redis } from 'ioredis';
import { Accounting } from '../src/accounting/counters.ts';
import type { ReserveRequest } from '../src/accounting/types.ts';
import { hoursToGpuMs } from '../src/units.ts';

const MEM_JOBS = Number(process.env.BENCH_MEM_JOBS ?? 20_000);
const HELD = Number(process.env.BENCH_HELD ?? 1_000_000);
const CALLS = Number(process.env.BENCH_HELD_CALLS ?? 20);
const BATCH = 128;
const H = hoursToGpuMs(1);
/** The flatness target: cost per job with the most held over the cost with none. */
export const FLAT_TARGET = 1.5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Per job, µs: the median call's wall time, and Redis' own time in the script in the least disturbed call (what the flatness target judges). */
export interface HeldLevel { held: number; admitUsPerJob: number; holdUsPerJob: number; releaseUsPerJob: number;
  admitRedisUsPerJob: number; holdRedisUsPerJob: number; releaseRedisUsPerJob: number }
export interface HeldScale {
  memJobs: number;
  openReservationBytes: number;
  openReservationStreamBytes: number;
  heldFilled: number;
  heldJobBytes: number;
  heldJobStreamBytes: number;
  levels: HeldLevel[];
  /** Redis script time per job at the most held over that at none, per operation. */
  flat: { admit: number; hold: number; release: number };
  flatTarget: number;
}

async function usedMemory(redis: Redis): Promise<number> {
  await sleep(200);
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function heldScale(redis: Redis, prefix: string): Promise<HeldScale> {
  const acc = new Accounting(redis, prefix, 3600);
  const k = acc.keys;
  const streams = async () => {
    let n = 0;
    for (const key of [k.ledger, k.events]) n += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
    return n;
  };
  // Every scope a job touches has a limit, as in an organization: the users' quotas never bind here.
  await acc.definitions.setLimit('project:open', Number.MAX_SAFE_INTEGER - 1);
  let fullLimit = 0;
  await acc.definitions.setLimit('project:full', fullLimit);
  for (let u = 0; u < 16; u++) {
    for (const [kind, period] of [['user-day', 'day'], ['user-week', 'week']] as const) {
      await acc.definitions.define(`${kind}:u${u}`, { limitGpuMs: Number.MAX_SAFE_INTEGER - 1, policy: 'hard', gracePercent: null, period, rollover: false, rolloverCapGpuMs: null, setAt: Date.now() });
    }
  }
  let id = 0;
  const job = (project: string): ReserveRequest => {
    const n = ++id;
    return { jobId: `h${n}`, order: n, amountGpuMs: H, scopes: [`project:${project}`, `user-day:u${n % 16}`, `user-week:u${n % 16}`], meta: { project, user: `u${n % 16}`, gpus: 1 } };
  };
  const batch = (project: string, n = BATCH) => Array.from({ length: n }, () => job(project));
  const expect = (outs: { kind: string }[], kind: string, what: string) => {
    const bad = outs.filter((o) => o.kind !== kind).length;
    if (bad > 0) throw new Error(`${what}: ${bad} of ${outs.length} not ${kind}`);
  };

  // Memory per open reservation.
  const [m0, s0] = [await usedMemory(redis), await streams()];
  for (let i = 0; i < MEM_JOBS; i += BATCH) expect(await acc.reserveMany(batch('open', Math.min(BATCH, MEM_JOBS - i)), Date.now()), 'reserved', 'open reservations');
  const [m1, s1] = [await usedMemory(redis), await streams()];

  /** Microseconds Redis has spent in scripts so far (INFO commandstats): the script's own time, whatever else runs on the machine. */
  const scriptUs = async () => {
    const info = await redis.info('commandstats');
    let us = 0;
    for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):.*?usec=(\d+)/gm)) us += Number(m[1]);
    return us;
  };
  /** One call of `op` per job: its wall time and Redis' time in scripts meanwhile (µs). */
  const once = async (op: () => Promise<number>) => {
    const r0 = await scriptUs();
    const wall = await op();
    return { wall: (wall * 1000) / BATCH, redis: ((await scriptUs()) - r0) / BATCH };
  };
  const since = (t0: number) => performance.now() - t0;
  const ops = {
    admit: async () => {
      const [reqs, t0] = [batch('open'), performance.now()];
      expect(await acc.reserveMany(reqs, Date.now()), 'reserved', 'admit');
      return since(t0);
    },
    hold: async () => {
      const [reqs, t0] = [batch('full'), performance.now()];
      expect(await acc.reserveMany(reqs, Date.now()), 'held', 'hold');
      return since(t0);
    },
    // Room for exactly one call's jobs, then the oldest held go (timed: the release call only).
    release: async () => {
      await acc.definitions.setLimit('project:full', (fullLimit += BATCH * H));
      const ids = await redis.zrange(k.allHeld, '0', String(BATCH - 1));
      const t0 = performance.now();
      expect(await acc.release(ids, 'fifo', 'bench', Date.now()), 'admitted', 'release');
      return since(t0);
    },
  };
  /** CALLS calls of each operation, taken in turn so a busy moment on the machine weighs on all three. */
  const level = async (held: number): Promise<HeldLevel> => {
    const got = { admit: [] as { wall: number; redis: number }[], hold: [] as { wall: number; redis: number }[], release: [] as { wall: number; redis: number }[] };
    for (let c = 0; c < CALLS; c++) for (const op of ['admit', 'hold', 'release'] as const) got[op].push(await once(ops[op]));
    const wall = (op: keyof typeof got) => median(got[op].map((x) => x.wall));
    // The least disturbed call: Redis' time in a script still grows when other processes take its core mid-call.
    const redisUs = (op: keyof typeof got) => Math.min(...got[op].map((x) => x.redis));
    return { held, admitUsPerJob: wall('admit'), holdUsPerJob: wall('hold'), releaseUsPerJob: wall('release'),
      admitRedisUsPerJob: redisUs('admit'), holdRedisUsPerJob: redisUs('hold'), releaseRedisUsPerJob: redisUs('release') };
  };

  const levels = [await level(0)];
  // Memory per held job: over the last fill, with nothing else written meanwhile.
  let [mem, filled, heldJobBytes, heldJobStreamBytes] = [{ before: 0, streams: 0 }, 0, 0, 0];
  for (const target of [Math.round(HELD / 10), HELD]) {
    const from = filled;
    mem = { before: await usedMemory(redis), streams: await streams() };
    while (filled < target) {
      // Four calls in flight: the fill is setup, not a measurement.
      const calls = Array.from({ length: Math.min(4, Math.ceil((target - filled) / 256)) }, (_, i) => batch('full', Math.max(0, Math.min(256, target - filled - i * 256)))).filter((c) => c.length > 0);
      filled += calls.reduce((n, c) => n + c.length, 0);
      for (const outs of await Promise.all(calls.map((c) => acc.reserveMany(c, Date.now())))) expect(outs, 'held', 'fill');
    }
    const [m, st] = [await usedMemory(redis), await streams()];
    heldJobBytes = (m - mem.before - (st - mem.streams)) / (filled - from);
    heldJobStreamBytes = (st - mem.streams) / (filled - from);
    levels.push(await level(target));
    process.stderr.write(`held ${target}: ${JSON.stringify(levels.at(-1))}\n`);
  }
  const [first, last] = [levels[0]!, levels.at(-1)!];
  return {
    memJobs: MEM_JOBS,
    openReservationBytes: (m1 - m0 - (s1 - s0)) / MEM_JOBS,
    openReservationStreamBytes: (s1 - s0) / MEM_JOBS,
    heldFilled: filled,
    heldJobBytes,
    heldJobStreamBytes,
    levels,
    flat: { admit: last.admitRedisUsPerJob / first.admitRedisUsPerJob, hold: last.holdRedisUsPerJob / first.holdRedisUsPerJob, release: last.releaseRedisUsPerJob / first.releaseRedisUsPerJob },
    flatTarget: FLAT_TARGET,
  };
}
