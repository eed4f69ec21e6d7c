import type { Redis } from 'ioredis';

type Pipeline = ReturnType<Redis['pipeline']>;

/** Items per pipeline: bounds the memory of one round trip (rebuild writes millions of fields). */
const CHUNK = 1_000;

/**
 * Queue one or more commands per item, CHUNK items per pipeline, in order;
 * throws on the first failed command. Returns each item's first reply.
 */
export async function pipelined<T>(redis: Redis, items: T[], add: (p: Pipeline, item: T, index: number) => void): Promise<unknown[]> {
  const out: unknown[] = [];
  for (let i = 0; i < items.length; i += CHUNK) {
    const p = redis.pipeline();
    const firsts = items.slice(i, i + CHUNK).map((item, j) => {
      const first = p.length;
      add(p, item, i + j);
      return first;
    });
    const replies = (await p.exec()) ?? [];
    for (const [err] of replies) if (err) throw err;
    for (const first of firsts) out.push(replies[first]?.[1] ?? null);
  }
  return out;
}
