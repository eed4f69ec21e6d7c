/**
 * `npm run bench`: every part in turn, then the summary table. A part exits
 * non-zero when one of its checks fails (over-admission, a wrong count) and,
 * for the dashboard and webhook parts, when it misses its latency target.
 * The remaining parts still run, so one slow moment on a shared machine does
 * not lose the others' figures. This names each part that failed, and the
 * summary marks their rows as possibly from an earlier run; it then exits
 * non-zero. BENCH_PARTS (comma separated, e.g. admission,capacity) runs
 * only those.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ALL = ['admission', 'webhooks', 'dashboard', 'sql-baseline', 'capacity', 'scaling', 'wake', 'auth'];
const PARTS = process.env.BENCH_PARTS ? process.env.BENCH_PARTS.split(',').map((p) => p.trim()).filter(Boolean) : ALL;
const unknown = PARTS.filter((p) => !ALL.includes(p));
if (PARTS.length === 0 || unknown.length > 0) {
  console.error(`BENCH_PARTS: ${unknown.length > 0 ? `unknown part(s) ${unknown.join(', ')}` : 'names no part'}; the parts are ${ALL.join(', ')}`);
  process.exit(2);
}

/** Runs bench/<name>.ts with this process's Node flags (tsx's loader); true if it exited 0. */
const run = (name: string, env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [...process.execArgv, fileURLToPath(new URL(`./${name}.ts`, import.meta.url))], { stdio: 'inherit', env }).status === 0;

const failed = PARTS.filter((part) => !run(part));
if (!run('summary', { ...process.env, BENCH_FAILED: failed.join(',') })) failed.push('summary');
if (failed.length > 0) {
  console.error(`\nbench: ${failed.join(', ')} failed a check or missed a target (see each part's output above)`);
  process.exitCode = 1;
}
