/** `gatekeeper correct credit|refund|re-rate` and `gatekeeper corrections`: corrections, append-only (admins). */
import type { Command } from 'commander';
import { amountField, limitPathOf, num, unitOf, unitOption } from '../args.ts';
import { table } from '../table.ts';
import { hoursCell, unitsCell, usdCell } from '../format.ts';
import type { CliContext } from '../context.ts';

/** What a correction did, in one line. */
function summary(r: Record<string, any>): string {
  const c = r.charged as { gpuHours: number; units: number; usd: number };
  const skipped = r.skippedRunning ? `; ${r.skippedRunning} running job${r.skippedRunning === 1 ? '' : 's'} left as they are` : '';
  return `${r.corrections} correction${r.corrections === 1 ? '' : 's'}: ${hoursCell(c.gpuHours)} GPU-h, ${unitsCell(c.units)} units, ${usdCell(c.usd)}${skipped}`;
}

export function addCorrectionCommands(program: Command, { client, print }: CliContext): void {
  const correct = program.command('correct').description('corrections: new ledger rows, never edits (admins; audited; --reason required)');
  correct
    .command('credit <scope> <amount>')
    .description('give a scope (project:alpha, user-day:ann, …) back an amount for its current period')
    .addOption(unitOption())
    .requiredOption('--reason <text>', 'why, for the audit log and the ledger')
    .action(async (scope: string, amount: string, o: { unit?: string; reason: string }) => {
      const { api, json } = client();
      const limit = limitPathOf(scope);
      const unit = limit ? await unitOf(api, o.unit, limit.path, limit.pick) : o.unit;
      const r = await api.call('POST', '/corrections', { kind: 'credit', scope, ...amountField(unit, 'amount', amount), reason: o.reason });
      print(json, r, () => summary(r));
    });
  correct
    .command('refund <jobId>')
    .description("take back a job's charge: all that is left of it, or --hours of it")
    .option('--hours <gpuHours>', 'GPU hours of its run to refund')
    .requiredOption('--reason <text>', 'why, for the audit log and the ledger')
    .action(async (jobId: string, o: { hours?: string; reason: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', '/corrections', { kind: 'refund', jobId, ...(o.hours !== undefined ? { gpuHours: num('--hours', o.hours) } : {}), reason: o.reason });
      print(json, r, () => summary(r));
    });
  correct
    .command('re-rate <gpuType>')
    .description('charge the ended jobs of a GPU type admitted in [--from, --to) at a corrected rate')
    .requiredOption('--from <time>', 'ISO 8601, e.g. 2026-11-01T00:00:00Z')
    .requiredOption('--to <time>', 'ISO 8601, exclusive')
    .requiredOption('--units <n>', 'compute units per GPU-hour')
    .requiredOption('--usd <n>', 'US dollars per GPU-hour')
    .requiredOption('--reason <text>', 'why, for the audit log and the ledger')
    .action(async (gpuType: string, o: { from: string; to: string; units: string; usd: string; reason: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', '/corrections', {
        kind: 're-rate', gpuType, from: o.from, to: o.to, unitsPerGpuHour: num('--units', o.units), usdPerGpuHour: num('--usd', o.usd), reason: o.reason,
      });
      print(json, r, () => summary(r));
    });
  program
    .command('corrections')
    .description('corrections made, newest first')
    .option('--job <jobId>', 'only those of one job')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { job?: string; limit: string }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ limit: o.limit, ...(o.job ? { jobId: o.job } : {}) });
      const r = await api.call('GET', `/corrections?${q}`);
      print(json, r, () => table(['ID', 'KIND', 'JOB', 'GPU-H', 'UNITS', 'USD', 'BY', 'AT', 'REASON'], r.corrections.map((c: Record<string, any>) => [
        c.id, c.kind, c.jobId, hoursCell(c.charged.gpuHours), unitsCell(c.charged.units), usdCell(c.charged.usd), c.actor ?? '-', c.at, c.reason ?? '',
      ])) + `\n${r.total} correction${r.total === 1 ? '' : 's'}`);
    });
}
