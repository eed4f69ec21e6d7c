/**
 * Move jobs whose reservation a release or override made from gpu-held to
 * gpu-exec, with their admission record. Idempotent (derived job ids; a job
 * already moved is skipped), so the reconciler's sweep can run it again for
 * any job a crash left half-moved.
 */
import type { Job, Queue } from 'bullmq';
import type { Accounting } from '../accounting/counters.ts';
import type { AdmissionRecord, ExecJobData, HeldJobData } from '../../queues/contract.ts';
import { execJobId, heldJobId } from '../../queues/names.ts';
import { gpuMsToHours } from '../units.ts';
import { chargedView, priceView } from '../accounting/admission.ts';

export async function promoteReleased(
  accounting: Accounting,
  exec: Queue<ExecJobData>,
  held: Queue<HeldJobData>,
  jobIds: string[],
  /**
   * What the caller already has (a release that just admitted them): their
   * gpu-held jobs and reservations, so a storm of releases does not read each
   * job twice. Missing ones are read.
   */
  known?: { jobs?: (Job<HeldJobData> | undefined)[]; records?: (Awaited<ReturnType<Accounting['reservation']>> | undefined)[] },
): Promise<number> {
  const jobs = await Promise.all(jobIds.map((id, i) => known?.jobs?.[i] ?? held.getJob(heldJobId(id))));
  const records = await Promise.all(jobIds.map((id, i) => known?.records?.[i] ?? accounting.reservation(id)));
  const moves: { job: Job<HeldJobData>; add: Parameters<Queue<ExecJobData>['addBulk']>[0][number] }[] = [];
  jobIds.forEach((id, i) => {
    const job = jobs[i];
    const res = records[i];
    if (!job || res?.state !== 'reserved') return; // not released (yet), or already moved
    const { held: _held, ...data } = job.data;
    const admission: AdmissionRecord = {
      intakeJobId: id,
      reservedGpuMs: res.amountGpuMs,
      reservedGpuHours: gpuMsToHours(res.amountGpuMs),
      scopes: res.scopes,
      admittedAt: res.admittedAt,
      ...(res.exempt ? { exempt: true } : {}),
      ...(res.charges && res.price ? { charged: chargedView(res.charges), price: priceView(res.price) } : {}),
    };
    moves.push({ job, add: { name: job.name, data: { ...data, admission }, opts: { jobId: execJobId(id), removeOnComplete: false, removeOnFail: false } } });
  });
  if (moves.length === 0) return 0;
  await exec.addBulk(moves.map((m) => m.add));
  await Promise.all(moves.map((m) => m.job.remove().catch(() => undefined)));
  return moves.length;
}
