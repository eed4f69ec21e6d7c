/**
 * Caps on GPUs in flight: per project, per user, per (project, GPU type) and
 * one for everything. Reserve checks them in the same call as the hour
 * budgets, all or nothing (src/redis/lua/includes/caps.lua); a job over one
 * is held in its line and woken when jobs finish. A cap may take another
 * value in a weekly window of local time (peak hours); crossing the window's
 * edge wakes the jobs that then fit (workers/waker.ts). Lowering a cap never
 * touches running jobs.
 *
 * Postgres holds the caps (gpu_caps); Redis a copy in the 'caps' hash. Each
 * change is one admin change (src/audit/change.ts). A cap just set counts
 * the jobs already running: after the commit, a pass over the open
 * reservations adds each matching job to it, atomically with the job's
 * record (caps-count.lua), so a job settling meanwhile is never counted
 * twice or left counted.
 */
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { Actor } from '../db/audit.ts';
import { allGpuCaps, deleteGpuCap, getGpuCap, upsertGpuCap, type GpuCapDefinition, type GpuCapRow, type PeakWindow } from '../db/gpu-caps.ts';
import { copyEachLocked } from '../db/limits.ts';
import { adminChange } from '../audit/change.ts';
import { systemClock, type Clock } from '../clock.ts';
import { minuteOfWeek } from '../periods.ts';
import type { Accounting } from './counters.ts';
import type { ScopeDefinitions } from './definitions.ts';
import { capsForJob } from './scopes.ts';
import type { JobMeta } from './types.ts';

export const MAX_GPUS = 1_000_000;
/** Jobs per caps-count.lua call. */
const CHUNK = 1_000;

export interface GpuCapView extends GpuCapDefinition {
  scope: string;
  /** Whether the peak window holds now. */
  peakNow: boolean;
  /** The cap in force now: the peak's inside the window, maxGpus outside it. */
  effectiveMaxGpus: number;
  /** GPUs of admitted jobs not yet settled that count against it. */
  inFlightGpus: number;
  updatedAt: Date;
}

/** The advisory lock a cap's changes (and start-up's copy of it) serialize on. */
const lockKey = (scope: string) => `cap:${scope}`;

export class GpuCaps {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly clock: Clock = systemClock,
    private readonly log?: Logger,
  ) {}

  async get(scope: string): Promise<GpuCapView | null> {
    const row = await getGpuCap(this.pool, scope);
    return row ? (await this.views([row]))[0]! : null;
  }

  async list(): Promise<GpuCapView[]> {
    return this.views(await allGpuCaps(this.pool));
  }

  /** Set a cap (audited with before and after), then count the jobs already running against it. */
  async set(scope: string, d: GpuCapDefinition, actor: Actor, reason: string | null): Promise<GpuCapView> {
    assertCap(d);
    await adminChange(this.pool, [lockKey(scope)], async (tx) => {
      const prior = await getGpuCap(tx.db, scope);
      const row = await upsertGpuCap(tx.db, scope, d);
      await tx.audit(actor, { action: 'gpu-cap.set', target: scope, before: prior && auditable(prior), after: auditable(row), reason });
      tx.redis(this.step(scope, d, prior));
    }, this.log);
    await this.countRunning(scope);
    return (await this.get(scope))!;
  }

  /** Remove a cap; false when there was none (nothing audited). Jobs counted against it still give their GPUs back when they end. */
  async remove(scope: string, actor: Actor, reason: string | null): Promise<boolean> {
    return adminChange(this.pool, [lockKey(scope)], async (tx) => {
      const prior = await getGpuCap(tx.db, scope);
      await deleteGpuCap(tx.db, scope);
      tx.redis(this.step(scope, null, prior));
      if (!prior) return false;
      await tx.audit(actor, { action: 'gpu-cap.remove', target: scope, before: auditable(prior), after: null, reason });
      return true;
    }, this.log);
  }

  /**
   * Add every running job that counts against one of `scopes` and is not
   * counted there yet (a cap just set, or every cap after a rebuild), the
   * open reservations read once. Safe to run any number of times, at any
   * moment: caps-count.lua skips jobs already counted or settled.
   */
  async countRunning(...scopes: string[]): Promise<number> {
    const wanted = new Set(scopes);
    const byCap = new Map<string, { id: string; gpus: number }[]>(scopes.map((s) => [s, []]));
    for (const j of await this.accounting.openJobs()) {
      if (!j.meta) continue;
      for (const c of capsForJob(j.meta)) if (wanted.has(c.id)) byCap.get(c.id)!.push({ id: j.id, gpus: j.meta.gpus ?? 1 });
    }
    let added = 0;
    for (const [scope, jobs] of byCap) {
      for (let i = 0; i < jobs.length; i += CHUNK) added += await this.accounting.countCap(scope, jobs.slice(i, i + CHUNK));
    }
    return added;
  }

  private async views(rows: GpuCapRow[]): Promise<GpuCapView[]> {
    const inFlight = await this.accounting.inFlight(rows.map((r) => r.scope));
    const wm = minuteOfWeek(this.clock.now(), this.accounting.timeZone);
    return rows.map((r, i) => {
      return { scope: r.scope, maxGpus: r.maxGpus, peak: r.peak, release: r.release, peakNow: inWindow(r.peak, wm), effectiveMaxGpus: capAt(r, wm), inFlightGpus: inFlight[i]!, updatedAt: r.updatedAt };
    });
  }

  /** Write `d` to Redis; undone to what Postgres held before. */
  private step(scope: string, d: GpuCapDefinition | null, prior: GpuCapRow | null) {
    const defs = this.accounting.definitions;
    const now = this.clock.now();
    return { apply: () => defs.defineCap(scope, d, now), undo: () => defs.defineCap(scope, prior, now) };
  }
}

/** Copy every cap from Postgres to Redis and drop those Postgres no longer has (start-up, rebuild), each under its lock. */
export async function syncGpuCaps(pool: Pool, defs: ScopeDefinitions): Promise<string[]> {
  const rows = await allGpuCaps(pool);
  const scopes = new Set([...rows.map((r) => r.scope), ...Object.keys(await defs.capDefs())]);
  await copyEachLocked(pool, scopes, lockKey, async (db, scope) => {
    const row = await getGpuCap(db, scope);
    await defs.defineCap(scope, row, null);
    return row !== null;
  });
  return rows.map((r) => r.scope);
}

/** Does the window hold at local minute of the week `wm`? As includes/caps.lua capMax decides. */
export function inWindow(peak: PeakWindow | null, wm: number): boolean {
  if (!peak) return false;
  const day = Math.floor(wm / 1440);
  const minute = wm % 1440;
  return Math.floor(peak.days / 2 ** day) % 2 === 1 && minute >= peak.fromMinute && minute < peak.toMinute;
}

/** The cap in force at local minute of the week `wm`: its peak value inside the window, maxGpus outside it (includes/caps.lua capMax). */
export function capAt(cap: Pick<GpuCapDefinition, 'maxGpus' | 'peak'>, wm: number): number {
  return inWindow(cap.peak, wm) ? cap.peak!.maxGpus : cap.maxGpus;
}

/** A cap the API and the table accept, or a RangeError saying why. */
export function assertCap(d: GpuCapDefinition): void {
  const whole = (what: string, n: number) => {
    if (!Number.isInteger(n) || n < 0 || n > MAX_GPUS) throw new RangeError(`${what} must be a whole number from 0 to ${MAX_GPUS}, got ${n}`);
  };
  whole('maxGpus', d.maxGpus);
  if (!d.peak) return;
  whole('peak.maxGpus', d.peak.maxGpus);
  if (!Number.isInteger(d.peak.days) || d.peak.days < 1 || d.peak.days > 127) throw new RangeError('peak.days must name at least one day');
  if (!(d.peak.fromMinute >= 0 && d.peak.fromMinute < d.peak.toMinute && d.peak.toMinute <= 1440)) throw new RangeError('peak.from must be before peak.to, within one day');
}

const auditable = (r: GpuCapRow) => ({ maxGpus: r.maxGpus, ...(r.peak ? { peak: r.peak } : {}), ...(r.release === 'manual' ? { release: 'manual' } : {}) });
