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
 * jobs are the admission benchmark's: one-hour jobs of one project and 16
 * users (three scopes each), the budget at BENCH_FILL (0.9) of them, so the
 * last tenth is held.
 *
 * Usage: npm run bench:instructions [-- <git revision>]
 * Env: BENCH_INSTR_JOBS (2560 per case). Needs valgrind and redis-server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Accounting } from '../src/accounting/counters.ts';
import { reserveBatch } from '../src/accounting/reserve-wire.ts';
import type { ReserveRequest } from '../src/accounting/types.ts';
import { scriptSource, withIncludes } from '../src/redis/scripts.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createRedis } from '../queues/connection.ts';
import { freePort, tcpOpen, waitFor } from '../test/support/infra.ts';
import { save } from './results.ts';

const JOBS = Number(process.env.BENCH_INSTR_JOBS ?? 2560);
const FILL = Number(process.env.BENCH_FILL ?? 0.9);
const REV = process.argv[2] ?? 'HEAD';
const CASES = [
  { name: '128-job batches, none held', batch: 128, fill: 10 },
  { name: '32-job batches, last tenth held', batch: 32, fill: FILL },
];

const fromRev = (p: string) => execFileSync('git', ['show', `${REV}:src/redis/lua/${p}.lua`], { encoding: 'utf8' });
const scripts = { [REV]: withIncludes(fromRev('reserve'), fromRev), tree: scriptSource('reserve') };

/**
 * The batch argument in the form a script version reads: the tree's encoding
 * (reserveBatch, with groups), the scope lists alone (a03b91a until the
 * groups), or one array per job with its scope list, as scripts before
 * a03b91a read it.
 */
function batchArg(script: string, first: number, n: number, now: number): string {
  const reqs: ReserveRequest[] = Array.from({ length: n }, (_, j) => {
    const i = first + j;
    const user = `u${i % 16}`;
    // submittedAt as the gatekeeper sends it (BullMQ's timestamp): the job's identity with its id.
    return { jobId: String(i + 1), order: i + 1, submittedAt: now - JOBS + i, amountGpuMs: hoursToGpuMs(1), meta: { project: 'bench', user, gpus: 1 }, scopes: ['project:bench', `user-day:${user}`, `user-week:${user}`] };
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
async function instructions(script: string | null, c: (typeof CASES)[number]): Promise<number> {
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
    await acc.definitions.setLimit('project:bench', hoursToGpuMs(JOBS * c.fill));
    const k = acc.keys;
    const now = Date.UTC(2026, 11, 1, 12);
    const sha = script ? ((await redis.script('LOAD', script)) as string) : '';
    for (let i = 0; i < JOBS; i += c.batch) {
      const arg = batchArg(script ?? '', i, c.batch, now);
      if (script) await redis.evalsha(sha, 4, k.open, k.ledger, k.allHeld, k.exemptTypes, String(now), 'hold', k.prefix, acc.periodsArg(now), arg, '0');
    }
    redis.on('error', () => {}); // the shutdown below drops the connection
    redis.disconnect();
    process.kill(server.pid!, 'SIGTERM'); // redis-server exits; valgrind then writes its counts
    await exited;
    const total = /^(?:summary|totals):\s*(\d+)/m.exec(readFileSync(out, 'utf8'));
    if (!total) throw new Error(`no callgrind totals in ${out}`);
    return Number(total[1]);
  } finally {
    redis?.disconnect();
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('valgrind is missing: apt-get install -y valgrind');
  }
  const rows: { case: string; [k: string]: number | string }[] = [];
  for (const c of CASES) {
    const base = await instructions(null, c);
    const per = async (s: string) => ((await instructions(s, c)) - base) / JOBS;
    const [rev, tree] = [await per(scripts[REV]!), await per(scripts.tree)];
    rows.push({ case: c.name, [REV]: Math.round(rev), tree: Math.round(tree), ratio: Number((tree / rev).toFixed(3)) });
    process.stderr.write(`${c.name}: ${REV} ${Math.round(rev)}, tree ${Math.round(tree)} instructions per job\n`);
  }
  const md = [
    `Redis instructions per job of reserve.lua (callgrind, ${JOBS} jobs per case, 3 scopes per job, 16 users), this tree against ${REV}:`,
    '',
    `| case | ${REV} | this tree | ratio |`,
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.case} | ${Number(r[REV]).toLocaleString('en')} | ${Number(r.tree).toLocaleString('en')} | ${r.ratio} |`),
  ].join('\n');
  console.log(md);
  save('reserve-instructions.md', md + '\n');
  save('reserve-instructions.json', JSON.stringify({ against: REV, jobs: JOBS, rows }, null, 2) + '\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
