/** `gatekeeper report` and `gatekeeper export`: GPU hours used, summed or one row per job. */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import { table } from '../table.ts';
import { hoursCell, unitsCell, usdCell } from '../format.ts';
import type { CliContext } from '../context.ts';

export function addUsageCommands(program: Command, { client, print }: CliContext): void {
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
        const rows = (r.rows as Record<string, any>[]).map((x) => [...groups.map((g) => x[g] || '-'), x.jobs, ...[x.actualGpuHours, x.estimatedGpuHours, x.exemptGpuHours, x.chargedGpuHours].map(hoursCell), unitsCell(x.units), usdCell(x.usd)]);
        return `${table([...groups.map((g) => g.toUpperCase()), 'JOBS', 'USED', 'ESTIMATED', 'EXEMPT', 'CHARGED', 'UNITS', 'USD'], rows)}\n(GPU hours, jobs that ended ${r.from} … ${r.to}, ${r.timeZone}; CHARGED: GPU hours times usage factors, corrections included)`;
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
}
