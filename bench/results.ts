/** Where benchmarks write their figures: bench/results/, via a .tmp file (gitignored) so an interrupted run never leaves half a result. */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';

export function save(name: string, text: string): void {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const tmp = new URL(`${name}.tmp`, dir);
  writeFileSync(tmp, text);
  renameSync(tmp, new URL(name, dir));
}
