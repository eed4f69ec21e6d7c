/**
 * Writes src/redis/lua/hashes.json: the SHA-1 of each script as Redis loads
 * it (includes expanded). Run after changing a script: `npm run scripts:hashes`.
 */
import { writeFileSync } from 'node:fs';
import { SCRIPT_FILES, scriptSha } from '../src/redis/scripts.ts';

const out = Object.fromEntries(SCRIPT_FILES.map((n) => [n, scriptSha(n)]));
writeFileSync(new URL('../src/redis/lua/hashes.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(out);
