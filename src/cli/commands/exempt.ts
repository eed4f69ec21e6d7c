/** `gatekeeper exempt list|add|remove`: job types admitted without counting. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function addExemptCommands(program: Command, { client, print }: CliContext): void {
  const exempt = program.command('exempt').description('job types admitted without counting (tracked separately)');
  exempt.command('list').action(async () => {
    const { api, json } = client();
    const r = await api.call('GET', '/exempt-job-types');
    print(json, r, () => (r.jobTypes.length ? r.jobTypes.join('\n') : '(no exempt job types)'));
  });
  for (const [name, method, what] of [['add', 'PUT', 'exempt'], ['remove', 'DELETE', 'counted again']] as const) {
    exempt
      .command(`${name} <jobType>`)
      .option('--reason <text>', 'why, for the audit log')
      .action(async (jobType: string, o: { reason?: string }) => {
        const { api, json } = client();
        const r = await api.call(method, `/exempt-job-types/${encodeURIComponent(jobType)}`, o.reason ? { reason: o.reason } : undefined);
        print(json, r, () => `${jobType}: ${what}; exempt job types: ${r.jobTypes.join(', ') || '(none)'}`);
      });
  }
}
