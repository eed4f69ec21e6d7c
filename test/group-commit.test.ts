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

  it('fails only the callers of a batch whose call failed, and goes on', async () => {
    let n = 0;
    const gc = new GroupCommit<number, number>(async (batch) => {
      n += 1;
      if (n === 1) throw new Error('connection lost');
      return batch;
    });
    const first = gc.submit(1);
    const second = gc.submit(2);
    await expect(first).rejects.toThrow('connection lost');
    await expect(second).resolves.toBe(2);
    await expect(gc.submit(3)).resolves.toBe(3);
  });
});
