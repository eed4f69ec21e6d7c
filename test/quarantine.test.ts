/**
 * A poison entry never blocks a stream (real Redis and Postgres). An entry
 * Postgres cannot store — a job type holding a NUL, written by a gatekeeper
 * from before the contract refused it — is set aside with its error, counted
 * and raised as an alert, and every entry after it is written; the drift
 * audit counts it from its raw fields, so it stays exact and names it; an
 * admin replays it after a fix, in one transaction with its audit row. A
 * store that is down is not the entry's fault: the entries wait.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { unlinkMatching } from '../src/redis/unlink.ts';
import { listen, urlOf } from './support/http.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { EventStore } from '../src/events/store.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { createPool } from '../src/db/pool.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { QuarantineAdmin } from '../src/admin/quarantine.ts';
import { Metrics } from '../src/metrics.ts';
import type { Quarantined } from '../src/streams/dead-letter.ts';
import type { JobMeta } from '../src/accounting/types.ts';
import { systemClock } from '../src/clock.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let server: Server;
let base: string;
let held: HeldJobs;
let deliveries: Queue;
const good: JobMeta = { project: 'qa', user: 'ana', jobType: 'render', gpus: 1 };
// What a gatekeeper wrote before the job contract refused control characters.
const poison: JobMeta = { project: 'qa', user: 'ana', jobType: 'ren\u0000der', gpus: 1 };

beforeAll(async () => {
  t = await createTestEnv();
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  deliveries = new Queue(t.config.queues.webhooks, { connection: t.redis, prefix: t.config.queuePrefix });
  const quarantine = new QuarantineAdmin(t.pool, t.config, deliveries);
  const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin }, quarantine });
  server = await listen(app);
  base = urlOf(server);
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await held?.close();
  await deliveries?.close();
  await t?.close();
});
beforeEach(async () => {
  // Each test starts from nothing: an empty ledger, quarantine, audit, streams and counters.
  await t.pool.query('TRUNCATE ledger, quarantine, events, audit, usage_daily, usage_by_day');
  await unlinkMatching(t.redis, `${t.accounting.keys.prefix}*`);
});

/** A ledger writer that reports what it quarantined, and the metric it feeds. */
function writer(pool = t.pool) {
  const metrics = new Metrics();
  const seen: Quarantined[] = [];
  const w = new LedgerWriter(t.connection(), t.accounting.keys.ledger, pool, t.log, {
    onQuarantined: (q) => {
      seen.push(q);
      metrics.ledgerQuarantined.inc();
    },
  });
  return { w, seen, metrics };
}

/** Drain the ledger stream to the end, one batch at a time. */
async function drain(w: LedgerWriter): Promise<void> {
  while ((await w.drainOnce()) > 0);
}

const api = (method: string, path: string, body?: unknown) =>
  fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'x-gatekeeper-actor': 'ops-ann' },
    body: body === undefined ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.json() }));

describe('a poison entry in the ledger stream', () => {
  it('is quarantined with its error while the entries before and after it are written', async () => {
    await t.accounting.definitions.setLimit('project:qa', 100 * 3_600_000);
    const now = Date.now();
    // Three reserve calls, so three stream entries: good, poison, good.
    await t.accounting.reserve('q1', 1_000, ['project:qa'], good, now);
    await t.accounting.reserve('q2', 2_000, ['project:qa'], poison, now);
    await t.accounting.reserve('q3', 3_000, ['project:qa'], good, now);
    await t.accounting.settle('q3', ['project:qa'], 2_500, 'settle', now + 10);
    const { w, seen, metrics } = writer();

    await drain(w);

    const rows = (await t.pool.query('SELECT kind, job_id, estimated_gpu_ms, actual_gpu_ms FROM ledger ORDER BY job_id, kind')).rows;
    expect(rows.map((r) => [r.kind, r.job_id, r.estimated_gpu_ms, r.actual_gpu_ms])).toEqual([
      ['reserve', 'q1', 1000, null],
      ['reserve', 'q3', 3000, null],
      ['settle', 'q3', 3000, 2500],
    ]);
    expect(await t.redis.xlen(t.accounting.keys.ledger)).toBe(0);
    const q = (await t.pool.query('SELECT id, stream, stream_id, entry, error, sqlstate FROM quarantine')).rows;
    expect(q).toHaveLength(1);
    expect(q[0]).toMatchObject({ stream: 'ledger', sqlstate: '22021' });
    expect(q[0].error).toMatch(/^22021: invalid byte sequence for encoding "UTF8": 0x00/);
    // The raw entry, exactly as it was in the stream: the NUL survives (escaped by JSON).
    expect(JSON.parse(q[0].entry)).toContain('q2');
    expect(q[0].entry).toContain('ren\\\\u0000der');
    expect(seen).toEqual([{ id: Number(q[0].id), stream: 'ledger', streamId: q[0].stream_id, error: q[0].error, sqlstate: '22021' }]);
    expect((await metrics.registry.getSingleMetricAsString('gatekeeper_ledger_quarantined_total')).trim().split('\n').at(-1)).toBe('gatekeeper_ledger_quarantined_total 1');
  });

  it('keeps the drift audit exact and named, and a repairing replay stores it whole with its audit row', async () => {
    await t.accounting.definitions.setLimit('project:qb', 100 * 3_600_000);
    const meta = { ...poison, project: 'qb' };
    await t.accounting.reserve('b1', 7_000, ['project:qb'], meta, Date.now());
    await t.accounting.settle('b1', ['project:qb'], 6_000, 'settle', Date.now());
    const { w } = writer();
    await drain(w);
    const audit = new DriftAudit(t.redis, t.accounting, t.pool);

    const before = await audit.run();
    expect(before.drift).toEqual([]);
    const ids = (await t.pool.query('SELECT id FROM quarantine ORDER BY id')).rows.map((r) => Number(r.id));
    expect(ids).toHaveLength(2); // the reserve entry and the settle entry
    expect(before.quarantined.map((x) => [x.id, x.counted])).toEqual(ids.map((id) => [id, true]));

    // A plain replay still fails, and changes nothing.
    const plain = await api('POST', `/quarantine/${ids[0]}/replay`, {});
    expect(plain.status).toBe(409);
    expect(plain.body.error.message).toMatch(/still cannot be stored: 22021/);
    expect((await t.pool.query('SELECT count(*)::int AS n FROM audit')).rows[0].n).toBe(0);

    for (const id of ids) {
      const r = await api('POST', `/quarantine/${id}/replay`, { repair: true, reason: 'NUL in job type' });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ id, replayedBy: 'ops-ann' });
    }
    const rows = (await t.pool.query(`SELECT kind, job_type, estimated_gpu_ms, actual_gpu_ms, meta FROM ledger WHERE job_id = 'b1' ORDER BY kind`)).rows;
    expect(rows.map((r) => [r.kind, r.job_type, r.estimated_gpu_ms, r.actual_gpu_ms])).toEqual([
      ['reserve', 'ren\\u0000der', 7000, null],
      ['settle', 'ren\\u0000der', 7000, 6000],
    ]);
    expect(JSON.parse(rows[0].meta).jobType).toBe('ren\u0000der'); // the meta JSON stays exact
    const auditRows = (await t.pool.query('SELECT actor, action, target, reason FROM audit ORDER BY id')).rows;
    expect(auditRows).toEqual(ids.map((id) => ({ actor: 'ops-ann', action: 'quarantine.replay', target: `quarantine:${id}`, reason: 'NUL in job type' })));
    const after = await audit.run();
    expect(after.drift).toEqual([]);
    expect(after.quarantined).toEqual([]);
    expect((await api('POST', `/quarantine/${ids[0]}/replay`, { repair: true })).status).toBe(409);
  });

  it('is replayed as it is after the store is fixed (a constraint that refused it is dropped)', async () => {
    await t.accounting.definitions.setLimit('project:qc', 100 * 3_600_000);
    // A bad schema change refuses one project's rows: the entry is fine, the store was wrong.
    await t.pool.query(`ALTER TABLE ledger ADD CONSTRAINT no_qc CHECK (project <> 'qc-bad') NOT VALID`);
    try {
      await t.accounting.reserve('c1', 5_000, ['project:qc'], { ...good, project: 'qc-bad' }, Date.now());
      await t.accounting.reserve('c2', 5_000, ['project:qc'], { ...good, project: 'qc' }, Date.now());
      const { w } = writer();
      await drain(w);
      expect((await t.pool.query(`SELECT job_id FROM ledger`)).rows.map((r) => r.job_id)).toEqual(['c2']);
      const [q] = (await t.pool.query('SELECT id, sqlstate FROM quarantine')).rows;
      expect(q.sqlstate).toBe('23514');
      // The rebuild would lose it: refused while it waits.
      const rebuild = await api('POST', '/rebuild');
      expect(rebuild.status).toBe(409);
      expect(rebuild.body.error.message).toMatch(/1 ledger entry waits in the quarantine/);
    } finally {
      await t.pool.query('ALTER TABLE ledger DROP CONSTRAINT IF EXISTS no_qc');
    }
    const [q] = (await t.pool.query('SELECT id FROM quarantine')).rows;
    const listed = await api('GET', '/quarantine?waiting=true');
    expect(listed.body.total).toBe(1);
    expect(listed.body.entries[0]).toMatchObject({ id: Number(q.id), stream: 'ledger', sqlstate: '23514', replayedAt: null });
    expect((await api('POST', `/quarantine/${q.id}/replay`, {})).status).toBe(200);
    expect((await t.pool.query(`SELECT project FROM ledger WHERE job_id = 'c1'`)).rows).toEqual([{ project: 'qc-bad' }]);
    expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
  });

  it('waits, quarantining nothing, while Postgres cannot be reached', async () => {
    await t.accounting.definitions.setLimit('project:qd', 100 * 3_600_000);
    await t.accounting.reserve('d1', 1_000, ['project:qd'], good, Date.now());
    // Nothing listens on port 1: every query fails to connect.
    const down = createPool('postgres://postgres@127.0.0.1:1/none');
    const { w, seen } = writer(down);
    await expect(w.drainOnce()).rejects.toThrow(/ECONNREFUSED/);
    await down.end();
    expect(seen).toEqual([]);
    expect(await t.redis.xlen(t.accounting.keys.ledger)).toBe(1); // still there, for the next try
    // Another writer takes over what the failed one read (claimed once idle) and writes it.
    const up = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { claimIdleMs: 0, blockMs: 20 });
    await up.start();
    await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0);
    await up.stop();
    expect((await t.pool.query(`SELECT job_id FROM ledger`)).rows).toEqual([{ job_id: 'd1' }]);
    expect((await t.pool.query(`SELECT count(*)::int AS n FROM quarantine`)).rows[0].n).toBe(0);
  });
});

describe('a poison entry in the events stream', () => {
  it('is quarantined, raises an alert, and the events after it are stored', async () => {
    const k = t.accounting.keys.events;
    const at = String(Date.now());
    // A JOB_HELD event as reserve.lua wrote it for a held job with a NUL in its type, between two good events.
    await t.accounting.events.emit('QUOTA_RESET', { periods: ['day'], labels: { day: '2026-12-04' }, releasedJobs: 0 });
    await t.redis.xadd(k, '*', 'type', 'JOB_HELD', 'v', '1', 'at', at, 'jobId', 'h1', 'meta', JSON.stringify(poison), 'amount', '3600000', 'ahead', '0', 'line', '',
      'misfits', 'project:qa|2|0|0|0');
    await t.redis.xadd(k, '*', 'type', 'NOT_A_TYPE', 'v', '1', 'at', at);
    await t.accounting.events.emit('QUOTA_RESET', { periods: ['day'], labels: { day: '2026-12-05' }, releasedJobs: 0 });
    const seen: Quarantined[] = [];
    const store = new EventStore(t.connection(), k, t.pool, t.config, t.log, {
      onQuarantined: (q) => t.accounting.events.emit('ENTRY_QUARANTINED', { quarantineId: q.id, stream: q.stream, streamId: q.streamId, error: q.error }).then(() => void seen.push(q)),
    });
    while ((await store.drainOnce()) > 0);
    await store.stop();

    const types = (await t.pool.query('SELECT type, data FROM events ORDER BY id')).rows;
    expect(types.map((r) => r.type)).toEqual(['QUOTA_RESET', 'QUOTA_RESET', 'ENTRY_QUARANTINED', 'ENTRY_QUARANTINED']);
    expect(seen.map((q) => q.sqlstate)).toEqual(['22P05', null]);
    expect(seen[1]!.error).toMatch(/not an event this version knows \(type "NOT_A_TYPE"\)/);
    expect(types[2].data).toMatchObject({ stream: 'events', quarantineId: seen[0]!.id });
    // The alert lists it, and the CLI shows it without obeying what it quotes.
    const alerts = await api('GET', '/alerts?type=ENTRY_QUARANTINED');
    expect(alerts.body.total).toBe(2);
    let out = '';
    const code = await runCli(['--url', base, '--token', admin, 'quarantine', 'list', '--stream', 'events'], (s) => (out += s));
    expect(code).toBe(EXIT.ok);
    expect(out).toMatch(/2 waiting/);
    expect(out).not.toMatch(/\u0000/);
  });
});
