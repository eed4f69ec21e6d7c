/**
 * The group commit on its own (no Redis): one call in flight, what arrives
 * meanwhile goes out together in arrival order, and a failed call fails only
 * its own callers.
 */
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/group-commit.ts';

/**
 * A GroupCommit over numbers whose call records its batch and answers with
 * `answer(batch, n)` (n: the call's number, from 1); the first call stays
 * open until `release()`, so what arrives meanwhile queues up.
 */
function firstCallHeld<Res>(answer: (batch: number[], n: number) => Res[], maxBatch?: number) {
  const calls: number[][] = [];
  let release!: () => void;
  const first = new Promise<void>((r) => (release = r));
  const gc = new GroupCommit<number, Res>(async (batch) => {
    calls.push(batch);
    const n = calls.length;
    if (n === 1) await first;
    return answer(batch, n);
  }, maxBatch);
  return { gc, calls, release };
}

describe('GroupCommit', () => {
  it('sends the first request at once and batches the rest, in order, up to the cap', async () => {
    const { gc, calls, release } = firstCallHeld((batch) => batch.map((n) => `r${n}`), 3);
    const results = [1, 2, 3, 4, 5, 6].map((n) => gc.submit(n));
    expect(calls).toEqual([[1]]);
    release();
    expect(await Promise.all(results)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect(calls).toEqual([[1], [2, 3, 4], [5, 6]]);
  });

  it('fails every caller of a failed call and only those, and goes on', async () => {
    const { gc, calls, release } = firstCallHeld((batch, n) => {
      if (n === 2) throw new Error('connection lost');
      return batch;
    });
    const [one, two, three] = [1, 2, 3].map((n) => gc.submit(n));
    release();
    await expect(one).resolves.toBe(1);
    await expect(two).rejects.toThrow('connection lost');
    await expect(three).rejects.toThrow('connection lost');
    await expect(gc.submit(4)).resolves.toBe(4);
    expect(calls).toEqual([[1], [2, 3], [4]]);
  });
});
