/**
 * A simulated GPU worker, for the demo, tests and benchmarks: consumes
 * gpu-exec, "runs" for a while and returns the GPU hours it used.
 *
 * A job's payload may steer it: `{ simulate: { durationMs, gpuHours, fail } }`.
 * Without `gpuHours` it returns nothing, and the reconciler falls back to
 * wall time x gpus, exactly as for a real worker that reports nothing.
 */
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { ExecJobData } from '../queues/contract.ts';
import { queueNames } from '../queues/names.ts';

export interface SimulateOptions {
  durationMs?: number;
  gpuHours?: number;
  fail?: string;
}

export interface GpuSimDeps {
  config: Config;
  workerConnection: Redis;
  log: Logger;
  /** Overrides SIM_CONCURRENCY. */
  concurrency?: number;
}

export function createGpuSim(deps: GpuSimDeps) {
  const { config } = deps;
  const log = deps.log.child({ role: 'gpu-sim' });
  const names = queueNames(config);
  const worker = new Worker<ExecJobData>(
    names.exec,
    async (job) => {
      const sim = simulateOptions(job.data.payload);
      await sleep(sim.durationMs ?? config.simJobMs);
      if (sim.fail) throw new Error(sim.fail);
      return sim.gpuHours === undefined ? undefined : { gpuHours: sim.gpuHours };
    },
    {
      connection: deps.workerConnection,
      prefix: names.prefix,
      concurrency: deps.concurrency ?? config.simConcurrency,
      lockDuration: config.simLockMs,
      stalledInterval: config.simLockMs,
    },
  );
  worker.on('error', (err) => log.error({ err }, 'gpu-sim worker error'));
  return { worker, close: () => worker.close() };
}

function simulateOptions(payload: unknown): SimulateOptions {
  if (payload && typeof payload === 'object' && 'simulate' in payload) {
    const s = (payload as { simulate: unknown }).simulate;
    if (s && typeof s === 'object') return s as SimulateOptions;
  }
  return {};
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
