/** `gatekeeper budget list|get|set|adjust`: project budgets in GPU hours, compute units or dollars. */
import { Option, type Command } from 'commander';
import { amountField, budgetPath, limitFields, num, pageQuery, type LimitOpts, releaseOption, typeBudgetPath, unitOf, unitOption } from '../args.ts';
import { budgetTable, projectsTable, scopeTable } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addBudgetCommands(program: Command, { client, print }: CliContext): void {
  const budget = program.command('budget').description('project budgets (GPU hours, units or USD)');
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
      const b = await api.call('GET', budgetPath(project));
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('set <project> <amount>')
    .description('set, raise or lower a budget (audited); options not given keep their current value')
    .addOption(unitOption())
    .option('--reason <text>', 'why, for the audit log')
    .addOption(new Option('--period <period>', 'when it renews').choices(['none', 'week', 'month']))
    .option('--rollover', 'a new period starts with what the last one left unused')
    .option('--no-rollover', 'no rollover')
    .option('--rollover-cap <amount>', "at most this much rolls over (in the budget's unit)")
    .addOption(new Option('--policy <policy>', 'hard: hold at the limit; soft: admit past it with warnings').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the limit, in percent')
    .addOption(releaseOption())
    .action(async (project: string, amount: string, o: LimitOpts & { unit?: string; period?: string; rollover?: boolean; rolloverCap?: string }) => {
      const { api, json } = client();
      const path = budgetPath(project);
      const unit = await unitOf(api, o.unit, path);
      const b = await api.call('PUT', path, {
        ...amountField(unit, 'amount', amount),
        ...limitFields(o),
        ...(o.period ? { period: o.period } : {}),
        ...(o.rollover !== undefined ? { rollover: o.rollover } : {}),
        ...(o.rolloverCap !== undefined ? { [unit === 'gpuHours' ? 'rolloverCapGpuHours' : 'rolloverCap']: num('--rollover-cap', o.rolloverCap) } : {}),
      });
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('adjust <project> <amount>')
    .description("add (+) or take (-) an amount in the budget's unit for the current period only (audited)")
    .addOption(unitOption())
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, amount: string, o: { unit?: string; reason?: string }) => {
      const { api, json } = client();
      const unit = await unitOf(api, o.unit, budgetPath(project));
      const b = await api.call('POST', `${budgetPath(project)}/adjust`, { ...amountField(unit, 'amount', amount), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('gpu-types <project>')
    .description('the GPU types a project may use and its budgets for them: shown, or set with --allow (admins; audited)')
    .option('--allow <types>', 'comma separated, e.g. h100,a100')
    .option('--any', 'any GPU type again')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, o: { allow?: string; any?: boolean; reason?: string }) => {
      const { api, json } = client();
      const path = `/projects/${encodeURIComponent(project)}/gpu-types`;
      const r = o.allow === undefined && !o.any
        ? await api.call('GET', path)
        : await api.call('PUT', path, { allowed: o.any ? null : o.allow!.split(',').map((t) => t.trim()).filter(Boolean), ...(o.reason ? { reason: o.reason } : {}) });
      const types = (r.budgets ?? []) as Record<string, any>[];
      const budgets = types.length === 0 ? '' : `\n${scopeTable(types.map((b) => [`project ${r.project}'s ${b.gpuType}`, b]))}`;
      print(json, r, () => `${r.project}: ${r.allowed === null ? 'any GPU type' : `only ${r.allowed.join(', ')}`}${budgets}`);
    });
  budget
    .command('type <project> <gpuType> [amount]')
    .description("a project's budget for one GPU type: shown, or set with an amount (audited), or removed with --remove")
    .addOption(unitOption())
    .addOption(new Option('--period <period>', 'when it renews').choices(['none', 'week', 'month']))
    .addOption(new Option('--policy <policy>').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the limit, in percent')
    .addOption(releaseOption())
    .option('--remove', 'remove it (the type is still counted)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, gpuType: string, amount: string | undefined, o: LimitOpts & { unit?: string; period?: string; remove?: boolean }) => {
      const { api, json } = client();
      const path = typeBudgetPath(project, gpuType);
      const b = o.remove
        ? await api.call('DELETE', path, o.reason ? { reason: o.reason } : {})
        : amount === undefined
          ? await api.call('GET', path)
          : await api.call('PUT', path, { ...amountField(await unitOf(api, o.unit, path), 'amount', amount), ...limitFields(o), ...(o.period ? { period: o.period } : {}) });
      print(json, b, () => scopeTable([[`project ${project}'s ${gpuType}`, b]]));
    });
}

