/**
 * Imports between the web modules go one way: src/api/app.ts mounts the
 * dashboard, and both use src/http; neither src/http nor dashboard/ imports
 * src/api (they once did, and the two imported each other).
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');

/** Every relative import of the .ts files in `dir`, as `file -> target` (paths from the repository root). */
function importsOf(dir: string): string[] {
  return readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => {
      const file = join(root, dir, f);
      return [...readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)].map((m) => `${relative(root, file)} -> ${relative(root, resolve(dirname(file), m[1]!))}`);
    });
}

describe('layout', () => {
  it.each(['dashboard', 'src/http'])('%s imports nothing from src/api', (dir) => {
    const imports = importsOf(dir);
    expect(imports.length).toBeGreaterThan(0);
    expect(imports.filter((i) => i.split(' -> ')[1]!.startsWith('src/api/'))).toEqual([]);
  });
});
