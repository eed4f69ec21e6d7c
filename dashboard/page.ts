/**
 * The budget dashboard as one server-rendered HTML page: no build step, no
 * framework, no chart library (bars are CSS, 30-day lines are inline SVG:
 * trend-chart.ts), a few
 * kilobytes of script for the admin buttons. Every number carries a data-
 * attribute with its exact value, so tests compare what is drawn with what
 * the API reports. Lists are pages with a count of the rest and links on;
 * every value from a request or the database is escaped.
 */
import type { CardPage, DashboardData, DashboardQuery, ScopeCard } from './data.ts';
import type { Role } from '../src/http/auth.ts';
import { formatAmount, formatHours, gpuMsToHours, unitSuffix } from '../src/units.ts';
import { UNIT_SCALE, type LimitUnit } from '../src/accounting/pricing.ts';
import { scopeLabel } from '../src/accounting/scopes.ts';
import { trendChart } from './trend-chart.ts';
import { esc, pageHead } from './html.ts';
import { age, requestsSection } from './requests-section.ts';

export interface PageOptions {
  role: Role;
  /** Whether the person looking may release and override this held job (admins, its project's managers); omitted: admins only. */
  mayManage?: (job: { project: string; user: string }) => boolean;
  /** Bull Board base path and queue names, for links; null for those it is not open to. */
  board: { base: string; queues: string[] } | null;
  /** Who is looking, in words ("mira (manager of research)"); omitted: the role. */
  who?: string;
}

const h = (ms: number) => formatHours(ms);
/** An amount of a scope's unit with its unit: '12.5 GPU-h', '36.0 units', '$49.20'. */
const amount = (n: number, unit: LimitUnit) => `${formatAmount(n, unit)}${unitSuffix(unit)}`;

function bar(v: ScopeCard['view']): string {
  const limit = v.effectiveLimitGpuMs;
  const total = v.usedGpuMs + v.reservedGpuMs;
  // Scale to the limit, or to what is counted when in-flight jobs overran it.
  const scale = Math.max(limit ?? 0, total, 1);
  const pct = (ms: number) => Math.min(100, (ms / scale) * 100).toFixed(2);
  const marks = limit ? v.thresholds.map((t) => `<i class="mark" style="left:${pct((limit * t) / 100)}%" title="${t}% warning"></i>`).join('') : '';
  const over = limit !== null && total > limit;
  return `<div class="bar${over ? ' over' : ''}" role="img" aria-label="${esc(amount(total, v.unit))} of ${esc(limit === null ? 'no limit' : amount(limit, v.unit))}">
      <b class="used" style="width:${pct(v.usedGpuMs)}%"></b><b class="reserved" style="width:${pct(v.reservedGpuMs)}%"></b>${marks}
    </div>
    ${v.exemptUsedGpuMs + v.exemptReservedGpuMs > 0 ? `<div class="exempt-bar" style="width:${pct(v.exemptUsedGpuMs + v.exemptReservedGpuMs)}%"></div>` : ''}`;
}

/** A GPU cap's row: GPUs in flight against the cap in force now. */
function gpuRow(c: DashboardData['gpus'][number]): string {
  const scale = Math.max(c.effectiveMaxGpus, c.inFlightGpus, 1);
  const over = c.inFlightGpus > c.effectiveMaxGpus;
  return `<tr><td>${esc(scopeLabel(c.scope))}</td>
    <td><div class="bar${over ? ' over' : ''}" role="img" aria-label="${esc(c.inFlightGpus)} of ${esc(c.effectiveMaxGpus)} GPUs in flight"><b class="used" style="width:${Math.min(100, (c.inFlightGpus / scale) * 100).toFixed(2)}%"></b></div></td>
    <td class="n">${esc(c.inFlightGpus)} of ${esc(c.effectiveMaxGpus)}${c.peakNow ? ` <span class="muted">(peak; ${esc(c.maxGpus)} otherwise)</span>` : c.peak ? ` <span class="muted">(${esc(c.peak.maxGpus)} in peak hours)</span>` : ''}</td></tr>`;
}

function card(c: ScopeCard): string {
  const v = c.view;
  // data-gpu-hours for a budget in hours (as before units); data-amount, in the unit, for every one.
  const hours = v.unit === 'gpuHours';
  const num = (name: string, n: number | null) =>
    `<span class="${name}"${hours ? ` data-gpu-hours="${n === null ? '' : gpuMsToHours(n)}"` : ''} data-amount="${n === null ? '' : n / UNIT_SCALE[v.unit]}">${n === null ? '—' : esc(formatAmount(n, v.unit))}</span>`;
  const c3 = v.counted;
  const sideBySide = `<p class="units muted">counted ${esc(h(c3.gpuHours.used + c3.gpuHours.reserved))} GPU-h · ${esc(formatAmount(c3.units.used + c3.units.reserved, 'units'))} units · ${esc(formatAmount(c3.usd.used + c3.usd.reserved, 'usd'))}</p>`;
  return `<article class="scope" data-scope="${esc(v.scope)}">
    <header><h3>${esc(c.title)}</h3><span class="period">${esc(v.periodLabel ?? 'one-off')}${v.policy === 'soft' ? ` · soft${v.gracePercent !== null ? ` +${v.gracePercent}%` : ''}` : ''}</span></header>
    ${bar(v)}
    <p class="numbers">used ${num('used', v.usedGpuMs)} · reserved ${num('reserved', v.reservedGpuMs)} · of ${num('limit', v.effectiveLimitGpuMs)}${unitSuffix(v.unit)}
      · remaining ${num('remaining', v.remainingGpuMs)}${v.exemptUsedGpuMs + v.exemptReservedGpuMs > 0 ? ` · exempt ${num('exempt', v.exemptUsedGpuMs + v.exemptReservedGpuMs)}` : ''}
      ${v.nextResetAt ? ` · resets ${esc(new Date(v.nextResetAt).toISOString().slice(0, 16).replace('T', ' '))} UTC` : ''}</p>
    ${sideBySide}
    ${c.projection ? `<p class="projection">${esc(c.projection)}</p>` : ''}
    ${c.line ? trendChart(c.line, v.effectiveLimitGpuMs, v.unit) : ''}
  </article>`;
}

/** A link to this page with some of its query changed; page numbers 1 are left out. */
function href(q: DashboardQuery, change: Partial<DashboardQuery>): string {
  const next = { ...q, ...change };
  const params = new URLSearchParams();
  if (next.q) params.set('q', next.q);
  if (next.page > 1) params.set('page', String(next.page));
  if (next.userPage > 1) params.set('userPage', String(next.userPage));
  const s = params.toString();
  return esc(`/dashboard${s ? `?${s}` : ''}`);
}

/** "21–40 of 1,000" and the links to the pages either side. */
function pager(p: CardPage, q: DashboardQuery, key: 'page' | 'userPage', what: string): string {
  const from = p.cards.length ? (p.page - 1) * p.pageSize + 1 : 0;
  const to = (p.page - 1) * p.pageSize + p.cards.length;
  const last = Math.max(1, Math.ceil(p.total / p.pageSize));
  const prev = p.page > 1 ? ` <a rel="prev" href="${href(q, { [key]: Math.min(p.page - 1, last) })}">previous</a>` : '';
  const next = p.page < last ? ` <a rel="next" href="${href(q, { [key]: p.page + 1 })}">next ${esc(Math.min(p.pageSize, p.total - to))}</a>` : '';
  return `<p class="pager muted" data-total="${esc(p.total)}">${esc(what)} ${esc(from)}–${esc(to)} of ${esc(p.total.toLocaleString('en'))}, most used this period first.${prev}${next}</p>`;
}

function nearRow(c: ScopeCard): string {
  const v = c.view;
  const total = v.usedGpuMs + v.reservedGpuMs;
  const pct = v.effectiveLimitGpuMs && v.effectiveLimitGpuMs > 0 ? `${Math.floor((total * 100) / v.effectiveLimitGpuMs)}%` : 'at limit';
  return `<tr data-near="${esc(v.scope)}"><td>${esc(c.title)}</td><td class="n">${esc(pct)}</td>
    <td class="n">${esc(amount(total, v.unit))} of ${esc(v.effectiveLimitGpuMs === null ? '—' : amount(v.effectiveLimitGpuMs, v.unit))}</td><td>${esc(c.projection)}</td></tr>`;
}

/** An event's decimal amount with its unit (events stored before units carry GPU hours). */
function alertAmount(n: number, unit: LimitUnit | undefined): string {
  const u = unit ?? 'gpuHours';
  return amount(Math.round(n * UNIT_SCALE[u]), u);
}

function alertText(a: NonNullable<DashboardData['alerts']>[number]): string {
  const d = a.data as Record<string, any>;
  switch (a.type) {
    case 'THRESHOLD_CROSSED':
      // Events from before units carry GPU hours only.
      return `${d.scope} reached ${d.thresholdPercent}% (${alertAmount((d.used ?? d.usedGpuHours) + (d.reserved ?? d.reservedGpuHours), d.unit)} of ${alertAmount(d.limit ?? d.limitGpuHours, d.unit)})`;
    case 'BUDGET_EXHAUSTED':
      return `${d.scope} is at its limit; jobs are being held`;
    case 'JOB_REJECTED':
      return `job ${d.jobId} rejected: ${d.reason}`;
    default:
      return `${(d.periods ?? []).join(', ')} reset; ${d.releasedJobs ?? 0} held jobs released`;
  }
}

export function renderDashboard(d: DashboardData, opts: PageOptions): string {
  const manages = opts.mayManage ?? (() => opts.role === 'admin');
  const actions = d.held.jobs.some(manages);
  // The script serves the held jobs' buttons and the requests' Approve and Deny.
  const script = actions || (d.requests?.decides === true && d.requests.items.length > 0);
  const heldRows = d.held.jobs
    .map(
      (j) => `<tr data-job="${esc(j.jobId)}"><td>${esc(j.jobId)}</td><td>${esc(j.project)}</td><td>${esc(j.user)}</td><td class="n">${esc(j.estimatedGpuHours)}</td>
        <td>${esc(age(j.ageSeconds))}</td><td>${esc(j.reason)}<div class="muted">${esc(j.startsWhen)}</div></td>
        ${actions ? `<td class="actions">${manages(j) ? `<button data-action="release" data-id="${esc(j.jobId)}">Release</button> <button data-action="override" data-id="${esc(j.jobId)}">Override</button>` : ''}</td>` : ''}</tr>`,
    )
    .join('');
  const hist = d.history.rows
    .map((r) => `<tr><td>${esc(r.project)}</td>${r.gpuMs.map((ms) => `<td class="n">${esc(h(ms))}</td>`).join('')}</tr>`)
    .join('');
  return `${pageHead('budgets', 1100, `  h2 { font-size: 16px; margin: 28px 0 10px; }
  .top { display: flex; justify-content: space-between; align-items: baseline; gap: 12px; flex-wrap: wrap; }
  .top nav a { margin-left: 10px; color: #3a55c4; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 12px; }
  .scope { background: #fff; border: 1px solid #dde1ec; border-radius: 8px; padding: 12px; }
  .scope header { display: flex; justify-content: space-between; } .period { color: #6b7285; font-size: 12px; }
  .bar { position: relative; height: 14px; background: #e9ecf4; border-radius: 7px; margin: 10px 0 4px; overflow: hidden; display: flex; }
  .bar b { display: block; height: 100%; } .bar .used { background: #3a55c4; } .bar .reserved { background: repeating-linear-gradient(45deg, #8fa2ee, #8fa2ee 4px, #b7c4f5 4px, #b7c4f5 8px); }
  .bar.over .used { background: #c43a3a; } td.actions { white-space: nowrap; }
  .mark { position: absolute; top: 0; bottom: 0; width: 2px; background: #1d2230; opacity: .45; }
  .exempt-bar { height: 4px; background: #2f9e6b; border-radius: 2px; margin-bottom: 4px; }
  .numbers, .projection { margin: 6px 0; } .projection { color: #4a5068; font-style: italic; }
  .trend { display: block; margin-top: 6px; } .trend text { font-size: 9px; fill: #6b7285; } .trend .grid { stroke: #eef0f6; } .trend .axis { stroke: #b9bfd0; }
  .trend .reset { stroke: #dde1ec; stroke-dasharray: 1 2; } .trend polyline { fill: none; stroke-width: 1.5; } .trend .used { stroke: #3a55c4; } .trend circle.used { fill: #3a55c4; }
  .trend .exempt { stroke: #2f9e6b; stroke-dasharray: 3 2; } .trend circle.exempt { fill: #2f9e6b; } .trend line.limit { stroke: #c43a3a; stroke-dasharray: 5 3; } .trend text.limit { fill: #c43a3a; }
  table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #dde1ec; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eef0f6; vertical-align: top; } td.n { text-align: right; }
  button { font: inherit; padding: 2px 8px; border: 1px solid #3a55c4; background: #fff; color: #3a55c4; border-radius: 4px; cursor: pointer; }
  button:hover { background: #3a55c4; color: #fff; } #msg { min-height: 1.4em; color: #2f7a4d; }
  .legend span { margin-right: 12px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
  .muted { color: #6b7285; } .search input { font: inherit; padding: 2px 6px; width: 240px; } .pager a { margin-left: 8px; color: #3a55c4; }`)}
<body>
<div class="top"><h1>gpu-gatekeeper · budgets</h1>
  <nav><span class="muted" id="who">${esc(opts.who ?? opts.role)} · ${esc(d.timeZone)} · ${esc(new Date(d.now).toISOString().slice(0, 16).replace('T', ' '))} UTC</span>
  ${opts.board ? opts.board.queues.map((q) => `<a href="${esc(opts.board!.base)}/queue/${encodeURIComponent(q)}">${esc(q)}</a>`).join('') : ''}</nav></div>
<p class="legend muted"><span><i style="background:#3a55c4"></i>used</span><span><i style="background:#8fa2ee"></i>reserved (running)</span><span><i style="background:#2f9e6b"></i>exempt (not counted)</span><span><i style="background:#1d2230;opacity:.45"></i>warning thresholds</span><span><i style="background:#c43a3a;height:2px;vertical-align:3px"></i>limit (dashed, on the 30-day lines)</span></p>
<div id="msg" role="status"></div>
<form class="search" method="get" action="/dashboard" role="search"><input type="search" name="q" maxlength="128" pattern="[A-Za-z0-9._\-]{1,128}" placeholder="project or user name" value="${esc(d.query.q ?? '')}" aria-label="search projects and users"> <input type="submit" value="Search">${d.query.q ? ` <a href="/dashboard">clear</a>` : ''}</form>
<h2>Near their limits (${esc(d.nearLimit.total)})</h2>
<table id="near-limit"><thead><tr><th>scope</th><th>of limit</th><th>used + reserved</th><th>projection</th></tr></thead>
<tbody>${d.nearLimit.cards.map(nearRow).join('') || `<tr><td colspan="4" class="muted">No scope has settled ${esc('≥ 75 %')} of its limit this period.</td></tr>`}</tbody></table>
${d.nearLimit.total > d.nearLimit.cards.length ? `<p class="muted">${esc(d.nearLimit.total - d.nearLimit.cards.length)} more near their limits; search to narrow.</p>` : ''}
<h2>Projects</h2>
${pager(d.projects, d.query, 'page', 'Projects')}
<div class="grid" id="projects">${d.projects.cards.map(card).join('') || `<p class="muted">${d.query.q ? 'No project budget matches.' : 'No project budgets yet.'}</p>`}</div>
<h2>User quotas</h2>
${pager(d.users, d.query, 'userPage', 'Quotas')}
<div class="grid" id="users">${d.users.cards.map(card).join('') || `<p class="muted">${d.query.q ? 'No user quota matches.' : 'No user quotas.'}</p>`}</div>
${d.runs.length ? `<h2>Run caps</h2>
<div class="grid" id="runs">${d.runs.map(card).join('')}</div>` : ''}
${d.typeBudgets.length ? `<h2>GPU type budgets</h2>
<div class="grid" id="type-budgets">${d.typeBudgets.map(card).join('')}</div>` : ''}
${d.gpus.length ? `<h2>GPUs in flight</h2>
<table id="gpus"><thead><tr><th>cap</th><th></th><th>GPUs in flight</th></tr></thead><tbody>${d.gpus.map(gpuRow).join('')}</tbody></table>` : ''}
<h2>Settled usage by period (GPU-h), projects on this page</h2>
<table id="history"><thead><tr><th>project</th>${d.history.periods.map((p) => `<th title="${esc(p.from)} – ${esc(p.to)}">${esc(p.label)}</th>`).join('')}</tr></thead>
<tbody>${hist || `<tr><td colspan="${d.history.periods.length + 1}" class="muted">Nothing settled yet.</td></tr>`}</tbody></table>
<h2>Held jobs (${esc(d.held.total)})</h2>
<table id="held"><thead><tr><th>job</th><th>project</th><th>user</th><th>GPU-h</th><th>age</th><th>why, and what starts it</th>${actions ? '<th></th>' : ''}</tr></thead>
<tbody>${heldRows || `<tr><td colspan="${actions ? 7 : 6}" class="muted">Nothing held.</td></tr>`}</tbody></table>
${requestsSection(d.requests, d.now)}
${d.alerts ? `<h2>Recent alerts</h2>
<table id="alerts"><tbody>${d.alerts.map((a) => `<tr><td class="muted">${esc(a.at.slice(0, 16).replace('T', ' '))}</td><td>${esc(a.type)}</td><td>${esc(alertText(a))}</td><td>${a.acked ? 'acknowledged' : ''}</td></tr>`).join('') || '<tr><td class="muted">No alerts.</td></tr>'}</tbody></table>` : ''}
${script ? `<script>
const PROMPTS = {
  override: (id) => 'Why admit job ' + id + ' regardless of its budget?',
  approve: (id) => 'Approve override request #' + id + '? Reason (optional):',
  deny: (id) => 'Why deny override request #' + id + '? The requester sees this.',
};
const DONE = {
  override: (id) => 'Admitted job ' + id + ' (override).',
  approve: (id, body) => 'Approved request #' + id + ': job ' + body.jobId + ' admitted.',
  deny: (id) => 'Denied request #' + id + '.',
};
document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-action]');
  if (!b) return;
  const action = b.dataset.action, id = b.dataset.id || b.dataset.requestId;
  const reason = PROMPTS[action] ? prompt(PROMPTS[action](id)) : null;
  if (PROMPTS[action] && reason === null) return;
  if (action === 'deny' && !reason.trim()) { document.getElementById('msg').textContent = 'A denial needs a reason.'; return; }
  b.disabled = true;
  const url = action === 'release' ? '/api/v1/held/release'
    : action === 'override' ? '/api/v1/held/' + encodeURIComponent(id) + '/override'
    : '/api/v1/override-requests/' + encodeURIComponent(id) + '/' + action;
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(action === 'release' ? { ids: [id] } : (reason ? { reason } : {})),
  });
  const body = await res.json().catch(() => ({}));
  const msg = document.getElementById('msg');
  if (!res.ok) { msg.textContent = 'Failed: ' + ((body.error && body.error.message) || res.status); b.disabled = false; return; }
  msg.textContent = action === 'release'
    ? (body.admitted > 0 ? 'Released job ' + id + '.' : 'Job ' + id + ' still held: ' + ((body.stillHeldJobs && body.stillHeldJobs[0] && body.stillHeldJobs[0].reason) || ''))
    : DONE[action](id, body);
  setTimeout(() => location.reload(), 800);
});
</script>` : ''}
</body></html>`;
}
