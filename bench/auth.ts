/**
 * `npm run bench` (part `auth`): what a person's own key costs per API call
 * against an environment token, which is checked in memory. A key is looked
 * up in Postgres at every request (so a revocation holds at once), so this
 * runs on the embedded Postgres a newcomer gets (one connection, the
 * slowest case). Both kinds of caller take turns in the same process and
 * moment: 20 rounds of 100 calls one at a time (latency), then 20 rounds of
 * 400 calls 16 at a time (throughput), each round alternating who goes
 * first. The call is GET /api/v1/projects/alpha/budget (a Redis read).
 * Env: REDIS_URL (else a local redis-server), DATABASE_URL (else embedded).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createRedis } from '../queues/connection.ts';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createApp } from '../src/api/app.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { startLocalRedis, unlinkMatching } from '../test/support/infra.ts';
import { listen, urlOf } from '../test/support/http.ts';
import { save } from './results.ts';

const log = createLogger('silent');
const ROUNDS = 20;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * xs.length) - 1)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-bench-auth-'));
  const redisServer = process.env.REDIS_URL ? null : await startLocalRedis(dir);
  const redisUrl = process.env.REDIS_URL ?? redisServer!.url;
  const pg = process.env.DATABASE_URL ? null : await startEmbeddedPostgres(join(dir, 'pg'));
  const prefix = `bench-auth-${randomBytes(4).toString('hex')}`;
  const admin = randomBytes(24).toString('base64url');
  const config = loadConfig({ ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, DATABASE_URL: process.env.DATABASE_URL ?? pg!.url });
  const pool = createPool(config.databaseUrl!, pg ? 1 : 4);
  await migrate(pool);
  const redis = createRedis(redisUrl);
  const accounting = new Accounting(redis, prefix, config.settledRetainSeconds, config.timeZone);
  const budgets = new Budgets(pool, accounting);
  const held = new HeldJobs(config, redis, pool, systemClock, log);
  const server = await listen(createApp({ config, accounting, budgets, held, redis, pool, log, tokens: { admin } }));
  const base = `${urlOf(server)}/api/v1`;
  try {
    await budgets.set('alpha', hoursToGpuMs(100));
    const made = await fetch(`${base}/keys`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ user: 'ann', role: 'submitter', projects: ['alpha'] }) });
    const key = ((await made.json()) as { key: string }).key;
    const call = async (credential: string) => {
      const t0 = performance.now();
      const res = await fetch(`${base}/projects/alpha/budget`, { headers: { authorization: `Bearer ${credential}` } });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`GET budget answered ${res.status}`);
      return performance.now() - t0;
    };
    const one = async (credential: string, n: number) => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) ms.push(await call(credential));
      return ms;
    };
    const many = async (credential: string, n: number, inFlight: number) => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: inFlight }, async () => {
        while (next++ < n) await call(credential);
      }));
      return n / ((performance.now() - t0) / 1000);
    };
    await one(admin, 200); // warm both paths
    await one(key, 200);
    const lat = { token: [] as number[], key: [] as number[] };
    const tput = { token: [] as number[], key: [] as number[] };
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? (['key', 'token'] as const) : (['token', 'key'] as const);
      for (const who of order) lat[who].push(...(await one(who === 'key' ? key : admin, 100)));
    }
    const ratios: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? (['key', 'token'] as const) : (['token', 'key'] as const);
      const got: Record<string, number> = {};
      for (const who of order) got[who] = await many(who === 'key' ? key : admin, 400, 16);
      tput.token.push(got.token!);
      tput.key.push(got.key!);
      ratios.push(got.key! / got.token!);
    }
    const out = {
      at: new Date().toISOString(),
      postgres: pg ? 'embedded (PGlite, one connection)' : 'DATABASE_URL',
      latencyMs: { token: { p50: median(lat.token), p99: pct(lat.token, 99) }, key: { p50: median(lat.key), p99: pct(lat.key, 99) } },
      addedP50Ms: median(lat.key) - median(lat.token),
      throughput: { token: median(tput.token), key: median(tput.key), pairedRatio: median(ratios) },
    };
    save('auth.json', JSON.stringify(out, null, 2));
    console.log(`auth: one at a time p50 ${out.latencyMs.token.p50.toFixed(2)} ms (token) vs ${out.latencyMs.key.p50.toFixed(2)} ms (key), +${out.addedP50Ms.toFixed(2)} ms;` +
      ` 16 in flight ${out.throughput.token.toFixed(0)} vs ${out.throughput.key.toFixed(0)} calls/s, key/token ${out.throughput.pairedRatio.toFixed(2)} (rounds' median)`);
  } finally {
    await new Promise((r) => server.close(r));
    await held.close();
    await unlinkMatching(redis, `*${prefix}*`).catch(() => {});
    redis.disconnect();
    await pool.end();
    await pg?.stop();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
