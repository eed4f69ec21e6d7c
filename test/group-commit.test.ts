/**
 * The group commit on its own (no Redis): one call in flight, what arrives
 * meanwhile goes out together in arrival order, and a failed call fails only
 * its own callers.
 */
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/group-commit.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

describe('GroupCommit', () => {
  it('sends the first request at once and batches the rest, in order, up to the cap', async () => {
    const calls: number[][] = [];
    const first = deferred<void>();
    const gc = new GroupCommit<number, string>(async (batch) => {
      calls.push(batch);
      if (calls.length === 1) await first.promise;
      return batch.map((n) => `r${n}`);
    }, 3);
    const results = [1, 2, 3, 4, 5, 6].map((n) => gc.submit(n));
    expect(calls).toEqual([[1]]);
    first.resolve();
    expect(await Promise.all(results)).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect(calls).toEqual([[1], [2, 3, 4], [5, 6]]);
  });

  it('fails every caller of a failed call and only those, and goes on', async () => {
    const calls: number[][] = [];
    const first = deferred<void>();
    const gc = new GroupCommit<number, number>(async (batch) => {
      calls.push(batch);
      if (calls.length === 1) await first.promise;
      if (calls.length === 2) throw new Error('connection lost');
      return batch;
    });
    const [one, two, three] = [1, 2, 3].map((n) => gc.submit(n));
    first.resolve();
    await expect(one).resolves.toBe(1);
    await expect(two).rejects.toThrow('connection lost');
    await expect(three).rejects.toThrow('connection lost');
    await expect(gc.submit(4)).resolves.toBe(4);
    expect(calls).toEqual([[1], [2, 3], [4]]);
  });
});
