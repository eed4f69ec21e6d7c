/**
 * `npm start` as a user runs it: one process with every role, configured from
 * the environment; SIGTERM lets the running GPU job finish before exiting; no
 * DATABASE_URL means an embedded Postgres; a Redis that may evict keys is
 * refused at start-up with a clear message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, eventually, spawnRoles, waitExit, type TestEnv } from './support/env.ts';
import { freePort, startLocalRedis } from './support/infra.ts';

let t: TestEnv;
let intake: Queue;
let exec: Queue;
const token = 'test-admin-token-0123456789';

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
});
afterAll(async () => {
  await Promise.all([intake?.close(), exec?.close()]);
  await t?.close();
});

async function api(port: number, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const healthy = (port: number) => () =>
  fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false);

describe('npm start', () => {
  it('runs every role in one process and finishes the running GPU job on SIGTERM', async () => {
    const port = await freePort();
    const app = spawnRoles(t.env, 'gatekeeper,reconciler,api,gpu-sim', {
      PORT: String(port),
      RECONCILE_INTERVAL_MS: '50',
    });
    try {
      await eventually(healthy(port), Boolean, 30_000);
      expect((await api(port, 'PUT', '/api/v1/projects/demo/budget', { gpuHours: 3 })).status).toBe(200);

      await intake.add('quick', { project: 'demo', user: 'u', estimatedGpuHours: 1, payload: { simulate: { durationMs: 10, gpuHours: 0.5 } } });
      await eventually(() => api(port, 'GET', '/api/v1/projects/demo/budget'), (r) => r.body.usedGpuHours === 0.5);

      const slow = await intake.add('slow', { project: 'demo', user: 'u', estimatedGpuHours: 2, payload: { simulate: { durationMs: 1500, gpuHours: 1.5 } } });
      await eventually(() => exec.getJobState(`intake-${slow.id}`), (s) => s === 'active');
      app.kill('SIGTERM');
      expect(await waitExit(app)).toBe(0);
      expect(await exec.getJobState(`intake-${slow.id}`)).toBe('completed');
    } finally {
      app.kill('SIGKILL');
    }
  });

  it('uses an embedded Postgres under DATA_DIR when DATABASE_URL is unset', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'gk-data-'));
    const { DATABASE_URL: _unset, ...env } = t.env;
    const app = spawnRoles({ ...env, DATABASE_URL: '', DATA_DIR: dataDir }, 'api', { PORT: String(port) });
    try {
      await eventually(healthy(port), Boolean, 60_000);
      expect((await api(port, 'PUT', '/api/v1/projects/solo/budget', { gpuHours: 7.5 })).body).toMatchObject({ limitGpuHours: 7.5 });
      expect((await api(port, 'GET', '/api/v1/projects/solo/budget')).body).toMatchObject({ limitGpuHours: 7.5, remainingGpuHours: 7.5 });
    } finally {
      app.kill('SIGTERM');
      await waitExit(app);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses a Redis whose maxmemory-policy may evict keys', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-lru-'));
    const lru = await startLocalRedis(dir, ['--maxmemory-policy', 'allkeys-lru']);
    try {
      const app = spawnRoles({ ...t.env, REDIS_URL: lru.url }, 'gatekeeper');
      let stderr = '';
      app.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      expect(await waitExit(app)).toBe(1);
      expect(stderr).toContain('Redis maxmemory-policy is "allkeys-lru"; gpu-gatekeeper needs "noeviction"');
    } finally {
      await lru.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad configuration with a message naming the setting', async () => {
    const app = spawnRoles({ ...t.env, PORT: 'eighty' }, 'api');
    let stderr = '';
    app.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await waitExit(app)).toBe(2);
    expect(stderr).toContain('PORT: must be an integer >= 0, got "eighty"');
  });
});
