/**
 * The set-up the waker suites share (wake-model, wake-stale): an
 * environment on a test clock, Budgets and HeldJobs on it, and two wakers
 * on two connections, as two reconcilers would run them.
 */
import { createTestEnv, TestClock, type TestEnv } from './env.ts';
import { Budgets } from '../../src/accounting/budgets.ts';
import { HeldJobs } from '../../src/admin/held.ts';
import { createWaker, type Waker } from '../../workers/waker.ts';

export interface WakeEnv {
  t: TestEnv;
  budgets: Budgets;
  held: HeldJobs;
  wakers: Waker[];
  close(): Promise<void>;
}

export async function createWakeEnv(now: number): Promise<WakeEnv> {
  const t = await createTestEnv();
  const clock = new TestClock(now);
  const held = new HeldJobs(t.config, t.redis, t.pool, clock, t.log);
  const wakers = [t.redis, t.connection()].map((connection) => createWaker({ config: t.config, connection, pool: t.pool, log: t.log, clock }));
  return {
    t, held, wakers,
    budgets: new Budgets(t.pool, t.accounting, clock),
    async close() {
      await Promise.all(wakers.map((w) => w.close()));
      await held.close();
      await t.close();
    },
  };
}
