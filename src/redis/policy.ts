/**
 * Redis must not evict keys: an evicted counter or reservation is a budget
 * silently forgotten. Refuse to start on any other maxmemory-policy. A Redis
 * that forbids CONFIG (some managed services) gets a warning instead.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { masters } from '../../queues/connection.ts';

export class RedisPolicyError extends Error {}

export async function checkRedisPolicy(redis: Redis, log: Logger): Promise<void> {
  // Each master of a cluster has its own settings (and CONFIG on the cluster
  // client would ask one node at random): every one must be noeviction.
  for (const node of await masters(redis)) {
    const where = redis.isCluster ? ` on cluster node ${node.options.host}:${node.options.port}` : '';
    let policy: string | undefined;
    try {
      const r = (await node.config('GET', 'maxmemory-policy')) as string[];
      policy = r[1];
    } catch {
      log.warn(`cannot read Redis maxmemory-policy${where} (CONFIG disabled?); make sure it is noeviction`);
      continue;
    }
    if (policy && policy !== 'noeviction') {
      const cli = redis.isCluster ? `redis-cli -h ${node.options.host} -p ${node.options.port}` : 'redis-cli';
      throw new RedisPolicyError(
        `Redis maxmemory-policy is "${policy}"${where}; gpu-gatekeeper needs "noeviction" ` +
          `(evicted counters would lose budgets). Run: ${cli} CONFIG SET maxmemory-policy noeviction`,
      );
    }
  }
}
