/**
 * The admission benchmark's low-load latency: one job at a time (submit,
 * wait until it is on gpu-exec, then the next), timed on the submitting side
 * with performance.now() from just before the intake add to the moment a
 * BullMQ worker on gpu-exec (concurrency 1, in this process) is handed the
 * job. That worker's own pick-up is in both paths' figures alike, so the
 * difference between the gatekeeper's and the relay's percentiles is what
 * admission adds. Rounds alternate the two (ABBA); each kind collects
 * BENCH_LOWLOAD_SAMPLES (2000) samples over BENCH_LOWLOAD_ROUNDS (10) runs.
 * Figures: docs/benchmarks.md.
 */
import { Worker } from 'bullmq';
import { createRedis } from '../queues/connection.ts';
import { execJobId } from '../queues/names.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { env, orderOf, pct, sleep, withRun, TIMEOUT_MS, type Kind } from './admission-kit.ts';

export const LOWLOAD_SAMPLES = env('BENCH_LOWLOAD_SAMPLES', 2000);
export const LOWLOAD_ROUNDS = env('BENCH_LOWLOAD_ROUNDS', 10);
const WARMUP = 50;

/** Sorted latencies (ms) of `count` jobs sent one at a time through `kind`, after WARMUP uncounted ones. */
async function oneAtATime(redisUrl: string, kind: Kind, count: number): Promise<number[]> {
  return withRun(redisUrl, kind, async (run) => {
    if (kind === 'gatekeeper') await run.accounting.definitions.setLimit('project:bench', hoursToGpuMs(count + WARMUP));
    const seen = new Map<string, () => void>();
    const consumer = createRedis(redisUrl);
    const worker = new Worker(run.config.queues.exec, async (job) => { seen.get(job.id!)?.(); },
      { connection: consumer, prefix: run.config.queuePrefix, concurrency: 1, removeOnComplete: { count: 0 } });
    try {
      await Promise.all([run.start().worker.waitUntilReady(), worker.waitUntilReady()]);
      await sleep(200); // both workers reach their fetch loops, so the first job does not pay for startup
      const ms: number[] = [];
      for (let i = 0; i < count + WARMUP; i++) {
        const id = `j${i}`;
        let timer: NodeJS.Timeout | undefined;
        const onExec = new Promise<void>((resolve, reject) => {
          seen.set(execJobId(id), resolve);
          timer = setTimeout(() => reject(new Error(`low load: job ${id} not on gpu-exec after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
        });
        const t0 = performance.now();
        await run.intake.add('bench', { project: 'bench', user: `u${i % 16}`, estimatedGpuHours: 1 }, { jobId: id });
        await onExec;
        const t1 = performance.now();
        clearTimeout(timer);
        seen.delete(execJobId(id));
        if (i >= WARMUP) ms.push(t1 - t0);
      }
      return ms.sort((a, b) => a - b);
    } finally {
      await worker.close();
      await consumer.quit();
    }
  });
}

export interface LowLoad { samples: number; rounds: number; p50Ms: Record<Kind, number>; p99Ms: Record<Kind, number>; addedP50Ms: number; addedP99Ms: number }

export async function lowLoad(redisUrl: string): Promise<LowLoad> {
  const all: Record<Kind, number[]> = { relay: [], gatekeeper: [] };
  const per = Math.ceil(LOWLOAD_SAMPLES / LOWLOAD_ROUNDS);
  for (let round = 1; round <= LOWLOAD_ROUNDS; round++) {
    for (const kind of orderOf(round)) all[kind].push(...(await oneAtATime(redisUrl, kind, per)));
  }
  const sorted = (k: Kind) => [...all[k]].sort((a, b) => a - b);
  const [r, g] = [sorted('relay'), sorted('gatekeeper')];
  const p50Ms = { relay: pct(r, 50), gatekeeper: pct(g, 50) };
  const p99Ms = { relay: pct(r, 99), gatekeeper: pct(g, 99) };
  return { samples: per * LOWLOAD_ROUNDS, rounds: LOWLOAD_ROUNDS, p50Ms, p99Ms,
    addedP50Ms: p50Ms.gatekeeper - p50Ms.relay, addedP99Ms: p99Ms.gatekeeper - p99Ms.relay };
}
