/**
 * The last step of `npm run bench`: one table from the parts' results
 * (bench/results/*.json), each row a measurement against its baseline from
 * the same run, with its target. Written to bench/results/summary.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { save } from './results.ts';

const read = (name: string): any => {
  const url = new URL(`./results/${name}`, import.meta.url);
  return existsSync(url) ? JSON.parse(readFileSync(url, 'utf8')) : null;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)]!;
const f = (n: number, d = 0) => n.toLocaleString('en', { maximumFractionDigits: d, minimumFractionDigits: d });

const rows: string[] = [];
const row = (what: string, value: string, baseline: string, ratio: string, target: string) => rows.push(`| ${what} | ${value} | ${baseline} | ${ratio} | ${target} |`);

const signed = (n: number) => `${n >= 0 ? '+' : '−'}${f(Math.abs(n), 2)}`;
const met = (ok: boolean) => (ok ? 'met' : 'not met');
const a = read('latest.json');
if (a) {
  const s = a.summary;
  // Judged by the median of the rounds' own ratios (bench/admission.ts); the ratio of the medians and by CPU are shown beside it.
  const guard = (x: any) => `≥ 0.80 (rounds' median; medians' ratio ${f(x.ratio, 2)}, by CPU ${f(x.cpuRatio, 2)})`;
  row('a. admission throughput, 16 users (jobs/s) vs plain relay', f(s.throughputJobsPerSec.gatekeeper), f(s.throughputJobsPerSec.relay), f(s.pairedRatio, 2), `${guard(s)}: ${met(s.pairedRatio >= 0.8)}`);
  row('a. admission latency p50 / p99 at 500/s (ms)', `${s.latencyP50Ms.gatekeeper} / ${s.latencyP99Ms.gatekeeper}`, `${s.latencyP50Ms.relay} / ${s.latencyP99Ms.relay}`, '', a.ok ? 'zero over-admission' : 'CHECKS FAILED');
  const m = a.mix;
  if (m) {
    row(`a. realistic mix (${f(m.users)} users, Zipf ${m.zipf}, ${f(m.projects)} projects, ${f(100 * m.heldShare, 1)} % held), jobs/s vs plain relay`,
      f(m.throughputJobsPerSec.gatekeeper), f(m.throughputJobsPerSec.relay), f(m.pairedRatio, 2), `${guard(m)}, zero over-admission: ${met(m.pairedRatio >= 0.8 && m.ok)}`);
  }
  const ml = a.mixLimited;
  if (ml) {
    row('a. realistic mix with rate limits on every project and user and GPU caps on every project and the fleet (none binding), jobs/s vs plain relay',
      f(ml.throughputJobsPerSec.gatekeeper), f(ml.throughputJobsPerSec.relay), f(ml.pairedRatio, 2), `${guard(ml)}, zero over-admission: ${met(ml.pairedRatio >= 0.8 && ml.ok)}`);
  }
  const mp = a.mixPriced;
  if (mp) {
    row('a. priced mix (4 GPU types, budgets in GPU-h, units and USD), jobs/s vs plain relay',
      f(mp.throughputJobsPerSec.gatekeeper), f(mp.throughputJobsPerSec.relay), f(mp.pairedRatio, 2), `${guard(mp)}, zero over-admission: ${met(mp.pairedRatio >= 0.8 && mp.ok)}`);
  }
  const l = a.lowLoad;
  if (l) {
    row(`a. low load, one job at a time: p50 / p99 (ms) vs plain relay; added`, `${f(l.p50Ms.gatekeeper, 2)} / ${f(l.p99Ms.gatekeeper, 2)}`, `${f(l.p50Ms.relay, 2)} / ${f(l.p99Ms.relay, 2)}`,
      `${signed(l.addedP50Ms)} / ${signed(l.addedP99Ms)}`, `added ≤ 0.2 / ≤ 1: ${met(l.addedP50Ms <= 0.2 && l.addedP99Ms <= 1)}`);
  }
}
const b = read('sql-baseline.json');
if (b) {
  const rate = (k: string) => median(b.runs.filter((r: any) => r.kind === k).map((r: any) => b.jobs / r.seconds));
  row(`b. ${b.submitters} submitters (jobs/s) vs Postgres row lock per job`, f(rate('gatekeeper')), f(rate('sql')), f(b.ratio, 1), `≥ 5: ${b.ratio >= 5 ? 'met' : 'not met'}`);
}
const c = read('capacity.json');
if (c) {
  row('c. reserve script calls/s (1 job) vs `EVAL return 1`', f(c.c.reserveCallsPerSec), f(c.c.trivialCallsPerSec), f(c.c.reserveCallsPerSec / c.c.trivialCallsPerSec, 2), 'the Redis limit');
  row('c. reserve script jobs/s (128 per call) vs `EVAL return 1` calls/s', f(c.c.reserveJobsPerSecBatched), f(c.c.trivialCallsPerSec), f(c.c.reserveJobsPerSecBatched / c.c.trivialCallsPerSec, 2), '');
  row(`d. drain ${f(c.burst)} jobs (s) vs relay; Redis bytes per placed job`, `${f(c.d.drainSeconds, 1)}; ${f(c.d.memPerPlacedJobBytes)} B`, f(c.relayBurstSeconds, 1), f(c.relayBurstSeconds / c.d.drainSeconds, 2), '');
  row(`e. release storm over ${f(c.d.heldCount)} held (s) vs relay moving as many`, f(c.d.stormSeconds, 1), f(c.relayHalfSeconds, 1), f(c.relayHalfSeconds / c.d.stormSeconds, 2), '');
  const g = c.g;
  if (g) {
    row('g. Redis bytes per open reservation / per held job (reserve script\'s side; + ledger and event streams)', `${f(g.openReservationBytes)} (+${f(g.openReservationStreamBytes)}) / ${f(g.heldJobBytes)} (+${f(g.heldJobStreamBytes)})`, '', '', 'reported');
    const [z, n] = [g.levels[0], g.levels[g.levels.length - 1]];
    const us = (l: any) => ['admit', 'hold', 'release'].map((op) => f(l[`${op}RedisUsPerJob`], 1)).join(' / ');
    const worst = Math.max(g.flat.admit, g.flat.hold, g.flat.release);
    row(`g. admit / hold / release, Redis µs per job at ${f(n.held)} held vs none`, us(n), us(z), `≤ ${f(worst, 2)}`, `flat, ≤ ${g.flatTarget} ×: ${met(worst <= g.flatTarget)}`);
  }
}
const sc = read('scaling.json');
if (sc) {
  const r = sc.jobsPerSec;
  row(`f. ${f(sc.jobs)} jobs over 1 / 2 / 4 gatekeeper processes (jobs/s)`, `${f(r[1])} / ${f(r[2])} / ${f(r[4])}`, f(r[1]), `${f(r[2] / r[1], 2)} / ${f(r[4] / r[1], 2)}`, 'scales until the cores (or Redis) are full');
}
const w = read('webhooks.json');
if (w) row('threshold crossing → local webhook p50 / max (ms) vs plain POST p50', `${pct(w.crossingToWebhookMs, 50)} / ${Math.max(...w.crossingToWebhookMs)}`, f(pct(w.plainPostMs, 50), 1), '', `< 1000: ${Math.max(...w.crossingToWebhookMs) < 1000 ? 'met' : 'not met'}`);
const wk = read('wake.json');
if (wk) {
  const [l, c] = [wk.latency, wk.cost];
  row('wake-up: settle → on gpu-exec p50 / p99 (ms) vs direct add', `${f(l.wokenMs.p50, 2)} / ${f(l.wokenMs.p99, 2)}`, `${f(l.directMs.p50, 2)} / ${f(l.directMs.p99, 2)}`, '', `p99 < 1000: ${met(l.wokenMs.p99 < 1000)}`);
  row(`wake-up: ${f(c.held)} held woken by settles, per job vs release storm (µs; Redis CPU µs)`, `${f(c.wakerUsPerJob)}; ${f(c.wakerRedisCpuUsPerJob)}`, `${f(c.stormUsPerJob)}; ${f(c.stormRedisCpuUsPerJob)}`,
    `${f(c.ratio.time, 2)}; ${f(c.ratio.redisCpu, 2)}`, `≤ 1 (time and Redis CPU): ${met(c.ratio.time <= 1 && c.ratio.redisCpu <= 1)}`);
}
const au = read('auth.json');
if (au) {
  row(`a person's key vs an environment token, GET a budget one at a time p50 (ms), ${au.postgres}`, f(au.latencyMs.key.p50, 2), f(au.latencyMs.token.p50, 2), `+${f(au.addedP50Ms, 2)}`, 'reported');
  row('a person\'s key vs an environment token, calls/s 16 in flight', f(au.throughput.key), f(au.throughput.token), f(au.throughput.pairedRatio, 2), 'reported (rounds\' median)');
}
const d = read('dashboard.json');
if (d?.summary) {
  const x = d.summary;
  const base = f(x.healthzP50Ms, 1);
  const scale = `${f(d.projects)} budgets, ${f(d.users)} quotas, ${f(d.rows)} ledger rows`;
  row(`dashboard page (first, search, deep) at ${scale}, p50 / max (ms) vs healthz p50; page bytes`, `${f(x.dashboardP50Ms)} / ${f(x.dashboardMaxMs)}; ${f(x.pageBytes)} B`, base, '', `< 200 / < 400: ${met(x.dashboardP50Ms < 200 && x.dashboardMaxMs < 400)}`);
  for (const [field, what] of [['projectsApi', 'GET /api/v1/projects'], ['quotaList', 'GET /api/v1/quotas'], ['report366', '366-day usage report by project and user']] as const) {
    row(`dashboard: ${what}, p50 / max (ms) vs healthz p50`, `${f(x[`${field}P50Ms`])} / ${f(x[`${field}MaxMs`])}`, base, '', `p50 < 200: ${met(x[`${field}P50Ms`] < 200)}`);
  }
}
const ri = read('reserve-instructions.json');
if (ri?.before) {
  // Deterministic counts (callgrind), so the baseline is the revision named, not a run of the same moment.
  const r = (field: string, what: string, target?: number) =>
    row(`reserve.lua: ${what} (Redis instructions) vs ${ri.before.revision}`, f(ri[field]), f(ri.before[field]), f(ri[field] / ri.before[field], 2), target === undefined ? 'reported' : `≤ ${f(target)}: ${met(ri[field] <= target)}`);
  r('oneJobCall', 'a one-job call', ri.targets.oneJobCall);
  r('perExtraScopeList', 'per extra distinct scope list in a call (users with quotas)', ri.targets.perExtraScopeList);
  r('perJob', 'per job in a batch');
  for (const p of ri.priced?.rows ?? []) {
    row(`reserve.lua: per job, ${p.case.replace(/^128-job batches, none held, /, '')} (Redis instructions) vs unpriced`, f(p.perJob), f(ri.priced.unpricedPerJob), f(p.ratio, 2), 'reported');
  }
}

const md = [
  `gpu-gatekeeper benchmark summary (${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}); each part's own table is in bench/results/.`,
  '',
  '| measure | gatekeeper | baseline | ratio | target |',
  '| --- | --- | --- | --- | --- |',
  ...rows,
  // From bench/all.ts: a part that failed may have left its previous run's figures.
  ...(process.env.BENCH_FAILED ? ['', `Failed this run: ${process.env.BENCH_FAILED}. Their rows may be from an earlier run.`] : []),
].join('\n');
console.log(md);
save('summary.md', md + '\n');
