/**
 * `npm run bench` (fifth part): capacity, each row against a baseline in the
 * same run on the same Redis.
 *  c. the reserve script against a trivial EVALSHA (`return 1`) on the same
 *     connection, 64 calls in flight: one job per call, and 128 per call;
 *  d. a burst of BENCH_BURST (100,000) preloaded one-hour jobs with a budget
 *     for half: time to drain through the gatekeeper, against the relay on
 *     the same number of jobs, and Redis memory per held job (the held job's
 *     BullMQ entry, its reservation record and its place in the lines);
 *  e. a release storm: the budget raised over the BENCH_BURST/2 held jobs,
 *     released by one admin call — time until all are on gpu-exec, against
 *     the relay moving as many jobs from intake to gpu-exec;
 *  g. Redis bytes per open reservation and per held job, and admit, hold and
 *     release cost per job with 0 to 1,000,000 held (bench/held-scale.ts).
 * Env: BENCH_BURST (100000), BENCH_HELD (1000000), BENCH_HELD_CALLS (20),
 * BENCH_MEM_JOBS (20000).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createRedis } from '../queues/connection.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createDatabase, startInfra, unlinkMatching } from '../test/support/infra.ts';
import { createRelay } from './relay.ts';
import { heldScale, type HeldScale } from './held-scale.ts';
import { save } from './results.ts';

const BURST = Number(process.env.BENCH_BURST ?? 100_000);
const H = hoursToGpuMs(1);
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Ctx { redisUrl: string; databaseUrl: string }

async function withPrefix<T>(ctx: Ctx, body: (p: { prefix: string; config: Config; admin: Redis; conns: Redis[] }) => Promise<T>): Promise<T> {
  const prefix = `bench-cap-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ ...process.env, REDIS_URL: ctx.redisUrl, QUEUE_PREFIX: prefix });
  const conns = [0, 1, 2].map(() => createRedis(ctx.redisUrl));
  try {
    return await body({ prefix, config, admin: conns[0]!, conns });
  } finally {
    await unlinkMatching(conns[0]!, `${prefix}:*`);
    await unlinkMatching(conns[0]!, `gk:{${prefix}}:*`);
    await Promise.all(conns.map((c) => c.quit()));
  }
}

/** c: calls per second of `call`, 64 in flight, for `seconds`. */
async function callsPerSecond(call: () => Promise<unknown>, seconds = 2): Promise<number> {
  let n = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (performance.now() < end) {
      await call();
      n++;
    }
  }));
  return n / seconds;
}

async function scriptVsTrivial(ctx: Ctx) {
  return withPrefix(ctx, async ({ prefix, admin }) => {
    const acc = new Accounting(admin, prefix, 3600);
    await acc.definitions.setLimit('project:cap', Number.MAX_SAFE_INTEGER - 1);
    const trivial = await callsPerSecond(() => admin.eval('return 1', 0));
    let id = 0;
    const job = () => ({ jobId: String(++id), order: id, amountGpuMs: 1, scopes: ['project:cap', `user-day:u${id % 16}`, `user-week:u${id % 16}`], meta: { project: 'cap', user: `u${id % 16}`, gpus: 1 } });
    const single = await callsPerSecond(() => acc.reserveMany([job()], Date.now()));
    const batch = await callsPerSecond(() => acc.reserveMany(Array.from({ length: 128 }, job), Date.now()));
    return { trivialCallsPerSec: trivial, reserveCallsPerSec: single, reserveJobsPerSecBatched: batch * 128 };
  });
}

async function preload(intake: Queue, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    await intake.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'b', data: { project: 'cap', user: 'u', estimatedGpuHours: 1 } })));
  }
}

async function waitPlaced(exec: Queue, held: Queue, n: number): Promise<void> {
  while ((await exec.count()) + (await held.count()) < n) await sleep(20);
}

async function relayDrain(ctx: Ctx, n: number): Promise<number> {
  return withPrefix(ctx, async ({ config, admin, conns }) => {
    const [intake, exec, held] = [config.queues.intake, config.queues.exec, config.queues.held].map((q) => new Queue(q, { connection: admin, prefix: config.queuePrefix }));
    await preload(intake!, n);
    const t0 = performance.now();
    const relay = createRelay({ config, workerConnection: conns[1]!, connection: conns[2]! });
    await waitPlaced(exec!, held!, n);
    const s = (performance.now() - t0) / 1000;
    await relay.close();
    await Promise.all([intake, exec, held].map((q) => q!.close()));
    return s;
  });
}

async function burstAndStorm(ctx: Ctx) {
  return withPrefix(ctx, async ({ prefix, config, admin, conns }) => {
    const pool = createPool(ctx.databaseUrl, 4);
    await migrate(pool);
    const acc = new Accounting(admin, prefix, config.settledRetainSeconds);
    const budgets = new Budgets(pool, acc);
    const [intake, exec, held] = [config.queues.intake, config.queues.exec, config.queues.held].map((q) => new Queue(q, { connection: admin, prefix }));
    try {
      await budgets.set('cap', (BURST / 2) * H);
      await preload(intake!, BURST);
      const memBefore = await usedMemory(admin);
      const t0 = performance.now();
      const gk = createGatekeeper({ config, workerConnection: conns[1]!, connection: conns[2]!, log, clock: systemClock });
      await waitPlaced(exec!, held!, BURST);
      const drainSeconds = (performance.now() - t0) / 1000;
      await gk.close();
      // Memory per held job: what holding added, beyond what admitting the other half added per job.
      const heldCount = await held!.count();
      const memAfter = await usedMemory(admin);
      // A held job's BullMQ side on gpu-held (its job hash), beside what the reserve script keeps (part g).
      const sample = await held!.getJobs(['prioritized'], 0, 99);
      let heldHashBytes = 0;
      for (const j of sample) heldHashBytes += Number(await admin.call('MEMORY', 'USAGE', `${prefix}:${config.queues.held}:${j.id}`, 'SAMPLES', '0'));
      heldHashBytes /= Math.max(1, sample.length);

      await budgets.set('cap', BURST * H);
      const ops = new HeldJobs(config, admin, pool, systemClock, log);
      const t1 = performance.now();
      const report = await ops.release({ project: 'cap' }, { name: 'bench', role: 'admin' });
      await ops.close();
      const stormSeconds = (performance.now() - t1) / 1000;
      if (report.admitted.length !== heldCount || (await exec!.count()) !== BURST) throw new Error(`release storm admitted ${report.admitted.length} of ${heldCount}`);
      return { drainSeconds, heldCount, memPerPlacedJobBytes: (memAfter - memBefore) / BURST, heldJobHashBytes: heldHashBytes, stormSeconds };
    } finally {
      await Promise.all([intake, exec, held].map((q) => q!.close()));
      await pool.end();
    }
  });
}

async function usedMemory(redis: Redis): Promise<number> {
  await sleep(200);
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
}

async function main(): Promise<void> {
  process.env.GK_TEST_NO_DOCKER ??= '1';
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-bench-cap-'));
  const infra = await startInfra();
  const db = await createDatabase(infra.databaseUrl, `gk_bench_cap_${Date.now()}`);
  const ctx = { redisUrl: infra.redisUrl, databaseUrl: db.url };
  try {
    const c = await scriptVsTrivial(ctx);
    const relayBurst = await relayDrain(ctx, BURST);
    const d = await burstAndStorm(ctx);
    const relayHalf = await relayDrain(ctx, d.heldCount);
    const g: HeldScale = await withPrefix(ctx, ({ prefix, admin }) => heldScale(admin, prefix));
    const [g0, gN] = [g.levels[0]!, g.levels.at(-1)!];
    const flatMet = Math.max(g.flat.admit, g.flat.hold, g.flat.release) <= g.flatTarget;
    const md = [
      `Capacity (${infra.how}; ${os.cpus().length} cores; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}):`,
      '',
      '| measure | gatekeeper | baseline | ratio |',
      '| --- | --- | --- | --- |',
      `| c. script calls/s, 1 job per call, 64 in flight vs \`EVAL return 1\` | ${c.reserveCallsPerSec.toFixed(0)} | ${c.trivialCallsPerSec.toFixed(0)} | ${(c.reserveCallsPerSec / c.trivialCallsPerSec).toFixed(2)} |`,
      `| c. script jobs/s, 128 jobs per call vs \`EVAL return 1\` calls/s | ${c.reserveJobsPerSecBatched.toFixed(0)} | ${c.trivialCallsPerSec.toFixed(0)} | ${(c.reserveJobsPerSecBatched / c.trivialCallsPerSec).toFixed(2)} |`,
      `| d. drain ${BURST.toLocaleString('en')} preloaded jobs (half held), s vs relay | ${d.drainSeconds.toFixed(1)} | ${relayBurst.toFixed(1)} | ${(relayBurst / d.drainSeconds).toFixed(2)} |`,
      `| d. Redis memory per placed job (bytes; admitted or held, intake entries kept 10k) | ${d.memPerPlacedJobBytes.toFixed(0)} | | |`,
      `| d. a held job's hash on gpu-held (bytes, MEMORY USAGE, mean of 100) | ${d.heldJobHashBytes.toFixed(0)} | | |`,
      `| e. release storm: ${d.heldCount.toLocaleString('en')} held jobs admitted by one release, s vs relay moving as many | ${d.stormSeconds.toFixed(1)} | ${relayHalf.toFixed(1)} | ${(relayHalf / d.stormSeconds).toFixed(2)} |`,
      `| g. Redis bytes per open reservation (+ ledger stream until written) | ${g.openReservationBytes.toFixed(0)} (+${g.openReservationStreamBytes.toFixed(0)}) | | |`,
      `| g. Redis bytes per held job, reserve script's side (+ streams) | ${g.heldJobBytes.toFixed(0)} (+${g.heldJobStreamBytes.toFixed(0)}) | | |`,
      ...(['admit', 'hold', 'release'] as const).map((op) =>
        `| g. ${op}, Redis µs in the script per job (128 per call, least disturbed call) at ${gN.held.toLocaleString('en')} held vs 0 held | ${gN[`${op}RedisUsPerJob`].toFixed(1)} | ${g0[`${op}RedisUsPerJob`].toFixed(1)} | ${g.flat[op].toFixed(2)} |`),
      '',
      `Held lines flat (each cost at ${gN.held.toLocaleString('en')} held within ${g.flatTarget} x the cost at none): ${flatMet ? 'met' : 'NOT met'}; ` +
        `g's levels, Redis µs in the script per job, least disturbed call (wall µs per job, median call): ${g.levels.map((l) => `${l.held.toLocaleString('en')} held ` +
          `${(['admit', 'hold', 'release'] as const).map((op) => `${l[`${op}RedisUsPerJob`].toFixed(1)} (${l[`${op}UsPerJob`].toFixed(1)})`).join(' / ')}`).join('; ')} (admit / hold / release); g's ratios are cost at the most held / cost at none.`,
      '',
      'Ratios are throughput ratios (baseline time / gatekeeper time, or gatekeeper rate / baseline rate): above 1 is faster than the baseline.',
    ].join('\n');
    console.log(md);
    save('capacity.md', md + '\n');
    save('capacity.json', JSON.stringify({ burst: BURST, c, d, g: { ...g, flatMet }, relayBurstSeconds: relayBurst, relayHalfSeconds: relayHalf }, null, 2) + '\n');
  } finally {
    await db.drop();
    await infra.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
