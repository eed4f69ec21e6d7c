/**
 * docs/operations.md's configuration table is src/config.ts's: every
 * variable config reads is listed, nothing else is, and each listed default
 * is the one config applies.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Env } from '../src/config.ts';

const doc = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
const table = doc.slice(doc.indexOf('## Configuration'), doc.indexOf('\n## ', doc.indexOf('## Configuration') + 1));

/** name -> its default as the table writes it (`code` when in backticks, else the prose such as "unset"). */
const documented = new Map<string, { code: string | null; text: string }>();
for (const line of table.split('\n').filter((l) => l.startsWith('| `'))) {
  const [names, defaults] = line.split('|').slice(1, 3).map((c) => c.trim()) as [string, string];
  const list = names.split(' / ').map((n) => n.replaceAll('`', ''));
  const values = list.length > 1 ? defaults.split(' / ') : [defaults];
  list.forEach((n, i) => {
    const v = (values[i] ?? '').trim();
    const code = /^`[^`]*`$/.test(v) ? v.slice(1, -1) : null;
    documented.set(n, { code, text: v });
  });
}

const defaults = Env.parse({}) as Record<string, unknown>;

/** A default that means "not set": absent, empty, 0, or lists that are all empty. */
const nothing = (v: unknown): boolean =>
  v === undefined || v === '' || v === 0 || (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && v !== null && Object.values(v).every(nothing));

describe('the configuration table in docs/operations.md', () => {
  it('lists exactly the variables src/config.ts reads', () => {
    expect([...documented.keys()].sort()).toEqual(Object.keys(Env.shape).sort());
  });

  it.each(Object.keys(Env.shape))('gives %s the default config applies', (name) => {
    const d = documented.get(name);
    expect(d, `${name} is not in the table`).toBeDefined();
    const value = defaults[name];
    const none = nothing(value);
    if (d!.code === null) expect(none, `${name}: the table says "${d!.text}", config's default is ${JSON.stringify(value)}`).toBe(true);
    else expect(d!.code).toBe(String(value));
  });
});
