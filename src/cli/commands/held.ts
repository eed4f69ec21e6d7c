/** `gatekeeper held list|release|override|cancel|request-override`: jobs waiting for budget. */
import type { Command } from 'commander';
import { table } from '../table.ts';
import { age } from '../format.ts';
import type { CliContext } from '../context.ts';
import { addRequestOverrideCommand } from './override-requests.ts';

export function addHeldCommands(program: Command, cli: CliContext): void {
  const { client, print } = cli;
  const held = program.command('held').description('jobs waiting for budget');
  held
    .command('list')
    .description('held jobs, oldest first, with age, reason with today\'s numbers, and what will start each')
    .option('--project <name>')
    .option('--user <name>')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { project?: string; user?: string; limit: string }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ limit: o.limit, ...(o.project ? { project: o.project } : {}), ...(o.user ? { user: o.user } : {}) });
      const r = await api.call('GET', `/held?${q}`);
      print(json, r, () => {
        const rows = (r.jobs as Record<string, unknown>[]).map((j) => [j.jobId, j.project, j.user, j.estimatedGpuHours, age(Number(j.ageSeconds)), j.reason, j.startsWhen ?? '']);
        return `${table(['JOB', 'PROJECT', 'USER', 'GPU-H', 'AGE', 'REASON (NOW)', 'STARTS WHEN'], rows)}\n${r.total} held`;
      });
    });
  held
    .command('release [ids...]')
    .description('re-run admission, first in first out; those that fit are admitted (audited)')
    .option('--all', 'every held job')
    .option('--project <name>')
    .option('--user <name>')
    .action(async (ids: string[], o: { all?: boolean; project?: string; user?: string }) => {
      const { api, json } = client();
      const body = ids.length > 0 ? { ids } : { ...(o.all ? { all: true } : {}), ...(o.project ? { project: o.project } : {}), ...(o.user ? { user: o.user } : {}) };
      const r = await api.call('POST', '/held/release', body);
      print(json, r, () => `admitted ${r.admitted} of ${r.considered}; ${r.stillHeld} still held` + (r.notHeld.length ? `; ${r.notHeld.length} not held` : '') + (r.rejected?.length ? `; ${r.rejected.length} rejected: ${r.rejected[0].reason}${r.rejected.length > 1 ? ' (and more)' : ''}` : ''));
    });
  held
    .command('override <id>')
    .description('admit one held job regardless of budget (flagged in ledger and audit)')
    .option('--reason <text>')
    .action(async (id: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', `/held/${encodeURIComponent(id)}/override`, o.reason ? { reason: o.reason } : {});
      print(json, r, () => `admitted ${id} (${r.reservedGpuHours} GPU-h reserved, override)`);
    });
  held
    .command('cancel <id>')
    .description('cancel a held job; it moves to gpu-rejected with your reason')
    .requiredOption('--reason <text>', 'why (shown on the rejected job)')
    .action(async (id: string, o: { reason: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', `/held/${encodeURIComponent(id)}/cancel`, { reason: o.reason });
      print(json, r, () => `cancelled ${id}: ${o.reason}`);
    });
  addRequestOverrideCommand(held, cli);
}
