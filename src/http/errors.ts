/** JSON errors for the HTTP API: `{ error: { status, message, details? } }`. */
import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from '../log.ts';
import { ChangeFailed } from '../audit/change.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export function sendError(res: Response, status: number, message: string, details?: unknown): void {
  res.status(status).json({ error: { status, message, ...(details === undefined ? {} : { details }) } });
}

/** Last middleware: body-parser failures become 400/413 JSON; anything else 500 without internals. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (err instanceof HttpError) return sendError(res, err.status, err.message, err.details);
    if (err instanceof ChangeFailed) {
      // A refusal found inside the change keeps its own answer; a store that failed is the service's.
      if (err.cause instanceof HttpError) return sendError(res, err.cause.status, err.cause.message, err.cause.details);
      // A domain refusal (e.g. LimitRefused) carries its own 4xx status.
      const refusal = err.cause as { status?: unknown; message?: string } | undefined;
      if (typeof refusal?.status === 'number' && refusal.status >= 400 && refusal.status < 500) return sendError(res, refusal.status, refusal.message ?? 'refused');
      log.error({ err, method: req.method, path: req.path }, 'admin change not made');
      return sendError(res, 503, 'the change was not made and nothing was changed (a store failed); try again');
    }
    const e = err as { type?: string; status?: number; message?: string };
    if (e.type === 'entity.parse.failed') return sendError(res, 400, 'request body is not valid JSON');
    if (e.type === 'entity.too.large') return sendError(res, 413, 'request body is too large');
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, e.status, e.message ?? 'bad request');
    }
    log.error({ err, method: req.method, path: req.path }, 'request failed');
    // A streamed answer (an export) that fails half way: cut it, so the client sees it is incomplete.
    if (res.headersSent) return void res.destroy();
    sendError(res, 500, 'internal error');
  };
}
