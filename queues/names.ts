import type { Config } from '../src/config.ts';

/** The queues gpu-gatekeeper works between, as configured. */
export interface QueueNames {
  readonly prefix: string;
  readonly intake: string;
  readonly exec: string;
  readonly held: string;
  readonly rejected: string;
  readonly webhooks: string;
}

export function queueNames(config: Config): QueueNames {
  return { prefix: config.queuePrefix, ...config.queues };
}

/**
 * Job ids on gpu-exec and gpu-held are derived from the intake job id, so
 * adding the same admission twice is a no-op (BullMQ ignores a duplicate id).
 * BullMQ forbids plain-integer custom ids, hence the prefix.
 */
export const execJobId = (intakeJobId: string): string => `intake-${intakeJobId}`;
export const heldJobId = (intakeJobId: string): string => `intake-${intakeJobId}`;
export const rejectedJobId = (intakeJobId: string): string => `intake-${intakeJobId}`;
