import { z } from 'zod';
import { HttpError } from './errors.ts';

/** Parse a body, query or parameter, or answer 400 listing every problem. */
export function parseBody<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw new HttpError(400, [...new Set(r.error.issues.map((i) => i.message))].join('; '));
  return r.data;
}

/** A JSON body object that refuses unknown fields, naming them. */
export const body = <T extends z.ZodRawShape>(shape: T) =>
  z.strictObject(shape, { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : 'body must be a JSON object') });

/** A query string that refuses unknown parameters, naming them. */
export const query = <T extends z.ZodRawShape>(shape: T) =>
  z.strictObject(shape, { error: (i) => (i.code === 'unrecognized_keys' ? `unknown query parameter(s): ${i.keys.join(', ')}` : 'bad query') });
