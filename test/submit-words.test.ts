/**
 * The submission screen's words for a preflight answer (no Redis: pure
 * functions over a report): each kind of shortfall as a sentence and, for
 * budgets, quotas and run caps, the PRD's message; waiting jobs grouped by
 * reason with their counts; throttled jobs grouped without their due times.
 * Every expected sentence is written out by hand.
 */
import { describe, expect, it } from 'vitest';
import { answerOf, queuedSentence, sentences, shortfallWords } from '../dashboard/submit-words.ts';
import type { PreflightOutcome, PreflightReport } from '../src/admin/preflight.ts';
import type { Hold, Shortfall } from '../src/accounting/types.ts';

const H = 3_600_000;
const sf = (scope: string, code: Shortfall['code'], limit: number | null, used: number, reserved: number, needed: number): Shortfall =>
  ({ scope, code, limitGpuMs: limit, usedGpuMs: used, reservedGpuMs: reserved, neededGpuMs: needed });

describe('shortfallWords', () => {
  it.each([
    ['a project budget used up', sf('project:alpha', 'over-limit', 10 * H, 6 * H, 4 * H, H),
      "project alpha's budget is used up: 10.0 of 10.0 GPU-h",
      "project alpha's budget is used up: 10.0 of 10.0 GPU-h. Contact your admin to raise it, or request an override."],
    ['a budget with too little left', sf('project:alpha', 'over-limit', 10 * H, 9.5 * H, 0, 2 * H),
      "project alpha's budget has too little left: 9.5 of 10.0 GPU-h used or reserved, and a job needs 2.0",
      "project alpha's budget has too little left: 9.5 of 10.0 GPU-h used or reserved, and a job needs 2.0. Contact your admin to raise it, or request an override."],
    ['a daily quota used up', sf('user-day:ann', 'over-limit', 8 * H, 8 * H, 0, H),
      "user ann's daily quota is used up: 8.0 of 8.0 GPU-h",
      "user ann's daily quota is used up: 8.0 of 8.0 GPU-h. Contact your admin to raise it, or request an override."],
    ['a soft budget past its grace', sf('project:beta', 'over-grace', 11 * H, 11 * H, 0, H),
      "project beta's budget is used up: 11.0 of 11.0 GPU-h (with its grace)",
      "project beta's budget is used up: 11.0 of 11.0 GPU-h (with its grace). Contact your admin to raise it, or request an override."],
    ['a run cap used up', sf('run:alpha/r1', 'over-limit', 60 * H, 0, 60 * H, H),
      "run alpha/r1's cap is used up: 60.0 of 60.0 GPU-h",
      "run alpha/r1's cap is used up: 60.0 of 60.0 GPU-h. Contact your admin to raise it, or request an override."],
    // A budget in dollars (micro-dollars) and one in units (milli-units) speak their unit.
    ['a budget in dollars with too little left', { ...sf('project:gamma', 'over-limit', 100_000_000, 98_500_000, 0, 4_100_000), unit: 'usd' as const },
      "project gamma's budget has too little left: $98.50 of $100.00 used or reserved, and a job needs $4.10",
      "project gamma's budget has too little left: $98.50 of $100.00 used or reserved, and a job needs $4.10. Contact your admin to raise it, or request an override."],
    ['a quota in units used up', { ...sf('user-week:ann', 'over-limit', 96_000, 96_000, 0, 3_000), unit: 'units' as const },
      "user ann's weekly quota is used up: 96.0 of 96.0 units",
      "user ann's weekly quota is used up: 96.0 of 96.0 units. Contact your admin to raise it, or request an override."],
    ['a project with no budget', sf('project:new', 'no-limit', null, 0, 0, H),
      'project new has no budget',
      'project new has no budget. Contact your admin to set one, or request an override.'],
    // A GPU cap's numbers are GPUs: 8 of 8 in flight, the job needs 2; it waits for running jobs, no admin needed.
    ['a GPU cap full', sf('gpus-project:alpha', 'over-gpus', 8, 0, 8, 2),
      'project alpha: 8 of 8 GPUs in flight; job needs 2 (it starts when running jobs end)',
      null],
  ])('%s', (_name, f, why, blocked) => {
    expect(shortfallWords(f)).toEqual({ why, blocked });
  });
});

function report(outcomes: PreflightOutcome[]): PreflightReport {
  const n = (k: PreflightOutcome['outcome']) => outcomes.filter((o) => o.outcome === k).length;
  return { jobs: outcomes.length, admitted: n('admitted'), held: n('held'), rejected: n('rejected'), throttled: n('throttled'), outcomes, scopes: [], warnings: [], warningDetails: [],
    cost: { jobs: 0, gpuHours: 0, chargedGpuHours: 0, units: 0, usd: 0 }, byGpuType: [] };
}

describe('answerOf and its sentences', () => {
  it('groups waiting jobs by reason with counts, one blocked message per scope, throttled without due times', () => {
    const budget = sf('project:alpha', 'over-limit', 10 * H, 10 * H, 0, H);
    const day = sf('user-day:ann', 'over-limit', 8 * H, 8 * H, 0, H);
    const holds: (Hold | undefined)[] = [undefined, { shortfalls: [budget], ahead: 0 }, { shortfalls: [budget], ahead: 1, line: 'project:alpha' }, { shortfalls: [day], ahead: 0 }, { shortfalls: [], ahead: 3, line: 'project:alpha' }];
    const r = report([
      { index: 0, outcome: 'admitted' },
      { index: 1, outcome: 'held', reason: 'x', waitsFor: ['hours'] },
      { index: 2, outcome: 'held', reason: 'x', waitsFor: ['hours', 'line'] },
      { index: 3, outcome: 'held', reason: 'y', waitsFor: ['hours'] },
      { index: 4, outcome: 'held', reason: 'behind 3 older held jobs waiting for project alpha (first in, first out)', waitsFor: ['line'] },
      { index: 5, outcome: 'throttled', dueAt: '2026-11-25T12:00:01.000Z', reason: 'throttled: user ann over 60 jobs/min (burst 10); due 12:00:01.000 UTC' },
      { index: 6, outcome: 'throttled', dueAt: '2026-11-25T12:00:02.000Z', reason: 'throttled: user ann over 60 jobs/min (burst 10); due 12:00:02.000 UTC' },
      { index: 7, outcome: 'rejected', reason: 'no budget for project zz (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject)' },
    ]);
    const a = answerOf(r, holds);
    expect([a.jobs, a.start, a.wait, a.refuse]).toEqual([8, 1, 6, 1]);
    expect(a.blocked).toEqual([
      { scope: 'project:alpha', message: "project alpha's budget is used up: 10.0 of 10.0 GPU-h. Contact your admin to raise it, or request an override." },
      { scope: 'user-day:ann', message: "user ann's daily quota is used up: 8.0 of 8.0 GPU-h. Contact your admin to raise it, or request an override." },
    ]);
    expect(sentences(a)).toEqual({
      start: '1 of 8 jobs would start now.',
      wait: "6 would wait: project alpha's budget is used up: 10.0 of 10.0 GPU-h (2 jobs); user ann's daily quota is used up: 8.0 of 8.0 GPU-h (1 job); " +
        'behind 3 older held jobs waiting for project alpha (first in, first out) (1 job); throttled: user ann over 60 jobs/min (burst 10) (they go in turn as the rate allows) (2 jobs).',
      refuse: '1 would be refused: no budget for project zz (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject).',
    });
    expect(queuedSentence(a)).toBe('queued 8 jobs: 1 starts now, 6 wait, 1 will be refused');
  });

  it('says only what starts when everything fits', () => {
    const a = answerOf(report([{ index: 0, outcome: 'admitted' }]), [undefined]);
    expect(sentences(a)).toEqual({ start: '1 of 1 job would start now.', wait: null, refuse: null });
    expect(queuedSentence(a)).toBe('queued 1 job: 1 starts now');
  });
});
