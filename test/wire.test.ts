/**
 * One wire between the Lua scripts and TypeScript (src/redis/wire.ts): each
 * script's header lists exactly the reply codes the decoders know, a reply
 * no script answers throws, and each script's hash is the committed one, as
 * Redis computes it.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { SCRIPT_FILES, committedShas, commandName, scriptSource } from '../src/redis/scripts.ts';
import { MISFIT_CODES, REPLY_CODES, UnknownReplyError, luaDefaults } from '../src/redis/wire.ts';
import { decodeCancel, decodeRelease, decodeSettle } from '../src/accounting/replies.ts';
import { decodeReserve } from '../src/accounting/reserve-wire.ts';
import { misfitShortfall } from '../src/accounting/reasons.ts';

const raw = (path: string) => readFileSync(new URL(`../src/redis/lua/${path}.lua`, import.meta.url), 'utf8');

/** The first field of each reply the header's "Output:" section lists: `{ 4, ...` or a bare `1`. */
function headerCodes(name: string): number[] {
  const header = raw(name).split(']]')[0]!;
  const output = header.slice(header.indexOf('Output:'));
  const codes = [...output.matchAll(/^\s+(?:\{\s*)?(-?\d+)(?=[\s,}])/gm)].map((m) => Number(m[1]));
  return [...new Set(codes)].sort((a, b) => a - b);
}

describe('the wire between the scripts and TypeScript', () => {
  it.each(Object.keys(REPLY_CODES) as (keyof typeof REPLY_CODES)[])("%s's header lists exactly the reply codes of wire.ts", (name) => {
    const table = Object.values(REPLY_CODES[name]).map(Number).sort((a, b) => a - b);
    expect(headerCodes(name)).toEqual(table);
  });

  it('the misfit codes of includes/charges.lua are those of wire.ts', () => {
    const doc = raw('includes/charges').split('misfits(scopes, charge, gpus):')[1]!.split(']]')[0]!;
    const codes = [...doc.matchAll(/(\d) = /g)].map((m) => Number(m[1]));
    expect(codes).toEqual(Object.values(MISFIT_CODES));
  });

  it('throws on a reply code no script answers, instead of taking it for a decision', () => {
    expect(() => decodeRelease([6, 'x'])).toThrow(UnknownReplyError);
    expect(() => decodeSettle('j', ['s'], [3])).toThrow(UnknownReplyError);
    expect(() => decodeCancel([0])).toThrow(UnknownReplyError);
    expect(() => decodeReserve([[], [[9, 0]], [], []], [{ jobId: 'j', amountGpuMs: 1, scopes: ['s'], meta: { project: 'p', user: 'u', gpus: 1 } }], [['s']], [1], [1])).toThrow(UnknownReplyError);
    expect(() => misfitShortfall(['project:a', 9, 1, 0, 0], 1)).toThrow(UnknownReplyError);
  });

  it('gives the scripts their defaults from wire.ts', () => {
    for (const name of ['reserve', 'release', 'settle', 'scope'] as const) expect(scriptSource(name)).toContain(luaDefaults());
    expect(luaDefaults()).toContain("local DEFAULT_THRESHOLDS = '75,90,100'");
  });
});

describe('script hashes', () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv();
  });
  afterAll(async () => t?.close());

  it.each(SCRIPT_FILES)('%s: Redis loads it under the committed hash (npm run scripts:hashes writes them)', async (name) => {
    expect(await t.redis.script('LOAD', scriptSource(name))).toBe(committedShas()[name]);
  });

  it('registers each script under a name that changes with its content', () => {
    for (const name of SCRIPT_FILES) expect(commandName(name)).toBe(`gatekeeper_${name}_${committedShas()[name]!.slice(0, 12)}`);
    expect(new Set(SCRIPT_FILES.map(commandName)).size).toBe(SCRIPT_FILES.length);
  });
});
