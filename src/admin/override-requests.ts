/**
 * Override requests: a held job's owner (or a manager of its project) asks
 * for an override or a budget raise with a reason; a manager of the project
 * or an admin approves (the job is admitted as an override, HeldJobs.override)
 * or denies with a reason the requester sees. Either kind is approved the same
 * way: this one job is admitted regardless of its limits (a raise of the limit
 * itself is a budget change of its own). A request whose job left the held
 * state some other way closes by itself, noticed when requests are listed or
 * decided (the job's reservation state in Redis is the truth; no loop watches).
 *
 * Order of an approval, on one Postgres connection (the embedded Postgres
 * has only one). The request row is locked (so one decision at a time per
 * request), the job is overridden in Redis (HeldJobs.override), its audit row
 * naming requester and approver is written in the same transaction, then the
 * row is marked approved and committed. The job no longer held at that
 * moment: the row is closed instead and the caller told (409). Should the
 * transaction fail after the override, the audit row is written again the
 * durable way (recordAudit, with the same request id: a row that did land is
 * not written twice); the job is admitted, and the row, still open, closes as
 * "admitted" at the next listing.
 *
 * Permissions are checked here too (the dashboard calls this module without
 * the API): a request or decision on a job the caller may not see answers
 * not-found, as if it did not exist.
 */
import type { Redis } from 'ioredis';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { Accounting } from '../accounting/counters.ts';
import { Access, type Principal } from '../http/access.ts';
import { writeAudit } from '../db/audit.ts';
import { begin, commit, inTransaction, rollback } from '../db/transaction.ts';
import { recordAudit } from '../audit/change.ts';
import { randomUUID } from 'node:crypto';
import type { AuditEntry } from '../db/audit.ts';
import { pipelined } from '../redis/pipelined.ts';
import type { EventData } from '../events/types.ts';
import { NotHeldError, type HeldJobs, type JobScope } from './held.ts';
import {
  closeRequests, decideRequest, insertRequest, listRequests, lockRequest, openRequestOf, openRequests,
  type OverrideRequest, type RequestKind, type RequestState,
} from '../db/override-requests.ts';

export type { OverrideRequest, RequestKind, RequestState } from '../db/override-requests.ts';

/** Why a request or decision was refused: not-found (or not the caller's to see), forbidden, conflict (the state says no). */
export class RequestRefused extends Error {
  constructor(
    readonly code: 'not-found' | 'forbidden' | 'conflict',
    message: string,
  ) {
    super(message);
  }
}

/** A job's reservation state in Redis ('held', 'reserved', 'settled', 'cancelled'; null: none) and its owner. */
interface JobNow {
  state: string | null;
  owner: { project: string; user: string } | null;
}

export interface OverrideRequestsDeps {
  pool: Pool;
  redis: Redis;
  accounting: Accounting;
  held: HeldJobs;
  clock: Clock;
  log: Logger;
}

export class OverrideRequests {
  constructor(private readonly d: OverrideRequestsDeps) {}

  /**
   * Ask for an override (or a raise) of a held job: its owner (known by their
   * own key) or a manager of its project, or an admin. One open request per job.
   */
  async request(jobId: string, who: Principal, reason: string, kind: RequestKind = 'override'): Promise<OverrideRequest> {
    const access = accessOf(who);
    const [job] = await this.jobsNow([jobId]);
    const owner = job!.owner;
    if (!owner || !access.canSeeJob(owner)) throw new RequestRefused('not-found', `no held job ${jobId}`);
    if (!(access.owns(owner) || access.canManageProject(owner.project))) {
      throw new RequestRefused('forbidden', `${access.describe()} may not request an override of job ${jobId} (project ${owner.project}, user ${owner.user}): only its owner, with a key of their own, or a manager of the project`);
    }
    if (job!.state !== 'held') throw new RequestRefused('conflict', `job ${jobId} is not held (it is ${job!.state ?? 'gone'}): nothing to override`);
    const row = { jobId, project: owner.project, user: owner.user, kind, reason, by: who.name, via: who.via ?? null, at: this.d.clock.now() };
    // The request and its audit row: one transaction.
    const created = await inTransaction(this.d.pool, async (db) => {
      const r = await insertRequest(db, row);
      if (r) await writeAudit(db, who, { action: 'override-request.create', target: `job:${jobId}`, before: null, after: { request: r.id, kind, state: 'open' }, reason }, { at: row.at });
      return r;
    });
    if (!created) {
      const first = await openRequestOf(this.d.pool, jobId);
      throw new RequestRefused('conflict', `job ${jobId} already has an open override request${first ? ` (#${first.id} by ${first.requestedBy})` : ''}`);
    }
    await this.emit('OVERRIDE_REQUESTED', {
      requestId: created.id, jobId, project: owner.project, user: owner.user, kind, reason, requestedBy: who.name,
    }, `override-request:${created.id}`);
    this.d.log.info({ requestId: created.id, jobId, by: who.name, kind }, 'override requested');
    return created;
  }

  /**
   * Requests in a scope (null: all), newest first. Open requests whose jobs
   * left the held state are closed first, so the page and its total are as of now.
   */
  async list(f: { state?: RequestState | undefined; within?: JobScope | null | undefined; limit: number; offset: number }): Promise<{ total: number; requests: OverrideRequest[] }> {
    const scope = f.within ?? null;
    if (f.state === undefined || f.state === 'open' || f.state === 'closed') {
      await this.closeGone(await openRequests(this.d.pool, scope));
    }
    return listRequests(this.d.pool, { state: f.state ?? null, scope, limit: f.limit, offset: f.offset });
  }

  /** Approve: the job is admitted as an override; the audit row (held.override) names requester and approver. */
  async approve(id: number, who: Principal, reason: string | null = null): Promise<OverrideRequest> {
    const requestId = randomUUID();
    let audited: AuditEntry | null = null;
    try {
      return await this.decide(id, who, 'approve', async (req, db) => {
        const note = `request #${req.id} by ${req.requestedBy}: ${req.reason}${reason ? `; ${reason}` : ''}`;
        const auditAfter = { request: { id: req.id, kind: req.kind, requestedBy: req.requestedBy, requestedVia: req.requestedVia } };
        try {
          await this.d.held.override(req.jobId, who, note, {
            auditAfter,
            audit: async (e) => {
              audited = e;
              await writeAudit(db, who, e, { requestId });
            },
          });
        } catch (err) {
          if (err instanceof NotHeldError) return null;
          throw err;
        }
        return decideRequest(db, req.id, { state: 'approved', by: who.name, via: who.via ?? null, reason, at: this.d.clock.now() });
      });
    } catch (err) {
      // The job was admitted, but the transaction with its audit row did not commit (or its answer was lost).
      if (audited) await recordAudit({ pool: this.d.pool, redis: this.d.redis, outboxKey: this.d.accounting.keys.auditOutbox, log: this.d.log }, who, audited, this.d.clock.now(), requestId);
      throw err;
    }
  }

  /** Deny, with a reason the requester sees; audited in the same transaction. */
  async deny(id: number, who: Principal, reason: string): Promise<OverrideRequest> {
    const out = await this.decide(id, who, 'deny', async (req, db) => {
      const denied = await decideRequest(db, req.id, { state: 'denied', by: who.name, via: who.via ?? null, reason, at: this.d.clock.now() });
      await writeAudit(db, who, {
        action: 'override-request.deny',
        target: `job:${req.jobId}`,
        before: { request: req.id, state: 'open', kind: req.kind, requestedBy: req.requestedBy, requestedVia: req.requestedVia },
        after: { request: req.id, state: 'denied' },
        reason,
      }, { at: denied.decidedAt!.getTime() });
      return denied;
    });
    // After the commit: an event never announces a denial that did not happen.
    await this.emit('OVERRIDE_DENIED', {
      requestId: out.id, jobId: out.jobId, project: out.project, user: out.user, reason, deniedBy: who.name,
    }, `override-denied:${out.id}`);
    return out;
  }

  /**
   * One decision on one request, its row locked: checks who may decide, that
   * it is open and that its job is still held (else closes it and refuses).
   * `act` returns null when the job turned out not to be held.
   */
  private async decide(
    id: number,
    who: Principal,
    what: 'approve' | 'deny',
    act: (req: OverrideRequest, db: PoolClient) => Promise<OverrideRequest | null>,
  ): Promise<OverrideRequest> {
    const access = accessOf(who);
    const db = await this.d.pool.connect();
    let done = false;
    try {
      await begin(db);
      const req = await lockRequest(db, id);
      if (!req || !access.canSeeJob(req)) throw new RequestRefused('not-found', `no override request #${id}`);
      if (!access.canManageProject(req.project)) throw new RequestRefused('forbidden', `${access.describe()} may not ${what} override requests of project ${req.project}`);
      if (req.state !== 'open') throw new RequestRefused('conflict', `override request #${id} is ${describeState(req)}`);
      const [job] = await this.jobsNow([req.jobId]);
      const out = job!.state === 'held' ? await act(req, db) : null;
      if (out) {
        await commit(db);
        done = true;
        return out;
      }
      // The job left the held state (before or during this decision): the request closes instead.
      const [now] = await this.jobsNow([req.jobId]);
      const [closed] = await closeRequests(db, [{ id, note: goneNote(now!.state) }], this.d.clock.now());
      await commit(db);
      done = true;
      throw new RequestRefused('conflict', `override request #${id} is ${describeState(closed ?? req)}`);
    } finally {
      if (!done) await rollback(db).catch(() => {});
      db.release();
    }
  }

  /** An event about a request already stored: if Redis refuses it, the request stands (it is listed); only the notice is lost, and logged. */
  private async emit<T extends 'OVERRIDE_REQUESTED' | 'OVERRIDE_DENIED'>(type: T, data: EventData[T], dedupeKey: string): Promise<void> {
    try {
      await this.d.accounting.events.emit(type, data, dedupeKey, this.d.clock.now());
    } catch (err) {
      this.d.log.error({ err, type, data }, 'override request: its event could not be stored');
    }
  }

  /** Close the open requests whose jobs are no longer held. */
  private async closeGone(open: { id: number; jobId: string }[]): Promise<void> {
    if (open.length === 0) return;
    const nows = await this.jobsNow(open.map((o) => o.jobId));
    const gone = open.flatMap((o, i) => (nows[i]!.state === 'held' ? [] : [{ id: o.id, note: goneNote(nows[i]!.state) }]));
    const closed = await closeRequests(this.d.pool, gone, this.d.clock.now());
    if (closed.length > 0) this.d.log.info({ requests: closed.map((c) => c.id) }, 'override requests closed: their jobs left the held state');
  }

  /** Each job's reservation state and owner, in one round trip. */
  private async jobsNow(jobIds: string[]): Promise<JobNow[]> {
    const keys = this.d.accounting.keys;
    const replies = (await pipelined(this.d.redis, jobIds, (p, id) => p.hmget(keys.reservation(id), 'state', 'meta'))) as (string | null)[][];
    return replies.map(([state, meta]) => ({
      state: state ?? null,
      owner: meta ? (JSON.parse(meta) as { project: string; user: string }) : null,
    }));
  }
}

/** Job checks do not depend on VISIBILITY (src/http/access.ts): the default serves. */
const accessOf = (who: Principal) => new Access(who, 'own');

/** Why a request closed by itself, from its job's reservation state. */
function goneNote(state: string | null): string {
  if (state === 'reserved' || state === 'settled') return 'the job left the held state: admitted';
  if (state === 'cancelled') return 'the job left the held state: cancelled';
  return 'the job is no longer held';
}

function describeState(r: OverrideRequest): string {
  if (r.state === 'closed') return `closed (${r.closedNote ?? 'the job is no longer held'})`;
  if (r.state === 'open') return 'open';
  return `already ${r.state} by ${r.decidedBy}${r.decisionReason ? `: ${r.decisionReason}` : ''}`;
}
