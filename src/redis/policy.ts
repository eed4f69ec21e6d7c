/**
 * Redis must not evict keys: an evicted counter or reservation is a budget
 * silently forgotten. Refuse to start on any other maxmemory-policy. A Redis
 * that forbids CONFIG (some managed services) gets a warning instead.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';

export class RedisPolicyError extends Error {}

export async function checkRedisPolicy(redis: Redis, log: Logger): Promise<void> {
  let policy: string | undefined;
  try {
    const r = (await redis.config('GET', 'maxmemory-policy')) as string[];
    policy = r[1];
  } catch {
    log.warn('cannot read Redis maxmemory-policy (CONFIG disabled?); make sure it is noeviction');
    return;
  }
  if (policy && policy !== 'noeviction') {
    throw new RedisPolicyError(
      `Redis maxmemory-policy is "${policy}"; gpu-gatekeeper needs "noeviction" ` +
        `(evicted counters would lose budgets). Run: redis-cli CONFIG SET maxmemory-policy noeviction`,
    );
  }
}
