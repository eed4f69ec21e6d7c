/**
 * `npm run bench`: every part in turn, then the summary table. A part that
 * misses its target or fails a check exits non-zero. The remaining parts
 * still run, so one slow moment on a shared machine does not lose the
 * others' figures. This exits non-zero at the end if any part did, and
 * names each one that did. BENCH_PARTS (comma separated, e.g. admission,capacity)
 * runs only those.
 */
import { spawnSync } from 'node:child_process';

const ALL = ['admission', 'webhooks', 'dashboard', 'sql-baseline', 'capacity', 'scaling'];
const PARTS = process.env.BENCH_PARTS ? process.env.BENCH_PARTS.split(',').map((p) => p.trim()) : ALL;
const unknown = PARTS.filter((p) => !ALL.includes(p));
if (unknown.length > 0) {
  console.error(`BENCH_PARTS: unknown part(s) ${unknown.join(', ')}; the parts are ${ALL.join(', ')}`);
  process.exit(2);
}

const failed: string[] = [];
for (const part of PARTS) {
  const r = spawnSync(process.execPath, [...process.execArgv, new URL(`./${part}.ts`, import.meta.url).pathname], { stdio: 'inherit' });
  if (r.status !== 0) failed.push(`${part} (${r.signal ?? `exit ${r.status}`})`);
}
const summary = spawnSync(process.execPath, [...process.execArgv, new URL('./summary.ts', import.meta.url).pathname], { stdio: 'inherit' });
if (summary.status !== 0) failed.push('summary');
if (failed.length > 0) {
  console.error(`\nbench: missed a target or failed a check: ${failed.join(', ')} (see each part's output above)`);
  process.exitCode = 1;
}
