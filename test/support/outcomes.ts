/** Where every intake job ended up: the invariant checks of docs/design.md, in one read. */
import { Queue, type JobType } from 'bullmq';
import type { TestEnv } from './env.ts';
import { execJobId } from '../../queues/names.ts';

const ALL: JobType[] = ['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children'];

export interface Outcomes {
  intakeIds: string[];
  /** Intake ids with a job on gpu-exec. */
  admitted: string[];
  /** Intake ids with a job on gpu-held. */
  held: string[];
  /** Intake ids that failed (rejected). */
  rejected: string[];
}

export async function readOutcomes(t: TestEnv): Promise<Outcomes> {
  const q = (name: string) => new Queue(name, { connection: t.redis, prefix: t.config.queuePrefix });
  const [intake, exec, held] = [q(t.config.queues.intake), q(t.config.queues.exec), q(t.config.queues.held)];
  try {
    const strip = (ids: string[]) => ids.map((id) => id.slice(execJobId('').length));
    return {
      intakeIds: await intake.getRanges(ALL, 0, -1),
      admitted: strip(await exec.getRanges(ALL, 0, -1)),
      held: strip(await held.getRanges(ALL, 0, -1)),
      rejected: await intake.getRanges(['failed'], 0, -1),
    };
  } finally {
    await Promise.all([intake.close(), exec.close(), held.close()]);
  }
}

/** Every intake job is in exactly one of admitted, held, rejected. */
export function assertExactlyOnce(o: Outcomes): string[] {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const [state, ids] of [['admitted', o.admitted], ['held', o.held], ['rejected', o.rejected]] as const) {
    for (const id of ids) {
      if (seen.has(id)) problems.push(`${id} is both ${seen.get(id)} and ${state}`);
      seen.set(id, state);
    }
  }
  for (const id of o.intakeIds) if (!seen.has(id)) problems.push(`${id} is in no state`);
  return problems;
}
