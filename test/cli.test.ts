/**
 * The `gatekeeper` CLI against a running API: tables for people, --json for
 * scripts, and exit codes that mean something.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

let t: TestEnv;
let server: Server;
let url: string;
let gk: Gatekeeper;
let held: HeldJobs;
let intake: Queue;
const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  const app = createApp({ config: t.config, accounting: t.accounting, intake, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer } });
  server = await listen(app);
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await gk?.close();
  await held?.close();
  await intake?.close();
  await t?.close();
});

async function cli(args: string[], token = admin): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runCli(['--url', url, '--token', token, '--actor', 'ops-bob', ...args], (s) => (out += s));
  return { code, out };
}

describe('gatekeeper CLI', () => {
  it('sets and shows a budget as a table, and as JSON', async () => {
    expect(await cli(['budget', 'set', 'alpha', '2', '--reason', 'pilot'])).toMatchObject({ code: EXIT.ok });
    const { code, out } = await cli(['budget', 'get', 'alpha']);
    expect(code).toBe(EXIT.ok);
    expect(out.split('\n').slice(0, 2)).toEqual([
      'SCOPE          PERIOD  LIMIT  USED  RESERVED  REMAINING  GPU-H  UNITS  USD    EXEMPT  POLICY  NEXT RESET',
      'project alpha  none    2      0     0         2          0      0      $0.00  0       hard    -',
    ]);
    const json = JSON.parse((await cli(['--json', 'budget', 'get', 'alpha'])).out);
    expect(json).toMatchObject({ project: 'alpha', limitGpuHours: 2, remainingGpuHours: 2 });
  });

  it('sets quotas, run caps and exempt job types, and shows each period with its next reset', async () => {
    expect((await cli(['quota', 'set', 'bob', '--daily', '8', '--weekly', '30', '--reason', 'peak hours'])).code).toBe(EXIT.ok);
    const q = await cli(['quota', 'get', 'bob'], viewer);
    const day = new Date().toISOString().slice(0, 10);
    expect(q.out).toMatch(new RegExp(`^bob daily +${day} +8 +0 +0 +8 +0 +0 +\\$0\\.00 +0 +hard +\\d{4}-\\d\\d-\\d\\dT00:00:00\\.000Z$`, 'm'));
    expect(q.out).toMatch(/^bob weekly +W\d{4}-\d\d-\d\d +30 +0 +0 +30 /m);
    expect((await cli(['quota', 'set', 'bob', '--daily', 'none'])).code).toBe(EXIT.ok);
    expect(JSON.parse((await cli(['--json', 'quota', 'get', 'bob'])).out)).toMatchObject({ daily: { limitGpuHours: null }, weekly: { limitGpuHours: 30 } });

    expect((await cli(['run-cap', 'set', 'alpha', 'scenes-160', '200', '--policy', 'soft', '--grace', '10'])).out).toMatch(/alpha\/scenes-160 +none +200 +0 +0 +200 +0 +0 +\$0\.00 +0 +soft \+10%/);
    expect((await cli(['exempt', 'add', 'regression-test'])).out).toBe('regression-test: exempt; exempt job types: regression-test\n');
    expect((await cli(['exempt', 'list'], viewer)).out).toBe('regression-test\n');
    expect((await cli(['exempt', 'remove', 'regression-test'])).out).toBe('regression-test: counted again; exempt job types: (none)\n');
    await cli(['budget', 'set', 'beta', '2', '--period', 'month']);
    expect((await cli(['budget', 'adjust', 'beta', '-0.5', '--reason', 'maintenance'])).out).toMatch(/^project beta +\d{4}-\d\d +1\.5 \(2 set\) +0 +0 +1\.5 /m);
  });

  it('lists, releases, overrides and cancels held jobs', async () => {
    const jobs = await Promise.all([0, 1, 2, 3, 4].map((i) => intake.add(`j${i}`, { project: 'alpha', user: 'ana', estimatedGpuHours: 1 })));
    await eventually(() => intake.getCompletedCount(), (n) => n === 5);
    const ids = jobs.map((j) => j.id!);
    const list = await cli(['held', 'list', '--project', 'alpha'], viewer);
    expect(list.code).toBe(EXIT.ok);
    expect(list.out).toContain('JOB  PROJECT  USER  GPU-H  AGE');
    expect(list.out).toContain('project alpha: 2.0 of 2.0 GPU-h used or reserved; job needs 1.0');
    expect(list.out.trim().endsWith('3 held')).toBe(true);

    await cli(['budget', 'set', 'alpha', '3']);
    expect(await cli(['held', 'release', '--project', 'alpha'])).toEqual({ code: EXIT.ok, out: 'admitted 1 of 3; 2 still held\n' });
    expect(await cli(['held', 'override', ids[3]!, '--reason', 'urgent'])).toEqual({ code: EXIT.ok, out: `admitted ${ids[3]} (1 GPU-h reserved, override)\n` });
    expect(await cli(['held', 'cancel', ids[4]!, '--reason', 'duplicate'])).toEqual({ code: EXIT.ok, out: `cancelled ${ids[4]}: duplicate\n` });
    expect(JSON.parse((await cli(['--json', 'held', 'list'])).out)).toMatchObject({ total: 0, jobs: [] });
  });

  it('preflights and submits jobs, with reasons grouped and warnings', async () => {
    await cli(['budget', 'set', 'gamma', '3']);
    const pre = await cli(['preflight', '--project', 'gamma', '--user', 'uma', '--hours', '1', '--count', '5'], viewer);
    expect(pre.code).toBe(EXIT.ok);
    expect(pre.out.split('\n').slice(0, 3)).toEqual([
      '5 jobs: 3 would be admitted now, 2 held, 0 rejected',
      '  1 × held: project gamma: 3.0 of 3.0 GPU-h used or reserved; job needs 1.0 (first: job 3)',
      '  1 × held: project gamma: 3.0 of 3.0 GPU-h used or reserved; job needs 1.0 (behind 1 older held job waiting for project gamma) (first: job 4)',
    ]);
    expect(pre.out).toContain('  project gamma: this submission would reach 100% of its limit');
    // Its scopes named as the reasons name them.
    expect(pre.out).toMatch(/^project gamma +none +3 /m);
    expect(pre.out).toMatch(/^user uma's daily quota +\d{4}-\d\d-\d\d +none /m);
    const sub = await cli(['submit', '--project', 'gamma', '--user', 'uma', '--hours', '1'], viewer);
    expect(sub.out).toMatch(/^submitted 1 job \(\d+\); preflight: 1 admitted, 0 held\n/);
    expect(await cli(['submit', '--project', 'gamma'])).toMatchObject({ code: EXIT.usage });
  });

  it('lists every project with its budget and held jobs, a page at a time', async () => {
    // 'delta' has no budget: its job is held, and that is how it shows up.
    await intake.add('d', { project: 'delta', user: 'dan', estimatedGpuHours: 1 });
    await eventually(async () => JSON.parse((await cli(['--json', 'budget', 'list'], viewer)).out), (r) => r.projects.some((p: { project: string }) => p.project === 'delta'));
    // A budget in dollars lists in dollars, with the same GPU-H, UNITS and USD columns.
    expect(await cli(['budget', 'set', 'omega', '12.5', '--unit', 'usd'])).toMatchObject({ code: EXIT.ok });
    expect(JSON.parse((await cli(['--json', 'budget', 'get', 'omega'])).out)).toMatchObject({ unit: 'usd', limit: 12.5, remaining: 12.5 });
    const list = await cli(['budget', 'list'], viewer);
    expect(list.code).toBe(EXIT.ok);
    const lines = list.out.split('\n');
    // Widths follow the widest cell: beta's monthly period label and next reset.
    // alpha's four 1-hour jobs count 4 GPU-h and, at the built-in rate (1 unit, $0 an hour), 4 units and $0.
    expect(lines[0]).toBe('PROJECT  PERIOD   LIMIT        USED   RESERVED  REMAINING  GPU-H  UNITS  USD    EXEMPT  POLICY  NEXT RESET                HELD');
    expect(lines[1]).toBe('alpha    none     3            0      4         -1         4      4      $0.00  0       hard    -                         0');
    expect(lines.slice(1, 6).map((l) => l.split(/ +/)[0])).toEqual(['alpha', 'beta', 'delta', 'gamma', 'omega']);
    expect(lines[3]).toBe('delta    none     none         0      0         -          0      0      $0.00  0       hard    -                         1');
    expect(lines[5]).toBe('omega    none     $12.50       $0.00  $0.00     $12.50     0      0      $0.00  0       hard    -                         0');
    expect(lines.slice(6)).toEqual(['5 projects', "(amounts in each budget's unit; LIMIT none: no budget yet)", '']);

    const page = await cli(['budget', 'list', '--limit', '2', '--cursor', 'alpha']);
    expect(page.out).toMatch(/^beta +\d{4}-\d\d +1\.5 \(2 set\) /m);
    expect(page.out).toContain('\n2 projects; more: gatekeeper budget list --cursor delta\n');
    expect(JSON.parse((await cli(['--json', 'budget', 'list', '--limit', '1'])).out)).toMatchObject({ projects: [{ project: 'alpha', limitGpuHours: 3, heldJobs: 0 }], nextCursor: 'alpha' });
    expect(await cli(['budget', 'list', '--limit', '0'])).toMatchObject({ code: EXIT.refused });
  });

  it('says which submitted jobs the gatekeeper will reject, and why', async () => {
    await cli(['budget', 'set', 'narrow', '10']);
    await cli(['budget', 'gpu-types', 'narrow', '--allow', 'a100']);
    const sub = await cli(['submit', '--project', 'narrow', '--user', 'uma', '--hours', '1', '--gpu-type', 't4', '--count', '2'], viewer);
    expect(sub.out).toMatch(/^submitted 2 jobs \((\d+), (\d+)\); preflight: 0 admitted, 0 held, 2 rejected\n  2 × rejected: project narrow may use only a100; the job asks for "t4" \(first: job \1\)\n/);
  });

  it("keeps a limit's unit when --unit is not given, and a new limit is in GPU hours", async () => {
    const json = async (args: string[]) => JSON.parse((await cli(['--json', ...args])).out);
    await cli(['budget', 'set', 'keepu', '10', '--unit', 'usd']);
    expect(await json(['budget', 'set', 'keepu', '20'])).toMatchObject({ unit: 'usd', limit: 20 });
    expect(await json(['budget', 'adjust', 'keepu', '5'])).toMatchObject({ unit: 'usd', effectiveLimit: 25 });
    await cli(['quota', 'set', 'kay', '--daily', '4', '--unit', 'units']);
    expect(await json(['quota', 'set', 'kay', '--daily', '6', '--weekly', '30'])).toMatchObject({ daily: { unit: 'units', limit: 6 }, weekly: { unit: 'gpuHours', limit: 30 } });
    expect(await json(['budget', 'set', 'newu', '7'])).toMatchObject({ unit: 'gpuHours', limit: 7 });
    // Given, it still changes the unit.
    expect(await json(['budget', 'set', 'newu', '3', '--unit', 'units'])).toMatchObject({ unit: 'units', limit: 3 });
  });

  it('prints amounts exact to their unit: no float tails, no digits past a micro-dollar', async () => {
    await cli(['gpu-types', 'set', 'tailtype', '--units', '3', '--usd', '0.1']);
    await cli(['budget', 'set', 'tails', '10', '--unit', 'units']);
    const meta = { project: 'tails', user: 'uma', gpus: 1, gpuType: 'tailtype' };
    // 120,000 and 240,000 GPU-ms at 3 units and $0.10 an hour: 0.1 and 0.2 units, $0.003334 and $0.006667 (each rounded up).
    const [a] = await t.accounting.reserveMany([{ jobId: 'tail-a', amountGpuMs: 120_000, scopes: ['project:tails'], meta }], Date.now());
    await t.accounting.settle('tail-a', a!.kind === 'reserved' ? a!.scopes : [], 120_000, 'settle', Date.now());
    await t.accounting.reserveMany([{ jobId: 'tail-b', amountGpuMs: 240_000, scopes: ['project:tails'], meta }], Date.now());
    const { out } = await cli(['budget', 'get', 'tails']);
    expect(out.split('\n')[1]!.split(/ {2,}/)).toEqual(['project tails', 'none', '10 units', '0.1 units', '0.2 units', '9.7 units', '0.1', '0.3', '$0.010001', '0', 'hard', '-']);
  });

  it.each([
    [['budget', 'set', 'alpha', '5'], viewer, EXIT.forbidden],
    [['budget', 'get', 'alpha'], 'not-a-valid-token-at-all', EXIT.forbidden],
    [['budget', 'get', 'nobody'], admin, EXIT.notFound],
    [['held', 'override', 'ghost'], admin, EXIT.notFound],
    [['budget', 'set', 'alpha', '-3'], admin, EXIT.refused],
    [['budget', 'set', 'alpha', 'lots'], admin, EXIT.usage],
    [['held', 'cancel', 'x'], admin, EXIT.usage],
    [['held', 'frobnicate'], admin, EXIT.usage],
  ])('%j exits %s', async (args, token, code) => {
    expect((await cli(args, token)).code).toBe(code);
  });

  it('runs as the installed bin', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/gatekeeper.mjs', '--json', 'budget', 'get', 'alpha'], {
      env: { ...process.env, GATEKEEPER_URL: url, GATEKEEPER_TOKEN: viewer },
    });
    expect(JSON.parse(stdout)).toMatchObject({ project: 'alpha', limitGpuHours: 3 });
  });
});
