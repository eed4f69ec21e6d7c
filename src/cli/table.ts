import { printable } from '../text.ts';

/**
 * A plain aligned text table for terminals. Cells are made printable first
 * (an escape sequence in a job type is shown, not obeyed), then measured.
 */
export function table(header: string[], rows: unknown[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === undefined || c === null ? '' : printable(String(c)))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
