/**
 * The job contract: what submitters put on gpu-intake, and what GPU workers
 * find on gpu-exec. Zod schemas are the single definition; the TS types are
 * inferred from them.
 */
import { z } from 'zod';
import { printable, quoted, safeText } from '../src/text.ts';
import { reservedGpuType } from '../src/accounting/pricing.ts';

/** Project and user names: 1-128 chars of [A-Za-z0-9._-]. */
export const NAME_RE = /^[A-Za-z0-9._-]{1,128}$/;
const name = (what: string) =>
  z
    .string({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a string`) })
    .regex(NAME_RE, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`);

/** Free text (a job or GPU type): 1-128 characters, none that a terminal, a log or Postgres cannot hold (src/text.ts). */
const label = (what: string) =>
  z
    .string({ error: `${what} must be a string` })
    .min(1, `${what} may not be empty`)
    .max(128, `${what} is longer than 128 characters`)
    .superRefine(safeText(what));

export interface ContractLimits {
  /** Largest estimate a single job may carry, in GPU hours. */
  maxGpuHoursPerJob: number;
  /** Largest payload, in bytes of its JSON. */
  maxPayloadBytes: number;
}

export function intakeJobSchema(limits: ContractLimits) {
  return z.strictObject(
    {
      project: name('project'),
      user: name('user'),
      jobType: label('jobType').optional(),
      /** A batch this job belongs to (e.g. 160 scenes); an admin may cap a run's GPU hours. */
      run: name('run').optional(),
      gpuType: label('gpuType')
        .superRefine((t, ctx) => {
          const why = reservedGpuType(t);
          if (why) ctx.addIssue({ code: 'custom', message: why });
        })
        .optional(),
      gpus: z
        .number({ error: 'gpus must be a number' })
        .int('gpus must be a whole number')
        .min(1, 'gpus must be at least 1')
        .max(4096, 'gpus must be at most 4096')
        .default(1),
      estimatedGpuHours: z
        .number({
          error: (i) =>
            i.input === undefined
              ? 'estimatedGpuHours is required'
              : `estimatedGpuHours must be a number of GPU hours, got ${describe(i.input)}`,
        })
        .refine(Number.isFinite, 'estimatedGpuHours must be finite')
        .refine((h) => h > 0, 'estimatedGpuHours must be greater than 0')
        .refine(
          (h) => h <= limits.maxGpuHoursPerJob,
          `estimatedGpuHours must be at most ${limits.maxGpuHoursPerJob} GPU hours per job`,
        )
        // Below one GPU-millisecond the reservation would round to nothing.
        .refine((h) => !(h > 0) || h * 3_600_000 >= 1, 'estimatedGpuHours is below one GPU-millisecond'),
      payload: z.unknown().optional(),
    },
    { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s): ${fieldNames(i.keys)}` : 'job data must be an object') },
  ).superRefine((job, ctx) => {
    if (job.payload === undefined) return;
    const bytes = Buffer.byteLength(JSON.stringify(job.payload) ?? '', 'utf8');
    if (bytes > limits.maxPayloadBytes) {
      ctx.addIssue({
        code: 'custom',
        path: ['payload'],
        message: `payload is ${bytes} bytes; at most ${limits.maxPayloadBytes} are allowed`,
      });
    }
  });
}

export type IntakeJobData = z.infer<ReturnType<typeof intakeJobSchema>>;

/** What the gatekeeper adds to every job it promotes to gpu-exec. */
export interface AdmissionRecord {
  /** Intake job id the admission came from (also the ledger's job id). */
  intakeJobId: string;
  /** Reserved amount, integer GPU-milliseconds. */
  reservedGpuMs: number;
  /** Same amount in GPU hours, for people reading Bull Board. */
  reservedGpuHours: number;
  /** Counter ids the reservation was made against ('<scope>@<period>', or the scope for one-off budgets). */
  scopes: string[];
  /** Epoch ms. */
  admittedAt: number;
  /** Its job type is exempt (usage factor 0): tracked, not counted against any budget or quota. */
  exempt?: true;
  /** What it was charged for its estimate in each unit, priced at admission (src/accounting/pricing.ts). */
  charged?: { gpuHours: number; units: number; usd: number };
  /** Its GPU type's rate and its job type's usage factor at admission: actual hours are charged at these. */
  price?: { unitsPerGpuHour: number; usdPerGpuHour: number; usageFactor: number };
  /** Soft-limited scopes this job took past their limit (admitted with a warning). */
  softOver?: string[];
}

export interface ExecJobData extends IntakeJobData {
  admission: AdmissionRecord;
}

/** Why a job does not fit one scope, with the numbers of the decision. */
export interface Shortfall {
  /** Scope base. */
  scope: string;
  /**
   * no-limit: no budget configured (an unknown project); over-limit: the job
   * would pass a hard limit; over-grace: it would pass a soft limit's grace
   * (limitGpuMs is then the limit plus grace); over-gpus: it would pass a
   * cap on GPUs in flight, and then the numbers are GPUs, not GPU-ms: the
   * cap now, 0, the GPUs in flight and the job's gpus.
   */
  code: 'no-limit' | 'over-limit' | 'over-grace' | 'over-gpus';
  /**
   * The limit's unit: the amounts below are GPU-ms (gpuHours), milli-units
   * (units) or micro-dollars (usd), and neededGpuMs is the job's charge in
   * it (src/accounting/pricing.ts). Absent: gpuHours, as before rates.
   */
  unit?: 'gpuHours' | 'units' | 'usd';
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  neededGpuMs: number;
}

/**
 * Why a job waits, as data (rendered into a sentence only at the edges:
 * reasons.ts). `ahead` > 0: it waits behind that many older held jobs in
 * the line of scope `line` (first in, first out), fit or not. `lines`: the
 * scope bases of every line it waits in (rebuild puts it back there).
 */
export interface Hold {
  shortfalls: Shortfall[];
  ahead: number;
  line?: string;
  lines?: string[];
}

/** What a job parked on gpu-held carries. */
export interface HeldJobData extends IntakeJobData {
  /**
   * hold: why it waits, as data (jobs held before it existed have only the
   * reason). reason: the same rendered as a sentence when it was decided, for
   * Bull Board. submittedAt: the intake job's BullMQ timestamp (with the id,
   * the job's identity; a rebuild restores it).
   */
  held: { intakeJobId: string; reason: string; hold?: Hold; heldAt: number; submittedAt?: number };
}

/** What a job parked on gpu-rejected carries: the intake data as it came, and why. */
export interface RejectedJobData {
  intake: unknown;
  /** submittedAt: the intake job's BullMQ timestamp (tells it from an earlier job that had its id). */
  rejected: { intakeJobId: string; reason: string; rejectedAt: number; by: string; submittedAt?: number };
}

/** What GPU workers may return; `gpuHours` replaces the reservation when present. */
export const execResultSchema = z.object({ gpuHours: z.number().finite().min(0) }).loose();

export type ParseResult = { ok: true; data: IntakeJobData } | { ok: false; reason: string };

/** Validate intake data; on failure a single readable sentence listing each problem. */
export function parseIntakeJob(schema: ReturnType<typeof intakeJobSchema>, data: unknown): ParseResult {
  const r = schema.safeParse(data);
  if (r.success) return { ok: true, data: r.data };
  const problems = r.error.issues.map((i) => i.message);
  return { ok: false, reason: `invalid job: ${[...new Set(problems)].join('; ')}` };
}

function describe(v: unknown): string {
  // JSON (and so BullMQ) turns NaN and Infinity into null on the way in.
  if (v === null) return 'null (NaN and Infinity arrive as null in JSON)';
  if (typeof v === 'string') return `the string ${quoted(v)}`;
  return typeof v;
}

/** Unknown field names as the submitter wrote them, made printable and cut short: they end up in reasons, logs and Postgres. */
export function fieldNames(keys: string[]): string {
  const shown = keys.slice(0, 5).map((k) => printable(k.length > 40 ? `${k.slice(0, 40)}…` : k));
  return shown.join(', ') + (keys.length > 5 ? ` and ${keys.length - 5} more` : '');
}
