/**
 * The CLI's arguments: numbers and limit flags checked with a usage error
 * naming the flag, and the job bodies preflight and submit send.
 */
import { readFile } from 'node:fs/promises';
import { CommanderError, Option } from 'commander';
import { ApiError, type ApiClient } from './client.ts';

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
export const budgetPath = (project: string) => `/projects/${encodeURIComponent(project)}/budget`;
export const typeBudgetPath = (project: string, gpuType: string) => `/projects/${encodeURIComponent(project)}/gpu-types/${encodeURIComponent(gpuType)}/budget`;
export const quotaPath = (user: string) => `/users/${encodeURIComponent(user)}/quota`;

/** The query string of a listing paged by name, from `--limit`, `--cursor` and `--search`. */
export const pageQuery = (o: { limit: string; cursor?: string; search?: string }) =>
  new URLSearchParams({ limit: o.limit, ...(o.cursor ? { cursor: o.cursor } : {}), ...(o.search ? { q: o.search } : {}) });

/** --unit: what a limit's amount is in; not given, the limit's unit now (unitOf). */
export const unitOption = () =>
  new Option('--unit <unit>', "the amount is GPU hours, compute units or US dollars (default: the limit's unit now; GPU hours for a new one)").choices(['gpuHours', 'units', 'usd']);

/**
 * The unit an amount is in: --unit, else the unit of the limit that `path`
 * answers now (`pick` finds it in the answer), else GPU hours (no such limit
 * yet). So `budget set alpha 20` on a dollar budget sets $20, not 20 GPU
 * hours: an option not given keeps its current value, the unit included.
 */
export async function unitOf(api: ApiClient, given: string | undefined, path: string, pick: (answer: any) => { unit?: string } | undefined = (a) => a): Promise<string> {
  if (given !== undefined) return given;
  try {
    return pick(await api.call('GET', path))?.unit ?? 'gpuHours';
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return 'gpuHours';
    throw err;
  }
}

/** Where a limit's scope (project:p, user-day:u, user-week:u, run:p/r, project-type:p/t) is read, and how to find it in the answer; null: not a limit the API reads. */
export function limitPathOf(scope: string): { path: string; pick?: (answer: any) => { unit?: string } } | null {
  const at = scope.indexOf(':');
  const [kind, name] = [scope.slice(0, at), scope.slice(at + 1)];
  const [a = '', b] = name.split('/');
  if (kind === 'project') return { path: budgetPath(a) };
  if (kind === 'user-day' || kind === 'user-week') return { path: quotaPath(a), pick: (q) => (kind === 'user-day' ? q.daily : q.weekly) };
  if (kind === 'run' && b !== undefined) return { path: runPath(a, b) };
  if (kind === 'project-type' && b !== undefined) return { path: typeBudgetPath(a, b) };
  return null;
}

/** A limit's amount as the API takes it: { gpuHours | units | usd: n }. */
export function amountField(unit: string | undefined, what: string, value: string): Record<string, number> {
  return { [unit ?? 'gpuHours']: num(what, value) };
}
