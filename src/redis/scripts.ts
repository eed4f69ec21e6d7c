/**
 * The Lua scripts, loaded from src/redis/lua and registered with ioredis under
 * a name that carries their content hash (so two versions never share one).
 * ioredis sends EVALSHA and falls back to EVAL on NOSCRIPT (after a SCRIPT
 * FLUSH or a Redis restart). A line `-- @include NAME` is replaced by
 * src/redis/lua/includes/NAME.lua (shared local functions, as BullMQ does);
 * `-- @include defaults` by the constants of wire.ts. Each script's hash is
 * committed in src/redis/lua/hashes.json (`npm run scripts:hashes` writes it),
 * so a changed script shows in review and test/wire.test.ts fails until its
 * hash is written. The typed wrappers in src/accounting are the only callers
 * and the only place that knows each script's key order.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { luaDefaults } from './wire.ts';

export const SCRIPT_FILES = ['reserve', 'settle', 'release', 'cancel', 'scope', 'snapshot', 'raise', 'caps-count', 'caps-audit'] as const;
export type ScriptName = (typeof SCRIPT_FILES)[number];

const lua = (path: string) => readFileSync(new URL(`./lua/${path}.lua`, import.meta.url), 'utf8');

/**
 * A script with each `-- @include NAME` replaced by `read('includes/NAME')`
 * (the tree's files, or another revision's), includes within includes too,
 * each once.
 */
export function withIncludes(src: string, read: (path: string) => string = lua, done = new Set<string>()): string {
  return src.replace(/^-- @include (\w+)$/gm, (_, name: string) => {
    if (done.has(name)) return `-- (${name}: included above)`;
    done.add(name);
    return withIncludes(name === 'defaults' ? luaDefaults() : read(`includes/${name}`), read, done);
  });
}

const sources = new Map<ScriptName, string>(SCRIPT_FILES.map((n) => [n, withIncludes(lua(n))]));

export function scriptSource(name: ScriptName): string {
  return sources.get(name)!;
}

export function scriptSha(name: ScriptName): string {
  return createHash('sha1').update(scriptSource(name)).digest('hex');
}

/** The committed hashes (src/redis/lua/hashes.json). */
export const committedShas = (): Record<string, string> =>
  JSON.parse(readFileSync(new URL('./lua/hashes.json', import.meta.url), 'utf8')) as Record<string, string>;

export const commandName = (name: ScriptName) => `gatekeeper_${name}_${scriptSha(name).slice(0, 12)}`;

type VarKeysCommand = (numKeys: number, ...keysAndArgs: (string | number)[]) => Promise<unknown>;

/** Register every script on a connection (idempotent). */
export function registerScripts(redis: Redis): void {
  for (const name of SCRIPT_FILES) {
    const cmd = commandName(name);
    if (typeof (redis as unknown as Record<string, unknown>)[cmd] === 'function') continue;
    redis.defineCommand(cmd, { lua: scriptSource(name) });
  }
}

/** Call a registered script with a variable number of keys. */
export function callScript(redis: Redis, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  registerScripts(redis);
  const fn = (redis as unknown as Record<string, VarKeysCommand>)[commandName(name)]!;
  return fn.call(redis, keys.length, ...keys, ...args);
}
