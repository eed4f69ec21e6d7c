/**
 * The events stream is capped (about 100,000 entries); an event store that
 * lags that far loses the oldest unread events, which Redis skips without a
 * word. The store must notice: an error in its log and gatekeeper_events_lost_total on
 * /metrics (real Redis and Postgres; the cap is played by an exact XTRIM).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { EventStore } from '../src/events/store.ts';
import { Metrics } from '../src/metrics.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => {
  await t?.close();
});

describe('event store', () => {
  it('logs and counts events trimmed from the stream before it read them, once', async () => {
    const metrics = new Metrics();
    const logged: { msg: string; lost?: number; lastReadId?: string }[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const store = new EventStore(t.connection(), t.accounting.keys.events, t.pool, t.config, log, { metrics });
    const emit = async (n: number) => {
      for (let i = 0; i < n; i++) await t.accounting.events.emit('QUOTA_RESET', { periods: ['day'], labels: {}, releasedJobs: i });
    };
    const stored = async () => Number((await t.pool.query('SELECT count(*) AS n FROM events')).rows[0].n);
    const counter = async (name: string) => Number((await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0);

    await emit(3);
    while ((await store.drainOnce()) > 0);
    expect(await stored()).toBe(3);

    // 10 more while the store is behind; the cap keeps only the newest 4.
    await emit(10);
    await t.redis.xtrim(t.accounting.keys.events, 'MAXLEN', 4);
    while ((await store.drainOnce()) > 0);
    expect(await stored()).toBe(7);
    const gaps = logged.filter((l) => l.msg.includes('trimmed from the stream before it read them'));
    expect(gaps).toHaveLength(1);
    expect(gaps[0]!.lost).toBe(6);
    expect(await counter('gatekeeper_events_lost_total')).toBe(6);

    // Caught up: nothing more to report.
    await emit(2);
    while ((await store.drainOnce()) > 0);
    expect(await stored()).toBe(9);
    expect(logged.filter((l) => l.msg.includes('trimmed from the stream'))).toHaveLength(1);
    expect(await counter('gatekeeper_events_lost_total')).toBe(6);
    await store.stop();
  });
});
