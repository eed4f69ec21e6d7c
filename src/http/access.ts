/**
 * Who may see and do what (docs/security.md, "Roles"). One place decides;
 * routes ask it. A person is known by a key of their own, an OIDC token, or
 * (bootstrap and scripts) one of the two environment tokens, whose caller
 * only declares a name.
 *
 *   admin      everything.
 *   manager    reads like a viewer; changes the limits of their projects and
 *              releases, overrides and cancels their held jobs; submits for
 *              anyone into their projects. A manager of every project (no
 *              projects named) also sets user quotas, rates and caps.
 *   submitter  preflights and submits jobs as themselves into their projects;
 *              reads their own quota and held jobs, and their projects' budgets.
 *   viewer     reads everything, or their projects when the key names some.
 *
 * VISIBILITY=all lets everyone read every project's budget and every quota;
 * `own` (the default) keeps each to their projects and themselves. Held jobs
 * and usage of others stay with managers, viewers and admins either way.
 */
import type { Response } from 'express';
import type { Actor } from '../db/audit.ts';
import { HttpError } from './errors.ts';

export const PERSON_ROLES = ['admin', 'manager', 'submitter', 'viewer'] as const;
export type PersonRole = (typeof PERSON_ROLES)[number];
export type Visibility = 'own' | 'all';

export interface Principal extends Actor {
  /** The projects this person acts in; null: every project. */
  projects: readonly string[] | null;
}

/** Why presented credentials (a key, an OIDC token) authenticate nobody: the 401's message. */
export class CredentialRefused extends Error {}

/** The credential could not be checked now (the identity provider is unreachable): a 503, not a 401. */
export class CredentialUnavailable extends Error {}

/** Checks a credential of one kind (src/people/api-keys.ts, src/http/oidc.ts). */
export interface CredentialVerifier {
  /** Whether `token` is of this kind (else the next kind is tried). */
  accepts(token: string): boolean;
  /** The person it names, or CredentialRefused (or CredentialUnavailable: try again later). */
  verify(token: string): Promise<Principal>;
}

export class Access {
  constructor(
    readonly who: Principal,
    readonly visibility: Visibility,
  ) {}

  get isAdmin(): boolean {
    return this.who.role === 'admin';
  }

  /** Reads everything: admins, and managers and viewers of every project. */
  get readsAll(): boolean {
    return this.isAdmin || (this.who.projects === null && (this.who.role === 'manager' || this.who.role === 'viewer'));
  }

  private inProjects(project: string): boolean {
    return this.who.projects === null || this.who.projects.includes(project);
  }

  /** A project's budget, run caps and GPU caps. */
  canSeeProject(project: string): boolean {
    return this.readsAll || this.visibility === 'all' || this.inProjects(project);
  }

  /** Other people's quotas, rate limits and GPU caps. */
  get seesOthers(): boolean {
    return this.readsAll || this.visibility === 'all';
  }

  /** A person's quota, rate limit and GPU cap. */
  canSeeUser(user: string): boolean {
    return this.seesOthers || user === this.who.name;
  }

  /** A GPU cap, by its scope id: its project's or person's, the global one for readers of everything. */
  canSeeCap(scope: string): boolean {
    const at = scope.indexOf(':');
    const [kind, name] = [scope.slice(0, at), scope.slice(at + 1)];
    if (kind === 'gpus-project') return this.canSeeProject(name);
    if (kind === 'gpus-type') return this.canSeeProject(name.slice(0, name.indexOf('/')));
    if (kind === 'gpus-user') return this.canSeeUser(name);
    return this.readsAll;
  }

  /** A limit by its scope id (a budget, quota, run cap, GPU cap or rate): as the views of its project or person. */
  canSeeScope(scope: string): boolean {
    const at = scope.indexOf(':');
    const [kind, name] = [scope.slice(0, at), scope.slice(at + 1)];
    if (kind === 'project') return this.canSeeProject(name);
    if (kind === 'user-day' || kind === 'user-week' || kind === 'user') return this.canSeeUser(name);
    if (kind === 'run' || kind === 'project-type') return this.canSeeProject(name.slice(0, name.indexOf('/')));
    return this.canSeeCap(scope);
  }

  /** A job (held, its usage): its owner, and managers and viewers of its project. */
  canSeeJob(job: { project: string; user: string }): boolean {
    if (this.readsAll || job.user === this.who.name) return true;
    return (this.who.role === 'manager' || this.who.role === 'viewer') && this.inProjects(job.project);
  }

  /** Known by a credential of their own (a key, OIDC), not a name declared with a shared token. */
  get isPerson(): boolean {
    return this.who.via !== 'token' && this.who.via !== undefined;
  }

  /** Acting on a job as its owner (cancel, ask for an override). */
  owns(job: { user: string }): boolean {
    return this.isPerson && job.user === this.who.name;
  }

  canManageProject(project: string): boolean {
    return this.isAdmin || (this.who.role === 'manager' && this.inProjects(project));
  }

  /** User-level limits touch every project the user works in. */
  canManageUsers(): boolean {
    return this.isAdmin || (this.who.role === 'manager' && this.who.projects === null);
  }

  /**
   * Submitting (and asking first). The environment tokens keep what they did
   * before people had keys: any user, any project (the audit marks the name as declared).
   */
  canSubmit(job: { project: string; user: string }): boolean {
    if (this.isAdmin || this.who.via === 'token') return true;
    if (this.who.role === 'manager') return this.inProjects(job.project);
    return this.who.role === 'submitter' && job.user === this.who.name && this.inProjects(job.project);
  }

  /** The projects a listing is limited to; null: no limit. */
  visibleProjects(): readonly string[] | null {
    return this.readsAll || this.visibility === 'all' ? null : this.who.projects;
  }

  /** Held jobs and usage: null lists everyone's; otherwise only these projects' or this person's own. */
  jobFilter(): { projects: readonly string[]; user: string } | null {
    if (this.readsAll) return null;
    const projects = this.who.role === 'manager' || this.who.role === 'viewer' ? (this.who.projects ?? []) : [];
    return { projects, user: this.who.name };
  }

  // The same questions, answering 403 with the reason when the answer is no.
  require(ok: boolean, what: string): void {
    if (!ok) throw new HttpError(403, `${this.describe()} may not ${what}`);
  }

  describe(): string {
    const scope = this.who.projects === null ? '' : ` of ${this.who.projects.join(', ')}`;
    return `${this.who.name} (${this.who.role}${scope})`;
  }
}

export const accessOf = (res: Response): Access => res.locals.access as Access;

/** The caller's access if `test` passes; else 403 saying what they may not do. */
export function must(res: Response, test: (a: Access) => boolean, what: string): Access {
  const a = accessOf(res);
  a.require(test(a), what);
  return a;
}
