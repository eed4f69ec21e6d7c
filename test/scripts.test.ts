/**
 * The Lua scripts on a real Redis: the reserve/settle contract holds
 * (all-or-nothing over N scopes, idempotent per job, exact integers,
 * NOSCRIPT after SCRIPT FLUSH handled). Their wire: test/wire.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import type { JobMeta } from '../src/accounting/types.ts';
import { parseEntry } from '../src/ledger/writer.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { createRedis } from '../queues/connection.ts';
import { startLocalRedis } from './support/infra.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

/**
 * A job of n GPU-ms (n <= 3,600) priced while no rate is set: the built-in
 * default of one unit and no dollars per GPU-hour, factor 1, so it costs n
 * GPU-ms, 0.001 units (one milli-unit, rounded up) and nothing.
 */
const small = (n: number) => ({ price: { rate: { unitsMilli: 1000, usdMicro: 0 }, factorMilli: 1000 }, charges: { gpuMs: n, unitsMilli: 1, usdMicro: 0 } });
const smallCharges = (n: number) => ({ charges: small(n).charges });
const admittedSmall = (n: number) => ({ ...small(n), exempt: false });

let t: TestEnv;
// Each test its own project: a project's held jobs queue up (first in, first out).
let n = 0;
let meta: JobMeta = { project: 'p0', user: 'u', gpus: 1 };
beforeEach(() => {
  meta = { project: `p${++n}`, user: 'u', gpus: 1 };
});
const now = 1_700_000_000_000;

beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => t?.close());

describe('scripts', () => {
  it('reserves against every scope or none', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:a', 100);
    await a.definitions.setLimit('s:b', 100);
    await a.definitions.setLimit('s:c', 30);
    const miss = await a.reserve('j1', 40, ['s:a', 's:b', 's:c'], meta, now);
    expect(miss).toEqual({
      kind: 'held',
      shortfalls: [{ scope: 's:c', code: 'over-limit', limitGpuMs: 30, usedGpuMs: 0, reservedGpuMs: 0, neededGpuMs: 40 }],
      ahead: 0,
      lines: ['s:c'],
      retried: false,
    });
    for (const s of ['s:a', 's:b', 's:c']) expect((await a.readScope(s)).reservedGpuMs).toBe(0);
    expect(await a.openCount()).toBe(0);

    // j1 now waits in the line of s:c; once it is cancelled, a job that fits goes in everywhere.
    await a.cancel('j1');
    expect(await a.reserve('j2', 30, ['s:a', 's:b', 's:c'], meta, now)).toEqual({
      kind: 'reserved', amountGpuMs: 30, scopes: ['s:a', 's:b', 's:c'], softOver: [], exempt: false, ...small(30),
    });
    for (const s of ['s:a', 's:b', 's:c']) expect((await a.readScope(s)).reservedGpuMs).toBe(30);
  });

  it('names every scope that does not fit, including ones with no limit', async () => {
    await t.accounting.definitions.setLimit('s:roomy', 100);
    await t.accounting.definitions.setLimit('s:tight', 30);
    const out = await t.accounting.reserve('j3', 60, ['s:roomy', 's:none', 's:tight'], meta, now);
    expect(out.kind === 'held' && out.shortfalls.map((s) => [s.scope, s.code])).toEqual([
      ['s:none', 'no-limit'],
      ['s:tight', 'over-limit'],
    ]);
  });

  it('fits exactly at the limit, not one GPU-ms past it', async () => {
    await t.accounting.definitions.setLimit('s:edge', 1000);
    expect((await t.accounting.reserve('e1', 999, ['s:edge'], meta, now)).kind).toBe('reserved');
    expect((await t.accounting.reserve('e2', 1, ['s:edge'], meta, now)).kind).toBe('reserved');
    expect(await t.accounting.reserve('e3', 1, ['s:edge'], meta, now)).toMatchObject({
      kind: 'held',
      shortfalls: [{ scope: 's:edge', limitGpuMs: 1000, reservedGpuMs: 1000, neededGpuMs: 1 }],
    });
  });

  it('is idempotent per job: a retried reserve changes nothing', async () => {
    await t.accounting.definitions.setLimit('s:idem', 100);
    await t.accounting.reserve('i1', 10, ['s:idem'], meta, now);
    const again = await t.accounting.reserve('i1', 10, ['s:idem'], meta, now);
    expect(again).toEqual({ kind: 'already', amountGpuMs: 10, state: 'reserved', scopes: ['s:idem'], exempt: false, ...smallCharges(10) });
    expect((await t.accounting.readScope('s:idem')).reservedGpuMs).toBe(10);
  });

  it('knows a retried job among new ones in a later batch, whatever state it is in', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:known', 100);
    await a.definitions.setLimit('s:known-small', 100);
    await a.reserveMany([
      { jobId: 'k-open', amountGpuMs: 10, scopes: ['s:known'], meta },
      { jobId: 'k-done', amountGpuMs: 20, scopes: ['s:known'], meta },
      { jobId: 'k-held', amountGpuMs: 500, scopes: ['s:known-small'], meta },
    ], now);
    await a.settle('k-done', ['s:known'], 5, 'settle', now);
    // Each earlier job in the middle of new ones: the new ones are reserved,
    // the earlier ones answered from their records and counted once.
    const out = await a.reserveMany([
      { jobId: 'k-new1', amountGpuMs: 1, scopes: ['s:known'], meta },
      { jobId: 'k-open', amountGpuMs: 10, scopes: ['s:known'], meta },
      { jobId: 'k-done', amountGpuMs: 20, scopes: ['s:known'], meta },
      { jobId: 'k-held', amountGpuMs: 500, scopes: ['s:known-small'], meta },
      { jobId: 'k-new2', amountGpuMs: 2, scopes: ['s:known'], meta },
    ], now);
    expect(out.map((o) => (o.kind === 'already' ? `already ${o.state}` : o.kind === 'held' ? `held ${o.retried ? 'again' : 'now'}` : o.kind))).toEqual(
      ['reserved', 'already reserved', 'already settled', 'held again', 'reserved'],
    );
    expect(await a.readScope('s:known')).toEqual({ scope: 's:known', limitGpuMs: 100, usedGpuMs: 5, reservedGpuMs: 10 + 1 + 2 });
  });

  it('settles once: actual replaces the reservation, later calls change nothing', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:set', 100);
    await a.reserve('x1', 50, ['s:set'], meta, now);
    expect(await a.settle('x1', ['s:set'], 20, 'settle', now)).toEqual({ kind: 'settled', reservedGpuMs: 50, actualGpuMs: 20, capped: '' });
    expect(await a.settle('x1', ['s:set'], 20, 'settle', now)).toEqual({ kind: 'already', reservedGpuMs: 50, actualGpuMs: 20 });
    expect(await a.settle('x1', ['s:set'], 99, 'settle', now)).toEqual({ kind: 'already', reservedGpuMs: 50, actualGpuMs: 20 });
    expect(await a.readScope('s:set')).toEqual({ scope: 's:set', limitGpuMs: 100, usedGpuMs: 20, reservedGpuMs: 0 });
    // A settled job cannot be reserved again by a late retry.
    expect(await a.reserve('x1', 50, ['s:set'], meta, now)).toMatchObject({ kind: 'already', amountGpuMs: 50, state: 'settled' });
    expect(await a.whichOpen(['x1'])).toEqual(new Set());
  });

  it('refuses to settle against scopes that are not the reservation\'s, and reports unknown jobs', async () => {
    await t.accounting.definitions.setLimit('s:w', 100);
    await t.accounting.reserve('w1', 5, ['s:w'], meta, now);
    await expect(t.accounting.settle('w1', ['s:other'], 5, 'settle', now)).rejects.toThrow(/not the reservation's/);
    expect((await t.accounting.readScope('s:w')).reservedGpuMs).toBe(5);
    expect(await t.accounting.settle('nobody', ['s:w'], 5, 'settle', now)).toEqual({ kind: 'no-reservation' });
  });

  it('keeps amounts exact far beyond what a float would hold at 1 ms resolution', async () => {
    const big = 4_000_000_000_000_000; // 4e15 GPU-ms, ~127,000 GPU-years
    await t.accounting.definitions.setLimit('s:big', big);
    await t.accounting.reserve('b1', big - 7, ['s:big'], meta, now);
    await t.accounting.settle('b1', ['s:big'], big - 13, 'settle', now);
    expect(await t.accounting.readScope('s:big')).toEqual({ scope: 's:big', limitGpuMs: big, usedGpuMs: big - 13, reservedGpuMs: 0 });
    expect(await t.redis.hget(t.accounting.keys.scope('s:big'), 'used')).toBe(String(big - 13));
  });

  it('keeps working after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async () => {
    // Its own Redis: a flush is server-wide, and other test files share the main one.
    const dir = mkdtempSync(join(os.tmpdir(), 'gk-scripts-'));
    const server = await startLocalRedis(dir);
    const redis = createRedis(server.url);
    try {
      const a = new Accounting(redis, 'flush', 3600);
      await a.definitions.setLimit('s:flush', 100);
      await redis.script('FLUSH');
      expect((await a.reserve('f1', 10, ['s:flush'], meta, now)).kind).toBe('reserved');
      await redis.script('FLUSH');
      expect((await a.settle('f1', ['s:flush'], 3, 'settle', now)).kind).toBe('settled');
    } finally {
      await redis.quit();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes one ledger row per reserve and per settle, none for retries or misfits', async () => {
    await t.accounting.definitions.setLimit('s:led', 100);
    await t.accounting.definitions.setLimit('s:led2', 100);
    const rows = async () =>
      (await t.redis.xrange(t.accounting.keys.ledger, '-', '+'))
        .flatMap(([, flat]) => parseEntry(flat))
        .filter((r) => r.jobId.startsWith('l'))
        .map((r) => [r.kind, r.jobId, r.estimated, r.actual]);
    const out = await t.accounting.reserveMany([
      { jobId: 'l1', amountGpuMs: 10, scopes: ['s:led', 'user-day:u'], meta },
      { jobId: 'l2', amountGpuMs: 95, scopes: ['s:led'], meta }, // does not fit after l1
      { jobId: 'l3', amountGpuMs: 20, scopes: ['s:led2'], meta: { ...meta, project: 'elsewhere' } }, // not behind l2
      { jobId: 'l1', amountGpuMs: 12, scopes: ['s:led', 'user-day:u'], meta }, // retry within the batch (it answers what was reserved)
      { jobId: 'l2', amountGpuMs: 95, scopes: ['s:led'], meta }, // and a held one
    ], now);
    // Each job's outcome names the counters (periods included) it was reserved in.
    expect(out).toEqual([
      { kind: 'reserved', amountGpuMs: 10, scopes: ['s:led', 'user-day:u@2023-11-14'], softOver: [], exempt: false, ...small(10) },
      expect.objectContaining({ kind: 'held', retried: false }),
      { kind: 'reserved', amountGpuMs: 20, scopes: ['s:led2'], softOver: [], exempt: false, ...small(20) },
      { kind: 'already', amountGpuMs: 10, state: 'reserved', scopes: ['s:led', 'user-day:u@2023-11-14'], exempt: false, ...smallCharges(10) },
      expect.objectContaining({ kind: 'held', retried: true }),
    ]);
    expect((await t.accounting.readScope('s:led')).reservedGpuMs).toBe(10);
    await t.accounting.settle('l1', ['s:led', 'user-day:u@2023-11-14'], 4, 'settle', now);
    await t.accounting.settle('l1', ['s:led', 'user-day:u@2023-11-14'], 4, 'settle', now);
    expect(await rows()).toEqual([
      ['reserve', 'l1', '10', null],
      ['reserve', 'l3', '20', null],
      ['settle', 'l1', '10', '4'],
    ]);
  });

  it('keeps each job\'s own metadata and job type when one batch mixes them over the same scopes', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:mix', 100);
    await a.definitions.setExempt('eval-mix', true);
    const own = (jobType?: string, gpuType?: string) => ({ ...meta, ...(jobType ? { jobType } : {}), ...(gpuType ? { gpuType } : {}) });
    const jobs = [
      { jobId: 'm1', amountGpuMs: 10, scopes: ['s:mix'], meta: own('train', 'a100') },
      { jobId: 'm2', amountGpuMs: 10, scopes: ['s:mix'], meta: own('eval-mix') }, // exempt: tracked, not counted
      { jobId: 'm3', amountGpuMs: 10, scopes: ['s:mix'], meta: own('train', 'h100') },
      { jobId: 'm4', amountGpuMs: 10, scopes: ['s:mix'], meta: own('train', 'a100') }, // same as m1's
      { jobId: 'm5', amountGpuMs: 10, scopes: ['s:mix'], meta: own() },
    ];
    const out = await a.reserveMany(jobs, now);
    expect(out.map((o) => o.kind === 'reserved' && o.exempt)).toEqual([false, true, false, false, false]);
    expect((await a.readScope('s:mix')).reservedGpuMs).toBe(40);
    const ledger = (await t.redis.xrange(a.keys.ledger, '-', '+')).flatMap(([, flat]) => parseEntry(flat)).filter((r) => r.jobId.startsWith('m'));
    expect(ledger.map((r) => [r.jobId, r.jobType, r.gpuType, r.exempt])).toEqual([
      ['m1', 'train', 'a100', false], ['m2', 'eval-mix', null, true], ['m3', 'train', 'h100', false], ['m4', 'train', 'a100', false], ['m5', null, null, false],
    ]);
    for (const j of jobs) expect(JSON.parse((await t.redis.hget(a.keys.reservation(j.jobId), 'meta'))!)).toEqual(j.meta);
    expect(Object.keys(await t.redis.hgetall(a.keys.reservation('m2'))).sort()).toEqual(['admittedAt', 'amount', 'charge', 'exempt', 'factor', 'meta', 'rate', 'scopes', 'state']);
  });

  it('counts admitted jobs in the quotas of a user who has none, across projects in one batch', async () => {
    const a = t.accounting;
    const user = `nq${n}`;
    await a.definitions.setLimit(`project:${meta.project}`, 100);
    await a.definitions.setLimit(`project:${meta.project}b`, 15);
    const job = (jobId: string, project: string, amountGpuMs: number) =>
      ({ jobId, amountGpuMs, scopes: [`project:${project}`, `user-day:${user}`, `user-week:${user}`], meta: { ...meta, project, user } });
    const out = await a.reserveMany([
      job(`${user}-1`, meta.project, 10),
      job(`${user}-2`, `${meta.project}b`, 7),
      job(`${user}-3`, meta.project, 5),
      job(`${user}-4`, `${meta.project}b`, 8),
      job(`${user}-5`, `${meta.project}b`, 9), // 24 > 15: held, not counted
    ], now);
    expect(out.map((o) => o.kind)).toEqual(['reserved', 'reserved', 'reserved', 'reserved', 'held']);
    for (const q of ['user-day', 'user-week']) expect((await a.readScope(`${q}:${user}`, now)).reservedGpuMs).toBe(30);
    expect((await a.readScope(`project:${meta.project}b`, now)).reservedGpuMs).toBe(15);
  });

  it('decides a batch in order, each job seeing the ones before it, counters exact', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:b1', 100);
    await a.definitions.setLimit('s:b2', 50);
    const out = await a.reserveMany([
      { jobId: 'q1', amountGpuMs: 40, scopes: ['s:b1', 's:b2'], meta },
      { jobId: 'q2', amountGpuMs: 40, scopes: ['s:b1'], meta },
      { jobId: 'q3', amountGpuMs: 20, scopes: ['s:b1', 's:b2'], meta }, // b2 would be 60 > 50
      { jobId: 'q4', amountGpuMs: 20, scopes: ['s:b1'], meta }, // q3 waits for b2, not b1: q4 is not behind it
      { jobId: 'q5', amountGpuMs: 1, scopes: ['s:b1'], meta }, // b1 full at 100
      { jobId: 'q6', amountGpuMs: 1, scopes: ['s:b2'], meta }, // fits b2, but behind q3 in its line
    ], now);
    expect(out.map((o) => o.kind)).toEqual(['reserved', 'reserved', 'held', 'reserved', 'held', 'held']);
    expect(out[5]).toMatchObject({ shortfalls: [], ahead: 1, line: 's:b2' });
    expect(out[2]).toMatchObject({ shortfalls: [{ scope: 's:b2', limitGpuMs: 50, reservedGpuMs: 40, neededGpuMs: 20 }] });
    expect(out[4]).toMatchObject({ shortfalls: [{ scope: 's:b1', limitGpuMs: 100, reservedGpuMs: 100, neededGpuMs: 1 }] });
    expect((await a.readScope('s:b1')).reservedGpuMs).toBe(100);
    expect((await a.readScope('s:b2')).reservedGpuMs).toBe(40);
    expect(await a.whichOpen(['q1', 'q2', 'q3', 'q4', 'q5'])).toEqual(new Set(['q1', 'q2', 'q4']));
  });

  it('holds a new job behind the held jobs of a scope it touches even when it fits (first in, first out)', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:fifo', 10);
    await a.definitions.setLimit('s:free', 10);
    expect((await a.reserve('f-big', 20, ['s:fifo'], meta, now)).kind).toBe('held');
    expect(await a.reserve('f-small', 1, ['s:free', 's:fifo'], meta, now)).toEqual({ kind: 'held', shortfalls: [], ahead: 1, line: 's:fifo', lines: ['s:fifo'], retried: false });
    // Same project, but none of the scopes f-big waits for: not held.
    expect((await a.reserve('f-other', 1, ['s:free'], meta, now)).kind).toBe('reserved');
    expect(await a.reserve('f-small', 1, ['s:fifo'], meta, now)).toMatchObject({ kind: 'held', retried: true });
    expect(await a.heldIds(meta.project)).toEqual(['f-big', 'f-small']);
    expect((await a.readScope('s:fifo')).reservedGpuMs).toBe(0);
  });

  it('releases held jobs first in, first out, and stops a project at the first that does not fit', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:rel', 3);
    for (const [id, amount] of [['r1', 2], ['r2', 2], ['r3', 1], ['r4', 1]] as const) await a.reserve(id, amount, ['s:rel'], meta, now);
    expect(await a.heldIds(meta.project)).toEqual(['r2', 'r3', 'r4']);
    await a.definitions.setLimit('s:rel', 5);
    const out = await a.release(['r2', 'r3', 'r4'], 'fifo', 'test', now);
    expect(out).toEqual([
      { kind: 'admitted', amountGpuMs: 2, scopes: ['s:rel'], ...admittedSmall(2) },
      { kind: 'admitted', amountGpuMs: 1, scopes: ['s:rel'], ...admittedSmall(1) },
      { kind: 'held', shortfalls: [{ scope: 's:rel', code: 'over-limit', limitGpuMs: 5, usedGpuMs: 0, reservedGpuMs: 5, neededGpuMs: 1 }], ahead: 0, lines: ['s:rel'] },
    ]);
    expect(await a.heldIds(meta.project)).toEqual(['r4']);
    expect((await a.readScope('s:rel')).reservedGpuMs).toBe(5);
    expect(await a.release(['r2'], 'fifo', 'test', now)).toEqual([{ kind: 'not-held', state: 'reserved' }]);
    // Released, a record holds what an admitted one does (no held-only fields, so a rebuild restores it as it was); one still held keeps its scope list, lines and misfits.
    const fields = async (id: string) => Object.keys(await t.redis.hgetall(a.keys.reservation(id))).sort();
    expect(await fields('r1')).toEqual(['admittedAt', 'amount', 'charge', 'factor', 'meta', 'rate', 'scopes', 'state']);
    expect(await fields('r2')).toEqual(['admittedAt', 'amount', 'charge', 'factor', 'meta', 'rate', 'scopes', 'state']);
    expect(await fields('r4')).toEqual(['amount', 'bases', 'heldAt', 'lines', 'meta', 'misfits', 'state']);
    // Its misfits as of the release that kept it: scope, code, limit, used, reserved, unit (h: GPU-ms), need.
    expect(await t.redis.hget(a.keys.reservation('r4'), 'misfits')).toBe('s:rel|2|5|0|5|h|1');
  });

  it('writes no threshold state for a scope whose usage crossed no threshold', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:calm', 100);
    await a.reserve('calm1', 10, ['s:calm'], meta, now);
    expect(await t.redis.hmget(a.keys.scope('s:calm'), 'crossed', 'crossedLimit')).toEqual([null, null]);
    await a.reserve('calm2', 70, ['s:calm'], meta, now); // 80 of 100: 75 % crossed
    expect(await t.redis.hmget(a.keys.scope('s:calm'), 'crossed', 'crossedLimit')).toEqual(['75', '100']);
  });

  it('decides a job listed twice in one release once', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:twice', 0);
    await a.reserve('tw1', 2, ['s:twice'], meta, now);
    await a.definitions.setLimit('s:twice', 10);
    const out = await a.release(['tw1', 'tw1'], 'fifo', 'test', now);
    expect(out).toEqual([{ kind: 'admitted', amountGpuMs: 2, scopes: ['s:twice'], ...admittedSmall(2) }, { kind: 'not-held', state: 'reserved' }]);
    expect((await a.readScope('s:twice')).reservedGpuMs).toBe(2);
  });

  it('changes nothing when one record of a release batch is corrupt, wherever it is in the batch', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:corrupt', 0);
    for (const id of ['c1', 'c2', 'c3']) await a.reserve(id, 1, ['s:corrupt'], meta, now);
    await a.definitions.setLimit('s:corrupt', 10);
    await t.redis.hset(a.keys.reservation('c3'), 'meta', '{not json');
    const snapshot = async () => ({ held: await a.heldIds(meta.project), scope: await a.readScope('s:corrupt'), open: await a.openCount() });
    const before = await snapshot();
    await expect(a.release(['c1', 'c2', 'c3'], 'fifo', 'test', now)).rejects.toThrow();
    expect(await snapshot()).toEqual(before);
    expect(before.held).toEqual(['c1', 'c2', 'c3']);
  });

  it('never lets a newer held job overtake an older one, even when released alone', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:ovt', 0);
    await a.reserve('o1', 5, ['s:ovt'], meta, now);
    await a.reserve('o2', 1, ['s:ovt'], meta, now);
    await a.definitions.setLimit('s:ovt', 100);
    expect(await a.release(['o2'], 'fifo', 'test', now)).toEqual([{ kind: 'held', shortfalls: [], ahead: 1, line: 's:ovt' }]);
    expect(await a.release(['o1', 'o2'], 'fifo', 'test', now)).toEqual([
      { kind: 'admitted', amountGpuMs: 5, scopes: ['s:ovt'], ...admittedSmall(5) },
      { kind: 'admitted', amountGpuMs: 1, scopes: ['s:ovt'], ...admittedSmall(1) },
    ]);
  });

  it('never lets a newer job overtake an older one waiting for a scope both touch, whichever lines each was held in', async () => {
    const a = t.accounting;
    for (const [scope, limit] of [['s:A', 0], ['s:B', 0], ['s:Y', 10]] as const) await a.definitions.setLimit(scope, limit);
    expect((await a.reserve('K', 5, ['s:A', 's:Y'], meta, now)).kind).toBe('held'); // waits for A only
    await a.definitions.setLimit('s:A', 100);
    expect((await a.reserveMany([{ jobId: 'J', order: now + 1, amountGpuMs: 5, scopes: ['s:B', 's:Y'], meta }], now))[0]!.kind).toBe('held'); // waits for B only
    await a.definitions.setLimit('s:Y', 4); // now K does not fit Y: a release moves it into Y's line
    expect(await a.release(['K'], 'fifo', 'test', now)).toMatchObject([{ kind: 'held', shortfalls: [{ scope: 's:Y' }] }]);
    await a.definitions.setLimit('s:B', 100);
    await a.definitions.setLimit('s:Y', 5); // room for one of them: K's, as it is older
    expect(await a.release(['J'], 'fifo', 'test', now)).toEqual([{ kind: 'held', shortfalls: [], ahead: 1, line: 's:Y' }]);
    expect(await a.release(['K', 'J'], 'fifo', 'test', now)).toMatchObject([{ kind: 'admitted' }, { kind: 'held' }]);
  });

  it('overrides a held job past the limit, and cancels one without touching counters', async () => {
    const a = t.accounting;
    await a.definitions.setLimit('s:ov', 1);
    await a.reserve('v1', 5, ['s:ov'], meta, now);
    await a.reserve('v2', 5, ['s:ov'], meta, now);
    expect(await a.release(['v2'], 'override', 'override by test', now)).toEqual([{ kind: 'admitted', amountGpuMs: 5, scopes: ['s:ov'], ...admittedSmall(5) }]);
    expect((await a.readScope('s:ov')).reservedGpuMs).toBe(5);
    expect(await a.cancel('v1')).toEqual({ kind: 'cancelled' });
    expect(await a.cancel('v1')).toEqual({ kind: 'not-held', state: 'cancelled' });
    expect(await a.heldIds(meta.project)).toEqual([]);
    expect(await a.reserve('v1', 5, ['s:ov'], meta, now)).toEqual({ kind: 'cancelled' });
    expect((await a.readScope('s:ov')).reservedGpuMs).toBe(5);
  });

  it('reads a definition without its compact field, or with one that does not parse, field by field', async () => {
    const a = t.accounting;
    // As a version before the compact field 'c' wrote it: soft, 10 % grace (admits up to 55).
    await t.redis.hset(a.keys.def('s:old'), { limit: '50', policy: 'soft', grace: '10', period: 'none', rollover: '0', setAt: '0' });
    expect(await a.reserve('compact-1', 40, ['s:old'], meta, now)).toMatchObject({ kind: 'reserved' });
    expect(await a.reserve('compact-2', 20, ['s:old'], meta, now)).toMatchObject({ kind: 'held', shortfalls: [{ scope: 's:old', code: 'over-grace', limitGpuMs: 55 }] });
    await t.redis.hset(a.keys.def('s:garbled'), { limit: '20', policy: 'hard', period: 'none', rollover: '0', setAt: '0', c: 'not|a|definition' });
    expect(await a.reserve('compact-3', 25, ['s:garbled'], meta, now)).toMatchObject({ kind: 'held', shortfalls: [{ scope: 's:garbled', code: 'over-limit', limitGpuMs: 20 }] });
  });
});
