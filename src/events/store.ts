/**
 * The event store: reads the events stream through a consumer group, writes
 * each event to Postgres once (the stream id, or the emitter's dedupe key, is
 * unique), and queues one webhook delivery per event and subscribed webhook
 * (the delivery job id is derived from both, so a re-read queues nothing
 * twice). Events leave the stream only by its cap, so other consumer groups
 * can read it too. Runs with the reconciler; a slow webhook never reaches it
 * (deliveries are their own queue and worker). Events trimmed by the
 * stream's cap before it read them are logged and counted
 * (gatekeeper_events_lost_total). An entry Postgres refuses on its own
 * merits, or one that is not an event this version knows, is quarantined
 * (src/streams/dead-letter.ts) and the rest flow on.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { UNIT_SCALE } from '../accounting/pricing.ts';
import { parseCharge } from '../accounting/reserve-wire.ts';
import { chargedView } from '../accounting/admission.ts';
import type { Pool, Queryable } from '../db/pool.ts';
import { eventsByStreamIds, insertEventRows } from '../db/events.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import { StreamConsumer, type StreamConsumerOptions, type StreamEntry } from '../streams/consumer.ts';
import type { StreamGap } from '../streams/gap.ts';
import { deadLetter, type Quarantined } from '../streams/dead-letter.ts';
import { EntryError } from '../streams/poison.ts';
import { printable } from '../text.ts';
import { describeHold, misfitShortfall } from '../accounting/reasons.ts';
import { gpuMsToHours } from '../units.ts';
import { EVENT_TYPES, EVENT_VERSION, type EventData, type EventType, type GatekeeperEvent, type ScopeNumbers } from './types.ts';
import { enqueueDeliveries, listWebhooks, type DeliveryJobData } from './webhooks.ts';

interface Parsed {
  streamId: string;
  type: EventType;
  version: number;
  at: number;
  dedupe: string | null;
  data: EventData[EventType];
}

export class EventStore {
  private readonly consumer: StreamConsumer;
  private readonly deliveries: Queue<DeliveryJobData>;

  constructor(
    redis: Redis,
    streamKey: string,
    private readonly pool: Pool,
    private readonly config: Config,
    private readonly log: Logger,
    opts: Omit<StreamConsumerOptions, 'deleteAfterAck' | 'onGap' | 'onPoison'> & { metrics?: Metrics; onQuarantined?: (q: Quarantined) => Promise<void> | void } = {},
  ) {
    const { metrics, onQuarantined, ...consumerOpts } = opts;
    // The stream is capped (about 100,000 entries): a store that lags that far
    // loses the oldest unread events. Say so loudly; they cannot be fetched again.
    const onGap = (gap: StreamGap) => {
      metrics?.eventsLost.inc(gap.lost);
      log.error(gap, 'event store: events were trimmed from the stream before it read them (it lagged past the cap); they are not stored nor delivered');
    };
    this.consumer = new StreamConsumer(redis, streamKey, 'event-store', log, (e) => this.store(e), {
      blockMs: 200,
      ...consumerOpts,
      onGap,
      onPoison: deadLetter(pool, 'events', log, onQuarantined),
    });
    this.deliveries = new Queue(config.queues.webhooks, { connection: redis, prefix: config.queuePrefix });
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  async stop(): Promise<void> {
    await this.consumer.stop();
    await this.deliveries.close();
  }

  drainOnce(): Promise<number> {
    return this.consumer.drainOnce();
  }

  private async store(entries: StreamEntry[]): Promise<void> {
    await insertEvents(this.pool, entries);
    await deliverStored(this.pool, this.deliveries, this.config, entries.map((e) => e.id));
  }
}

/**
 * Store events from stream entries once each (the stream id is unique). An
 * entry that is not an event this version knows throws EntryError (it is
 * quarantined, not dropped). `repair` (an admin's replay) writes text
 * Postgres cannot hold as visible escapes.
 */
export async function insertEvents(db: Queryable, entries: StreamEntry[], opts: { repair?: boolean } = {}): Promise<void> {
  const events = entries.map((e) => {
    let p: Parsed | null;
    try {
      p = parse(e);
    } catch (err) {
      throw new EntryError(`event entry ${e.id} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    if (!p) throw new EntryError(`event entry ${e.id} is not an event this version knows (type ${JSON.stringify(printable(String(fieldOf(e, 'type'))))})`);
    return opts.repair ? { ...p, data: repairedData(p.data), dedupe: p.dedupe === null ? null : printable(p.dedupe) } : p;
  });
  if (events.length === 0) return;
  await insertEventRows(db, events.map((e) => ({ streamId: e.streamId, dedupeKey: e.dedupe, type: e.type, version: e.version, at: isoAt(e), data: e.data })));
}

/**
 * Queue one webhook delivery per stored event (by stream id) and subscribed
 * webhook; new and already stored alike (a re-read after a crash): the
 * delivery job ids dedupe.
 */
export async function deliverStored(db: Queryable, deliveries: Queue<DeliveryJobData>, config: Pick<Config, 'webhookAttempts'>, streamIds: string[]): Promise<void> {
  if (streamIds.length === 0) return;
  const hooks = await listWebhooks(db);
  if (hooks.length === 0) return;
  const items: DeliveryJobData[] = [];
  for (const r of await eventsByStreamIds(db, streamIds)) {
    const event: GatekeeperEvent = { id: r.id, type: r.type as EventType, version: r.version, at: r.at.toISOString(), data: r.data as EventData[EventType] };
    const body = JSON.stringify(event);
    for (const h of hooks) {
      if (h.types.length === 0 || h.types.includes(r.type)) items.push({ eventId: event.id, webhookId: h.id, url: h.url, type: r.type, body });
    }
  }
  if (items.length > 0) await enqueueDeliveries(deliveries, config, items);
}

const fieldOf = (e: StreamEntry, name: string) => {
  for (let i = 0; i + 1 < e.fields.length; i += 2) if (e.fields[i] === name) return e.fields[i + 1];
  return undefined;
};

/** The event's time as ISO text; a time that is not one is the entry's fault. */
function isoAt(e: Parsed): string {
  if (!Number.isFinite(e.at)) throw new EntryError(`event entry ${e.streamId} has no valid time`);
  return new Date(e.at).toISOString();
}

/** Every string in an event's data made printable (a repairing replay). */
function repairedData(v: unknown): EventData[EventType] {
  const walk = (x: unknown): unknown =>
    typeof x === 'string' ? printable(x) : Array.isArray(x) ? x.map(walk) : x && typeof x === 'object' ? Object.fromEntries(Object.entries(x).map(([k, y]) => [printable(k), walk(y)])) : x;
  return walk(v) as EventData[EventType];
}

/** A stream entry as an event, in the documented shape; null if it is not one. */
export function parse(e: StreamEntry): Parsed | null {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < e.fields.length; i += 2) f[e.fields[i]!] = e.fields[i + 1]!;
  const type = f.type as EventType;
  if (!EVENT_TYPES.includes(type)) return null;
  const base = { streamId: e.id, type, version: Number(f.v ?? EVENT_VERSION), at: Number(f.at), dedupe: f.dedupe ?? null };
  // Events emitted by a process carry their data as JSON already.
  if (f.data !== undefined) return { ...base, data: JSON.parse(f.data) as EventData[EventType] };
  const meta = f.meta ? (JSON.parse(f.meta) as { project: string; user: string; jobType?: string }) : null;
  switch (type) {
    case 'THRESHOLD_CROSSED':
      return { ...base, data: { ...numbers(f), thresholdPercent: Number(f.threshold), jobId: f.jobId! } };
    case 'BUDGET_EXHAUSTED':
      return { ...base, data: { ...numbers(f), jobId: f.jobId! } };
    case 'JOB_HELD': {
      const amount = Number(f.amount);
      const shortfalls = (f.misfits ?? '').split(';').filter(Boolean).map((m) => misfitShortfall(m.split('|'), amount));
      const reason = describeHold({ shortfalls, ahead: Number(f.ahead ?? 0), line: f.line || undefined });
      return {
        ...base,
        data: { jobId: f.jobId!, project: meta!.project, user: meta!.user, ...(meta!.jobType ? { jobType: meta!.jobType } : {}), estimatedGpuHours: gpuMsToHours(amount), reason },
      };
    }
    case 'JOB_RELEASED':
    case 'JOB_OVERRIDDEN':
      return {
        ...base,
        data: {
          jobId: f.jobId!, project: meta!.project, user: meta!.user, reservedGpuHours: gpuMsToHours(Number(f.amount)), by: f.note ?? '',
          // Its estimate's charge at the price it was admitted at (absent in events from before rates).
          ...(parseCharge(f.charge) ? { charged: chargedView(parseCharge(f.charge)!) } : {}),
        },
      };
    default:
      return null;
  }
}

const UNIT_OF_LETTER = { h: 'gpuHours', u: 'units', d: 'usd' } as const;

/**
 * A scope's numbers as the script gave them, in the limit's unit (f.unit:
 * h, u or d; absent before units): `used`, `reserved`, `limit` and
 * `remaining` as decimals of that unit, and for a limit in GPU hours the
 * GPU-ms and GPU-hour fields as before units.
 */
function numbers(f: Record<string, string>): ScopeNumbers {
  const [used, reserved, limit] = [Number(f.used), Number(f.reserved), Number(f.limit)];
  const remaining = limit - used - reserved;
  const unit = UNIT_OF_LETTER[(f.unit ?? 'h') as keyof typeof UNIT_OF_LETTER] ?? 'gpuHours';
  const d = (n: number) => n / UNIT_SCALE[unit];
  const common = { scope: f.scope!, counterId: f.counterId!, unit, used: d(used), reserved: d(reserved), limit: d(limit), remaining: d(remaining) };
  if (unit !== 'gpuHours') return common;
  return {
    ...common,
    usedGpuMs: used,
    reservedGpuMs: reserved,
    limitGpuMs: limit,
    remainingGpuMs: remaining,
    usedGpuHours: gpuMsToHours(used),
    reservedGpuHours: gpuMsToHours(reserved),
    limitGpuHours: gpuMsToHours(limit),
    remainingGpuHours: gpuMsToHours(remaining),
  };
}
