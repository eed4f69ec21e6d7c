/**
 * Rebuild, held jobs: the jobs waiting on gpu-held (if that queue survived)
 * back in Redis, each with the reservation record reserve.lua writes for a
 * held job and in the lines it would wait in.
 *
 * Which lines. reserve.lua puts a held job in the line of every scope it did
 * not fit, plus every scope whose line already held an older job; release.lua
 * moves a job that still does not fit to the lines of what it misses then.
 * Each held job carries those lines as data (held.hold.lines). They are
 * restored, in submission order, together with what the reserve script
 * itself would decide now (a dry run: a job recorded as held is judged on its
 * misfits only, nothing is reserved or lined up), plus the scopes whose
 * rebuilt line is not empty ahead of it, so FIFO holds whatever moved since.
 * A job held by a version that kept no lines waits in every scope it
 * touches: never fewer lines than FIFO needs.
 */
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { HeldJobData } from '../../queues/contract.ts';
import type { Accounting } from './counters.ts';
import type { Hold, ReserveRequest } from './types.ts';
import { misfitsText, submissionOrder } from './reserve-wire.ts';
import { jobMeta } from './admission.ts';
import { scopesForJob } from './scopes.ts';
import { hoursToGpuMs } from '../units.ts';
import { pipelined } from '../redis/pipelined.ts';

/** Jobs per dry-run call: bounds how long one script call runs. */
const CHUNK = 1_000;

interface HeldRequest extends ReserveRequest {
  order: number;
  hold: Hold | undefined;
  heldAt: number;
}

export async function rebuildHeld(redis: Redis, accounting: Accounting, heldQueue: Queue<HeldJobData>, now: number): Promise<number> {
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
        // Placed as reserve placed it: by the intake job's submission (older held jobs carry only the park time).
        jobId: id, order: submissionOrder(id, d.held.submittedAt ?? job.timestamp), amountGpuMs: hoursToGpuMs(d.estimatedGpuHours),
        submittedAt: d.held.submittedAt,
        scopes: scopesForJob(d).map((s) => s.id), meta: jobMeta(d), hold: d.held.hold, heldAt: d.held.heldAt,
      };
    })
    .sort((a, b) => a.order - b.order || (a.jobId < b.jobId ? -1 : 1));

  // The records first, without lines, so the dry run judges each as held.
  await pipelined(redis, reqs, (p, r) => {
    p.hset(k.reservation(r.jobId), {
      amount: String(r.amountGpuMs), bases: r.scopes.join(','), state: 'held', heldAt: String(r.heldAt), meta: JSON.stringify(r.meta),
      ...(r.submittedAt === undefined ? {} : { ts: String(r.submittedAt) }),
      ...(r.hold ? { misfits: misfitsText(r.hold.shortfalls) } : {}),
    });
    p.zadd(k.held(r.meta.project), r.order, r.jobId);
    p.zadd(k.allHeld, r.order, r.jobId);
    p.hincrby(k.heldCount, r.meta.project, 1);
  });

  const lined = new Set<string>(); // scopes whose rebuilt line is not empty
  for (let i = 0; i < reqs.length; i += CHUNK) {
    const part = reqs.slice(i, i + CHUNK);
    const { outcomes } = await accounting.dryRun(part, now);
    const lines = part.map((r, j) => {
      const out = outcomes[j]!;
      const missed = out.kind === 'held' ? out.shortfalls.map((s) => s.scope) : [];
      const ahead = r.scopes.filter((b) => !missed.includes(b) && lined.has(b));
      const kept = r.hold?.lines ?? r.scopes;
      const chosen = [...missed, ...ahead, ...kept.filter((b) => r.scopes.includes(b) && !missed.includes(b) && !ahead.includes(b))];
      for (const b of chosen) lined.add(b);
      return chosen;
    });
    await pipelined(redis, part, (p, r, j) => {
      p.hset(k.reservation(r.jobId), 'lines', lines[j]!.join(','));
      for (const b of lines[j]!) p.zadd(k.line(b), r.order, r.jobId);
    });
  }
  // Room may have appeared while Redis was gone: the waker decides each rebuilt line's head again.
  const bases = [...lined];
  for (let i = 0; i < bases.length; i += CHUNK) await redis.zadd(k.wake, 'NX', ...bases.slice(i, i + CHUNK).flatMap((b) => [now, b]));
  return reqs.length;
}
