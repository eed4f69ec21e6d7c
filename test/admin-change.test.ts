/**
 * Every admin change commits with its audit row, or not at all (docs/design.md
 * invariant 8; src/audit/change.ts). Failures are injected at each step of a
 * change: Postgres refuses the limit row (a trigger), refuses the audit row
 * (a trigger), Redis refuses the copy (an Accounting whose write throws once,
 * over the real Redis), and COMMIT fails after Redis was written (a deferred
 * constraint trigger). After each, both stores hold what they held before
 * and no audit row names the change; a change made in Redis first (override)
 * keeps its audit row through the outbox while Postgres refuses it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { listen, urlOf } from './support/http.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { ScopeDefinition } from '../src/accounting/types.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { ScopeDefinitions } from '../src/accounting/definitions.ts';
import { ChangeFailed } from '../src/audit/change.ts';
import type { Actor } from '../src/db/audit.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createAuditWriter } from '../src/ledger/audit-writer.ts';
import { createApp } from '../src/api/app.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';

const H = 3_600_000; // GPU-ms per GPU-hour
const actor: Actor = { name: 'ops-alice', role: 'admin' };

/** The real definitions, except that the next write of `op` on a matching target throws (once). */
class FaultyDefinitions extends ScopeDefinitions {
  private fault: { op: string; target: string } | null = null;
  failNext(op: 'define' | 'adjustCounter' | 'setFactor', target: string): void {
    this.fault = { op, target };
  }
  private trip(op: string, target: string): void {
    if (this.fault && this.fault.op === op && target.startsWith(this.fault.target)) {
      this.fault = null;
      throw new Error(`injected: Redis refused ${op} ${target}`);
    }
  }
  override async define(scope: string, d: ScopeDefinition | null): Promise<void> {
    this.trip('define', scope);
    return super.define(scope, d);
  }
  override async adjustCounter(counterId: string, deltaGpuMs: number): Promise<void> {
    this.trip('adjustCounter', counterId);
    return super.adjustCounter(counterId, deltaGpuMs);
  }
  override async setFactor(jobType: string, factorMilli: number | null): Promise<void> {
    this.trip('setFactor', jobType);
    return super.setFactor(jobType, factorMilli);
  }
}

/** The real Accounting over the real Redis, with FaultyDefinitions. */
class FaultyAccounting extends Accounting {
  override readonly definitions = new FaultyDefinitions(this.redis, this.keys);
  failNext(op: 'define' | 'adjustCounter' | 'setFactor', target: string): void {
    this.definitions.failNext(op, target);
  }
}

let t: TestEnv;
let acc: FaultyAccounting;
let budgets: Budgets;
let held: HeldJobs;

beforeAll(async () => {
  t = await createTestEnv();
  acc = new FaultyAccounting(t.redis, t.config.queuePrefix, t.config.settledRetainSeconds, t.config.timeZone);
  budgets = new Budgets(t.pool, acc, t.clock, t.log);
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  await t.pool.query(`CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`);
});
afterAll(async () => {
  await held?.close();
  await t?.close();
});
afterEach(async () => {
  for (const [name, table] of [['fail_now', 'limits'], ['fail_now', 'audit'], ['fail_now', 'period_adjustments'], ['fail_now', 'usage_factors'], ['fail_at_commit', 'audit']]) {
    await t.pool.query(`DROP TRIGGER IF EXISTS ${name} ON ${table}`);
  }
});

/** Postgres refuses any write to `table` from now on (until afterEach). */
const refuseWrites = (table: string) =>
  t.pool.query(`CREATE TRIGGER fail_now BEFORE INSERT OR UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION injected_failure()`);
/** Every transaction that inserts an audit row fails at COMMIT (after the Redis copy was written). */
const failAtCommit = () =>
  t.pool.query(`CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON audit DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION injected_failure()`);

const auditRows = async (target: string) => (await t.pool.query('SELECT action, after FROM audit WHERE target = $1 ORDER BY id', [target])).rows;
const pgLimit = async (scope: string) => (await t.pool.query('SELECT limit_gpu_ms FROM limits WHERE scope = $1', [scope])).rows[0]?.limit_gpu_ms ?? null;
const redisLimit = async (scope: string) => (await acc.definitions.definition(scope))?.limitGpuMs ?? null;

/** The ways a change can fail part way, each set up on a fresh table state. */
const steps: [string, (table: string) => Promise<unknown>][] = [
  ['Postgres refuses the row', (table) => refuseWrites(table)],
  ['Postgres refuses the audit row', () => refuseWrites('audit')],
  ['COMMIT fails after Redis was written', () => failAtCommit()],
];

describe('a limit change fails at any step: both stores as they were, no audit row', () => {
  it.each(steps)('budget PUT when %s', async (_name, inject) => {
    const p = `p${Math.random().toString(36).slice(2, 8)}`;
    await budgets.set(p, 10 * H, actor, 'first');
    await inject('limits');
    await expect(budgets.set(p, 20 * H, actor, 'raise')).rejects.toBeInstanceOf(ChangeFailed);
    expect(Number(await pgLimit(`project:${p}`))).toBe(10 * H);
    expect(await redisLimit(`project:${p}`)).toBe(10 * H);
    expect((await auditRows(`project:${p}`)).map((r) => r.action)).toEqual(['budget.set']);
  });

  it('budget PUT when Redis refuses the copy', async () => {
    await budgets.set('redisfail', 10 * H, actor, 'first');
    acc.failNext('define', 'project:redisfail');
    await expect(budgets.set('redisfail', 20 * H, actor, 'raise')).rejects.toBeInstanceOf(ChangeFailed);
    expect(Number(await pgLimit('project:redisfail'))).toBe(10 * H);
    expect(await redisLimit('project:redisfail')).toBe(10 * H);
    expect(await auditRows('project:redisfail')).toHaveLength(1);
  });

  it('a quota whose weekly copy Redis refuses after the daily one was written: neither lands, the daily copy is put back', async () => {
    await budgets.setQuota('ann', { daily: { limitGpuMs: 2 * H } }, actor, null);
    acc.failNext('define', 'user-week:ann');
    await expect(budgets.setQuota('ann', { daily: { limitGpuMs: 5 * H }, weekly: { limitGpuMs: 30 * H } }, actor, null)).rejects.toBeInstanceOf(ChangeFailed);
    expect(Number(await pgLimit('user-day:ann'))).toBe(2 * H);
    expect(await pgLimit('user-week:ann')).toBeNull();
    expect(await redisLimit('user-day:ann')).toBe(2 * H);
    expect(await redisLimit('user-week:ann')).toBeNull();
    expect(await auditRows('user-day:ann')).toHaveLength(1);
    expect(await auditRows('user-week:ann')).toHaveLength(0);
  });

  it('removing a quota when COMMIT fails: the Redis copy is defined again', async () => {
    await budgets.setQuota('bea', { weekly: { limitGpuMs: 7 * H } }, actor, null);
    await failAtCommit();
    await expect(budgets.setQuota('bea', { weekly: null }, actor, 'drop')).rejects.toBeInstanceOf(ChangeFailed);
    expect(Number(await pgLimit('user-week:bea'))).toBe(7 * H);
    expect(await redisLimit('user-week:bea')).toBe(7 * H);
  });

  it.each([
    ['Postgres refuses the adjustment row', () => refuseWrites('period_adjustments')],
    ['Postgres refuses the audit row', () => refuseWrites('audit')],
    ['Redis refuses the counter', () => Promise.resolve(acc.failNext('adjustCounter', 'project:adj'))],
    ['COMMIT fails after Redis was written', () => failAtCommit()],
  ])('adjust when %s: the period keeps its limit', async (_name, inject) => {
    await budgets.set('adj', 10 * H, actor, null);
    const before = await budgets.get('adj');
    const adjustments = async () => (await t.pool.query(`SELECT count(*)::int AS n FROM period_adjustments WHERE counter_id LIKE 'project:adj%'`)).rows[0].n;
    const rowsBefore = await adjustments();
    await inject();
    await expect(budgets.adjust('adj', 3 * H, actor, 'deadline')).rejects.toBeInstanceOf(ChangeFailed);
    const after = (await budgets.get('adj'))!;
    expect(after.adjustGpuMs).toBe(before!.adjustGpuMs);
    expect(after.effectiveLimitGpuMs).toBe(before!.effectiveLimitGpuMs);
    expect(await adjustments()).toBe(rowsBefore);
    expect((await auditRows('project:adj')).filter((r) => r.action === 'budget.adjust')).toHaveLength(0);
  });

  it.each([
    ['Postgres refuses the row', () => refuseWrites('usage_factors')],
    ['Redis refuses the copy', () => Promise.resolve(acc.failNext('setFactor', 'smoke'))],
    ['COMMIT fails after Redis was written', () => failAtCommit()],
  ])('exempting a job type when %s: it stays counted', async (_name, inject) => {
    await inject();
    await expect(budgets.setExempt('smoke', true, actor, null)).rejects.toBeInstanceOf(ChangeFailed);
    expect(await acc.definitions.exemptTypes()).not.toContain('smoke');
    expect((await t.pool.query(`SELECT 1 FROM usage_factors WHERE job_type = 'smoke'`)).rowCount).toBe(0);
    expect(await auditRows('job-type:smoke')).toHaveLength(0);
  });

  it('the same change with no failure lands in both stores with one audit row (the injections are what failed above)', async () => {
    await budgets.set('clean', 10 * H, actor, null);
    await budgets.adjust('clean', 2 * H, actor, null);
    await budgets.setExempt('smoke-ok', true, actor, null);
    expect(await redisLimit('project:clean')).toBe(10 * H);
    expect((await budgets.get('clean'))!.effectiveLimitGpuMs).toBe(12 * H);
    expect((await auditRows('project:clean')).map((r) => r.action)).toEqual(['budget.set', 'budget.adjust']);
    expect(await acc.definitions.exemptTypes()).toContain('smoke-ok');
  });
});

describe('over HTTP', () => {
  let server: Server;
  let base: string;
  const admin = 'test-admin-token-0123456789';
  beforeAll(async () => {
    server = await listen(createApp({ budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin } }));
    base = `${urlOf(server)}/api/v1`;
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
  });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('a budget PUT whose audit row Postgres refuses answers 503 saying nothing changed, and nothing did', async () => {
    expect((await call('PUT', '/projects/web/budget', { gpuHours: 4 })).status).toBe(200);
    await refuseWrites('audit');
    const r = await call('PUT', '/projects/web/budget', { gpuHours: 8, reason: 'more' });
    expect(r.status).toBe(503);
    expect(r.body.error.message).toMatch(/not made and nothing was changed/);
    expect((await call('GET', '/projects/web/budget')).body.limitGpuHours).toBe(4);
  });

  it('an alert acknowledgement whose audit row Postgres refuses is not applied', async () => {
    const ev = await t.pool.query(`INSERT INTO events (type, version, at, data) VALUES ('THRESHOLD_CROSSED', 1, now(), '{}') RETURNING id`);
    const id = Number(ev.rows[0].id);
    await refuseWrites('audit');
    expect((await call('POST', `/alerts/${id}/ack`, { note: 'seen' })).status).toBe(500);
    expect((await t.pool.query('SELECT acked_at FROM events WHERE id = $1', [id])).rows[0].acked_at).toBeNull();
  });

  it('a webhook whose audit row Postgres refuses is not created', async () => {
    await refuseWrites('audit');
    expect((await call('POST', '/webhooks', { url: 'https://93.184.216.34/x' })).status).toBe(500);
    expect((await t.pool.query('SELECT count(*)::int AS n FROM webhooks')).rows[0].n).toBe(0);
  });
});

describe('a change made in Redis first keeps its audit row while Postgres refuses it', () => {
  let gk: Gatekeeper;
  let intake: Queue;
  beforeAll(async () => {
    intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  });
  afterAll(async () => {
    await gk?.close();
    await intake?.close();
  });

  it('an override while the audit table refuses rows: admitted, its row reaches Postgres once through the outbox', async () => {
    await t.budgets.set('ovr', 0, actor, null);
    const job = await intake.add('render', { project: 'ovr', user: 'ann', estimatedGpuHours: 1 });
    await eventually(() => held.list({ project: 'ovr', limit: 10, offset: 0 }), (l) => l.total === 1);
    await refuseWrites('audit');
    await held.override(job.id!, actor, 'demo tomorrow');
    expect((await held.list({ project: 'ovr', limit: 10, offset: 0 })).total).toBe(0);
    expect(await auditRows(`job:${job.id}`)).toHaveLength(0);
    expect(await t.redis.xlen(t.accounting.keys.auditOutbox)).toBe(1);

    const writer = createAuditWriter(t.connection(), t.accounting.keys.auditOutbox, t.pool, t.log);
    await expect(writer.drainOnce()).rejects.toThrow(/injected failure/); // still refused: the entry waits
    await t.pool.query('DROP TRIGGER fail_now ON audit');
    await writer.drainOnce();
    await writer.drainOnce();
    const rows = await auditRows(`job:${job.id}`);
    expect(rows.map((r) => r.action)).toEqual(['held.override']);
    expect(await t.redis.xlen(t.accounting.keys.auditOutbox)).toBe(0);
  });
});
