/**
 * `gatekeeper`: the admin CLI. It talks to the HTTP API (so every change is
 * validated and audited in one place) at GATEKEEPER_URL with GATEKEEPER_TOKEN.
 *
 *   gatekeeper budget get alpha
 *   gatekeeper budget set alpha 150 --reason "quarter-end"
 *   gatekeeper held list --project alpha
 *   gatekeeper held release --project alpha
 *   gatekeeper held override 1234 --reason "demo"
 *   gatekeeper held cancel 1234 --reason "duplicate"
 *
 * Tables for people by default; --json for scripts. Exit codes: 0 done,
 * 1 failed (server or network), 2 bad usage, 3 not allowed (401/403),
 * 4 not found (404), 5 refused (400/409/413: the message says why).
 */
import { Command, CommanderError, Option } from 'commander';
import { ApiClient, ApiError } from './client.ts';
import { table } from './table.ts';

export const EXIT = { ok: 0, failed: 1, usage: 2, forbidden: 3, notFound: 4, refused: 5 } as const;

interface Globals {
  url: string;
  token?: string;
  actor: string;
  json?: boolean;
}

export function buildCli(out: (s: string) => void): Command {
  const program = new Command('gatekeeper')
    .description('Budgets and held jobs of gpu-gatekeeper')
    .addOption(new Option('--url <url>', 'API base URL').env('GATEKEEPER_URL').default('http://127.0.0.1:3000'))
    .addOption(new Option('--token <token>', 'admin or viewer token').env('GATEKEEPER_TOKEN'))
    .addOption(new Option('--actor <name>', 'who you are, for the audit log').env('USER').default('cli'))
    .option('--json', 'print JSON instead of tables')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: (s) => process.stderr.write(s) });

  const client = () => {
    const g = program.opts<Globals>();
    return { api: new ApiClient(g.url, g.token, g.actor), json: Boolean(g.json) };
  };
  const print = (json: boolean, value: unknown, human: () => string) => out(json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');

  const budget = program.command('budget').description('project budgets (GPU hours)');
  budget
    .command('get <project>')
    .description('limit, used, reserved and remaining')
    .action(async (project: string) => {
      const { api, json } = client();
      const b = await api.call('GET', `/projects/${encodeURIComponent(project)}/budget`);
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('set <project> <gpuHours>')
    .description('set, raise or lower a budget (audited)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, hours: string, o: { reason?: string }) => {
      const gpuHours = Number(hours);
      if (hours.trim() === '' || !Number.isFinite(gpuHours)) throw new CommanderError(EXIT.usage, 'usage', `gpuHours must be a number, got "${hours}"`);
      const { api, json } = client();
      const b = await api.call('PUT', `/projects/${encodeURIComponent(project)}/budget`, { gpuHours, ...(o.reason ? { reason: o.reason } : {}) });
      print(json, b, () => budgetTable(b));
    });

  const held = program.command('held').description('jobs waiting for budget');
  held
    .command('list')
    .description('held jobs, oldest first, with reason and age')
    .option('--project <name>')
    .option('--user <name>')
    .option('--limit <n>', 'at most this many', '100')
    .action(async (o: { project?: string; user?: string; limit: string }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ limit: o.limit, ...(o.project ? { project: o.project } : {}), ...(o.user ? { user: o.user } : {}) });
      const r = await api.call('GET', `/held?${q}`);
      print(json, r, () => {
        const rows = (r.jobs as Record<string, unknown>[]).map((j) => [j.jobId, j.project, j.user, j.estimatedGpuHours, age(Number(j.ageSeconds)), j.reason]);
        return `${table(['JOB', 'PROJECT', 'USER', 'GPU-H', 'AGE', 'REASON'], rows)}\n${r.total} held`;
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
      print(json, r, () => `admitted ${r.admitted} of ${r.considered}; ${r.stillHeld} still held` + (r.notHeld.length ? `; ${r.notHeld.length} not held` : ''));
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
  return program;
}

function budgetTable(b: Record<string, unknown>): string {
  return table(['PROJECT', 'LIMIT', 'USED', 'RESERVED', 'REMAINING'], [[b.project, b.limitGpuHours, b.usedGpuHours, b.reservedGpuHours, b.remainingGpuHours]]) + '\n(GPU hours)';
}

function age(s: number): string {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** Run the CLI; returns the exit code (never throws). */
export async function runCli(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const program = buildCli(out);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return EXIT.ok;
      if (err.code === 'usage') process.stderr.write(`error: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof ApiError) {
      process.stderr.write(`error: ${err.message}\n`);
      if (err.status === 401 || err.status === 403) return EXIT.forbidden;
      if (err.status === 404) return EXIT.notFound;
      if (err.status >= 400 && err.status < 500) return EXIT.refused;
      return EXIT.failed;
    }
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return EXIT.failed;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runCli(process.argv.slice(2)).then((code) => process.exit(code));
}
