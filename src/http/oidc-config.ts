/**
 * OIDC's settings, checked at start-up (src/config.ts): the issuer's URL and
 * OIDC_GROUP_ROLES, which groups of the identity provider are which role in
 * which projects (docs/security.md, "OIDC"). Parsed once at start-up
 * (src/config.ts), so a typo stops the process with a line that names it
 * instead of refusing people later.
 *
 *   gk-admins=admin; ml-leads=manager:alpha,beta; ml=submitter:alpha; auditors=viewer
 *
 * A group without projects grants its role in every project. A person in
 * several groups gets the highest of their roles (admin > manager >
 * submitter > viewer), in the union of the projects that the groups granting
 * that role name; one of them naming none means every project.
 */
import { NAME_RE } from '../../queues/contract.ts';
import { PERSON_ROLES, type PersonRole, type Principal } from './access.ts';

export interface GroupGrant {
  role: PersonRole;
  /** null: every project. */
  projects: readonly string[] | null;
}

export type GroupRoles = ReadonlyMap<string, GroupGrant>;

/** What src/http/oidc.ts needs (docs/operations.md, OIDC_*). */
export interface OidcSettings {
  /** Exactly as the tokens' `iss` spells it. */
  readonly issuer: string;
  /** The `aud` a token must carry to be for this gatekeeper. */
  readonly audience: string;
  /** The claim naming the person. @default preferred_username */
  readonly userClaim: string;
  /** The claim listing their groups. @default groups */
  readonly groupsClaim: string;
  readonly groupRoles: GroupRoles;
}

/**
 * Why an issuer (or its key set) URL may not be fetched, or null. Tokens are
 * only as good as the keys: plain http would let anyone on the path swap
 * them, so it is allowed for loopback only (a provider on the same host, the tests).
 */
export function issuerUrlProblem(text: string): string | null {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `"${text.slice(0, 100)}" is not a URL`;
  }
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:' && isLoopback(u.hostname)) return null;
  return `must be https:// (plain http only on loopback), got "${text.slice(0, 100)}"`;
}

const isLoopback = (host: string) => host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/** Group names as identity providers spell them: Keycloak paths (/org/ml), Entra object ids, LDAP-ish names. */
const GROUP_RE = /^[A-Za-z0-9._@/:-]{1,256}$/;

/** The mapping, or the problems found in it (each a readable line). */
export function parseGroupRoles(text: string): { roles: GroupRoles; problems: string[] } {
  const roles = new Map<string, GroupGrant>();
  const problems: string[] = [];
  const entries = text.split(';').map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) problems.push('names no group; write e.g. "gk-admins=admin; ml=submitter:alpha,beta"');
  for (const entry of entries) {
    const shown = `"${entry.slice(0, 80)}"`;
    const eq = entry.lastIndexOf('=');
    if (eq < 0) {
      problems.push(`${shown} is not group=role or group=role:project,project`);
      continue;
    }
    const group = entry.slice(0, eq).trim();
    const [role, list] = splitOnce(entry.slice(eq + 1).trim(), ':');
    if (!GROUP_RE.test(group)) problems.push(`${shown}: the group must be 1-256 characters of A-Z a-z 0-9 . _ @ / : -`);
    else if (roles.has(group)) problems.push(`${shown}: group ${group} is mapped twice`);
    if (!(PERSON_ROLES as readonly string[]).includes(role)) problems.push(`${shown}: the role must be one of ${PERSON_ROLES.join(', ')}`);
    let projects: string[] | null = null;
    if (list !== null) {
      projects = list.split(',').map((p) => p.trim());
      const bad = projects.find((p) => !NAME_RE.test(p));
      if (bad !== undefined) problems.push(`${shown}: project "${bad.slice(0, 40)}" is not 1-128 characters of A-Z a-z 0-9 . _ -`);
    }
    roles.set(group, { role: role as PersonRole, projects });
  }
  return { roles, problems };
}

function splitOnce(s: string, sep: string): [string, string | null] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, null] : [s.slice(0, i).trim(), s.slice(i + 1)];
}

/** The role and projects a person in `groups` has; null if no group of theirs is mapped. */
export function grantOf(roles: GroupRoles, groups: readonly string[]): Pick<Principal, 'role' | 'projects'> | null {
  const grants = groups.flatMap((g) => roles.get(g) ?? []);
  if (grants.length === 0) return null;
  // PERSON_ROLES runs from the highest role to the lowest.
  const role = PERSON_ROLES.find((r) => grants.some((g) => g.role === r))!;
  const granting = grants.filter((g) => g.role === role);
  if (granting.some((g) => g.projects === null)) return { role, projects: null };
  return { role, projects: [...new Set(granting.flatMap((g) => g.projects!))].sort() };
}
