/** `gatekeeper concurrency list|get|set|remove`: caps on GPUs in flight. */
import { CommanderError, type Command } from 'commander';
import { EXIT, num, releaseOption } from '../args.ts';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

interface Target {
  project?: string;
  gpuType?: string;
  user?: string;
  global?: boolean;
}

/** The API path of exactly one of --project P [--gpu-type T], --user U, --global. */
function capPath(o: Target): string {
  const given = [o.project !== undefined, o.user !== undefined, o.global === true].filter(Boolean).length;
  if (given !== 1 || (o.gpuType !== undefined && o.project === undefined)) {
    throw new CommanderError(EXIT.usage, 'usage', 'give exactly one of --project (with --gpu-type if you like), --user and --global');
  }
  const e = encodeURIComponent;
  if (o.user !== undefined) return `/users/${e(o.user)}/concurrency`;
  if (o.global) return '/concurrency';
  return o.gpuType !== undefined ? `/projects/${e(o.project!)}/gpu-types/${e(o.gpuType)}/concurrency` : `/projects/${e(o.project!)}/concurrency`;
}

/** A whole number flag, or a usage error naming it. */
function whole(what: string, raw: string): number {
  const n = num(what, raw);
  if (!Number.isInteger(n) || n < 0) throw new CommanderError(EXIT.usage, 'usage', `${what} must be a whole number >= 0, got "${raw}"`);
  return n;
}

const peakText = (p: Record<string, any> | null) => (p ? `${p.maxGpus} ${p.days.join(',')} ${p.from}-${p.to}` : '-');
const capRows = (caps: Record<string, any>[]) =>
  table(['SCOPE', 'MAX GPUS', 'PEAK', 'NOW', 'IN FLIGHT', 'RELEASE'], caps.map((c) => [c.scope, c.maxGpus, peakText(c.peak), c.effectiveMaxGpus, c.inFlightGpus, c.release]));

export function addConcurrencyCommands(program: Command, { client, print }: CliContext): void {
  const cap = program.command('concurrency').description('caps on GPUs in flight per project, user, project and GPU type, or for everything');
  const target = (c: Command) =>
    c.option('--project <project>', "a project's GPUs").option('--gpu-type <type>', "with --project: that project's GPUs of one type").option('--user <user>', "a user's GPUs").option('--global', 'every GPU');
  cap
    .command('list')
    .description('every cap, with the GPUs in flight now')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/gpu-caps');
      print(json, r, () => capRows(r.caps));
    });
  target(cap.command('get'))
    .description('one cap and the GPUs in flight now')
    .action(async (o: Target) => {
      const { api, json } = client();
      const r = await api.call('GET', capPath(o));
      print(json, r, () => capRows([r]));
    });
  target(cap.command('set'))
    .description('set a cap (audited); jobs over it wait until running jobs end. Lowering it never stops a running job')
    .requiredOption('--max-gpus <n>', 'GPUs in flight at most')
    .option('--peak-max-gpus <n>', 'the cap inside the peak window')
    .option('--peak-days <days>', 'the window\'s days, e.g. mon,tue,wed,thu,fri', 'mon,tue,wed,thu,fri')
    .option('--peak-from <hh:mm>', 'the window\'s start, in GATEKEEPER_TIMEZONE', '09:00')
    .option('--peak-to <hh:mm>', 'the window\'s end', '18:00')
    .addOption(releaseOption())
    .option('--reason <text>', 'why, for the audit log')
    .action(async (o: Target & { maxGpus: string; peakMaxGpus?: string; peakDays: string; peakFrom: string; peakTo: string; release?: string; reason?: string }) => {
      const path = capPath(o);
      const body = {
        maxGpus: whole('--max-gpus', o.maxGpus),
        ...(o.peakMaxGpus !== undefined ? { peak: { maxGpus: whole('--peak-max-gpus', o.peakMaxGpus), days: o.peakDays.split(','), from: o.peakFrom, to: o.peakTo } } : {}),
        ...(o.release ? { release: o.release } : {}),
        ...(o.reason ? { reason: o.reason } : {}),
      };
      const { api, json } = client();
      const r = await api.call('PUT', path, body);
      print(json, r, () => capRows([r]));
    });
  target(cap.command('remove'))
    .description('remove a cap (audited)')
    .option('--reason <text>', 'why, for the audit log')
    .action(async (o: Target & { reason?: string }) => {
      const path = capPath(o);
      const { api, json } = client();
      const r = await api.call('DELETE', path, o.reason ? { reason: o.reason } : undefined);
      print(json, r, () => (r.removed ? `removed the cap ${r.scope}` : `${r.scope} had no cap`));
    });
}
