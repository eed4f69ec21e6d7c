/** Configuration from the environment: defaults, units, and clear refusals. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { formatIp } from '../src/net/ip.ts';

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
      // Webhooks reach public addresses only until told otherwise.
      webhookAllowedTargets: { cidrs: [], names: [] },
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
    [{ WEBHOOK_ALLOWED_TARGETS: '10.0.0.1/8' }, 'WEBHOOK_ALLOWED_TARGETS: "10.0.0.1/8" has bits set after the first 8; did you mean 10.0.0.0/8?'],
    [{ WEBHOOK_ALLOWED_TARGETS: '10.0.0.0/33' }, 'WEBHOOK_ALLOWED_TARGETS: "10.0.0.0/33" has a prefix length over 32'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'fd00::/abc' }, 'WEBHOOK_ALLOWED_TARGETS: "fd00::/abc" has a prefix length that is not a whole number from 0 to 128'],
    [{ WEBHOOK_ALLOWED_TARGETS: '127.1' }, 'WEBHOOK_ALLOWED_TARGETS: "127.1" is an IPv4 address in a short, hex or octal spelling; write it as a.b.c.d'],
    [{ WEBHOOK_ALLOWED_TARGETS: '*.corp.example' }, 'WEBHOOK_ALLOWED_TARGETS: "*.corp.example": wildcards are not supported; list each host name'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'http://hooks.corp.example/' }, 'WEBHOOK_ALLOWED_TARGETS: "http://hooks.corp.example/" is a URL; list its host name or address only'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'hooks corp' }, 'WEBHOOK_ALLOWED_TARGETS: "hooks corp" is not a host name, address or CIDR range'],
    [{ WEBHOOK_ALLOWED_TARGETS: '::ffff:10.0.0.0/104' }, 'WEBHOOK_ALLOWED_TARGETS: "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 range; write it as IPv4'],
    // The always-refused cannot be allowed, and saying so beats silently ignoring the entry.
    [{ WEBHOOK_ALLOWED_TARGETS: '127.0.0.1, 169.254.0.0/16' }, 'WEBHOOK_ALLOWED_TARGETS: "169.254.0.0/16" is a link-local address: link-local, cloud metadata, unspecified, multicast, broadcast and reserved targets are always refused and cannot be allowed'],
    [{ WEBHOOK_ALLOWED_TARGETS: '169.254.169.254' }, 'WEBHOOK_ALLOWED_TARGETS: "169.254.169.254" is a link-local address (cloud metadata): link-local, cloud metadata'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'fd00:ec2::254/128' }, 'WEBHOOK_ALLOWED_TARGETS: "fd00:ec2::254/128" is a cloud metadata address (AWS, IPv6)'],
    [{ WEBHOOK_ALLOWED_TARGETS: '100.100.100.200' }, 'WEBHOOK_ALLOWED_TARGETS: "100.100.100.200" is a cloud metadata address (Alibaba Cloud)'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'fe80::/64' }, 'WEBHOOK_ALLOWED_TARGETS: "fe80::/64" is a link-local address'],
    [{ WEBHOOK_ALLOWED_TARGETS: '224.0.0.0/4' }, 'WEBHOOK_ALLOWED_TARGETS: "224.0.0.0/4" is a multicast address'],
    [{ WEBHOOK_ALLOWED_TARGETS: '0.0.0.0' }, 'WEBHOOK_ALLOWED_TARGETS: "0.0.0.0" is an unspecified ("this network") address'],
    [{ WEBHOOK_ALLOWED_TARGETS: 'Metadata.Google.Internal.' }, 'WEBHOOK_ALLOWED_TARGETS: "Metadata.Google.Internal." is a cloud metadata host name'],
  ])('refuses %j, naming the setting', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('takes trusted origins for a proxy that rewrites Host', () => {
    expect(loadConfig({ GATEKEEPER_TRUSTED_ORIGINS: 'https://gk.example.com, http://10.0.0.7:8080' }).trustedOrigins).toEqual(['https://gk.example.com', 'http://10.0.0.7:8080']);
  });

  it('takes webhook targets: CIDRs, single addresses and exact names, normalised', () => {
    const { webhookAllowedTargets: a } = loadConfig({ WEBHOOK_ALLOWED_TARGETS: ' 127.0.0.1, 10.0.0.0/8,fd00::/8 , Hooks.Corp.Example., localhost,, 0.0.0.0/0' });
    expect(a.cidrs.map((c) => `${formatIp(c.bytes)}/${c.prefix}`)).toEqual(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8', '0.0.0.0/0']);
    expect(a.names).toEqual(['hooks.corp.example', 'localhost']);
    expect(Object.isFrozen(a) && Object.isFrozen(a.cidrs) && Object.isFrozen(a.names)).toBe(true);
  });

  it('takes a Redis Cluster node and a tagged prefix', () => {
    expect(loadConfig({ REDIS_CLUSTER: '1', REDIS_URL: 'rediss://gk:secret@10.0.0.5:7000', QUEUE_PREFIX: '{bull}' })).toMatchObject({
      redisCluster: true,
      redisUrl: 'rediss://gk:secret@10.0.0.5:7000',
      queuePrefix: '{bull}',
    });
  });
});
