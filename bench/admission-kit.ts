/**
 * What the admission benchmark's parts share (bench/admission.ts,
 * bench/mix.ts, bench/low-load.ts): a run on a fresh queue prefix, the
 * admitter under test (the gatekeeper or the plain relay), polling for the
 * placed jobs, CPU readings and percentiles.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { createRedis } from '../queues/connection.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { startLocalRedis, unlinkMatching } from '../test/support/infra.ts';
import { createRelay, type Admitter } from './relay.ts';

export function env(name: string, def: number): number {
  const n = process.env[name] ? Number(process.env[name]) : def;
  if (!(n > 0)) throw new Error(`${name} must be a number > 0, got "${process.env[name]}"`);
  return n;
}
export const TIMEOUT_MS = env('BENCH_TIMEOUT_SECONDS', 300) * 1000;
export const KINDS = ['relay', 'gatekeeper'] as const;
export type Kind = (typeof KINDS)[number];
export type Pair = Record<Kind, number>;
const log = createLogger('silent');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One measured run: a fresh QUEUE_PREFIX and fresh connections, all removed afterwards. */
export interface Run { admin: Redis; config: Config; intake: Queue; exec: Queue; held: Queue; accounting: Accounting; start(): Admitter }

export async function withRun<T>(redisUrl: string, kind: Kind, body: (run: Run) => Promise<T>): Promise<T> {
  const prefix = `bench-${kind}-${randomBytes(4).toString('hex')}`;
  const config = loadConfig({ ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix });
  // The bench's own reads and writes use `admin`, so the admitter's connections carry only its own traffic.
  const [admin, connection, workerConnection] = [0, 1, 2].map(() => createRedis(redisUrl)) as [Redis, Redis, Redis];
  const q = (name: string) => new Queue(name, { connection: admin, prefix });
  const [intake, exec, held] = [q(config.queues.intake), q(config.queues.exec), q(config.queues.held)];
  let admitter: Admitter | undefined;
  const start = () => (admitter = kind === 'relay'
    ? createRelay({ config, workerConnection, connection })
    : createGatekeeper({ config, workerConnection, connection, log, clock: systemClock }));
  try {
    return await body({ admin, config, intake, exec, held, accounting: new Accounting(admin, prefix, config.settledRetainSeconds, config.timeZone), start });
  } finally {
    await admitter?.close();
    await Promise.all([intake.close(), exec.close(), held.close()]);
    // Drop this run's keys so later runs do not work against a fuller Redis.
    await unlinkMatching(admin, `${prefix}:*`);
    await unlinkMatching(admin, `gk:{${prefix}}:*`);
    await Promise.all([admin, connection, workerConnection].map((c) => c.quit()));
  }
}

/** Polls (from the bench's own connection) until n jobs sit on gpu-exec or gpu-held. */
export async function waitForProcessed(run: Run, n: number): Promise<{ exec: number; held: number }> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const [exec, held] = await Promise.all([run.exec.count(), run.held.count()]);
    if (exec + held >= n) return { exec, held };
    if (Date.now() > deadline) {
      const failed = await run.intake.getFailedCount();
      throw new Error(`timed out: ${exec} exec + ${held} held of ${n} (${failed} intake jobs failed)`);
    }
    await sleep(10);
  }
}

/**
 * CPU seconds used so far by this process and by Redis (INFO works for any
 * Redis). Per job, this is what the two paths cost regardless of whatever
 * else the (possibly shared) machine is running during a run.
 */
export async function cpuSeconds(admin: Redis): Promise<{ node: number; redis: number }> {
  const info = await admin.info('cpu');
  const field = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  const u = process.cpuUsage();
  return { node: (u.user + u.system) / 1e6, redis: field('used_cpu_user') + field('used_cpu_sys') };
}

/** Nearest-rank percentile of a sorted array. */
export const pct = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
/** Median; with an even number of values, the mean of the middle two. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Relay first in odd rounds, gatekeeper first in even ones (ABBA), so drift favours neither. */
export const orderOf = (round: number): readonly Kind[] => (round % 2 === 1 ? KINDS : [...KINDS].reverse());

export async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: async () => {} };
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-bench-'));
  const r = await startLocalRedis(dir);
  return { url: r.url, stop: async () => { await r.stop(); rmSync(dir, { recursive: true, force: true }); } };
}

export async function machine(redisUrl: string) {
  const redis = createRedis(redisUrl);
  const info = await redis.info('server');
  await redis.quit();
  return { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown', os: `${os.type()} ${os.release()} ${os.arch()}`,
    // The machine may be shared: a busy one explains noisy rounds.
    load: os.loadavg().map((l) => l.toFixed(2)).join(' '),
    // Both paths run in this process, so they share its Node flags; `npm run
    // bench` gives it the service's young generation (docs/operations.md, "Node flags").
    nodeFlags: [...process.execArgv.filter((a) => a.startsWith('--max-semi-space-size')), ...(process.env.NODE_OPTIONS ? [process.env.NODE_OPTIONS] : [])].join(' ') || 'none' };
}
