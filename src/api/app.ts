/** The express app: the admin API under /api/v1, Bull Board at /admin/queues, health at /healthz. */
import express from 'express';
import type { Redis } from 'ioredis';
import { ping, type Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { Budgets } from '../accounting/budgets.ts';
import { authenticate, type Authn, type Tokens } from '../http/auth.ts';
import { BATCH_ROUTES, gateRoutes } from '../http/permissions.ts';
import { accessOf, type CredentialVerifier } from '../http/access.ts';
import { ApiKeys } from '../people/api-keys.ts';
import { keyRoutes, meRoute } from './keys.ts';
import { dashboardData } from '../../dashboard/data.ts';
import { DashboardQuerySchema } from './dashboard-query.ts';
import { parseBody } from './validate.ts';
import { renderDashboard } from '../../dashboard/page.ts';
import { budgetRoutes } from './budgets.ts';
import { projectRoutes } from './projects.ts';
import { heldRoutes } from './held.ts';
import { overrideRequestRoutes } from './override-requests.ts';
import { OverrideRequests } from '../admin/override-requests.ts';
import { auditRoutes } from './audit.ts';
import { eventRoutes } from './events.ts';
import { NO_TARGETS } from '../net/egress.ts';
import { maintenanceRoutes } from './maintenance.ts';
import { jobRoutes } from './jobs.ts';
import { submitRoutes } from './submit.ts';
import { rateLimitRoutes } from './rate-limits.ts';
import { gpuCapRoutes } from './gpu-caps.ts';
import { projectGpuRoutes } from './project-gpu.ts';
import { correctionRoutes } from './corrections.ts';
import { rateCardRoutes } from './rate-card.ts';
import { RateCard } from '../accounting/rate-card.ts';
import { Corrections } from '../accounting/corrections.ts';
import { AllowedGpuTypes } from '../accounting/allowed-gpu-types.ts';
import { GpuCaps } from '../accounting/gpu-caps.ts';
import { RateLimits } from '../accounting/rate-limits.ts';
import { usageRoutes } from './usage.ts';
import { quarantineRoutes } from './quarantine.ts';
import type { QuarantineAdmin } from '../admin/quarantine.ts';
import { Preflight } from '../admin/preflight.ts';
import type { Accounting } from '../accounting/counters.ts';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Queue } from 'bullmq';
import type { Metrics } from '../metrics.ts';
import type { HeldJobs } from '../admin/held.ts';
import { errorHandler, sendError } from '../http/errors.ts';
import { noFraming, refuseCrossSite, requireJsonBody } from '../http/csrf.ts';
import { mountBullBoard, type BoardQueues } from '../../dashboard/bull-board.ts';

export interface AppDeps {
  /** Served at /metrics (viewer or admin token); omitted: no /metrics. */
  metrics?: Metrics;
  /** For preflight and submission through the API; both answer 503 without them. */
  config?: Config;
  accounting?: Accounting;
  /** The intake queue, for POST /jobs. */
  intake?: Queue;
  clock?: Clock;
  budgets: Budgets;
  redis: Redis;
  pool: Pool;
  log: Logger;
  held: HeldJobs;
  tokens: Tokens;
  /** Credentials besides the environment tokens and people's keys (OIDC). */
  verifiers?: readonly CredentialVerifier[];
  /** Queues to show in Bull Board at /admin/queues; omitted: no board. */
  boardQueues?: BoardQueues;
  /** Stream entries set aside (GET /quarantine, replay); omitted: no such routes. */
  quarantine?: QuarantineAdmin;
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  const keys = new ApiKeys(deps.pool, deps.log, deps.accounting ? { redis: deps.redis, epochKey: deps.accounting.keys.keysEpoch } : null, deps.clock ?? systemClock);
  const authn: Authn = { tokens: deps.tokens, verifiers: [keys, ...(deps.verifiers ?? [])], visibility: deps.config?.visibility ?? 'own' };

  app.get('/healthz', async (_req, res) => {
    // Within a second: a Redis that is down queues commands rather than failing them.
    const [redis, postgres] = await Promise.all([within(1_000, deps.redis.ping()), within(1_000, ping(deps.pool))]);
    res.status(redis && postgres ? 200 : 503).json({ redis, postgres });
  });

  if (deps.metrics) app.use(metricsRoute(deps.metrics, authn));

  

  const trusted = deps.config?.trustedOrigins ?? [];
  // One for the API, the dashboard and /submit.
  const requests = deps.accounting ? new OverrideRequests({ pool: deps.pool, redis: deps.redis, accounting: deps.accounting, held: deps.held, clock: deps.clock ?? systemClock, log: deps.log }) : null;
  const api = express.Router();
  api.use(refuseCrossSite(trusted), requireJsonBody);
  api.use(authenticate(authn));
  api.use(gateRoutes);
  // Job batches (preflight, submit) may be large; every other body is small.
  const batchJson = express.json({ limit: '4mb', strict: false });
  const smallJson = express.json({ limit: '16kb', strict: false });
  api.use((req, res, next) => (BATCH_ROUTES.has(`${req.method} ${req.path}`) ? batchJson : smallJson)(req, res, next));
  api.use(meRoute());
  api.use(keyRoutes(keys));
  api.use(budgetRoutes(deps.budgets, deps.pool));
  api.use(projectRoutes({ pool: deps.pool, budgets: deps.budgets, held: deps.held }));
  api.use(heldRoutes(deps.held));
  if (requests) api.use(overrideRequestRoutes(requests));
  api.use(auditRoutes(deps.pool));
  // Without a config (some tests), no private webhook target is allowed.
  api.use(eventRoutes(deps.pool, deps.config ?? { webhookAllowedTargets: NO_TARGETS }));
  if (deps.accounting) api.use(rateLimitRoutes(new RateLimits(deps.pool, deps.accounting, deps.clock ?? systemClock, deps.log)));
  const caps = deps.accounting ? new GpuCaps(deps.pool, deps.accounting, deps.clock ?? systemClock, deps.log) : null;
  if (caps) api.use(gpuCapRoutes(caps));
  if (deps.accounting) api.use(projectGpuRoutes(new AllowedGpuTypes(deps.pool, deps.accounting, deps.log), deps.budgets));
  if (deps.accounting) api.use(rateCardRoutes(new RateCard(deps.pool, deps.accounting, deps.clock ?? systemClock, deps.log), deps.config?.unknownGpuTypePolicy ?? 'default'));
  if (deps.accounting) api.use(correctionRoutes(new Corrections(deps.pool, deps.accounting, deps.config?.timeZone ?? 'UTC', deps.clock ?? systemClock, deps.log), deps.pool));
  if (deps.accounting) api.use(maintenanceRoutes({ redis: deps.redis, accounting: deps.accounting, budgets: deps.budgets, pool: deps.pool, heldQueue: deps.boardQueues?.held ?? null, intakeQueue: deps.intake ?? null, settledRetainSeconds: deps.config?.settledRetainSeconds ?? 604_800, clock: deps.clock ?? systemClock, log: deps.log }));
  api.use(usageRoutes(deps.pool, deps.config?.timeZone ?? 'UTC'));
  if (deps.quarantine) api.use(quarantineRoutes(deps.quarantine));
  // One Preflight for the API and /submit: the same decisions on both.
  const preflight = deps.config && deps.accounting ? new Preflight(deps.config, deps.accounting, deps.budgets) : null;
  if (preflight) api.use(jobRoutes(preflight, deps.clock ?? systemClock, deps.intake));
  app.use('/api/v1', api);
  if (deps.boardQueues) mountBullBoard(app, deps.boardQueues, authn, { pool: deps.pool, trustedOrigins: trusted });
  app.get('/', (_req, res) => res.redirect('/dashboard'));
  app.get('/dashboard', noFraming, authenticate(authn, { browser: true }), async (req, res) => {
    const clock = deps.clock ?? systemClock;
    const query = parseBody(DashboardQuerySchema, req.query);
    const access = accessOf(res);
    const data = await dashboardData({ pool: deps.pool, budgets: deps.budgets, held: deps.held, ...(caps ? { caps } : {}), ...(requests ? { requests } : {}), timeZone: deps.config?.timeZone ?? 'UTC', now: clock.now(), query, access });
    // Bull Board shows every job: linked only for those it lets in.
    const board = deps.boardQueues && access.readsAll ? { base: '/admin/queues', queues: Object.values(deps.boardQueues).map((q) => q.name) } : null;
    res.set('content-type', 'text/html; charset=utf-8').send(renderDashboard(data, { role: access.who.role, who: access.describe(), board, mayManage: (j) => access.canManageProject(j.project) }));
  });
  if (preflight && deps.config && deps.accounting) {
    app.use(submitRoutes({ authn, trustedOrigins: trusted, preflight, intake: deps.intake, budgets: deps.budgets, pool: deps.pool, held: deps.held, requests, redis: deps.redis, keys: deps.accounting.keys, clock: deps.clock ?? systemClock, timeZone: deps.config.timeZone }));
  }
  app.use((_req, res) => sendError(res, 404, 'no such route'));
  app.use(errorHandler(deps.log));
  return app;
}

/** GET /metrics in Prometheus' text format, for the viewer or admin token. */
function metricsRoute(metrics: Metrics, authn: Authn): express.Router {
  const r = express.Router();
  r.get('/metrics', authenticate(authn), async (_req, res) => {
    // Counts of every project and person: for those who read everything.
    if (!accessOf(res).readsAll) return sendError(res, 403, `/metrics needs an admin, or a viewer or manager of every project; ${accessOf(res).describe()} may not`);
    res.set('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return r;
}

/** /metrics alone, for a process that does not serve the API (METRICS_PORT). */
export function createMetricsApp(metrics: Metrics, tokens: Tokens): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(metricsRoute(metrics, { tokens }));
  app.use((_req, res) => sendError(res, 404, 'no such route'));
  return app;
}

/** true if `p` settles successfully within `ms`, else false. */
function within(ms: number, p: Promise<unknown>): Promise<boolean> {
  return Promise.race([p.then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
}
