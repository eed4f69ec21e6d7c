/**
 * Bull Board at /admin/queues, inside the API's express app, behind the same
 * tokens (in a browser: Basic auth, any user name, the token as password).
 *
 * Two boards on one path, chosen by the caller's role:
 *  - viewers get every queue read-only;
 *  - admins may act on gpu-intake only, where Bull Board's buttons mean "try
 *    admission again" (Retry on a rejected job re-validates it; Promote on a
 *    delayed one retries now). gpu-held, gpu-rejected and gpu-exec stay
 *    read-only even for admins: a Bull Board Retry on a finished GPU job would
 *    run it again with no reservation, and releasing held jobs must go through
 *    the API, CLI or dashboard so it keeps first-in-first-out order and is
 *    audited.
 *
 * Every write goes through the same checks as the API: no other site can send
 * it with an admin's browser (src/http/csrf.ts), and it is audited before it is
 * carried out. On gpu-intake only what re-runs admission is allowed — retry,
 * promote, add, and cleaning finished jobs. Obliterate, empty, pause, resume,
 * removing a job, editing its data, delay or priority, concurrency, rate
 * limits and job schedulers are refused: obliterating restarts BullMQ's job
 * id counter (a new job would reuse an old job's id), emptying drops
 * submitters' jobs unaudited, and editing a waiting job's data changes what
 * it asks for after the fact.
 */
import type { Express, Request, RequestHandler } from 'express';
import type { Pool } from '../src/db/pool.ts';
import { writeAudit } from '../src/db/audit.ts';
import { noFraming, refuseCrossSite } from '../src/http/csrf.ts';
import { sendError } from '../src/http/errors.ts';
import { printable } from '../src/text.ts';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { actorOf, authenticate, type Authn } from '../src/http/auth.ts';
import { accessOf } from '../src/http/access.ts';

export const BOARD_PATH = '/admin/queues';

export interface BoardQueues {
  intake: Queue;
  exec: Queue;
  held: Queue;
  rejected: Queue;
}

const DESCRIPTIONS: Record<keyof BoardQueues, string> = {
  intake: 'Submitted jobs. Completed: admitted or held (see the return value). Failed: rejected, with the reason.',
  exec: 'Admitted jobs: their GPU hours are reserved; GPU workers run them. Settled by the reconciler when they end.',
  held: 'Jobs that did not fit a budget or quota, first in first out per scope (listed under Prioritized); the reason is in data.held.reason, as data in data.held.hold. Release them with the API, CLI or dashboard.',
  rejected: 'Invalid jobs and jobs an admin cancelled, with the reason in data.rejected.reason and the log.',
};

function board(queues: BoardQueues, writable: Set<keyof BoardQueues>): RequestHandler {
  const server = new ExpressAdapter();
  server.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: (Object.keys(DESCRIPTIONS) as (keyof BoardQueues)[]).map(
      (k) => new BullMQAdapter(queues[k], { readOnlyMode: !writable.has(k), description: DESCRIPTIONS[k] }),
    ),
    serverAdapter: server,
    options: { uiConfig: { boardTitle: 'gpu-gatekeeper' } },
  });
  return server.getRouter() as RequestHandler;
}

/** What an admin may do to gpu-intake through the board: what re-runs admission (paths below BOARD_PATH; $2 a job id for the `-job` ones). */
const INTAKE_WRITES: [string, RegExp, string][] = [
  ['PUT', /^\/api\/queues\/([^/]+)\/retry\/(failed|completed)$/, 'retry'],
  ['PUT', /^\/api\/queues\/([^/]+)\/([^/]+)\/retry$/, 'retry-job'],
  ['PUT', /^\/api\/queues\/([^/]+)\/promote$/, 'promote'],
  ['PUT', /^\/api\/queues\/([^/]+)\/([^/]+)\/promote$/, 'promote-job'],
  ['POST', /^\/api\/queues\/([^/]+)\/add$/, 'add'],
  ['PUT', /^\/api\/queues\/([^/]+)\/clean\/(completed|failed)$/, 'clean'],
];

/** The board action a write is, if it is one an admin may do to `intake`; null otherwise. */
function allowedWrite(req: Request, intake: string): { action: string; target: string } | null {
  for (const [method, re, action] of INTAKE_WRITES) {
    const m = re.exec(req.path);
    if (req.method !== method || !m || decoded(m[1]!) !== intake) continue;
    return { action, target: `queue:${intake}${action.endsWith('-job') ? `/${printable(decoded(m[2]!) ?? m[2]!)}` : ''}` };
  }
  return null;
}

const decoded = (s: string): string | null => {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
};

export function mountBullBoard(app: Express, queues: BoardQueues, authn: Authn, opts: { pool: Pool; trustedOrigins?: readonly string[] }): void {
  const forAdmin = board(queues, new Set(['intake']));
  const forViewer = board(queues, new Set());
  const guard: RequestHandler = async (req, res, next) => {
    // The board shows every job of every project and person.
    if (!accessOf(res).readsAll) return sendError(res, 403, `Bull Board needs an admin, or a viewer or manager of every project; ${accessOf(res).describe()} may not`);
    if (req.method === 'GET' || req.method === 'HEAD') return next();
    const actor = actorOf(res);
    const write = actor.role === 'admin' ? allowedWrite(req, queues.intake.name) : null;
    if (!write) {
      return sendError(res, 403, actor.role === 'admin'
        ? `Bull Board may only retry, promote, add and clean finished jobs on ${queues.intake.name} (${req.method} ${req.path.slice(0, 200)} is refused; see the docs)`
        : `this needs an admin; ${accessOf(res).describe()} may only read`);
    }
    try {
      // Audited before it is carried out: no board write happens without its row.
      await writeAudit(opts.pool, actor, { action: `board.${write.action}`, target: write.target, before: null, after: { method: req.method, path: req.path } });
    } catch (err) {
      return next(err);
    }
    next();
  };
  app.use(BOARD_PATH, noFraming, refuseCrossSite(opts.trustedOrigins), authenticate(authn, { browser: true }), guard, (req, res, next) =>
    (actorOf(res).role === 'admin' ? forAdmin : forViewer)(req, res, next),
  );
}
