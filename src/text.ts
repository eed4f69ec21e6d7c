/**
 * Text from users reaches Redis, Postgres, logs, terminals and spreadsheets.
 * Postgres cannot store NUL in text or jsonb; terminals act on escape
 * sequences (ESC, CSI, OSC: a title change, a cleared screen); bidirectional
 * overrides make a terminal or a page show other text than is stored; an
 * unpaired surrogate has no UTF-8 form at all (the driver silently turns it
 * into U+FFFD). So the edges refuse such characters in free text with a
 * reason naming the field (`unsafeText`), and every output neutralises them
 * anyway (`printable`), because data stored before the refusal may hold them.
 */

/**
 * C0 controls, DEL and C1 controls; line and paragraph separators; the
 * bidirectional embeddings, overrides and isolates; unpaired surrogates.
 * (4-byte characters, emoji among them, are well-formed pairs and fine.)
 */
// With the u flag a surrogate class matches only a surrogate that is not half of a pair.
const UNSAFE_ONE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]/u;
const UNSAFE_ALL = new RegExp(UNSAFE_ONE.source, 'gu');

/** `U+001B` style name of a code unit. */
const codeName = (unit: number) => `U+${unit.toString(16).toUpperCase().padStart(4, '0')}`;

/**
 * Why `s` may not be stored as free text, or null if it may: names the first
 * unsafe character and where it is (1-based, in characters as JS counts them).
 */
export function unsafeText(field: string, s: string): string | null {
  const m = UNSAFE_ONE.exec(s);
  if (!m) return null;
  const unit = m[0].charCodeAt(0);
  const what =
    unit >= 0xd800 && unit <= 0xdfff
      ? 'an unpaired surrogate'
      : (unit >= 0x202a && unit <= 0x202e) || (unit >= 0x2066 && unit <= 0x2069)
        ? 'a bidirectional control character'
        : 'a control character';
  return `${field} contains ${what} (${codeName(unit)}) at character ${m.index + 1}; control characters, bidirectional overrides and unpaired surrogates are not accepted`;
}

/**
 * `s` with every unsafe character written out as a visible escape (`\u001b`),
 * for terminals, CSV cells and messages that quote user input. Newlines are
 * kept when `keepNewlines` (a terminal's own line breaks).
 */
export function printable(s: string, opts: { keepNewlines?: boolean } = {}): string {
  return s.replace(UNSAFE_ALL, (c) => (opts.keepNewlines && c === '\n' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/**
 * JSON text with the characters JSON.stringify leaves raw but terminals and
 * some parsers act on (DEL, C1, separators, bidirectional controls) escaped
 * as \uXXXX: the same JSON value, safe to print.
 */
export function jsonSafe(json: string): string {
  return json.replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A zod refinement refusing unsafe text in `field`: `z.string().superRefine(safeText('reason'))`. */
export const safeText =
  (field: string) =>
  (s: string, ctx: { addIssue(issue: { code: 'custom'; message: string }): void }): void => {
    const why = unsafeText(field, s);
    if (why) ctx.addIssue({ code: 'custom', message: why });
  };

/** User text quoted in a message: printable, and cut to `max` characters. */
export const quoted = (s: string, max = 40): string => JSON.stringify(printable(s.length > max ? `${s.slice(0, max)}…` : s));
