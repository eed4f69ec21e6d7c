/**
 * `npm run bench`: admission throughput and latency of the gatekeeper against
 * a plain relay (intake -> exec with no budget check), same process, same
 * Redis, same concurrency and connection pattern, so the ratio isolates what
 * admission itself costs. After one uncounted warm-up run of each, runs
 * alternate relay/gatekeeper in ABBA order, so drift favours neither.
 *
 * Throughput: BENCH_JOBS (20000) one-hour jobs preloaded, then timed until
 * every one is on gpu-exec or gpu-held. The gatekeeper's budget is 90% of the
 * total, so it must hold exactly the rest: any excess admission fails the run.
 * Latency: a steady BENCH_RATE/s (500) for BENCH_LATENCY_SECONDS (4), well
 * below capacity; latency = exec job timestamp - intake job timestamp. Those
 * are whole milliseconds, so p50/p99 are quantised to 1 ms; the mean of the
 * differences is not (truncation cancels out on average), hence it is shown too.
 * Env: BENCH_JOBS, BENCH_ROUNDS (5), BENCH_RATE, BENCH_LATENCY_SECONDS,
 * BENCH_TIMEOUT_SECONDS (300), REDIS_URL (else a local redis-server).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { createRedis } from '../queues/connection.ts';
import { execJobId } from '../queues/names.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { startLocalRedis, unlinkMatching } from '../test/support/infra.ts';
import { createRelay, type Admitter } from './relay.ts';
import { save } from './results.ts';

function env(name: string, def: number): number {
  const n = process.env[name] ? Number(process.env[name]) : def;
  if (!(n > 0)) throw new Error(`${name} must be a number > 0, got "${process.env[name]}"`);
  return n;
}
const JOBS = env('BENCH_JOBS', 20_000);
const WARMUP_JOBS = Math.min(JOBS, 5_000);
const ROUNDS = env('BENCH_ROUNDS', 5); // odd, so the median is a real run; 5: one shared machine's runs spread by half
const RATE = env('BENCH_RATE', 500);
const LATENCY_SECONDS = env('BENCH_LATENCY_SECONDS', 4);
const TIMEOUT_MS = env('BENCH_TIMEOUT_SECONDS', 300) * 1000;
const HOUR = hoursToGpuMs(1);
const SCOPE = 'project:bench';
const KINDS = ['relay', 'gatekeeper'] as const;
type Kind = (typeof KINDS)[number];
const log = createLogger('silent');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One measured run: a fresh QUEUE_PREFIX and fresh connections, all removed afterwards. */
interface Run { admin: Redis; intake: Queue; exec: Queue; held: Queue; accounting: Accounting; start(): Admitter }

async function withRun<T>(redisUrl: string, kind: Kind, body: (run: Run) => Promise<T>): Promise<T> {
  const prefix = `bench-${kind}-${randomBytes(4).toString('hex')}`;
  const config = loadConfig({ ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix });
  // The bench's own reads and writes use `admin`, so the admitter's connections carry only its own traffic.
  const [admin, connection, workerConnection] = [0, 1, 2].map(() => createRedis(redisUrl)) as [Redis, Redis, Redis];
  const q = (name: string) => new Queue(name, { connection: admin, prefix });
  const [intake, exec, held] = [q(config.queues.intake), q(config.queues.exec), q(config.queues.held)];
  let admitter: Admitter | undefined;
  const start = () => (admitter = kind === 'relay'
    ? createRelay({ config, workerConnection, connection })
    : createGatekeeper({ config, workerConnection, connection, log, clock: systemClock }));
  try {
    return await body({ admin, intake, exec, held, accounting: new Accounting(admin, prefix, config.settledRetainSeconds, config.timeZone), start });
  } finally {
    await admitter?.close();
    await Promise.all([intake.close(), exec.close(), held.close()]);
    // Drop this run's keys so later runs do not work against a fuller Redis.
    await unlinkMatching(admin, `${prefix}:*`);
    await unlinkMatching(admin, `gk:{${prefix}}:*`);
    await Promise.all([admin, connection, workerConnection].map((c) => c.quit()));
  }
}

const jobData = (i: number) => ({ project: 'bench', user: `u${i % 16}`, estimatedGpuHours: 1 });

/** Polls (from the bench's own connection) until n jobs sit on gpu-exec or gpu-held. */
async function waitForProcessed(run: Run, n: number): Promise<{ exec: number; held: number }> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const [exec, held] = await Promise.all([run.exec.count(), run.held.count()]);
    if (exec + held >= n) return { exec, held };
    if (Date.now() > deadline) {
      const failed = await run.intake.getFailedCount();
      throw new Error(`timed out: ${exec} exec + ${held} held of ${n} (${failed} intake jobs failed)`);
    }
    await sleep(10);
  }
}

/**
 * CPU seconds used so far by this process and by Redis (INFO works for any
 * Redis). Per job, this is what the two paths cost regardless of whatever
 * else the (possibly shared) machine is running during a run.
 */
async function cpuSeconds(admin: Redis): Promise<{ node: number; redis: number }> {
  const info = await admin.info('cpu');
  const field = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1e6, redis: field('used_cpu_user') + field('used_cpu_sys') };
}

interface ThroughputRun { kind: Kind; jobs: number; seconds: number; jobsPerSec: number; exec: number; held: number;
  nodeCpuMsPer1k: number; redisCpuMsPer1k: number; limitGpuMs?: number; usedPlusReservedGpuMs?: number; ok: boolean; problems: string[] }

async function throughputRun(redisUrl: string, kind: Kind, jobs = JOBS): Promise<ThroughputRun> {
  return withRun(redisUrl, kind, async (run) => {
    const limit = hoursToGpuMs(jobs * 0.9);
    if (kind === 'gatekeeper') await run.accounting.definitions.setLimit(SCOPE, limit);
    // Preload first so the timed part is pure draining, not the producer.
    for (let i = 0; i < jobs; i += 1000) {
      const n = Math.min(1000, jobs - i);
      await run.intake.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'bench', data: jobData(i + k) })));
    }
    const [t0, cpu0] = [performance.now(), await cpuSeconds(run.admin)];
    run.start();
    const { exec, held } = await waitForProcessed(run, jobs);
    const [seconds, cpu1] = [(performance.now() - t0) / 1000, await cpuSeconds(run.admin)];
    const per1k = (s: number) => (s * 1e6) / jobs;
    const res: ThroughputRun = { kind, jobs, seconds, jobsPerSec: jobs / seconds, exec, held, ok: true, problems: [],
      nodeCpuMsPer1k: per1k(cpu1.node - cpu0.node), redisCpuMsPer1k: per1k(cpu1.redis - cpu0.redis) };
    const expectedExec = kind === 'relay' ? jobs : Math.floor(limit / HOUR);
    if (exec + held !== jobs) res.problems.push(`exec ${exec} + held ${held} != ${jobs} jobs`);
    if (exec !== expectedExec) res.problems.push(`exec ${exec} != expected ${expectedExec}`);
    if (kind === 'gatekeeper') {
      const s = await run.accounting.readScope(SCOPE);
      res.limitGpuMs = limit;
      res.usedPlusReservedGpuMs = s.usedGpuMs + s.reservedGpuMs;
      if (s.limitGpuMs !== limit) res.problems.push(`scope limit is ${s.limitGpuMs}, set ${limit}`);
      if (res.usedPlusReservedGpuMs > limit) res.problems.push(`OVER-ADMISSION: ${res.usedPlusReservedGpuMs} GPU-ms > limit ${limit}`);
      if (s.reservedGpuMs !== exec * HOUR) res.problems.push(`reserved ${s.reservedGpuMs} GPU-ms != ${exec} exec jobs x 1 h`);
    }
    res.ok = res.problems.length === 0;
    return res;
  });
}

interface LatencyRun { kind: Kind; jobs: number; offeredPerSec: number; meanMs: number; p50Ms: number; p99Ms: number; maxMs: number }

async function latencyRun(redisUrl: string, kind: Kind): Promise<LatencyRun> {
  return withRun(redisUrl, kind, async (run) => {
    const count = Math.round(RATE * LATENCY_SECONDS);
    // Room for every job: this phase measures the admit path, not the hold path.
    if (kind === 'gatekeeper') await run.accounting.definitions.setLimit(SCOPE, count * HOUR);
    await run.start().worker.waitUntilReady();
    await sleep(200); // let the worker reach its fetch loop, so job 1 does not pay for startup
    const addedAt = new Map<string, number>(); // exec job id -> intake job timestamp
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      // Fixed schedule (not fixed gaps), so a slow add does not lower the rate.
      const wait = t0 + (i * 1000) / RATE - performance.now();
      if (wait > 1) await sleep(wait);
      const job = await run.intake.add('bench', jobData(i));
      addedAt.set(execJobId(job.id!), job.timestamp);
    }
    const offeredPerSec = count / ((performance.now() - t0) / 1000);
    await waitForProcessed(run, count);
    const execJobs = await run.exec.getJobs(['waiting'], 0, -1);
    const ms = execJobs.map((j) => j.timestamp - addedAt.get(j.id!)!).sort((a, b) => a - b);
    if (ms.length !== count || ms.some(Number.isNaN)) throw new Error(`latency: ${ms.length} of ${count} exec jobs matched`);
    const meanMs = ms.reduce((a, b) => a + b, 0) / ms.length;
    return { kind, jobs: count, offeredPerSec, meanMs, p50Ms: pct(ms, 50), p99Ms: pct(ms, 99), maxMs: ms[ms.length - 1]! };
  });
}

/** Nearest-rank percentile of a sorted array. */
const pct = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
/** Median; with an even number of rounds, the mean of the middle two. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-bench-'));
  const r = await startLocalRedis(dir);
  return { url: r.url, stop: async () => { await r.stop(); rmSync(dir, { recursive: true, force: true }); } };
}

async function machine(redisUrl: string) {
  const redis = createRedis(redisUrl);
  const info = await redis.info('server');
  await redis.quit();
  return { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown', os: `${os.type()} ${os.release()} ${os.arch()}`,
    // The machine may be shared: a busy one explains noisy rounds.
    load: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    // Both paths run in this process, so they share its Node flags; `npm run
    // bench` gives it the service's young generation (docs/operations.md, "Node flags").
    nodeFlags: [...process.execArgv.filter((a) => a.startsWith('--max-semi-space-size')), ...(process.env.NODE_OPTIONS ? [process.env.NODE_OPTIONS] : [])].join(' ') || 'none' };
}

type Pair = Record<Kind, number>;

function report(m: Awaited<ReturnType<typeof machine>>, tp: ThroughputRun[], lat: LatencyRun[]) {
  const by = <T extends { kind: Kind }>(xs: T[], k: Kind) => xs.filter((x) => x.kind === k);
  const med = <T extends { kind: Kind }>(xs: T[], f: (x: T) => number): Pair =>
    ({ relay: median(by(xs, 'relay').map(f)), gatekeeper: median(by(xs, 'gatekeeper').map(f)) });
  const s = {
    throughputJobsPerSec: med(tp, (r) => r.jobsPerSec),
    nodeCpuMsPer1k: med(tp, (r) => r.nodeCpuMsPer1k),
    redisCpuMsPer1k: med(tp, (r) => r.redisCpuMsPer1k),
    latencyMeanMs: med(lat, (r) => r.meanMs),
    latencyP50Ms: med(lat, (r) => r.p50Ms),
    latencyP99Ms: med(lat, (r) => r.p99Ms),
  };
  const ratio = s.throughputJobsPerSec.gatekeeper / s.throughputJobsPerSec.relay;
  // Each round pairs the two paths in one moment, so the median of the rounds'
  // own ratios moves less with the machine than the ratio of the medians.
  const roundRatios = by(tp, 'gatekeeper').map((g, i) => g.jobsPerSec / by(tp, 'relay')[i]!.jobsPerSec);
  const pairedRatio = median(roundRatios);
  // What the throughput ratio would be if both were CPU-bound with the machine to themselves.
  const cpu = (k: Kind) => s.nodeCpuMsPer1k[k] + s.redisCpuMsPer1k[k];
  const cpuRatio = cpu('relay') / cpu('gatekeeper');
  const row = (name: string, p: Pair, digits: number) =>
    `| ${name} | ${p.relay.toFixed(digits)} | ${p.gatekeeper.toFixed(digits)} | ${p.relay > 0 ? (p.gatekeeper / p.relay).toFixed(2) : '—'} |`;
  const text = (name: string, f: (k: Kind) => string) => `| ${name} | ${f('relay')} | ${f('gatekeeper')} | |`;
  const bad = tp.filter((r) => !r.ok);
  const md = [
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.os}; Node ${m.node} (flags: ${m.nodeFlags}); Redis ${m.redis}; load average at start ${m.load}`,
    `Workload: ${JOBS} preloaded jobs per throughput run, ${ROUNDS} rounds alternating relay/gatekeeper (ABBA) after a warm-up run of each, ` +
      `latency at ${RATE}/s for ${LATENCY_SECONDS} s, concurrency ${loadConfig(process.env).gatekeeperConcurrency}; ` +
      'medians over rounds; ratio = gatekeeper / relay.',
    '',
    '| metric | relay | gatekeeper | ratio |',
    '| --- | --- | --- | --- |',
    row('throughput (jobs/s)', s.throughputJobsPerSec, 0),
    text('throughput per run (jobs/s)', (k) => by(tp, k).map((r) => r.jobsPerSec.toFixed(0)).join(', ')),
    // Each round's own ratio, to show how far apart single runs land.
    `| ratio per round | | | ${roundRatios.map((r) => r.toFixed(2)).join(', ')} |`,
    row('CPU per 1000 jobs, node (ms)', s.nodeCpuMsPer1k, 0),
    row('CPU per 1000 jobs, redis (ms)', s.redisCpuMsPer1k, 0),
    row(`latency mean (ms, ${RATE}/s)`, s.latencyMeanMs, 2),
    row(`latency p50 (ms, ${RATE}/s)`, s.latencyP50Ms, 1),
    row(`latency p99 (ms, ${RATE}/s)`, s.latencyP99Ms, 1),
    text('exec / held (each run)', (k) => [...new Set(by(tp, k).map((r) => `${r.exec} / ${r.held}`))].join(', ')),
    '',
    `Gatekeeper/relay throughput: ${ratio.toFixed(2)} (guard: the median of runs >= 0.80, docs/benchmarks.md; this run ${ratio >= 0.8 ? 'above' : 'BELOW'} it); ` +
      `by CPU per job (node + redis, less sensitive to other load on the machine): ${cpuRatio.toFixed(2)}; ` +
      `median of the rounds' own ratios: ${pairedRatio.toFixed(2)}.`,
    bad.length === 0
      ? 'Over-admission: none; every gatekeeper run admitted exactly floor(budget / 1 h) and held the rest.'
      : `CHECKS FAILED: ${bad.map((r) => `${r.kind}: ${r.problems.join('; ')}`).join(' | ')}`,
  ].join('\n');
  return { md, json: { machine: m, params: { JOBS, ROUNDS, RATE, LATENCY_SECONDS }, summary: { ...s, ratio, cpuRatio, pairedRatio },
    ok: bad.length === 0, throughputRuns: tp, latencyRuns: lat } };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  try {
    const m = await machine(redis.url);
    const tp: ThroughputRun[] = [];
    const lat: LatencyRun[] = [];
    // A warm-up run of each, not counted: the first run of a kind in this
    // process also pays for compiling its code (the gatekeeper has more).
    for (const kind of KINDS) {
      const w = await throughputRun(redis.url, kind, WARMUP_JOBS);
      if (!w.ok) throw new Error(`warm-up ${kind} run: ${w.problems.join('; ')}`);
    }
    for (let round = 1; round <= ROUNDS; round++) {
      // Relay first in odd rounds, gatekeeper first in even ones (ABBA), so a
      // machine getting busier or quieter favours neither (with an odd number
      // of rounds the relay goes first once more).
      const order = round % 2 === 1 ? KINDS : [...KINDS].reverse();
      for (const kind of order) tp.push(await throughputRun(redis.url, kind));
      for (const kind of order) lat.push(await latencyRun(redis.url, kind));
      process.stderr.write(`round ${round}/${ROUNDS}: ${tp.slice(-2).map((r) => `${r.kind} ${r.jobsPerSec.toFixed(0)}/s`).join(', ')}\n`);
    }
    const { md, json } = report(m, tp, lat);
    console.log(md);
    save('latest.md', md + '\n');
    save('latest.json', JSON.stringify(json, null, 2) + '\n');
    if (!json.ok) process.exitCode = 1;
  } finally {
    await redis.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
