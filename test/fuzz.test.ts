/**
 * Fuzzing (fast-check) against the running app and gatekeeper (real Redis and
 * Postgres): random and near-valid bodies, queries and path parameters for
 * every route never get a 5xx, a refusal is JSON that says why and changes
 * nothing, and random job data is admitted, held or rejected with a reason
 * while good jobs keep flowing. Text is hostile throughout: control
 * characters, escape sequences, lone surrogates, NULs (which Postgres cannot
 * store), 4-byte characters, spreadsheet formulas; after a storm of such jobs
 * the ledger and event streams still drain, nothing is quarantined, and the
 * drift audit finds nothing.
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
import { startPipeline } from './support/pipeline.ts';
import { EventStore } from '../src/events/store.ts';
import { DriftAudit } from '../src/accounting/drift.ts';

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
    limits: await q('SELECT scope, limit_gpu_ms, unit, policy, grace_pct, period, rollover, rollover_cap_gpu_ms, thresholds FROM limits ORDER BY scope'),
    audit: await q('SELECT count(*) FROM audit'),
    factors: await q('SELECT job_type, factor_milli FROM usage_factors ORDER BY 1'),
    rates: await q('SELECT count(*) FROM gpu_rates'),
    allowed: await q('SELECT project, allowed FROM project_gpu_types ORDER BY 1'),
    corrections: await q("SELECT count(*) FROM ledger WHERE kind = 'correction'"),
    rateLimits: await q('SELECT scope, jobs_per_minute, burst FROM rate_limits ORDER BY 1'),
    rateCopies: JSON.stringify(await t.accounting.definitions.rateScopes()),
    webhooks: await q('SELECT count(*) FROM webhooks'),
    keys: await q('SELECT count(*), count(revoked_at) FROM api_keys'),
    requests: await q('SELECT state, count(*) FROM override_requests GROUP BY 1 ORDER BY 1'),
    acked: await q('SELECT count(*) FROM events WHERE acked_at IS NOT NULL'),
    intake: await intake.count(),
    held: (await t.accounting.heldIds()).join(','),
  };
}

// Text no store, log, terminal or spreadsheet should take as it is, and some that all of them should.
const HOSTILE = ['\u0000', '\u0007', '\u001b[2J', '\u001b]0;pwned\u0007', '\u007f', '\u0085', '\u009b', '\u2028', '\u202e', '\ud800', '\udfff',
  '\ud83d\ude00', '\ud834\udd1e', '=HYPERLINK("http://x")', "'; DROP TABLE ledger; --", '%00', '\\x00'];
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** Percent-encoded as a client would send it; a lone surrogate as the three bytes UTF-8 would give it (no decoder takes them). */
const enc = (s: string) =>
  [...s].map((ch) => {
    if (!LONE_SURROGATE.test(ch)) return encodeURIComponent(ch);
    const c = ch.charCodeAt(0);
    return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
  }).join('');
const hostile = fc.array(fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 3 })), { minLength: 1, maxLength: 4 }).map((p) => p.join(''));
// Values of every JSON type, weighted toward the awkward ones.
const value = fc.oneof(
  fc.integer(), fc.double(), fc.constantFrom(0, -1, 1e308, -1e-300, 2 ** 53 + 1), fc.string(), hostile, fc.boolean(), fc.constant(null),
  fc.array(fc.oneof(fc.integer(), fc.string()), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }),
);
const FIELDS = ['gpuHours', 'reason', 'period', 'rollover', 'rolloverCapGpuHours', 'policy', 'gracePercent', 'thresholds', 'daily', 'weekly',
  'ids', 'all', 'project', 'user', 'note', 'url', 'types', 'jobs', 'estimatedGpuHours', 'gpus', 'jobType', 'run', 'payload', 'jobsPerMinute', 'burst', 'role', 'projects', 'expiresAt', 'kind'];
// Near-valid: the real field names, random values; or anything at all.
const bodyArb = fc.oneof(fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 4 }), fc.jsonValue(), fc.constant(undefined));
const segment = fc.oneof(fc.constantFrom('fz', 'bob', '1', 'regression-test', 'wh_x'), fc.string({ minLength: 1, maxLength: 12 }), hostile);
const ROUTES: [string, string][] = [
  ['PUT', '/api/v1/projects/:a/budget'], ['POST', '/api/v1/projects/:a/budget/adjust'], ['GET', '/api/v1/projects/:a/budget'],
  ['PUT', '/api/v1/users/:a/quota'], ['GET', '/api/v1/users/:a/quota'],
  ['PUT', '/api/v1/projects/:a/runs/:b/cap'], ['DELETE', '/api/v1/projects/:a/runs/:b/cap'],
  ['PUT', '/api/v1/exempt-job-types/:a'], ['DELETE', '/api/v1/exempt-job-types/:a'],
  ['POST', '/api/v1/held/release'], ['POST', '/api/v1/held/:a/override'], ['POST', '/api/v1/held/:a/cancel'], ['GET', '/api/v1/held'],
  ['POST', '/api/v1/preflight'], ['POST', '/api/v1/jobs'], ['POST', '/api/v1/alerts/:a/ack'], ['GET', '/api/v1/alerts'],
  ['POST', '/api/v1/webhooks'], ['DELETE', '/api/v1/webhooks/:a'], ['GET', '/api/v1/usage'], ['GET', '/api/v1/usage/export'], ['GET', '/api/v1/audit'],
  ['GET', '/api/v1/projects'],
  ['PUT', '/api/v1/users/:a/rate-limit'], ['DELETE', '/api/v1/users/:a/rate-limit'], ['GET', '/api/v1/projects/:a/rate-limit'], ['PUT', '/api/v1/projects/:a/rate-limit'], ['GET', '/api/v1/rate-limits'],
  ['POST', '/api/v1/keys'], ['GET', '/api/v1/keys'], ['DELETE', '/api/v1/keys/:a'], ['GET', '/api/v1/me'],
  ['PUT', '/api/v1/gpu-types/:a'], ['GET', '/api/v1/gpu-types/:a'], ['GET', '/api/v1/gpu-types'], ['GET', '/api/v1/job-types'],
  ['PUT', '/api/v1/job-types/:a/usage-factor'], ['DELETE', '/api/v1/job-types/:a/usage-factor'],
  ['PUT', '/api/v1/projects/:a/gpu-types'], ['GET', '/api/v1/projects/:a/gpu-types'],
  ['PUT', '/api/v1/projects/:a/gpu-types/:b/budget'], ['DELETE', '/api/v1/projects/:a/gpu-types/:b/budget'], ['GET', '/api/v1/projects/:a/gpu-types/:b/budget'],
  ['POST', '/api/v1/corrections'], ['GET', '/api/v1/corrections'],
  ['POST', '/api/v1/held/:a/override-requests'], ['GET', '/api/v1/override-requests'], ['POST', '/api/v1/override-requests/:a/approve'], ['POST', '/api/v1/override-requests/:a/deny'],
];

describe('fuzzing', () => {
  it('every route answers random input with a JSON 4xx that changes nothing, or a 2xx — never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES), segment, segment, bodyArb, fc.dictionary(fc.constantFrom('from', 'to', 'groupBy', 'month', 'format', 'type', 'unacked', 'limit', 'offset', 'cursor', 'project', 'user', 'state', 'kind', 'q', 'x'), fc.string({ maxLength: 12 }), { maxKeys: 3 }),
        async ([method, template], a, b, body, query) => {
          const path = template.replace(':a', enc(a)).replace(':b', enc(b));
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

  it('a storm of jobs with hostile text: each ends admitted, held or rejected; the streams drain, nothing is quarantined, drift is zero', async () => {
    const pipeline = await startPipeline(t);
    const events = new EventStore(t.connection(), t.accounting.keys.events, t.pool, t.config, t.log);
    await events.start();
    try {
      const text = fc.oneof(hostile, fc.constantFrom('render', 'a100', 'r1'));
      const jobArb = fc.record({
        project: fc.constantFrom('fz', 'fz', 'fz\u0000', 'f\u202ez'), user: text, estimatedGpuHours: fc.constantFrom(0.01, 0.5),
        jobType: text, gpuType: text, run: fc.option(text, { nil: undefined }), payload: fc.constant({ simulate: { durationMs: 1 } }),
      });
      // A custom id with hostile text. Not ':' (BullMQ refuses it) nor a lone surrogate: ids travel to
      // Redis as UTF-8, where one becomes U+FFFD, so no client can send one (data is JSON, which escapes it).
      const customId = (i: number) => `storm-${i}-${fc.sample(hostile, 1)[0]!.replaceAll(':', '').replace(new RegExp(LONE_SURROGATE, 'g'), '')}`;
      const jobs = fc.sample(jobArb, 120).map((data, i) => ({ name: 'storm', data, opts: i % 4 === 0 ? { jobId: customId(i) } : {} }));
      // 4-byte characters are text like any other: this one is admitted.
      jobs.push({ name: 'storm', data: { project: 'fz', user: 'u', estimatedGpuHours: 0.5, jobType: '\ud83d\ude00 render \ud834\udd1e', gpuType: 'a100', run: undefined, payload: { simulate: { durationMs: 1 } } }, opts: {} });
      const added = await intake.addBulk(jobs);
      const ends = await eventually(
        () => Promise.all(added.map(async (j) => ({ state: await j.getState(), job: await intake.getJob(j.id!) }))),
        (xs) => xs.every((x) => x.state === 'completed' || x.state === 'failed'),
        20_000,
      ).catch(async (err) => {
        const stuck = await Promise.all(added.map(async (j) => ({ id: j.id, state: await j.getState(), data: j.data })));
        throw new Error(`${err.message}\nnot ended: ${JSON.stringify(stuck.filter((x) => x.state !== 'completed' && x.state !== 'failed').slice(0, 5))}`);
      });
      // Admitted or held only with text every store can hold; everything else rejected with its reason.
      const clean = (v: unknown) => typeof v !== 'string' || (!LONE_SURROGATE.test(v) && !/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/.test(v));
      for (const { state: s, job } of ends) {
        if (s === 'failed') {
          expect(job!.failedReason).toMatch(/^invalid job: .+/);
          continue;
        }
        expect(['admitted', 'held']).toContain((job!.returnvalue as { outcome: string }).outcome);
        for (const v of [job!.id, ...Object.values(job!.data as Record<string, unknown>)]) expect(clean(v), JSON.stringify(v)).toBe(true);
      }
      expect((ends.at(-1)!.job!.returnvalue as { outcome: string }).outcome).toBe('admitted');

      // Every admitted job runs and settles; both streams are read to the end; nothing waits in quarantine.
      await eventually(() => t.budgets.get('fz'), (b) => b!.reservedGpuMs === 0);
      const lag = async (stream: string) => {
        const groups = (await t.redis.xinfo('GROUPS', stream)) as unknown[][];
        return groups.map((g) => { const o: Record<string, unknown> = {}; for (let i = 0; i < g.length; i += 2) o[String(g[i])] = g[i + 1]; return { pending: o.pending, lag: o.lag }; });
      };
      await eventually(() => lag(t.accounting.keys.ledger), (gs) => gs.length > 0 && gs.every((g) => g.pending === 0 && g.lag === 0));
      await eventually(() => lag(t.accounting.keys.events), (gs) => gs.length > 0 && gs.every((g) => g.pending === 0 && g.lag === 0));
      expect((await t.pool.query('SELECT count(*)::int AS n FROM quarantine')).rows[0].n).toBe(0);
      const settled = await t.pool.query(`SELECT count(*)::int AS n FROM ledger WHERE kind = 'settle' AND project = 'fz'`);
      expect(settled.rows[0].n).toBeGreaterThan(0);
      expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
    } finally {
      await events.stop();
      await pipeline.close();
    }
  });
});
