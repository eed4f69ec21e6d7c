import { z } from 'zod';
import { HttpError } from '../http/errors.ts';
import { fieldNames, NAME_RE } from '../../queues/contract.ts';
import { safeText } from '../text.ts';

/** Parse a body, query or parameter, or answer 400 listing every problem. */
export function parseBody<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw new HttpError(400, [...new Set(r.error.issues.map((i) => i.message))].join('; '));
  return r.data;
}

/** A JSON body object that refuses unknown fields, naming them. */
export const body = <T extends z.ZodRawShape>(shape: T) =>
  z.strictObject(shape, { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s): ${fieldNames(i.keys)}` : 'body must be a JSON object') });

/** A query string that refuses unknown parameters, naming them. */
export const query = <T extends z.ZodRawShape>(shape: T) =>
  z.strictObject(shape, { error: (i) => (i.code === 'unrecognized_keys' ? `unknown query parameter(s): ${fieldNames(i.keys)}` : 'bad query') });

/** `limit` of a listing's query: how many per page, 1 to 1000, 100 when not given. */
export const pageLimit = z.coerce
  .number({ error: 'limit must be a number' })
  .int('limit must be a whole number')
  .min(1, 'limit must be at least 1')
  .max(1000, 'limit must be at most 1000')
  .default(100);

/** `offset` of a listing's query: where the page starts, 0 when not given. */
export const pageOffset = z.coerce.number({ error: 'offset must be a number' }).int('offset must be a whole number').min(0, 'offset may not be negative').default(0);

/** A job id (an intake job id) in a path or a body: `typeError` is what a value that is no string is told. */
export const jobIdText = (typeError: string) =>
  z.string({ error: typeError }).min(1, 'a job id may not be empty').max(256, 'a job id is at most 256 characters').superRefine(safeText('job id'));

/** A search string in a listing's query: part of a name, so 1-128 of the characters names have. */
export const searchText = (field: string) =>
  z
    .string({ error: `${field} must be a single string` })
    .regex(/^[A-Za-z0-9._-]{1,128}$/, `${field} must be 1-128 characters of A-Z a-z 0-9 . _ - (part of a name)`)
    .optional();

/**
 * The query of a listing paged by name (GET /projects, GET /quotas): `limit`,
 * `cursor` (the previous page's nextCursor, a name of `what`) and `q`.
 */
export const cursorPageQuery = (what: string) =>
  query({
    limit: pageLimit,
    cursor: z
      .string({ error: 'cursor must be a string' })
      .regex(NAME_RE, `cursor must be a ${what} name: the nextCursor of the previous page`)
      .optional(),
    q: searchText('q'),
  });

/**
 * Free text a person writes (a reason, a note): at most `max` characters and
 * none that Postgres, a log, a terminal or a spreadsheet cannot hold.
 */
export const freeText = (field: string, max = 500) =>
  z
    .string({ error: (i) => (i.input === undefined ? `${field} is required` : `${field} must be a string`) })
    .max(max, `${field} is at most ${max} characters`)
    .superRefine(safeText(field));
