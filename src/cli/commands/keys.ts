/** `gatekeeper keys create|list|revoke` (admins) and `gatekeeper whoami`: people's keys and who the CLI is. */
import type { Command } from 'commander';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

const keyRow = (k: Record<string, any>) => [k.id, k.user, k.role, k.projects ? k.projects.join(',') : '(all)', k.state, k.expiresAt ?? '', k.lastUsedAt ?? 'never', k.createdBy];
const HEADER = ['ID', 'USER', 'ROLE', 'PROJECTS', 'STATE', 'EXPIRES', 'LAST USED', 'CREATED BY'];

export function addKeyCommands(program: Command, { client, print }: CliContext): void {
  program
    .command('whoami')
    .description('who the API takes you for: person, role, projects, and how you were known')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/me');
      const via = r.via === 'token' ? 'a shared token (the name is the one you declared)' : r.via;
      print(json, r, () => `${r.user}: ${r.role} of ${r.projects ? r.projects.join(', ') : 'every project'}, known by ${via}`);
    });
  const keys = program.command('keys').description("people's API keys (admins only)");
  keys
    .command('create <user>')
    .description('a key for a person; it is printed once and stored only as a digest')
    .requiredOption('--role <role>', 'admin, manager, submitter or viewer')
    .option('--projects <list>', 'comma-separated projects the key acts in (default: every project)')
    .option('--expires <when>', 'ISO 8601 date-time the key stops working, e.g. 2027-03-31T00:00:00Z')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (user: string, o: { role: string; projects?: string; expires?: string; reason?: string }) => {
      const { api, json } = client();
      const body = {
        user, role: o.role,
        ...(o.projects !== undefined ? { projects: o.projects.split(',').map((p) => p.trim()).filter(Boolean) } : {}),
        ...(o.expires !== undefined ? { expiresAt: o.expires } : {}),
        ...(o.reason ? { reason: o.reason } : {}),
      };
      const r = await api.call('POST', '/keys', body);
      print(json, r, () => `${table(HEADER, [keyRow(r)])}\n\nkey (shown this once; give it to ${user}):\n${r.key}`);
    });
  keys
    .command('list')
    .option('--user <user>', 'only this person’s keys')
    .option('--revoked', 'include revoked keys')
    .action(async (o: { user?: string; revoked?: boolean }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ ...(o.user ? { user: o.user } : {}), ...(o.revoked ? { revoked: 'true' } : {}) });
      const r = await api.call('GET', `/keys${q.size ? `?${q}` : ''}`);
      print(json, r, () => (r.keys.length ? table(HEADER, r.keys.map(keyRow)) : '(no keys)'));
    });
  keys
    .command('revoke <id>')
    .description('the key stops working at the next request')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (id: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('DELETE', `/keys/${encodeURIComponent(id)}`, o.reason ? { reason: o.reason } : undefined);
      print(json, r, () => table(HEADER, [keyRow(r)]));
    });
}
