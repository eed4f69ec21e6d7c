/** /dashboard?q=&page=&userPage=: anything else, or a bad value, is a 400 naming it (as the API's listings). */
import { z } from 'zod';
import type { DashboardQuery } from '../../dashboard/data.ts';
import { query, searchText } from './validate.ts';

const pageNumber = (field: string) =>
  z.coerce.number({ error: `${field} must be a number` }).int(`${field} must be a whole number`).min(1, `${field} must be at least 1`).max(100_000, `${field} must be at most 100000`).default(1);

export const DashboardQuerySchema = query({ q: searchText('q'), page: pageNumber('page'), userPage: pageNumber('userPage') }).transform(
  (x): DashboardQuery => ({ q: x.q ?? null, page: x.page, userPage: x.userPage }),
);
