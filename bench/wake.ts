/**
 * `npm run bench` part `wake`: held jobs started by the waker
 * (workers/waker.ts) when a settle under the estimate makes room, each
 * measurement against its baseline in the same run on the same Redis.
 *  - Latency: a budget exactly full with running jobs and one held job
 *    behind them; one running job settles under its estimate (as the
 *    reconciler does) and the clock runs until a BullMQ worker on gpu-exec in
 *    this process is handed the woken job. Baseline: the same worker's
 *    pick-up of a job added straight to gpu-exec, sample for sample in
 *    alternating order, so the difference is what waking adds. Target: p99
 *    under 1 s. BENCH_WAKE_SAMPLES (300) after 20 uncounted.
 *  - Cost per job: BENCH_WAKE_HELD (10,000) held jobs behind 100 running
 *    jobs; the 100 settle in turn, each freeing room for a hundredth of the
 *    held, with the waker running: time and CPU from the first settle until
 *    all are on gpu-exec. Baseline: a release storm over as many held jobs
 *    (a manual budget raised, then one admin release, as part e), whose
 *    raise signals nothing. Target: per job no more than the storm. Rounds
 *    alternate (ABBA), BENCH_WAKE_ROUNDS (2) of each.
 * The part gives up after BENCH_WAKE_TIMEOUT_SECONDS (600).
 * Stores: REDIS_URL, else a local redis-server; DATABASE_URL, else an
 * embedded PGlite (only limits and the storm's audit row go to Postgres).
 * The part fails when a check fails: a woken job that did not arrive, a job on
 * gpu-exec that should not be, or a scope over its limit.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createRedis } from '../queues/connection.ts';
import { execJobId } from '../queues/names.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createWaker } from '../workers/waker.ts';
import { startLocalRedis, unlinkMatching } from '../test/support/infra.ts';
import { EMBEDDED_POOL_SIZE, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { cpuSeconds, env, median, pct, sleep } from './admission-kit.ts';
import { save } from './results.ts';

const SAMPLES = env('BENCH_WAKE_SAMPLES', 300);
const WARMUP = 20;
const HELD = env('BENCH_WAKE_HELD', 10_000);
const ROUNDS = env('BENCH_WAKE_ROUNDS', 2);
const TIMEOUT_SECONDS = env('BENCH_WAKE_TIMEOUT_SECONDS', 600);
/** Running jobs whose settles free the room in the cost measurement. */
const SETTLES = 100;
const H = hoursToGpuMs(1);
const log = createLogger('silent');
const admin = { name: 'bench', role: 'admin' as const };

interface Ctx { redisUrl: string; pool: Pool }
interface Run { prefix: string; project: string; config: Config; redis: Redis; conns: Redis[]; pool: Pool; acc: Accounting; budgets: Budgets; intake: Queue; exec: Queue; held: Queue }

/** A fresh queue prefix with its own connections, queues and accounting; its keys removed afterwards. */
async function withRun<T>(ctx: Ctx, body: (r: Run) => Promise<T>): Promise<T> {
  const prefix = `bench-wake-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ ...process.env, REDIS_URL: ctx.redisUrl, QUEUE_PREFIX: prefix });
  const conns = [0, 1, 2, 3, 4].map(() => createRedis(ctx.redisUrl));
  const redis = conns[0]!;
  const pool = ctx.pool;
  const q = (name: string) => new Queue(name, { connection: redis, prefix });
  const [intake, exec, held] = [q(config.queues.intake), q(config.queues.exec), q(config.queues.held)];
  const acc = new Accounting(redis, prefix, config.settledRetainSeconds, config.timeZone);
  try {
    // A project of its own: limits live in the one database, and the storm's is manual.
    return await body({ prefix, project: prefix, config, redis, conns, pool, acc, budgets: new Budgets(pool, acc), intake, exec, held });
  } finally {
    await Promise.all([intake.close(), exec.close(), held.close()]);
    await unlinkMatching(redis, `${prefix}:*`);
    await unlinkMatching(redis, `gk:{${prefix}}:*`);
    await Promise.all(conns.map((c) => c.quit()));
  }
}

/** Polls (every `ms`) until `check` holds; throws after a minute with `what`. */
async function until(check: () => Promise<boolean>, what: string, ms = 2): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(ms);
  }
}

const jobs = (project: string, ids: string[], hours: number) => ids.map((id) => ({ name: 'train', data: { project, user: 'u', estimatedGpuHours: hours }, opts: { jobId: id } }));
const ids = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}${i}`);

/** Check: the budget's used + reserved equals its limit (full, never over), and no job waits held. */
async function checkFull(r: Run, what: string): Promise<void> {
  const b = (await r.budgets.get(r.project))!;
  const held = await r.acc.heldIds();
  if (b.usedGpuMs + b.reservedGpuMs !== b.effectiveLimitGpuMs || held.length > 0) {
    throw new Error(`${what}: used ${b.usedGpuMs} + reserved ${b.reservedGpuMs} of ${b.effectiveLimitGpuMs} GPU-ms, ${held.length} still held`);
  }
}

async function latency(ctx: Ctx) {
  return withRun(ctx, async (r) => {
    const n = WARMUP + SAMPLES;
    // n running one-hour jobs fill the budget; each sample settles one at half an hour, room for one half-hour held job.
    await r.budgets.set(r.project, n * H);
    const gk = createGatekeeper({ config: r.config, workerConnection: r.conns[1]!, connection: r.conns[2]!, log, clock: systemClock });
    const waker = createWaker({ config: r.config, connection: r.conns[3]!, pool: r.pool, log, clock: systemClock });
    const waiting = new Map<string, (t: number) => void>();
    const seen = new Set<string>();
    const worker = new Worker(r.config.queues.exec, async (job) => {
      const t = performance.now();
      seen.add(job.id!);
      waiting.get(job.id!)?.(t);
    }, { connection: r.conns[4]!, prefix: r.prefix, concurrency: 16 });
    const arrival = (id: string) => new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`job ${id} never reached the gpu-exec worker`)), 30_000);
      waiting.set(id, (t) => { clearTimeout(timer); waiting.delete(id); resolve(t); });
    });
    try {
      await waker.start();
      const running = ids('r', n);
      const all = Promise.all(running.map((id) => arrival(execJobId(id))));
      await r.intake.addBulk(jobs(r.project, running, 1));
      await all;
      const woken: number[] = [];
      const direct: number[] = [];
      for (let i = 0; i < n; i++) {
        const h = `h${i}`;
        await r.intake.add('train', { project: r.project, user: 'u', estimatedGpuHours: 0.5 }, { jobId: h });
        await until(async () => (await r.intake.getJobState(h)) === 'completed', `${h} to be held`);
        const res = (await r.acc.reservation(h))!;
        if (res.state !== 'held') throw new Error(`${h} was ${res.state}, not held, on a full budget`);
        const settled = (await r.acc.reservation(running[i]!))!;
        const wake = async () => {
          const got = arrival(execJobId(h));
          const t0 = performance.now();
          await r.acc.settle(running[i]!, settled.scopes, H / 2, 'settle', Date.now());
          return (await got) - t0;
        };
        const add = async () => {
          const got = arrival(`d${i}`);
          const t0 = performance.now();
          await r.exec.add('direct', { bench: true }, { jobId: `d${i}` });
          return (await got) - t0;
        };
        // Alternate which goes first, so a drift on the machine favours neither.
        let w: number, d: number;
        if (i % 2 === 0) [w, d] = [await wake(), await add()];
        else [d, w] = [await add(), await wake()];
        if (i >= WARMUP) {
          woken.push(w);
          direct.push(d);
        }
      }
      await checkFull(r, 'latency run');
      const expected = new Set([...running, ...ids('h', n)].map(execJobId).concat(ids('d', n)));
      const stray = [...seen].filter((id) => !expected.has(id));
      if (seen.size !== expected.size || stray.length > 0) throw new Error(`gpu-exec worker saw ${seen.size} jobs, expected ${expected.size} (unexpected: ${stray.slice(0, 5).join(', ')})`);
      const stats = (xs: number[]) => {
        const s = [...xs].sort((x, y) => x - y);
        return { p50: pct(s, 50), p99: pct(s, 99), max: s.at(-1)! };
      };
      return { samples: SAMPLES, running: n, wokenMs: stats(woken), directMs: stats(direct) };
    } finally {
      await waker.close();
      await gk.close();
      await worker.close();
    }
  });
}

/** One cost run: SETTLES running jobs and HELD held behind them, then room made by settles (the waker) or by a raise and one admin release (the storm). */
async function costRun(ctx: Ctx, kind: 'waker' | 'storm') {
  return withRun(ctx, async (r) => {
    const per = Math.ceil(HELD / SETTLES);
    const big = per + 1;
    // The storm's budget is manual, so raising it signals nothing and only the admin's release moves the jobs.
    await r.budgets.set(r.project, SETTLES * big * H, undefined, null, { release: kind === 'storm' ? 'manual' : 'auto' });
    const waker = kind === 'waker' ? createWaker({ config: r.config, connection: r.conns[3]!, pool: r.pool, log, clock: systemClock }) : null;
    let gk: Gatekeeper | null = null;
    try {
      // Started on an empty prefix: holding signals nothing, so it waits idle until the first settle.
      await waker?.start();
      gk = createGatekeeper({ config: r.config, workerConnection: r.conns[1]!, connection: r.conns[2]!, log, clock: systemClock });
      const running = ids('r', SETTLES);
      await r.intake.addBulk(jobs(r.project, running, big));
      await until(async () => (await r.exec.count()) >= SETTLES, 'the running jobs', 20);
      const heldIds = ids('h', HELD);
      for (let i = 0; i < HELD; i += 1000) await r.intake.addBulk(jobs(r.project, heldIds.slice(i, i + 1000), 1));
      await until(async () => (await r.held.count()) >= HELD, 'the held jobs', 20);
      await gk.close();
      gk = null;
      if ((await r.exec.count()) !== SETTLES || (await r.acc.heldIds(r.project)).length !== HELD) throw new Error(`${kind}: setup placed ${await r.exec.count()} on gpu-exec, ${await r.held.count()} held`);
      const scopes = await Promise.all(running.map(async (id) => (await r.acc.reservation(id))!.scopes));
      if (kind === 'storm') await r.budgets.set(r.project, (SETTLES * big + HELD) * H, undefined, null, { release: 'manual' });

      const total = SETTLES + HELD;
      const [c0, t0] = [await cpuSeconds(r.redis), performance.now()];
      if (kind === 'waker') {
        // Each settle at 1 h of its `big` frees room for `per` held jobs.
        for (let i = 0; i < SETTLES; i++) await r.acc.settle(running[i]!, scopes[i]!, H, 'settle', Date.now());
        await until(async () => (await r.exec.count()) >= total, 'the woken jobs', 5);
      } else {
        const ops = new HeldJobs(r.config, r.redis, r.pool, systemClock, log);
        const report = await ops.release({ project: r.project }, admin);
        await ops.close();
        if (report.admitted.length !== HELD) throw new Error(`storm admitted ${report.admitted.length} of ${HELD}`);
      }
      const seconds = (performance.now() - t0) / 1000;
      const c1 = await cpuSeconds(r.redis);

      // Exactly the expected jobs on gpu-exec, none held, the budget full and not over.
      const onExec = await r.exec.count();
      const p = r.redis.pipeline();
      for (const id of [...running, ...heldIds]) p.exists(`${r.prefix}:${r.config.queues.exec}:${execJobId(id)}`);
      const missing = ((await p.exec()) ?? []).filter(([, v]) => v !== 1).length;
      if (onExec !== total || missing > 0 || (await r.held.count()) !== 0) throw new Error(`${kind}: ${onExec} on gpu-exec of ${total}, ${missing} expected missing, ${await r.held.count()} on gpu-held`);
      await checkFull(r, kind);
      return { kind, jobs: HELD, seconds, redisCpuSeconds: c1.redis - c0.redis, nodeCpuSeconds: c1.node - c0.node };
    } finally {
      await gk?.close();
      await waker?.close();
    }
  });
}

async function main(): Promise<void> {
  // Its own Redis and an in-process Postgres (as the webhook part): nothing outside this process can stop them mid-run.
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-bench-wake-'));
  const redisServer = process.env.REDIS_URL ? null : await startLocalRedis(dir);
  const pg = process.env.DATABASE_URL ? null : await startEmbeddedPostgres(join(dir, 'pg'));
  // One pool for the whole part: the embedded server takes one connection at a time.
  const pool = createPool(process.env.DATABASE_URL ?? pg!.url, pg ? EMBEDDED_POOL_SIZE : 4);
  const ctx = { redisUrl: process.env.REDIS_URL ?? redisServer!.url, pool };
  const how = `${redisServer ? 'local redis-server' : 'REDIS_URL'} + ${pg ? 'embedded PGlite' : 'DATABASE_URL'}`;
  try {
    await migrate(pool);
    const loadStart = os.loadavg();
    const lat = await latency(ctx);
    const runs: Awaited<ReturnType<typeof costRun>>[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const kind of round % 2 === 1 ? (['waker', 'storm'] as const) : (['storm', 'waker'] as const)) {
        runs.push(await costRun(ctx, kind));
        process.stderr.write(`wake cost ${JSON.stringify(runs.at(-1))}\n`);
      }
    }
    const per = (kind: string, field: 'seconds' | 'redisCpuSeconds' | 'nodeCpuSeconds') => median(runs.filter((x) => x.kind === kind).map((x) => (x[field] * 1e6) / HELD));
    const cost = {
      wakerUsPerJob: per('waker', 'seconds'), stormUsPerJob: per('storm', 'seconds'),
      wakerRedisCpuUsPerJob: per('waker', 'redisCpuSeconds'), stormRedisCpuUsPerJob: per('storm', 'redisCpuSeconds'),
      wakerNodeCpuUsPerJob: per('waker', 'nodeCpuSeconds'), stormNodeCpuUsPerJob: per('storm', 'nodeCpuSeconds'),
    };
    const ratio = { time: cost.wakerUsPerJob / cost.stormUsPerJob, redisCpu: cost.wakerRedisCpuUsPerJob / cost.stormRedisCpuUsPerJob, nodeCpu: cost.wakerNodeCpuUsPerJob / cost.stormNodeCpuUsPerJob };
    const latencyMet = lat.wokenMs.p99 < 1000;
    const costMet = ratio.time <= 1 && ratio.redisCpu <= 1;
    const f = (x: number, d = 1) => x.toFixed(d);
    const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
    const md = [
      `Wake-up (${how}; ${os.cpus().length} cores; load average at start ${load(loadStart)}, at end ${load(os.loadavg())}):`,
      '',
      '| measure | waker | baseline | ratio |',
      '| --- | --- | --- | --- |',
      `| settle → woken job handed to a gpu-exec worker, p50 / p99 / max (ms, ${lat.samples} samples) vs a job added to gpu-exec | ${f(lat.wokenMs.p50, 2)} / ${f(lat.wokenMs.p99, 2)} / ${f(lat.wokenMs.max, 2)} | ${f(lat.directMs.p50, 2)} / ${f(lat.directMs.p99, 2)} / ${f(lat.directMs.max, 2)} | ${f(lat.wokenMs.p50 / lat.directMs.p50, 2)} / ${f(lat.wokenMs.p99 / lat.directMs.p99, 2)} |`,
      `| ${HELD.toLocaleString('en')} held woken by ${SETTLES} settles vs a release storm: µs per job until on gpu-exec | ${f(cost.wakerUsPerJob)} | ${f(cost.stormUsPerJob)} | ${f(ratio.time, 2)} |`,
      `| the same, Redis CPU µs per job | ${f(cost.wakerRedisCpuUsPerJob)} | ${f(cost.stormRedisCpuUsPerJob)} | ${f(ratio.redisCpu, 2)} |`,
      `| the same, Node CPU µs per job (this process: waker or admin call) | ${f(cost.wakerNodeCpuUsPerJob)} | ${f(cost.stormNodeCpuUsPerJob)} | ${f(ratio.nodeCpu, 2)} |`,
      '',
      `Latency target p99 < 1000 ms: ${latencyMet ? 'met' : 'NOT met'}. Cost target, per job no more than the storm (time and Redis CPU, medians of ${ROUNDS} rounds each, ABBA): ${costMet ? 'met' : 'NOT met'}. ` +
        `Each run: every expected job on gpu-exec, none held, the budget's used + reserved equal to its limit.`,
      `Cost runs (s, Redis CPU s): ${runs.map((x) => `${x.kind} ${f(x.seconds, 2)} (${f(x.redisCpuSeconds, 2)})`).join('; ')}.`,
    ].join('\n');
    console.log(md);
    save('wake.md', md + '\n');
    save('wake.json', JSON.stringify({ latency: { ...lat, met: latencyMet }, cost: { held: HELD, settles: SETTLES, rounds: ROUNDS, ...cost, ratio, met: costMet, runs }, load: { start: loadStart, end: os.loadavg() } }, null, 2) + '\n');
  } finally {
    await pool.end();
    await pg?.stop();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// A store that stops answering (its server stopped under a connection that retries for ever) must not leave `npm run bench` waiting.
const watchdog = setTimeout(() => {
  console.error(`wake: no result after ${TIMEOUT_SECONDS} s (BENCH_WAKE_TIMEOUT_SECONDS); giving up`);
  process.exit(1);
}, TIMEOUT_SECONDS * 1000).unref();
main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    clearTimeout(watchdog);
    // Results are saved; a connection still reconnecting to the stopped servers must not keep the process.
    setTimeout(() => process.exit(), 10_000).unref();
  });
