/**
 * GET /projects?limit=&cursor=&q=   every project with its budget view and how
 * many of its jobs are held now, by name (src/admin/projects.ts says which
 * projects). Paged by cursor: `nextCursor` is the last name on the page when
 * more follow; pass it as `cursor` for the next page. A cursor, not an
 * offset: a project added while someone pages through does not shift the
 * pages after it. `q` keeps the names holding it (case-insensitive).
 */
import { Router } from 'express';
import type { Pool } from '../db/pool.ts';
import type { Budgets } from '../accounting/budgets.ts';
import type { HeldJobs } from '../admin/held.ts';
import { projectsPage } from '../admin/projects.ts';
import { budgetJson } from './budgets.ts';
import { cursorPageQuery, parseBody } from './validate.ts';
import { accessOf } from '../http/access.ts';

const ListQuery = cursorPageQuery('project');

export function projectRoutes(deps: { pool: Pool; budgets: Budgets; held: HeldJobs }): Router {
  const r = Router();
  r.get('/projects', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    const page = await projectsPage(deps, { after: q.cursor ?? null, limit: q.limit, q: q.q ?? null, only: accessOf(res).visibleProjects() });
    res.json({
      projects: page.projects.map((p) => ({ ...budgetJson(p.project, p.view), heldJobs: p.heldJobs })),
      nextCursor: page.nextCursor,
    });
  });
  return r;
}
