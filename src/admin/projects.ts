/**
 * The list of projects: every project with a budget (its row in Postgres)
 * and every project with jobs held now (Redis' held count per project, one
 * small hash), in name order, a page at a time, optionally only the names
 * holding a search string. Redis is asked for the views of the page only. The second kind is the one a
 * newcomer looks for: a project with no budget, whose jobs wait (or, with
 * UNKNOWN_PROJECT_POLICY=reject, are turned away) until an admin sets one.
 *
 * Left out: projects known only from the ledger (no budget, nothing held:
 * only exempt or overridden jobs ran). Finding those means reading distinct
 * projects out of the ledger, the largest table, on every page.
 */
import type { Queryable } from '../db/pool.ts';
import { budgetedProjects } from '../db/projects.ts';
import type { Budgets, ScopeView } from '../accounting/budgets.ts';
import { projectScope } from '../accounting/scopes.ts';
import type { HeldJobs } from './held.ts';

export interface ProjectEntry {
  project: string;
  /** Its budget as admission sees it now; `limitGpuMs` null: no budget. */
  view: ScopeView;
  /** Its jobs held now. */
  heldJobs: number;
}

export interface ProjectsPage {
  projects: ProjectEntry[];
  /** The last name on this page when more follow (ask for the names after it), else null. */
  nextCursor: string | null;
}

/** `only`: the projects the caller may see (src/http/access.ts), each listed with or without a budget; omitted: every project. */
export async function projectsPage(deps: { pool: Queryable; budgets: Budgets; held: HeldJobs }, page: { after: string | null; limit: number; q?: string | null; only?: readonly string[] | null }): Promise<ProjectsPage> {
  const { after, limit } = page;
  const q = page.q ?? null;
  const matches = (p: string) => (after === null || p > after) && (q === null || p.toLowerCase().includes(q.toLowerCase()));
  // One more than a page from each source tells whether another page follows.
  const [budgeted, held] = await Promise.all([page.only ? page.only.filter(matches) : budgetedProjects(deps.pool, after, limit + 1, q), deps.held.countsByProject()]);
  const heldAfter = [...held.keys()].filter((p) => matches(p) && (!page.only || page.only.includes(p)));
  // Default sort: by UTF-16 code unit, the same order as the query's COLLATE "C" on ASCII names.
  const names = [...new Set([...budgeted, ...heldAfter])].sort();
  const onPage = names.slice(0, limit);
  if (onPage.length === 0) return { projects: [], nextCursor: null };
  const views = await deps.budgets.views(onPage.map((p) => projectScope(p).id));
  return {
    projects: onPage.map((project, i) => ({ project, view: views[i]!, heldJobs: held.get(project) ?? 0 })),
    nextCursor: names.length > limit ? onPage.at(-1)! : null,
  };
}
