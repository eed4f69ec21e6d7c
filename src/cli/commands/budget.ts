/** `gatekeeper budget list|get|set|adjust`: project budgets in GPU hours. */
import { Option, type Command } from 'commander';
import { limitFields, num, pageQuery, type LimitOpts, releaseOption } from '../args.ts';
import { budgetTable, projectsTable } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addBudgetCommands(program: Command, { client, print }: CliContext): void {
  const budget = program.command('budget').description('project budgets (GPU hours)');
  budget
    .command('list')
    .description('every project with a budget or with held jobs, by name, with its budget and held jobs')
    .option('--limit <n>', 'at most this many', '100')
    .option('--cursor <project>', 'start after this project (what the previous page said)')
    .option('--search <text>', 'only projects whose name holds this (case-insensitive)')
    .action(async (o: { limit: string; cursor?: string; search?: string }) => {
      const { api, json } = client();
      const r = await api.call('GET', `/projects?${pageQuery(o)}`);
      print(json, r, () => projectsTable(r));
    });
  budget
    .command('get <project>')
    .description('limit, used, reserved and remaining')
    .action(async (project: string) => {
      const { api, json } = client();
      const b = await api.call('GET', `/projects/${encodeURIComponent(project)}/budget`);
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('set <project> <gpuHours>')
    .description('set, raise or lower a budget (audited); options not given keep their current value')
    .option('--reason <text>', 'why, for the audit log')
    .addOption(new Option('--period <period>', 'when it renews').choices(['none', 'week', 'month']))
    .option('--rollover', 'a new period starts with what the last one left unused')
    .option('--no-rollover', 'no rollover')
    .option('--rollover-cap <gpuHours>', 'at most this much rolls over')
    .addOption(new Option('--policy <policy>', 'hard: hold at the limit; soft: admit past it with warnings').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the limit, in percent')
    .addOption(releaseOption())
    .action(async (project: string, hours: string, o: LimitOpts & { period?: string; rollover?: boolean; rolloverCap?: string }) => {
      const { api, json } = client();
      const b = await api.call('PUT', `/projects/${encodeURIComponent(project)}/budget`, {
        gpuHours: num('gpuHours', hours),
        ...limitFields(o),
        ...(o.period ? { period: o.period } : {}),
        ...(o.rollover !== undefined ? { rollover: o.rollover } : {}),
        ...(o.rolloverCap !== undefined ? { rolloverCapGpuHours: num('--rollover-cap', o.rolloverCap) } : {}),
      });
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('adjust <project> <gpuHours>')
    .description('add (+) or take (-) GPU hours for the current period only (audited)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, hours: string, o: { reason?: string }) => {
      const { api, json } = client();
      const b = await api.call('POST', `/projects/${encodeURIComponent(project)}/budget/adjust`, { gpuHours: num('gpuHours', hours), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, b, () => budgetTable(b));
    });
}
