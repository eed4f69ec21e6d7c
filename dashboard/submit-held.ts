/**
 * The submission screen's held jobs and override requests (docs/submit.md):
 * the person's own held jobs, each with why it waits, what starts it and a
 * plain form asking for an override or a raise (POST
 * /submit/held/:id/override-request, no script); then their requests and
 * what became of each: the decision and its reason, or why it closed.
 */
import type { HeldView } from '../src/admin/held.ts';
import type { OverrideRequest } from '../src/admin/override-requests.ts';
import { outcomeOf } from './requests-section.ts';
import { esc } from './html.ts';

export interface HeldPart {
  total: number;
  jobs: HeldView[];
  /** The person's requests, newest first (REQUESTS_SHOWN of requestTotal). */
  requests: OverrideRequest[];
  requestTotal: number;
}

/** What became of the last form posted: a request made, or why not. */
export interface Asked {
  ok: boolean;
  jobId: string;
  requestId: number | null;
  text: string;
}

function heldRow(j: HeldView, open: OverrideRequest | undefined): string {
  const id = esc(j.jobId);
  const ask = open
    ? `<p class="muted" data-open-request="${esc(open.id)}">Request #${esc(open.id)} (${esc(open.kind)}) is open: a manager of ${esc(j.project)} decides it.</p>`
    : `<form id="request-${id}" class="ask" method="post" action="/submit/held/${esc(encodeURIComponent(j.jobId))}/override-request">
      <label for="request-reason-${id}">Why should it start now?</label>
      <textarea id="request-reason-${id}" name="reason" rows="2" maxlength="500" required></textarea>
      <select id="request-kind-${id}" name="kind" aria-label="what to ask for"><option value="override">an override of this job</option><option value="raise">a budget raise</option></select>
      <button id="request-button-${id}" type="submit">Ask a manager</button>
    </form>`;
  return `<tr data-job="${id}"><td>${id}</td><td>${esc(j.project)}</td><td class="n">${esc(j.estimatedGpuHours)}</td>
    <td>${esc(j.reason)}<div class="muted starts-when">${esc(j.startsWhen)}</div></td><td>${ask}</td></tr>`;
}

function requestRow(r: OverrideRequest): string {
  return `<tr data-request-id="${esc(r.id)}" data-state="${esc(r.state)}" data-job="${esc(r.jobId)}"><td>#${esc(r.id)}</td><td>${esc(r.jobId)}</td><td>${esc(r.kind)}</td>
    <td>${esc(r.reason)}</td><td class="state">${esc(r.state)}</td><td class="outcome">${esc(outcomeOf(r))}</td></tr>`;
}

export function heldSection(h: HeldPart | null, asked: Asked | null): string {
  if (!h) return '';
  const open = new Map(h.requests.filter((r) => r.state === 'open').map((r) => [r.jobId, r]));
  const note = asked
    ? `<p id="request-result" class="${asked.ok ? 'asked' : 'errors'}" role="status" data-ok="${asked.ok}" data-job="${esc(asked.jobId)}"${asked.requestId !== null ? ` data-request-id="${esc(asked.requestId)}"` : ''}>${esc(asked.text)}</p>`
    : '';
  const more = (n: number, of: number) => (of > n ? `<p class="muted">and ${esc(of - n)} more.</p>` : '');
  return `<section id="held-jobs">
<h2>Your held jobs (${esc(h.total)})</h2>
${note}
<table><thead><tr><th>job</th><th>project</th><th>GPU-h</th><th>why it waits, and what starts it</th><th>ask for an override</th></tr></thead>
<tbody>${h.jobs.map((j) => heldRow(j, open.get(j.jobId))).join('') || '<tr><td colspan="5" class="muted">None of your jobs is held.</td></tr>'}</tbody></table>
${more(h.jobs.length, h.total)}
</section>
<section id="my-requests">
<h2>Your requests (${esc(h.requestTotal)})</h2>
<table><thead><tr><th>request</th><th>job</th><th>kind</th><th>your reason</th><th>state</th><th>what became of it</th></tr></thead>
<tbody>${h.requests.map(requestRow).join('') || '<tr><td colspan="6" class="muted">You have asked for no override.</td></tr>'}</tbody></table>
${more(h.requests.length, h.requestTotal)}
</section>`;
}
