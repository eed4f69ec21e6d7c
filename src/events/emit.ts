/**
 * Events a process (not a script) raises, appended to the events stream the
 * scripts append to (includes/scopes.lua emit()), in the same shape.
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';
import { EVENTS_STREAM_MAXLEN, EVENT_VERSION } from '../redis/wire.ts';
import type { EventData, EventType } from './types.ts';

export class EventLog {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /**
   * Append an event that a process (not a script) emits to the events stream.
   * `dedupeKey` makes a repeated emit (a retried job, two schedulers) store
   * and deliver once.
   */
  async emit<T extends EventType>(type: T, data: EventData[T], dedupeKey?: string, at = Date.now()): Promise<void> {
    await this.redis.xadd(this.keys.events, 'MAXLEN', '~', String(EVENTS_STREAM_MAXLEN), '*', 'type', type, 'v', String(EVENT_VERSION), 'at', String(at),
      'data', JSON.stringify(data), ...(dedupeKey ? ['dedupe', dedupeKey] : []));
  }
}
