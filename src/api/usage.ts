/**
 * Usage over HTTP:
 *   GET /usage?from=YYYY-MM-DD&to=YYYY-MM-DD&groupBy=project,user&project=&user=&limit=&offset=
 *     rows in the grouping's order, at most `limit` (10,000 when not given);
 *     `nextOffset` is where the next page starts when more follow, else null
 *   GET /usage/export?month=YYYY-MM&format=csv|json   one row per job that ended that month, streamed
 * Days and months are local to GATEKEEPER_TIMEZONE.
 */
import { once } from 'node:events';
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { Pool } from '../db/pool.ts';
import { NAME_RE } from '../../queues/contract.ts';
import { gpuMsToHours } from '../units.ts';
import { csvLine, EXPORT_COLUMNS, exportJobs, GROUPS, monthRange, usageReport, type Group } from '../usage/reports.ts';
import { HttpError } from '../http/errors.ts';
import { jsonSafe } from '../text.ts';
import { parseBody, query } from './validate.ts';
import { accessOf } from '../http/access.ts';

const date = (what: string) =>
  z.string({ error: `${what} is required (YYYY-MM-DD)` }).regex(/^\d{4}-\d{2}-\d{2}$/, `${what} must be a date YYYY-MM-DD`).refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) && new Date(`${d}T00:00:00Z`).toISOString().startsWith(d), `${what} is not a real date`);
const name = (what: string) => z.string().regex(NAME_RE, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`).optional();

/** Rows per report page: a year by project and user at 10,000 users is some 20,000 rows (docs/benchmarks.md). */
const MAX_ROWS = 10_000;

const UsageQuery = query({
  from: date('from'),
  to: date('to'),
  groupBy: z
    .string()
    .default('project')
    .transform((s) => [...new Set(s.split(',').map((g) => g.trim()).filter(Boolean))])
    .refine((gs) => gs.every((g) => (GROUPS as readonly string[]).includes(g)), `groupBy must be a comma-separated list of ${GROUPS.join(', ')}`),
  project: name('project'),
  user: name('user'),
  limit: z.coerce.number({ error: 'limit must be a number' }).int('limit must be a whole number').min(1, 'limit must be at least 1').max(MAX_ROWS, `limit must be at most ${MAX_ROWS}`).default(MAX_ROWS),
  offset: z.coerce.number({ error: 'offset must be a number' }).int('offset must be a whole number').min(0, 'offset may not be negative').max(10_000_000, 'offset must be at most 10000000').default(0),
}).refine((q) => q.from <= q.to, 'from must not be after to').refine((q) => (Date.parse(q.to) - Date.parse(q.from)) / 86_400_000 <= 366, 'at most 366 days per report');

const ExportQuery = query({
  month: z.string({ error: 'month is required (YYYY-MM)' }),
  format: z.enum(['csv', 'json'], { error: 'format must be csv or json' }).default('csv'),
});

export function usageRoutes(pool: Pool, timeZone: string): Router {
  const r = Router();
  r.get('/usage', async (req, res) => {
    const q = parseBody(UsageQuery, req.query);
    const user = ownUsage(res, q.project, q.user);
    const all = await usageReport(pool, { from: q.from, to: q.to, groupBy: q.groupBy as Group[], project: q.project, user, limit: q.limit + 1, offset: q.offset });
    const rows = all.slice(0, q.limit);
    res.json({
      from: q.from, to: q.to, timeZone, groupBy: q.groupBy,
      nextOffset: all.length > q.limit ? q.offset + q.limit : null,
      rows: rows.map(({ actualGpuMs, estimatedGpuMs, exemptGpuMs, chargedGpuMs, unitsMilli, usdMicro, ...keys }) => ({
        ...keys, actualGpuHours: gpuMsToHours(actualGpuMs), estimatedGpuHours: gpuMsToHours(estimatedGpuMs), exemptGpuHours: gpuMsToHours(exemptGpuMs),
        chargedGpuHours: gpuMsToHours(chargedGpuMs), units: unitsMilli / 1000, usd: usdMicro / 1_000_000,
      })),
    });
  });
  r.get('/usage/export', async (req, res) => {
    const q = parseBody(ExportQuery, req.query);
    const range = monthRange(q.month, timeZone);
    if (!range) throw new HttpError(400, `month must be YYYY-MM, got "${q.month}"`);
    res.status(200);
    res.set('content-disposition', `attachment; filename="gpu-usage-${q.month}.${q.format}"`);
    res.set('content-type', q.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8');
    let first = true;
    await write(res, q.format === 'csv' ? csvLine([...EXPORT_COLUMNS]) + '\n' : '[');
    await exportJobs(pool, range, timeZone, async (rows) => {
      const text = rows
        .map((row) => {
          const line = q.format === 'csv' ? csvLine(EXPORT_COLUMNS.map((c) => row[c])) + '\n' : `${first ? '\n' : ',\n'}${jsonSafe(JSON.stringify(row))}`;
          first = false;
          return line;
        })
        .join('');
      await write(res, text);
    });
    res.end(q.format === 'csv' ? '' : first ? ']\n' : '\n]\n');
  });
  return r;
}

/**
 * The user a report is limited to. Those who read everything see any usage;
 * others see their own (the default when they name nobody), or one of their
 * projects' when they manage or view it.
 */
function ownUsage(res: Response, project: string | undefined, user: string | undefined): string | undefined {
  const a = accessOf(res);
  const mine = a.jobFilter();
  if (mine === null || user === mine.user) return user;
  if (project !== undefined && mine.projects.includes(project)) return user;
  if (project === undefined && user === undefined) return mine.user;
  const may = mine.projects.length > 0 ? `your own usage (user=${mine.user}) or that of project ${mine.projects.join(', ')}` : `your own usage (user=${mine.user})`;
  throw new HttpError(403, `${a.describe()} may read ${may}`);
}

/** Write and wait while the client is slower than the database (so memory stays flat). */
async function write(res: Response, chunk: string): Promise<void> {
  if (!res.write(chunk)) await once(res, 'drain');
}
