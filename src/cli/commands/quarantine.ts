/** `gatekeeper quarantine list|show|replay`: stream entries no store would take. */
import { Option, type Command } from 'commander';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

export function addQuarantineCommands(program: Command, { client, print }: CliContext): void {
  const quarantine = program.command('quarantine').description('stream entries no store would take, set aside so the entries after them flow');
  quarantine
    .command('list')
    .description('entries waiting for a replay, oldest first (--all: replayed ones too)')
    .addOption(new Option('--stream <stream>').choices(['ledger', 'events', 'audit']))
    .option('--all', 'include entries already replayed')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { stream?: string; all?: boolean; limit: string }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ limit: o.limit, ...(o.stream ? { stream: o.stream } : {}), ...(o.all ? {} : { waiting: 'true' }) });
      const r = await api.call('GET', `/quarantine?${q}`);
      print(json, r, () => {
        const rows = (r.entries as Record<string, any>[]).map((e) => [e.id, e.stream, e.streamId, e.quarantinedAt, e.replayedAt ? `by ${e.replayedBy}` : 'waiting', e.error]);
        return `${table(['ID', 'STREAM', 'STREAM ENTRY', 'QUARANTINED', 'REPLAYED', 'ERROR'], rows)}\n${r.total} ${o.all ? 'quarantined' : 'waiting'}`;
      });
    });
  quarantine
    .command('show <id>')
    .description('one entry: its raw fields and why it was refused')
    .action(async (id: string) => {
      const { api, json } = client();
      const e = await api.call('GET', `/quarantine/${encodeURIComponent(id)}`);
      print(json, e, () => {
        const pairs: string[][] = [];
        for (let i = 0; i + 1 < e.fields.length; i += 2) pairs.push([e.fields[i], e.fields[i + 1]]);
        return `entry ${e.id}: ${e.stream} stream entry ${e.streamId}, quarantined ${e.quarantinedAt}${e.replayedAt ? `, replayed by ${e.replayedBy} at ${e.replayedAt}` : ''}\n` +
          `error: ${e.error}\n\n${table(['FIELD', 'VALUE'], pairs)}`;
      });
    });
  quarantine
    .command('replay <id>')
    .description('store the entry now, after a fix (audited); --repair writes text Postgres cannot hold as escapes')
    .option('--repair', 'store control characters in its text as visible escapes (amounts unchanged)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (id: string, o: { repair?: boolean; reason?: string }) => {
      const { api, json } = client();
      const e = await api.call('POST', `/quarantine/${encodeURIComponent(id)}/replay`, { ...(o.repair ? { repair: true } : {}), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, e, () => `replayed entry ${e.id} (${e.stream} stream entry ${e.streamId})`);
    });
}
