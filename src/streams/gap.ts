/**
 * Gaps: entries a consumer group never read because the stream's cap
 * (XADD MAXLEN ~) trimmed them first. The events stream is capped at about
 * 100,000 entries, so an event store that lags that far loses events, and
 * Redis says nothing when XREADGROUP skips them. So before each read:
 *
 *  - the read is about to skip entries when the stream's oldest entry is
 *    newer than the last one the group read, and
 *  - entries were trimmed unread: the cap trims oldest first, so with the
 *    counts Redis 7 keeps (entries ever added, entries the group read,
 *    entries still there, all newer than the last read) the trimmed-unread
 *    ones since the group was created are added − read − length.
 *
 * Redis 7.0 does not count skipped entries as read, so that number only
 * grows; this gap's share is what it grew by since the last gap this watch
 * reported (a watch in a new process counts older gaps in its first one).
 * Only for streams whose entries leave by the cap alone: the ledger stream
 * deletes its entries once written, which this would count as lost.
 */
import type { Redis } from 'ioredis';
import { compareIds, fields } from './replies.ts';

export interface StreamGap {
  stream: string;
  group: string;
  /** The last entry the group read before the gap. */
  lastReadId: string;
  /** The oldest entry still in the stream (the read resumes there). */
  firstAvailableId: string;
  /** Entries trimmed before the group read them, in this gap. */
  lost: number;
}

export class GapWatch {
  private reported = 0;

  constructor(
    private readonly redis: Redis,
    private readonly stream: string,
    private readonly group: string,
  ) {}

  /** The gap the group's next read would skip, if any; null if none (or the stream or group is missing). */
  async check(): Promise<StreamGap | null> {
    const replies = await this.redis.multi().xinfo('STREAM', this.stream).xinfo('GROUPS', this.stream).exec().catch(() => null);
    if (!replies || replies.some(([err]) => err)) return null;
    const s = fields(replies[0]![1]);
    const g = (replies[1]![1] as unknown[]).map(fields).find((x) => x.name === this.group);
    const first = s['first-entry'] as [string, unknown] | null;
    // entries-read is null when Redis cannot tell (a group moved by XGROUP
    // SETID without ENTRIESREAD): no verdict then. Ours start at 0.
    if (!g || !first || typeof g['entries-read'] !== 'number') return null;
    const lastReadId = String(g['last-delivered-id']);
    if (compareIds(String(first[0]), lastReadId) <= 0) return null;
    const neverRead = Number(s['entries-added']) - g['entries-read'] - Number(s.length);
    if (neverRead <= this.reported) return null;
    const lost = neverRead - this.reported;
    this.reported = neverRead;
    return { stream: this.stream, group: this.group, lastReadId, firstAvailableId: String(first[0]), lost };
  }
}
