/**
 * `npm run bench`: admission throughput and latency of the gatekeeper against
 * a plain relay (intake -> exec with no budget check), same process, same
 * Redis, same concurrency and connection pattern, so the ratio isolates what
 * admission itself costs. After one uncounted warm-up run of each, runs
 * alternate relay/gatekeeper in ABBA order, so drift favours neither.
 *
 * Throughput, three workloads of BENCH_JOBS (20000) preloaded jobs, each timed
 * until every job is on gpu-exec or gpu-held: 16 users of one project with
 * one-hour jobs and a budget for 90 % of them (so it must hold exactly the
 * rest: any excess admission fails the run); and the realistic mix of
 * bench/mix.ts (10,000 users, 200 projects, Zipf-drawn users, quotas, budgets
 * and run caps sized to hold about a tenth, every scope checked afterwards),
 * once as it is and once with every project and user rate limited and every
 * project and the fleet GPU-capped, none binding (what checking them costs);
 * and the priced mix of bench/mix-priced.ts (the same jobs over four GPU
 * types with their own rates, a job type at factor 0.5 and one exempt,
 * limits in GPU-hours, units and dollars, every unit checked afterwards).
 * Latency: a steady BENCH_RATE/s (500) for BENCH_LATENCY_SECONDS (4), well
 * below capacity; latency = exec job timestamp - intake job timestamp. Those
 * are whole milliseconds, so p50/p99 are quantised to 1 ms; the mean of the
 * differences is not (truncation cancels out on average), hence it is shown too.
 * Low load: one job at a time, timed on the submitting side (bench/low-load.ts).
 * Env: BENCH_JOBS, BENCH_ROUNDS (5), BENCH_RATE, BENCH_LATENCY_SECONDS,
 * BENCH_TIMEOUT_SECONDS (300), the BENCH_MIX_* and BENCH_LOWLOAD_* of those
 * files, REDIS_URL (else a local redis-server).
 */
import { loadConfig } from '../src/config.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { execJobId } from '../queues/names.ts';
import { cpuSeconds, env, machine, median, orderOf, pct, sleep, startRedis, waitForProcessed, withRun, KINDS, type Kind, type Pair, type Run } from './admission-kit.ts';
import { buildMix, checkLimited, checkMix, defineLimited, defineLimits, ZIPF, type Mix, type MixJob } from './mix.ts';
import { buildPricedMix, checkPriced, definePriced, FACTORS, GPU_RATES, type PricedMix } from './mix-priced.ts';
import { lowLoad, type LowLoad } from './low-load.ts';
import { save } from './results.ts';

const JOBS = env('BENCH_JOBS', 20_000);
const WARMUP_JOBS = Math.min(JOBS, 5_000);
const ROUNDS = env('BENCH_ROUNDS', 5); // odd, so the median is a real run; 5: one shared machine's runs spread by half
const RATE = env('BENCH_RATE', 500);
const LATENCY_SECONDS = env('BENCH_LATENCY_SECONDS', 4);
const HOUR = hoursToGpuMs(1);
const SCOPE = 'project:bench';
/** The guard on both mixes: gatekeeper throughput at least this share of the relay's (docs/benchmarks.md). */
const GUARD = 0.8;

const jobData = (i: number) => ({ project: 'bench', user: `u${i % 16}`, estimatedGpuHours: 1 });

/** What one throughput run submits, the limits it sets (gatekeeper only) and what it checks afterwards. */
interface Workload { name: 'users16' | 'mix' | 'mixLimited' | 'mixPriced'; data(i: number): MixJob; setup(run: Run, jobs: number): Promise<void>; check(run: Run, jobs: number, exec: number, held: number): Promise<string[]> }

const users16: Workload = {
  name: 'users16',
  data: jobData,
  setup: (run, jobs) => run.accounting.definitions.setLimit(SCOPE, hoursToGpuMs(jobs * 0.9)),
  async check(run, jobs, exec, held) {
    const limit = hoursToGpuMs(jobs * 0.9);
    const problems: string[] = [];
    if (exec + held !== jobs) problems.push(`exec ${exec} + held ${held} != ${jobs} jobs`);
    if (exec !== Math.floor(limit / HOUR)) problems.push(`exec ${exec} != expected ${Math.floor(limit / HOUR)}`);
    const s = await run.accounting.readScope(SCOPE);
    if (s.limitGpuMs !== limit) problems.push(`scope limit is ${s.limitGpuMs}, set ${limit}`);
    if (s.usedGpuMs + s.reservedGpuMs > limit) problems.push(`OVER-ADMISSION: ${s.usedGpuMs + s.reservedGpuMs} GPU-ms > limit ${limit}`);
    if (s.reservedGpuMs !== exec * HOUR) problems.push(`reserved ${s.reservedGpuMs} GPU-ms != ${exec} exec jobs x 1 h`);
    return problems;
  },
};

const mixWorkload = (mix: Mix): Workload => ({
  name: 'mix',
  data: (i) => mix.jobs[i]!,
  setup: (run) => defineLimits(run, mix),
  check: (run, _jobs, exec, held) => checkMix(run, mix, exec, held),
});

/** The realistic mix with a rate limit on every project and user and a GPU cap on every project and the fleet (none binding). */
const limitedWorkload = (mix: Mix): Workload => ({
  name: 'mixLimited',
  data: (i) => mix.jobs[i]!,
  setup: (run) => defineLimited(run, mix),
  check: (run, _jobs, exec, held) => checkLimited(run, mix, exec, held),
});

/** The realistic mix priced: four GPU types, usage factors, limits in all three units. */
const pricedWorkload = (mix: PricedMix): Workload => ({
  name: 'mixPriced',
  data: (i) => mix.jobs[i]!,
  setup: (run) => definePriced(run, mix),
  check: (run, _jobs, exec, held) => checkPriced(run, mix, exec, held),
});

interface ThroughputRun { kind: Kind; workload: Workload['name']; jobs: number; seconds: number; jobsPerSec: number; exec: number; held: number;
  nodeCpuMsPer1k: number; redisCpuMsPer1k: number; ok: boolean; problems: string[] }

async function throughputRun(redisUrl: string, kind: Kind, w: Workload, jobs = JOBS): Promise<ThroughputRun> {
  return withRun(redisUrl, kind, async (run) => {
    if (kind === 'gatekeeper') await w.setup(run, jobs);
    // Preload first so the timed part is pure draining, not the producer.
    for (let i = 0; i < jobs; i += 1000) {
      const n = Math.min(1000, jobs - i);
      await run.intake.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'bench', data: w.data(i + k) })));
    }
    const [t0, cpu0] = [performance.now(), await cpuSeconds(run.admin)];
    run.start();
    const { exec, held } = await waitForProcessed(run, jobs);
    const [seconds, cpu1] = [(performance.now() - t0) / 1000, await cpuSeconds(run.admin)];
    const per1k = (s: number) => (s * 1e6) / jobs;
    const problems = kind === 'relay'
      ? (exec === jobs && held === 0 ? [] : [`relay: exec ${exec}, held ${held} of ${jobs}`])
      : await w.check(run, jobs, exec, held);
    return { kind, workload: w.name, jobs, seconds, jobsPerSec: jobs / seconds, exec, held, ok: problems.length === 0, problems,
      nodeCpuMsPer1k: per1k(cpu1.node - cpu0.node), redisCpuMsPer1k: per1k(cpu1.redis - cpu0.redis) };
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

const by = <T extends { kind: Kind }>(xs: T[], k: Kind) => xs.filter((x) => x.kind === k);
const med = <T extends { kind: Kind }>(xs: T[], f: (x: T) => number): Pair =>
  ({ relay: median(by(xs, 'relay').map(f)), gatekeeper: median(by(xs, 'gatekeeper').map(f)) });

/** One workload's throughput runs in figures: medians over rounds, and three ratios (gatekeeper / relay). */
function throughputSummary(tp: ThroughputRun[]) {
  const s = {
    throughputJobsPerSec: med(tp, (r) => r.jobsPerSec),
    nodeCpuMsPer1k: med(tp, (r) => r.nodeCpuMsPer1k),
    redisCpuMsPer1k: med(tp, (r) => r.redisCpuMsPer1k),
  };
  const ratio = s.throughputJobsPerSec.gatekeeper / s.throughputJobsPerSec.relay;
  // Each round pairs the two paths in one moment, so the median of the rounds'
  // own ratios moves less with the machine than the ratio of the medians.
  const roundRatios = by(tp, 'gatekeeper').map((g, i) => g.jobsPerSec / by(tp, 'relay')[i]!.jobsPerSec);
  // What the throughput ratio would be if both were CPU-bound with the machine to themselves.
  const cpu = (k: Kind) => s.nodeCpuMsPer1k[k] + s.redisCpuMsPer1k[k];
  return { ...s, ratio, cpuRatio: cpu('relay') / cpu('gatekeeper'), pairedRatio: median(roundRatios), roundRatios };
}

const row = (name: string, p: Pair, digits: number) =>
  `| ${name} | ${p.relay.toFixed(digits)} | ${p.gatekeeper.toFixed(digits)} | ${p.relay > 0 ? (p.gatekeeper / p.relay).toFixed(2) : '—'} |`;
const text = (name: string, f: (k: Kind) => string) => `| ${name} | ${f('relay')} | ${f('gatekeeper')} | |`;

function throughputRows(tp: ThroughputRun[], s: ReturnType<typeof throughputSummary>, label: string): string[] {
  return [
    row(`${label}throughput (jobs/s)`, s.throughputJobsPerSec, 0),
    text(`${label}throughput per run (jobs/s)`, (k) => by(tp, k).map((r) => r.jobsPerSec.toFixed(0)).join(', ')),
    // Each round's own ratio, to show how far apart single runs land.
    `| ${label}ratio per round | | | ${s.roundRatios.map((r) => r.toFixed(2)).join(', ')} |`,
    row(`${label}CPU per 1000 jobs, node (ms)`, s.nodeCpuMsPer1k, 0),
    row(`${label}CPU per 1000 jobs, redis (ms)`, s.redisCpuMsPer1k, 0),
    text(`${label}exec / held (each run)`, (k) => [...new Set(by(tp, k).map((r) => `${r.exec} / ${r.held}`))].join(', ')),
  ];
}

/** The guard judges the median of the rounds' own ratios: each round pairs both paths at one moment, so a busy spell on the machine moves it least. */
const verdict = (s: ReturnType<typeof throughputSummary>, what: string) =>
  `${what} gatekeeper/relay throughput, median of the rounds' own ratios: ${s.pairedRatio.toFixed(2)} (guard >= ${GUARD.toFixed(2)}: ${s.pairedRatio >= GUARD ? 'met' : 'NOT met'}); ` +
  `ratio of the medians: ${s.ratio.toFixed(2)}; by CPU per job (node + redis, less sensitive to other load on the machine): ${s.cpuRatio.toFixed(2)}.`;

function report(m: Awaited<ReturnType<typeof machine>> & { loadEnd: string }, tp: ThroughputRun[], lat: LatencyRun[], mix: Mix, priced: PricedMix, low: LowLoad) {
  const [tp16, tpMix, tpLim, tpPriced] = (['users16', 'mix', 'mixLimited', 'mixPriced'] as const).map((w) => tp.filter((r) => r.workload === w)) as [ThroughputRun[], ThroughputRun[], ThroughputRun[], ThroughputRun[]];
  const s = {
    ...throughputSummary(tp16),
    latencyMeanMs: med(lat, (r) => r.meanMs),
    latencyP50Ms: med(lat, (r) => r.p50Ms),
    latencyP99Ms: med(lat, (r) => r.p99Ms),
  };
  const sm = throughputSummary(tpMix);
  const sl = throughputSummary(tpLim);
  const sp = throughputSummary(tpPriced);
  const pricedHeld = by(tpPriced, 'gatekeeper').map((r) => r.held);
  const mixHeld = by(tpMix, 'gatekeeper').map((r) => r.held);
  const bad = tp.filter((r) => !r.ok);
  const lowMet = low.addedP50Ms <= 0.2 && low.addedP99Ms <= 1;
  const md = [
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.os}; Node ${m.node} (flags: ${m.nodeFlags}); Redis ${m.redis}; load average at start ${m.load}, at end ${m.loadEnd}`,
    `Workload: ${JOBS} preloaded jobs per throughput run, ${ROUNDS} rounds alternating relay/gatekeeper (ABBA) after a warm-up run of each, ` +
      `latency at ${RATE}/s for ${LATENCY_SECONDS} s, concurrency ${loadConfig(process.env).gatekeeperConcurrency}; ` +
      'medians over rounds; ratio = gatekeeper / relay.',
    `Realistic mix: ${mix.users} users (${mix.distinctUsers} of them submit), Zipf exponent ${ZIPF}, ${mix.projects} projects with budgets, ` +
      `daily and weekly quotas for every user, ${mix.runs} run caps; 1, 2 or 4 h jobs; limits sized to hold ${mix.expectedHeld} jobs in submission order.`,
    `Priced mix: the same jobs on ${Object.keys(GPU_RATES).join(', ')} (a rate each), ${Object.keys(FACTORS).map((t) => `${t} at factor ${FACTORS[t]! / 1000}`).join(', ')} ` +
      `(${priced.exemptJobs} exempt jobs); limits in GPU-hours / units / USD: ${priced.byUnit.gpuHours} / ${priced.byUnit.units} / ${priced.byUnit.usd}; ` +
      `sized to hold ${priced.expectedHeld} jobs in submission order.`,
    '',
    '| metric | relay | gatekeeper | ratio |',
    '| --- | --- | --- | --- |',
    ...throughputRows(tp16, s, '16 users: '),
    ...throughputRows(tpMix, sm, 'realistic mix: '),
    ...throughputRows(tpLim, sl, 'realistic mix, rate limits and GPU caps on: '),
    ...throughputRows(tpPriced, sp, 'priced mix: '),
    row(`latency mean (ms, ${RATE}/s)`, s.latencyMeanMs, 2),
    row(`latency p50 (ms, ${RATE}/s)`, s.latencyP50Ms, 1),
    row(`latency p99 (ms, ${RATE}/s)`, s.latencyP99Ms, 1),
    row(`low load, one job at a time: p50 (ms, ${low.samples} each)`, low.p50Ms, 3),
    row(`low load, one job at a time: p99 (ms, ${low.samples} each)`, low.p99Ms, 3),
    '',
    verdict(s, '16 users:'),
    verdict(sm, 'Realistic mix:'),
    verdict(sl, 'Realistic mix with every project and user rate limited and every project and the fleet GPU-capped (none binding):'),
    verdict(sp, 'Priced mix (4 GPU types, budgets in GPU-h, units and USD):'),
    `Low load: the gatekeeper adds ${low.addedP50Ms.toFixed(3)} ms at p50 and ${low.addedP99Ms.toFixed(3)} ms at p99 (targets <= 0.2 and <= 1: ${lowMet ? 'met' : 'NOT met'}).`,
    bad.length === 0
      ? `Over-admission: none; every 16-user gatekeeper run admitted exactly floor(budget / 1 h) and held the rest; every realistic-mix run held ${[...new Set(mixHeld)].join(' / ')} ` +
        `of ${JOBS} with every scope's used + reserved within its limit and equal to its jobs on gpu-exec; every priced-mix run held ${[...new Set(pricedHeld)].join(' / ')} ` +
        `with every scope within its limit in its unit and reserved, in each unit, equal to the bench's charges of its jobs on gpu-exec.`
      : `CHECKS FAILED: ${bad.map((r) => `${r.kind} ${r.workload}: ${r.problems.join('; ')}`).join(' | ')}`,
  ].join('\n');
  const { roundRatios: _r, ...mixSummary } = sm;
  const { roundRatios: _l, ...limitedSummary } = sl;
  const { roundRatios: _p, ...pricedSummary } = sp;
  return { md, json: { machine: m, params: { JOBS, ROUNDS, RATE, LATENCY_SECONDS }, summary: s,
    mix: { users: mix.users, distinctUsers: mix.distinctUsers, projects: mix.projects, runs: mix.runs, zipf: ZIPF, expectedHeld: mix.expectedHeld,
      held: median(mixHeld), heldShare: median(mixHeld) / JOBS, ...mixSummary, guard: GUARD, ok: tpMix.every((r) => r.ok) },
    mixLimited: { ...limitedSummary, guard: GUARD, ok: tpLim.every((r) => r.ok) },
    mixPriced: { gpuTypes: GPU_RATES, factors: FACTORS, limitsByUnit: priced.byUnit, exemptJobs: priced.exemptJobs, expectedHeld: priced.expectedHeld,
      held: median(pricedHeld), heldShare: median(pricedHeld) / JOBS, ...pricedSummary, guard: GUARD, ok: tpPriced.every((r) => r.ok) },
    lowLoad: { ...low, targetP50AddedMs: 0.2, targetP99AddedMs: 1, met: lowMet },
    ok: bad.length === 0, throughputRuns: tp, latencyRuns: lat } };
}

async function main(): Promise<void> {
  const redis = await startRedis();
  try {
    const m = await machine(redis.url);
    const mix = buildMix(JOBS);
    const priced = buildPricedMix(JOBS);
    const workloads = [users16, mixWorkload(mix), limitedWorkload(mix), pricedWorkload(priced)];
    const tp: ThroughputRun[] = [];
    const lat: LatencyRun[] = [];
    // A warm-up run of each, not counted: the first run of a kind in this
    // process also pays for compiling its code (the gatekeeper has more).
    for (const kind of KINDS) {
      const w = await throughputRun(redis.url, kind, users16, WARMUP_JOBS);
      if (!w.ok) throw new Error(`warm-up ${kind} run: ${w.problems.join('; ')}`);
    }
    for (let round = 1; round <= ROUNDS; round++) {
      // ABBA: with an odd number of rounds the relay goes first once more.
      const order = orderOf(round);
      for (const w of workloads) for (const kind of order) tp.push(await throughputRun(redis.url, kind, w));
      for (const kind of order) lat.push(await latencyRun(redis.url, kind));
      process.stderr.write(`round ${round}/${ROUNDS}: ${tp.slice(-2 * workloads.length).map((r) => `${r.workload} ${r.kind} ${r.jobsPerSec.toFixed(0)}/s`).join(', ')}\n`);
    }
    const low = await lowLoad(redis.url);
    const { md, json } = report({ ...m, loadEnd: (await machine(redis.url)).load }, tp, lat, mix, priced, low);
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
