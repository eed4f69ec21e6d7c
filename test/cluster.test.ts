/**
 * Redis Cluster (REDIS_CLUSTER=1) on a local cluster of 3 masters started from
 * redis-server, one for the file (each test also runs alone, -t): the
 * admission pipeline end to end with a budget and quotas, an admin's release,
 * a zero drift audit; every Lua script after SCRIPT FLUSH; where the keys
 * land; the eviction check on every master; `npm start` serving a budget. By
 * design one deployment's keys, its queues' and its gatekeeper's, all share
 * the slot of its prefix's hash tag (one master holds them); separate
 * deployments spread over the masters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { createTestEnv, eventually, waitExit, type TestEnv } from './support/env.ts';
import { freePort, startLocalRedisCluster } from './support/infra.ts';
import { startPipeline } from './support/pipeline.ts';
import { assertExactlyOnce, readOutcomes } from './support/outcomes.ts';
import { masters } from '../queues/connection.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { JobMeta } from '../src/accounting/types.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { checkRedisPolicy, RedisPolicyError } from '../src/redis/policy.ts';
import { callScript } from '../src/redis/scripts.ts';
import { hashTag } from '../src/redis/keys.ts';
import { unlinkMatching } from '../src/redis/unlink.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

let cluster: Awaited<ReturnType<typeof startLocalRedisCluster>>;
let t: TestEnv;
const q = {} as Record<'intake' | 'exec' | 'held', Queue>;
const closers: (() => Promise<unknown>)[] = [];
const H = hoursToGpuMs(1);
const admin = { name: 'ops', role: 'admin' } as const;

beforeAll(async () => {
  cluster = await startLocalRedisCluster();
  t = await createTestEnv({ REDIS_URL: cluster.url, REDIS_CLUSTER: '1', RECONCILE_INTERVAL_MS: '20' }, { liveClock: true });
  const pipeline = await startPipeline(t);
  for (const k of ['intake', 'exec', 'held'] as const) q[k] = new Queue(t.config.queues[k], { connection: t.redis, prefix: t.config.queuePrefix });
  closers.push(() => pipeline.close(), ...Object.values(q).map((x) => () => x.close()));
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await t?.close();
  await cluster?.stop();
});

const slotOf = async (key: string) => Number(await t.redis.cluster('KEYSLOT', key));
/** The port of the master that serves `slot`. */
async function ownerOf(slot: number): Promise<number> {
  const ranges = await t.redis.cluster('SLOTS');
  return ranges.find(([from, to]) => from <= slot && slot <= to)![2]![1];
}
/** Keys matching `pattern` on each master, by port. */
async function keysByMaster(pattern: string): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const node of await masters(t.redis)) {
    let [cursor, n] = ['0', 0];
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      [cursor, n] = [next, n + keys.length];
    } while (cursor !== '0');
    out.set(node.options.port!, n);
  }
  return out;
}

describe('on a 3-master Redis Cluster', () => {
  it('admits within the budget, holds the rest, settles exactly, and an admin releases them', async () => {
    await t.budgets.set('alpha', 10 * H);
    for (const user of ['ana', 'bo']) await t.budgets.setQuota(user, { daily: { limitGpuMs: 12 * H }, weekly: { limitGpuMs: 40 * H } }, SYSTEM, null);
    await q.intake.addBulk(
      Array.from({ length: 15 }, (_, i) => ({
        name: 'render',
        data: { project: 'alpha', user: i % 2 ? 'bo' : 'ana', estimatedGpuHours: 1, payload: { simulate: { durationMs: 20, gpuHours: 0.5 } } },
      })),
    );
    await eventually(() => q.intake.getCompletedCount(), (n) => n === 15);
    expect(await t.accounting.heldIds('alpha')).toHaveLength(5);
    const onHeld = await q.held.getJobCounts('prioritized', 'waiting');
    expect(onHeld.prioritized! + onHeld.waiting!).toBe(5);
    // The 10 admitted run and are settled at their actual half hour.
    await eventually(() => q.exec.getCompletedCount(), (n) => n === 10);
    expect(await eventually(() => t.budgets.get('alpha'), (b) => b!.reservedGpuMs === 0)).toMatchObject({ usedGpuMs: 5 * H, remainingGpuMs: 5 * H });

    await t.budgets.set('alpha', 15 * H, admin, 'deadline');
    const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    closers.push(() => held.close());
    const report = await held.release({ project: 'alpha' }, admin);
    expect(report).toMatchObject({ considered: 5, stillHeld: [], notHeld: [] });
    expect(report.admitted).toHaveLength(5);
    await eventually(() => q.exec.getCompletedCount(), (n) => n === 15);
    expect(await eventually(() => t.budgets.get('alpha'), (b) => b!.reservedGpuMs === 0)).toMatchObject({ usedGpuMs: 7.5 * H, remainingGpuMs: 7.5 * H });
    for (const [user, jobs] of [['ana', 8], ['bo', 7]] as const) {
      const quota = await t.budgets.quota(user);
      for (const v of [quota.daily, quota.weekly]) expect(v).toMatchObject({ usedGpuMs: (jobs * H) / 2, reservedGpuMs: 0 });
    }

    const outcomes = await readOutcomes(t);
    expect(assertExactlyOnce(outcomes)).toEqual([]);
    expect([outcomes.admitted.length, outcomes.held.length, outcomes.rejected.length]).toEqual([15, 0, 0]);
    const rows = await eventually(
      async () => (await t.pool.query(`SELECT kind, count(*)::int AS n, sum(coalesce(actual_gpu_ms, 0))::bigint AS actual FROM ledger GROUP BY kind ORDER BY kind`)).rows,
      (r) => r.length === 2 && r[1].n === 15,
    );
    expect(rows).toEqual([{ kind: 'reserve', n: 15, actual: 0 }, { kind: 'settle', n: 15, actual: 7.5 * H }]);
    const audit = await new DriftAudit(t.redis, t.accounting, t.pool).run();
    expect(audit).toMatchObject({ counters: 5, drift: [] }); // alpha; ana and bo, day and week
  });

  it('runs every Lua script after SCRIPT FLUSH on every master, for a deployment on another master', async () => {
    const tagA = hashTag(t.config.queuePrefix)!;
    const ownerA = await ownerOf(await slotOf(tagA));
    // A second deployment whose tag lands on another master than this file's.
    let prefixB = '';
    for (let i = 0; !prefixB; i++) if ((await ownerOf(await slotOf(`${tagA}-b${i}`))) !== ownerA) prefixB = `{${tagA}-b${i}}`;
    const b = new Accounting(t.redis, prefixB, t.config.settledRetainSeconds);
    for (const node of await masters(t.redis)) await node.script('FLUSH'); // every call below starts with NOSCRIPT
    const meta: JobMeta = { project: 'beta', user: 'cy', gpus: 1 };
    const now = Date.now();
    await b.definitions.setLimit('project:beta', 3 * H);
    const scopes = ['project:beta', 'user-day:cy'];
    expect(await b.reserve('b1', 2 * H, scopes, meta, now)).toMatchObject({ kind: 'reserved', amountGpuMs: 2 * H });
    expect(await b.reserve('b2', 2 * H, scopes, meta, now)).toMatchObject({ kind: 'held', ahead: 0 });
    expect(await b.reserve('b3', 1, scopes, meta, now)).toMatchObject({ kind: 'held', ahead: 1, line: 'project:beta' });
    expect(await b.cancel('b3')).toEqual({ kind: 'cancelled' });
    expect(await b.release(['b2'], 'fifo', 'test', now)).toMatchObject([{ kind: 'held', ahead: 0 }]);
    const before = await b.scopes(scopes, now);
    expect(before[0]).toMatchObject({ limitGpuMs: 3 * H, usedGpuMs: 0, reservedGpuMs: 2 * H });
    const ids = before.map((s) => s.id);
    expect(await b.settle('b1', ids, 1 * H, 'settle', now)).toEqual({ kind: 'settled', reservedGpuMs: 2 * H, actualGpuMs: 1 * H, capped: '' });
    expect(await b.release(['b2'], 'fifo', 'test', now)).toMatchObject([{ kind: 'admitted', amountGpuMs: 2 * H }]);
    expect(await b.readScope('project:beta', now)).toEqual({ scope: 'project:beta', limitGpuMs: 3 * H, usedGpuMs: 1 * H, reservedGpuMs: 2 * H });
    const [, streamExists, counters] = (await callScript(t.redis, 'snapshot', [b.keys.ledger, b.keys.counters], [b.keys.prefix])) as [string, number, string[][]];
    expect(streamExists).toBe(1);
    // used, reserved, exempt used and reserved, then units and dollars (the built-in rate: one unit, no dollars, an hour).
    const row = (id: string) => [id, String(H), String(2 * H), '0', '0', '1000', '2000', '0', '0'];
    expect(counters.sort()).toEqual([row(ids[0]!), row(ids[1]!)].sort());

    // Slots: each deployment's keys hash to its tag's slot, queues and gatekeeper alike.
    const slotA = await slotOf(tagA);
    const a = t.accounting.keys;
    for (const key of [a.open, a.ledger, a.scope('project:alpha'), a.reservation('1'), a.line('project:alpha'), q.intake.toKey('wait'), q.exec.toKey('completed'), q.held.toKey('prioritized')]) {
      expect(await slotOf(key), key).toBe(slotA);
    }
    const slotB = await slotOf(hashTag(prefixB)!);
    for (const key of [b.keys.open, b.keys.scope(ids[0]!), b.keys.reservation('b1')]) expect(await slotOf(key), key).toBe(slotB);
    // The cluster: 3 masters splitting the 16,384 slots; each deployment on its slot's master alone.
    const ranges = (await t.redis.cluster('SLOTS')).map(([from, to]) => [from, to]).sort((x, y) => x[0]! - y[0]!);
    expect(ranges).toEqual([[0, 5460], [5461, 10921], [10922, 16383]]);
    expect(await masters(t.redis)).toHaveLength(3);
    const ownerB = await ownerOf(slotB);
    for (const [pattern, owner] of [[`${a.prefix}*`, ownerA], [`${t.config.queuePrefix}:*`, ownerA], [`${b.keys.prefix}*`, ownerB]] as const) {
      const where = await keysByMaster(pattern);
      expect([...where].filter(([, n]) => n > 0).map(([port]) => port), pattern).toEqual([owner]);
    }
    await unlinkMatching(t.redis, `${b.keys.prefix}*`);
    expect([...(await keysByMaster(`${b.keys.prefix}*`)).values()]).toEqual([0, 0, 0]);
  });

  it('refuses to start while any master may evict keys, naming it', async () => {
    const nodes = await masters(t.redis);
    const last: Redis = nodes.find((n) => n.options.port === Math.max(...cluster.ports))!;
    await last.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      await expect(checkRedisPolicy(t.redis, t.log)).rejects.toThrow(RedisPolicyError);
      await expect(checkRedisPolicy(t.redis, t.log)).rejects.toThrow(`"allkeys-lru" on cluster node 127.0.0.1:${last.options.port}`);
    } finally {
      await last.config('SET', 'maxmemory-policy', 'noeviction');
    }
    // A connection just made, as at start-up: it learns the cluster's masters first.
    await expect(checkRedisPolicy(t.connection(), t.log)).resolves.toBeUndefined();
  });

  it('serves the budget from `npm start` on the cluster, in GPU hours', async () => {
    // A project of its own: 15 h, and a 10 h reservation settled at 7.5 h, written through the cluster from here.
    await t.budgets.set('served', 15 * H);
    const r = await t.accounting.reserve('served-1', 10 * H, ['project:served'], { project: 'served', user: 'sy', gpus: 1 }, Date.now());
    expect(r).toMatchObject({ kind: 'reserved' });
    await t.accounting.settle('served-1', r.kind === 'reserved' ? r.scopes : [], 7.5 * H, 'settle', Date.now());
    const port = await freePort();
    const app = t.spawn('api', { PORT: String(port) });
    const budget = () =>
      fetch(`http://127.0.0.1:${port}/api/v1/projects/served/budget`, { headers: { authorization: `Bearer ${t.env.GATEKEEPER_ADMIN_TOKEN}` } })
        .then(async (r) => (r.ok ? ((await r.json()) as Record<string, unknown>) : null), () => null);
    expect(await eventually(budget, Boolean, 30_000)).toMatchObject({ limitGpuHours: 15, usedGpuHours: 7.5, reservedGpuHours: 0 });
    app.kill('SIGTERM');
    expect(await waitExit(app)).toBe(0);
  });
});
