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
import { scopesForJob } from '../src/accounting/scopes.ts';
import type { PeriodKind } from '../src/periods.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { env, type Run } from './admission-kit.ts';

const USERS = env('BENCH_MIX_USERS', 10_000);
const PROJECTS = env('BENCH_MIX_PROJECTS', 200);
export const ZIPF = env('BENCH_MIX_ZIPF', 1.0);
/** The share of jobs the limits are sized to hold. */
const HELD_SHARE = 0.1;

/** mulberry32: a small seeded PRNG, so the mix is the same in every run and on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A submitted job's data (gpus defaults to 1 on intake). */
export interface MixJob { project: string; user: string; estimatedGpuHours: number; run?: string }

export interface Mix {
  jobs: MixJob[];
  /** Hard limits in GPU-ms by scope base, with the period of the user quotas. */
  limits: Map<string, { limitGpuMs: number; period: 'none' | PeriodKind }>;
  /** Held jobs when replayed in submission order (the gatekeeper's batches may order a few differently). */
  expectedHeld: number;
  users: number;
  projects: number;
  distinctUsers: number;
  runs: number;
}

/** Jobs of the same user in a batch resolve one scope list; Zipf puts many users in a batch, as an organization does. */
export function buildMix(count: number): Mix {
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
  // Every project and every user has its limits, whether it submits in this run or not.
  const demand = new Map<string, number>();
  for (let p = 0; p < PROJECTS; p++) demand.set(`project:p${p}`, 0);
  for (let u = 0; u < USERS; u++) for (const k of ['user-day', 'user-week']) demand.set(`${k}:u${u}`, 0);
  for (const j of jobs) for (const s of scopesForJob(j)) demand.set(s.id, (demand.get(s.id) ?? 0) + j.estimatedGpuHours);
  // Every user's daily quota is D hours (every fifth user 2 D, with a weekly
  // quota of 1.5 D, so some weekly quotas bind); every tenth project's budget
  // is 90 % of its demand, every run cap 80 %. D is searched so that about a
  // tenth of the jobs are held.
  const limitsFor = (d: number) => {
    const m: Mix['limits'] = new Map();
    for (const [id, hours] of demand) {
      const [kind, name] = id.split(':') as [string, string];
      const rank = Number(name.slice(1));
      const h = kind === 'project' ? (rank % 10 === 0 ? Math.floor(hours * 0.9) : hours)
        : kind === 'run' ? Math.floor(hours * 0.8)
        : kind === 'user-day' ? (rank % 5 === 0 ? 2 * d : d)
        : rank % 5 === 0 ? Math.floor(1.5 * d) : 3 * d;
      m.set(id, { limitGpuMs: hoursToGpuMs(h), period: kind === 'user-day' ? 'day' : kind === 'user-week' ? 'week' : 'none' });
    }
    return m;
  };
  let [lo, hi] = [1, Math.max(...demand.values())];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (replayHeld(jobs, limitsFor(mid)) > count * HELD_SHARE) lo = mid + 1;
    else hi = mid;
  }
  const limits = limitsFor(lo);
  return { jobs, limits, expectedHeld: replayHeld(jobs, limits), users: USERS, projects: PROJECTS,
    distinctUsers: new Set(jobs.map((j) => j.user)).size, runs: [...limits.keys()].filter((k) => k.startsWith('run:')).length };
}

/** Held count when the jobs are decided one by one in order: a job waits if a scope lacks room or has a line. */
function replayHeld(jobs: MixJob[], limits: Mix['limits']): number {
  const used = new Map<string, number>();
  const line = new Set<string>();
  let held = 0;
  for (const j of jobs) {
    const ms = hoursToGpuMs(j.estimatedGpuHours);
    const ids = scopesForJob(j).map((s) => s.id);
    const blocked = ids.filter((id) => line.has(id) || (used.get(id) ?? 0) + ms > limits.get(id)!.limitGpuMs);
    if (blocked.length > 0) {
      held++;
      for (const id of blocked) line.add(id);
    } else for (const id of ids) used.set(id, (used.get(id) ?? 0) + ms);
  }
  return held;
}

/** Sets every limit of the mix (the gatekeeper's runs only; the relay checks none). */
export async function defineLimits(run: Run, mix: Mix): Promise<void> {
  const entries = [...mix.limits];
  for (let i = 0; i < entries.length; i += 500) {
    await Promise.all(entries.slice(i, i + 500).map(([scope, l]) => run.accounting.definitions.define(scope, {
      limitGpuMs: l.limitGpuMs, policy: 'hard', gracePercent: null, period: l.period, rollover: false, rolloverCapGpuMs: null, setAt: Date.now(),
    })));
  }
}

/** Every limited scope read back after a gatekeeper run: the problems found (none is the pass). */
export async function checkMix(run: Run, mix: Mix, exec: number, held: number): Promise<string[]> {
  const problems: string[] = [];
  if (exec + held !== mix.jobs.length) problems.push(`exec ${exec} + held ${held} != ${mix.jobs.length} jobs`);
  const admitted = new Map<string, number>();
  for (const job of await run.exec.getJobs(['waiting'], 0, -1)) {
    for (const s of scopesForJob(job.data)) admitted.set(s.id, (admitted.get(s.id) ?? 0) + hoursToGpuMs(job.data.estimatedGpuHours));
  }
  const bases = [...mix.limits.keys()];
  const now = Date.now();
  let over = 0;
  let wrong = 0;
  for (let i = 0; i < bases.length; i += 1000) {
    for (const s of await run.accounting.scopes(bases.slice(i, i + 1000), now)) {
      const limit = mix.limits.get(s.base)!.limitGpuMs;
      if (s.limitGpuMs !== limit) problems.push(`${s.base}: limit ${s.limitGpuMs}, set ${limit}`);
      if (s.usedGpuMs + s.reservedGpuMs > limit) over++;
      if (s.reservedGpuMs !== (admitted.get(s.base) ?? 0)) wrong++;
    }
  }
  if (over > 0) problems.push(`OVER-ADMISSION in ${over} scopes`);
  if (wrong > 0) problems.push(`${wrong} scopes' reserved differs from their jobs on gpu-exec`);
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
