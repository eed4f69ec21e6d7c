/** Configuration from the environment: defaults, units, and clear refusals. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';

describe('config', () => {
  it('has defaults a newcomer can run with', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      redisCluster: false,
      databaseUrl: undefined,
      port: 3000,
      queuePrefix: 'bull',
      queues: { intake: 'gpu-intake', exec: 'gpu-exec', held: 'gpu-held', rejected: 'gpu-rejected', webhooks: 'gpu-webhooks' },
      roles: ['gatekeeper', 'reconciler', 'scheduler', 'webhooks', 'api'],
      timeZone: 'UTC',
      adminToken: undefined,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ GATEKEEPER_ADMIN_TOKEN: '', DATABASE_URL: '', PORT: '' })).toMatchObject({
      adminToken: undefined,
      databaseUrl: undefined,
      port: 3000,
    });
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT: must be an integer >= 0, got "eighty"'],
    [{ GATEKEEPER_MAX_BATCH: '100000' }, 'GATEKEEPER_MAX_BATCH: must be an integer from 1 to 4096, got "100000"'],
    [{ MAX_GPU_HOURS_PER_JOB: '-5' }, 'MAX_GPU_HOURS_PER_JOB: must be a number > 0 and <= 1000000, got "-5"'],
    [{ MAX_GPU_HOURS_PER_JOB: '1e9' }, 'MAX_GPU_HOURS_PER_JOB: must be a number > 0 and <= 1000000, got "1e9"'],
    [{ SETTLED_RETAIN_SECONDS: '3600' }, 'SETTLED_RETAIN_SECONDS: must cover EXEC_RETAIN_FINISHED_MS + GATEKEEPER_LOCK_MS (at least 86430 s)'],
    [{ GATEKEEPER_ADMIN_TOKEN: 'same-token-0123456789', GATEKEEPER_VIEWER_TOKEN: 'same-token-0123456789' }, 'GATEKEEPER_VIEWER_TOKEN: must differ'],
    [{ INTAKE_QUEUE: 'a:b' }, 'INTAKE_QUEUE: may not contain ":"'],
    [{ GATEKEEPER_ADMIN_TOKEN: 'short' }, 'GATEKEEPER_ADMIN_TOKEN: must be at least 16 characters'],
    [{ GATEKEEPER_ROLES: 'gatekeeper,chef' }, 'GATEKEEPER_ROLES: unknown role(s) chef'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ GATEKEEPER_TIMEZONE: 'Mars/Olympus' }, 'GATEKEEPER_TIMEZONE: must be an IANA time zone'],
    [{ REDIS_CLUSTER: 'yes' }, 'REDIS_CLUSTER: must be 0 (one Redis server) or 1 (a Redis Cluster)'],
    [{ REDIS_CLUSTER: '1' }, 'QUEUE_PREFIX: on Redis Cluster it must carry a hash tag, e.g. {bull} (got "bull")'],
    // Redis hashes the whole key when the first braces are empty: no tag.
    [{ REDIS_CLUSTER: '1', QUEUE_PREFIX: '{}gk{x}' }, 'QUEUE_PREFIX: on Redis Cluster it must carry a hash tag'],
    [{ REDIS_CLUSTER: '1', QUEUE_PREFIX: '{bull}', REDIS_URL: 'redis://10.0.0.5:7000/2' }, 'REDIS_URL: Redis Cluster has database 0 only, got "2"'],
    [{ REDIS_CLUSTER: '1', QUEUE_PREFIX: '{bull}', REDIS_URL: '10.0.0.5:7000' }, 'REDIS_URL: must be a redis:// or rediss:// URL of one cluster node'],
    [{ GATEKEEPER_TRUSTED_ORIGINS: 'https://gk.example.com/dashboard' }, 'GATEKEEPER_TRUSTED_ORIGINS: "https://gk.example.com/dashboard" is not an origin'],
  ])('refuses %j, naming the setting', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('takes trusted origins for a proxy that rewrites Host', () => {
    expect(loadConfig({ GATEKEEPER_TRUSTED_ORIGINS: 'https://gk.example.com, http://10.0.0.7:8080' }).trustedOrigins).toEqual(['https://gk.example.com', 'http://10.0.0.7:8080']);
  });

  it('takes a Redis Cluster node and a tagged prefix', () => {
    expect(loadConfig({ REDIS_CLUSTER: '1', REDIS_URL: 'rediss://gk:secret@10.0.0.5:7000', QUEUE_PREFIX: '{bull}' })).toMatchObject({
      redisCluster: true,
      redisUrl: 'rediss://gk:secret@10.0.0.5:7000',
      queuePrefix: '{bull}',
    });
  });
});
