/**
 * Bull Board at /admin/queues, inside the API's express app, behind the admin
 * token (Basic auth in a browser: any user name, the token as password).
 *
 * Read-only for now: Bull Board's own buttons (Retry, Promote, Clean, Remove)
 * would move jobs around the gatekeeper's back; the held-job workflow that
 * gives them a safe meaning comes with the admin release/override actions.
 */
import type { Express } from 'express';
import type { Queue } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { requireAdmin } from '../src/api/auth.ts';

export const BOARD_PATH = '/admin/queues';

export interface BoardQueues {
  intake: Queue;
  exec: Queue;
  held: Queue;
}

export function mountBullBoard(app: Express, queues: BoardQueues, adminToken: string): void {
  const server = new ExpressAdapter();
  server.setBasePath(BOARD_PATH);
  const board = (q: Queue, description: string) => new BullMQAdapter(q, { readOnlyMode: true, description });
  createBullBoard({
    queues: [
      board(queues.intake, 'Submitted jobs. Completed: admitted or held (see return value). Failed: rejected, with the reason.'),
      board(queues.exec, 'Admitted jobs: GPU hours reserved; run by the GPU workers.'),
      board(queues.held, 'Jobs that did not fit a budget, each with its reason in data.held.reason and its log.'),
    ],
    serverAdapter: server,
    options: { uiConfig: { boardTitle: 'gpu-gatekeeper' } },
  });
  app.use(BOARD_PATH, requireAdmin(adminToken, { browser: true }), server.getRouter());
}
