/**
 * `npm run bench` (fourth part): gpu-gatekeeper against the obvious SQL
 * design many budget services use — one Postgres transaction per job that
 * locks the budget rows it touches (SELECT … FOR UPDATE), checks, inserts the
 * reservation and bumps the counters — both driven by 64 concurrent
 * submitters, on the same machine, in the same run, alternating.
 *
 * Both do the same work per job: three scopes (project budget, user daily and
 * weekly quota; 16 users), admitted jobs added to gpu-exec, the rest to
 * gpu-held; the budget is 90 % of the jobs, so both must hold exactly the rest
 * (any over-admission fails the run). Time = first submission to the last
 * job placed. Target: gatekeeper ≥ 5 × the SQL design.
 * Env: BENCH_SQL_JOBS (5000), BENCH_SQL_ROUNDS (3), BENCH_SUBMITTERS (64).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Queue } from 'bullmq';
import pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createRedis } from '../queues/connection.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createDatabase, startInfra, unlinkMatching } from '../test/support/infra.ts';
import { save } from './results.ts';

const JOBS = Number(process.env.BENCH_SQL_JOBS ?? 5000);
const ROUNDS = Number(process.env.BENCH_SQL_ROUNDS ?? 3);
const SUBMITTERS = Number(process.env.BENCH_SUBMITTERS ?? 64);
const H = hoursToGpuMs(1);
const LIMIT = Math.floor(JOBS * 0.9) * H;
const log = createLogger('silent');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const user = (i: number) => `u${i % 16}`;

/** Run `n` jobs through `submit` from SUBMITTERS concurrent loops; seconds taken. */
async function drive(submit: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: SUBMITTERS }, async () => {
    for (let i = next++; i < JOBS; i = next++) await submit(i);
  }));
  return (performance.now() - t0) / 1000;
}

async function sqlRound(databaseUrl: string, redisUrl: string): Promise<{ seconds: number; admitted: number; problems: string[] }> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: SUBMITTERS });
  const prefix = `bench-sql-${randomBytes(3).toString('hex')}`;
  const redis = createRedis(redisUrl);
  const exec = new Queue('gpu-exec', { connection: redis, prefix });
  const held = new Queue('gpu-held', { connection: redis, prefix });
  try {
    await pool.query(`DROP TABLE IF EXISTS sql_reservations, sql_scopes`);
    await pool.query(`CREATE TABLE sql_scopes (scope text PRIMARY KEY, limit_ms bigint, reserved_ms bigint NOT NULL DEFAULT 0)`);
    await pool.query(`CREATE TABLE sql_reservations (job_id text PRIMARY KEY, scopes text[] NOT NULL, amount_ms bigint NOT NULL, state text NOT NULL)`);
    await pool.query(`INSERT INTO sql_scopes (scope, limit_ms) VALUES ('project:bench', $1)`, [LIMIT]);
    for (let u = 0; u < 16; u++) await pool.query(`INSERT INTO sql_scopes (scope, limit_ms) VALUES ($1, NULL), ($2, NULL)`, [`user-day:u${u}`, `user-week:u${u}`]);
    let admitted = 0;
    const seconds = await drive(async (i) => {
      const scopes = ['project:bench', `user-day:${user(i)}`, `user-week:${user(i)}`].sort(); // one lock order: no deadlocks
      const c = await pool.connect();
      let fits = false;
      try {
        await c.query('BEGIN');
        const rows = (await c.query(`SELECT scope, limit_ms, reserved_ms FROM sql_scopes WHERE scope = ANY($1) ORDER BY scope FOR UPDATE`, [scopes])).rows;
        fits = rows.every((r) => r.limit_ms === null || Number(r.reserved_ms) + H <= Number(r.limit_ms));
        await c.query(`INSERT INTO sql_reservations VALUES ($1, $2, $3, $4)`, [String(i), scopes, H, fits ? 'reserved' : 'held']);
        if (fits) await c.query(`UPDATE sql_scopes SET reserved_ms = reserved_ms + $2 WHERE scope = ANY($1)`, [scopes, H]);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK');
        throw err;
      } finally {
        c.release();
      }
      const data = { project: 'bench', user: user(i), estimatedGpuHours: 1 };
      if (fits) {
        admitted++;
        await exec.add('bench', data, { jobId: `intake-${i}` });
      } else await held.add('bench', data, { jobId: `intake-${i}` });
    });
    const reserved = Number((await pool.query(`SELECT reserved_ms FROM sql_scopes WHERE scope = 'project:bench'`)).rows[0].reserved_ms);
    const problems: string[] = [];
    if (reserved > LIMIT) problems.push(`OVER-ADMISSION: ${reserved} > ${LIMIT}`);
    if (admitted !== LIMIT / H) problems.push(`admitted ${admitted} != ${LIMIT / H}`);
    return { seconds, admitted, problems };
  } finally {
    await Promise.all([exec.close(), held.close()]);
    await unlinkMatching(redis, `${prefix}:*`);
    await redis.quit();
    await pool.query(`DROP TABLE IF EXISTS sql_reservations, sql_scopes`).catch(() => {});
    await pool.end();
  }
}

async function gatekeeperRound(redisUrl: string): Promise<{ seconds: number; admitted: number; problems: string[] }> {
  const prefix = `bench-gk-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix });
  const [admin, connection, workerConnection] = [0, 1, 2].map(() => createRedis(redisUrl));
  const accounting = new Accounting(admin!, prefix, config.settledRetainSeconds);
  const q = (name: string) => new Queue(name, { connection: admin!, prefix });
  const [intake, exec, held] = [q(config.queues.intake), q(config.queues.exec), q(config.queues.held)];
  const gk = createGatekeeper({ config, workerConnection: workerConnection!, connection: connection!, log, clock: systemClock });
  try {
    await accounting.definitions.setLimit('project:bench', LIMIT);
    await gk.worker.waitUntilReady();
    const t0 = performance.now();
    await drive(async (i) => {
      await intake.add('bench', { project: 'bench', user: user(i), estimatedGpuHours: 1 });
    });
    for (;;) {
      const [e, h] = await Promise.all([exec.count(), held.count()]);
      if (e + h >= JOBS) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const seconds = (performance.now() - t0) / 1000;
    const s = await accounting.readScope('project:bench');
    const admitted = await exec.count();
    const problems: string[] = [];
    if (s.reservedGpuMs > LIMIT) problems.push(`OVER-ADMISSION: ${s.reservedGpuMs} > ${LIMIT}`);
    if (admitted !== LIMIT / H) problems.push(`admitted ${admitted} != ${LIMIT / H}`);
    return { seconds, admitted, problems };
  } finally {
    await gk.close();
    await Promise.all([intake.close(), exec.close(), held.close()]);
    await unlinkMatching(admin!, `${prefix}:*`);
    await unlinkMatching(admin!, `gk:{${prefix}}:*`);
    await Promise.all([admin, connection, workerConnection].map((c) => c!.quit()));
  }
}

async function main(): Promise<void> {
  process.env.GK_TEST_NO_DOCKER ??= '1';
  const infra = await startInfra();
  const db = await createDatabase(infra.databaseUrl, `gk_bench_sql_${Date.now()}`);
  const runs: { kind: 'sql' | 'gatekeeper'; seconds: number; admitted: number; problems: string[] }[] = [];
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      runs.push({ kind: 'sql', ...(await sqlRound(db.url, infra.redisUrl)) });
      runs.push({ kind: 'gatekeeper', ...(await gatekeeperRound(infra.redisUrl)) });
      process.stderr.write(`round ${r}/${ROUNDS}: ${runs.slice(-2).map((x) => `${x.kind} ${(JOBS / x.seconds).toFixed(0)}/s`).join(', ')}\n`);
    }
  } finally {
    await db.drop();
    await infra.stop();
  }
  const rate = (k: string) => median(runs.filter((x) => x.kind === k).map((x) => JOBS / x.seconds));
  const ratio = rate('gatekeeper') / rate('sql');
  const bad = runs.filter((x) => x.problems.length > 0);
  const md = [
    `Gatekeeper vs a Postgres row-lock design, ${JOBS} jobs × 3 scopes, ${SUBMITTERS} concurrent submitters, ${ROUNDS} rounds alternating ` +
      `(${infra.how}; ${os.cpus().length} cores; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}):`,
    '',
    '| design | jobs/s (median) | per round |',
    '| --- | --- | --- |',
    `| SQL: SELECT … FOR UPDATE per job | ${rate('sql').toFixed(0)} | ${runs.filter((x) => x.kind === 'sql').map((x) => (JOBS / x.seconds).toFixed(0)).join(', ')} |`,
    `| gpu-gatekeeper | ${rate('gatekeeper').toFixed(0)} | ${runs.filter((x) => x.kind === 'gatekeeper').map((x) => (JOBS / x.seconds).toFixed(0)).join(', ')} |`,
    '',
    'Both stores as the test setup runs them, durability relaxed alike (Postgres fsync=off, synchronous_commit=off; Redis without AOF); ' +
      'with commits on disk the SQL design pays a flush per job and the gap widens.',
    `Ratio: ${ratio.toFixed(1)} × (target ≥ 5: ${ratio >= 5 ? 'met' : 'NOT met'}). ` +
      (bad.length === 0 ? 'Over-admission: none in either design.' : `CHECKS FAILED: ${bad.map((x) => `${x.kind}: ${x.problems.join('; ')}`).join(' | ')}`),
  ].join('\n');
  console.log(md);
  save('sql-baseline.md', md + '\n');
  save('sql-baseline.json', JSON.stringify({ jobs: JOBS, submitters: SUBMITTERS, runs, ratio }, null, 2) + '\n');
  if (bad.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
