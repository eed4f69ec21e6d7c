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
import { existsSync, mkdirSync, mkdtempSync, rmSync, chownSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';

export interface Infra {
  redisUrl: string;
  /** A maintenance database URL; tests create their own databases from it. */
  databaseUrl: string;
  how: string;
  stop(): Promise<void>;
  /**
   * Instead of stop(), for a run whose failed tests kept their databases
   * and keys (test/support/env.ts): leave the servers this run started
   * running, detached from it, and say how to reach and stop them. Absent
   * when it started none (Docker's containers are removed with the run).
   */
  leaveRunning?: () => string;
}

export async function startInfra(): Promise<Infra> {
  const docker = await tryDocker();
  if (docker) return docker;
  const stops: (() => Promise<void>)[] = [];
  const local: { what: string; proc: () => ChildProcess }[] = [];
  const how: string[] = [];
  let redisUrl = process.env.REDIS_URL;
  let databaseUrl = process.env.DATABASE_URL;
  const dir = mkdtempSync(join(tmpdir(), 'gk-infra-'));
  if (redisUrl) how.push('REDIS_URL');
  else {
    const r = await startLocalRedis(dir);
    redisUrl = r.url;
    stops.push(r.stop);
    local.push({ what: `redis-server at ${r.url}`, proc: () => r.proc });
    how.push('local redis-server');
  }
  if (databaseUrl) how.push('DATABASE_URL');
  else {
    const p = await startLocalPostgres(dir);
    databaseUrl = p.url;
    stops.push(p.stop);
    local.push({ what: `postgres at ${p.url}`, proc: p.proc });
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
    leaveRunning: local.length === 0 ? undefined : () => {
      for (const l of local) l.proc().unref();
      const pids = local.map((l) => l.proc().pid).join(' ');
      return `${local.map((l) => `${l.what} (pid ${l.proc().pid})`).join(' and ')} left running, data in ${dir}; stop them with: kill ${pids}; rm -rf ${dir}`;
    },
  };
}

/** Databases test/support/env.ts created (gk_t + 10 hex) that are still on the server: kept by failed tests. */
export async function keptDatabases(adminUrl: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    const r = await c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname ~ '^gk_t[0-9a-f]{10}$' ORDER BY datname`);
    return r.rows.map((row) => row.datname);
  } finally {
    await c.end();
  }
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
  await waitFor(async () => tcpOpen(port), 10_000, `redis-server on port ${port}`).catch(async (err: unknown) => {
    await killAndWait(proc); // a server that never listened is not left behind
    throw err;
  });
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop: () => killAndWait(proc) };
}

/** Redis Cluster's slots: every key hashes to one of them. */
const CLUSTER_SLOTS = 16_384;

/**
 * A local Redis Cluster of `masters` redis-server processes (no replicas) on
 * free loopback ports, each in its own directory under a temp dir, cluster
 * mode on, AOF on, noeviction. The slots are split evenly
 * (CLUSTER ADDSLOTSRANGE), each node gets its own config epoch (as
 * `redis-cli --cluster create` does, so no epoch collision needs resolving),
 * the first meets the others, and it returns once every node reports
 * cluster_state:ok. `url` names the first node; `stop` kills them all and
 * removes the directory. Fails within `timeoutMs` with what it waited for.
 */
export async function startLocalRedisCluster(opts: { masters?: number; timeoutMs?: number } = {}): Promise<{ url: string; ports: number[]; stop: () => Promise<void> }> {
  if (!which('redis-server')) throw new Error('redis-server not found: a local Redis Cluster is started from it; install it (apt-get install -y redis-server)');
  const count = opts.masters ?? 3;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const dir = mkdtempSync(join(tmpdir(), 'gk-cluster-'));
  const servers: Awaited<ReturnType<typeof startLocalRedis>>[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  const admins: Redis[] = [];
  try {
    // Each node's cluster bus gets a free port of its own: by default it is
    // the port + 10000, which may be taken, or past 65535.
    const ports = await freePorts(2 * count);
    for (let i = 0; i < count; i++) {
      const nodeDir = join(dir, `node-${i}`);
      mkdirSync(nodeDir);
      const args = ['--cluster-enabled', 'yes', '--cluster-port', String(ports[count + i]), '--cluster-config-file', 'nodes.conf', '--appendonly', 'yes'];
      servers.push(await startLocalRedis(nodeDir, args, ports[i]));
    }
    for (const s of servers) admins.push(new Redis(s.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 }));
    for (const [i, admin] of admins.entries()) {
      const first = Math.floor((CLUSTER_SLOTS * i) / count);
      const last = Math.floor((CLUSTER_SLOTS * (i + 1)) / count) - 1;
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', first, last);
      await admin.call('CLUSTER', 'SET-CONFIG-EPOCH', i + 1);
    }
    for (let i = 1; i < count; i++) await admins[0]!.call('CLUSTER', 'MEET', '127.0.0.1', ports[i]!, ports[count + i]!);
    await waitFor(
      async () => (await Promise.all(admins.map((a) => a.call('CLUSTER', 'INFO')))).every((info) => String(info).includes('cluster_state:ok')),
      timeoutMs,
      `cluster_state:ok on all ${count} nodes of a local Redis Cluster`,
    );
  } catch (err) {
    await stop();
    throw err;
  } finally {
    admins.forEach((a) => a.disconnect());
  }
  return { url: `redis://127.0.0.1:${servers[0]!.port}`, ports: servers.map((s) => s.port), stop };
}

/**
 * A throwaway Postgres in `dir` (initdb + postgres on a free loopback port).
 * `stop` shuts it down; `start` brings it back on the same data and port
 * (the outage test uses both).
 */
export async function startLocalPostgres(dir: string): Promise<{ url: string; stop: () => Promise<void>; start: () => Promise<void>; proc: () => ChildProcess }> {
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
  return { url, stop: () => killAndWait(proc!, 'SIGINT'), start, proc: () => proc };
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

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** `n` distinct free loopback ports: all held open at once, so none is handed out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<Server>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** True when something listens on the loopback port (binding it fails). */
export function tcpOpen(port: number): Promise<boolean> {
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
