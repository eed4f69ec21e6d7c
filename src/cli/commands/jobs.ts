/** `gatekeeper preflight` and `gatekeeper submit`: ask what would happen to jobs, or add them. */
import type { Command } from 'commander';
import { jobsBody, type JobOpts } from '../args.ts';
import { preflightText, submitText } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addJobCommands(program: Command, { client, print }: CliContext): void {
  for (const [name, path, what] of [
    ['preflight', '/preflight', 'what would happen to these jobs now (reserves nothing)'],
    ['submit', '/jobs', 'add jobs to the intake queue through the API (validated; all or none)'],
  ] as const) {
    program
      .command(name)
      .description(what)
      .option('--file <path>', "a JSON file: one job, or { \"jobs\": [...] } ('-' reads standard input)")
      .option('--project <name>')
      .option('--user <name>')
      .option('--hours <gpuHours>', 'estimated GPU hours per job')
      .option('--gpus <n>')
      .option('--job-type <type>')
      .option('--gpu-type <type>', "the GPU type it runs on (priced at the default rate when it has none)")
      .option('--run <run>')
      .option('--count <n>', 'this many identical jobs', '1')
      .action(async (o: JobOpts) => {
        const { api, json } = client();
        const r = await api.call('POST', path, await jobsBody(o));
        print(json, r, () => (name === 'preflight' ? preflightText(r) : submitText(r)));
      });
  }
}
