/**
 * What a finished GPU job actually used, from the fields BullMQ keeps on its
 * job hash. Pure, so every rule is tested by table.
 *
 *  - the worker returned { gpuHours } (finite, >= 0): that, rounded to GPU-ms;
 *  - else it ran: (finishedOn - processedOn) x gpus, exact in GPU-ms;
 *  - else it never started: nothing (the reservation is released).
 */
import { execResultSchema } from '../../queues/contract.ts';
import { hoursToGpuMs } from '../units.ts';
import { printable } from '../text.ts';

export interface FinishedFields {
  finishedOn: string | null;
  processedOn: string | null;
  returnvalue: string | null;
  failedReason: string | null;
}

export interface Actual {
  actualGpuMs: number;
  kind: 'settle' | 'release';
  note: string;
}

export function actualUsage(f: FinishedFields, gpus: number): Actual {
  const failed = f.failedReason !== null && f.failedReason !== '' && (f.returnvalue === null || f.returnvalue === 'null');
  // The failure text is the GPU worker's (users' code): it goes to the ledger, so made printable.
  const prefix = failed ? `failed (${printable(truncate(f.failedReason!))}); ` : '';
  const reported = failed ? null : reportedHours(f.returnvalue);
  if (reported !== null) {
    return { actualGpuMs: hoursToGpuMs(reported), kind: 'settle', note: 'reported by the GPU worker' };
  }
  const started = Number(f.processedOn);
  const ended = Number(f.finishedOn);
  if (f.processedOn && Number.isFinite(started) && Number.isFinite(ended) && ended >= started) {
    return { actualGpuMs: (ended - started) * gpus, kind: 'settle', note: `${prefix}wall time x ${gpus} GPU(s)` };
  }
  return { actualGpuMs: 0, kind: 'release', note: `${prefix}never started` };
}

function reportedHours(returnvalue: string | null): number | null {
  if (!returnvalue) return null;
  try {
    const r = execResultSchema.safeParse(JSON.parse(returnvalue));
    return r.success && r.data.gpuHours * 3_600_000 <= Number.MAX_SAFE_INTEGER ? r.data.gpuHours : null;
  } catch {
    return null;
  }
}

const truncate = (s: string) => (s.length > 120 ? s.slice(0, 120) + '…' : s);
