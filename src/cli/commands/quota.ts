/** `gatekeeper quota list|get|set`: users' daily and weekly quotas in GPU hours. */
import { CommanderError, Option, type Command } from 'commander';
import { amountField, EXIT, limitFields, pageQuery, quotaPath, type LimitOpts, releaseOption, unitOf, unitOption } from '../args.ts';
import { quotaTable, scopeTable } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addQuotaCommands(program: Command, { client, print }: CliContext): void {
  const quota = program.command('quota').description("users' daily and weekly quotas (GPU hours, units or USD)");
  quota
    .command('list')
    .description('users with a quota, by name, with both quotas')
    .option('--limit <n>', 'at most this many users', '100')
    .option('--cursor <user>', 'start after this user (what the previous page said)')
    .option('--search <text>', 'only users whose name holds this (case-insensitive)')
    .action(async (o: { limit: string; cursor?: string; search?: string }) => {
      const { api, json } = client();
      const r = await api.call('GET', `/quotas?${pageQuery(o)}`);
      const quotas = r.quotas as Record<string, any>[];
      const more = r.nextCursor === null ? '' : `\nmore: gatekeeper quota list --cursor ${r.nextCursor}`;
      print(json, r, () => scopeTable(quotas.flatMap((q) => [[`${q.user} daily`, q.daily], [`${q.user} weekly`, q.weekly]] as [string, Record<string, any>][])) + more);
    });
  quota
    .command('get <user>')
    .description('used, reserved, remaining and next reset, per period')
    .action(async (user: string) => {
      const { api, json } = client();
      const q = await api.call('GET', quotaPath(user));
      print(json, q, () => quotaTable(q));
    });
  quota
    .command('set <user>')
    .description('set or remove a daily and/or weekly quota (audited)')
    .option('--daily <gpuHours>', "the daily quota ('none' removes it)")
    .option('--weekly <gpuHours>', "the weekly quota ('none' removes it)")
    .addOption(unitOption())
    .addOption(new Option('--policy <policy>').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the quota, in percent')
    .addOption(releaseOption())
    .option('--reason <text>', 'why, for the audit log')
    .action(async (user: string, o: LimitOpts & { unit?: string; daily?: string; weekly?: string }) => {
      if (o.daily === undefined && o.weekly === undefined) throw new CommanderError(EXIT.usage, 'usage', 'give --daily and/or --weekly');
      const { api, json } = client();
      const path = quotaPath(user);
      const one = async (v: string | undefined, what: 'daily' | 'weekly') =>
        v === undefined ? {} : { [what]: v === 'none' ? null : { ...amountField(await unitOf(api, o.unit, path, (q) => q[what]), `--${what}`, v), ...limitFields({ ...o, reason: undefined }) } };
      const q = await api.call('PUT', path, { ...(await one(o.daily, 'daily')), ...(await one(o.weekly, 'weekly')), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, q, () => quotaTable(q));
    });
}
