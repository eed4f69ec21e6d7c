/**
 * The demo's workload (run by scripts/demo.sh against a running instance):
 * sets budgets, quotas, a run cap and an exempt type through the API, writes
 * four weeks of settled history (scripts/demo-history.ts) so the dashboard's
 * 30-day lines show a trend at once, then submits jobs the way real
 * submitters do — straight onto the intake queue — in waves: steady renders
 * by several users, exempt regression tests, a 160-scene batch that meets
 * its run cap, a user past their daily quota. Then
 * an admin raises the batch's cap and releases the held scenes. Every GPU job
 * is simulated (runs SIM_JOB_MS, reports about 80 % of its estimate).
 */
import { Queue } from 'bullmq';
import { createRedis } from '../queues/connection.ts';
import { loadConfig } from '../src/config.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { seedHistory } from '../src/usage/seed-history.ts';
import { demoHistory, HISTORY_DAYS } from './demo-history.ts';

const base = `http://127.0.0.1:${process.env.PORT ?? 3000}`;
const admin = process.env.GATEKEEPER_ADMIN_TOKEN!;
const prefix = process.env.QUEUE_PREFIX ?? 'bull';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => process.stdout.write(`demo: ${s}\n`);

async function api(method: string, path: string, body?: unknown, credential = admin): Promise<any> {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json', 'x-gatekeeper-actor': 'demo-admin' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

async function waitForApi(): Promise<void> {
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      /* not up yet */
    }
    await sleep(500);
  }
  throw new Error(`no answer from ${base}/healthz after 60 s`);
}

interface Job { project: string; user: string; hours: number; jobType?: string; gpuType?: string; run?: string }
const job = (j: Job) => ({
  name: j.jobType ?? 'render',
  data: {
    project: j.project, user: j.user, estimatedGpuHours: j.hours, gpus: 1,
    ...(j.jobType ? { jobType: j.jobType } : {}), ...(j.gpuType ? { gpuType: j.gpuType } : {}), ...(j.run ? { run: j.run } : {}),
    payload: { simulate: { gpuHours: Math.round(j.hours * 80) / 100 } },
  },
});

async function main(): Promise<void> {
  await waitForApi();
  say('setting budgets, quotas, a run cap and an exempt type');
  await api('PUT', '/projects/render-farm/budget', { gpuHours: 400, period: 'month', rollover: true, rolloverCapGpuHours: 100, reason: 'demo' });
  await api('PUT', '/projects/research/budget', { gpuHours: 60, reason: 'demo' });
  await api('PUT', '/projects/ml-training/budget', { gpuHours: 150, period: 'week', policy: 'soft', gracePercent: 10, reason: 'demo' });
  await api('PUT', '/users/alice/quota', { daily: { gpuHours: 40 } });
  await api('PUT', '/users/bob/quota', { daily: { gpuHours: 12 }, weekly: { gpuHours: 50 } });
  await api('PUT', '/users/chen/quota', { daily: { gpuHours: 30, thresholds: [50, 80, 100] } });
  await api('PUT', '/projects/render-farm/runs/scenes-160/cap', { gpuHours: 100 });
  await api('PUT', '/exempt-job-types/regression-test', { reason: 'CI does not count' });
  // People with keys of their own: bob submits into research, mira manages it.
  const bobKey = (await api('POST', '/keys', { user: 'bob', role: 'submitter', projects: ['research'], reason: 'demo' })).key as string;
  const miraKey = (await api('POST', '/keys', { user: 'mira', role: 'manager', projects: ['research'], reason: 'demo' })).key as string;

  const config = loadConfig();
  const connection = createRedis(config.redisUrl, { cluster: config.redisCluster });
  // After the limits (history counts in their periods), before the live load
  // (no job is held yet, so no history job waits behind one).
  const accounting = new Accounting(connection, config.queuePrefix, config.settledRetainSeconds, config.timeZone);
  const now = Date.now();
  const seeded = await seedHistory(accounting, demoHistory(now, config.timeZone), now);
  say(`wrote ${HISTORY_DAYS} days of settled history (${seeded} jobs) through the reserve and settle scripts`);
  const intake = new Queue(process.env.INTAKE_QUEUE ?? 'gpu-intake', { connection, prefix });
  const users = ['alice', 'bob', 'chen', 'dana'];
  say('wave 1: steady work across projects, and regression tests (exempt)');
  for (let i = 0; i < 40; i++) {
    const user = users[i % users.length]!;
    await intake.addBulk([
      job({ project: i % 3 === 0 ? 'research' : 'ml-training', user, hours: 1 + (i % 4), jobType: i % 3 === 0 ? 'analysis' : 'train', gpuType: 'a100' }),
      ...(i % 5 === 0 ? [job({ project: 'render-farm', user, hours: 2, jobType: 'regression-test' })] : []),
    ]);
    await sleep(100);
  }
  say('wave 2: bob goes past his daily quota (his extra jobs are held; others are not)');
  await intake.addBulk(Array.from({ length: 8 }, () => job({ project: 'research', user: 'bob', hours: 2, jobType: 'analysis' })));
  await sleep(2000);
  const bobsHeld = (await api('GET', '/held?project=research', undefined, bobKey)).jobs as { jobId: string }[];
  if (bobsHeld[0]) {
    await api('POST', `/held/${bobsHeld[0].jobId}/override-requests`, { reason: 'results due for the review on Monday' }, bobKey);
    say(`bob asks for an override of job ${bobsHeld[0].jobId} with his own key; mira (manager of research) sees it on her dashboard`);
  }

  say('preflight of the 160-scene batch, then the batch itself');
  const batch = Array.from({ length: 160 }, () => job({ project: 'render-farm', user: 'render-bot', hours: 1, jobType: 'render', gpuType: 'l40s', run: 'scenes-160' }).data);
  const pre = await api('POST', '/preflight', { jobs: batch });
  say(`preflight: ${pre.admitted} would be admitted, ${pre.held} held; warnings: ${pre.warnings.join(' | ') || 'none'}`);
  await intake.addBulk(batch.map((data) => ({ name: 'render', data })));
  await sleep(8000);

  say('an admin raises the batch cap to 170 GPU-h and releases the held scenes');
  await api('PUT', '/projects/render-farm/runs/scenes-160/cap', { gpuHours: 170, reason: 'approved overrun' });
  const rel = await api('POST', '/held/release', { project: 'render-farm' });
  say(`released ${rel.admitted} of ${rel.considered}; ${rel.stillHeld} still held`);
  await intake.close();
  await connection.quit();
  say(`running. Dashboard: ${base}/dashboard  Bull Board: ${base}/admin/queues`);
  say(`log in with any user name; password ${admin} (admin) or ${process.env.GATEKEEPER_VIEWER_TOKEN} (viewer).`);
  say(`as a person: bob (submitter of research) ${bobKey} at ${base}/submit; mira (manager of research) ${miraKey}. Ctrl-C stops.`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
