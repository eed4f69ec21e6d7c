/** `gatekeeper gpu-types list|get|set` and `gatekeeper usage-factor list|set|remove`: the rate card and usage factors. */
import type { Command } from 'commander';
import { num } from '../args.ts';
import { table } from '../table.ts';
import { usdCell } from '../format.ts';
import type { CliContext } from '../context.ts';

/** One GPU type's row: its rate now and the next one, if any. */
function typeRow(t: Record<string, any>): unknown[] {
  const next = t.next ? `${t.next.unitsPerGpuHour} units, ${usdCell(t.next.usdPerGpuHour)} from ${t.next.effectiveFrom}` : '-';
  return [t.gpuType, t.unitsPerGpuHour ?? '-', t.usdPerGpuHour === null ? '-' : usdCell(t.usdPerGpuHour), t.effectiveFrom ?? (t.builtIn ? 'built in' : '-'), next];
}

export function addRateCardCommands(program: Command, { client, print }: CliContext): void {
  const types = program.command('gpu-types').description('the rate card: compute units and US dollars per GPU-hour, per GPU type');
  types
    .command('list')
    .description('every GPU type with a rate, the default rate, and what jobs of a type with none get')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/gpu-types');
      print(json, r, () => `${table(['GPU TYPE', 'UNITS/H', 'USD/H', 'SINCE', 'NEXT'], [...r.gpuTypes, r.default].map(typeRow))}\nunknown GPU types: ${r.unknownPolicy === 'reject' ? 'rejected' : 'the default rate'}`);
    });
  types
    .command('set <gpuType>')
    .description("set a GPU type's rate ('default': the default rate), from now or --from (audited); jobs keep the rate they were admitted with")
    .requiredOption('--units <n>', 'compute units per GPU-hour')
    .requiredOption('--usd <n>', 'US dollars per GPU-hour')
    .option('--from <time>', 'ISO 8601, now or later')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (gpuType: string, o: { units: string; usd: string; from?: string; reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('PUT', `/gpu-types/${encodeURIComponent(gpuType)}`, {
        unitsPerGpuHour: num('--units', o.units), usdPerGpuHour: num('--usd', o.usd), ...(o.from ? { effectiveFrom: o.from } : {}), ...(o.reason ? { reason: o.reason } : {}),
      });
      print(json, r, () => table(['GPU TYPE', 'UNITS/H', 'USD/H', 'SINCE', 'NEXT'], [typeRow(r)]));
    });
  const factor = program.command('usage-factor').description("job types' usage factors: 0.5 counts half, 2 double, 0 exempt");
  factor
    .command('list')
    .description('job types that count other than fully, with their factors')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/job-types');
      print(json, r, () => (r.jobTypes.length === 0 ? 'every job type counts fully' : table(['JOB TYPE', 'FACTOR'], r.jobTypes.map((j: Record<string, any>) => [j.jobType, j.exempt ? '0 (exempt)' : j.usageFactor]))));
    });
  factor
    .command('set <jobType> <factor>')
    .description('count a job type at this factor from now on (audited): 0.5 half, 2 double, 0 exempt')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (jobType: string, f: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('PUT', `/job-types/${encodeURIComponent(jobType)}/usage-factor`, { factor: num('factor', f), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, r, () => `${r.jobType}: counts x${r.usageFactor}${r.exempt ? ' (exempt)' : ''}`);
    });
  factor
    .command('remove <jobType>')
    .description('count it fully again')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (jobType: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('DELETE', `/job-types/${encodeURIComponent(jobType)}/usage-factor`, o.reason ? { reason: o.reason } : {});
      print(json, r, () => `${r.jobType}: counts fully${r.removed ? '' : ' (it did)'}`);
    });
}
