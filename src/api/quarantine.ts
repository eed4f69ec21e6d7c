/**
 * The quarantine over HTTP (src/admin/quarantine.ts):
 *   GET  /quarantine?stream=ledger|events|audit&waiting=true|false&limit=&offset=   oldest first
 *   GET  /quarantine/:id                 one entry, with its raw fields and error
 *   POST /quarantine/:id/replay { repair?, reason? }   admin, audited
 */
import { Router } from 'express';
import { z } from 'zod';
import { ReplayRefused, type QuarantineAdmin } from '../admin/quarantine.ts';
import type { QuarantinedEntry } from '../db/quarantine.ts';
import { actorOf } from '../http/auth.ts';
import { HttpError } from '../http/errors.ts';
import { body, freeText, pageOffset, parseBody, query } from './validate.ts';

const ListQuery = query({
  stream: z.enum(['ledger', 'events', 'audit'], { error: 'stream must be ledger, events or audit' }).optional(),
  waiting: z.enum(['true', 'false'], { error: 'waiting must be true or false' }).optional(),
  limit: z.coerce.number({ error: 'limit must be a number' }).int('limit must be a whole number').min(1, 'limit must be at least 1').max(1000, 'limit must be at most 1000').default(100),
  offset: pageOffset,
});
const ReplayBody = body({
  repair: z.boolean({ error: 'repair must be true or false' }).optional(),
  reason: freeText('reason').optional(),
}).optional();

function idParam(raw: string): number {
  const id = Number(raw);
  if (!/^\d{1,15}$/.test(raw) || id < 1) throw new HttpError(400, 'a quarantine id is a positive whole number');
  return id;
}

export function entryJson(q: QuarantinedEntry) {
  return {
    id: q.id,
    stream: q.stream,
    streamId: q.streamId,
    fields: q.fields,
    error: q.error,
    sqlstate: q.sqlstate,
    quarantinedAt: q.quarantinedAt.toISOString(),
    replayedAt: q.replayedAt?.toISOString() ?? null,
    replayedBy: q.replayedBy,
  };
}

export function quarantineRoutes(admin: QuarantineAdmin): Router {
  const r = Router();
  r.get('/quarantine', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    const out = await admin.list({ stream: q.stream, waiting: q.waiting === undefined ? undefined : q.waiting === 'true', limit: q.limit, offset: q.offset });
    res.json({ total: out.total, entries: out.entries.map(entryJson) });
  });
  r.get('/quarantine/:id', async (req, res) => {
    const entry = await admin.get(idParam(req.params.id));
    if (!entry) throw new HttpError(404, `no quarantined entry ${req.params.id}`);
    res.json(entryJson(entry));
  });
  r.post('/quarantine/:id/replay', async (req, res) => {
    const id = idParam(req.params.id);
    const b = parseBody(ReplayBody, req.body);
    try {
      res.json(entryJson(await admin.replay(id, actorOf(res), { repair: b?.repair ?? false, reason: b?.reason ?? null })));
    } catch (err) {
      if (err instanceof ReplayRefused) throw new HttpError(err.status, err.message);
      throw err;
    }
  });
  return r;
}
