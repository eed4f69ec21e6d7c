/**
 * The write-side cost of the usage rollups: the ledger writer's statement
 * (insertLedgerRows) as it was before the coarser rollups (git commit
 * 11f0bf4: usage_daily and usage_by_day only), with usage_by_period and
 * usage_monthly (892c6da), and as it is now (usage_weekly too), each against
 * its own database at the same schema, batches taking turns in one process
 * so load falls on all alike. `npx tsx bench/ledger-rollups.ts`;
 * BENCH_DRAIN_BATCHES (200) batches of 500 rows (half reserve, half settle),
 * 1,000 projects and 10,000 users, ten seconds apart. Figures in
 * docs/benchmarks.md.
 */
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { insertLedgerRows, type LedgerRow, type StreamPosition } from '../src/db/ledger.ts';
import { createDatabase, startInfra } from '../test/support/infra.ts';

const BATCHES = Number(process.env.BENCH_DRAIN_BATCHES ?? 200);
const BATCH = 500;
type Insert = typeof insertLedgerRows;

/** The writer's statement at an older commit, imported from a copy of its file. */
async function at(commit: string): Promise<Insert> {
  const dir = mkdtempSync(join(os.tmpdir(), 'ledger-rollups-'));
  const file = join(dir, 'ledger.ts');
  writeFileSync(file, execFileSync('git', ['show', `${commit}:src/db/ledger.ts`], { encoding: 'utf8' }));
  return ((await import(file)) as { insertLedgerRows: Insert }).insertLedgerRows;
}

function batch(b: number): (LedgerRow & StreamPosition)[] {
  const base = Date.parse('2026-11-01T00:00:00Z');
  return Array.from({ length: BATCH }, (_, i) => {
    const settle = i % 2 === 1;
    const g = (settle ? b : b + 1) * BATCH + i - (settle ? 1 : 0); // settles the job reserved one batch earlier
    const t = base + (b * BATCH + i) * 10_000;
    const u = (g * 31) % 10_000;
    return {
      kind: settle ? 'settle' : 'reserve', jobId: `j${g}`, project: `p${(u * 7 + (g % 3 === 0 ? 1 : 0)) % 1_000}`, user: `u${u}`,
      jobType: `type${g % 8}`, gpuType: 'a100', scopes: [`project:p${u % 1_000}`], estimated: '3600000', actual: settle ? String(g % 7_200_000) : null,
      admittedAt: new Date(t - 3_600_000).toISOString(), at: new Date(t).toISOString(), note: null, override: false, exempt: g % 50 === 0,
      run: null, meta: null, submittedMs: null, streamMs: String(t), streamSeq: String(i),
      price: '3000|4000000|1000', charge: '3600000|3000|4000000', actualCharge: settle ? `${g % 7_200_000}|0|0` : null,
    };
  });
}

async function main(): Promise<void> {
  process.env.GK_TEST_NO_DOCKER ??= '1';
  const infra = await startInfra();
  const variants: { name: string; insert: Insert; pool?: Pool; drop?: () => Promise<void>; ms: number }[] = [
    { name: 'usage_daily, usage_by_day (11f0bf4)', insert: await at('11f0bf4'), ms: 0 },
    { name: '+ usage_by_period, usage_monthly (892c6da)', insert: await at('892c6da'), ms: 0 },
    { name: '+ usage_weekly (now)', insert: insertLedgerRows, ms: 0 },
  ];
  try {
    for (const [i, v] of variants.entries()) {
      const db = await createDatabase(infra.databaseUrl, `gk_bench_drain_${i}_${Date.now()}`);
      v.drop = db.drop;
      v.pool = createPool(db.url, 2);
      await migrate(v.pool);
    }
    for (let b = 0; b < BATCHES; b++) {
      const rows = batch(b);
      // Rotate who goes first so no variant always meets a warm or cold cache.
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(b + k) % variants.length]!;
        const t = performance.now();
        await v.insert(v.pool!, rows, 'UTC');
        v.ms += performance.now() - t;
      }
    }
    const base = variants[0]!.ms;
    const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
    console.log(`${BATCHES} batches of ${BATCH} ledger rows, load average ${load}:\n`);
    console.log('| writer statement keeps | ms per batch | vs daily rollups only |\n| --- | --- | --- |');
    for (const v of variants) console.log(`| ${v.name} | ${(v.ms / BATCHES).toFixed(1)} | ${(v.ms / base).toFixed(2)} |`);
  } finally {
    for (const v of variants) {
      await v.pool?.end();
      await v.drop?.();
    }
    await infra.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
