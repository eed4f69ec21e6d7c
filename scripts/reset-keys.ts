/**
 * Delete one deployment's Redis keys: its queues (`<prefix>:*`) and the
 * gatekeeper's counters, reservations, lines and streams (`gk:{<prefix>}:*`),
 * at REDIS_URL with QUEUE_PREFIX. `bash scripts/up.sh reset` and
 * `bash scripts/demo.sh reset` run it (demo.sh also before each demo).
 */
import { createRedis } from '../queues/connection.ts';
import { unlinkMatching } from '../src/redis/unlink.ts';

const prefix = process.env.QUEUE_PREFIX || 'bull';
const redis = createRedis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
try {
  await unlinkMatching(redis, `${prefix}:*`);
  await unlinkMatching(redis, `gk:{${prefix}}:*`);
} finally {
  await redis.quit();
}
