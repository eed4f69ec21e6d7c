/**
 * A project's GPU types, against real Redis and Postgres: the types it may
 * use (a job for another, or naming none, is rejected with the list; the
 * change is audited and survives a copy from Postgres), and a budget for
 * one type (200 H100-hours a month) that holds that type's jobs only.
 */
import { describe, expect, it, vi } from 'vitest';
import { apiSuite, TEST_TOKENS as tokens } from './support/api.ts';
import { decideAdmissions } from '../src/accounting/admission.ts';
import { EXIT, runCli } from '../src/cli/main.ts';
import { Queue } from 'bullmq';
import { eventually } from './support/env.ts';
import { rejectedJobId } from '../queues/names.ts';
import { AllowedGpuTypes, syncAllowedGpuTypes } from '../src/accounting/allowed-gpu-types.ts';

const { env, call } = apiSuite();
let n = 0;
const job = (project: string, gpuType?: string) => ({
  intakeJobId: `${project}-${++n}`, order: n,
  data: { project, user: 'ann', gpus: 1, estimatedGpuHours: 1, ...(gpuType === undefined ? {} : { gpuType }) },
});

describe('GPU types of a project', () => {
  it('rejects a job for a type its project may not use, or naming none, with the types it may', async () => {
    await call('PUT', '/projects/vision/budget', { gpuHours: 100 });
    expect(await call('PUT', '/projects/vision/gpu-types', { allowed: ['h100', 'a100', 'h100'] }, tokens.viewer)).toMatchObject({ status: 403 });
    const put = await call('PUT', '/projects/vision/gpu-types', { allowed: ['h100', 'a100', 'h100'], reason: 'no T4s for training' });
    expect(put).toMatchObject({ status: 200, body: { project: 'vision', allowed: ['a100', 'h100'] } });
    const out = await decideAdmissions(env.t.accounting, [job('vision', 't4'), job('vision'), job('vision', 'h100')], Date.now());
    expect(out.map((d) => (d.kind === 'rejected' ? d.reason : d.kind))).toEqual([
      'project vision may use only a100, h100; the job asks for "t4"',
      'project vision may use only a100, h100; the job names no gpuType',
      'admitted',
    ]);
    // Other projects are not restricted.
    expect((await decideAdmissions(env.t.accounting, [job('other', 't4')], Date.now()))[0]).toMatchObject({ kind: 'held' });
    const audit = (await env.t.pool.query("SELECT action, before, after, reason FROM audit WHERE target = 'project:vision' AND action LIKE 'gpu-types.%'")).rows;
    expect(audit).toEqual([{ action: 'gpu-types.allow', before: { allowedGpuTypes: null }, after: { allowedGpuTypes: ['a100', 'h100'] }, reason: 'no T4s for training' }]);
    expect(await call('GET', '/projects/vision/gpu-types', undefined, tokens.viewer)).toMatchObject({ status: 200, body: { allowed: ['a100', 'h100'] } });
  });

  it('keeps the list through a copy from Postgres (start-up, rebuild), and allows any type again with null', async () => {
    await call('PUT', '/projects/copied/budget', { gpuHours: 100 });
    await call('PUT', '/projects/copied/gpu-types', { allowed: ['l4'] });
    await env.t.redis.unlink(env.t.accounting.keys.gpuAllowed);
    await env.t.budgets.syncLimits();
    expect((await decideAdmissions(env.t.accounting, [job('copied', 'h100')], Date.now()))[0]).toMatchObject({ kind: 'rejected' });
    expect(await call('PUT', '/projects/copied/gpu-types', { allowed: null })).toMatchObject({ status: 200, body: { allowed: null } });
    expect((await decideAdmissions(env.t.accounting, [job('copied', 'h100')], Date.now()))[0]).toMatchObject({ kind: 'admitted' });
  });

  it('keeps a narrowing made while the lists are copied from Postgres: the copy waits for the change', async () => {
    const { pool, accounting } = env.t;
    const defs = accounting.definitions;
    const lists = new AllowedGpuTypes(pool, accounting);
    const admin = { name: 'ops-alice', role: 'admin' } as const;
    await lists.set('racing', ['h100', 'a100'], admin, null);
    // Sessions of this database waiting on an advisory lock (pg_locks lists every database's).
    const waiting = async () => Number((await pool.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0].count);
    const write = defs.defineAllowedGpuTypes.bind(defs);
    let copy: Promise<number> | undefined;
    let copied = false;
    const spy = vi.spyOn(defs, 'defineAllowedGpuTypes').mockImplementation(async (project, allowed) => {
      await write(project, allowed);
      if (copy) return;
      // The change wrote Redis and holds the project's lock, not yet committed: a start-up copy runs now,
      // and the change commits once the copy has finished (it took no lock) or waits for the lock.
      copy = syncAllowedGpuTypes(pool, defs).finally(() => void (copied = true));
      copy.catch(() => {});
      await eventually(async () => copied || (await waiting()) > 0, Boolean);
    });
    try {
      await lists.set('racing', ['a100'], admin, 'H100s go to training');
      await copy;
    } finally {
      spy.mockRestore();
    }
    expect((await lists.get('racing'))!.allowed).toEqual(['a100']);
    expect(await accounting.allowedGpuTypes('racing')).toEqual(['a100']);
  });

  it('rejects a held job whose type its project may no longer use when it is released, and admits the rest', async () => {
    const { intake } = env.served;
    const t = env.t;
    await call('PUT', '/projects/narrowed/budget', { gpuHours: 1 });
    for (const [id, gpuType] of [['nw1', 'a100'], ['nw2', 'h100'], ['nw3', 'a100']] as const) {
      await intake.add('train', { project: 'narrowed', user: 'ann', estimatedGpuHours: 1, gpuType }, { jobId: id });
      await eventually(() => intake.getJobState(id), (s) => s === 'completed');
    }
    expect((await t.accounting.heldIds('narrowed')).sort()).toEqual(['nw2', 'nw3']);
    await call('PUT', '/projects/narrowed/gpu-types', { allowed: ['a100'] });
    await call('PUT', '/projects/narrowed/budget', { gpuHours: 10 });
    const reason = 'project narrowed may use only a100; the job asks for "h100"';
    const r = await call('POST', '/held/release', { project: 'narrowed' });
    expect(r.body).toMatchObject({ considered: 2, admitted: 1, admittedIds: ['nw3'], stillHeld: 0, rejected: [{ jobId: 'nw2', reason }] });
    expect(await t.accounting.heldIds('narrowed')).toEqual([]);
    const rejected = new Queue(t.config.queues.rejected, { connection: t.redis, prefix: t.config.queuePrefix });
    try {
      expect((await rejected.getJob(rejectedJobId('nw2')))?.data.rejected).toMatchObject({ intakeJobId: 'nw2', reason, by: 'gatekeeper' });
    } finally {
      await rejected.close();
    }
    // Nothing was counted for it: the budget holds the two a100 hours only.
    expect((await call('GET', '/projects/narrowed/budget')).body).toMatchObject({ reserved: 2 });
    expect((await t.accounting.reservation('nw2'))).toMatchObject({ state: 'cancelled' });
  });

  it('refuses a list that is not GPU type names', async () => {
    for (const [body, message] of [
      [{ allowed: 'h100' }, 'allowed must be a list of GPU types, or null for any'],
      [{ allowed: ['A100 80GB'] }, 'a GPU type must be 1-128 characters of A-Z a-z 0-9 . _ -'],
      [{}, 'allowed is required'],
    ] as const) {
      const r = await call('PUT', '/projects/bad/gpu-types', body);
      expect(r.status).toBe(400);
      expect(r.body.error.message).toContain(message.split(' ')[0]);
    }
    expect((await call('GET', '/projects/bad/gpu-types')).body).toMatchObject({ allowed: null });
  });

  it('holds a project at 2 H100-hours a month while its A100 jobs go on', async () => {
    await call('PUT', '/projects/typed/budget', { gpuHours: 100 });
    const put = await call('PUT', '/projects/typed/gpu-types/h100/budget', { gpuHours: 2, period: 'month', reason: 'H100s are scarce' });
    expect(put).toMatchObject({ status: 200, body: { project: 'typed', gpuType: 'h100', unit: 'gpuHours', limit: 2, reserved: 0, remaining: 2, period: 'month' } });
    const out = await decideAdmissions(env.t.accounting, [job('typed', 'h100'), job('typed', 'h100'), job('typed', 'h100'), job('typed', 'a100')], Date.now());
    expect(out.map((d) => d.kind)).toEqual(['admitted', 'admitted', 'held', 'admitted']);
    expect((await call('GET', '/projects/typed/gpu-types/h100/budget')).body).toMatchObject({ reserved: 2, remaining: 0 });
    expect(out[2]).toMatchObject({ reason: "project typed's h100 budget: 2.0 of 2.0 GPU-h used or reserved; job needs 1.0" });
    expect(await call('GET', '/projects/typed/gpu-types/a100/budget', undefined, tokens.viewer)).toMatchObject({ status: 404 });
    // The project's GPU types list its type budgets, each with its numbers.
    expect((await call('GET', '/projects/typed/gpu-types', undefined, tokens.viewer)).body).toMatchObject({ allowed: null, budgets: [{ gpuType: 'h100', limit: 2, reserved: 2, remaining: 0, period: 'month' }] });
    expect((await call('DELETE', '/projects/typed/gpu-types/h100/budget', { reason: 'done' })).body).toMatchObject({ limit: null });
    expect((await call('GET', '/projects/typed/gpu-types')).body.budgets).toEqual([]);
  });

  it('is set and shown from the CLI', async () => {
    let out = '';
    const cli = (args: string[]) => runCli(['--url', env.served.api.replace('/api/v1', ''), '--token', tokens.admin, ...args], (s) => (out += s));
    expect(await cli(['budget', 'gpu-types', 'clip', '--allow', 'h100, a100'])).toBe(EXIT.ok);
    expect(out).toBe('clip: only a100, h100\n');
    out = '';
    expect(await cli(['budget', 'type', 'clip', 'h100', '150.5', '--unit', 'usd', '--period', 'month'])).toBe(EXIT.ok);
    expect(out.split('\n')[1]).toMatch(/^project clip's h100 +\d{4}-\d\d +\$150\.50 +\$0\.00 +\$0\.00 +\$150\.50 /);
    out = '';
    // Shown with the types it may use.
    expect(await cli(['budget', 'gpu-types', 'clip'])).toBe(EXIT.ok);
    expect(out.split('\n')[0]).toBe('clip: only a100, h100');
    expect(out).toMatch(/^project clip's h100 +\d{4}-\d\d +\$150\.50 /m);
    out = '';
    expect(await cli(['budget', 'gpu-types', 'clip', '--any'])).toBe(EXIT.ok);
    expect(out).toBe('clip: any GPU type\n');
  });
});

