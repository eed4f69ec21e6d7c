/**
 * The submission screen (docs/submit.md), for people in a browser:
 *   GET  /submit           the person's projects and quota, and the batch forms
 *   POST /submit/preview   a batch from the form's fields, or pasted JSON: validated,
 *                          checked like POST /api/v1/preflight, and the answer in words
 *   POST /submit           the batch the preview showed, queued as POST /api/v1/jobs
 *                          queues it, if the decisions are still the ones shown
 *   POST /submit/held/:id/override-request
 *                          the person asks for an override (or a raise) of their
 *                          held job, as POST /api/v1/held/:id/override-requests
 * Same rules as the API: mayAskFor (src/api/jobs.ts) says who may ask and
 * who may queue, the contract validates every job, and the jobs go to the
 * intake queue through the same function. The preview's form carries the
 * batch, a digest of the decisions shown, and a once-token: a form posted
 * again (a reload) queues nothing twice.
 *
 * Forms are urlencoded, so the POSTs are refused from another site
 * (src/http/csrf.ts) and the page may not be framed; it has no script.
 */
import express, { Router, type Response } from 'express';
import { createHash, randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Pool } from '../db/pool.ts';
import type { Budgets } from '../accounting/budgets.ts';
import type { HeldJobs } from '../admin/held.ts';
import type { OverrideRequests } from '../admin/override-requests.ts';
import type { Preflight, PreflightReport } from '../admin/preflight.ts';
import type { Hold } from '../accounting/types.ts';
import type { Keys } from '../redis/keys.ts';
import type { Clock } from '../clock.ts';
import { projectsPage } from '../admin/projects.ts';
import { authenticate, type Authn } from '../http/auth.ts';
import { accessOf, type Access } from '../http/access.ts';
import { noFraming, refuseCrossSite } from '../http/csrf.ts';
import { HttpError } from '../http/errors.ts';
import { printable } from '../text.ts';
import { answer, jobId as JobIdSchema, RequestBody } from './override-requests.ts';
import { parseBody } from './validate.ts';
import { invalidJobs, jobsOf, mayAskFor, queueJobs, visibleReport } from './jobs.ts';
import { renderSubmitPage, type FieldValues, type SubmitPageView } from '../../dashboard/submit-page.ts';
import { answerOf } from '../../dashboard/submit-words.ts';

export interface SubmitDeps {
  authn: Authn;
  trustedOrigins: readonly string[];
  preflight: Preflight;
  /** Without it the screen previews but queues nothing (503). */
  intake: Queue | undefined;
  budgets: Budgets;
  pool: Pool;
  held: HeldJobs;
  /** Without it the page lists no held jobs and asks for no override. */
  requests: OverrideRequests | null;
  redis: Redis;
  keys: Keys;
  clock: Clock;
  timeZone: string;
}

/** How long a used once-token is remembered: a day of reloads and back buttons. */
const ONCE_SECONDS = 86_400;
/** Projects listed when the key names none (every project): the first page, searchable. */
const PROJECTS_SHOWN = 50;
/** The person's held jobs and override requests shown, newest first. */
const HELD_SHOWN = 50;
const REQUESTS_SHOWN = 20;

const field = (what: string) => z.string({ error: `${what} must be one text field` }).max(200, `${what} is longer than 200 characters`);
const FieldsForm = z.strictObject(
  {
    project: field('project'),
    user: field('user').optional(),
    jobType: field('job type').optional(),
    gpuType: field('GPU type').optional(),
    gpus: field('GPUs per job').regex(/^\d{1,5}$/, 'GPUs per job must be a whole number'),
    hours: field('GPU hours each').regex(/^(\d{1,9}(\.\d{0,9})?|\.\d{1,9})$/, 'GPU hours each must be a number such as 1.5'),
    count: field('how many jobs').regex(/^\d{1,4}$/, 'how many jobs must be a whole number from 1 to 1000').refine((c) => Number(c) >= 1 && Number(c) <= 1000, 'how many jobs must be from 1 to 1000'),
    run: field('run').optional(),
  },
  { error: (i) => (i.code === 'unrecognized_keys' ? `unknown form field(s): ${i.keys.slice(0, 5).map((k) => printable(k.slice(0, 40))).join(', ')}` : 'send the batch form') },
);
const JsonForm = z.strictObject({ json: z.string({ error: 'json must be one text field' }) }, { error: 'send the JSON form' });
const QueueForm = z.strictObject(
  {
    batch: z.string({ error: 'batch must be one field' }),
    digest: z.string().regex(/^[0-9a-f]{64}$/, 'digest must be 64 hex digits'),
    once: z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'once must be 22 characters of A-Z a-z 0-9 _ -'),
  },
  { error: 'send the form the preview shows (batch, digest, once)' },
);
const PageQuery = z.strictObject({ q: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'q must be 1-128 characters of A-Z a-z 0-9 . _ -').optional() }, { error: 'the only query is q' });

function parse<T>(schema: z.ZodType<T>, data: unknown): T {
  const r = schema.safeParse(data ?? {});
  if (!r.success) throw new HttpError(400, [...new Set(r.error.issues.map((i) => i.message))].join('; '));
  return r.data;
}

/** The batch the fields describe: `count` copies of one job, as the API takes it. */
function fieldJobs(f: z.infer<typeof FieldsForm>, me: string): unknown[] {
  const optional = (k: 'jobType' | 'gpuType' | 'run') => (f[k] ? { [k]: f[k] } : {});
  const job = { project: f.project, user: f.user || me, ...optional('jobType'), ...optional('gpuType'), gpus: Number(f.gpus), estimatedGpuHours: Number(f.hours), ...optional('run') };
  return Array.from({ length: Number(f.count) }, () => ({ ...job }));
}

/** A pasted batch: `[ … ]`, `{ "jobs": [ … ] }` or one job; a job without `user` is the person's. */
function pastedJobs(text: string, me: string): unknown[] {
  if (text.trim() === '') throw new HttpError(400, 'paste a batch: a JSON array of jobs, or { "jobs": [ … ] }');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `the pasted batch is not valid JSON: ${printable((err as Error).message).slice(0, 200)}`);
  }
  const jobs = jobsOf(Array.isArray(body) ? { jobs: body } : body);
  return jobs.map((j) => (typeof j === 'object' && j !== null && !Array.isArray(j) && !Object.hasOwn(j, 'user') ? { ...j, user: me } : j));
}

/** Each invalid job once per reason: "job 3: …", or "12 jobs (0, 1, 2, 3, 4, …): …". */
function refuseInvalid(d: SubmitDeps, jobs: unknown[]): void {
  const invalid = invalidJobs(d.preflight, jobs);
  if (invalid.length === 0) return;
  const byReason = new Map<string, number[]>();
  for (const j of invalid) byReason.set(j.reason, [...(byReason.get(j.reason) ?? []), j.index]);
  const lines = [...byReason].map(([reason, ix]) => `${ix.length === 1 ? `job ${ix[0]}` : `${ix.length} jobs (${ix.slice(0, 5).join(', ')}${ix.length > 5 ? ', …' : ''})`}: ${reason}`);
  throw new HttpError(400, `${invalid.length} of ${jobs.length} jobs are invalid`, lines);
}

/**
 * What the digest covers: the batch and each job's decision (started, held
 * for which scopes or behind which line, throttled, rejected), not the
 * numbers in the reasons nor a throttled job's due time, which move on their own.
 */
export function decisionsDigest(jobs: unknown[], report: PreflightReport, holds: readonly (Hold | undefined)[]): string {
  const decisions = report.outcomes.map((o) => {
    if (o.outcome !== 'held') return o.outcome;
    const h = holds[o.index];
    return ['held', ...(h?.shortfalls ?? []).map((s) => `${s.code}:${s.scope}`), ...(h && h.ahead > 0 ? [`line:${h.line ?? ''}`] : [])].join(' ');
  });
  return createHash('sha256').update(JSON.stringify({ jobs, decisions })).digest('hex');
}

export function submitRoutes(d: SubmitDeps): Router {
  const r = Router();
  // A pasted batch up to the API's size, URL-encoded (quotes take three bytes each).
  const form = express.urlencoded({ extended: false, limit: '4mb', parameterLimit: 20 });
  r.use('/submit', noFraming, refuseCrossSite(d.trustedOrigins), authenticate(d.authn, { browser: true }), (_req, res, next) => {
    // No script, no frames, forms only to here.
    res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    next();
  });

  /** The page for this person with `parts`, at `status`. */
  async function send(res: Response, status: number, parts: Partial<SubmitPageView> & { q?: string | null }): Promise<void> {
    const a = accessOf(res);
    const q = parts.q ?? null;
    // The person's own jobs, whatever their role: a manager decides others' on the dashboard.
    const own = { projects: [], user: a.who.name };
    const [page, quota, held, mine] = await Promise.all([
      projectsPage(d, { after: null, limit: a.who.projects ? a.who.projects.length : PROJECTS_SHOWN, q, only: a.who.projects }),
      d.budgets.quota(a.who.name),
      d.requests ? d.held.list({ within: own, limit: HELD_SHOWN, offset: 0 }) : null,
      d.requests ? d.requests.list({ within: own, limit: REQUESTS_SHOWN, offset: 0 }) : null,
    ]);
    const typeBudgets = page.projects.length > 0 ? await d.budgets.typeBudgets(page.projects.map((p) => p.project)) : [];
    const fields: FieldValues = parts.fields ?? { project: page.projects[0]?.project ?? '', user: a.who.name, jobType: '', gpuType: '', gpus: '1', hours: '1', count: '1', run: '' };
    const view: SubmitPageView = {
      now: d.clock.now(),
      timeZone: d.timeZone,
      who: { name: a.who.name, role: a.who.role, described: a.describe() },
      userChoice: a.who.role === 'admin' || a.who.role === 'manager' || a.who.via === 'token',
      projects: { entries: page.projects, typeBudgets, named: a.who.projects !== null, more: page.nextCursor !== null, q },
      quota,
      fields,
      json: parts.json ?? '',
      errors: parts.errors ?? [],
      preview: parts.preview ?? null,
      queued: parts.queued ?? null,
      held: held && mine ? { total: held.total, jobs: held.jobs, requests: mine.requests, requestTotal: mine.total } : null,
      asked: parts.asked ?? null,
    };
    res.status(status).set('content-type', 'text/html; charset=utf-8').set('cache-control', 'no-store').send(renderSubmitPage(view));
  }

  /** A refusal (HttpError) as the page with its reasons; anything else goes on to the error handler. */
  const refusing = (handler: (req: express.Request, res: Response, echo: Partial<SubmitPageView>) => Promise<void>) =>
    async (req: express.Request, res: Response) => {
      const echo = echoOf(req.body, accessOf(res));
      try {
        await handler(req, res, echo);
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        const lines = Array.isArray(err.details) ? (err.details as string[]) : [];
        await send(res, err.status, { ...echo, errors: [err.message, ...lines] });
      }
    };

  async function preview(a: Access, jobs: unknown[], changed: boolean) {
    const { report, holds } = await d.preflight.decide(jobs, d.clock.now());
    let mayNotQueue: string | null = null;
    try {
      mayAskFor(a, jobs, 'submit');
    } catch (err) {
      mayNotQueue = (err as Error).message;
    }
    if (!d.intake) mayNotQueue = 'this process queues nothing (no intake queue)';
    return {
      answer: answerOf(visibleReport(report, a), holds),
      outcomes: report.outcomes.map((o) => ({ index: o.index, outcome: o.outcome, reason: 'reason' in o ? o.reason : '' })),
      batchJson: JSON.stringify(jobs),
      digest: decisionsDigest(jobs, report, holds),
      once: randomBytes(16).toString('base64url'),
      changed,
      mayNotQueue,
    };
  }

  r.get('/submit', refusing(async (req, res) => {
    const { q } = parse(PageQuery, req.query);
    await send(res, 200, { q: q ?? null });
  }));

  r.post('/submit/preview', form, refusing(async (req, res, echo) => {
    const a = accessOf(res);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const jobs = 'json' in body ? pastedJobs(parse(JsonForm, body).json, a.who.name) : fieldJobs(parse(FieldsForm, body), a.who.name);
    mayAskFor(a, jobs, 'preflight');
    refuseInvalid(d, jobs);
    await send(res, 200, { ...echo, preview: await preview(a, jobs, false) });
  }));

  r.post('/submit', form, refusing(async (req, res) => {
    const a = accessOf(res);
    const f = parse(QueueForm, req.body);
    let parsed: unknown;
    try {
      parsed = JSON.parse(f.batch);
    } catch {
      throw new HttpError(400, 'batch is not valid JSON: send the form the preview shows');
    }
    const jobs = jobsOf({ jobs: parsed });
    mayAskFor(a, jobs, 'submit');
    refuseInvalid(d, jobs);
    if (!d.intake) throw new HttpError(503, 'this process queues nothing (no intake queue)');
    const onceKey = d.keys.submitted(f.once);
    const before = await d.redis.get(onceKey);
    if (before !== null) throw new HttpError(409, before === 'pending' ? 'this form is being queued already' : `this form was queued already: jobs ${(JSON.parse(before) as string[]).slice(0, 20).join(', ')}${(JSON.parse(before) as string[]).length > 20 ? ', …' : ''}`);
    const now = await preview(a, jobs, true);
    if (now.digest !== f.digest) return send(res, 409, { preview: now });
    if ((await d.redis.set(onceKey, 'pending', 'EX', ONCE_SECONDS, 'NX')) === null) throw new HttpError(409, 'this form is being queued already');
    let jobIds: string[];
    try {
      jobIds = await queueJobs(d.intake, jobs);
    } catch (err) {
      await d.redis.del(onceKey);
      throw err;
    }
    await d.redis.set(onceKey, JSON.stringify(jobIds), 'EX', ONCE_SECONDS);
    await send(res, 200, { queued: { jobIds, answer: now.answer } });
  }));
  r.post('/submit/held/:id/override-request', form, async (req, res) => {
    const a = accessOf(res);
    const shown = printable(String(req.params.id).slice(0, 256));
    try {
      if (!d.requests) throw new HttpError(503, 'this process takes no override requests (no accounting)');
      const id = parseBody(JobIdSchema, req.params.id);
      const b = parseBody(RequestBody, req.body ?? {});
      const made = await answer(d.requests.request(id, a.who, b.reason, b.kind));
      const what = made.kind === 'raise' ? 'a budget raise for' : 'an override of';
      await send(res, 200, { asked: { ok: true, jobId: id, requestId: made.id, text: `Asked for ${what} job ${id}: request #${made.id}, ${made.state}` } });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      await send(res, err.status, { asked: { ok: false, jobId: shown, requestId: null, text: `Not asked: ${err.message}` } });
    }
  });
  return r;
}

/** The forms as they came, to show again with a refusal or an answer. */
function echoOf(body: unknown, a: Access): Partial<SubmitPageView> {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const s = (k: string) => (typeof b[k] === 'string' ? (b[k] as string) : '');
  if ('json' in b) return { json: s('json') };
  if (!('project' in b)) return {};
  return { fields: { project: s('project'), user: s('user') || a.who.name, jobType: s('jobType'), gpuType: s('gpuType'), gpus: s('gpus'), hours: s('hours'), count: s('count'), run: s('run') } };
}
