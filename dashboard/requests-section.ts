/**
 * The dashboard's "Override requests" section (docs/dashboard.md). Managers
 * and admins see the open requests they may decide, each with Approve and
 * Deny buttons (the page's script asks for a reason and calls the JSON API:
 * POST /api/v1/override-requests/:id/approve or /deny); everyone else sees
 * their own requests and what became of them, a denial with its reason.
 * Every row carries data-request-id and data-state for tests.
 */
import type { DashboardData } from './data.ts';
import type { OverrideRequest } from '../src/admin/override-requests.ts';
import { esc } from './html.ts';

type Requests = NonNullable<DashboardData['requests']>;

/** "45s", "12m", "3h", "2d". */
export const age = (s: number) => (s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172_800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`);

/** What became of a request, in words: its decision and reason, or why it closed. */
export function outcomeOf(r: OverrideRequest): string {
  if (r.state === 'open') return 'waiting for a manager';
  if (r.state === 'closed') return `closed: ${r.closedNote ?? 'the job is no longer held'}`;
  return `${r.state} by ${r.decidedBy ?? '?'}${r.decisionReason ? `: ${r.decisionReason}` : ''}`;
}

function row(r: OverrideRequest, decides: boolean, now: number): string {
  const ageS = Math.max(0, Math.round((now - r.requestedAt.getTime()) / 1000));
  const cells = `<td>#${esc(r.id)}</td><td>${esc(r.jobId)}</td><td>${esc(r.project)}</td><td>${esc(r.user)}</td><td>${esc(r.kind)}</td>
    <td>${esc(r.reason)}</td><td>${esc(r.requestedBy)}</td><td>${esc(age(ageS))}</td>`;
  const last = decides
    ? `<td class="actions"><button data-action="approve" data-request-id="${esc(r.id)}" data-job="${esc(r.jobId)}">Approve</button> <button data-action="deny" data-request-id="${esc(r.id)}" data-job="${esc(r.jobId)}">Deny</button></td>`
    : `<td class="state">${esc(r.state)}</td><td class="outcome">${esc(outcomeOf(r))}</td>`;
  return `<tr data-request-id="${esc(r.id)}" data-state="${esc(r.state)}" data-job="${esc(r.jobId)}">${cells}${last}</tr>`;
}

export function requestsSection(q: Requests | null, now: number): string {
  if (!q) return '';
  const head = `<th>request</th><th>job</th><th>project</th><th>user</th><th>kind</th><th>reason</th><th>requested by</th><th>age</th>${q.decides ? '<th></th>' : '<th>state</th><th>what became of it</th>'}`;
  const empty = q.decides ? 'No open override requests to decide.' : 'You have asked for no override.';
  const more = q.total > q.items.length ? `<p class="muted">${esc(q.total - q.items.length)} more; GET /api/v1/override-requests lists them all.</p>` : '';
  return `<h2>Override requests (${esc(q.total)})</h2>
<p class="muted">${q.decides ? 'Open requests you may decide. Approving admits the job regardless of its limits; a denial\'s reason is shown to the requester.' : 'Your requests, newest first. Ask for one from the submission screen (<a href="/submit#held-jobs">/submit</a>).'}</p>
<table id="override-requests" data-decides="${q.decides}"><thead><tr>${head}</tr></thead>
<tbody>${q.items.map((r) => row(r, q.decides, now)).join('') || `<tr><td colspan="${q.decides ? 9 : 10}" class="muted">${empty}</td></tr>`}</tbody></table>
${more}`;
}
