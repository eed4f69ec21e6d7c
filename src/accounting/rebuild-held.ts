/**
 * Rebuild, held jobs: the jobs waiting on gpu-held (if that queue survived)
 * back in Redis, each with the reservation record reserve.lua writes for a
 * held job. Each waits in the line of every scope it touches; the next
 * release puts it in the right ones.
 */
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { HeldJobData } from '../../queues/contract.ts';
import type { Accounting, ReserveRequest } from './counters.ts';
import { submissionOrder } from './counters.ts';
import { jobMeta } from './admission.ts';
import { scopesForJob } from './scopes.ts';
import { hoursToGpuMs } from '../units.ts';
import { pipelined } from '../redis/pipelined.ts';

interface HeldRequest extends ReserveRequest {
  order: number;
  heldAt: number;
}

export async function rebuildHeld(redis: Redis, accounting: Accounting, heldQueue: Queue<HeldJobData>): Promise<number> {
  const k = accounting.keys;
  const all = await heldQueue.getJobs(['waiting', 'prioritized'], 0, -1);
  // A held job with a reservation from the ledger was released before the
  // loss, its move to gpu-exec unfinished: the reconciler's sweep finishes it.
  const exists = await pipelined(redis, all, (p, job) => p.exists(k.reservation(job.data.held.intakeJobId)));
  const reqs: HeldRequest[] = all
    .filter((_, i) => exists[i] === 0)
    .map((job: Job<HeldJobData>) => {
      const d = job.data;
      const id = d.held.intakeJobId;
      return {
        jobId: id, order: submissionOrder(id, job.timestamp), amountGpuMs: hoursToGpuMs(d.estimatedGpuHours),
        scopes: scopesForJob(d).map((s) => s.id), meta: jobMeta(d), heldAt: d.held.heldAt,
      };
    })
    .sort((a, b) => a.order - b.order || (a.jobId < b.jobId ? -1 : 1));

  await pipelined(redis, reqs, (p, r) => {
    p.hset(k.reservation(r.jobId), { amount: String(r.amountGpuMs), bases: r.scopes.join(','), state: 'held', heldAt: String(r.heldAt), meta: JSON.stringify(r.meta), lines: r.scopes.join(',') });
    p.zadd(k.held(r.meta.project), r.order, r.jobId);
    p.zadd(k.allHeld, r.order, r.jobId);
    p.hincrby(k.heldCount, r.meta.project, 1);
    for (const b of r.scopes) p.zadd(k.line(b), r.order, r.jobId);
  });
  return reqs.length;
}
