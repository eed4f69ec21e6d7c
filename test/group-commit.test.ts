/**
 * The group commit on its own (no Redis): one call in flight, what arrives
 * meanwhile goes out together in arrival order, and a batch whose results are
 * still promises (the gatekeeper promoting it) does not hold up the next call.
 */
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../src/group-commit.ts';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
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

  it('sends the next call while a batch is still being carried out, and each caller waits for its own batch', async () => {
    const calls: number[][] = [];
    const carried = [deferred<void>(), deferred<void>()];
    const gc = new GroupCommit<number, string>(async (batch) => {
      const step = carried[calls.length]!;
      calls.push(batch);
      return batch.map((n) => step.promise.then(() => `r${n}`));
    });
    const a = gc.submit(1);
    const b = gc.submit(2);
    const settled: string[] = [];
    void a.then((r) => settled.push(r));
    void b.then((r) => settled.push(r));
    await new Promise((r) => setTimeout(r, 0));
    // The second call went out though the first batch is not carried out yet.
    expect(calls).toEqual([[1], [2]]);
    expect(settled).toEqual([]);
    carried[1]!.resolve();
    await expect(b).resolves.toBe('r2');
    expect(settled).toEqual(['r2']);
    carried[0]!.resolve();
    await expect(a).resolves.toBe('r1');
  });

  it('fails only the callers of a batch whose call or carrying out failed', async () => {
    let n = 0;
    const gc = new GroupCommit<number, number>(async (batch) => {
      n += 1;
      if (n === 1) throw new Error('connection lost');
      if (n === 2) return batch.map(() => Promise.reject(new Error('addBulk failed')));
      return batch;
    });
    const first = gc.submit(1);
    const second = gc.submit(2);
    await expect(first).rejects.toThrow('connection lost');
    await expect(second).rejects.toThrow('addBulk failed');
    await expect(gc.submit(3)).resolves.toBe(3);
  });
});
