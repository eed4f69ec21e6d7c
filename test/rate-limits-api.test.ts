/**
 * Submission rate limits at the edges, against real Redis, Postgres and
 * BullMQ: the API (admin sets, viewer reads and lists, every change
 * audited, bad bodies answered 400 changing nothing), the CLI, preflight, and a real
 * gatekeeper: a throttled intake job waits delayed with its reason in its
 * log, comes back when due and is admitted exactly once, and one user's
 * flood does not hold back another user's job. Runs on the system clock:
 * BullMQ delays by wall time (60 jobs/min puts a due time 1 s away; the
 * test waits for the outcome, never a fixed time).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { systemClock } from '../src/clock.ts';
import { Metrics } from '../src/metrics.ts';
import { EXIT, runCli } from '../src/cli/main.ts';
import { hoursToGpuMs } from '../src/units.ts';

const tokens = { admin: 'test-admin-token-0123456789', viewer: 'test-viewer-token-0123456789' };
const { admin, viewer } = tokens;
const metrics = new Metrics();
let t: TestEnv;
let served: ServedApi;
let intake: Queue;
let exec: Queue;

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  served = await serveApi(t, { clock: systemClock, tokens, metrics });
  intake = served.intake;
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
});
afterAll(async () => {
  await served?.close();
  await exec?.close();
  await t?.close();
});

const call = (method: string, path: string, body?: unknown, token = admin) => callApi(served.api, token, method, path, body);
const audits = async (target: string) =>
  (await t.pool.query('SELECT actor, action, before, after, reason FROM audit WHERE target = $1::text ORDER BY id', [target])).rows;

describe('the API', () => {
  it('sets, shows, changes and removes a user limit, each change with its audit row', async () => {
    const put = await call('PUT', '/users/ann/rate-limit', { jobsPerMinute: 60, burst: 10, reason: 'fair share' });
    expect(put).toMatchObject({ status: 200, body: { user: 'ann', scope: 'user:ann', jobsPerMinute: 60, burst: 10, tokensNow: 10 } });
    expect(await call('GET', '/users/ann/rate-limit', undefined, viewer)).toMatchObject({ status: 200, body: { jobsPerMinute: 60, burst: 10 } });
    await call('PUT', '/users/ann/rate-limit', { jobsPerMinute: 120, burst: 5 });
    expect((await call('DELETE', '/users/ann/rate-limit', { reason: 'done' })).body).toEqual({ user: 'ann', scope: 'user:ann', removed: true });
    expect((await call('GET', '/users/ann/rate-limit')).status).toBe(404);
    // Removing what is not there changes nothing and audits nothing.
    expect((await call('DELETE', '/users/ann/rate-limit')).body.removed).toBe(false);
    expect(await audits('user:ann')).toEqual([
      { actor: 'ops-alice', action: 'rate-limit.set', before: null, after: { jobsPerMinute: 60, burst: 10 }, reason: 'fair share' },
      { actor: 'ops-alice', action: 'rate-limit.set', before: { jobsPerMinute: 60, burst: 10 }, after: { jobsPerMinute: 120, burst: 5 }, reason: null },
      { actor: 'ops-alice', action: 'rate-limit.remove', before: { jobsPerMinute: 120, burst: 5 }, after: null, reason: 'done' },
    ]);
    expect(await t.accounting.definitions.rate('user:ann')).toBeNull();
  });

  it('answers a bad body or name with 400 saying what is wrong, and a viewer with 403, changing nothing', async () => {
    await call('PUT', '/projects/vfx/rate-limit', { jobsPerMinute: 600, burst: 50 });
    const cases: [unknown, string][] = [
      [{}, 'jobsPerMinute is required; burst is required'],
      [{ jobsPerMinute: 0, burst: 1 }, 'jobsPerMinute must be at least 1'],
      [{ jobsPerMinute: 1.5, burst: 1 }, 'jobsPerMinute must be a whole number'],
      [{ jobsPerMinute: '60', burst: 1 }, 'jobsPerMinute must be a number'],
      [{ jobsPerMinute: 1_000_001, burst: 1 }, 'jobsPerMinute must be at most 1,000,000'],
      [{ jobsPerMinute: 60, burst: 100_001 }, 'burst must be at most 100,000'],
      [{ jobsPerMinute: 60, burst: 1, per: 'minute' }, 'unknown field(s): per'],
      [[60, 10], 'body must be a JSON object'],
    ];
    for (const [body, message] of cases) expect(await call('PUT', '/projects/vfx/rate-limit', body), JSON.stringify(body)).toEqual({ status: 400, body: { error: { status: 400, message } } });
    expect((await call('PUT', '/projects/v%20fx/rate-limit', { jobsPerMinute: 1, burst: 1 })).status).toBe(400);
    expect((await call('PUT', '/projects/vfx/rate-limit', { jobsPerMinute: 1, burst: 1 }, viewer)).status).toBe(403);
    expect((await call('DELETE', '/projects/vfx/rate-limit', undefined, viewer)).status).toBe(403);
    expect((await call('GET', '/projects/vfx/rate-limit', undefined, viewer)).body).toMatchObject({ project: 'vfx', jobsPerMinute: 600, burst: 50 });
    expect(await audits('project:vfx')).toHaveLength(1);
  });

  it("lists every limit a page at a time, projects' then users', by kind or by a part of the name", async () => {
    for (const p of ['lst-b', 'lst-a']) await call('PUT', `/projects/${p}/rate-limit`, { jobsPerMinute: 600, burst: 20 });
    for (const u of ['lst-u2', 'lst-u1', 'LST-u3']) await call('PUT', `/users/${u}/rate-limit`, { jobsPerMinute: 60, burst: 5 });
    await call('PUT', '/users/other/rate-limit', { jobsPerMinute: 1, burst: 1 });
    const scopes = (r: { body: Record<string, any> }) => (r.body.rateLimits as { scope: string }[]).map((l) => l.scope);
    const first = await call('GET', '/rate-limits?q=lst-&limit=2', undefined, viewer);
    expect(first.body).toEqual({
      rateLimits: [
        { project: 'lst-a', scope: 'project:lst-a', jobsPerMinute: 600, burst: 20, tokensNow: 20, updatedAt: expect.any(String) },
        { project: 'lst-b', scope: 'project:lst-b', jobsPerMinute: 600, burst: 20, tokensNow: 20, updatedAt: expect.any(String) },
      ],
      nextCursor: 'project:lst-b',
    });
    const second = await call('GET', `/rate-limits?q=lst-&limit=2&cursor=${first.body.nextCursor}`, undefined, viewer);
    // Byte order: LST-u3 before lst-u1.
    expect([scopes(second), second.body.nextCursor]).toEqual([['user:LST-u3', 'user:lst-u1'], 'user:lst-u1']);
    const last = await call('GET', `/rate-limits?q=lst-&limit=2&cursor=${second.body.nextCursor}`, undefined, viewer);
    expect([scopes(last), last.body.nextCursor]).toEqual([['user:lst-u2'], null]);
    expect(scopes(await call('GET', '/rate-limits?q=LST-U&kind=user'))).toEqual(['user:LST-u3', 'user:lst-u1', 'user:lst-u2']);
    expect(scopes(await call('GET', '/rate-limits?q=lst-&kind=project'))).toEqual(['project:lst-a', 'project:lst-b']);
    for (const [qs, message] of [
      ['kind=team', 'kind must be user or project'],
      ['cursor=lst-a', 'cursor must be a rate limit scope, e.g. user:ann: the nextCursor of the previous page'],
      ['limit=0', 'limit must be at least 1'],
      ['q=a%20b', 'q must be 1-128 characters of A-Z a-z 0-9 . _ - (part of a name)'],
      ['per=minute', 'unknown query parameter(s): per'],
    ]) expect(await call('GET', `/rate-limits?${qs}`), qs).toEqual({ status: 400, body: { error: { status: 400, message } } });
  });

  it('preflight says which jobs would be throttled, and when', async () => {
    await t.budgets.set('pf', hoursToGpuMs(100));
    await call('PUT', '/users/pat/rate-limit', { jobsPerMinute: 30, burst: 2 });
    const r = await call('POST', '/preflight', { jobs: Array.from({ length: 3 }, () => ({ project: 'pf', user: 'pat', estimatedGpuHours: 1 })) }, viewer);
    expect(r.body).toMatchObject({ admitted: 2, held: 0, throttled: 1 });
    expect(r.body.outcomes[2]).toMatchObject({ outcome: 'throttled', reason: expect.stringMatching(/^throttled: user pat over 30 jobs\/min \(burst 2\); due \d\d:\d\d:\d\d\.\d{3} UTC$/) });
    expect(Date.parse(r.body.outcomes[2].dueAt) - Date.now()).toBeGreaterThan(0);
  });
});

describe('the CLI', () => {
  it('sets, gets and removes a limit; refuses without exactly one of --user and --project', async () => {
    let out = '';
    const cli = (args: string[]) => runCli(['--url', served.api.replace('/api/v1', ''), '--token', admin, '--actor', 'ops-bob', ...args], (s) => (out += s));
    expect(await cli(['rate-limit', 'set', '--project', 'cg', '--per-minute', '90', '--burst', '3'])).toBe(EXIT.ok);
    expect(out).toMatch(/project:cg\s+90\s+3\s+3/);
    out = '';
    expect(await cli(['--json', 'rate-limit', 'get', '--project', 'cg'])).toBe(EXIT.ok);
    expect(JSON.parse(out)).toMatchObject({ project: 'cg', jobsPerMinute: 90, burst: 3 });
    expect(await cli(['rate-limit', 'set', '--user', 'u', '--project', 'cg', '--per-minute', '1', '--burst', '1'])).toBe(EXIT.usage);
    expect(await cli(['rate-limit', 'set', '--user', 'u', '--per-minute', '1.5', '--burst', '1'])).toBe(EXIT.usage);
    expect(await cli(['rate-limit', 'set', '--user', 'u', '--per-minute', '2000000', '--burst', '1'])).toBe(EXIT.refused);
    expect(await cli(['rate-limit', 'remove', '--project', 'cg'])).toBe(EXIT.ok);
    expect(await cli(['rate-limit', 'get', '--project', 'cg'])).toBe(EXIT.notFound);
    expect((await audits('project:cg')).map((a) => [a.actor, a.action])).toEqual([['ops-bob', 'rate-limit.set'], ['ops-bob', 'rate-limit.remove']]);
  });

  it('lists limits as a table, saying how to get the next page', async () => {
    let out = '';
    const cli = (args: string[]) => runCli(['--url', served.api.replace('/api/v1', ''), '--token', viewer, ...args], (s) => (out += s));
    await call('PUT', '/projects/clist-a/rate-limit', { jobsPerMinute: 90, burst: 3 });
    await call('PUT', '/projects/clist-b/rate-limit', { jobsPerMinute: 30, burst: 1 });
    expect(await cli(['rate-limit', 'list', '--kind', 'project', '--search', 'clist', '--limit', '1'])).toBe(EXIT.ok);
    expect(out).toMatch(/^SCOPE\s+JOBS\/MIN\s+BURST\s+TOKENS NOW\s+UPDATED\n/);
    expect(out).toMatch(/project:clist-a\s+90\s+3\s+3\s/);
    expect(out).not.toContain('clist-b ');
    expect(out).toContain('more: gatekeeper rate-limit list --cursor project:clist-a');
    out = '';
    expect(await cli(['rate-limit', 'list', '--search', 'nobody-has-this'])).toBe(EXIT.ok);
    expect(out.trim()).toBe('no rate limits');
    expect(await cli(['rate-limit', 'list', '--kind', 'team'])).toBe(EXIT.usage);
  });
});

describe('a real gatekeeper', () => {
  it('delays a throttled job with its reason in its log, then admits it once when due', async () => {
    await t.budgets.set('gk1', hoursToGpuMs(100));
    await call('PUT', '/users/quinn/rate-limit', { jobsPerMinute: 60, burst: 2 });
    const jobs = [];
    // One at a time, so the third is the one over the burst.
    for (let i = 0; i < 3; i++) {
      jobs.push(await intake.add('j', { project: 'gk1', user: 'quinn', estimatedGpuHours: 1 }));
      await eventually(() => exec.getJobCountByTypes('waiting', 'active', 'completed', 'delayed', 'prioritized'), (n) => n >= Math.min(i + 1, 2), 10_000);
    }
    const third = jobs[2]!;
    const logged = await eventually(() => intake.getJobLogs(third.id!), (l) => l.count > 0, 10_000);
    expect(logged.logs[0]).toMatch(/^throttled: user quinn over 60 jobs\/min \(burst 2\); due \d\d:\d\d:\d\d\.\d{3} UTC$/);
    // Back when due, admitted: on gpu-exec, reserved once.
    await eventually(() => exec.getJob(`intake-${third.id}`), (j) => j !== undefined, 15_000);
    await eventually(() => intake.getJob(third.id!).then((j) => j?.finishedOn), (f) => f !== undefined, 15_000);
    expect(await t.accounting.reservation(third.id!)).toMatchObject({ state: 'reserved', amountGpuMs: hoursToGpuMs(1) });
    expect((await t.accounting.readScope('project:gk1')).reservedGpuMs).toBe(3 * hoursToGpuMs(1));
    expect((await intake.getJob(third.id!))!.returnvalue).toMatchObject({ outcome: 'admitted' });
    expect((await metrics.registry.getSingleMetric('gatekeeper_throttled_total')!.get()).values).toEqual([expect.objectContaining({ labels: { kind: 'user' } })]);
    expect(await t.accounting.throttledCount(Date.now())).toBe(0);
  });

  it("does not hold another user's job behind one user's flood", async () => {
    await t.budgets.set('gk2', hoursToGpuMs(10_000));
    await call('PUT', '/users/rex/rate-limit', { jobsPerMinute: 1, burst: 1 });
    await intake.addBulk(Array.from({ length: 300 }, () => ({ name: 'f', data: { project: 'gk2', user: 'rex', estimatedGpuHours: 1 } })));
    const sam = await intake.add('s', { project: 'gk2', user: 'sam', estimatedGpuHours: 1 });
    await eventually(() => exec.getJob(`intake-${sam.id}`), (j) => j !== undefined, 15_000);
    // rex: one admitted, the other 299 delayed, each a minute after the one before.
    const delayed = await eventually(() => intake.getDelayed(), (d) => d.filter((j) => j.data.user === 'rex').length === 299, 15_000);
    const dues = await Promise.all(delayed.map((j) => t.redis.hget(t.accounting.keys.reservation(j.id!), 'due')));
    const sorted = dues.map(Number).sort((a, b) => a - b);
    expect(sorted.slice(1).map((d, i) => d - sorted[i]!)).toEqual(Array(298).fill(60_000));
    expect((await t.accounting.readScope('project:gk2')).reservedGpuMs).toBe(2 * hoursToGpuMs(1));
    expect(await t.accounting.throttledCount(Date.now())).toBe(299);
  });
});
