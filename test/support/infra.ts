/**
 * Real Redis and Postgres for tests and benchmarks, found in this order:
 *   1. a Docker engine answers: testcontainers starts redis:7 and postgres:15;
 *   2. REDIS_URL / DATABASE_URL are set: use them (each on its own);
 *   3. otherwise start local `redis-server` and `postgres` binaries in a
 *      temp dir on free loopback ports (PostgreSQL 15 from
 *      /usr/lib/postgresql/15/bin or PATH; as root, run as user postgres).
 * With none available it fails saying what to install.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, chownSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Redis } from 'ioredis';

export interface Infra {
  redisUrl: string;
  /** A maintenance database URL; tests create their own databases from it. */
  databaseUrl: string;
  how: string;
  stop(): Promise<void>;
}

export async function startInfra(): Promise<Infra> {
  const docker = await tryDocker();
  if (docker) return docker;
  const stops: (() => Promise<void>)[] = [];
  const how: string[] = [];
  let redisUrl = process.env.REDIS_URL;
  let databaseUrl = process.env.DATABASE_URL;
  const dir = mkdtempSync(join(tmpdir(), 'gk-infra-'));
  if (redisUrl) how.push('REDIS_URL');
  else {
    const r = await startLocalRedis(dir);
    redisUrl = r.url;
    stops.push(r.stop);
    how.push('local redis-server');
  }
  if (databaseUrl) how.push('DATABASE_URL');
  else {
    const p = await startLocalPostgres(dir);
    databaseUrl = p.url;
    stops.push(p.stop);
    how.push('local postgres');
  }
  return {
    redisUrl,
    databaseUrl,
    how: how.join(' + '),
    async stop() {
      for (const s of stops) await s().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function tryDocker(): Promise<Infra | null> {
  if (process.env.GK_TEST_NO_DOCKER) return null;
  const socket = process.env.DOCKER_HOST || existsSync('/var/run/docker.sock');
  if (!socket) return null;
  try {
    const tc = await import('testcontainers');
    await withTimeout(tc.getContainerRuntimeClient(), 5_000);
    const redis = await new tc.GenericContainer('redis:7')
      .withCommand(['redis-server', '--maxmemory-policy', 'noeviction', '--appendonly', 'yes'])
      .withExposedPorts(6379)
      .start();
    const pg = await new tc.GenericContainer('postgres:15')
      .withEnvironment({ POSTGRES_PASSWORD: 'postgres' })
      .withExposedPorts(5432)
      .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return {
      redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
      databaseUrl: `postgres://postgres:postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`,
      how: 'testcontainers',
      async stop() {
        await Promise.all([redis.stop(), pg.stop()]);
      },
    };
  } catch {
    return null; // no engine answering: fall through to local binaries
  }
}

/** A redis-server in `dir` on a free loopback port (or `port`: a restart on the same data). */
export async function startLocalRedis(dir: string, extraArgs: string[] = [], port?: number): Promise<{ url: string; port: number; proc: ChildProcess; stop: () => Promise<void> }> {
  const bin = which('redis-server');
  if (!bin) throw new Error('redis-server not found: install it (apt-get install -y redis-server) or set REDIS_URL');
  port ??= await freePort();
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir,
      '--maxmemory-policy', 'noeviction', '--dbfilename', `dump-${port}.rdb`, ...extraArgs],
    { stdio: 'ignore' },
  );
  await waitFor(async () => tcpOpen(port), 10_000, `redis-server on port ${port}`);
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop: () => killAndWait(proc) };
}

/**
 * A throwaway Postgres in `dir` (initdb + postgres on a free loopback port).
 * `stop` shuts it down; `start` brings it back on the same data and port
 * (the outage test uses both).
 */
export async function startLocalPostgres(dir: string): Promise<{ url: string; stop: () => Promise<void>; start: () => Promise<void> }> {
  const binDir = ['/usr/lib/postgresql/15/bin', ...(process.env.PATH ?? '').split(':')].find((d) =>
    existsSync(join(d, 'initdb')),
  );
  if (!binDir) {
    throw new Error('PostgreSQL server binaries (initdb, postgres) not found: install PostgreSQL 15 or set DATABASE_URL');
  }
  const pgdata = join(dir, 'pg');
  const asUser = process.getuid?.() === 0 ? postgresUser() : undefined;
  if (asUser) chownSync(dir, asUser.uid, asUser.gid);
  execFileSync(join(binDir, 'initdb'), ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], {
    stdio: 'ignore',
    ...(asUser ?? {}),
  });
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let proc: ChildProcess;
  const start = async () => {
    proc = spawn(
      join(binDir, 'postgres'),
      ['-D', pgdata, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off',
        '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'],
      { stdio: 'ignore', ...(asUser ?? {}) },
    );
    await waitFor(
      async () => {
        const c = new pg.Client({ connectionString: url });
        try {
          await c.connect();
          await c.query('SELECT 1');
          return true;
        } finally {
          await c.end().catch(() => {});
        }
      },
      30_000,
      `postgres on port ${port}`,
    );
  };
  await start();
  return { url, stop: () => killAndWait(proc!, 'SIGINT'), start };
}

function postgresUser(): { uid: number; gid: number } {
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
      const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
      return { uid, gid };
    } catch {
      /* try the next */
    }
  }
  throw new Error('running as root and no postgres/nobody user to run the postgres server as');
}

function which(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  }
  return null;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(true)); // in use: someone listens there
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

function killAndWait(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill(signal);
    setTimeout(() => {
      proc.kill('SIGKILL');
    }, 5_000).unref();
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);
}

/**
 * A database of its own on the server at `adminUrl` (a test file's, a
 * benchmark's): its URL, and drop() to remove it, connections and all.
 */
export async function createDatabase(adminUrl: string, name: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const run = async (sql: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await run(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => run(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** Delete every key matching a pattern (a test's or a benchmark run's own prefix). */
export { unlinkMatching } from '../../src/redis/unlink.ts';
