/**
 * `npm run bench` (sixth part): 1, 2 and 4 gatekeeper processes draining the
 * same preloaded burst. The jobs are loaded as delayed jobs and released all
 * at once (Queue#promoteJobs) once every process reports its worker ready, so
 * process start-up is not timed. Throughput of k processes as a ratio to one.
 * On this 2-core machine Redis, the processes and the bench share two cores,
 * so expect the ratio to flatten early; on more cores it grows until Redis
 * (one thread) is the limit. Env: BENCH_SCALING_JOBS (20000), REDIS_URL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Queue } from 'bullmq';
import { loadConfig } from '../src/config.ts';
import { createRedis } from '../queues/connection.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { startInfra, unlinkMatching } from '../test/support/infra.ts';
import { save } from './results.ts';

const JOBS = Number(process.env.BENCH_SCALING_JOBS ?? 20_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(redisUrl: string, processes: number): Promise<number> {
  const prefix = `bench-scale-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({ REDIS_URL: redisUrl, QUEUE_PREFIX: prefix });
  const redis = createRedis(redisUrl);
  const q = (name: string) => new Queue(name, { connection: redis, prefix });
  const [intake, exec, held] = [q(config.queues.intake), q(config.queues.exec), q(config.queues.held)];
  const children: ChildProcess[] = [];
  try {
    await new Accounting(redis, prefix, config.settledRetainSeconds).definitions.setLimit('project:scale', hoursToGpuMs(JOBS * 0.9));
    for (let i = 0; i < JOBS; i += 1000) {
      await intake.addBulk(Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({
        name: 's', data: { project: 'scale', user: `u${(i + k) % 16}`, estimatedGpuHours: 1 }, opts: { delay: 3_600_000 },
      })));
    }
    for (let i = 0; i < processes; i++) {
      children.push(spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, REDIS_URL: redisUrl, QUEUE_PREFIX: prefix, GATEKEEPER_ROLES: 'gatekeeper', LOG_LEVEL: 'error' },
        stdio: 'ignore',
      }));
    }
    while ((await intake.getWorkersCount()) < processes) await sleep(100);
    const t0 = performance.now();
    await intake.promoteJobs();
    while ((await exec.count()) + (await held.count()) < JOBS) await sleep(10);
    const seconds = (performance.now() - t0) / 1000;
    if ((await exec.count()) !== Math.floor(JOBS * 0.9)) throw new Error(`admitted ${await exec.count()}, expected ${Math.floor(JOBS * 0.9)}`);
    return JOBS / seconds;
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    await Promise.all([intake.close(), exec.close(), held.close()]);
    await unlinkMatching(redis, `${prefix}:*`);
    await unlinkMatching(redis, `gk:{${prefix}}:*`);
    await redis.quit();
  }
}

async function main(): Promise<void> {
  process.env.GK_TEST_NO_DOCKER ??= '1';
  const infra = process.env.REDIS_URL ? null : await startInfra();
  const redisUrl = process.env.REDIS_URL ?? infra!.redisUrl;
  try {
    const rates: Record<number, number> = {};
    for (const k of [1, 2, 4]) {
      rates[k] = await run(redisUrl, k);
      process.stderr.write(`${k} gatekeeper process(es): ${rates[k]!.toFixed(0)} jobs/s\n`);
    }
    const md = [
      `Scaling: ${JOBS} jobs released at once to 1, 2 and 4 gatekeeper processes (${os.cpus().length} cores; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}):`,
      '',
      '| processes | jobs/s | ratio to 1 |',
      '| --- | --- | --- |',
      ...[1, 2, 4].map((k) => `| ${k} | ${rates[k]!.toFixed(0)} | ${(rates[k]! / rates[1]!).toFixed(2)} |`),
      '',
      'Zero over-admission in every run (exactly 90 % admitted).',
    ].join('\n');
    console.log(md);
    save('scaling.md', md + '\n');
    save('scaling.json', JSON.stringify({ jobs: JOBS, jobsPerSec: rates }, null, 2) + '\n');
  } finally {
    await infra?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
