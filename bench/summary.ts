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

const a = read('latest.json');
if (a) {
  const s = a.summary;
  row('a. admission throughput (jobs/s) vs plain relay', f(s.throughputJobsPerSec.gatekeeper), f(s.throughputJobsPerSec.relay), f(s.ratio, 2), `guard: median of runs ≥ 0.80 (this run ${s.ratio >= 0.8 ? 'above' : 'below'})`);
  row('a. admission latency p50 / p99 at 500/s (ms)', `${s.latencyP50Ms.gatekeeper} / ${s.latencyP99Ms.gatekeeper}`, `${s.latencyP50Ms.relay} / ${s.latencyP99Ms.relay}`, '', a.ok ? 'zero over-admission' : 'CHECKS FAILED');
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
}
const sc = read('scaling.json');
if (sc) {
  const r = sc.jobsPerSec;
  row(`f. ${f(sc.jobs)} jobs over 1 / 2 / 4 gatekeeper processes (jobs/s)`, `${f(r[1])} / ${f(r[2])} / ${f(r[4])}`, f(r[1]), `${f(r[2] / r[1], 2)} / ${f(r[4] / r[1], 2)}`, 'scales until the cores (or Redis) are full');
}
const w = read('webhooks.json');
if (w) row('threshold crossing → local webhook p50 / max (ms) vs plain POST p50', `${pct(w.crossingToWebhookMs, 50)} / ${Math.max(...w.crossingToWebhookMs)}`, f(pct(w.plainPostMs, 50), 1), '', `< 1000: ${Math.max(...w.crossingToWebhookMs) < 1000 ? 'met' : 'not met'}`);
const d = read('dashboard.json');
if (d) {
  const page = d.calls.find((x: any) => x.name.startsWith('dashboard page'));
  row(`dashboard page at ${f(d.rows)} ledger rows, p50 / max (ms) vs healthz p50`, `${f(page.p50)} / ${f(page.max)}`, f(d.calls[0].p50, 1), '', `< 200: ${page.max < 200 ? 'met' : 'not met'}`);
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
