/**
 * The waker, proven against a model (issue 20, "Invariants and tests").
 * fast-check drives random interleavings over two projects (one without a
 * period, one monthly) and two users with daily quotas (few, so jobs share
 * scopes and lines) on real Redis and Postgres: submissions
 * (Accounting.reserveMany, as a gatekeeper calls it), settles at 0, under,
 * at and over the estimate, admin release of a job or a project, override,
 * cancel, limits raised, lowered and removed (auto or manual), period
 * adjustments, and wake steps where two wakers drain the wake set at once.
 * The reference model (support/wake-model.ts) predicts every step: job
 * states, lines, counters and the wake set; a wake step has several possible
 * outcomes (which line a waker takes first is not fixed) and Redis must have
 * reached one of them. After every step, from what Redis holds:
 *
 *   - each job is admitted at most once: one reserve entry in the ledger per
 *     admitted job, none for the others;
 *   - a scope a step admitted into (other than by override) is within its
 *     limit afterwards (only overruns, overrides and lowered limits pass it);
 *   - oldest first: Redis reached a state the model reaches only through
 *     decisions that admit a job when no older held job waits in a line of a
 *     scope it touches (a job that only misses another scope now waits in
 *     that line alone, so a newer job may take the room it left: release.lua
 *     and the docs say so, and an outside check on lines before and after a
 *     step cannot tell that from an overtaking);
 *   - after the wakers drain, no job is left waiting that release would
 *     admit (no older job in a line of its scopes, fits every scope) unless
 *     it waits in a manual line, and the wake set is empty.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import fc from 'fast-check';
import type { TestEnv } from './support/env.ts';
import { createWakeEnv, type WakeEnv } from './support/wake-env.ts';
import { unlinkMatching } from './support/infra.ts';
import { WakeModel, type MJob } from './support/wake-model.ts';
import type { Budgets } from '../src/accounting/budgets.ts';
import type { HeldJobs } from '../src/admin/held.ts';
import { parseEntry } from '../src/ledger/writer.ts';
import type { Waker, WakeReport } from '../workers/waker.ts';

const NOW = Date.UTC(2026, 11, 5, 12);
/** Projects (the first without a period, the others monthly) and users. */
const NP = 2;
const NU = 2;
const ops = { name: 'model', role: 'admin' as const };

/** w: the wakers drain right after it (a wake step of its own). */
type Cmd = (
  | { c: 'submit'; project: number; user: number; amount: number }
  | { c: 'settle'; pick: number; how: 'zero' | 'below' | 'equal' | 'above' }
  | { c: 'release'; pick: number }
  | { c: 'releaseProject'; project: number }
  | { c: 'override'; pick: number }
  | { c: 'cancel'; pick: number }
  | { c: 'budget'; project: number; limit: number; manual: boolean }
  | { c: 'quota'; user: number; limit: number | null; manual: boolean }
  | { c: 'adjust'; project: number; delta: number }
  | { c: 'wake' }
) & { w?: boolean };

interface Org {
  budgets: { limit: number; manual: boolean }[];
  quotas: ({ limit: number; manual: boolean } | null)[];
}

const pIdx = fc.nat(NP - 1);
const uIdx = fc.nat(NU - 1);
const manualArb = fc.nat(7).map((n) => n === 7);
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ c: fc.constant('submit' as const), project: pIdx, user: uIdx, amount: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 6, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('settle' as const), pick: fc.nat(30), how: fc.constantFrom('zero' as const, 'zero' as const, 'zero' as const, 'below' as const, 'below' as const, 'equal' as const, 'above' as const) }) },
  { weight: 1, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('release' as const), pick: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('releaseProject' as const), project: pIdx }) },
  { weight: 1, arbitrary: fc.record({ c: fc.constant('override' as const), pick: fc.nat(30) }) },
  { weight: 1, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('cancel' as const), pick: fc.nat(30) }) },
  { weight: 2, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('budget' as const), project: pIdx, limit: fc.integer({ min: 0, max: 14 }), manual: manualArb }) },
  { weight: 2, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('quota' as const), user: uIdx, limit: fc.option(fc.integer({ min: 0, max: 10 }), { freq: 4 }), manual: manualArb }) },
  { weight: 1, arbitrary: fc.record({ w: fc.boolean(), c: fc.constant('adjust' as const), project: fc.integer({ min: 1, max: NP - 1 }), delta: fc.integer({ min: -3, max: 4 }) }) },
  { weight: 3, arbitrary: fc.constant({ c: 'wake' as const }) },
);
const orgArb: fc.Arbitrary<Org> = fc.record({
  budgets: fc.array(fc.record({ limit: fc.integer({ min: 3, max: 10 }), manual: manualArb }), { minLength: NP, maxLength: NP }),
  quotas: fc.array(fc.option(fc.record({ limit: fc.integer({ min: 2, max: 8 }), manual: manualArb }), { freq: 3 }), { minLength: NU, maxLength: NU }),
});

let env: WakeEnv | undefined;
let t: TestEnv;
let budgets: Budgets;
let held: HeldJobs;
let wakers: Waker[];
let run = 0;
beforeAll(async () => {
  env = await createWakeEnv(NOW);
  ({ t, budgets, held, wakers } = env);
});
afterAll(async () => env?.close());

/**
 * Both wakers at once until no signal is left. The first drains; the second
 * keeps taking signals while the first works (the signals its decisions
 * raise), then drains what is left. Its own lines' decisions race the
 * first's, on other lines or the same.
 */
async function race(): Promise<WakeReport[]> {
  const [a, b] = wakers as [Waker, Waker];
  let done = false;
  return Promise.all([
    a.drain().finally(() => {
      done = true;
    }),
    (async () => {
      const total: WakeReport = { lines: 0, admitted: 0 };
      for (;;) {
        const finished = done;
        const r = finished ? await b.drain() : await b.round(0);
        total.lines += r.lines;
        total.admitted += r.admitted;
        if (finished) return total;
      }
    })(),
  ]);
}

/** What Redis holds of the run's jobs and scopes. */
interface Seen {
  state: Map<string, string>;
  lines: Map<string, string[]>;
  used: Map<string, number>;
  reserved: Map<string, number>;
  limit: Map<string, number | null>;
  wake: string[];
  reserveEntries: Map<string, number>;
}

async function look(jobs: string[], scopes: string[]): Promise<Seen> {
  const acc = t.accounting;
  const seen: Seen = { state: new Map(), lines: new Map(), used: new Map(), reserved: new Map(), limit: new Map(), wake: [], reserveEntries: new Map() };
  for (const id of jobs) seen.state.set(id, (await acc.reservation(id))?.state ?? 'missing');
  for (const s of scopes) {
    seen.lines.set(s, await t.redis.zrange(acc.keys.line(s), '0', '-1'));
    const c = await acc.readScope(s, NOW);
    seen.used.set(s, c.usedGpuMs);
    seen.reserved.set(s, c.reservedGpuMs);
    seen.limit.set(s, c.limitGpuMs);
  }
  seen.wake = (await t.redis.zrange(acc.keys.wake, '0', '-1')).sort();
  for (const [, fields] of await t.redis.xrange(acc.keys.ledger, '-', '+')) {
    for (const row of parseEntry(fields)) {
      if (row.kind === 'reserve') seen.reserveEntries.set(row.jobId, (seen.reserveEntries.get(row.jobId) ?? 0) + 1);
    }
  }
  return seen;
}

const admittedStates = new Set(['reserved', 'settled']);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Does the model say what Redis holds (job states, lines, counters)? Returns the first difference. */
function differs(m: WakeModel, seen: Seen, scopes: string[]): string | null {
  for (const [id, j] of m.jobs) if (seen.state.get(id) !== j.state) return `${id}: Redis ${seen.state.get(id)}, model ${j.state}`;
  for (const s of scopes) {
    const line = m.line(s).map((j) => j.id);
    if (!same(seen.lines.get(s), line)) return `line of ${s}: Redis [${seen.lines.get(s)}], model [${line}]`;
    if (seen.reserved.get(s) !== (m.reserved.get(s) ?? 0) || seen.used.get(s) !== (m.used.get(s) ?? 0)) {
      return `${s}: Redis used ${seen.used.get(s)} reserved ${seen.reserved.get(s)}, model used ${m.used.get(s) ?? 0} reserved ${m.reserved.get(s) ?? 0}`;
    }
    if (seen.limit.get(s) !== (m.limit.get(s) ?? null)) return `${s}: Redis limit ${seen.limit.get(s)}, model ${m.limit.get(s)}`;
  }
  return null;
}

async function check(org: Org, cmds: Cmd[]): Promise<void> {
  const r = run++;
  const projects = Array.from({ length: NP }, (_, i) => `r${r}p${i}`);
  const users = Array.from({ length: NU }, (_, i) => `r${r}u${i}`);
  const pScope = (i: number) => `project:${projects[i]}`;
  const uScope = (i: number) => `user-day:${users[i]}`;
  const scopes = [...projects.map((_, i) => pScope(i)), ...users.map((_, i) => uScope(i))];
  let model = new WakeModel();
  const base = new Map<string, number>();
  const adjust = new Map<string, number>();
  const setLimit = (s: string, limit: number | null, manual: boolean) => {
    if (limit === null) base.delete(s);
    else base.set(s, limit);
    if (limit === null || !manual) model.manual.delete(s);
    else model.manual.add(s);
    if (limit === null) model.limit.delete(s);
    else model.limit.set(s, limit + (adjust.get(s) ?? 0));
    model.signal(s);
  };
  const log: string[] = [];
  const fail = (what: string): never => {
    throw new Error(`${what}\nafter:\n  ${log.join('\n  ')}`);
  };
  const release = (manual: boolean) => (manual ? 'manual' : 'auto') as 'manual' | 'auto';
  try {
    for (const [i, b] of org.budgets.entries()) {
      await budgets.set(projects[i]!, b.limit, ops, null, { release: release(b.manual), period: i === 0 ? 'none' : 'month' });
      setLimit(pScope(i), b.limit, b.manual);
    }
    for (const [i, q] of org.quotas.entries()) {
      if (!q) continue;
      await budgets.setQuota(users[i]!, { daily: { limitGpuMs: q.limit, release: release(q.manual) } }, ops, null);
      setLimit(uScope(i), q.limit, q.manual);
    }
    let order = 0;
    const ids: string[] = [];
    const pick = (p: number, state: MJob['state']): MJob | null => {
      const js = [...model.jobs.values()].filter((j) => j.state === state);
      return js.length > 0 ? js[p % js.length]! : null;
    };
    let before = await look(ids, scopes);
    for (const cmd of cmds.flatMap((c): Cmd[] => (c.w ? [c, { c: 'wake' }] : [c]))) {
      log.push(JSON.stringify(cmd));
      let outcomes: WakeModel[] | null = null;
      let overridden: string | null = null;
      if (cmd.c === 'submit') {
        order++;
        const id = `r${r}j${order}`;
        const j: MJob = { id, order, amount: cmd.amount, scopes: [pScope(cmd.project), uScope(cmd.user)], state: 'held', lines: new Set() };
        ids.push(id);
        const [out] = await t.accounting.reserveMany([{ jobId: id, order, amountGpuMs: j.amount, scopes: j.scopes, meta: { project: projects[cmd.project]!, user: users[cmd.user]!, gpus: 1 } }], NOW);
        const want = model.submit(j);
        log.push(`  -> ${id} (${j.amount} on ${j.scopes.join('+')}): ${out!.kind}`);
        if (out!.kind !== want) fail(`${id}: Redis ${out!.kind}, model ${want}`);
      } else if (cmd.c === 'settle') {
        const j = pick(cmd.pick, 'reserved');
        if (!j) continue;
        const actual = { zero: 0, below: Math.floor(j.amount / 2), equal: j.amount, above: j.amount + 2 }[cmd.how];
        const res = (await t.accounting.reservation(j.id))!;
        await t.accounting.settle(j.id, res.scopes, actual, 'settle', NOW);
        model.settle(j, actual);
        log.push(`  -> ${j.id} settled at ${actual} of ${j.amount}`);
      } else if (cmd.c === 'release' || cmd.c === 'releaseProject') {
        let chosen: MJob[];
        let admitted: string[];
        if (cmd.c === 'release') {
          const j = pick(cmd.pick, 'held');
          if (!j) continue;
          chosen = [j];
          admitted = (await held.release({ ids: [j.id] }, ops)).admitted;
        } else {
          chosen = [...model.jobs.values()].filter((x) => x.state === 'held' && x.scopes[0] === pScope(cmd.project)).sort((a, b) => a.order - b.order);
          admitted = (await held.release({ project: projects[cmd.project]! }, ops)).admitted;
        }
        const want = model.release(chosen.map((x) => x.id));
        log.push(`  -> released [${admitted}] of [${chosen.map((x) => x.id)}]`);
        if (!same(admitted, want)) fail(`release admitted: Redis [${admitted}], model [${want}]`);
      } else if (cmd.c === 'override') {
        const j = pick(cmd.pick, 'held');
        if (!j) continue;
        await held.override(j.id, ops, null);
        model.override(j);
        overridden = j.id;
        log.push(`  -> ${j.id} overridden`);
      } else if (cmd.c === 'cancel') {
        const j = pick(cmd.pick, 'held');
        if (!j) continue;
        await held.cancel(j.id, ops, 'model');
        model.cancel(j);
        log.push(`  -> ${j.id} cancelled`);
      } else if (cmd.c === 'budget') {
        await budgets.set(projects[cmd.project]!, cmd.limit, ops, null, { release: release(cmd.manual) });
        setLimit(pScope(cmd.project), cmd.limit, cmd.manual);
      } else if (cmd.c === 'quota') {
        await budgets.setQuota(users[cmd.user]!, { daily: cmd.limit === null ? null : { limitGpuMs: cmd.limit, release: release(cmd.manual) } }, ops, null);
        setLimit(uScope(cmd.user), cmd.limit, cmd.manual);
      } else if (cmd.c === 'adjust') {
        const s = pScope(cmd.project);
        await budgets.adjust(projects[cmd.project]!, cmd.delta, ops, null);
        adjust.set(s, (adjust.get(s) ?? 0) + cmd.delta);
        model.limit.set(s, base.get(s)! + adjust.get(s)!);
        model.signal(s);
      } else {
        const reports = await race();
        outcomes = model.quiescent();
        log.push(`  -> woken: ${reports.map((x) => x.admitted).join(' + ')} (model: ${outcomes.length} possible outcomes)`);
      }

      const seen = await look(ids, scopes);
      // Judged before the model is asked: they hold whatever order the wakers took.
      checkInvariants(model, before, seen, overridden, scopes, fail, outcomes !== null);
      if (outcomes) {
        const match = outcomes.find((m) => differs(m, seen, scopes) === null);
        if (!match) fail(`no outcome of the model is what Redis holds after the wake; closest: ${differs(outcomes[0]!, seen, scopes)}`);
        model = match!;
        if (seen.wake.length > 0) fail(`wake set not empty after the wakers drained: [${seen.wake}]`);
      } else {
        const d = differs(model, seen, scopes);
        if (d) fail(d);
        const signals = [...model.signals.keys()].sort();
        if (!same(seen.wake, signals)) fail(`wake set: Redis [${seen.wake}], model [${signals}]`);
      }
      before = seen;
    }
  } finally {
    await unlinkMatching(t.redis, `${t.accounting.keys.prefix}*`);
  }
}

/** The invariants, judged from what Redis holds (the model gives only each job's amount and scopes). */
function checkInvariants(m: WakeModel, before: Seen, seen: Seen, overridden: string | null, scopes: string[], fail: (what: string) => never, drained: boolean): void {
  for (const id of seen.state.keys()) {
    const n = seen.reserveEntries.get(id) ?? 0;
    const admitted = admittedStates.has(seen.state.get(id)!);
    if (n > 1 || n !== (admitted ? 1 : 0)) fail(`${id} (${seen.state.get(id)}) has ${n} reserve entries in the ledger`);
  }
  const now = [...seen.state.keys()].filter((id) => seen.state.get(id) === 'reserved' && before.state.get(id) !== 'reserved' && before.state.get(id) !== 'settled');
  const newlyAdmitted = now.map((id) => m.jobs.get(id)!);
  // Within a step reservations only grow and nothing else moves, so the last admission into a scope saw this sum.
  for (const j of newlyAdmitted) {
    if (j.id === overridden) continue;
    for (const s of j.scopes) {
      const limit = seen.limit.get(s);
      if (limit !== null && limit !== undefined && seen.used.get(s)! + seen.reserved.get(s)! > limit) {
        fail(`${s}: used ${seen.used.get(s)} + reserved ${seen.reserved.get(s)} passes its limit ${limit} after ${j.id} was admitted`);
      }
    }
  }
  if (!drained) return;
  // Liveness: nothing release would admit is left waiting, but for jobs in a manual line.
  const inLine = (id: string) => scopes.filter((s) => seen.lines.get(s)!.includes(id));
  for (const [id, state] of seen.state) {
    if (state !== 'held') continue;
    const j = m.jobs.get(id)!;
    const lines = inLine(id);
    if (lines.some((l) => m.manual.has(l))) continue;
    const behind = j.scopes.some((s) => seen.lines.get(s)!.some((o) => m.jobs.get(o)!.order < j.order));
    const fits = j.scopes.every((s) => seen.limit.get(s) === null || seen.used.get(s)! + seen.reserved.get(s)! + j.amount <= seen.limit.get(s)!);
    if (!behind && fits) fail(`${id} (${j.amount} on ${j.scopes.join('+')}) waits in [${lines}] though it fits and is first: the wakers left it`);
  }
}

describe('the waker against a reference model', () => {
  it('admits each job once, oldest first, within limits, and leaves nothing that fits waiting', async () => {
    await fc.assert(fc.asyncProperty(orgArb, fc.array(cmdArb, { minLength: 20, maxLength: 25 }), check), { numRuns: 100 });
  }, 300_000);

  // Two jobs of one project and user: the older waits for the project, the newer behind it. Room in the
  // project, none in the user's day: the older moves to the day's line, the newer stays behind it. The
  // day's quota is raised: the older starts, and leaves a day line nobody else is in, so no line is
  // signalled; the newer, first in its project line and fitting both scopes, must start all the same.
  it('wakes a job whose older neighbour left the line of another scope it touches', async () => {
    await check({ budgets: [10, 10].map((limit) => ({ limit, manual: false })), quotas: [null, { limit: 10, manual: false }] }, [
      { c: 'submit', project: 0, user: 0, amount: 8 },
      { c: 'submit', project: 0, user: 1, amount: 3 },
      { c: 'submit', project: 0, user: 1, amount: 1 },
      { c: 'quota', user: 1, limit: 2, manual: false },
      { c: 'settle', pick: 0, how: 'zero' },
      { c: 'wake' },
      { c: 'quota', user: 1, limit: 5, manual: false },
      { c: 'wake' },
    ]);
  });
});
