/**
 * The default a newcomer runs — `npm start` with every default role and no
 * DATABASE_URL, so an embedded Postgres (PGlite behind pglite-socket) — under
 * concurrency. PGlite answers one protocol exchange at a time; its socket
 * server's multiplexer interleaves messages of different connections, so one
 * request's statement could be bound with another's parameters (seen: 16 of
 * 100 concurrent budget PUTs answered 500). Here 64 writes and reads of
 * different shapes race while jobs are admitted and settled (the ledger
 * writer, the event store and the scheduler use the same database): every
 * answer is 2xx and every stored value is the one its own request sent.
 * And people with keys ask for overrides and a manager decides four at once
 * on the one connection, each audited as it is answered; and the rate card,
 * usage factors, allowed GPU types, type budgets and corrections (which read
 * inside their transaction) change at once, each audited.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createTestEnv, eventually, spawnRoles, waitExit, type TestEnv } from './support/env.ts';
import { freePort } from './support/infra.ts';

const token = 'test-admin-token-0123456789';
let t: TestEnv;
let app: ChildProcess;
let port: number;
let dataDir: string;
let intake: Queue;

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  port = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), 'gk-embedded-'));
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  // The default roles, as `npm start` runs them, plus a GPU worker so jobs settle.
  app = spawnRoles({ ...t.env, DATABASE_URL: '', DATA_DIR: dataDir }, 'gatekeeper,reconciler,scheduler,webhooks,api,gpu-sim', {
    PORT: String(port),
    RECONCILE_INTERVAL_MS: '20',
    SIM_JOB_MS: '5',
    SIM_CONCURRENCY: '16',
  });
  await eventually(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200, () => false), Boolean, 60_000);
}, 90_000);
afterAll(async () => {
  app?.kill('SIGTERM');
  if (app) await waitExit(app);
  await intake?.close();
  await t?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-gatekeeper-actor': 'racer' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

describe('npm start with the embedded Postgres', () => {
  it('answers 64 concurrent writes and reads of different shapes, each with its own values, while jobs flow', async () => {
    expect((await call('PUT', '/projects/flow/budget', { gpuHours: 1000 })).status).toBe(200);
    // Jobs admitted and settled meanwhile: the ledger writer and the event store write too.
    await intake.addBulk(Array.from({ length: 200 }, (_, i) => ({ name: 'j', data: { project: 'flow', user: `u${i % 5}`, estimatedGpuHours: 1, payload: { simulate: { gpuHours: 0.5 } } } })));

    // Each write names values no other request uses, so a crossed request shows as a wrong value.
    const budgets = Array.from({ length: 24 }, (_, i) => ({
      project: `p${i}`,
      body: { gpuHours: 10 + i + 0.25, policy: i % 2 ? 'soft' : 'hard', ...(i % 2 ? { gracePercent: i } : {}), period: (['none', 'week', 'month'] as const)[i % 3], thresholds: [50 + i], reason: `budget ${i}` },
    }));
    const quotas = Array.from({ length: 8 }, (_, i) => ({ user: `q${i}`, body: { daily: { gpuHours: 2 + i }, weekly: { gpuHours: 20 + i }, reason: `quota ${i}` } }));
    const caps = Array.from({ length: 8 }, (_, i) => ({ run: `r${i}`, body: { gpuHours: 100 + i, reason: `cap ${i}` } }));
    const reads: [string, (b: any) => void][] = [
      ...Array.from({ length: 8 }, (): [string, (b: any) => void] => ['/projects/flow/budget', (b) => expect(b).toMatchObject({ project: 'flow', limitGpuHours: 1000 })]),
      ...Array.from({ length: 4 }, (): [string, (b: any) => void] => ['/audit?limit=5', (b) => expect(Array.isArray(b.entries)).toBe(true)]),
      ...Array.from({ length: 4 }, (): [string, (b: any) => void] => ['/usage?from=2026-01-01&to=2026-12-31', (b) => expect(Array.isArray(b.rows)).toBe(true)]),
      ...Array.from({ length: 4 }, (): [string, (b: any) => void] => ['/alerts?limit=3', (b) => expect(typeof b.total).toBe('number')]),
      ...Array.from({ length: 4 }, (): [string, (b: any) => void] => ['/held?limit=3', (b) => expect(typeof b.total).toBe('number')]),
    ];
    const answers = await Promise.all([
      ...budgets.map((b) => call('PUT', `/projects/${b.project}/budget`, b.body)),
      ...quotas.map((q) => call('PUT', `/users/${q.user}/quota`, q.body)),
      ...caps.map((c) => call('PUT', `/projects/flow/runs/${c.run}/cap`, c.body)),
      ...reads.map(([path]) => call('GET', path)),
    ]);
    expect(answers).toHaveLength(64);
    expect(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${JSON.stringify(a.body)}`)).toEqual([]);
    reads.forEach(([, check], i) => check(answers[budgets.length + quotas.length + caps.length + i]!.body));

    // What is stored is what each request sent, read back one by one.
    for (const b of budgets) {
      const got = (await call('GET', `/projects/${b.project}/budget`)).body;
      expect(got).toMatchObject({ limitGpuHours: b.body.gpuHours, policy: b.body.policy, period: b.body.period, thresholds: b.body.thresholds, gracePercent: b.body.gracePercent ?? null });
    }
    for (const q of quotas) {
      const got = (await call('GET', `/users/${q.user}/quota`)).body;
      expect([got.daily.limitGpuHours, got.weekly.limitGpuHours]).toEqual([q.body.daily.gpuHours, q.body.weekly.gpuHours]);
    }
    for (const c of caps) expect((await call('GET', `/projects/flow/runs/${c.run}/cap`)).body.limitGpuHours).toBe(c.body.gpuHours);
    // One audit row per change, each with its own reason and value.
    const audit = (await call('GET', '/audit?limit=1000')).body.entries as { target: string; reason: string; after: any }[];
    for (const [i, b] of budgets.entries()) expect(audit.find((e) => e.target === `project:${b.project}`)).toMatchObject({ reason: `budget ${i}`, after: { limitGpuHours: b.body.gpuHours } });

    // And the jobs all settled, each hour in the ledger once.
    await eventually(() => call('GET', '/projects/flow/budget'), (r) => r.body.usedGpuHours === 100 && r.body.reservedGpuHours === 0, 60_000);
    expect((await call('GET', '/drift')).body.drift).toEqual([]);
  });

  it('prices, factors, allowed GPU types, type budgets, corrections and other limits change at once, each audited', async () => {
    expect((await call('PUT', '/projects/priced/budget', { usd: 1000 })).status).toBe(200);
    expect((await call('PUT', '/gpu-types/h100', { unitsPerGpuHour: 3, usdPerGpuHour: 4 })).status).toBe(200);
    // Two jobs end (1 GPU-h each at $4): a refund and a re-rate have something to correct.
    await intake.addBulk(['e1', 'e2'].map((id) => ({ name: 'j', data: { project: 'priced', user: 'pia', gpuType: 'h100', estimatedGpuHours: 1, payload: { simulate: { gpuHours: 1 } } }, opts: { jobId: id } })));
    await eventually(() => call('GET', '/projects/priced/budget'), (r) => r.body.used === 8 && r.body.reserved === 0, 30_000);
    const at = new Date().toISOString().slice(0, 10);
    const answers = await Promise.all([
      call('PUT', '/gpu-types/a100', { unitsPerGpuHour: 2, usdPerGpuHour: 2.5, reason: 'rate a100' }),
      call('PUT', '/job-types/lint/usage-factor', { factor: 0.5, reason: 'factor lint' }),
      call('PUT', '/projects/priced/gpu-types', { allowed: ['h100', 'a100'], reason: 'allow priced' }),
      call('PUT', '/projects/priced/gpu-types/h100/budget', { gpuHours: 50, period: 'month', reason: 'type budget' }),
      call('POST', '/corrections', { kind: 'credit', scope: 'project:priced', usd: 1, reason: 'credit priced' }),
      call('POST', '/corrections', { kind: 'refund', jobId: 'e1', reason: 'refund e1' }),
      call('POST', '/corrections', { kind: 're-rate', gpuType: 'h100', from: `${at}T00:00:00Z`, to: '2100-01-01T00:00:00Z', unitsPerGpuHour: 3, usdPerGpuHour: 3.5, reason: 're-rate h100' }),
      call('PUT', '/projects/priced/concurrency', { maxGpus: 64, reason: 'cap priced' }),
      call('PUT', '/users/pia/rate-limit', { jobsPerMinute: 600, burst: 60, reason: 'rate pia' }),
      call('PUT', '/exempt-job-types/smoke', { reason: 'exempt smoke' }),
      call('POST', '/projects/flow/budget/adjust', { gpuHours: 5, reason: 'adjust flow' }),
      ...Array.from({ length: 4 }, () => call('GET', '/corrections')),
    ]);
    expect(answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${JSON.stringify(a.body)}`)).toEqual([]);
    const audit = (await call('GET', '/audit?limit=1000')).body.entries as { reason: string | null }[];
    for (const reason of ['rate a100', 'factor lint', 'allow priced', 'type budget', 'credit priced', 'refund e1', 're-rate h100', 'cap priced', 'rate pia', 'exempt smoke', 'adjust flow']) {
      expect(audit.filter((e) => e.reason === reason), reason).toHaveLength(1);
    }
    // $8 used, less $1 credited and e1's $4 refunded, e2 re-rated from $4 to $3.50 (whichever went first): $2.50.
    expect((await call('GET', '/projects/priced/budget')).body).toMatchObject({ used: 2.5 });
  });

  it('people with keys ask for and approve overrides at once, each audited in Postgres as it is answered', async () => {
    const make = async (user: string, role: string) => (await call('POST', '/keys', { user, role, projects: ['tight'] })).body.key as string;
    const [ann, max] = [await make('ann', 'submitter'), await make('max', 'manager')];
    const as = async (key: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as any };
    };
    expect((await call('PUT', '/projects/tight/budget', { gpuHours: 0 })).status).toBe(200);
    await intake.addBulk(Array.from({ length: 4 }, () => ({ name: 'j', data: { project: 'tight', user: 'ann', estimatedGpuHours: 1 } })));
    const held = (await eventually(() => as(ann, 'GET', '/held?project=tight'), (r) => r.body.total === 4)).body.jobs.map((j: { jobId: string }) => j.jobId) as string[];
    const asked = await Promise.all([
      ...held.map((id) => as(ann, 'POST', `/held/${id}/override-requests`, { reason: `deadline ${id}` })),
      ...held.map(() => as(max, 'GET', '/projects/tight/budget')),
    ]);
    expect(asked.filter((a) => a.status >= 300).map((a) => JSON.stringify(a.body))).toEqual([]);
    const open = (await as(max, 'GET', '/override-requests')).body.requests as { id: number; jobId: string }[];
    expect(open.map((r) => r.jobId).sort()).toEqual([...held].sort());
    const decided = await Promise.all(open.map((r, i) => (i < 3 ? as(max, 'POST', `/override-requests/${r.id}/approve`, { reason: 'ok' }) : as(max, 'POST', `/override-requests/${r.id}/deny`, { reason: 'not this one' }))));
    expect(decided.map((d) => [d.status, d.body.state])).toEqual([[200, 'approved'], [200, 'approved'], [200, 'approved'], [200, 'denied']]);
    // Every decision's audit row is in Postgres when it is answered, none sent the long way through the outbox.
    const rows = (await call('GET', '/audit?limit=1000')).body.entries as { action: string; actor: string; via: string; after: any }[];
    const overrides = rows.filter((e) => e.action === 'held.override' && e.after?.request);
    expect(overrides.map((e) => [e.actor, e.after.request.requestedBy])).toEqual([['max', 'ann'], ['max', 'ann'], ['max', 'ann']]);
    expect(rows.filter((e) => e.action === 'override-request.deny').map((e) => e.actor)).toEqual(['max']);
    expect(await t.redis.xlen(`gk:{${t.config.queuePrefix}}:audit-outbox`)).toBe(0);
  });
});

