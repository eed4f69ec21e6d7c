/**
 * Settled history written back-dated through the real scripts: each job is
 * reserved (reserve.lua) and settled (settle.lua) at instants in the past,
 * exactly as the gatekeeper and the reconciler would have done then. Used by
 * the demo (scripts/demo-history.ts) so a newcomer's dashboard has weeks of
 * trend at once; nothing in production calls it.
 *
 * Why the scripts and not rows inserted into the ledger: the drift audit
 * (src/accounting/drift.ts) sums the ledger per counter id and compares it
 * with the Redis counters, past periods' counters included. Rows inserted
 * only into Postgres would show as drift for every period they touch, and
 * rows of the current week or month would be missing from the counters
 * admission reads. Through the scripts, each job lands in the counters of
 * the period it was admitted in ('<scope>@<label>' at `admittedAt`), and in
 * the ledger stream, which the ledger writer drains into the ledger and its
 * rollups (by the local day the job ended). So the current period's history
 * counts against its limit, as it would have, and the usage report, the
 * exports, the dashboard and the drift audit all agree.
 *
 * A history job must fit: one that would have been held throws, since a
 * held job has no settled hours to show.
 */
import type { Accounting } from '../accounting/counters.ts';
import { scopesForJob } from '../accounting/scopes.ts';
import type { JobMeta } from '../accounting/types.ts';

export interface HistoryJob {
  /** Unique among all jobs ever (e.g. 'history-2026-11-06-3'). */
  jobId: string;
  meta: JobMeta;
  /** Integer GPU-ms. */
  estimatedGpuMs: number;
  /** Integer GPU-ms, at most the estimate (so no overrun warnings fire in the past). */
  actualGpuMs: number;
  /** Epoch ms; before `endedAt`. */
  admittedAt: number;
  /** Epoch ms; before `now`. */
  endedAt: number;
}

/** Reserve and settle each job at its own past instants, oldest admission first; returns how many were settled. */
export async function seedHistory(accounting: Accounting, jobs: HistoryJob[], now: number): Promise<number> {
  for (const j of jobs) {
    if (!(j.admittedAt < j.endedAt && j.endedAt < now)) throw new RangeError(`history job ${j.jobId}: must be admitted before it ended, and end before now`);
    if (j.actualGpuMs > j.estimatedGpuMs) throw new RangeError(`history job ${j.jobId}: actual ${j.actualGpuMs} is above its estimate ${j.estimatedGpuMs}`);
  }
  let settled = 0;
  for (const j of [...jobs].sort((a, b) => a.admittedAt - b.admittedAt)) {
    const scopes = scopesForJob(j.meta).map((s) => s.id);
    const r = await accounting.reserve(j.jobId, j.estimatedGpuMs, scopes, j.meta, j.admittedAt);
    if (r.kind !== 'reserved') throw new Error(`history job ${j.jobId} was not admitted at ${new Date(j.admittedAt).toISOString()}: ${r.kind}`);
    const s = await accounting.settle(j.jobId, r.scopes, j.actualGpuMs, 'settle', j.endedAt);
    if (s.kind !== 'settled') throw new Error(`history job ${j.jobId} was not settled: ${s.kind}`);
    settled++;
  }
  return settled;
}
