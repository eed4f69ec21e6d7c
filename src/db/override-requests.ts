/**
 * Override requests (migration 020): one statement per function. Times come
 * from the caller's clock (epoch ms). The deciding statements run on a client
 * inside the caller's transaction, after `lockRequest`, so an approval, a
 * denial and a closing of the same request are decided one at a time.
 */
import type { Queryable } from './pool.ts';

export const REQUEST_KINDS = ['override', 'raise'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];
export const REQUEST_STATES = ['open', 'approved', 'denied', 'closed'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

export interface OverrideRequest {
  id: number;
  jobId: string;
  project: string;
  user: string;
  kind: RequestKind;
  reason: string;
  state: RequestState;
  requestedBy: string;
  /** How the requester was known: 'key:<id>', 'oidc' or 'token' (a declared name). */
  requestedVia: string | null;
  requestedAt: Date;
  decidedBy: string | null;
  decidedVia: string | null;
  /** When it stopped being open: approved, denied or closed. */
  decidedAt: Date | null;
  /** The approver's or denier's reason. */
  decisionReason: string | null;
  /** Why it closed by itself (its job left the held state). */
  closedNote: string | null;
}

/** Rows of these projects, or of this person's jobs; null: every row. */
export interface RequestScope {
  projects: readonly string[];
  user?: string | undefined;
}

const COLUMNS = `id, job_id, project, user_name, kind, reason, state, requested_by, requested_via, created_at,
  decided_by, decided_via, decided_at, decision_reason, closed_note`;

/** The open request of a job, if any. */
export async function openRequestOf(db: Queryable, jobId: string): Promise<OverrideRequest | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM override_requests WHERE job_id = $1::text AND state = 'open'`, [jobId]);
  return r.rows[0] ? toRequest(r.rows[0]) : null;
}

/** Insert an open request; null if the job has one open already (the partial unique index). */
export async function insertRequest(
  db: Queryable,
  q: { jobId: string; project: string; user: string; kind: RequestKind; reason: string; by: string; via: string | null; at: number },
): Promise<OverrideRequest | null> {
  const r = await db.query(
    `INSERT INTO override_requests (job_id, project, user_name, kind, reason, requested_by, requested_via, created_at)
     VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, to_timestamp($8::double precision / 1000))
     ON CONFLICT (job_id) WHERE state = 'open' DO NOTHING
     RETURNING ${COLUMNS}`,
    [q.jobId, q.project, q.user, q.kind, q.reason, q.by, q.via, q.at],
  );
  return r.rows[0] ? toRequest(r.rows[0]) : null;
}

/** Lock one request for a decision (inside a transaction); null if there is none. */
export async function lockRequest(db: Queryable, id: number): Promise<OverrideRequest | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM override_requests WHERE id = $1::bigint FOR UPDATE`, [id]);
  return r.rows[0] ? toRequest(r.rows[0]) : null;
}

/** Approve or deny an open request (locked by the caller). */
export async function decideRequest(
  db: Queryable,
  id: number,
  d: { state: 'approved' | 'denied'; by: string; via: string | null; reason: string | null; at: number },
): Promise<OverrideRequest> {
  const r = await db.query(
    `UPDATE override_requests SET state = $2::text, decided_by = $3::text, decided_via = $4::text, decision_reason = $5::text,
       decided_at = to_timestamp($6::double precision / 1000)
     WHERE id = $1::bigint AND state = 'open' RETURNING ${COLUMNS}`,
    [id, d.state, d.by, d.via, d.reason, d.at],
  );
  if (!r.rows[0]) throw new Error(`override request ${id} is not open (it was locked as open)`);
  return toRequest(r.rows[0]);
}

/**
 * Close open requests whose jobs left the held state, each with its note.
 * A request decided meanwhile (its row locked by an approval) is left as
 * that decision made it: the state is checked again after the lock.
 */
export async function closeRequests(db: Queryable, closes: { id: number; note: string }[], at: number): Promise<OverrideRequest[]> {
  if (closes.length === 0) return [];
  const r = await db.query(
    `UPDATE override_requests SET state = 'closed', closed_note = n.note, decided_at = to_timestamp($3::double precision / 1000)
     FROM unnest($1::bigint[], $2::text[]) AS n(request_id, note)
     WHERE id = n.request_id AND state = 'open' RETURNING ${COLUMNS}`,
    [closes.map((c) => c.id), closes.map((c) => c.note), at],
  );
  return r.rows.map(toRequest);
}

const scopeSql = (first: number) =>
  `($${first}::text[] IS NULL OR project = ANY($${first}::text[]) OR user_name = $${first + 1}::text)`;
const scopeParams = (s: RequestScope | null) => [s ? [...s.projects] : null, s?.user ?? null];

/** The open requests in a scope, as (id, job id): what the listing checks against Redis. */
export async function openRequests(db: Queryable, scope: RequestScope | null): Promise<{ id: number; jobId: string }[]> {
  const r = await db.query(`SELECT id, job_id FROM override_requests WHERE state = 'open' AND ${scopeSql(1)} ORDER BY id`, scopeParams(scope));
  return r.rows.map((x: { id: number; job_id: string }) => ({ id: Number(x.id), jobId: x.job_id }));
}

/** One page of requests in a scope (and state, when given), newest first, with the total. */
export async function listRequests(
  db: Queryable,
  f: { state: RequestState | null; scope: RequestScope | null; limit: number; offset: number },
): Promise<{ total: number; requests: OverrideRequest[] }> {
  const where = `WHERE ($1::text IS NULL OR state = $1::text) AND ${scopeSql(2)}`;
  const params = [f.state, ...scopeParams(f.scope)];
  const [rows, count] = await Promise.all([
    db.query(`SELECT ${COLUMNS} FROM override_requests ${where} ORDER BY id DESC LIMIT $4::int OFFSET $5::int`, [...params, f.limit, f.offset]),
    db.query(`SELECT count(*)::int AS n FROM override_requests ${where}`, params),
  ]);
  return { total: count.rows[0].n, requests: rows.rows.map(toRequest) };
}

interface Raw {
  id: number | string;
  job_id: string;
  project: string;
  user_name: string;
  kind: RequestKind;
  reason: string;
  state: RequestState;
  requested_by: string;
  requested_via: string | null;
  created_at: Date;
  decided_by: string | null;
  decided_via: string | null;
  decided_at: Date | null;
  decision_reason: string | null;
  closed_note: string | null;
}

function toRequest(r: Raw): OverrideRequest {
  return {
    id: Number(r.id),
    jobId: r.job_id,
    project: r.project,
    user: r.user_name,
    kind: r.kind,
    reason: r.reason,
    state: r.state,
    requestedBy: r.requested_by,
    requestedVia: r.requested_via,
    requestedAt: r.created_at,
    decidedBy: r.decided_by,
    decidedVia: r.decided_via,
    decidedAt: r.decided_at,
    decisionReason: r.decision_reason,
    closedNote: r.closed_note,
  };
}
