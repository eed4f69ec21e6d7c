import type { z } from 'zod';
import { HttpError } from './errors.ts';

/** Parse a body, query or parameter, or answer 400 listing every problem. */
export function parseBody<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw new HttpError(400, [...new Set(r.error.issues.map((i) => i.message))].join('; '));
  return r.data;
}
