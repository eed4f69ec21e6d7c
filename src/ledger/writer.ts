/**
 * Drains the ledger stream (written by the reserve/settle scripts in the same
 * atomic step as the counters) into the Postgres ledger table.
 *
 * Exactly once: entries are read through a consumer group, inserted with
 * ON CONFLICT DO NOTHING against the per-job unique indexes, and only then
 * acknowledged and deleted. A writer killed between insert and XACK re-reads
 * the entry (its own pending list on restart, or another writer claims it
 * after `claimIdleMs`) and the insert is a no-op. Postgres down: nothing is
 * acknowledged, the stream keeps the entries, and the loop retries.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';

const GROUP = 'ledger-writers';

interface Entry {
  id: string;
  /** One ledger row per job the stream entry carries. */
  rows: LedgerRow[];
}

export interface LedgerWriterOptions {
  batchSize?: number;
  blockMs?: number;
  claimIdleMs?: number;
}

export class LedgerWriter {
  private readonly consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private running = false;
  private loop: Promise<void> | null = null;
  private readonly batchSize: number;
  private readonly blockMs: number;
  private readonly claimIdleMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly streamKey: string,
    private readonly pool: Pool,
    private readonly log: Logger,
    opts: LedgerWriterOptions = {},
  ) {
    this.batchSize = opts.batchSize ?? 500;
    this.blockMs = opts.blockMs ?? 500;
    this.claimIdleMs = opts.claimIdleMs ?? 30_000;
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
      await this.redis.xgroup('CREATE', this.streamKey, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  private async run(): Promise<void> {
    let backoffMs = 100;
    let lastClaim = 0;
    while (this.running) {
      try {
        await this.drainOnce();
        backoffMs = 100;
        // Entries a dead writer read but never acknowledged: taken over on a
        // timer, so a busy stream cannot starve them.
        if (Date.now() - lastClaim >= this.claimIdleMs / 2) {
          lastClaim = Date.now();
          await this.claimStale();
        }
      } catch (err) {
        // The stream or its group was deleted (a Redis restored from an old
        // snapshot, say): make them again and go on.
        if (String((err as Error).message).includes('NOGROUP')) await this.ensureGroup().catch(() => {});
        this.log.error({ err, backoffMs }, 'ledger writer: batch failed; will retry');
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
  }

  /** Write one batch: our pending entries first (claimed ones), then new ones. Returns how many. */
  async drainOnce(): Promise<number> {
    const pending = await this.read('0');
    const entries = pending.length > 0 ? pending : await this.read('>');
    if (entries.length === 0) return 0;
    await this.write(entries);
    return entries.length;
  }

  private async read(from: '0' | '>'): Promise<Entry[]> {
    const res =
      from === '>'
        ? await this.redis.xreadgroup('GROUP', GROUP, this.consumer, 'COUNT', this.batchSize, 'BLOCK', this.blockMs, 'STREAMS', this.streamKey, from)
        : await this.redis.xreadgroup('GROUP', GROUP, this.consumer, 'COUNT', this.batchSize, 'STREAMS', this.streamKey, from);
    if (!res) return [];
    const [, messages] = (res as [string, [string, string[] | null][]][])[0]!;
    // A pending entry whose message was deleted comes back with null fields.
    return messages.filter(([, f]) => f !== null).map(([id, flat]) => ({ id, rows: parseEntry(flat!) }));
  }

  /** Take over entries another writer read but never acknowledged (it died). */
  private async claimStale(): Promise<void> {
    await this.redis.xautoclaim(this.streamKey, GROUP, this.consumer, this.claimIdleMs, '0', 'COUNT', this.batchSize);
  }

  /**
   * One INSERT per batch, whatever its size: the rows go as 14 array
   * parameters through unnest, so a backlog of many batched reserve entries
   * never meets Postgres' 65,535-parameter limit.
   */
  private async write(entries: Entry[]): Promise<void> {
    const rows = entries.flatMap((e) => e.rows);
    const col = <K extends keyof LedgerRow>(k: K) => rows.map((r) => r[k]);
    await this.pool.query(
      `INSERT INTO ledger (kind, job_id, project, user_name, job_type, gpu_type, scopes,
                           estimated_gpu_ms, actual_gpu_ms, admitted_at, at, note, override, exempt)
       SELECT kind, job_id, project, user_name, job_type, gpu_type, string_to_array(scopes, ','),
              estimated, actual, admitted_at, at, note, override, exempt
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                   $8::bigint[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::boolean[], $14::boolean[])
            AS r(kind, job_id, project, user_name, job_type, gpu_type, scopes,
                 estimated, actual, admitted_at, at, note, override, exempt)
       ON CONFLICT DO NOTHING`,
      [
        col('kind'), col('jobId'), col('project'), col('user'), col('jobType'), col('gpuType'),
        rows.map((r) => r.scopes.join(',')),
        col('estimated'), col('actual'), col('admittedAt'), col('at'), col('note'), col('override'), col('exempt'),
      ],
    );
    const ids = entries.map((e) => e.id);
    await this.redis.multi().xack(this.streamKey, GROUP, ...ids).xdel(this.streamKey, ...ids).exec();
  }
}

export interface LedgerRow {
  kind: string;
  jobId: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  scopes: string[];
  estimated: string;
  actual: string | null;
  admittedAt: string | null;
  at: string | null;
  note: string | null;
  override: boolean;
  /** An exempt job type: tracked, never counted against a limit. */
  exempt: boolean;
}

/**
 * A stream entry is a header (kind, at, note?) followed by one group of
 * fields per job, each group starting with `jobId` (reserve.lua writes one
 * entry per batch, settle.lua one per job).
 */
export function parseEntry(flat: string[]): LedgerRow[] {
  const header: Record<string, string> = {};
  const groups: Record<string, string>[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [k, v] = [flat[i]!, flat[i + 1]!];
    if (k === 'jobId') groups.push({});
    (groups.length > 0 ? groups[groups.length - 1]! : header)[k] = v;
  }
  const ts = (ms: string | undefined) => (ms ? new Date(Number(ms)).toISOString() : null);
  return groups.map((g) => {
    const meta = JSON.parse(g.meta ?? '{}') as { project?: string; user?: string; jobType?: string; gpuType?: string };
    return {
      kind: header.kind!,
      jobId: g.jobId!,
      project: meta.project ?? '',
      user: meta.user ?? '',
      jobType: meta.jobType ?? null,
      gpuType: meta.gpuType ?? null,
      scopes: (g.scopes ?? '').split(',').filter(Boolean),
      estimated: g.estimated!,
      actual: g.actual ?? null,
      admittedAt: ts(g.admittedAt ?? (header.kind === 'reserve' ? header.at : undefined)),
      at: ts(header.at),
      note: header.note || null,
      override: header.override === '1',
      exempt: g.exempt === '1',
    };
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
