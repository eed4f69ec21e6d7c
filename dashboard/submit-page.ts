/**
 * The submission screen (/submit) as one server-rendered page, like the
 * dashboard: no build step, no script at all (plain forms), bars in CSS.
 * Every number carries a data- attribute with its exact value and every
 * part a stable id, so tests (and a browser test) compare what is drawn with
 * what the API reports. Everything from a request or a store is escaped.
 *
 * Parts, top to bottom: the person; their projects' budgets and their own
 * daily and weekly quota as bars; the answer to a preview (or what was
 * queued); their held jobs, each with a form asking for an override, and
 * their override requests (submit-held.ts); the batch form (fields), and a
 * form to paste a JSON batch.
 */
import type { ScopeView } from '../src/accounting/budgets.ts';
import { scopeLabel } from '../src/accounting/scopes.ts';
import { localTime } from '../src/admin/held-now.ts';
import { formatAmount, unitSuffix } from '../src/units.ts';
import { fromScaled, UNIT_SCALE } from '../src/accounting/pricing.ts';
import { queuedSentence, sentences, type Answer } from './submit-words.ts';
import { heldSection, type Asked, type HeldPart } from './submit-held.ts';
import { esc, pageHead } from './html.ts';

/** The batch form's fields as typed (strings, echoed back as they came). */
export interface FieldValues {
  project: string;
  user: string;
  jobType: string;
  gpuType: string;
  gpus: string;
  hours: string;
  count: string;
  run: string;
}

export interface SubmitPageView {
  now: number;
  timeZone: string;
  who: { name: string; role: string; described: string };
  /** Managers, admins and the environment tokens may type another user. */
  userChoice: boolean;
  /** The person's projects (named on their key: a select), or every project's first page (a text field with suggestions). */
  projects: { entries: { project: string; view: ScopeView }[]; typeBudgets: ScopeView[]; named: boolean; more: boolean; q: string | null };
  quota: { daily: ScopeView; weekly: ScopeView };
  fields: FieldValues;
  json: string;
  /** Why nothing happened (invalid input, not allowed): one line each. */
  errors: string[];
  preview: {
    answer: Answer;
    outcomes: { index: number; outcome: string; reason: string }[];
    batchJson: string;
    digest: string;
    /** Queues the batch once: a reloaded form queues nothing twice. */
    once: string;
    /** The decisions differ from the ones shown before: nothing was queued. */
    changed: boolean;
    /** Why the caller may not queue this batch (a viewer may only ask); null: they may. */
    mayNotQueue: string | null;
  } | null;
  queued: { jobIds: string[]; answer: Answer } | null;
  /** The person's held jobs and override requests; null: this process takes no requests. */
  held: HeldPart | null;
  /** The answer to an override request just posted. */
  asked: Asked | null;
}

/** Rows of the job-by-job table shown; the counts above cover the rest. */
const MAX_ROWS = 100;

/** A scope's card, in its limit's unit (amounts as GPU-ms, milli-units or micro-dollars; data-gpu-hours, or data-amount with the card's data-unit). */
function scopeBar(title: string, v: ScopeView, timeZone: string): string {
  const limit = v.effectiveLimitGpuMs;
  const total = v.usedGpuMs + v.reservedGpuMs;
  const scale = Math.max(limit ?? 0, total, 1);
  const pct = (ms: number) => Math.min(100, (Math.max(0, ms) / scale) * 100).toFixed(2);
  const data = v.unit === 'gpuHours' ? 'data-gpu-hours' : 'data-amount';
  const text = (n: number) => formatAmount(n, v.unit);
  const unit = unitSuffix(v.unit);
  const num = (cls: string, n: number | null) => `<span class="${cls}" ${data}="${n === null ? '' : fromScaled(n, UNIT_SCALE[v.unit])}">${n === null ? '—' : esc(text(n))}</span>`;
  const resets = v.nextResetAt === null
    ? '<span class="resets" data-resets-at="">does not reset</span>'
    : `<span class="resets" data-resets-at="${esc(new Date(v.nextResetAt).toISOString())}">resets ${esc(localTime(v.nextResetAt, timeZone))}</span>`;
  const body = limit === null
    ? `<p class="numbers">no limit set · used ${num('used', v.usedGpuMs)} · reserved ${num('reserved', v.reservedGpuMs)}${unit}</p>`
    : `<div class="bar${total > limit ? ' over' : ''}" role="img" aria-label="${esc(text(total))} of ${esc(text(limit))}${unit} used or reserved">` +
      `<b class="used" style="width:${pct(v.usedGpuMs)}%"></b><b class="reserved" style="width:${pct(v.reservedGpuMs)}%"></b></div>
      <p class="numbers">used ${num('used', v.usedGpuMs)} · reserved ${num('reserved', v.reservedGpuMs)} · remaining ${num('remaining', v.remainingGpuMs)} of ${num('limit', limit)}${unit} · ${resets}</p>`;
  return `<article class="scope" data-scope="${esc(v.scope)}" data-unit="${v.unit}"><h3>${esc(title)}</h3>${body}</article>`;
}

function budgets(v: SubmitPageView): string {
  const p = v.projects;
  const cards = p.entries.map((e) => scopeBar(`project ${e.project}`, e.view, v.timeZone)).join('') + p.typeBudgets.map((t) => scopeBar(scopeLabel(t.scope), t, v.timeZone)).join('');
  const search = p.named ? '' : `<form id="project-search" method="get" action="/submit" role="search"><input id="f-q" type="search" name="q" maxlength="128" value="${esc(p.q ?? '')}" placeholder="project name" aria-label="search projects"> <button type="submit">Search</button></form>`;
  const more = p.more ? '<p class="muted" id="more-projects">More projects than shown; search to narrow.</p>' : '';
  return `<h2>Your projects</h2>${search}<div class="grid" id="budgets">${cards || '<p class="muted">No projects to show.</p>'}</div>${more}
<h2>Your quota</h2><div class="grid" id="quotas">${scopeBar('today', v.quota.daily, v.timeZone)}${scopeBar('this week', v.quota.weekly, v.timeZone)}</div>`;
}

function input(name: keyof FieldValues, label: string, value: string, attrs: string): string {
  return `<label for="f-${name}">${esc(label)}</label><input id="f-${name}" name="${name}" value="${esc(value)}" ${attrs}>`;
}

function forms(v: SubmitPageView): string {
  const f = v.fields;
  const project = v.projects.named
    ? `<label for="f-project">project</label><select id="f-project" name="project" required>${v.projects.entries.map((e) => `<option${e.project === f.project ? ' selected' : ''}>${esc(e.project)}</option>`).join('')}</select>`
    : `${input('project', 'project', f.project, 'required maxlength="128" list="project-names" autocomplete="off"')}<datalist id="project-names">${v.projects.entries.map((e) => `<option value="${esc(e.project)}">`).join('')}</datalist>`;
  const user = v.userChoice
    ? input('user', 'user', f.user, 'required maxlength="128"')
    : `<label>user</label><span id="f-user-fixed" data-user="${esc(v.who.name)}">${esc(v.who.name)}</span>`;
  return `<h2>A batch of jobs</h2>
<form id="batch-form" method="post" action="/submit/preview" class="fields">
  ${project}
  ${user}
  ${input('jobType', 'job type (optional)', f.jobType, 'maxlength="128"')}
  ${input('gpuType', 'GPU type (optional)', f.gpuType, 'maxlength="128"')}
  ${input('gpus', 'GPUs per job', f.gpus, 'type="number" min="1" max="4096" step="1" required')}
  ${input('hours', 'GPU hours each', f.hours, 'type="number" min="0" step="any" required')}
  ${input('count', 'how many jobs', f.count, 'type="number" min="1" max="1000" step="1" required')}
  ${input('run', 'run (optional)', f.run, 'maxlength="128"')}
  <span></span><button id="preview-fields" type="submit">See what would happen</button>
</form>
<h2>Or paste a JSON batch</h2>
<form id="json-form" method="post" action="/submit/preview">
  <textarea id="f-json" name="json" rows="8" spellcheck="false" placeholder='[{ "project": "alpha", "estimatedGpuHours": 1 }]  or  { "jobs": [ … ] }'>${esc(v.json)}</textarea>
  <p class="muted">Up to 1,000 jobs; each as the API takes it (docs/api.md). A job without <code>user</code> is yours.</p>
  <button id="preview-json" type="submit">See what would happen</button>
</form>`;
}

function answerBlock(a: Answer): string {
  const s = sentences(a);
  return `<p id="would-start" data-would-start="${a.start}">${esc(s.start)}</p>
  ${s.wait ? `<p id="would-wait" data-would-wait="${a.wait}">${esc(s.wait)}</p>` : ''}
  ${s.refuse ? `<p id="would-refuse" data-would-refuse="${a.refuse}">${esc(s.refuse)}</p>` : ''}
  ${a.blocked.length ? `<div id="blocked">${a.blocked.map((b) => `<p class="blocked" data-scope="${esc(b.scope)}">${esc(b.message)}</p>`).join('')}</div>` : ''}
  ${a.cost ? `<p id="cost">${esc(a.cost.batch)}</p>${a.cost.byGpuType.length ? `<p class="muted">On another GPU type:</p><ul id="cost-by-gpu-type">${a.cost.byGpuType.map((t) => `<li>${esc(t)}</li>`).join('')}</ul>` : ''}` : ''}
  ${a.warnings.length ? `<h3>Warnings</h3><ul id="warnings">${a.warnings.map((w) => `<li data-code="${esc(w.code)}">${esc(w.message)}</li>`).join('')}</ul>` : ''}`;
}

function preview(p: NonNullable<SubmitPageView['preview']>): string {
  const a = p.answer;
  const rows = p.outcomes.slice(0, MAX_ROWS).map((o) => `<tr data-index="${o.index}" data-outcome="${esc(o.outcome)}"><td class="n">${o.index}</td><td>${esc(o.outcome === 'admitted' ? 'starts now' : o.outcome)}</td><td>${esc(o.reason)}</td></tr>`).join('');
  const rest = p.outcomes.length > MAX_ROWS ? `<p class="muted">and ${p.outcomes.length - MAX_ROWS} more jobs, counted above.</p>` : '';
  const queue = p.mayNotQueue !== null
    ? `<p id="may-not-queue" class="muted">${esc(p.mayNotQueue)}</p>`
    : `<form id="queue-form" method="post" action="/submit">
    <input type="hidden" name="batch" value="${esc(p.batchJson)}"><input type="hidden" name="digest" value="${esc(p.digest)}"><input type="hidden" name="once" value="${esc(p.once)}">
    <button id="queue" type="submit" data-jobs="${a.jobs}">Queue these ${a.jobs} job${a.jobs === 1 ? '' : 's'}</button>
  </form>`;
  return `<section id="preview" class="answer" data-jobs="${a.jobs}" data-would-start="${a.start}" data-would-wait="${a.wait}" data-would-refuse="${a.refuse}" data-digest="${esc(p.digest)}">
  <h2>What would happen now</h2>
  ${p.changed ? '<p id="changed" class="changed">Things changed since you looked: nothing was queued. This is the answer now; queue again if it still suits you.</p>' : ''}
  ${answerBlock(a)}
  ${queue}
  <details><summary>Job by job</summary><table id="outcomes"><thead><tr><th>job</th><th>would</th><th>why</th></tr></thead><tbody>${rows}</tbody></table>${rest}</details>
</section>`;
}

function queued(q: NonNullable<SubmitPageView['queued']>): string {
  const ids = q.jobIds.slice(0, MAX_ROWS).map((id) => `<li data-job-id="${esc(id)}">${esc(id)}</li>`).join('');
  const rest = q.jobIds.length > MAX_ROWS ? `<p class="muted">and ${q.jobIds.length - MAX_ROWS} more.</p>` : '';
  return `<section id="result" class="answer" data-queued="${q.jobIds.length}" data-would-start="${q.answer.start}" data-would-wait="${q.answer.wait}">
  <h2 id="queued-sentence">${esc(queuedSentence(q.answer))}</h2>
  <p class="muted">As the preview said; the gatekeeper decides each job in this order. Held jobs are on the <a href="/dashboard">dashboard</a>.</p>
  ${q.answer.blocked.length ? `<div id="blocked">${q.answer.blocked.map((b) => `<p class="blocked" data-scope="${esc(b.scope)}">${esc(b.message)}</p>`).join('')}</div>` : ''}
  <details><summary>Job ids</summary><ul id="job-ids">${ids}</ul>${rest}</details>
</section>`;
}

export function renderSubmitPage(v: SubmitPageView): string {
  const errors = v.errors.length ? `<section id="errors" class="errors" role="alert"><h2>Nothing was queued</h2><ul>${v.errors.map((e) => `<li>${esc(e)}</li>`).join('')}</ul></section>` : '';
  return `${pageHead('submit', 960, `  h2 { font-size: 16px; margin: 24px 0 8px; }
  header.top { display: flex; justify-content: space-between; align-items: baseline; flex-wrap: wrap; gap: 8px; }
  a { color: #3a55c4; } .muted { color: #6b7285; } td.n { text-align: right; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }
  .scope, .answer, form.fields, #json-form { background: #fff; border: 1px solid #dde1ec; border-radius: 8px; padding: 12px; }
  .bar { height: 14px; background: #e9ecf4; border-radius: 7px; margin: 8px 0 4px; overflow: hidden; display: flex; }
  .bar b { display: block; height: 100%; } .bar .used { background: #3a55c4; } .bar .reserved { background: #8fa2ee; } .bar.over .used { background: #c43a3a; }
  .numbers { margin: 4px 0; }
  form.fields { display: grid; grid-template-columns: max-content minmax(0, 320px); gap: 6px 12px; align-items: center; }
  input, select, textarea, button { font: inherit; } textarea { width: 100%; box-sizing: border-box; font-family: ui-monospace, monospace; }
  button { padding: 4px 12px; border: 1px solid #3a55c4; background: #3a55c4; color: #fff; border-radius: 4px; cursor: pointer; }
  .blocked { border-left: 4px solid #c43a3a; padding: 4px 10px; background: #fbeeee; }
  .changed { border-left: 4px solid #c48a3a; padding: 4px 10px; background: #fbf4ea; font-weight: 600; }
  .asked { border-left: 4px solid #2f7a4d; padding: 4px 10px; background: #eef8f1; } form.ask textarea { font-family: inherit; }
  .errors { border: 1px solid #c43a3a; background: #fbeeee; border-radius: 8px; padding: 4px 12px; }
  table { width: 100%; border-collapse: collapse; } th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #eef0f6; vertical-align: top; }`)}
<body>
<header class="top"><h1>gpu-gatekeeper · submit jobs</h1>
  <nav><span id="who" class="muted" data-user="${esc(v.who.name)}" data-role="${esc(v.who.role)}">${esc(v.who.described)} · ${esc(localTime(v.now, v.timeZone))}</span> <a href="/dashboard">dashboard</a> <a href="/submit">start over</a></nav></header>
${errors}
${v.queued ? queued(v.queued) : ''}
${v.preview ? preview(v.preview) : ''}
${budgets(v)}
${heldSection(v.held, v.asked)}
${forms(v)}
</body></html>`;
}
