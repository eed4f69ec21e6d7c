/**
 * Old data is printed inert. The edges now refuse control characters, but a
 * ledger written before that may hold a job type with terminal escapes (OSC
 * sets the window title, CSI 2J clears the screen) and a GPU type that a
 * spreadsheet would run as a formula. Such rows reach Postgres through the
 * scripts here (the scripts take any metadata; only the edges refuse it),
 * and every output shows them instead of obeying them: the CSV export, the
 * JSON export and the CLI's tables.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const viewer = 'test-viewer-token-0123456789';
const TITLE = '\u001b]0;pwned\u0007'; // OSC: set the terminal's title
const CLEAR = '\u001b[2J'; // CSI: clear the screen
const FORMULA = '=HYPERLINK("http://evil.example","x")';
let t: TestEnv;
let server: Server;
let base: string;
let held: HeldJobs;

beforeAll(async () => {
  t = await createTestEnv();
  held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  server = await listen(createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: 'test-admin-token-0123456789', viewer } }));
  base = urlOf(server);
  await t.budgets.set('old', hoursToGpuMs(100));
  const meta = { project: 'old', user: 'ann', gpus: 1, jobType: `${TITLE}render${CLEAR}`, gpuType: FORMULA };
  const r = await t.accounting.reserve('legacy-1', hoursToGpuMs(2), ['project:old'], meta, Date.parse('2026-09-10T10:00:00Z'));
  await t.accounting.settle('legacy-1', (r as { scopes: string[] }).scopes, hoursToGpuMs(1), 'settle', Date.parse('2026-09-10T11:00:00Z'));
  const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log);
  while ((await writer.drainOnce()) > 0);
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await held?.close();
  await t?.close();
});

const get = async (path: string) => (await fetch(`${base}/api/v1${path}`, { headers: { authorization: `Bearer ${viewer}` } })).text();
const cli = async (args: string[]) => {
  let out = '';
  const code = await runCli(['--url', base, '--token', viewer, ...args], (x) => (out += x));
  return { code, out };
};

describe('text stored before the edges refused it', () => {
  it('is in the ledger as it came (the premise of the other tests)', async () => {
    const row = (await t.pool.query(`SELECT job_type, gpu_type FROM ledger WHERE job_id = 'legacy-1' AND kind = 'settle'`)).rows[0];
    expect(row).toEqual({ job_type: `${TITLE}render${CLEAR}`, gpu_type: FORMULA });
  });

  it('is written out as escapes in the CSV export, and a formula is defused', async () => {
    const csv = await get('/usage/export?month=2026-09&format=csv');
    expect(csv).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    const row = csv.trimEnd().split('\n')[1]!;
    expect(row).toContain('\\u001b]0;pwned\\u0007render\\u001b[2J');
    expect(row).toContain(`"'=HYPERLINK(""http://evil.example"",""x"")"`);
  });

  it('is escaped in the JSON export, and reads back as the stored value', async () => {
    const json = await get('/usage/export?month=2026-09&format=json');
    expect(json).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/); // one row a line
    expect(JSON.parse(json)[0].jobType).toBe(`${TITLE}render${CLEAR}`);
  });

  it("is shown, not obeyed, in the CLI's report table", async () => {
    const r = await cli(['report', '--from', '2026-09-01', '--to', '2026-09-30', '--group-by', 'jobType,gpuType']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
    expect(r.out.split('\n')[1]).toMatch(/^\\u001b\]0;pwned\\u0007render\\u001b\[2J {2}=HYPERLINK\("http:\/\/evil\.example","x"\) {2}1 /);
  });
});
