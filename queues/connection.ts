import { Redis, type RedisOptions } from 'ioredis';

/**
 * Redis connections. BullMQ workers block on Redis, so their connections need
 * `maxRetriesPerRequest: null`; we use the same settings for every connection
 * so a Redis restart is ridden out rather than turned into job failures.
 */
export function createRedis(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    ...extra,
  });
}
