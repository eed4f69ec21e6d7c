/**
 * One isolated environment per test file (or per test): its own queue prefix
 * (so its own Redis keys) and its own Postgres database, on the shared real
 * servers. A failed test keeps them for inspection (see `Open` below).
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, beforeAll, inject, onTestFinished, TestRunner, type RunnerTask, type RunnerTestFile } from 'vitest';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../src/config.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { createRedis } from '../../queues/connection.ts';
import { createPool, type Pool } from '../../src/db/pool.ts';
import { migrate } from '../../src/db/migrate.ts';
import { Accounting } from '../../src/accounting/counters.ts';
import { Budgets } from '../../src/accounting/budgets.ts';
import { systemClock, type Clock } from '../../src/clock.ts';
import { createDatabase, unlinkMatching } from './infra.ts';

export class TestClock implements Clock {
  constructor(public t = Date.UTC(2026, 10, 25, 12, 0, 0)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface TestEnv {
  config: Config;
  env: Record<string, string>;
  redis: Redis;
  pool: Pool;
  log: Logger;
  accounting: Accounting;
  /**
   * Budgets on `clock` (which starts at 2026-11-25 12:00 UTC and moves only
   * when told), or on the system clock for a file created with `liveClock`.
   */
  budgets: Budgets;
  clock: TestClock;
  /** New connection for a worker (closed by close()). */
  connection(): Redis;
  /** Start `src/main.ts` with these roles in a child process (SIGKILLed by close() if still running). */
  spawn(roles: string, extra?: Record<string, string>): ChildProcess;
  /**
   * Kill the children, close the connections, then drop the database and
   * unlink the keys, unless a test or hook failed while this environment was
   * open: then both stay, and it prints where. Called inside a test (or its
   * afterEach), it decides once that test has finished.
   */
  close(): Promise<void>;
}

/**
 * Environments whose database and keys are not gone yet, with the tests and
 * hooks of this file that failed while each was open: close() keeps those.
 * A failed test's report gets one more error naming what was kept, and the
 * global teardown (global-setup.ts) leaves the servers running while any
 * kept database is on them. The hooks below run in every test file that
 * imports this module (each file has its own copy of it).
 */
interface Open {
  /** "database gk_… and Redis prefix …" with where to find them. */
  what: string;
  failed: string[];
  /** Suites (hooks) that had failed before it was created. */
  failedBefore: Set<string>;
}
const open = new Set<Open>();
let file: RunnerTestFile | undefined;
// (vitest wants the context destructured; the suite, and from it the file, is the second argument)
beforeAll(({}, suite) => {
  file = suite.file;
});
afterEach(({ task }) => {
  if (task.result?.state !== 'fail' || open.size === 0) return;
  for (const o of open) o.failed.push(task.fullTestName ?? task.name);
  // Thrown after the test failed, it joins that test's errors: the report names what was kept.
  const message = [...open].map((o) => `kept ${o.what} for inspection`).join('; ');
  throw Object.assign(new Error(message), { name: 'KeptForInspection', stack: `KeptForInspection: ${message}` });
});

/** Suites of this file whose hooks failed (a beforeAll that threw), by name. */
function failedSuites(): Set<string> {
  const out = new Set<string>();
  const walk = (t: RunnerTask) => {
    if (t.type !== 'suite') return;
    if (t.result?.state === 'fail' && t.result.errors?.length) out.add(t.fullTestName ?? t.name);
    t.tasks.forEach(walk);
  };
  if (file) walk(file);
  return out;
}

export interface TestEnvOptions {
  /**
   * Budgets read and write periods at the real time, as a gatekeeper on the
   * system clock does. A file whose gatekeeper or pipeline runs on
   * systemClock needs it: otherwise its budgets see 2026-11-25's day, week
   * and month while admissions count in today's (and the file fails on any
   * other day).
   */
  liveClock?: boolean;
}

export async function createTestEnv(overrides: Record<string, string> = {}, opts: TestEnvOptions = {}): Promise<TestEnv> {
  const redisUrl = overrides.REDIS_URL ?? inject('redisUrl');
  const name = `t${randomBytes(5).toString('hex')}`;
  // On a cluster the prefix carries a hash tag, as config demands there.
  const prefix = overrides.REDIS_CLUSTER === '1' ? `{${name}}` : name;
  const dbName = `gk_${name}`;
  const db = await createDatabase(inject('databaseUrl'), dbName);
  const env: Record<string, string> = {
    REDIS_URL: redisUrl,
    DATABASE_URL: db.url,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: process.env.GK_TEST_LOG_LEVEL ?? 'silent',
    GATEKEEPER_ADMIN_TOKEN: 'test-admin-token-0123456789',
    ...overrides,
  };
  const config = loadConfig(env);
  const connect = () => createRedis(redisUrl, { cluster: config.redisCluster });
  const redis = connect();
  const pool = createPool(config.databaseUrl!);
  await migrate(pool);
  const accounting = new Accounting(redis, prefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
  const conns: Redis[] = [redis];
  const children: ChildProcess[] = [];
  const clock = new TestClock();
  const shared = redisUrl === inject('redisUrl');
  const record: Open = {
    what: `database ${dbName} (${db.url}) and Redis prefix ${prefix} (keys ${prefix}:* and ${accounting.keys.prefix}* on ${redisUrl}${shared ? '' : ", this file's own server"})`,
    failed: [],
    failedBefore: failedSuites(),
  };
  open.add(record);
  /** Drop the database and unlink the keys, or keep both when something failed while they were open. */
  const finish = async (testFailed: boolean) => {
    open.delete(record);
    const failed = [...record.failed, ...[...failedSuites()].filter((s) => !record.failedBefore.has(s))];
    const keep = testFailed || failed.length > 0;
    if (keep) console.error(`kept ${record.what} for inspection; failed while it was open: ${failed.join('; ') || 'this test'}`);
    else {
      // Remove this environment's keys so a shared REDIS_URL stays clean.
      await unlinkMatching(redis, `${prefix}:*`);
      await unlinkMatching(redis, `${accounting.keys.prefix}*`);
    }
    await redis.quit().catch(() => {});
    if (!keep) await db.drop();
  };
  return {
    config,
    env,
    redis,
    pool,
    log: createLogger(config.logLevel),
    accounting,
    budgets: new Budgets(pool, accounting, opts.liveClock ? systemClock : clock),
    clock,
    connection() {
      const c = connect();
      conns.push(c);
      return c;
    },
    spawn(roles, extra = {}) {
      const child = spawnRoles(env, roles, extra);
      children.push(child);
      return child;
    },
    async close() {
      for (const c of children) c.kill('SIGKILL');
      await Promise.all(children.map(waitExit));
      await pool.end();
      await Promise.all(conns.filter((c) => c !== redis).map((c) => c.quit().catch(() => {})));
      // Inside a test its outcome is not known yet: decide once it is.
      if (TestRunner.getCurrentTest()) onTestFinished(({ task }) => finish(task.result?.state === 'fail'));
      else await finish(false);
    },
  };
}

/** Poll until `check` holds (or throw with the last value after timeoutMs). */
export async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T = await read();
  while (!check(last)) {
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
    last = await read();
  }
  return last;
}

/** Start `src/main.ts` in a child process with the given roles. */
export function spawnRoles(env: Record<string, string>, roles: string, extra: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env, GATEKEEPER_ROLES: roles, ...extra },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (d: Buffer) => {
    if (process.env.GK_TEST_LOG_LEVEL) process.stderr.write(d);
  });
  return child;
}

export function waitExit(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
  });
}
