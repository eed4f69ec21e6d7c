import { Cluster, Redis, type RedisOptions } from 'ioredis';

/**
 * Redis connections. BullMQ workers block on Redis, so their connections need
 * `maxRetriesPerRequest: null`; we use the same settings for every connection
 * so a Redis restart is ridden out rather than turned into job failures.
 */
const SETTINGS: RedisOptions = { maxRetriesPerRequest: null, enableReadyCheck: true };

/**
 * A connection to the Redis at `url`, or with `cluster`, to the Redis Cluster
 * that the node at `url` belongs to (the client asks it for the others).
 *
 * A cluster connection is an ioredis `Cluster`, returned typed as `Redis`:
 * this cast, and the one in masters(), are the only ones. Cluster has the
 * same command methods (both implement ioredis's RedisCommander, with
 * defineCommand, pipeline, multi and quit), routes each command by its
 * key's slot, and BullMQ takes either; so every module keeps its `Redis`
 * parameter and works on both. What a cluster cannot do like one server is a
 * keyless command (SCAN, CONFIG): it reaches one node. The few callers that
 * need one on every node use masters(). A `Redis | Cluster` union through
 * twenty modules would not have caught that (SCAN type-checks on both).
 */
export function createRedis(url: string, opts: { cluster?: boolean } = {}): Redis {
  if (!opts.cluster) return new Redis(url, SETTINGS);
  // Credentials and TLS go to every node, not just this seed (ioredis gives
  // the nodes it discovers only the redisOptions).
  const u = new URL(url);
  const node: RedisOptions = { ...SETTINGS };
  if (u.username) node.username = decodeURIComponent(u.username);
  if (u.password) node.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') node.tls = {};
  const cluster = new Cluster([{ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) }], {
    enableReadyCheck: true,
    redisOptions: node,
  });
  return cluster as unknown as Redis;
}

/**
 * The servers that hold keys: the connection itself, or each master of a
 * cluster (once the client has learnt the slot map; waits for it).
 */
export async function masters(redis: Redis): Promise<Redis[]> {
  if (!redis.isCluster) return [redis];
  const cluster = redis as unknown as Cluster;
  if (cluster.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        cluster.off('ready', ready).off('end', end);
        if (err) reject(err);
        else resolve();
      };
      const ready = () => done();
      const end = () => done(new Error('the Redis Cluster connection was closed'));
      if (cluster.status === 'end') return end();
      cluster.once('ready', ready).once('end', end);
    });
  }
  return cluster.nodes('master');
}
