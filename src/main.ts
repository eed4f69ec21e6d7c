/**
 * `npm start`: runs the roles in GATEKEEPER_ROLES (default gatekeeper,
 * reconciler, scheduler, api) in one process; each role can run alone to scale out
 * (`GATEKEEPER_ROLES=gatekeeper npm start` on as many hosts as you like).
 * SIGTERM/SIGINT: stop taking work, let current jobs finish, close.
 */
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Server } from 'node:http';
import { loadConfig, ConfigError, type Config } from './config.ts';
import { createLogger, safeUrl, type Logger } from './log.ts';
import { systemClock } from './clock.ts';
import { createRedis } from '../queues/connection.ts';
import { createPool, type Pool } from './db/pool.ts';
import { migrate } from './db/migrate.ts';
import { EMBEDDED_POOL_SIZE, startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded.ts';
import { Accounting } from './accounting/counters.ts';
import { Budgets } from './accounting/budgets.ts';
import { LedgerWriter } from './ledger/writer.ts';
import { createApp } from './api/app.ts';
import { OidcVerifier } from './http/oidc.ts';
import { HeldJobs } from './admin/held.ts';
import { checkRedisPolicy, RedisPolicyError } from './redis/policy.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler } from '../workers/reconciler.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { createScheduler } from '../workers/scheduler.ts';
import { createWaker } from '../workers/waker.ts';
import { GpuCaps } from './accounting/gpu-caps.ts';
import { createWebhookDelivery } from '../workers/webhook-delivery.ts';
import { EventStore } from './events/store.ts';
import { DriftAudit } from './accounting/drift.ts';
import { Metrics } from './metrics.ts';
import { createMetricsApp } from './api/app.ts';
import type { Quarantined } from './streams/dead-letter.ts';
import { QuarantineAdmin } from './admin/quarantine.ts';
import { createAuditWriter } from './ledger/audit-writer.ts';

type Closer = () => Promise<unknown>;

export async function start(config: Config, log: Logger): Promise<{ stop: () => Promise<void> }> {
  const closers: Closer[] = [];
  const roles = new Set(config.roles);
  const metrics = new Metrics();
  const connect = () => createRedis(config.redisUrl, { cluster: config.redisCluster });
  const redis = connect();
  await checkRedisPolicy(redis, log);
  log.info({ roles: [...roles], redis: safeUrl(config.redisUrl), cluster: config.redisCluster, prefix: config.queuePrefix }, 'starting');

  let pool: Pool | null = null;
  let embedded: EmbeddedPostgres | null = null;
  if (roles.has('api') || roles.has('reconciler') || roles.has('scheduler') || roles.has('webhooks')) {
    let url = config.databaseUrl;
    if (!url) {
      embedded = await startEmbeddedPostgres(config.dataDir);
      url = embedded.url;
      log.info({ dataDir: config.dataDir }, 'DATABASE_URL unset: using embedded Postgres (PGlite); one process only');
    }
    // The embedded Postgres takes one connection, so its pool queues every query; a busy
    // moment then waits longer for it than for a server (30 s before a query gives up).
    pool = embedded ? createPool(url, EMBEDDED_POOL_SIZE, 30_000) : createPool(url, 10);
    const applied = await migrate(pool);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    // Redis may have lost them (a flush, a new instance): Postgres is the source.
    const synced = await new Budgets(pool, new Accounting(redis, config.queuePrefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy)).syncLimits();
    log.info({ limits: synced }, 'limits copied to Redis');
  }

  if (roles.has('gatekeeper')) {
    const workerConnection = connect();
    const gk = createGatekeeper({ config, workerConnection, connection: redis, log, clock: systemClock, metrics });
    closers.unshift(async () => {
      await gk.close();
      await workerConnection.quit();
    });
  }
  if (roles.has('reconciler')) {
    const rec = createReconciler({ config, connection: redis, log, clock: systemClock, metrics });
    rec.start();
    // Held jobs start when room appears; the settles that make it happen here.
    const waker = createWaker({ config, connection: redis, pool: pool!, log, clock: systemClock, metrics });
    await waker.start();
    const accounting = new Accounting(redis, config.queuePrefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
    const streamConn = connect();
    // An entry set aside is counted and raised as an alert (ENTRY_QUARANTINED), once per entry however often it is re-read.
    const quarantined = (counter: typeof metrics.ledgerQuarantined) => async (q: Quarantined) => {
      counter.inc();
      await accounting.events.emit('ENTRY_QUARANTINED', { quarantineId: q.id, stream: q.stream, streamId: q.streamId, error: q.error }, `quarantine:${q.stream}:${q.streamId}`);
    };
    const writer = new LedgerWriter(streamConn, accounting.keys.ledger, pool!, log.child({ role: 'ledger' }), {
      timeZone: config.timeZone,
      onQuarantined: quarantined(metrics.ledgerQuarantined),
    });
    await writer.start();
    // Its own connection: both consumers block on XREADGROUP.
    const eventConn = connect();
    const events = new EventStore(eventConn, accounting.keys.events, pool!, config, log.child({ role: 'events' }), {
      metrics,
      onQuarantined: quarantined(metrics.eventsQuarantined),
    });
    await events.start();
    const auditConn = connect();
    const auditWriter = createAuditWriter(auditConn, accounting.keys.auditOutbox, pool!, log.child({ role: 'audit' }), {
      onQuarantined: quarantined(metrics.auditQuarantined),
    });
    await auditWriter.start();
    // The drift audit, on a timer; its result is a metric and, if not zero, a warning.
    const audit = new DriftAudit(redis, accounting, pool!);
    const driftTimer =
      config.driftCheckIntervalMs > 0
        ? setInterval(() => {
            audit.run().then(
              (r) => {
                metrics.driftCounters.set(r.drift.length);
                metrics.driftCheckedAt.set(Date.now() / 1000);
                if (r.drift.length > 0) log.warn({ drift: r.drift.slice(0, 20), counters: r.counters, streamId: r.streamId }, 'drift between Redis and the ledger');
              },
              (err: unknown) => log.error({ err }, 'drift audit failed'),
            );
          }, config.driftCheckIntervalMs).unref()
        : null;
    closers.unshift(async () => {
      if (driftTimer) clearInterval(driftTimer);
      await waker.close();
      await rec.close();
      await writer.stop();
      await events.stop();
      await auditWriter.stop();
      await Promise.all([streamConn.quit(), eventConn.quit(), auditConn.quit()]);
    });
  }
  if (roles.has('webhooks')) {
    const workerConnection = connect();
    const delivery = createWebhookDelivery({ config, workerConnection, pool: pool!, log, onResult: (outcome) => metrics.webhookDeliveries.inc({ outcome }) });
    closers.unshift(async () => {
      await delivery.close();
      await workerConnection.quit();
    });
  }
  if (roles.has('scheduler')) {
    const scheduler = createScheduler({ config, connection: redis, pool: pool!, log, clock: systemClock });
    await scheduler.start();
    closers.unshift(() => scheduler.close());
  }
  if (roles.has('gpu-sim')) {
    const workerConnection = connect();
    const sim = createGpuSim({ config, workerConnection, log });
    closers.unshift(async () => {
      await sim.close();
      await workerConnection.quit();
    });
  }
  if (roles.has('api')) {
    const accounting = new Accounting(redis, config.queuePrefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
    const budgets = new Budgets(pool!, accounting, systemClock, log.child({ role: 'admin' }));
    let adminToken = config.adminToken;
    if (!adminToken) {
      adminToken = randomBytes(24).toString('base64url');
      // Printed once, to the terminal only, never through the logger.
      process.stderr.write(
        `\nGATEKEEPER_ADMIN_TOKEN is not set; this run's admin token is:\n\n  ${adminToken}\n\n` +
          `Set GATEKEEPER_ADMIN_TOKEN to keep one across restarts.\n\n`,
      );
    }
    const q = (name: string) => new Queue(name, { connection: redis, prefix: config.queuePrefix });
    const boardQueues = {
      intake: q(config.queues.intake),
      exec: q(config.queues.exec),
      held: q(config.queues.held),
      rejected: q(config.queues.rejected),
    };
    const held = new HeldJobs(config, redis, pool!, systemClock, log.child({ role: 'admin' }));
    const deliveries = q(config.queues.webhooks);
    const quarantine = new QuarantineAdmin(pool!, config, deliveries);
    closers.push(() => Promise.all([...Object.values(boardQueues).map((b) => b.close()), held.close(), deliveries.close()]));
    const tokens = { admin: adminToken, viewer: config.viewerToken };
    metrics.watchState(accounting, budgets, pool!, new GpuCaps(pool!, accounting, systemClock, log));
    const app = createApp({
      metrics, config, accounting, intake: boardQueues.intake, clock: systemClock,
      budgets, held, redis, pool: pool!, log: log.child({ role: 'api' }), tokens, boardQueues, quarantine,
      verifiers: config.oidc ? [new OidcVerifier(config.oidc, log.child({ role: 'api', oidc: config.oidc.issuer }))] : [],
    });
    const server = await listen(app, config.port);
    log.info({ port: config.port }, 'api listening');
    closers.unshift(
      () =>
        new Promise((r) => {
          server.close(r);
          server.closeIdleConnections();
        }),
    );
  }
  if (!roles.has('api') && config.metricsPort > 0) {
    const tokens = { admin: config.adminToken ?? randomBytes(24).toString('base64url'), viewer: config.viewerToken };
    const server = await listen(createMetricsApp(metrics, tokens), config.metricsPort);
    log.info({ port: config.metricsPort }, 'metrics listening');
    closers.unshift(() => new Promise((r) => server.close(r)));
  }
  if (pool) {
    const p = pool;
    closers.push(() => p.end());
  }
  if (embedded) {
    const e = embedded;
    closers.push(() => e.stop());
  }
  closers.push(() => redis.quit());

  return {
    async stop() {
      for (const close of closers) {
        await close().catch((err: unknown) => log.error({ err }, 'error while stopping'));
      }
    },
  };
}

function listen(app: { listen: (port: number, cb: (err?: Error) => void) => Server }, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = app.listen(port, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let app: { stop: () => Promise<void> };
  try {
    app = await start(config, log);
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    // Refusals a person must act on also go to stderr as plain text.
    if (err instanceof RedisPolicyError) process.stderr.write(`gpu-gatekeeper: ${err.message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down; letting current jobs finish');
    app.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  void main();
}
