/**
 * The one place that reads the environment. Every option is validated here,
 * carries its unit in its name, and is frozen; the rest of the code takes a
 * `Config` (tests build one with `loadConfig({...})`).
 */
import { z } from 'zod';
import { checkTimeZone } from './periods.ts';
import { hashTag } from './redis/keys.ts';
import { parseAllowedTargets } from './net/allowed.ts';
import type { AllowedTargets } from './net/egress.ts';
import { issuerUrlProblem, parseGroupRoles, type OidcSettings } from './http/oidc-config.ts';

const intFrom = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return def;
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
        ctx.addIssue({ code: 'custom', message: `must be an integer ${range}, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

const numberFrom = (def: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === '') return def;
      const n = Number(v);
      if (!Number.isFinite(n) || n <= 0 || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a number > 0 and <= ${max}, got "${v}"` });
        return z.NEVER;
      }
      return n;
    });

/** Every environment variable the gatekeeper reads (docs/operations.md lists each: test/config-docs.test.ts). */
export const Env = z.object({
  /** @default redis://127.0.0.1:6379 */
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  /**
   * `1`: Redis is a Redis Cluster. REDIS_URL then names any one of its nodes
   * (`redis://` or `rediss://`, with user and password if it needs them;
   * the client finds the others from it), and QUEUE_PREFIX must carry a hash
   * tag such as `{bull}`. @default 0 (one Redis server)
   */
  REDIS_CLUSTER: z.enum(['0', '1'], 'must be 0 (one Redis server) or 1 (a Redis Cluster)').default('0'),
  /** Unset: an embedded Postgres (PGlite) under DATA_DIR. */
  DATABASE_URL: z.string().optional(),
  /** Where the embedded Postgres keeps its files. @default ./.data */
  DATA_DIR: z.string().default('./.data'),
  /** HTTP port of the API. @default 3000 */
  PORT: intFrom(3000),
  /** A process without the api role serves /metrics on this port (unset: it does not). */
  METRICS_PORT: intFrom(0),
  /**
   * BullMQ key prefix of every queue (BullMQ's own default). On Redis Cluster
   * it must carry a hash tag, e.g. `{bull}`: the part in braces picks the one
   * slot that holds all of this deployment's queue and gatekeeper keys. @default bull
   */
  QUEUE_PREFIX: z.string().min(1).default('bull'),
  /** @default gpu-intake */
  INTAKE_QUEUE: z.string().regex(/^[^:]+$/, 'may not contain ":"').default('gpu-intake'),
  /** @default gpu-exec */
  EXEC_QUEUE: z.string().regex(/^[^:]+$/, 'may not contain ":"').default('gpu-exec'),
  /** Where jobs that do not fit wait. @default gpu-held */
  HELD_QUEUE: z.string().regex(/^[^:]+$/, 'may not contain ":"').default('gpu-held'),
  /** Where invalid and cancelled jobs go, with their reason. @default gpu-rejected */
  REJECTED_QUEUE: z.string().regex(/^[^:]+$/, 'may not contain ":"').default('gpu-rejected'),
  /** Webhook deliveries (one job per event per webhook, retried with backoff). @default gpu-webhooks */
  WEBHOOK_QUEUE: z.string().regex(/^[^:]+$/, 'may not contain ":"').default('gpu-webhooks'),
  /** How long one webhook request may take, in ms. @default 5000 */
  WEBHOOK_TIMEOUT_MS: intFrom(5_000, 100),
  /** Tries per webhook delivery (exponential backoff from 1 s). @default 10 */
  WEBHOOK_ATTEMPTS: intFrom(10, 1),
  /**
   * Private and loopback webhook targets to allow, comma-separated: CIDR
   * ranges or single addresses (10.0.0.0/8, 127.0.0.1, fd00::/8) and host
   * names (exact, case-insensitive, a trailing dot ignored; the name may then
   * resolve to private and loopback addresses). Link-local, cloud metadata,
   * unspecified, multicast, broadcast and reserved targets are always refused
   * and cannot be listed (src/net/egress.ts, src/net/allowed.ts).
   * @default none: webhooks reach public addresses only
   */
  WEBHOOK_ALLOWED_TARGETS: z
    .string()
    .default('')
    .transform((v, ctx) => {
      const { targets, problems } = parseAllowedTargets(v);
      for (const message of problems) ctx.addIssue({ code: 'custom', message });
      return targets;
    }),
  /** A job of a project with no budget: `hold` it (reason "no budget for project X") or `reject` it. @default hold */
  UNKNOWN_PROJECT_POLICY: z.enum(['hold', 'reject']).default('hold'),
  /** A job whose GPU type has no rate: charged at the `default` rate, or `reject`ed. @default default */
  UNKNOWN_GPU_TYPE_POLICY: z.enum(['default', 'reject']).default('default'),
  /** Largest estimate one job may carry, in GPU hours (at most 1,000,000). @default 10000 */
  MAX_GPU_HOURS_PER_JOB: numberFrom(10_000, 1_000_000),
  /** Largest `payload`, in bytes of JSON. @default 262144 (256 KiB) */
  MAX_PAYLOAD_BYTES: intFrom(256 * 1024, 1),
  /**
   * Intake jobs a gatekeeper process works on at once. Admission is short
   * and I/O-bound, and concurrent jobs share one reserve call (group commit).
   * More in flight keeps the reserve call, the promotion and BullMQ's own
   * completions overlapping: against the relay at the same concurrency, 512
   * gave 0.80 where 128 gave 0.72 (5 alternating rounds, 20,000 jobs, this
   * 2-core machine; see docs/benchmarks.md). @default 512
   */
  GATEKEEPER_CONCURRENCY: intFrom(512, 1),
  /**
   * Most intake jobs one reserve call decides. One call holds Redis while it
   * runs (about 2 ms for 256 jobs over three scopes, measured); a larger
   * batch gained nothing measurable at concurrency 512. At most 4096: a
   * call that large holds every other Redis client for tens of ms.
   * @default 256
   */
  GATEKEEPER_MAX_BATCH: intFrom(256, 1, 4096),
  /**
   * How long a gatekeeper's lock on an intake job lasts, in ms; a gatekeeper
   * killed mid-job has its jobs picked up again after about this long.
   * @default 30000
   */
  GATEKEEPER_LOCK_MS: intFrom(30_000, 500),
  /** How often the reconciler looks for finished GPU jobs, in ms. @default 500 */
  RECONCILE_INTERVAL_MS: intFrom(500, 10),
  /** How often the reconciler walks every open reservation, in ms. @default 30000 */
  SWEEP_INTERVAL_MS: intFrom(30_000, 100),
  /** How often the reconciler compares the Redis counters with the Postgres ledger, in ms (0: never). @default 300000 */
  DRIFT_CHECK_INTERVAL_MS: intFrom(300_000, 0),
  /** A reservation whose GPU job is missing this long is settled at its estimate, in ms. @default 300000 */
  VANISHED_GRACE_MS: intFrom(300_000, 0),
  /** Settled GPU jobs stay on gpu-exec this long (for Bull Board) before the reconciler removes them, in ms. @default 86400000 */
  EXEC_RETAIN_FINISHED_MS: intFrom(86_400_000, 0),
  /** How long a settled reservation is remembered, so a late retry cannot admit it again, in s. @default 604800 */
  SETTLED_RETAIN_SECONDS: intFrom(604_800, 60),
  /**
   * IANA time zone of the quota and budget calendar: days start at local
   * midnight, weeks on Monday 00:00, months on the 1st. @default UTC
   */
  GATEKEEPER_TIMEZONE: z
    .string()
    .default('UTC')
    .refine((tz) => {
      try {
        return Boolean(checkTimeZone(tz));
      } catch {
        return false;
      }
    }, 'must be an IANA time zone such as UTC or Europe/Berlin'),
  /** Roles `npm start` runs: any of gatekeeper, reconciler, scheduler, webhooks, api, gpu-sim. */
  GATEKEEPER_ROLES: z.string().default('gatekeeper,reconciler,scheduler,webhooks,api'),
  /** Bearer token for admin calls. Unset: a random one is generated and printed once. */
  GATEKEEPER_ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /** Bearer token for read-only calls and a read-only Bull Board. Unset: only the admin token works. */
  GATEKEEPER_VIEWER_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  /**
   * What people with a key of their own see of others: `own` (their
   * projects' budgets, their own quota and jobs) or `all` (every project's
   * budget and every quota; held jobs and usage stay their own).
   * Admins, and viewers and managers of every project, see everything. @default own
   */
  VISIBILITY: z.enum(['own', 'all'], 'must be own or all').default('own'),
  /**
   * Origins (scheme://host[:port]) besides this server's own whose pages may
   * write with a browser's credentials: set it when a proxy in front rewrites
   * the Host header. Comma-separated. @default none
   */
  GATEKEEPER_TRUSTED_ORIGINS: z
    .string()
    .default('')
    .transform((v, ctx) => {
      const origins = v.split(',').map((o) => o.trim()).filter(Boolean);
      for (const o of origins) {
        let u: URL | null = null;
        try {
          u = new URL(o);
        } catch {
          /* reported below */
        }
        if (!u || u.origin !== o) ctx.addIssue({ code: 'custom', message: `"${o.slice(0, 100)}" is not an origin such as https://gatekeeper.example.com (scheme, host, port; no path)` });
      }
      return origins;
    }),
  /**
   * OpenID Connect issuer whose JWTs sign people in (`Authorization: Bearer
   * <JWT>`), exactly as its tokens' `iss` reads; https:// (http only on
   * loopback). Its keys come from its /.well-known/openid-configuration.
   * @default unset: OIDC off
   */
  OIDC_ISSUER: z.string().optional(),
  /** The audience (`aud`) a token must carry; required with OIDC_ISSUER. */
  OIDC_AUDIENCE: z.string().optional(),
  /** The claim naming the person. @default preferred_username */
  OIDC_USER_CLAIM: z.string().min(1).default('preferred_username'),
  /** The claim listing the person's groups (an array of strings). @default groups */
  OIDC_GROUPS_CLAIM: z.string().min(1).default('groups'),
  /**
   * Groups to roles and projects, `;`-separated: `group=role` (every
   * project) or `group=role:project,project`, e.g.
   * `gk-admins=admin; ml-leads=manager:alpha,beta; ml=submitter:alpha,beta; auditors=viewer`.
   * Required with OIDC_ISSUER.
   */
  OIDC_GROUP_ROLES: z.string().optional(),
  /** How long one simulated GPU job runs, in ms. @default 1000 */
  SIM_JOB_MS: intFrom(1000, 0),
  /** A simulated GPU worker's lock on a job, in ms: a killed worker's jobs run again after about this long. @default 30000 */
  SIM_LOCK_MS: intFrom(30_000, 500),
  /** Simulated GPU jobs one gpu-sim process runs at once. @default 8 */
  SIM_CONCURRENCY: intFrom(8, 1),
  /** pino level. @default info */
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Role = 'gatekeeper' | 'reconciler' | 'scheduler' | 'webhooks' | 'api' | 'gpu-sim';
const ROLES: readonly Role[] = ['gatekeeper', 'reconciler', 'scheduler', 'webhooks', 'api', 'gpu-sim'];

export interface Config {
  readonly redisUrl: string;
  /** REDIS_URL is one node of a Redis Cluster. */
  readonly redisCluster: boolean;
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly port: number;
  /** 0: no separate metrics server. */
  readonly metricsPort: number;
  readonly queuePrefix: string;
  readonly queues: { readonly intake: string; readonly exec: string; readonly held: string; readonly rejected: string; readonly webhooks: string };
  readonly webhookTimeoutMs: number;
  readonly webhookAttempts: number;
  /** Private and loopback webhook targets allowed besides public addresses. */
  readonly webhookAllowedTargets: AllowedTargets;
  readonly unknownProjectPolicy: 'hold' | 'reject';
  readonly unknownGpuTypePolicy: 'default' | 'reject';
  readonly maxGpuHoursPerJob: number;
  readonly maxPayloadBytes: number;
  readonly gatekeeperConcurrency: number;
  readonly gatekeeperMaxBatch: number;
  readonly gatekeeperLockMs: number;
  readonly reconcileIntervalMs: number;
  readonly sweepIntervalMs: number;
  readonly vanishedGraceMs: number;
  readonly driftCheckIntervalMs: number;
  readonly execRetainFinishedMs: number;
  readonly settledRetainSeconds: number;
  readonly timeZone: string;
  readonly roles: readonly Role[];
  readonly adminToken: string | undefined;
  readonly viewerToken: string | undefined;
  readonly visibility: 'own' | 'all';
  /** Origins besides the server's own whose pages may write with a browser's credentials. */
  readonly trustedOrigins: readonly string[];
  /** Sign-in with OIDC tokens; null: off. */
  readonly oidc: OidcSettings | null;
  readonly simJobMs: number;
  readonly simConcurrency: number;
  readonly simLockMs: number;
  readonly logLevel: string;
}

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable means unset (compose files and shells produce them).
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = Env.safeParse(given);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  // A settled reservation must outlive the finished GPU job it guards, or a
  // late retry could reserve again and the sweep charge the same run twice.
  if (e.SETTLED_RETAIN_SECONDS * 1000 < e.EXEC_RETAIN_FINISHED_MS + e.GATEKEEPER_LOCK_MS) {
    throw new ConfigError(
      'invalid configuration:\n  SETTLED_RETAIN_SECONDS: must cover EXEC_RETAIN_FINISHED_MS + GATEKEEPER_LOCK_MS ' +
        `(at least ${Math.ceil((e.EXEC_RETAIN_FINISHED_MS + e.GATEKEEPER_LOCK_MS) / 1000)} s)`,
    );
  }
  if (e.GATEKEEPER_VIEWER_TOKEN && e.GATEKEEPER_VIEWER_TOKEN === e.GATEKEEPER_ADMIN_TOKEN) {
    throw new ConfigError('invalid configuration:\n  GATEKEEPER_VIEWER_TOKEN: must differ from GATEKEEPER_ADMIN_TOKEN');
  }
  if (e.REDIS_CLUSTER === '1') checkCluster(e.REDIS_URL, e.QUEUE_PREFIX);
  const roles = e.GATEKEEPER_ROLES.split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  const unknown = roles.filter((r) => !ROLES.includes(r as Role));
  if (unknown.length > 0) {
    throw new ConfigError(`invalid configuration:\n  GATEKEEPER_ROLES: unknown role(s) ${unknown.join(', ')}; use ${ROLES.join(', ')}`);
  }
  const oidc = oidcOf(e);
  return Object.freeze({
    redisUrl: e.REDIS_URL,
    redisCluster: e.REDIS_CLUSTER === '1',
    databaseUrl: e.DATABASE_URL || undefined,
    dataDir: e.DATA_DIR,
    port: e.PORT,
    metricsPort: e.METRICS_PORT,
    queuePrefix: e.QUEUE_PREFIX,
    queues: Object.freeze({ intake: e.INTAKE_QUEUE, exec: e.EXEC_QUEUE, held: e.HELD_QUEUE, rejected: e.REJECTED_QUEUE, webhooks: e.WEBHOOK_QUEUE }),
    webhookTimeoutMs: e.WEBHOOK_TIMEOUT_MS,
    webhookAttempts: e.WEBHOOK_ATTEMPTS,
    webhookAllowedTargets: e.WEBHOOK_ALLOWED_TARGETS,
    unknownProjectPolicy: e.UNKNOWN_PROJECT_POLICY,
    unknownGpuTypePolicy: e.UNKNOWN_GPU_TYPE_POLICY,
    maxGpuHoursPerJob: e.MAX_GPU_HOURS_PER_JOB,
    maxPayloadBytes: e.MAX_PAYLOAD_BYTES,
    gatekeeperConcurrency: e.GATEKEEPER_CONCURRENCY,
    gatekeeperMaxBatch: e.GATEKEEPER_MAX_BATCH,
    gatekeeperLockMs: e.GATEKEEPER_LOCK_MS,
    reconcileIntervalMs: e.RECONCILE_INTERVAL_MS,
    sweepIntervalMs: e.SWEEP_INTERVAL_MS,
    vanishedGraceMs: e.VANISHED_GRACE_MS,
    driftCheckIntervalMs: e.DRIFT_CHECK_INTERVAL_MS,
    execRetainFinishedMs: e.EXEC_RETAIN_FINISHED_MS,
    settledRetainSeconds: e.SETTLED_RETAIN_SECONDS,
    timeZone: e.GATEKEEPER_TIMEZONE,
    roles: Object.freeze(roles as Role[]),
    adminToken: e.GATEKEEPER_ADMIN_TOKEN,
    viewerToken: e.GATEKEEPER_VIEWER_TOKEN,
    visibility: e.VISIBILITY,
    trustedOrigins: Object.freeze(e.GATEKEEPER_TRUSTED_ORIGINS),
    oidc,
    simJobMs: e.SIM_JOB_MS,
    simConcurrency: e.SIM_CONCURRENCY,
    simLockMs: e.SIM_LOCK_MS,
    logLevel: e.LOG_LEVEL,
  });
}

/** OIDC's settings, all checked together: an issuer needs an audience and a mapping. */
function oidcOf(e: z.infer<typeof Env>): OidcSettings | null {
  if (e.OIDC_ISSUER === undefined) {
    const stray = (['OIDC_AUDIENCE', 'OIDC_GROUP_ROLES'] as const).filter((k) => e[k] !== undefined);
    if (stray.length > 0) throw new ConfigError(`invalid configuration:\n  ${stray.join(', ')}: set without OIDC_ISSUER (OIDC is off)`);
    return null;
  }
  const problems: string[] = [];
  const urlProblem = issuerUrlProblem(e.OIDC_ISSUER);
  if (urlProblem) problems.push(`OIDC_ISSUER: ${urlProblem}`);
  if (e.OIDC_AUDIENCE === undefined) problems.push('OIDC_AUDIENCE: required with OIDC_ISSUER (the `aud` tokens for this gatekeeper carry, often its client id)');
  if (e.OIDC_GROUP_ROLES === undefined) problems.push('OIDC_GROUP_ROLES: required with OIDC_ISSUER, e.g. "gk-admins=admin; ml=submitter:alpha,beta"');
  const { roles, problems: mapping } = parseGroupRoles(e.OIDC_GROUP_ROLES ?? 'x=admin');
  problems.push(...mapping.map((m) => `OIDC_GROUP_ROLES: ${m}`));
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  return Object.freeze({ issuer: e.OIDC_ISSUER, audience: e.OIDC_AUDIENCE!, userClaim: e.OIDC_USER_CLAIM, groupsClaim: e.OIDC_GROUPS_CLAIM, groupRoles: roles });
}

/**
 * What Redis Cluster asks of the settings. BullMQ runs each queue's scripts
 * over that queue's keys, so they must share a slot: a hash tag in the prefix
 * gives all of them (and the gatekeeper's keys, see src/redis/keys.ts) one.
 * A cluster has database 0 only, so a URL naming another is a mistake.
 */
function checkCluster(redisUrl: string, queuePrefix: string): void {
  const problems: string[] = [];
  if (hashTag(queuePrefix) === null) {
    problems.push(
      `QUEUE_PREFIX: on Redis Cluster it must carry a hash tag, e.g. {${queuePrefix.replace(/[{}]/g, '') || 'bull'}} ` +
        `(got "${queuePrefix}"): BullMQ keeps a queue's keys in one slot only through it`,
    );
  }
  let url: URL | null = null;
  try {
    url = new URL(redisUrl);
  } catch {
    problems.push('REDIS_URL: must be a redis:// or rediss:// URL of one cluster node'); // (not echoed: it may hold a password)
  }
  if (url && !['redis:', 'rediss:'].includes(url.protocol)) problems.push(`REDIS_URL: must be a redis:// or rediss:// URL of one cluster node, got "${url.protocol}"`);
  if (url && !['', '/', '/0'].includes(url.pathname)) problems.push(`REDIS_URL: Redis Cluster has database 0 only, got "${url.pathname.slice(1)}"`);
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
}
