/**
 * The whole admission pipeline in the test's process, on the test's env:
 * gatekeeper, simulated GPU worker, reconciler and ledger writer (each with
 * its own connections), stopped in reverse order by close().
 */
import { createGatekeeper } from '../../workers/gatekeeper.ts';
import { createReconciler } from '../../workers/reconciler.ts';
import { createGpuSim } from '../../workers/gpu-sim.ts';
import { LedgerWriter } from '../../src/ledger/writer.ts';
import { systemClock } from '../../src/clock.ts';
import type { TestEnv } from './env.ts';

export async function startPipeline(t: TestEnv): Promise<{ close(): Promise<void> }> {
  const gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log });
  const rec = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock: systemClock });
  rec.start();
  const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { blockMs: 20 });
  await writer.start();
  return {
    async close() {
      await gk.close();
      await sim.close();
      await rec.close();
      await writer.stop();
    },
  };
}
