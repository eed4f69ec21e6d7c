/**
 * GPU caps at the edges: the API (admin sets, viewer reads, every change
 * audited, bad bodies answered 400 changing nothing) and a real gatekeeper
 * and waker: a job over its project's cap waits on gpu-held with the reason
 * in GPUs, and starts by itself when a running job ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createWaker, type Waker } from '../workers/waker.ts';
import { execJobId } from '../queues/names.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const tokens = { admin: 'test-admin-token-0123456789', viewer: 'test-viewer-token-0123456789' };
const { admin, viewer } = tokens;
let t: TestEnv;
let served: ServedApi;
let exec: Queue;
let waker: Waker;

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  served = await serveApi(t, { clock: systemClock, tokens });
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  waker = createWaker({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: systemClock });
});
afterAll(async () => {
  await waker?.close();
  await served?.close();
  await exec?.close();
  await t?.close();
});

const call = (method: string, path: string, body?: unknown, token = admin) => callApi(served.api, token, method, path, body);

describe('GPU caps over HTTP', () => {
  it('sets, shows and removes a cap with a peak window, each change audited', async () => {
    const body = { maxGpus: 16, peak: { maxGpus: 4, days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '18:00' }, reason: 'peak hours' };
    const put = await call('PUT', '/projects/api-a/concurrency', body);
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ scope: 'gpus-project:api-a', maxGpus: 16, peak: body.peak, inFlightGpus: 0, release: 'auto' });
    expect(put.body.effectiveMaxGpus).toBe(put.body.peakNow ? 4 : 16);
    expect((await call('GET', '/projects/api-a/concurrency', undefined, viewer)).body).toMatchObject({ maxGpus: 16 });
    expect((await call('PUT', '/users/ann/concurrency', { maxGpus: 2 })).body.scope).toBe('gpus-user:ann');
    expect((await call('PUT', '/projects/api-a/gpu-types/h100/concurrency', { maxGpus: 8 })).body.scope).toBe('gpus-type:api-a/h100');
    expect((await call('PUT', '/concurrency', { maxGpus: 64, release: 'manual' })).body).toMatchObject({ scope: 'gpus-global:all', release: 'manual' });
    expect((await call('GET', '/gpu-caps', undefined, viewer)).body.caps.map((c: { scope: string }) => c.scope)).toEqual(
      ['gpus-global:all', 'gpus-project:api-a', 'gpus-type:api-a/h100', 'gpus-user:ann'],
    );
    expect((await call('DELETE', '/concurrency', { reason: 'no longer needed' })).body).toEqual({ scope: 'gpus-global:all', removed: true });
    expect((await call('GET', '/concurrency')).status).toBe(404);
    const audit = await t.pool.query(`SELECT action, reason FROM audit WHERE target = 'gpus-project:api-a'`);
    expect(audit.rows).toEqual([{ action: 'gpu-cap.set', reason: 'peak hours' }]);
  });

  it.each([
    [{ maxGpus: -1 }, 'maxGpus may not be negative'],
    [{ maxGpus: 1.5 }, 'maxGpus must be a whole number'],
    [{}, 'maxGpus is required'],
    [{ maxGpus: 4, peak: { maxGpus: 2, days: ['mon'], from: '18:00', to: '09:00' } }, 'peak.from must be before peak.to'],
    [{ maxGpus: 4, peak: { maxGpus: 2, days: ['someday'], from: '09:00', to: '18:00' } }, 'peak.days must be among'],
    [{ maxGpus: 4, peak: { maxGpus: 2, days: ['mon'], from: '9am', to: '18:00' } }, 'peak.from must be a time'],
    [{ maxGpus: 4, gpus: 2 }, 'unknown field'],
  ])('refuses %j with a 400 saying why, and changes nothing', async (bad, why) => {
    const r = await call('PUT', '/projects/api-bad/concurrency', bad);
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain(why);
    expect((await call('GET', '/projects/api-bad/concurrency')).status).toBe(404);
  });

  it('lets a viewer read but not change', async () => {
    expect((await call('PUT', '/projects/api-v/concurrency', { maxGpus: 1 }, viewer)).status).toBe(403);
  });

  it('is set, read, listed and removed with the CLI, which refuses an unclear target', async () => {
    let out = '';
    const cli = (args: string[]) => runCli(['--url', served.api.replace('/api/v1', ''), '--token', admin, '--actor', 'ops-bob', ...args], (s) => (out += s));
    expect(await cli(['concurrency', 'set', '--project', 'cli-a', '--gpu-type', 'h100', '--max-gpus', '8', '--peak-max-gpus', '2', '--peak-days', 'sat,sun'])).toBe(EXIT.ok);
    expect(out).toMatch(/gpus-type:cli-a\/h100\s+8\s+2 sat,sun 09:00-18:00/);
    out = '';
    expect(await cli(['--json', 'concurrency', 'get', '--project', 'cli-a', '--gpu-type', 'h100'])).toBe(EXIT.ok);
    expect(JSON.parse(out)).toMatchObject({ maxGpus: 8, peak: { maxGpus: 2, days: ['sat', 'sun'], from: '09:00', to: '18:00' } });
    expect(await cli(['concurrency', 'set', '--user', 'u', '--global', '--max-gpus', '1'])).toBe(EXIT.usage);
    expect(await cli(['concurrency', 'set', '--gpu-type', 'h100', '--max-gpus', '1'])).toBe(EXIT.usage);
    expect(await cli(['concurrency', 'set', '--global', '--max-gpus', '-2'])).toBe(EXIT.usage);
    out = '';
    expect(await cli(['concurrency', 'list'])).toBe(EXIT.ok);
    expect(out).toContain('gpus-type:cli-a/h100');
    expect(await cli(['concurrency', 'remove', '--project', 'cli-a', '--gpu-type', 'h100'])).toBe(EXIT.ok);
    expect(await cli(['concurrency', 'get', '--project', 'cli-a', '--gpu-type', 'h100'])).toBe(EXIT.notFound);
  });

  it('preflight says which jobs would wait for GPUs and which for hours', async () => {
    await t.budgets.set('api-pre', hoursToGpuMs(2));
    await call('PUT', '/projects/api-pre/concurrency', { maxGpus: 4 });
    const job = (gpus: number) => ({ project: 'api-pre', user: 'pia', estimatedGpuHours: 1, gpus });
    // 2 GPU-h and 4 GPUs: the first takes every GPU, the third would also pass the hours.
    const r = await call('POST', '/preflight', { jobs: [{ ...job(4), estimatedGpuHours: 1.5 }, job(2), job(1)] }, viewer);
    expect(r.status).toBe(200);
    expect(r.body.outcomes.map((o: Record<string, unknown>) => [o.outcome, o.waitsFor ?? null])).toEqual([
      ['admitted', null], ['held', ['hours', 'gpus']], ['held', ['hours', 'gpus', 'line']],
    ]);
    expect(r.body.outcomes[1].reason).toBe('project api-pre: 1.5 of 2.0 GPU-h used or reserved; job needs 1.0; and project api-pre: 4 of 4 GPUs in flight; job needs 2');
  });

  it('holds a job over its project cap and starts it by itself when a running job ends', async () => {
    await t.budgets.set('api-run', hoursToGpuMs(100));
    await call('PUT', '/projects/api-run/concurrency', { maxGpus: 4 });
    await waker.start();
    const add = (id: string) => served.intake.add('train', { project: 'api-run', user: 'rua', estimatedGpuHours: 1, gpus: 4 }, { jobId: id });
    await add('ar1');
    await eventually(() => exec.getJob(execJobId('ar1')), (j) => j !== undefined);
    await add('ar2');
    const held = await eventually(async () => (await call('GET', '/held?project=api-run')).body.jobs, (j) => j.length === 1);
    expect(held[0].reason).toBe('project api-run: 4 of 4 GPUs in flight; job needs 4');
    expect(held[0].startsWhen).toBe('starts when 4 GPUs free up in project api-run');
    expect(held[0].hold.shortfalls).toEqual([{ scope: 'gpus-project:api-run', code: 'over-gpus', limitGpus: 4, inFlightGpus: 4, neededGpus: 4 }]);
    const r = (await t.accounting.reservation('ar1'))!;
    await t.accounting.settle('ar1', r.scopes, hoursToGpuMs(1), 'settle', Date.now());
    await eventually(() => exec.getJob(execJobId('ar2')), (j) => j !== undefined);
    expect((await call('GET', '/projects/api-run/concurrency')).body.inFlightGpus).toBe(4);
  });

  it('shows each cap on the dashboard as GPUs in flight of the cap in force, with its peak value', async () => {
    await call('PUT', '/projects/dash-g/concurrency', { maxGpus: 12, peak: { maxGpus: 3, days: ['sun'], from: '00:00', to: '00:01' } });
    const res = await fetch(served.api.replace('/api/v1', '') + '/dashboard?q=dash-g', { headers: { authorization: `Bearer ${viewer}` } });
    const html = await res.text();
    const table = html.slice(html.indexOf('<table id="gpus">'), html.indexOf('</table>', html.indexOf('<table id="gpus">')));
    expect(table).toContain('project dash-g&#39;s GPUs in flight');
    expect(table).toContain('aria-label="0 of 12 GPUs in flight"');
    expect(table).toContain('(3 in peak hours)');
    expect(table).not.toContain('api-run');
  });
});
