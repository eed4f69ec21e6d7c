/** `gatekeeper run-cap get|set|remove`: GPU-hour caps on runs. */
import { Option, type Command } from 'commander';
import { amountField, limitFields, runPath, type LimitOpts, releaseOption, unitOf, unitOption } from '../args.ts';
import { scopeTable } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addRunCapCommands(program: Command, { client, print }: CliContext): void {
  const runCap = program.command('run-cap').description('GPU-hour caps on runs (batches of jobs with the same `run`)');
  runCap
    .command('get <project> <run>')
    .action(async (project: string, run: string) => {
      const { api, json } = client();
      const r = await api.call('GET', runPath(project, run));
      print(json, r, () => scopeTable([[`${project}/${run}`, r]]));
    });
  runCap
    .command('set <project> <run> <amount>')
    .description('cap a run (audited)')
    .addOption(unitOption())
    .addOption(new Option('--policy <policy>').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the cap, in percent')
    .addOption(releaseOption())
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, run: string, amount: string, o: LimitOpts & { unit?: string }) => {
      const { api, json } = client();
      const r = await api.call('PUT', runPath(project, run), { ...amountField(await unitOf(api, o.unit, runPath(project, run)), 'amount', amount), ...limitFields(o) });
      print(json, r, () => scopeTable([[`${project}/${run}`, r]]));
    });
  runCap
    .command('remove <project> <run>')
    .description('remove a cap (the run is still counted)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, run: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('DELETE', runPath(project, run), o.reason ? { reason: o.reason } : undefined);
      print(json, r, () => `removed the cap of run ${project}/${run}`);
    });
}
