/**
 * The Postgres ledger gets each reserve and each settle exactly once, even
 * when a writer dies holding unacknowledged entries or an entry arrives twice;
 * migrations run once even when two processes start together.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { createPool } from '../src/db/pool.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { migrate, migrationFiles } from '../src/db/migrate.ts';
import type { JobMeta } from '../src/accounting/types.ts';

let t: TestEnv;
const meta: JobMeta = { project: 'led', user: 'ana', jobType: 'render', gpuType: 'a100', gpus: 2 };

beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => t?.close());

const ledgerRows = async () =>
  (await t.pool.query('SELECT kind, job_id, project, user_name, job_type, gpu_type, scopes, estimated_gpu_ms, actual_gpu_ms, note FROM ledger ORDER BY job_id, kind')).rows;

describe('ledger writer', () => {
  it('writes entries a dead writer left unacknowledged, once, and empties the stream', async () => {
    await t.accounting.definitions.setLimit('project:led', 1_000_000);
    for (const id of ['a', 'b', 'c']) await t.accounting.reserve(id, 1000, ['project:led'], meta, Date.now());
    await t.accounting.settle('a', ['project:led'], 400, 'settle', Date.now(), 'reported by the GPU worker');
    await t.accounting.settle('b', ['project:led'], 0, 'release', Date.now(), 'never started');

    const key = t.accounting.keys.ledger;
    const dead = new LedgerWriter(t.connection(), key, t.pool, t.log);
    await dead.start(); // creates the group and writes everything...
    await eventually(() => t.redis.xlen(key), (n) => n === 0);
    await dead.stop();
    // ...now a writer "dies" after reading but before writing: read, no ack.
    await t.accounting.settle('c', ['project:led'], 700, 'settle', Date.now());
    await t.redis.xreadgroup('GROUP', 'ledger-writers', 'dead-consumer', 'COUNT', 10, 'STREAMS', key, '>');

    const rescuer = new LedgerWriter(t.connection(), key, t.pool, t.log, { claimIdleMs: 0, blockMs: 20 });
    await rescuer.start();
    await eventually(() => t.redis.xlen(key), (n) => n === 0);
    await rescuer.stop();

    const rows = await ledgerRows();
    expect(rows.map((r) => [r.kind, r.job_id, r.estimated_gpu_ms, r.actual_gpu_ms])).toEqual([
      ['reserve', 'a', 1000, null],
      ['settle', 'a', 1000, 400],
      ['release', 'b', 1000, 0],
      ['reserve', 'b', 1000, null],
      ['reserve', 'c', 1000, null],
      ['settle', 'c', 1000, 700],
    ]);
    expect(rows[0]).toMatchObject({ project: 'led', user_name: 'ana', job_type: 'render', gpu_type: 'a100', scopes: ['project:led'] });
    expect(rows[1]!.note).toBe('reported by the GPU worker');
  });

  it('writes an entry delivered twice only once', async () => {
    const key = t.accounting.keys.ledger;
    // A second settle of job a's reservation (same admission), with another actual: dropped.
    const admitted = (await t.pool.query(`SELECT admitted_at FROM ledger WHERE job_id = 'a' AND kind = 'reserve'`)).rows[0].admitted_at as Date;
    await t.redis.xadd(key, '*', 'kind', 'settle', 'at', String(Date.now()), 'note', '', 'jobId', 'a', 'estimated', '1000', 'actual', '999',
      'admittedAt', String(admitted.getTime()), 'scopes', 'project:led', 'meta', JSON.stringify(meta));
    const w = new LedgerWriter(t.connection(), key, t.pool, t.log, { blockMs: 20 });
    await w.start();
    await eventually(() => t.redis.xlen(key), (n) => n === 0);
    await w.stop();
    const a = (await ledgerRows()).filter((r) => r.job_id === 'a');
    expect(a.map((r) => [r.kind, r.actual_gpu_ms])).toEqual([['reserve', null], ['settle', 400]]);
  });

  it('writes a reserve entry of the form before groups (left in the stream by an upgrade) as the current form', async () => {
    const key = t.accounting.keys.ledger;
    const at = Date.now();
    const scopes = 'project:led,user-day:ana@2026-12-02';
    // Current form (reserve.lua): header, groups, then one field per job.
    await t.redis.xadd(key, '*', 'kind', 'reserve', 'at', String(at), 'groups', '2',
      'g', `${scopes}\t${JSON.stringify(meta)}`, 'g', `${scopes}\t${JSON.stringify({ ...meta, jobType: 'eval' })}\t1`,
      'up-new-1', '1000,1', 'up-new-2', '2000,2');
    // The earlier form: a group of fields per job.
    await t.redis.xadd(key, '*', 'kind', 'reserve', 'at', String(at),
      'jobId', 'up-old-1', 'estimated', '1000', 'scopes', scopes, 'meta', JSON.stringify(meta), 'exempt', '0',
      'jobId', 'up-old-2', 'estimated', '2000', 'scopes', scopes, 'meta', JSON.stringify({ ...meta, jobType: 'eval' }), 'exempt', '1');
    const w = new LedgerWriter(t.connection(), key, t.pool, t.log, { blockMs: 20 });
    await w.start();
    await eventually(() => t.redis.xlen(key), (n) => n === 0);
    await w.stop();
    const { rows } = await t.pool.query(
      `SELECT job_id, project, user_name, job_type, scopes, estimated_gpu_ms, exempt, admitted_at, meta FROM ledger WHERE job_id LIKE 'up-%' ORDER BY job_id`);
    const strip = ({ job_id, ...r }: Record<string, unknown>) => [String(job_id).replace(/-(new|old)-/, '-'), r];
    expect(rows.map(strip).slice(0, 2)).toEqual(rows.map(strip).slice(2));
    expect(rows.slice(2).map((r) => [r.job_id, r.job_type, r.scopes, r.estimated_gpu_ms, r.exempt, r.admitted_at.getTime()])).toEqual([
      ['up-old-1', 'render', ['project:led', 'user-day:ana@2026-12-02'], 1000, false, at],
      ['up-old-2', 'eval', ['project:led', 'user-day:ana@2026-12-02'], 2000, true, at],
    ]);
  });
});

describe('ledger writer under a backlog', () => {
  it('writes 6,400 batched reservations that piled up while it was away, in few inserts', async () => {
    await t.accounting.definitions.setLimit('project:pile', 1e12);
    for (let b = 0; b < 50; b++) {
      const batch = Array.from({ length: 128 }, (_, i) => ({ jobId: `pile-${b}-${i}`, amountGpuMs: 1000, scopes: ['project:pile'], meta: { ...meta, project: 'pile' } }));
      await t.accounting.reserveMany(batch, Date.now());
    }
    const w = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { blockMs: 20 });
    await w.start();
    await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0, 30_000);
    await w.stop();
    const r = await t.pool.query(`SELECT count(*)::int AS n, sum(estimated_gpu_ms)::bigint AS total FROM ledger WHERE project = 'pile'`);
    expect(r.rows[0]).toEqual({ n: 6400, total: 6_400_000 });
  });
});

describe('migrations', () => {
  it('run once when several processes migrate a fresh database at the same time', async () => {
    const admin = new pg.Client({ connectionString: inject('databaseUrl') });
    await admin.connect();
    const name = `gk_migrate_${Date.now()}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(inject('databaseUrl'));
    url.pathname = `/${name}`;
    const pools = [1, 2, 3].map(() => createPool(url.toString(), 2));
    try {
      const applied = await Promise.all(pools.map((p) => migrate(p)));
      const all = migrationFiles().map((m) => m.id);
      expect(applied.flat().sort((a, b) => a - b)).toEqual(all); // each applied by exactly one of them (numeric order: 10 after 9)
      const rows = (await pools[0]!.query('SELECT id FROM gatekeeper_migrations ORDER BY id')).rows.map((r) => r.id);
      expect(rows).toEqual(all);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});
