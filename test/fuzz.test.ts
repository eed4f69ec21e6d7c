/**
 * Fuzzing (fast-check) against the running app and gatekeeper (real Redis and
 * Postgres): random and near-valid bodies, queries and path parameters for
 * every route never get a 5xx, a refusal is JSON that says why and changes
 * nothing, and random job data is admitted, held or rejected with a reason
 * while good jobs keep flowing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let server: Server;
let base: string;
let held: HeldJobs;
let intake: Queue;
let gk: Gatekeeper;

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  const app = createApp({ config: t.config, accounting: t.accounting, intake, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer: undefined } });
  server = await listen(app);
  base = `${urlOf(server)}`;
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  await t.budgets.set('fz', hoursToGpuMs(1000));
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await gk?.close();
  await held?.close();
  await intake?.close();
  await t?.close();
});

/** Everything a refused request must leave as it was. */
async function state() {
  const q = (sql: string) => t.pool.query(sql).then((r) => JSON.stringify(r.rows));
  return {
    limits: await q('SELECT scope, limit_gpu_ms, policy, grace_pct, period, rollover, rollover_cap_gpu_ms, thresholds FROM limits ORDER BY scope'),
    audit: await q('SELECT count(*) FROM audit'),
    exempt: await q('SELECT job_type FROM exempt_job_types ORDER BY 1'),
    webhooks: await q('SELECT count(*) FROM webhooks'),
    acked: await q('SELECT count(*) FROM events WHERE acked_at IS NOT NULL'),
    intake: await intake.count(),
    held: (await t.accounting.heldIds()).join(','),
  };
}

// Values of every JSON type, weighted toward the awkward ones.
const value = fc.oneof(
  fc.integer(), fc.double(), fc.constantFrom(0, -1, 1e308, -1e-300, 2 ** 53 + 1), fc.string(), fc.boolean(), fc.constant(null),
  fc.array(fc.oneof(fc.integer(), fc.string()), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);
const FIELDS = ['gpuHours', 'reason', 'period', 'rollover', 'rolloverCapGpuHours', 'policy', 'gracePercent', 'thresholds', 'daily', 'weekly',
  'ids', 'all', 'project', 'user', 'note', 'url', 'types', 'jobs', 'estimatedGpuHours', 'gpus', 'jobType', 'run', 'payload'];
// Near-valid: the real field names, random values; or anything at all.
const bodyArb = fc.oneof(fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 4 }), fc.jsonValue(), fc.constant(undefined));
const segment = fc.oneof(fc.constantFrom('fz', 'bob', '1', 'regression-test', 'wh_x'), fc.string({ minLength: 1, maxLength: 12 }));
const ROUTES: [string, string][] = [
  ['PUT', '/api/v1/projects/:a/budget'], ['POST', '/api/v1/projects/:a/budget/adjust'], ['GET', '/api/v1/projects/:a/budget'],
  ['PUT', '/api/v1/users/:a/quota'], ['GET', '/api/v1/users/:a/quota'],
  ['PUT', '/api/v1/projects/:a/runs/:b/cap'], ['DELETE', '/api/v1/projects/:a/runs/:b/cap'],
  ['PUT', '/api/v1/exempt-job-types/:a'], ['DELETE', '/api/v1/exempt-job-types/:a'],
  ['POST', '/api/v1/held/release'], ['POST', '/api/v1/held/:a/override'], ['POST', '/api/v1/held/:a/cancel'], ['GET', '/api/v1/held'],
  ['POST', '/api/v1/preflight'], ['POST', '/api/v1/jobs'], ['POST', '/api/v1/alerts/:a/ack'], ['GET', '/api/v1/alerts'],
  ['POST', '/api/v1/webhooks'], ['DELETE', '/api/v1/webhooks/:a'], ['GET', '/api/v1/usage'], ['GET', '/api/v1/usage/export'], ['GET', '/api/v1/audit'],
];

describe('fuzzing', () => {
  it('every route answers random input with a JSON 4xx that changes nothing, or a 2xx — never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES), segment, segment, bodyArb, fc.dictionary(fc.constantFrom('from', 'to', 'groupBy', 'month', 'format', 'type', 'unacked', 'limit', 'offset', 'project', 'user', 'x'), fc.string({ maxLength: 12 }), { maxKeys: 3 }),
        async ([method, template], a, b, body, query) => {
          const path = template.replace(':a', encodeURIComponent(a)).replace(':b', encodeURIComponent(b));
          const qs = method === 'GET' && Object.keys(query).length ? `?${new URLSearchParams(query)}` : '';
          const before = await state();
          const res = await fetch(base + path + qs, {
            method,
            headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
            body: method === 'GET' || body === undefined ? undefined : JSON.stringify(body),
          });
          const text = await res.text();
          expect(res.status, `${method} ${path}${qs} ${JSON.stringify(body)} -> ${text.slice(0, 200)}`).toBeLessThan(500);
          if (res.status >= 400) {
            const err = JSON.parse(text) as { error: { status: number; message: string } };
            expect(err.error.status).toBe(res.status);
            expect(err.error.message.length).toBeGreaterThan(0);
            expect(await state()).toEqual(before);
          }
        },
      ),
      { numRuns: 600 },
    );
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
  });

  it('random job data is admitted, held or rejected with a reason, and good jobs keep flowing', async () => {
    const jobArb = fc.oneof(
      fc.record({ project: fc.constantFrom('fz', 'nope', ''), user: fc.oneof(fc.constant('u'), value), estimatedGpuHours: value, gpus: fc.option(value, { nil: undefined }), jobType: fc.option(value, { nil: undefined }), run: fc.option(value, { nil: undefined }) }, { requiredKeys: [] }),
      fc.jsonValue(),
    );
    const jobs = fc.sample(jobArb, 150);
    const added = await intake.addBulk([...jobs, { project: 'fz', user: 'u', estimatedGpuHours: 1 }].map((data) => ({ name: 'fuzz', data: data as object })));
    const ends = await eventually(
      () => Promise.all(added.map(async (j) => ({ state: await j.getState(), job: await intake.getJob(j.id!) }))),
      (xs) => xs.every((x) => x.state === 'completed' || x.state === 'failed'),
    );
    for (const { state: s, job } of ends) {
      if (s === 'completed') expect(['admitted', 'held']).toContain((job!.returnvalue as { outcome: string }).outcome);
      else expect(job!.failedReason).toMatch(/^(invalid job: .+|no budget for .+)$/);
    }
    expect((ends.at(-1)!.job!.returnvalue as { outcome: string }).outcome).toBe('admitted');
  });
});
