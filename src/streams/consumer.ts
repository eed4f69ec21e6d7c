/**
 * Reads a Redis stream through a consumer group, at least once: entries are
 * handed to `handle` in batches and acknowledged only after it succeeds, so
 * `handle` must be idempotent (the ledger and event store insert with
 * ON CONFLICT DO NOTHING). A consumer killed between handling and XACK has
 * its entries re-read (its own pending list on restart) or claimed by another
 * consumer after `claimIdleMs`. A failing `handle` (Postgres down) acknowledges
 * nothing; the loop backs off and retries.
 *
 * One bad entry never blocks the rest: when a batch fails because of an
 * entry (poison.ts tells that from a store that is down), the batch is split
 * in halves until the entries that fail alone are found; each goes to
 * `onPoison` (the dead-letter table), and everything else is handled as usual.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { GapWatch, type StreamGap } from './gap.ts';
import { isEntryFault } from './poison.ts';

export interface StreamEntry {
  id: string;
  /** Field, value, field, value, ... as stored. */
  fields: string[];
}

export interface StreamConsumerOptions {
  batchSize?: number;
  blockMs?: number;
  claimIdleMs?: number;
  /** XDEL after XACK (the stream is a queue, not a log others read). */
  deleteAfterAck?: boolean;
  /**
   * Told of entries the stream's cap trimmed before this group read them
   * (checked before each read of new entries; see gap.ts). Only for a stream
   * whose entries leave by its cap alone, so not with deleteAfterAck.
   */
  onGap?: (gap: StreamGap) => void;
  /**
   * Set aside an entry that fails on its own merits (see poison.ts): it is
   * acknowledged once this resolves. A rejection (the dead-letter store is
   * down too) fails the batch, which is retried. Without it, such a batch is
   * retried like any other failure.
   */
  onPoison?: (entry: StreamEntry, err: unknown) => Promise<void>;
}

export class StreamConsumer {
  private readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private running = false;
  private groupReady = false;
  private loop: Promise<void> | null = null;
  private readonly batchSize: number;
  private readonly blockMs: number;
  private readonly claimIdleMs: number;
  private readonly deleteAfterAck: boolean;
  private readonly onGap: ((gap: StreamGap) => void) | undefined;
  private readonly onPoison: StreamConsumerOptions['onPoison'];
  private readonly gaps: GapWatch;

  constructor(
    private readonly redis: Redis,
    private readonly streamKey: string,
    private readonly group: string,
    private readonly log: Logger,
    private readonly handle: (entries: StreamEntry[]) => Promise<void>,
    opts: StreamConsumerOptions = {},
  ) {
    this.batchSize = opts.batchSize ?? 500;
    this.blockMs = opts.blockMs ?? 500;
    this.claimIdleMs = opts.claimIdleMs ?? 30_000;
    this.deleteAfterAck = opts.deleteAfterAck ?? false;
    if (opts.onGap && this.deleteAfterAck) throw new RangeError('onGap needs a stream whose entries leave by its cap alone (not deleteAfterAck)');
    this.onGap = opts.onGap;
    this.onPoison = opts.onPoison;
    this.gaps = new GapWatch(redis, streamKey, group);
  }

  async start(): Promise<void> {
    await this.ensureGroup();
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.streamKey, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.groupReady = true;
  }

  private async run(): Promise<void> {
    let backoffMs = 100;
    let lastClaim = 0;
    while (this.running) {
      try {
        await this.drainOnce();
        backoffMs = 100;
        // Entries a dead consumer read but never acknowledged: taken over on
        // a timer, so a busy stream cannot starve them.
        if (Date.now() - lastClaim >= this.claimIdleMs / 2) {
          lastClaim = Date.now();
          await this.redis.xautoclaim(this.streamKey, this.group, this.consumer, this.claimIdleMs, '0', 'COUNT', this.batchSize);
        }
      } catch (err) {
        // The stream or its group was deleted (a Redis restored from an old
        // snapshot, say): make them again and go on.
        if (String((err as Error).message).includes('NOGROUP')) await this.ensureGroup().catch(() => {});
        this.log.error({ err, stream: this.streamKey, backoffMs }, 'stream consumer: batch failed; will retry');
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
  }

  /** Handle one batch: our pending entries first (claimed ones), then new ones. Returns how many. */
  async drainOnce(): Promise<number> {
    if (!this.groupReady) await this.ensureGroup();
    const pending = await this.read('0');
    if (pending.length === 0 && this.onGap) {
      // Checked just before the read that would skip it. A trim landing
      // between the check and the read (a burst within that round trip, with
      // the group already at the cap) goes unseen until the next gap, which
      // counts it too.
      const gap = await this.gaps.check();
      if (gap) this.onGap(gap);
    }
    const entries = pending.length > 0 ? pending : await this.read('>');
    if (entries.length === 0) return 0;
    // An entry trimmed or deleted while pending comes back without fields:
    // nothing to handle, but it must be acknowledged or it stays pending forever.
    await this.isolating(entries.filter((e) => e.fields !== null) as StreamEntry[]);
    const ids = entries.map((e) => e.id);
    const m = this.redis.multi().xack(this.streamKey, this.group, ...ids);
    if (this.deleteAfterAck) m.xdel(this.streamKey, ...ids);
    await m.exec();
    return entries.length;
  }

  /**
   * Handle entries; if they fail because of an entry, split them until each
   * entry that fails alone is found and set aside. A poison entry in a batch
   * of 500 costs about 2 log2(500) ≈ 18 more calls; the rest go in halves.
   */
  private async isolating(entries: StreamEntry[]): Promise<void> {
    if (entries.length === 0) return;
    try {
      await this.handle(entries);
    } catch (err) {
      if (!this.onPoison || !isEntryFault(err)) throw err;
      if (entries.length === 1) return this.onPoison(entries[0]!, err);
      const mid = Math.ceil(entries.length / 2);
      await this.isolating(entries.slice(0, mid));
      await this.isolating(entries.slice(mid));
    }
  }

  private async read(from: '0' | '>'): Promise<{ id: string; fields: string[] | null }[]> {
    const res =
      from === '>'
        ? await this.redis.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', this.batchSize, 'BLOCK', this.blockMs, 'STREAMS', this.streamKey, from)
        : await this.redis.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', this.batchSize, 'STREAMS', this.streamKey, from);
    if (!res) return [];
    const [, messages] = (res as [string, [string, string[] | null][]][])[0]!;
    return messages.map(([id, fields]) => ({ id, fields }));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
