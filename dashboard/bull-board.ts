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
 */
import type { Express, RequestHandler } from 'express';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { actorOf, authenticate, type Tokens } from '../src/api/auth.ts';

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
  held: 'Jobs that did not fit a budget or quota, first in first out per scope (listed under Prioritized); the reason is in data.held.reason. Release them with the API, CLI or dashboard.',
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

export function mountBullBoard(app: Express, queues: BoardQueues, tokens: Tokens): void {
  const forAdmin = board(queues, new Set(['intake']));
  const forViewer = board(queues, new Set());
  app.use(BOARD_PATH, authenticate(tokens, { browser: true }), (req, res, next) =>
    (actorOf(res).role === 'admin' ? forAdmin : forViewer)(req, res, next),
  );
}
