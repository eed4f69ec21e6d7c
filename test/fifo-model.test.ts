/**
 * First in, first out, proven against a model. fast-check drives random
 * interleavings of the scripts' operations (two gatekeepers delivering
 * batches out of submission order, also at the same instant; settle,
 * release, override, cancel, retries, limit changes) on real Redis, and
 * after every step compares what Redis holds with a small reference model
 * written from the rules, not from the scripts:
 *
 *   - a job is admitted only if it fits every scope it touches and no older
 *     job (lower submission order) waits in the line of any of them;
 *   - a job that is held waits in the line of each scope it does not fit and
 *     of each scope where an older job waits;
 *   - release, oldest first: a held job with an older job waiting in a line
 *     of any of its scopes stays, and waits in the first such line too; one
 *     that still does not fit moves to the
 *     lines of the scopes it misses; otherwise it is admitted;
 *   - used + reserved never passes a limit through admission.
 *
 * Compared: each decision (admitted or held), each scope's used and
 * reserved, each line's members and the held set. For two batches sent at
 * once the model tries both orders and takes the one Redis took.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { unlinkMatching } from './support/infra.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { JobMeta, ReserveOutcome } from '../src/accounting/types.ts';

const SCOPES = ['s:a', 's:b', 's:c'] as const;
type Scope = (typeof SCOPES)[number];
const NOW = Date.UTC(2026, 11, 5, 12);
const meta: JobMeta = { project: 'p', user: 'u', gpus: 1 };

interface ModelJob {
  id: string;
  order: number;
  amount: number;
  scopes: Scope[];
  state: 'new' | 'held' | 'reserved' | 'settled' | 'cancelled';
  lines: Set<Scope>;
}

/** The rules, kept as plainly as they can be said. */
class Model {
  limit = new Map<Scope, number>();
  used = new Map<Scope, number>(SCOPES.map((s) => [s, 0]));
  reserved = new Map<Scope, number>(SCOPES.map((s) => [s, 0]));
  jobs = new Map<string, ModelJob>();

  clone(): Model {
    const m = new Model();
    m.limit = new Map(this.limit);
    m.used = new Map(this.used);
    m.reserved = new Map(this.reserved);
    for (const [id, j] of this.jobs) m.jobs.set(id, { ...j, lines: new Set(j.lines) });
    return m;
  }

  line(s: Scope): ModelJob[] {
    return [...this.jobs.values()].filter((j) => j.state === 'held' && j.lines.has(s)).sort((a, b) => a.order - b.order);
  }

  misses(j: ModelJob): Scope[] {
    return j.scopes.filter((s) => this.used.get(s)! + this.reserved.get(s)! + j.amount > this.limit.get(s)!);
  }

  waitsBehind(j: ModelJob): Scope[] {
    return j.scopes.filter((s) => this.line(s).some((o) => o.order < j.order));
  }

  admit(j: ModelJob): void {
    for (const s of j.scopes) this.reserved.set(s, this.reserved.get(s)! + j.amount);
    j.state = 'reserved';
    j.lines.clear();
  }

  /** A gatekeeper's reserve call: each job in the order given. */
  reserve(batch: ModelJob[]): ('reserved' | 'held' | 'unchanged')[] {
    return batch.map((given) => {
      const j = this.jobs.get(given.id)!;
      if (j.state !== 'new') return 'unchanged'; // a retry changes nothing
      const short = this.misses(j);
      const behind = this.waitsBehind(j);
      if (short.length === 0 && behind.length === 0) {
        this.admit(j);
        return 'reserved';
      }
      j.state = 'held';
      j.lines = new Set([...short, ...behind]);
      return 'held';
    });
  }

  releaseAll(): void {
    for (const j of [...this.jobs.values()].filter((x) => x.state === 'held').sort((a, b) => a.order - b.order)) {
      const behind = this.firstBehind(j);
      if (behind) {
        // It waits in that line too, so its signal reaches it when the older job leaves.
        j.lines.add(behind);
        continue;
      }
      const short = this.misses(j);
      if (short.length > 0) j.lines = new Set(short);
      else this.admit(j);
    }
  }

  /** Release asks every scope the job touches, in line there or not, in order: the first with an older job waiting. */
  firstBehind(j: ModelJob): Scope | undefined {
    return j.scopes.find((s) => this.line(s).some((o) => o.order < j.order));
  }
}

type Op =
  | { op: 'submit'; amount: number; scopes: Scope[] }
  | { op: 'deliver'; gk: 0 | 1; picks: number[] }
  | { op: 'race'; picksA: number[]; picksB: number[] }
  | { op: 'settle'; pick: number; actual: number }
  | { op: 'release' }
  | { op: 'override'; pick: number }
  | { op: 'cancel'; pick: number }
  | { op: 'retry'; pick: number }
  | { op: 'limit'; scope: Scope; limit: number };

const scopeSet = fc.subarray([...SCOPES], { minLength: 1 });
const picks = fc.array(fc.nat(50), { minLength: 1, maxLength: 4 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('submit' as const), amount: fc.integer({ min: 1, max: 6 }), scopes: scopeSet }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('deliver' as const), gk: fc.constantFrom(0 as const, 1 as const), picks }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('race' as const), picksA: picks, picksB: picks }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat(50), actual: fc.integer({ min: 0, max: 8 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'release' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('override' as const), pick: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('cancel' as const), pick: fc.nat(50) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('retry' as const), pick: fc.nat(50) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('limit' as const), scope: fc.constantFrom(...SCOPES), limit: fc.integer({ min: 0, max: 15 }) }) },
);
const limitsArb = fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 12 }));

let t: TestEnv;
let run = 0;
beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => {
  await t?.close();
});

/** Run one sequence on fresh keys; fail on the first step where Redis and the model differ. */
async function check(limits: [number, number, number], ops: Op[]): Promise<void> {
  const prefix = `${t.config.queuePrefix}fifo${run++}`;
  const gks = [t.redis, t.connection()].map((r) => new Accounting(r, prefix, 3600, 'UTC'));
  const acc = gks[0]!;
  const model = new Model();
  const log: string[] = [];
  const fail = (what: string) => {
    throw new Error(`${what}\nafter:\n  ${log.join('\n  ')}`);
  };
  const define = async (s: Scope, limit: number) => {
    model.limit.set(s, limit);
    await acc.definitions.define(s, { limitGpuMs: limit, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, thresholds: [], setAt: 0 });
  };
  try {
    for (const [i, s] of SCOPES.entries()) await define(s, limits[i]!);
    let order = 0;
    const pending: ModelJob[] = []; // submitted, not yet delivered
    const delivered: ModelJob[] = [];
    const take = (ps: number[]) => {
      const out: ModelJob[] = [];
      for (const p of ps) if (pending.length > 0) out.push(pending.splice(p % pending.length, 1)[0]!);
      return out.sort((a, b) => a.order - b.order); // a gatekeeper sorts its batch
    };
    const pick = (p: number, state: ModelJob['state']) => {
      const js = delivered.filter((j) => model.jobs.get(j.id)!.state === state);
      return js.length > 0 ? model.jobs.get(js[p % js.length]!.id)! : null;
    };
    const send = (gk: Accounting, batch: ModelJob[]) =>
      gk.reserveMany(batch.map((j) => ({ jobId: j.id, order: j.order, amountGpuMs: j.amount, scopes: [...j.scopes], meta })), NOW);
    const kinds = (outs: ReserveOutcome[]) => outs.map((o) => (o.kind === 'reserved' ? 'reserved' : o.kind === 'held' && !o.retried ? 'held' : 'unchanged'));

    for (const o of ops) {
      log.push(JSON.stringify(o));
      if (o.op === 'submit') {
        order++;
        const j: ModelJob = { id: `j${order}`, order, amount: o.amount, scopes: o.scopes as Scope[], state: 'new', lines: new Set() };
        model.jobs.set(j.id, j);
        pending.push(j);
        continue;
      }
      if (o.op === 'deliver' || o.op === 'retry') {
        const batch = o.op === 'deliver' ? take(o.picks) : delivered.length > 0 ? [delivered[o.pick % delivered.length]!] : [];
        if (batch.length === 0) continue;
        if (o.op === 'deliver') delivered.push(...batch);
        const got = kinds(await send(gks[o.op === 'deliver' ? o.gk : 0]!, batch));
        const want = model.reserve(batch);
        log.push(`  -> ${batch.map((j, k) => `${j.id}(order ${j.order}, ${j.amount} on ${j.scopes.join('+')}): ${got[k]}`).join(', ')}`);
        if (JSON.stringify(got) !== JSON.stringify(want)) fail(`decisions differ: Redis ${JSON.stringify(got)}, model ${JSON.stringify(want)}`);
      } else if (o.op === 'race') {
        const a = take(o.picksA);
        const b = take(o.picksB);
        if (a.length + b.length === 0) continue;
        delivered.push(...a, ...b);
        const [ga, gb] = await Promise.all([send(gks[0]!, a), send(gks[1]!, b)]);
        const got = [...kinds(ga), ...kinds(gb)];
        // Redis ran one call, then the other: the model tries both orders.
        const ab = model.clone();
        const wantAb = [...ab.reserve(a), ...ab.reserve(b)];
        const ba = model.clone();
        const wantBbFirst = ba.reserve(b);
        const wantBa = [...ba.reserve(a), ...wantBbFirst];
        log.push(`  -> race ${[...a, ...b].map((j, k) => `${j.id}(order ${j.order}): ${got[k]}`).join(', ')}`);
        const same = (w: string[]) => JSON.stringify(w) === JSON.stringify(got);
        if (same(wantAb)) Object.assign(model, ab);
        else if (same(wantBa)) Object.assign(model, ba);
        else fail(`racing decisions differ: Redis ${JSON.stringify(got)}, model a-then-b ${JSON.stringify(wantAb)}, b-then-a ${JSON.stringify(wantBa)}`);
      } else if (o.op === 'settle') {
        const j = pick(o.pick, 'reserved');
        if (!j) continue;
        await acc.settle(j.id, [...j.scopes], o.actual, 'settle', NOW);
        for (const s of j.scopes) {
          model.used.set(s, model.used.get(s)! + o.actual);
          model.reserved.set(s, model.reserved.get(s)! - j.amount);
        }
        j.state = 'settled';
      } else if (o.op === 'release') {
        const held = (await acc.heldIds()) as string[];
        await acc.release(held, 'fifo', 'model', NOW);
        model.releaseAll();
      } else if (o.op === 'override') {
        const j = pick(o.pick, 'held');
        if (!j) continue;
        await acc.release([j.id], 'override', 'model', NOW);
        model.admit(j);
      } else if (o.op === 'cancel') {
        const j = pick(o.pick, 'held');
        if (!j) continue;
        await acc.cancel(j.id);
        j.state = 'cancelled';
        j.lines.clear();
      } else {
        await define(o.scope, o.limit);
      }
      await compare(acc, model, fail);
    }
  } finally {
    await unlinkMatching(t.redis, `${acc.keys.prefix}*`);
  }
}

async function compare(acc: Accounting, model: Model, fail: (what: string) => never): Promise<void> {
  for (const s of SCOPES) {
    const c = await acc.readScope(s, NOW);
    if (c.usedGpuMs !== model.used.get(s) || c.reservedGpuMs !== model.reserved.get(s)) {
      fail(`${s}: Redis used ${c.usedGpuMs} reserved ${c.reservedGpuMs}, model used ${model.used.get(s)} reserved ${model.reserved.get(s)}`);
    }
    const line = await t.redis.zrange(acc.keys.line(s), '0', '-1');
    const want = model.line(s).map((j) => j.id);
    if (JSON.stringify(line) !== JSON.stringify(want)) fail(`line of ${s}: Redis [${line}], model [${want}]`);
  }
  const held = [...(await acc.heldIds())].sort();
  const want = [...model.jobs.values()].filter((j) => j.state === 'held').map((j) => j.id).sort();
  if (JSON.stringify(held) !== JSON.stringify(want)) fail(`held: Redis [${held}], model [${want}]`);
}

describe('first in, first out per scope', () => {
  it('matches the reference model over random interleavings, with two gatekeepers racing', async () => {
    await fc.assert(
      fc.asyncProperty(limitsArb, fc.array(opArb, { minLength: 5, maxLength: 40 }), async (limits, ops) => check(limits, ops)),
      { numRuns: 150 },
    );
  });

  it('admits an older job that fits though a newer one already waits (the case reported: 0.1 h, then 1000 h)', async () => {
    // Budget 100, 0.2 used (as 2 of 1000 units); job 1 needs 1, job 2 needs 10,000.
    // Job 2 reaches Redis first (concurrent processing) and is held; job 1 then fits and is first in line.
    await check([1000, 1000, 1000], [
      { op: 'submit', amount: 2, scopes: ['s:a'] },
      { op: 'deliver', gk: 0, picks: [0] },
      { op: 'settle', pick: 0, actual: 2 },
      { op: 'submit', amount: 1, scopes: ['s:a'] },
      { op: 'submit', amount: 10_000, scopes: ['s:a'] },
      { op: 'deliver', gk: 1, picks: [1] },
      { op: 'deliver', gk: 0, picks: [0] },
    ]);
  });
});
