/**
 * The benchmarks' baseline: a plain relay worker (intake -> gpu-exec, no
 * budget check) with the gatekeeper's worker options, so a comparison
 * isolates what admission itself costs.
 */
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import { execJobId, queueNames } from '../queues/names.ts';

export interface Admitter { worker: Worker; close(): Promise<void> }
interface Deps { config: Config; workerConnection: Redis; connection: Redis }

/** The baseline: what createGatekeeper does minus validation and the reserve script. */
export function createRelay({ config, workerConnection, connection }: Deps): Admitter {
  const names = queueNames(config);
  const exec = new Queue(names.exec, { connection, prefix: names.prefix });
  const worker = new Worker(
    names.intake,
    async (job) => {
      const id = execJobId(job.id!);
      await exec.add(job.name, job.data, { jobId: id, removeOnComplete: false, removeOnFail: false });
      return { outcome: 'admitted', execJobId: id };
    },
    // Same options as the gatekeeper's worker, so only the work differs.
    { connection: workerConnection, prefix: names.prefix, concurrency: config.gatekeeperConcurrency,
      maxStalledCount: 1_000, removeOnComplete: { count: 10_000 }, removeOnFail: { age: 7 * 24 * 3600 } },
  );
  return { worker, close: async () => { await worker.close(); await exec.close(); } };
}

