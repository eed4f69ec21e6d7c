/**
 * What the Lua scripts and the TypeScript around them must agree on, written
 * once: each script's reply codes, the misfit codes, and the defaults both
 * sides use. The defaults reach the scripts as the generated include
 * `-- @include defaults` (see luaDefaults); the reply codes are literals in
 * the scripts, listed in each script's header, and test/wire.test.ts checks
 * that every header lists exactly the codes of this table.
 */

/** Each script's first reply field, by meaning. */
export const REPLY_CODES = {
  reserve: { held: 0, reserved: 1, already: 2, stillHeld: 3, heldBehind: 4, cancelled: 5, throttled: 6, rejected: 7, unpriced: 8 },
  release: { held: 0, admitted: 1, heldBehind: 4, rejected: 8, notHeld: -1 },
  settle: { settled: 1, already: 2, noReservation: -1, wrongScopes: -2 },
  cancel: { cancelled: 1, notHeld: -1 },
} as const;

export type RepliedScript = keyof typeof REPLY_CODES;
export type Reply<S extends RepliedScript> = keyof (typeof REPLY_CODES)[S];

/** A misfit's code (includes/charges.lua misfits()): why a job does not fit one scope. */
export const MISFIT_CODES = { 'no-limit': 1, 'over-limit': 2, 'over-grace': 3, 'over-gpus': 4 } as const;
export type MisfitCode = keyof typeof MISFIT_CODES;
/** Fields per misfit in a reply and on a held record: scope, code, limit, used, reserved, unit letter, need (includes/charges.lua). */
export const MISFIT_WIDTH = 7;
/** A limit's unit as the scripts name it (h, u, d), and a GPU cap's (g). */
export const UNIT_LETTERS = { gpuHours: 'h', units: 'u', usd: 'd' } as const;

/** Percents of a limit that raise THRESHOLD_CROSSED when a budget sets none. */
export const DEFAULT_THRESHOLDS: readonly number[] = [75, 90, 100];
/** The events stream keeps about this many entries (Postgres keeps them all). */
export const EVENTS_STREAM_MAXLEN = 100_000;
/** How long a throttled job's record outlives its due time (a job that never came back), ms; includes/rate.lua has the same (test/rate-limits.test.ts checks). */
export const THROTTLED_KEEP_MS = 86_400_000;
/** Version of an event's fields, stored with each ('v'). */
export const EVENT_VERSION = 1;

/** A reply a decoder does not know: a script and its caller disagree, which is a bug, never a decision. */
export class UnknownReplyError extends Error {
  constructor(script: string, reply: unknown) {
    super(`${script}: unknown reply ${JSON.stringify(reply)}`);
  }
}

const byCode = Object.fromEntries(
  Object.entries(REPLY_CODES).map(([script, codes]) => [script, new Map(Object.entries(codes).map(([name, code]) => [code as number, name]))]),
) as Record<RepliedScript, Map<number, string>>;

/** The meaning of a script's reply code; throws UnknownReplyError on any other. */
export function replyOf<S extends RepliedScript>(script: S, code: unknown): Reply<S> {
  const name = typeof code === 'number' ? byCode[script].get(code) : undefined;
  if (name === undefined) throw new UnknownReplyError(script, code);
  return name as Reply<S>;
}

const misfitByCode = new Map(Object.entries(MISFIT_CODES).map(([name, code]) => [code as number, name as MisfitCode]));

/** The meaning of a misfit code (a number, or a string from an event); throws UnknownReplyError on any other. */
export function misfitOf(code: unknown): MisfitCode {
  const name = misfitByCode.get(Number(code));
  if (name === undefined) throw new UnknownReplyError('misfit', code);
  return name;
}

/** The generated include `defaults`: this module's constants as Lua locals. */
export function luaDefaults(): string {
  return [
    '-- Generated from src/redis/wire.ts: edit the constants there.',
    `local DEFAULT_THRESHOLDS = '${DEFAULT_THRESHOLDS.join(',')}'`,
    `local EVENTS_MAXLEN = '${EVENTS_STREAM_MAXLEN}'`,
    `local EVENT_VERSION = '${EVENT_VERSION}'`,
    `local MISFIT_WIDTH = ${MISFIT_WIDTH}`,
  ].join('\n');
}
