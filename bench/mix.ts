/**
 * The admission benchmark's realistic mix: BENCH_MIX_USERS (10,000) users
 * over BENCH_MIX_PROJECTS (200) projects, each user with a daily and a weekly
 * quota and each project with a budget; a tenth of the jobs carry a run, and
 * every run has a cap. The submitting user of each job is drawn from a Zipf
 * distribution (weight of the user of rank r: 1 / r^BENCH_MIX_ZIPF, default
 * 1.0) with a seeded PRNG, so every run submits the same jobs in the same
 * order. The limits are sized, by replaying the jobs in order through the
 * same rules (first in, first out per scope), so that about a tenth are held.
 * After a run every limited scope is read back: used + reserved never above
 * its limit, reserved equal to the hours of the jobs on gpu-exec, and every
 * job on gpu-exec or gpu-held. The same mix runs once more with every
 * project and user under a submission rate limit and every project and the
 * fleet under a GPU cap, none of them binding (defineLimited): what checking
 * them costs. Figures: docs/benchmarks.md.
 */
import { parseScopeId, scopesForJob } from '../src/accounting/scopes.ts';
import type { LimitUnit } from '../src/accounting/pricing.ts';
import type { PeriodKind } from '../src/periods.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { env, type Run } from './admission-kit.ts';

const USERS = env('BENCH_MIX_USERS', 10_000);
const PROJECTS = env('BENCH_MIX_PROJECTS', 200);
export const ZIPF = env('BENCH_MIX_ZIPF', 1.0);
/** The share of jobs the limits are sized to hold. */
const HELD_SHARE = 0.1;

/** mulberry32: a small seeded PRNG, so the mix is the same in every run and on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A submitted job's data (gpus defaults to 1 on intake; the priced mix adds a GPU and a job type). */
export interface MixJob { project: string; user: string; estimatedGpuHours: number; run?: string; gpuType?: string; jobType?: string }

/** A hard limit as the bench sets it: the amount in its unit (GPU-ms when absent, else milli-units or micro-dollars). */
export interface MixLimit { limitGpuMs: number; period: 'none' | PeriodKind; unit?: LimitUnit }

export interface Mix {
  jobs: MixJob[];
  /** Hard limits by scope base, with the period of the user quotas. */
  limits: Map<string, MixLimit>;
  /** Held jobs when replayed in submission order (the gatekeeper's batches may order a few differently). */
  expectedHeld: number;
  users: number;
  projects: number;
  distinctUsers: number;
  runs: number;
}

/** The mix's jobs: users drawn by Zipf rank (seed 19), 1, 2 or 4 GPU-hours, a tenth with a run. */
export function drawJobs(count: number): MixJob[] {
  const rand = prng(19);
  const cdf: number[] = [];
  let total = 0;
  for (let r = 1; r <= USERS; r++) cdf.push((total += 1 / r ** ZIPF));
  const pick = () => {
    const x = rand() * total;
    let [lo, hi] = [0, USERS - 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const jobs: MixJob[] = [];
  for (let i = 0; i < count; i++) {
    const u = pick();
    // Ranks spread over projects, so the heaviest users are not all in one.
    const project = `p${u % PROJECTS}`;
    const hours = [1, 1, 1, 2, 2, 4][Math.floor(rand() * 6)]!;
    const job: MixJob = { project, user: `u${u}`, estimatedGpuHours: hours };
    if (rand() < 0.1) job.run = `r${Math.floor(rand() * 4)}`;
    jobs.push(job);
  }
  return jobs;
}

/** Every scope's demand (the sum of `charge` over its jobs); every project and user has one, whether it submits or not. */
export function demandBy(jobs: MixJob[], charge: (j: MixJob, id: string) => number): Map<string, number> {
  const demand = new Map<string, number>();
  for (let p = 0; p < PROJECTS; p++) demand.set(`project:p${p}`, 0);
  for (let u = 0; u < USERS; u++) for (const k of ['user-day', 'user-week']) demand.set(`${k}:u${u}`, 0);
  for (const j of jobs) for (const s of scopesForJob(j)) demand.set(s.id, (demand.get(s.id) ?? 0) + charge(j, s.id));
  return demand;
}

/**
 * A scope's limit from its demand and the daily quota d (both in its unit):
 * every user's daily quota d (every fifth user 2 d, with a weekly quota of
 * 1.5 d, so some weekly quotas bind; the others 3 d), every tenth
 * project's budget 90 % of its demand, every run cap 80 %.
 */
export function limitShape(id: string, demand: number, d: number): MixLimit {
  const { kind, name } = parseScopeId(id);
  const rank = Number(/\d+/.exec(name)![0]);
  const limitGpuMs = kind === 'project' ? (rank % 10 === 0 ? Math.floor(demand * 0.9) : demand)
    : kind === 'run' ? Math.floor(demand * 0.8)
    : kind === 'user-day' ? (rank % 5 === 0 ? 2 * d : d)
    : rank % 5 === 0 ? Math.floor(1.5 * d) : 3 * d;
  return { limitGpuMs, period: kind === 'user-day' ? 'day' : kind === 'user-week' ? 'week' : 'none' };
}

/** The limits of the smallest daily quota in [1, hi] that holds at most HELD_SHARE of `count` jobs when replayed. */
export function sizeLimits(count: number, hi: number, limitsFor: (d: number) => Mix['limits'], held: (l: Mix['limits']) => number): Mix['limits'] {
  let lo = 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (held(limitsFor(mid)) > count * HELD_SHARE) lo = mid + 1;
    else hi = mid;
  }
  return limitsFor(lo);
}

/** A mix's figures from its jobs and limits. */
export function mixOf(jobs: MixJob[], limits: Mix['limits'], expectedHeld: number): Mix {
  return { jobs, limits, expectedHeld, users: USERS, projects: PROJECTS,
    distinctUsers: new Set(jobs.map((j) => j.user)).size, runs: [...limits.keys()].filter((k) => k.startsWith('run:')).length };
}

/** Jobs of the same user in a batch resolve one scope list; Zipf puts many users in a batch, as an organization does. */
export function buildMix(count: number): Mix {
  const jobs = drawJobs(count);
  const demand = demandBy(jobs, (j) => j.estimatedGpuHours);
  // D, the daily quota in GPU-hours, is searched so that about a tenth of the jobs are held.
  const limitsFor = (d: number): Mix['limits'] => new Map([...demand].map(([id, hours]) => {
    const l = limitShape(id, hours, d);
    return [id, { ...l, limitGpuMs: hoursToGpuMs(l.limitGpuMs) }];
  }));
  const held = (l: Mix['limits']) => replayHeld(jobs, l, UNPRICED);
  const limits = sizeLimits(count, Math.max(...demand.values()), limitsFor, held);
  return mixOf(jobs, limits, held(limits));
}

/** How a job is charged, as the bench computes it apart from the scripts: in each unit checked, and whether it is exempt (admitted, counted nowhere). */
export interface Pricing { units: readonly LimitUnit[]; charge(j: MixJob, unit: LimitUnit): number; exempt(j: MixJob): boolean }
/** The plain mix: no GPU or job types, limits in GPU-hours, a job charged its GPU-ms. */
const UNPRICED: Pricing = { units: ['gpuHours'], charge: (j) => hoursToGpuMs(j.estimatedGpuHours), exempt: () => false };

/**
 * Held count when the jobs are decided one by one in order: a job waits if
 * a limited scope lacks room (its charge in the scope's unit) or has a line;
 * an exempt job never waits and counts nowhere.
 */
export function replayHeld(jobs: MixJob[], limits: Mix['limits'], pricing: Pricing): number {
  const used = new Map<string, number>();
  const line = new Set<string>();
  let held = 0;
  for (const j of jobs) {
    if (pricing.exempt(j)) continue;
    const need = scopesForJob(j).map((s) => ({ id: s.id, limit: limits.get(s.id) }))
      .map(({ id, limit }) => ({ id, limit: limit?.limitGpuMs ?? Infinity, charge: pricing.charge(j, limit?.unit ?? 'gpuHours') }));
    const blocked = need.filter(({ id, limit, charge }) => line.has(id) || (used.get(id) ?? 0) + charge > limit);
    if (blocked.length > 0) {
      held++;
      for (const { id } of blocked) line.add(id);
    } else for (const { id, charge } of need) used.set(id, (used.get(id) ?? 0) + charge);
  }
  return held;
}

/** Sets every limit of the mix, each in its unit (the gatekeeper's runs only; the relay checks none). */
export async function defineLimits(run: Run, mix: Mix): Promise<void> {
  const entries = [...mix.limits];
  for (let i = 0; i < entries.length; i += 500) {
    await Promise.all(entries.slice(i, i + 500).map(([scope, l]) => run.accounting.definitions.define(scope, {
      limitGpuMs: l.limitGpuMs, unit: l.unit ?? 'gpuHours', policy: 'hard', gracePercent: null, period: l.period, rollover: false, rolloverCapGpuMs: null, setAt: Date.now(),
    })));
  }
}

/**
 * Every limited scope (and each of `countOnly`) read back after a gatekeeper
 * run: the problems found (none is the pass). A limited scope: its unit and
 * limit as set, used + reserved within the limit in that unit. Every scope:
 * reserved, in each unit `pricing` checks, equal to the sum of the charges of
 * its jobs on gpu-exec by the bench's own rule, and exemptReserved to its
 * exempt jobs' GPU-ms.
 */
export async function checkMix(run: Run, mix: Mix, exec: number, held: number, pricing = UNPRICED, countOnly: string[] = []): Promise<string[]> {
  const problems: string[] = [];
  if (exec + held !== mix.jobs.length) problems.push(`exec ${exec} + held ${held} != ${mix.jobs.length} jobs`);
  // Per scope: the charge in each of pricing.units, then the exempt GPU-ms.
  const admitted = new Map<string, number[]>();
  for (const job of await run.exec.getJobs(['waiting'], 0, -1)) {
    const exempt = pricing.exempt(job.data);
    const add = [...pricing.units.map((u) => (exempt ? 0 : pricing.charge(job.data, u))), exempt ? hoursToGpuMs(job.data.estimatedGpuHours) : 0];
    for (const s of scopesForJob(job.data)) {
      const sum = admitted.get(s.id) ?? add.map(() => 0);
      add.forEach((x, i) => (sum[i]! += x));
      admitted.set(s.id, sum);
    }
  }
  const bases = [...mix.limits.keys(), ...countOnly];
  const none = [...pricing.units.map(() => 0), 0];
  const now = Date.now();
  let over = 0;
  let wrong = 0;
  for (let i = 0; i < bases.length; i += 1000) {
    for (const s of await run.accounting.scopes(bases.slice(i, i + 1000), now)) {
      const l = mix.limits.get(s.base);
      if (l) {
        const unit = l.unit ?? 'gpuHours';
        if (s.limitGpuMs !== l.limitGpuMs || s.unit !== unit) problems.push(`${s.base}: limit ${s.limitGpuMs} ${s.unit}, set ${l.limitGpuMs} ${unit}`);
        const c = s.counted[unit];
        if (s.usedGpuMs + s.reservedGpuMs > l.limitGpuMs || c.used + c.reserved > l.limitGpuMs) over++;
      }
      const a = admitted.get(s.base) ?? none;
      if (pricing.units.some((u, k) => s.counted[u].reserved !== a[k]) || s.exemptReservedGpuMs !== a.at(-1)) wrong++;
    }
  }
  if (over > 0) problems.push(`OVER-ADMISSION in ${over} scopes`);
  if (wrong > 0) problems.push(`${wrong} scopes' reserved (in some unit) differs from their jobs on gpu-exec`);
  return problems.slice(0, 10);
}

/** A rate limit and a GPU cap that never bind: the cost of checking them, not their effect. */
const OPEN_RATE = { jobsPerMinute: 1_000_000, burst: 100_000 };
const OPEN_CAP = { maxGpus: 1_000_000, peak: null, release: 'auto' as const };

/** defineLimits, plus a rate limit on every project and user and a GPU cap on every project and the fleet. */
export async function defineLimited(run: Run, mix: Mix): Promise<void> {
  await defineLimits(run, mix);
  const defs = run.accounting.definitions;
  const projects = [...new Set(mix.jobs.map((j) => j.project))];
  const users = Array.from({ length: mix.users }, (_, i) => `u${i}`);
  const rates = [...projects.map((p) => `project:${p}`), ...users.map((u) => `user:${u}`)];
  for (let i = 0; i < rates.length; i += 500) await Promise.all(rates.slice(i, i + 500).map((scope) => defs.defineRate(scope, OPEN_RATE)));
  for (const scope of [...projects.map((p) => `gpus-project:${p}`), 'gpus-global:all']) await defs.defineCap(scope, OPEN_CAP);
}

/** checkMix, plus every GPU cap's GPUs in flight equal to its jobs on gpu-exec (1 GPU each). */
export async function checkLimited(run: Run, mix: Mix, exec: number, held: number): Promise<string[]> {
  const problems = await checkMix(run, mix, exec, held);
  const perProject = new Map<string, number>();
  for (const job of await run.exec.getJobs(['waiting'], 0, -1)) perProject.set(job.data.project, (perProject.get(job.data.project) ?? 0) + (job.data.gpus ?? 1));
  const caps = [...new Set(mix.jobs.map((j) => j.project))].map((p) => `gpus-project:${p}`);
  const inFlight = await run.accounting.inFlight([...caps, 'gpus-global:all']);
  const wrong = caps.filter((c, i) => inFlight[i] !== (perProject.get(c.slice('gpus-project:'.length)) ?? 0)).length;
  if (wrong > 0) problems.push(`${wrong} projects' GPUs in flight differ from their jobs on gpu-exec`);
  if (inFlight.at(-1) !== exec) problems.push(`GPUs in flight ${inFlight.at(-1)} != ${exec} jobs on gpu-exec`);
  return problems.slice(0, 10);
}
