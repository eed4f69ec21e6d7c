/** GET /api/v1/audit: recent admin actions, newest first. */
import { Router } from 'express';
import { z } from 'zod';
import { recentAudit } from '../db/audit.ts';
import type { Pool } from '../db/pool.ts';
import { parseBody, query } from './validate.ts';
import { safeText } from '../text.ts';

const Query = query({
    target: z.string().max(300, 'target is at most 300 characters').superRefine(safeText('target')).optional(),
    limit: z.coerce.number({ error: 'limit must be a number' }).int('limit must be a whole number').min(1, 'limit must be at least 1').max(1000, 'limit must be at most 1000').default(100),
});

export function auditRoutes(pool: Pool): Router {
  const r = Router();
  r.get('/audit', async (req, res) => {
    const q = parseBody(Query, req.query);
    res.json({ entries: await recentAudit(pool, { target: q.target, limit: q.limit }) });
  });
  return r;
}
