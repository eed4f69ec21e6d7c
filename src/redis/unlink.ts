import type { Redis } from 'ioredis';
import { masters } from '../../queues/connection.ts';

/** Delete every key matching a pattern, a SCAN page at a time (rebuild, and tests' own prefixes). */
export async function unlinkMatching(redis: Redis, pattern: string): Promise<void> {
  // SCAN walks one server's keys: on a cluster, each master's in turn.
  for (const node of await masters(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      if (keys.length > 0) {
        // One UNLINK per key: a cluster node refuses one over keys of several slots (CROSSSLOT).
        const p = node.pipeline();
        for (const key of keys) p.unlink(key);
        for (const [err] of (await p.exec()) ?? []) if (err) throw err;
      }
      cursor = next;
    } while (cursor !== '0');
  }
}
