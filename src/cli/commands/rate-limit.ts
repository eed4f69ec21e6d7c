/** `gatekeeper rate-limit list|get|set|remove`: submission rate limits (token buckets) of users and projects. */
import { CommanderError, Option, type Command } from 'commander';
import { EXIT, num, pageQuery } from '../args.ts';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

interface Target {
  user?: string;
  project?: string;
}

/** The API path of --user U or --project P (exactly one). */
function ratePath(o: Target): string {
  if ((o.user === undefined) === (o.project === undefined)) throw new CommanderError(EXIT.usage, 'usage', 'give exactly one of --user and --project');
  return o.user !== undefined ? `/users/${encodeURIComponent(o.user)}/rate-limit` : `/projects/${encodeURIComponent(o.project!)}/rate-limit`;
}

/** A whole number flag, or a usage error naming it. */
function whole(what: string, raw: string | undefined): number {
  if (raw === undefined) throw new CommanderError(EXIT.usage, 'usage', `give ${what}`);
  const n = num(what, raw);
  if (!Number.isInteger(n) || n < 1) throw new CommanderError(EXIT.usage, 'usage', `${what} must be a whole number >= 1, got "${raw}"`);
  return n;
}

const rateTable = (...rs: Record<string, any>[]) =>
  table(['SCOPE', 'JOBS/MIN', 'BURST', 'TOKENS NOW', 'UPDATED'], rs.map((r) => [r.scope, r.jobsPerMinute, r.burst, r.tokensNow, r.updatedAt]));

export function addRateLimitCommands(program: Command, { client, print }: CliContext): void {
  const rate = program.command('rate-limit').description('submission rate limits of users and projects (token buckets: jobs per minute, burst)');
  const target = (c: Command) => c.option('--user <user>', 'a user').option('--project <project>', 'a project');
  rate
    .command('list')
    .description("every limit you may see, projects' then users', by name, with the tokens available now")
    .addOption(new Option('--kind <kind>', "only users' or only projects' limits").choices(['user', 'project']))
    .option('--limit <n>', 'at most this many limits', '100')
    .option('--cursor <scope>', 'start after this scope, e.g. user:ann (what the previous page said)')
    .option('--search <text>', 'only names holding this (case-insensitive)')
    .action(async (o: { kind?: string; limit: string; cursor?: string; search?: string }) => {
      const { api, json } = client();
      const q = pageQuery(o);
      if (o.kind) q.set('kind', o.kind);
      const r = await api.call('GET', `/rate-limits?${q}`);
      const more = r.nextCursor === null ? '' : `\nmore: gatekeeper rate-limit list --cursor ${r.nextCursor}`;
      print(json, r, () => (r.rateLimits.length === 0 ? 'no rate limits' : rateTable(...r.rateLimits)) + more);
    });
  target(rate.command('get'))
    .description('the limit and the tokens available now')
    .action(async (o: Target) => {
      const { api, json } = client();
      const r = await api.call('GET', ratePath(o));
      print(json, r, () => rateTable(r));
    });
  target(rate.command('set'))
    .description('set a limit (audited); jobs over it wait on intake until their token is due')
    .option('--per-minute <n>', 'jobs per minute (1 to 1,000,000)')
    .option('--burst <n>', 'jobs that may come at once (1 to 100,000)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (o: Target & { perMinute?: string; burst?: string; reason?: string }) => {
      const path = ratePath(o);
      const body = { jobsPerMinute: whole('--per-minute', o.perMinute), burst: whole('--burst', o.burst), ...(o.reason ? { reason: o.reason } : {}) };
      const { api, json } = client();
      const r = await api.call('PUT', path, body);
      print(json, r, () => rateTable(r));
    });
  target(rate.command('remove'))
    .description('remove a limit (audited)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (o: Target & { reason?: string }) => {
      const path = ratePath(o);
      const { api, json } = client();
      const r = await api.call('DELETE', path, o.reason ? { reason: o.reason } : undefined);
      print(json, r, () => (r.removed ? `removed the rate limit of ${r.scope.replace(':', ' ')}` : `${r.scope.replace(':', ' ')} had no rate limit`));
    });
}
