/**
 * The reference model of held jobs and the waker (test/wake-model.test.ts),
 * written from docs/jobs.md ("Held jobs: first in, first out, per scope" and
 * "Held jobs start when they fit"), not from the scripts:
 *
 *   - a job is admitted only if it fits every scope it touches and no older
 *     held job waits in the line of any of them; otherwise it waits in the
 *     lines of what it misses and of where an older job waits;
 *   - release decides jobs in the order given: one with an older job in a
 *     line of a scope it touches stays, and waits in the first such line
 *     too; one that still does not fit moves to
 *     the lines of what it misses; otherwise it is admitted, all or nothing;
 *   - room appearing signals the scopes concerned (a settle under the
 *     estimate, a job leaving a line, a limit set, removed or adjusted); the
 *     waker decides the first job of each signalled line again, as release
 *     does, then 8, 64, … more while every one decided starts, unless the
 *     line is manual, stopping at a job that also waits in a manual line.
 *     Each of those steps is its own release call: the other waker's steps
 *     may fall between them.
 *
 * Which signalled line a waker takes next is not fixed, nor how two wakers'
 * steps interleave, so a wake step has a set of outcomes: `quiescent`
 * explores every order. A step reads its line's first jobs and decides
 * them at once: release.lua decides in 'wake' mode only jobs still in the
 * line woken and in no manual line, so a read made stale by the other
 * waker only ends a turn early, with the line signalled again by the job
 * that left it (test/wake-stale.test.ts replays two such reads).
 */

/** Two wakers race in the test: at most two lines' turns are under way at once. */
const WAKERS = 2;

/** A waker's turn at a line under way: the next step decides up to `n` of its first jobs. */
interface Turn {
  line: string;
  n: number;
}

export interface MJob {
  id: string;
  order: number;
  amount: number;
  /** Scope bases it touches: its project and its user's day. */
  scopes: string[];
  state: 'held' | 'reserved' | 'settled' | 'cancelled';
  lines: Set<string>;
}

export class WakeModel {
  /** Effective limit per scope (limit + adjustments); absent: no limit (an optional scope). */
  limit = new Map<string, number>();
  manual = new Set<string>();
  used = new Map<string, number>();
  reserved = new Map<string, number>();
  jobs = new Map<string, MJob>();
  /** Signalled lines, with how many wakes are due (a line taken by a waker and signalled again is due twice). */
  signals = new Map<string, number>();
  /** Turns under way (quiescent only). */
  turns: Turn[] = [];
  /** Lines signalled since this was last emptied (by quiescent, around one step). */
  fresh: string[] = [];

  clone(): WakeModel {
    const m = new WakeModel();
    m.limit = new Map(this.limit);
    m.manual = new Set(this.manual);
    m.used = new Map(this.used);
    m.reserved = new Map(this.reserved);
    m.signals = new Map(this.signals);
    m.turns = this.turns.map((t) => ({ ...t }));
    for (const [id, j] of this.jobs) m.jobs.set(id, { ...j, lines: new Set(j.lines) });
    return m;
  }

  /** What a wake may change: job states, lines, reservations, signals. */
  key(): string {
    const jobs = [...this.jobs.values()].map((j) => `${j.id}:${j.state}:${[...j.lines].sort().join('+')}`);
    const res = [...this.reserved].sort().map(([s, n]) => `${s}=${n}`);
    const sig = [...this.signals].sort().map(([s, n]) => `${s}*${n}`);
    const turns = this.turns.map((t) => `${t.line}@${t.n}`).sort();
    return `${jobs.join(',')}|${res.join(',')}|${sig.join(',')}|${turns.join(',')}`;
  }

  sum(s: string): number {
    return (this.used.get(s) ?? 0) + (this.reserved.get(s) ?? 0);
  }

  line(s: string): MJob[] {
    return [...this.jobs.values()].filter((j) => j.state === 'held' && j.lines.has(s)).sort((a, b) => a.order - b.order);
  }

  misses(j: MJob): string[] {
    return j.scopes.filter((s) => this.limit.has(s) && this.sum(s) + j.amount > this.limit.get(s)!);
  }

  /** Scopes it touches where an older held job waits. */
  behind(j: MJob): string[] {
    return j.scopes.filter((s) => this.line(s).some((o) => o.order < j.order));
  }

  signal(s: string): void {
    this.fresh.push(s);
    if (!this.signals.has(s)) this.signals.set(s, 1);
  }

  private admit(j: MJob): string[] {
    for (const s of j.scopes) this.reserved.set(s, (this.reserved.get(s) ?? 0) + j.amount);
    const left = [...j.lines];
    j.state = 'reserved';
    j.lines.clear();
    return left;
  }

  /** A new job, the newest of all (one reserve call). */
  submit(j: MJob): 'reserved' | 'held' {
    this.jobs.set(j.id, j);
    const lines = new Set([...this.misses(j), ...this.behind(j)]);
    if (lines.size === 0) {
      this.admit(j);
      return 'reserved';
    }
    j.lines = lines;
    return 'held';
  }

  settle(j: MJob, actual: number): void {
    for (const s of j.scopes) {
      this.used.set(s, (this.used.get(s) ?? 0) + actual);
      this.reserved.set(s, this.reserved.get(s)! - j.amount);
    }
    j.state = 'settled';
    if (actual < j.amount) this.wakeNonEmpty(j.scopes);
  }

  /** Signal the lines left that still have someone in them. */
  private wakeNonEmpty(left: string[]): void {
    for (const l of left) if (this.line(l).length > 0) this.signal(l);
  }

  cancel(j: MJob): void {
    const left = [...j.lines];
    j.state = 'cancelled';
    j.lines.clear();
    this.wakeNonEmpty(left);
  }

  override(j: MJob): void {
    this.wakeNonEmpty(this.admit(j));
  }

  /** release.lua in 'fifo' mode (or 'wake': stopping after the first job that stays held): each held job in the order given; the ids admitted. */
  release(ids: string[], stopAtFirstHeld = false): string[] {
    const admitted: string[] = [];
    const left: string[] = [];
    for (const id of ids) {
      const j = this.jobs.get(id)!;
      if (j.state !== 'held') continue;
      const behind = this.behind(j);
      if (behind.length > 0) {
        // It waits in the first such line too, so that line's signal reaches it.
        j.lines.add(behind[0]!);
        if (stopAtFirstHeld) break;
        continue;
      }
      const short = this.misses(j);
      if (short.length === 0) {
        left.push(...this.admit(j));
        admitted.push(id);
        continue;
      }
      left.push(...[...j.lines].filter((l) => !short.includes(l)));
      j.lines = new Set(short);
      if (stopAtFirstHeld) break;
    }
    this.wakeNonEmpty([...new Set(left)]);
    return admitted;
  }

  /**
   * One step of a waker's turn at line `t.line`: its first `t.n` jobs, up to
   * the first that also waits in a manual line. The next step (8, 64, … as
   * many) or null when the turn is over: a job decided stays, or the line
   * had fewer.
   */
  step(t: Turn): Turn | null {
    if (this.manual.has(t.line)) return null;
    const ids = this.line(t.line).map((j) => j.id).slice(0, t.n);
    const stop = ids.findIndex((id) => [...this.jobs.get(id)!.lines].some((l) => l !== t.line && this.manual.has(l)));
    const take = stop < 0 ? ids : ids.slice(0, stop);
    if (take.length === 0) return null;
    if (this.release(take, true).length < take.length || take.length < t.n) return null;
    return { line: t.line, n: Math.min(t.n * 8, 500) };
  }

  /**
   * Every state the wakers may leave once no signal is left and no turn is
   * under way, over every order of taking the signals and of interleaving
   * the steps of two turns. A line signalled while it is due already may be
   * due twice (a waker took it and has not decided it yet): both are
   * explored.
   */
  quiescent(budget = 50_000): WakeModel[] {
    const out = new Map<string, WakeModel>();
    const seen = new Set<string>();
    const stack: WakeModel[] = [this];
    /** `m` after one step of `t` (the turn's i-th, or a new one: its signal taken), and the same with what it signalled that was due already due once more. */
    const next = (m: WakeModel, t: Turn, i: number | null, popped: string | null) => {
      const n = m.clone();
      if (popped !== null) {
        const due = n.signals.get(popped)!;
        if (due > 1) n.signals.set(popped, due - 1);
        else n.signals.delete(popped);
      }
      n.fresh = [];
      const after = n.step(t);
      if (i !== null) n.turns.splice(i, 1);
      if (after) n.turns.push(after);
      stack.push(n);
      const again = [...new Set(n.fresh)].filter((l) => m.signals.has(l) && (l !== popped || m.signals.get(l)! > 1));
      if (again.length > 0) {
        const twice = n.clone();
        // Due at most once per waker holding it, and once more in the wake set.
        for (const l of again) twice.signals.set(l, Math.min(WAKERS + 1, twice.signals.get(l)! + 1));
        stack.push(twice);
      }
    };
    while (stack.length > 0) {
      const m = stack.pop()!;
      const k = m.key();
      if (seen.has(k)) continue;
      seen.add(k);
      if (seen.size > budget) throw new Error(`model: more than ${budget} states to explore`);
      if (m.signals.size === 0 && m.turns.length === 0) {
        out.set(k, m);
        continue;
      }
      m.turns.forEach((t, i) => next(m, t, i, null));
      if (m.turns.length < WAKERS) for (const s of m.signals.keys()) next(m, { line: s, n: 1 }, null, s);
    }
    return [...out.values()];
  }

  /** A held job that release would admit now: no older job in a line of its scopes, and it fits. */
  eligible(j: MJob): boolean {
    return j.state === 'held' && this.behind(j).length === 0 && this.misses(j).length === 0;
  }
}
