/**
 * `gatekeeper`: the admin CLI. It talks to the HTTP API (so every change is
 * validated and audited in one place) at GATEKEEPER_URL with GATEKEEPER_TOKEN.
 *
 *   gatekeeper budget get alpha
 *   gatekeeper budget set alpha 150 --reason "quarter-end"
 *   gatekeeper budget set alpha 500 --period month --rollover --rollover-cap 100
 *   gatekeeper budget adjust alpha +20 --reason "launch week"
 *   gatekeeper quota get bob
 *   gatekeeper quota set bob --daily 8 --weekly 30
 *   gatekeeper rate-limit set --user bob --per-minute 60 --burst 10
 *   gatekeeper concurrency set --project alpha --max-gpus 16 --peak-max-gpus 4
 *   gatekeeper run-cap set alpha scenes-160 200 --policy soft --grace 10
 *   gatekeeper exempt add regression-test
 *   gatekeeper preflight --project alpha --user bob --hours 2 --count 160
 *   gatekeeper submit --file batch.json
 *   gatekeeper report --from 2026-11-01 --to 2026-11-30 --group-by project,user
 *   gatekeeper export --month 2026-11 --format csv --out usage-2026-11.csv
 *   gatekeeper audit
 *   gatekeeper rebuild
 *   gatekeeper held list --project alpha
 *   gatekeeper held release --project alpha
 *   gatekeeper held override 1234 --reason "demo"
 *   gatekeeper held cancel 1234 --reason "duplicate"
 *   gatekeeper held request-override 1234 --reason "client demo at 9"
 *   gatekeeper override-requests --state open
 *   gatekeeper override-requests approve 12 --reason "ok for the demo"
 *   gatekeeper quarantine list
 *   gatekeeper quarantine replay 3 --repair
 *   gatekeeper keys create ann --role submitter --projects alpha,beta
 *   gatekeeper whoami
 *
 * Tables for people by default; --json for scripts. Exit codes: 0 done,
 * 1 failed (server or network), 2 bad usage, 3 not allowed (401/403),
 * 4 not found (404), 5 refused (400/409/413: the message says why).
 */
import { Command, CommanderError, Option } from 'commander';
import { ApiClient, ApiError } from './client.ts';
import { EXIT } from './args.ts';
import { jsonSafe, printable } from '../text.ts';
import type { CliContext } from './context.ts';
import { addBudgetCommands } from './commands/budget.ts';
import { addQuotaCommands } from './commands/quota.ts';
import { addRunCapCommands } from './commands/run-cap.ts';
import { addJobCommands } from './commands/jobs.ts';
import { addUsageCommands } from './commands/usage.ts';
import { addMaintenanceCommands } from './commands/maintenance.ts';
import { addQuarantineCommands } from './commands/quarantine.ts';
import { addExemptCommands } from './commands/exempt.ts';
import { addHeldCommands } from './commands/held.ts';
import { addOverrideRequestCommands } from './commands/override-requests.ts';
import { addRateLimitCommands } from './commands/rate-limit.ts';
import { addConcurrencyCommands } from './commands/concurrency.ts';
import { addKeyCommands } from './commands/keys.ts';
import { addCorrectionCommands } from './commands/corrections.ts';
import { addRateCardCommands } from './commands/rate-card.ts';

export { EXIT };

interface Globals {
  url: string;
  token?: string;
  actor: string;
  json?: boolean;
}

/** The program: global options here, each group of commands from its own file in commands/ (in the order --help lists them). */
export function buildCli(out: (s: string) => void): Command {
  const program = new Command('gatekeeper')
    .description('Budgets, quotas, run caps, exempt job types and held jobs of gpu-gatekeeper')
    .addOption(new Option('--url <url>', 'API base URL').env('GATEKEEPER_URL').default('http://127.0.0.1:3000'))
    .addOption(new Option('--token <token>', 'an environment token, or your own key (gk_…)').env('GATEKEEPER_TOKEN'))
    .addOption(new Option('--actor <name>', 'who you are, for the audit log').env('USER').default('cli'))
    .option('--json', 'print JSON instead of tables')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: (s) => process.stderr.write(s) });

  const cli: CliContext = {
    client: () => {
      const g = program.opts<Globals>();
      return { api: new ApiClient(g.url, g.token, g.actor), json: Boolean(g.json) };
    },
    // Whatever the server sends may hold text stored before it refused escapes: printed, never obeyed.
    print: (json, value, human) => out(json ? jsonSafe(JSON.stringify(value, null, 2)) + '\n' : printable(human(), { keepNewlines: true }) + '\n'),
  };
  for (const add of [
    addBudgetCommands, addQuotaCommands, addRunCapCommands, addJobCommands, addUsageCommands,
    addRateLimitCommands, addConcurrencyCommands, addMaintenanceCommands, addQuarantineCommands, addExemptCommands, addHeldCommands, addOverrideRequestCommands,
    addKeyCommands, addCorrectionCommands, addRateCardCommands,
  ]) {
    add(program, cli);
  }
  return program;
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
      if (err.code === 'drift') return EXIT.failed;
      if (err.code === 'usage') process.stderr.write(`error: ${printable(err.message)}\n`);
      return EXIT.usage;
    }
    if (err instanceof ApiError) {
      process.stderr.write(`error: ${printable(err.message)}\n`);
      if (err.status === 401 || err.status === 403) return EXIT.forbidden;
      if (err.status === 404) return EXIT.notFound;
      if (err.status >= 400 && err.status < 500) return EXIT.refused;
      return EXIT.failed;
    }
    process.stderr.write(`error: ${printable((err as Error).message)}\n`);
    return EXIT.failed;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runCli(process.argv.slice(2)).then((code) => process.exit(code));
}
