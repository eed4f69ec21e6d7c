/**
 * The API as most suites run it: the express app on a loopback port with
 * the preflight and submission routes, the intake queue, held jobs and one
 * gatekeeper deciding what is submitted. `close` stops what it started
 * (the env is the suite's to close).
 */
import { Queue } from 'bullmq';
import type { Clock } from '../../src/clock.ts';
import type { Config } from '../../src/config.ts';
import type { Metrics } from '../../src/metrics.ts';
import { createApp } from '../../src/api/app.ts';
import { HeldJobs } from '../../src/admin/held.ts';
import { createGatekeeper, type Gatekeeper } from '../../workers/gatekeeper.ts';
import { listen, urlOf } from './http.ts';
import type { TestEnv } from './env.ts';

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
