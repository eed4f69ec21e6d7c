/**
 * Alerts (the stored events) and webhooks:
 *   GET  /alerts?type=A,B&unacked=true&limit=&offset=   newest first
 *   POST /alerts/:id/ack { note? }                       audited
 *   GET  /webhooks, POST /webhooks { url, types? }, DELETE /webhooks/:id   (admin only)
 * A webhook's secret is in the answer to its creation only.
 */
import { Router } from 'express';
import { z } from 'zod';
import type { Pool } from '../db/pool.ts';
import { writeAudit } from '../db/audit.ts';
import { ackEvent, eventAck, listAlerts } from '../db/events.ts';
import { inTransaction } from '../db/transaction.ts';
import { EVENT_TYPES } from '../events/types.ts';
import { checkWebhookUrl, deleteWebhook, insertWebhook, listWebhooks } from '../events/webhooks.ts';
import { TargetRefused } from '../net/egress.ts';
import type { Config } from '../config.ts';
import { actorOf, requireAdmin } from '../http/auth.ts';
import { HttpError } from '../http/errors.ts';
import { body, freeText, pageOffset, parseBody, query } from './validate.ts';
import { safeText } from '../text.ts';

const typeList = z
  .string()
  .transform((s) => s.split(',').map((t) => t.trim()).filter(Boolean))
  .refine((ts) => ts.every((t) => (EVENT_TYPES as readonly string[]).includes(t)), `type must be one or more of ${EVENT_TYPES.join(', ')}`);

const AlertsQuery = query({
  type: typeList.optional(),
  unacked: z.enum(['true', 'false'], { error: 'unacked must be true or false' }).optional(),
  limit: z.coerce.number({ error: 'limit must be a number' }).int('limit must be a whole number').min(1, 'limit must be at least 1').max(1000, 'limit must be at most 1000').default(100),
  offset: pageOffset,
});
const AckBody = body({ note: freeText('note').optional() }).optional();
const WebhookBody = body({
  url: z.string({ error: (i) => (i.input === undefined ? 'url is required' : 'url must be a string') }).max(2000, 'url is at most 2000 characters').superRefine(safeText('url')),
  types: z.array(z.enum(EVENT_TYPES, { error: `types must be event types: ${EVENT_TYPES.join(', ')}` }), { error: 'types must be an array' }).optional(),
});

/** `config`: which private webhook targets are allowed (src/net/egress.ts). */
export function eventRoutes(pool: Pool, config: Pick<Config, 'webhookAllowedTargets'>): Router {
  const r = Router();
  r.get('/alerts', async (req, res) => {
    const q = parseBody(AlertsQuery, req.query);
    const unacked = q.unacked === undefined ? null : q.unacked === 'true';
    const { total, alerts } = await listAlerts(pool, { types: q.type ?? null, unacked, limit: q.limit, offset: q.offset });
    res.json({
      total,
      alerts: alerts.map((e) => ({
        id: e.id, type: e.type, version: e.version, at: e.at.toISOString(), data: e.data,
        ackedAt: e.ackedAt?.toISOString() ?? null, ackedBy: e.ackedBy,
      })),
    });
  });
  r.post('/alerts/:id/ack', async (req, res) => {
    const id = Number(req.params.id);
    if (!Number.isSafeInteger(id) || id < 1) throw new HttpError(400, 'alert id must be a positive whole number');
    const b = parseBody(AckBody, req.body);
    const actor = actorOf(res);
    // The acknowledgement and its audit row: one transaction.
    const ackedAt = await inTransaction(pool, async (db) => {
      const at = await ackEvent(db, id, actor.name);
      if (at === null) {
        const was = await eventAck(db, id);
        if (was === null) throw new HttpError(404, `no alert ${id}`);
        throw new HttpError(409, `alert ${id} was acknowledged by ${was.ackedBy}`);
      }
      await writeAudit(db, actor, { action: 'alert.ack', target: `alert:${id}`, before: { acked: false }, after: { acked: true }, reason: b?.note ?? null });
      return at;
    });
    res.json({ id, ackedAt: ackedAt.toISOString(), ackedBy: actor.name });
  });

  // Webhook URLs may carry tokens of their own: admins only, reading included.
  r.get('/webhooks', requireAdmin, async (_req, res) => {
    res.json({ webhooks: await listWebhooks(pool) });
  });
  r.post('/webhooks', async (req, res) => {
    const b = parseBody(WebhookBody, req.body);
    // Checked (the host resolved) before the transaction: a slow resolver holds no connection.
    try {
      await checkWebhookUrl(b.url, config);
    } catch (err) {
      // The refusal as data too: what was refused (host, address, kind) and whether any setting could allow it.
      if (err instanceof TargetRefused) {
        const { host, address, kind, always } = err.refusal;
        throw new HttpError(400, err.message, { refused: { host, ...(address ? { address } : {}), kind, always } });
      }
      if (err instanceof RangeError) throw new HttpError(400, err.message);
      throw err;
    }
    const created = await inTransaction(pool, async (db) => {
      const w = await insertWebhook(db, { url: b.url, types: b.types ?? [] });
      await writeAudit(db, actorOf(res), { action: 'webhook.create', target: `webhook:${w.id}`, before: null, after: { types: w.types } });
      return w;
    });
    res.status(201).json(created);
  });
  r.delete('/webhooks/:id', async (req, res) => {
    // Ids are ours (wh_ + base64url); anything else cannot name one, and may hold text Postgres refuses.
    if (!/^wh_[A-Za-z0-9_-]{1,64}$/.test(req.params.id)) throw new HttpError(404, 'no such webhook (ids look like wh_…)');
    await inTransaction(pool, async (db) => {
      if (!(await deleteWebhook(db, req.params.id))) throw new HttpError(404, `no webhook ${req.params.id}`);
      await writeAudit(db, actorOf(res), { action: 'webhook.delete', target: `webhook:${req.params.id}`, before: null, after: null });
    });
    res.json({ id: req.params.id, deleted: true });
  });
  return r;
}
