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
 *   gatekeeper quarantine list
 *   gatekeeper quarantine replay 3 --repair
 *
 * Tables for people by default; --json for scripts. Exit codes: 0 done,
 * 1 failed (server or network), 2 bad usage, 3 not allowed (401/403),
 * 4 not found (404), 5 refused (400/409/413: the message says why).
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command, CommanderError, Option } from 'commander';
import { ApiClient, ApiError } from './client.ts';
import { table } from './table.ts';
import { EXIT, jobsBody, limitFields, num, runPath, type JobOpts, type LimitOpts } from './args.ts';
import { age, budgetTable, preflightText, quotaTable, scopeTable, submitText } from './format.ts';
import { jsonSafe, printable } from '../text.ts';

export { EXIT };

interface Globals {
  url: string;
  token?: string;
  actor: string;
  json?: boolean;
}

export function buildCli(out: (s: string) => void): Command {
  const program = new Command('gatekeeper')
    .description('Budgets, quotas, run caps, exempt job types and held jobs of gpu-gatekeeper')
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
    // Whatever the server sends may hold text stored before it refused escapes: printed, never obeyed.
  const print = (json: boolean, value: unknown, human: () => string) =>
    out(json ? jsonSafe(JSON.stringify(value, null, 2)) + '\n' : printable(human(), { keepNewlines: true }) + '\n');

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
    .description('set, raise or lower a budget (audited); options not given keep their current value')
    .option('--reason <text>', 'why, for the audit log')
    .addOption(new Option('--period <period>', 'when it renews').choices(['none', 'week', 'month']))
    .option('--rollover', 'a new period starts with what the last one left unused')
    .option('--no-rollover', 'no rollover')
    .option('--rollover-cap <gpuHours>', 'at most this much rolls over')
    .addOption(new Option('--policy <policy>', 'hard: hold at the limit; soft: admit past it with warnings').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the limit, in percent')
    .action(async (project: string, hours: string, o: LimitOpts & { period?: string; rollover?: boolean; rolloverCap?: string }) => {
      const { api, json } = client();
      const b = await api.call('PUT', `/projects/${encodeURIComponent(project)}/budget`, {
        gpuHours: num('gpuHours', hours),
        ...limitFields(o),
        ...(o.period ? { period: o.period } : {}),
        ...(o.rollover !== undefined ? { rollover: o.rollover } : {}),
        ...(o.rolloverCap !== undefined ? { rolloverCapGpuHours: num('--rollover-cap', o.rolloverCap) } : {}),
      });
      print(json, b, () => budgetTable(b));
    });
  budget
    .command('adjust <project> <gpuHours>')
    .description('add (+) or take (-) GPU hours for the current period only (audited)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, hours: string, o: { reason?: string }) => {
      const { api, json } = client();
      const b = await api.call('POST', `/projects/${encodeURIComponent(project)}/budget/adjust`, { gpuHours: num('gpuHours', hours), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, b, () => budgetTable(b));
    });

  const quota = program.command('quota').description("users' daily and weekly quotas (GPU hours)");
  quota
    .command('get <user>')
    .description('used, reserved, remaining and next reset, per period')
    .action(async (user: string) => {
      const { api, json } = client();
      const q = await api.call('GET', `/users/${encodeURIComponent(user)}/quota`);
      print(json, q, () => quotaTable(q));
    });
  quota
    .command('set <user>')
    .description('set or remove a daily and/or weekly quota (audited)')
    .option('--daily <gpuHours>', "the daily quota ('none' removes it)")
    .option('--weekly <gpuHours>', "the weekly quota ('none' removes it)")
    .addOption(new Option('--policy <policy>').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the quota, in percent')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (user: string, o: LimitOpts & { daily?: string; weekly?: string }) => {
      if (o.daily === undefined && o.weekly === undefined) throw new CommanderError(EXIT.usage, 'usage', 'give --daily and/or --weekly');
      const one = (v: string | undefined, what: string) => (v === undefined ? {} : { [what]: v === 'none' ? null : { gpuHours: num(`--${what}`, v), ...limitFields({ ...o, reason: undefined }) } });
      const { api, json } = client();
      const q = await api.call('PUT', `/users/${encodeURIComponent(user)}/quota`, { ...one(o.daily, 'daily'), ...one(o.weekly, 'weekly'), ...(o.reason ? { reason: o.reason } : {}) });
      print(json, q, () => quotaTable(q));
    });

  const runCap = program.command('run-cap').description('GPU-hour caps on runs (batches of jobs with the same `run`)');
  runCap
    .command('get <project> <run>')
    .action(async (project: string, run: string) => {
      const { api, json } = client();
      const r = await api.call('GET', runPath(project, run));
      print(json, r, () => scopeTable([[`${project}/${run}`, r]]));
    });
  runCap
    .command('set <project> <run> <gpuHours>')
    .description('cap a run (audited)')
    .addOption(new Option('--policy <policy>').choices(['hard', 'soft']))
    .option('--grace <percent>', 'soft only: how far past the cap, in percent')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, run: string, hours: string, o: LimitOpts) => {
      const { api, json } = client();
      const r = await api.call('PUT', runPath(project, run), { gpuHours: num('gpuHours', hours), ...limitFields(o) });
      print(json, r, () => scopeTable([[`${project}/${run}`, r]]));
    });
  runCap
    .command('remove <project> <run>')
    .description('remove a cap (the run is still counted)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (project: string, run: string, o: { reason?: string }) => {
      const { api, json } = client();
      const r = await api.call('DELETE', runPath(project, run), o.reason ? { reason: o.reason } : undefined);
      print(json, r, () => `removed the cap of run ${project}/${run}`);
    });

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
      .option('--run <run>')
      .option('--count <n>', 'this many identical jobs', '1')
      .action(async (o: JobOpts) => {
        const { api, json } = client();
        const r = await api.call('POST', path, await jobsBody(o));
        print(json, r, () => (name === 'preflight' ? preflightText(r) : submitText(r)));
      });
  }

  program
    .command('report')
    .description('GPU hours used over a date range (local days), grouped')
    .requiredOption('--from <date>', 'first day, YYYY-MM-DD')
    .requiredOption('--to <date>', 'last day, YYYY-MM-DD')
    .option('--group-by <groups>', 'comma-separated: project, user, jobType, gpuType, day', 'project')
    .option('--project <name>')
    .option('--user <name>')
    .action(async (o: { from: string; to: string; groupBy: string; project?: string; user?: string }) => {
      const { api, json } = client();
      const q = new URLSearchParams({ from: o.from, to: o.to, groupBy: o.groupBy, ...(o.project ? { project: o.project } : {}), ...(o.user ? { user: o.user } : {}) });
      const r = await api.call('GET', `/usage?${q}`);
      print(json, r, () => {
        const groups = r.groupBy as string[];
        const rows = (r.rows as Record<string, unknown>[]).map((x) => [...groups.map((g) => x[g] || '-'), x.jobs, x.actualGpuHours, x.estimatedGpuHours, x.exemptGpuHours]);
        return `${table([...groups.map((g) => g.toUpperCase()), 'JOBS', 'USED', 'ESTIMATED', 'EXEMPT'], rows)}\n(GPU hours, jobs that ended ${r.from} … ${r.to}, ${r.timeZone})`;
      });
    });
  program
    .command('export')
    .description('one row per job that ended in a month, as CSV or JSON (streamed)')
    .requiredOption('--month <YYYY-MM>')
    .addOption(new Option('--format <format>').choices(['csv', 'json']).default('csv'))
    .option('--out <path>', 'write to a file instead of standard output')
    .action(async (o: { month: string; format: string; out?: string }) => {
      const { api } = client();
      const body = await api.stream(`/usage/export?${new URLSearchParams({ month: o.month, format: o.format })}`);
      const sink = o.out ? createWriteStream(o.out) : process.stdout;
      await pipeline(Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>), sink, { end: Boolean(o.out) });
    });

  program
    .command('audit')
    .description('compare the Redis counters with the Postgres ledger (exit 1 on drift)')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/drift');
      const aside = (r.quarantined ?? []) as { id: number; counted: boolean }[];
      const note = aside.length
        ? `\n${aside.length} quarantined ledger entr${aside.length === 1 ? 'y' : 'ies'} (${aside.map((q) => q.id).join(', ')}) counted from ${aside.length === 1 ? 'its' : 'their'} raw fields; replay with: gatekeeper quarantine replay <id>`
        : '';
      print(json, r, () =>
        (r.drift.length === 0
          ? `no drift: ${r.counters} counters equal the ledger at stream entry ${r.streamId}`
          : table(
              ['COUNTER', 'FIELD', 'REDIS (GPU-ms)', 'LEDGER (GPU-ms)'],
              (r.drift as { counter: string; redis: Record<string, number>; ledger: Record<string, number> }[]).flatMap((d) =>
                Object.keys(d.redis).filter((f) => d.redis[f] !== d.ledger[f]).map((f) => [d.counter, f, d.redis[f], d.ledger[f]]),
              ),
            ) + `\n${r.drift.length} of ${r.counters} counters drift (stream entry ${r.streamId})`) + note,
      );
      if (r.drift.length > 0) throw new CommanderError(EXIT.failed, 'drift', 'drift found');
    });

  program
    .command('rebuild')
    .description('restore Redis counters, reservations and held lines from Postgres and gpu-held (stop the gatekeepers first)')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('POST', '/rebuild');
      print(json, r, () =>
        `rebuilt ${r.counters} counters, ${r.openReservations} open and ${r.settledReservations} settled reservations, ${r.heldJobs} held jobs, ${r.limits} limits; drift now: ${r.drift}`,
      );
    });

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
