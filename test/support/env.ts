/**
 * One isolated environment per test file: its own queue prefix (so its own
 * Redis keys) and its own Postgres database, on the shared real servers.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { inject } from 'vitest';
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
  close(): Promise<void>;
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
  const db = await createDatabase(inject('databaseUrl'), `gk_${name}`);
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
  const accounting = new Accounting(redis, prefix, config.settledRetainSeconds, config.timeZone);
  const conns: Redis[] = [redis];
  const children: ChildProcess[] = [];
  const clock = new TestClock();
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
      // Remove this file's keys so a shared REDIS_URL stays clean.
      await unlinkMatching(redis, `${prefix}:*`);
      await unlinkMatching(redis, `${accounting.keys.prefix}*`);
      await Promise.all(conns.map((c) => c.quit().catch(() => {})));
      await db.drop();
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
