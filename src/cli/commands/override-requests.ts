/** `gatekeeper override-requests [list]|approve|deny`: held jobs' owners asking for an override or a raise. */
import { Option, type Command } from 'commander';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

/** One line for a request: who asked what, and where it stands. */
function requestLine(r: Record<string, any>): string {
  const decided = r.state === 'closed' ? ` (${r.closedNote})` : r.decidedBy ? ` by ${r.decidedBy}${r.decisionReason ? `: ${r.decisionReason}` : ''}` : '';
  return `override request #${r.id} for job ${r.jobId} (${r.kind}, asked by ${r.requestedBy}): ${r.state}${decided}`;
}

export function addOverrideRequestCommands(program: Command, { client, print }: CliContext): void {
  const requests = program.command('override-requests').description('held jobs whose owners ask for an override or a budget raise');
  requests
    .command('list', { isDefault: true })
    .description('requests you may see, newest first (managers: their projects\'; submitters: their own)')
    .addOption(new Option('--state <state>', 'which requests').choices(['open', 'approved', 'denied', 'closed', 'all']).default('open'))
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { state: string; limit: string }) => {
      const { api, json } = client();
      const r = await api.call('GET', `/override-requests?${new URLSearchParams({ state: o.state, limit: o.limit })}`);
      print(json, r, () => {
        const rows = (r.requests as Record<string, any>[]).map((q) => [
          q.id, q.jobId, q.project, q.user, q.kind, q.requestedBy, q.reason, q.state,
          q.state === 'closed' ? q.closedNote : q.decidedBy ? `${q.decidedBy}${q.decisionReason ? `: ${q.decisionReason}` : ''}` : '',
        ]);
        return `${table(['ID', 'JOB', 'PROJECT', 'USER', 'KIND', 'ASKED BY', 'REASON', 'STATE', 'DECISION'], rows)}\n${r.total} ${o.state === 'all' ? 'requests' : o.state}`;
      });
    });
  requests
    .command('approve <id>')
    .description('admit the request\'s job as an override (audited with requester and approver)')
    .option('--reason <text>')
    .action(async (id: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', `/override-requests/${encodeURIComponent(id)}/approve`, o.reason ? { reason: o.reason } : {});
      print(json, r, () => requestLine(r));
    });
  requests
    .command('deny <id>')
    .description('refuse the request; the requester sees your reason')
    .requiredOption('--reason <text>', 'why (shown to the requester)')
    .action(async (id: string, o: { reason: string }) => {
      const { api, json } = client();
      const r = await api.call('POST', `/override-requests/${encodeURIComponent(id)}/deny`, { reason: o.reason });
      print(json, r, () => requestLine(r));
    });
}

/** `gatekeeper held request-override <id> --reason …`: ask a manager to admit your held job. */
export function addRequestOverrideCommand(held: Command, { client, print }: CliContext): void {
  held
    .command('request-override <id>')
    .description('ask a manager of the job\'s project to admit your held job (--raise: ask for a budget raise)')
    .requiredOption('--reason <text>', 'why (shown to the managers)')
    .option('--raise', 'ask for a budget raise rather than an override')
    .action(async (id: string, o: { reason: string; raise?: boolean }) => {
      const { api, json } = client();
      const r = await api.call('POST', `/held/${encodeURIComponent(id)}/override-requests`, { reason: o.reason, ...(o.raise ? { kind: 'raise' } : {}) });
      print(json, r, () => requestLine(r));
    });
}
