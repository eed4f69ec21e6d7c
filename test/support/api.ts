/**
 * The API as most suites run it: the express app on a loopback port with
 * the preflight and submission routes, the intake queue, held jobs and one
 * gatekeeper deciding what is submitted. `close` stops what it started
 * (the env is the suite's to close).
 */
import { Queue } from 'bullmq';
import { afterAll, beforeAll } from 'vitest';
import { systemClock, type Clock } from '../../src/clock.ts';
import type { Config } from '../../src/config.ts';
import type { Metrics } from '../../src/metrics.ts';
import { createApp } from '../../src/api/app.ts';
import { HeldJobs } from '../../src/admin/held.ts';
import { createGatekeeper, type Gatekeeper } from '../../workers/gatekeeper.ts';
import { listen, urlOf } from './http.ts';
import { createTestEnv, type TestEnv } from './env.ts';

export interface ServedApi {
  /** http://127.0.0.1:<port>/api/v1 */
  api: string;
  held: HeldJobs;
  intake: Queue;
  gatekeeper: Gatekeeper;
  close(): Promise<void>;
}

export async function serveApi(t: TestEnv, opts: { clock: Clock; tokens: { admin: string; viewer?: string }; metrics?: Metrics; config?: Config }): Promise<ServedApi> {
  const held = new HeldJobs(t.config, t.redis, t.pool, opts.clock, t.log);
  const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  const app = createApp({ config: opts.config ?? t.config, accounting: t.accounting, intake, clock: opts.clock, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: opts.tokens });
  const server = await listen(app);
  const gatekeeper = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: opts.clock, ...(opts.metrics ? { metrics: opts.metrics } : {}) });
  return {
    api: `${urlOf(server)}/api/v1`,
    held,
    intake,
    gatekeeper,
    async close() {
      await new Promise((r) => server.close(r));
      await gatekeeper.close();
      await held.close();
      await intake.close();
    },
  };
}

/** A JSON call to `api` (…/api/v1) as `token`, naming 'ops-alice' as the actor: its status and parsed body. */
export async function callApi(api: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(api + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-gatekeeper-actor': 'ops-alice' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** The tokens most API suites use: an admin's and a viewer's. */
export const TEST_TOKENS = { admin: 'test-admin-token-0123456789', viewer: 'test-viewer-token-0123456789' };

/**
 * A suite's own environment with the API served on the system clock, made
 * before its tests and closed after them; `call` as the admin unless a token
 * is given. Read `env.t` and `env.served` inside tests (they exist then).
 */
export function apiSuite(): { env: { t: TestEnv; served: ServedApi }; call: (method: string, path: string, body?: unknown, token?: string) => ReturnType<typeof callApi> } {
  const env = {} as { t: TestEnv; served: ServedApi };
  beforeAll(async () => {
    env.t = await createTestEnv({}, { liveClock: true });
    env.served = await serveApi(env.t, { clock: systemClock, tokens: TEST_TOKENS });
  });
  afterAll(async () => {
    await env.served?.close();
    await env.t?.close();
  });
  return { env, call: (method, path, body, token = TEST_TOKENS.admin) => callApi(env.served.api, token, method, path, body) };
}
