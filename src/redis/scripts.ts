/**
 * The Lua scripts, loaded from src/redis/lua and registered with ioredis under
 * a versioned name (so two releases never share one). ioredis sends EVALSHA
 * and falls back to EVAL on NOSCRIPT (after a SCRIPT FLUSH or a Redis restart).
 * A line `-- @include NAME` is replaced by src/redis/lua/includes/NAME.lua
 * (shared local functions, as BullMQ does). The typed wrappers in
 * src/accounting are the only callers and the only place that knows each
 * script's key order.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

const SCRIPTS_VERSION = 2;

export const SCRIPT_FILES = ['reserve', 'settle', 'release', 'cancel', 'scope', 'snapshot', 'raise'] as const;
export type ScriptName = (typeof SCRIPT_FILES)[number];

const lua = (path: string) => readFileSync(new URL(`./lua/${path}.lua`, import.meta.url), 'utf8');

/** A script with each `-- @include NAME` replaced by `read('includes/NAME')` (the tree's files, or another revision's). */
export const withIncludes = (src: string, read: (path: string) => string = lua) =>
  src.replace(/^-- @include (\w+)$/gm, (_, name: string) => read(`includes/${name}`));

const sources = new Map<ScriptName, string>(SCRIPT_FILES.map((n) => [n, withIncludes(lua(n))]));

export function scriptSource(name: ScriptName): string {
  return sources.get(name)!;
}

export function scriptSha(name: ScriptName): string {
  return createHash('sha1').update(scriptSource(name)).digest('hex');
}

export const commandName = (name: ScriptName) => `gatekeeper_${name}_v${SCRIPTS_VERSION}`;

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
