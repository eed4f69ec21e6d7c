/**
 * `npm run bench:instructions`: how many instructions Redis executes per job
 * of reserve.lua, this tree against a git revision (default HEAD), counted by
 * valgrind's callgrind. Instruction counts repeat to within 0.3 % whatever
 * else the machine does, so a change to the script can be judged to the
 * percent on a shared machine where timings wander by half (measured here:
 * the same throughput run gave 4,400 and 10,300 jobs/s an hour apart).
 *
 * Each case runs a fresh redis-server under callgrind: once with no script
 * calls (start-up and the driver's set-up, subtracted), once per script. The
 * first two cases are the admission benchmark's jobs: one-hour jobs of one
 * project and 16 users (three scopes each), the budget at BENCH_FILL (0.9)
 * of them, so the last tenth is held. Five more fit the cost of a call as
 * fixed + per job x jobs + per extra distinct scope list x (lists - 1), for
 * users with daily and weekly quotas and users without, and report them
 * against issue 19's targets (≤ 100,000 per extra list, ≤ 300,000 for a
 * one-job call). Two more price the jobs: the first case's jobs over the
 * priced admission mix's four GPU types (bench/mix-priced.ts: rates set, a
 * user in two's jobs at factor 0.5, the budget in dollars), this tree
 * only, as a ratio to the unpriced case: once with the same scope lists and
 * groups (each user's jobs one type: what pricing itself costs), once as
 * the gatekeeper sends typed jobs (each user's jobs over all four types, so
 * four times the groups, each job with its project's per-type scope).
 * bench/results/reserve-instructions.json carries this
 * tree's terms at the top (oneJobCall, fixed, perJob, perExtraScopeList,
 * perExtraScopeListNoQuotas), `targets`, `met`, and the revision's under
 * `before`.
 *
 * Usage: npm run bench:instructions [-- <git revision>]
 * Env: BENCH_INSTR_JOBS (2560 per case), BENCH_INSTR_KEEP (a directory: keep
 * each run's callgrind output for callgrind_annotate), BENCH_INSTR_RATES=1
 * (the project and every user get a submission rate limit that never
 * throttles: what reading the buckets costs), BENCH_INSTR_QUICK=1 (only the
 * first case and a one-job call against the revision and the priced cases,
 * printed, not saved: for trying a change to the script). Needs valgrind and
 * redis-server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Accounting } from '../src/accounting/counters.ts';
import { reserveBatch } from '../src/accounting/reserve-wire.ts';
import { compactRates } from '../src/accounting/pricing.ts';
import { projectTypeScope } from '../src/accounting/scopes.ts';
import type { ReserveRequest } from '../src/accounting/types.ts';
import { scriptSource, withIncludes } from '../src/redis/scripts.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createRedis } from '../queues/connection.ts';
import { freePort, tcpOpen, waitFor } from '../test/support/infra.ts';
import { save } from './results.ts';
import { FACTORS, GPU_RATES } from './mix-priced.ts';

const JOBS = Number(process.env.BENCH_INSTR_JOBS ?? 2560);
const FILL = Number(process.env.BENCH_FILL ?? 0.9);
const KEEP = process.env.BENCH_INSTR_KEEP; // a directory: keep each run's callgrind output there (for callgrind_annotate)
const REV = process.argv[2] ?? 'HEAD';
const RATES = process.env.BENCH_INSTR_RATES === '1';
const QUICK = process.env.BENCH_INSTR_QUICK === '1';
/** Targets of issue 19: Redis instructions per extra distinct scope list (users with quotas) and per one-job call. */
const TARGET = { perExtraScopeList: 100_000, oneJobCall: 300_000 };

/**
 * A case: `calls` calls of `batch` jobs each; job i of a call is user
 * u<i % users>'s (a scope list per user: the project, user-day, user-week),
 * with daily and weekly quotas when `quotas`. `fill`: the project budget in
 * jobs' hours, as a multiple of all the case's jobs (0.9: the last tenth held).
 */
type Case = { name: string; batch: number; calls: number; users: number; quotas: boolean; fill: number; priced?: 'by-user' | 'by-job' };
const CASES: Case[] = [
  { name: '128-job batches, none held', batch: 128, calls: JOBS / 128, users: 16, quotas: false, fill: 10 },
  { name: '32-job batches, last tenth held', batch: 32, calls: JOBS / 32, users: 16, quotas: false, fill: FILL },
];
/**
 * The first case priced (this tree only): 'by-user', user u's jobs on GPU
 * type u mod 4, every second user's of job type 'eval' (factor 0.5), so
 * the scope lists and groups are the unpriced case's; 'by-job', each user's
 * jobs over the four types in turn, with the per-type scope the gatekeeper
 * adds to a typed job. The project's budget is in dollars.
 */
const PRICED: Case[] = [
  { ...CASES[0]!, name: '128-job batches, none held, priced (a type per user: same groups)', priced: 'by-user' },
  { ...CASES[0]!, name: '128-job batches, none held, priced as typed jobs (4 types per user, per-type scope)', priced: 'by-job' },
];
const GPU_TYPES = Object.keys(GPU_RATES);

/** The cases the per-call terms are fitted from (nothing held, so every job takes the common path). */
const FIT = {
  one: { name: 'one-job calls, a user with quotas', batch: 1, calls: 200, users: 1, quotas: true, fill: 10 },
  same: { name: '64 jobs of one user with quotas', batch: 64, calls: 40, users: 1, quotas: true, fill: 10 },
  many: { name: '64 jobs of 64 users with quotas', batch: 64, calls: 40, users: 64, quotas: true, fill: 10 },
  sameFree: { name: '64 jobs of one user without quotas', batch: 64, calls: 40, users: 1, quotas: false, fill: 10 },
  manyFree: { name: '64 jobs of 64 users without quotas', batch: 64, calls: 40, users: 64, quotas: false, fill: 10 },
} satisfies Record<string, Case>;

const fromRev = (p: string) => execFileSync('git', ['show', `${REV}:src/redis/lua/${p}.lua`], { encoding: 'utf8' });
const scripts = { [REV]: withIncludes(fromRev('reserve'), fromRev), tree: scriptSource('reserve') };

/**
 * The batch argument in the form a script version reads: the tree's encoding
 * (reserveBatch, with groups), the scope lists alone (a03b91a until the
 * groups), or one array per job with its scope list, as scripts before
 * a03b91a read it.
 */
function batchArg(script: string, c: Case, first: number, now: number): string {
  const total = c.batch * c.calls;
  const reqs: ReserveRequest[] = Array.from({ length: c.batch }, (_, j) => {
    const i = first + j;
    const u = j % c.users;
    const user = `u${u}`;
    const scopes = ['project:bench', `user-day:${user}`, `user-week:${user}`];
    const meta: ReserveRequest['meta'] = { project: 'bench', user, gpus: 1 };
    if (c.priced) {
      meta.gpuType = GPU_TYPES[(c.priced === 'by-user' ? u : Math.floor(j / c.users)) % GPU_TYPES.length];
      meta.jobType = u % 2 === 1 ? 'eval' : 'train';
      if (c.priced === 'by-job') scopes.push(projectTypeScope('bench', meta.gpuType!).id);
    }
    // submittedAt as the gatekeeper sends it (BullMQ's timestamp): the job's identity with its id.
    return { jobId: String(i + 1), order: i + 1, submittedAt: now - total + i, amountGpuMs: hoursToGpuMs(1), meta, scopes };
  });
  if (script.includes('input.groups')) return reserveBatch(reqs, now).batch;
  if (script.includes('input.sigs')) return sigsBatch(reqs, now);
  return JSON.stringify(reqs.map((r) => [r.jobId, String(r.order), String(r.amountGpuMs), r.meta.project, JSON.stringify(r.meta), r.scopes, '']));
}

/** The batch as scripts from a03b91a to before the groups read it: each job carries its project, metadata and type. */
function sigsBatch(reqs: ReserveRequest[], now: number): string {
  const sigs: string[][] = [];
  const sigIndex = new Map<string, number>();
  const jobs = reqs.map((r) => {
    const key = r.scopes.join(',');
    if (!sigIndex.has(key)) sigIndex.set(key, sigs.push(r.scopes));
    return [r.jobId, String(r.order ?? now), String(r.amountGpuMs), r.meta.project, JSON.stringify(r.meta), sigIndex.get(key), r.meta.jobType ?? ''];
  });
  return JSON.stringify({ sigs, jobs });
}

/** Instructions a fresh redis-server executes while `script` (or nothing) runs the case. */
async function instructions(script: string | null, c: Case, label: string): Promise<number> {
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-instr-'));
  const port = await freePort();
  const out = join(dir, 'callgrind.out');
  const server = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, 'redis-server', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => server.on('exit', () => resolve()));
  let redis: ReturnType<typeof createRedis> | undefined;
  try {
    await waitFor(() => tcpOpen(port), 30_000, `redis-server under valgrind on port ${port}`);
    redis = createRedis(`redis://127.0.0.1:${port}`);
    const acc = new Accounting(redis, 'instr', 604_800, 'UTC');
    const now = Date.UTC(2026, 11, 1, 12);
    const total = c.batch * c.calls;
    if (c.priced) {
      for (const [type, rate] of Object.entries(GPU_RATES)) await acc.definitions.setRates(type, compactRates([{ effectiveFrom: 0, ...rate }]));
      for (const [type, factor] of Object.entries(FACTORS)) await acc.definitions.setFactor(type, factor);
      const usd = Math.max(...Object.values(GPU_RATES).map((r) => r.usdMicro)) * Math.round(total * c.fill);
      await acc.definitions.define('project:bench', { limitGpuMs: usd, unit: 'usd', policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: now });
    } else await acc.definitions.setLimit('project:bench', hoursToGpuMs(Math.round(total * c.fill)));
    const never = { jobsPerMinute: 1_000_000, burst: 100_000 };
    for (let u = 0; RATES && u < c.users; u++) await acc.definitions.defineRate(`user:u${u}`, never);
    if (RATES) await acc.definitions.defineRate('project:bench', never);
    for (let u = 0; c.quotas && u < c.users; u++) {
      for (const period of ['day', 'week'] as const) {
        await acc.definitions.define(`user-${period}:u${u}`, { limitGpuMs: hoursToGpuMs(total), policy: 'hard', gracePercent: null, period, rollover: false, rolloverCapGpuMs: null, setAt: now - 86_400_000 * 30 });
      }
    }
    const k = acc.keys;
    const sha = script ? ((await redis.script('LOAD', script)) as string) : '';
    for (let i = 0; script && i < total; i += c.batch) {
      // KEYS[4]: the usage factors hash since pricing, the exempt types set before; ARGV[7]: jobs of a type without a rate take the default.
      await redis.evalsha(sha, 4, k.open, k.ledger, k.allHeld, script.includes('usage factors hash') ? k.factors : k.exemptTypes,
        String(now), 'hold', k.prefix, acc.periodsArg(now), batchArg(script, c, i, now), '0', 'default');
    }
    redis.on('error', () => {}); // the shutdown below drops the connection
    redis.disconnect();
    process.kill(server.pid!, 'SIGTERM'); // redis-server exits; valgrind then writes its counts
    await exited;
    const text = readFileSync(out, 'utf8');
    if (KEEP) writeFileSync(join(KEEP, `${label}.callgrind`), text);
    const found = /^(?:summary|totals):\s*(\d+)/m.exec(text);
    if (!found) throw new Error(`no callgrind totals in ${out}`);
    return Number(found[1]);
  } finally {
    redis?.disconnect();
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Instructions per call of the case, REV's script (unless `treeOnly`: NaN) and this tree's, start-up and set-up subtracted. */
async function perCall(c: Case, treeOnly = false): Promise<{ rev: number; tree: number }> {
  const slug = c.name.replace(/\W+/g, '-');
  const base = await instructions(null, c, `${slug}-base`);
  const rev = treeOnly ? NaN : ((await instructions(scripts[REV]!, c, `${slug}-rev`)) - base) / c.calls;
  const tree = ((await instructions(scripts.tree, c, `${slug}-tree`)) - base) / c.calls;
  process.stderr.write(`${c.name}: ${REV} ${Math.round(rev)}, tree ${Math.round(tree)} instructions per call\n`);
  return { rev, tree };
}

/**
 * The per-call terms, fitted from the FIT cases as instructions per call =
 * fixed + perJob x jobs + perExtraScopeList x (distinct scope lists - 1).
 */
function terms(m: Record<keyof typeof FIT, number>) {
  const perJob = (m.same - m.one) / (FIT.same.batch - 1);
  return {
    oneJobCall: m.one,
    fixed: m.one - perJob,
    perJob,
    perExtraScopeList: (m.many - m.same) / (FIT.many.users - 1),
    perExtraScopeListNoQuotas: (m.manyFree - m.sameFree) / (FIT.manyFree.users - 1),
  };
}
type Terms = ReturnType<typeof terms>;

const fmt = (n: number) => Math.round(n).toLocaleString('en');

async function main(): Promise<void> {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is missing: apt-get install -y valgrind');
  }
  const rows: { case: string; [k: string]: number | string }[] = [];
  for (const c of QUICK ? CASES.slice(0, 1) : CASES) {
    const { rev, tree } = await perCall(c);
    rows.push({ case: c.name, [REV]: Math.round(rev / c.batch), tree: Math.round(tree / c.batch), ratio: Number((tree / rev).toFixed(3)) });
  }
  // Priced against the unpriced first case, this tree's script both.
  const unpriced = Number(rows[0]!.tree);
  const priced: { case: string; perJob: number; ratio: number }[] = [];
  for (const c of PRICED) {
    const perJob = Math.round((await perCall(c, true)).tree / c.batch);
    priced.push({ case: c.name, perJob, ratio: Number((perJob / unpriced).toFixed(3)) });
  }
  if (QUICK) {
    const one = await perCall(FIT.one);
    console.log(JSON.stringify({ perJob: rows, priced, oneJobCall: { [REV]: Math.round(one.rev), tree: Math.round(one.tree) } }, null, 2));
    return;
  }
  const measured = { rev: {} as Record<keyof typeof FIT, number>, tree: {} as Record<keyof typeof FIT, number> };
  for (const [key, c] of Object.entries(FIT) as [keyof typeof FIT, Case][]) {
    const m = await perCall(c);
    measured.rev[key] = m.rev;
    measured.tree[key] = m.tree;
  }
  const [rev, tree] = [terms(measured.rev), terms(measured.tree)];
  const round = (t: Terms) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v)])) as Terms;
  const met = { perExtraScopeList: tree.perExtraScopeList <= TARGET.perExtraScopeList, oneJobCall: tree.oneJobCall <= TARGET.oneJobCall };
  const termRows: [string, keyof Terms, string][] = [
    ['one-job call (a user with quotas)', 'oneJobCall', `≤ ${fmt(TARGET.oneJobCall)}: ${met.oneJobCall ? 'met' : 'not met'}`],
    ['fixed, per call', 'fixed', ''],
    ['per job', 'perJob', ''],
    ['per extra distinct scope list, users with quotas', 'perExtraScopeList', `≤ ${fmt(TARGET.perExtraScopeList)}: ${met.perExtraScopeList ? 'met' : 'not met'}`],
    ['per extra distinct scope list, users without quotas', 'perExtraScopeListNoQuotas', ''],
  ];
  const md = [
    `Redis instructions per job of reserve.lua (callgrind, ${JOBS} jobs per case, 3 scopes per job, 16 users), this tree against ${REV}:`,
    '',
    `| case | ${REV} | this tree | ratio |`,
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.case} | ${fmt(Number(r[REV]))} | ${fmt(Number(r.tree))} | ${r.ratio} |`),
    '',
    `Priced (this tree): the first case's jobs over ${GPU_TYPES.join(', ')} with their rates, every second user's at factor 0.5, the budget in dollars, against the same jobs unpriced (${fmt(unpriced)}):`,
    '',
    '| case | per job | priced / unpriced |',
    '| --- | --- | --- |',
    ...priced.map((r) => `| ${r.case} | ${fmt(r.perJob)} | ${r.ratio} |`),
    '',
    `Redis instructions per call, fitted as fixed + per job × jobs + per extra scope list × (distinct scope lists − 1) from calls of 1 and 64 jobs of 1 and 64 users (each user: project, user-day, user-week; quotas: daily and weekly limits), nothing held:`,
    '',
    `| term | ${REV} | this tree | target |`,
    '| --- | --- | --- | --- |',
    ...termRows.map(([label, k, target]) => `| ${label} | ${fmt(rev[k])} | ${fmt(tree[k])} | ${target} |`),
  ].join('\n');
  console.log(md);
  save('reserve-instructions.md', md + '\n');
  // This tree's terms at the top (what the bench summary shows), the revision's under `before`.
  const json = { ...round(tree), targets: TARGET, met, before: { revision: REV, ...round(rev) }, jobs: JOBS, rows, priced: { unpricedPerJob: unpriced, rows: priced } };
  save('reserve-instructions.json', JSON.stringify(json, null, 2) + '\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
