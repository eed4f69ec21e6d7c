/**
 * The CLI's arguments: numbers and limit flags checked with a usage error
 * naming the flag, and the job bodies preflight and submit send.
 */
import { readFile } from 'node:fs/promises';
import { CommanderError, Option } from 'commander';

/** Exit codes: see src/cli/main.ts. */
export const EXIT = { ok: 0, failed: 1, usage: 2, forbidden: 3, notFound: 4, refused: 5 } as const;

export interface JobOpts {
  file?: string;
  project?: string;
  user?: string;
  hours?: string;
  gpus?: string;
  jobType?: string;
  gpuType?: string;
  run?: string;
  count: string;
}

/** The request body: the file as given, or `count` jobs built from the flags. */
export async function jobsBody(o: JobOpts): Promise<unknown> {
  if (o.file !== undefined) {
    const text = o.file === '-' ? await readStdin() : await readFile(o.file, 'utf8').catch(() => {
      throw new CommanderError(EXIT.usage, 'usage', `cannot read ${o.file}`);
    });
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new CommanderError(EXIT.usage, 'usage', `${o.file} is not JSON`);
    }
  }
  if (!o.project || !o.user || o.hours === undefined) throw new CommanderError(EXIT.usage, 'usage', 'give --file, or --project, --user and --hours');
  const count = num('--count', o.count);
  if (!Number.isInteger(count) || count < 1) throw new CommanderError(EXIT.usage, 'usage', '--count must be a whole number >= 1');
  const job = {
    project: o.project,
    user: o.user,
    estimatedGpuHours: num('--hours', o.hours),
    ...(o.gpus !== undefined ? { gpus: num('--gpus', o.gpus) } : {}),
    ...(o.jobType ? { jobType: o.jobType } : {}),
    ...(o.gpuType ? { gpuType: o.gpuType } : {}),
    ...(o.run ? { run: o.run } : {}),
  };
  return count === 1 ? job : { jobs: Array.from({ length: count }, () => job) };
}

async function readStdin(): Promise<string> {
  let s = '';
  for await (const chunk of process.stdin) s += String(chunk);
  return s;
}

export interface LimitOpts {
  policy?: string;
  grace?: string;
  release?: string;
  reason?: string | undefined;
}

/** A number argument, or a usage error naming it. */
export function num(what: string, raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) throw new CommanderError(EXIT.usage, 'usage', `${what} must be a number, got "${raw}"`);
  return n;
}

export function limitFields(o: LimitOpts) {
  return {
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.grace !== undefined ? { gracePercent: num('--grace', o.grace) } : {}),
    ...(o.release ? { release: o.release } : {}),
    ...(o.reason ? { reason: o.reason } : {}),
  };
}

/** --release, on every command that sets a limit. */
export const releaseOption = () =>
  new Option('--release <mode>', 'auto: held jobs start by themselves when they fit; manual: an admin releases them').choices(['auto', 'manual']);

export const runPath = (project: string, run: string) => `/projects/${encodeURIComponent(project)}/runs/${encodeURIComponent(run)}/cap`;

/** The query string of a listing paged by name, from `--limit`, `--cursor` and `--search`. */
export const pageQuery = (o: { limit: string; cursor?: string; search?: string }) =>
  new URLSearchParams({ limit: o.limit, ...(o.cursor ? { cursor: o.cursor } : {}), ...(o.search ? { q: o.search } : {}) });

/** --unit: what a limit's amount is in (gpuHours by default; units and usd from the rate card). */
export const unitOption = () =>
  new Option('--unit <unit>', 'the amount is GPU hours, compute units or US dollars').choices(['gpuHours', 'units', 'usd']).default('gpuHours');

/** A limit's amount as the API takes it: { gpuHours | units | usd: n }. */
export function amountField(unit: string | undefined, what: string, value: string): Record<string, number> {
  return { [unit ?? 'gpuHours']: num(what, value) };
}
