/**
 * A key for each person: `gk_<id>_<secret>`. The id is public (listings,
 * audit rows); only the SHA-256 of the secret is stored, so a copy of the
 * database authenticates nobody. 32 random bytes need no slow hash: there is
 * nothing to guess from a digest of them.
 *
 * A revocation holds from the next request on, in every process. Each
 * process keeps the keys it has read, and at every request reads one Redis
 * string, the revocation epoch: a revocation sets it to a new random value
 * before and after its commit, and a process that sees it change forgets
 * every key it kept (reading Postgres at every request instead costs about
 * a quarter of the calls per second on the embedded Postgres:
 * docs/benchmarks.md). A kept key is read again after a minute whatever
 * happens, and when Redis cannot be read, Postgres is asked.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import { insertKey, keyById, keyWithDigest, listKeys, revokeKey, touchKey, type KeyRow } from '../db/api-keys.ts';
import { writeAudit } from '../db/audit.ts';
import { inTransaction } from '../db/transaction.ts';
import type { Logger } from '../log.ts';
import { systemClock, type Clock } from '../clock.ts';
import { CredentialRefused, type CredentialVerifier, type PersonRole, type Principal } from '../http/access.ts';

const KEY_RE = /^gk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface KeyView {
  id: string;
  user: string;
  role: PersonRole;
  projects: string[] | null;
  createdAt: string;
  createdBy: string;
  expiresAt: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
  lastUsedAt: string | null;
  state: 'active' | 'expired' | 'revoked';
}

export interface NewKey {
  user: string;
  role: PersonRole;
  projects: string[] | null;
  expiresAt: Date | null;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** Where the revocation epoch lives (src/redis/keys.ts: Keys.keysEpoch). */
export interface KeyCache {
  redis: Redis;
  epochKey: string;
}

type Row = KeyRow & { secret_sha256: Buffer };
/** How long a kept key is trusted without reading it again, should an epoch change be missed. */
const KEEP_MS = 60_000;
const KEEP_MAX = 10_000;
/** How long a request waits for the epoch before asking Postgres instead. */
const EPOCH_WAIT_MS = 250;
/** last_used_at is written at most this often per key: one write a minute, not one per request. */
const TOUCH_MS = 60_000;

export class ApiKeys implements CredentialVerifier {
  private readonly touched = new Map<string, number>();
  private readonly kept = new Map<string, { row: Row; at: number }>();
  private epoch: string | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly cache: KeyCache | null = null,
    private readonly clock: Clock = systemClock,
  ) {}

  now(): number {
    return this.clock.now();
  }

  accepts(token: string): boolean {
    return token.startsWith('gk_');
  }

  /** Create a key, audited in the same transaction; the answer is the only place the key appears. */
  async create(k: NewKey, by: Principal, reason: string | null): Promise<KeyView & { key: string }> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const view = await inTransaction(this.pool, async (db) => {
      const row = await insertKey(db, { id, person: k.user, role: k.role, projects: k.projects, secretSha256: sha256(secret), createdBy: by.name, expiresAt: k.expiresAt });
      const v = toView(row, this.clock.now());
      await writeAudit(db, by, { action: 'key.create', target: `key:${id}`, before: null, after: { user: v.user, role: v.role, projects: v.projects, expiresAt: v.expiresAt }, reason });
      return v;
    });
    return { ...view, key: `gk_${id}_${secret}` };
  }

  async list(opts: { user?: string | undefined; includeRevoked: boolean }): Promise<KeyView[]> {
    const now = this.clock.now();
    return (await listKeys(this.pool, { person: opts.user ?? null, includeRevoked: opts.includeRevoked })).map((row) => toView(row, now));
  }

  /** Revoke a key, audited; null if there is no such key. Revoking twice changes nothing the second time. */
  async revoke(id: string, by: Principal, reason: string | null): Promise<KeyView | null> {
    let revoked = false;
    const out = await inTransaction(this.pool, async (db) => {
      const row = await revokeKey(db, id, by.name);
      if (row) {
        const v = toView(row, this.clock.now());
        await writeAudit(db, by, { action: 'key.revoke', target: `key:${id}`, before: { user: v.user, role: v.role }, after: null, reason });
        // Before the commit: Redis refusing means no revocation (rolled back) rather than one processes miss.
        await this.newEpoch();
        revoked = true;
        return v;
      }
      const was = await keyById(db, id);
      return was && toView(was, this.clock.now());
    });
    // After it: a process that read the key between the two reads it again, now revoked.
    if (revoked) await this.newEpoch().catch((err: unknown) => this.log.error({ err, keyId: id }, 'key revoked, but the revocation epoch could not be set after the commit: processes that read the key in between trust it for up to a minute'));
    return out;
  }

  private async newEpoch(): Promise<void> {
    if (this.cache) await this.cache.redis.set(this.cache.epochKey, randomBytes(12).toString('base64url'));
  }

  /** A key's row, kept or read from Postgres (see the header). */
  private async row(id: string): Promise<Row | undefined> {
    let epoch: string | null | undefined;
    if (this.cache) {
      // A Redis that is down queues commands rather than failing them: ask Postgres after a moment.
      epoch = await Promise.race([this.cache.redis.get(this.cache.epochKey), new Promise<undefined>((r) => setTimeout(() => r(undefined), EPOCH_WAIT_MS).unref())]).catch(() => undefined);
      if (epoch === undefined || epoch !== this.epoch) {
        this.kept.clear();
        this.epoch = epoch ?? null;
      }
      const hit = this.kept.get(id);
      if (hit && epoch !== undefined && hit.at > Date.now() - KEEP_MS) return hit.row;
    }
    const row = (await keyWithDigest(this.pool, id)) ?? undefined;
    // Kept only if no revocation was seen since this request read the epoch.
    if (row && epoch !== undefined && epoch === this.epoch) {
      if (this.kept.size >= KEEP_MAX) this.kept.clear();
      this.kept.set(id, { row, at: Date.now() });
    }
    return row;
  }

  /** The person a key names, or CredentialRefused saying why not. */
  async verify(token: string): Promise<Principal> {
    const m = KEY_RE.exec(token);
    if (!m) throw new CredentialRefused('invalid key');
    const row = await this.row(m[1]!);
    // Compared even when there is no such id, so timing does not tell ids apart.
    const match = timingSafeEqual(sha256(m[2]!), row?.secret_sha256 ?? Buffer.alloc(32));
    if (!row || !match) throw new CredentialRefused('invalid key');
    const v = toView(row, this.clock.now());
    if (v.state === 'revoked') throw new CredentialRefused(`key ${v.id} was revoked`);
    if (v.state === 'expired') throw new CredentialRefused(`key ${v.id} expired at ${v.expiresAt}`);
    this.touch(v.id);
    return { name: v.user, role: v.role, via: `key:${v.id}`, projects: v.projects };
  }

  /** Record the key's use, at most once a minute per key per process; a failure only logs. */
  private touch(id: string): void {
    const now = Date.now();
    if ((this.touched.get(id) ?? 0) > now - TOUCH_MS) return;
    this.touched.set(id, now);
    if (this.touched.size > 10_000) this.touched.clear();
    touchKey(this.pool, id).catch((err: unknown) => this.log.warn({ err, keyId: id }, 'could not record a key’s last use'));
  }
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

function toView(r: KeyRow, now: number): KeyView {
  const state = r.revoked_at ? 'revoked' : r.expires_at && r.expires_at.getTime() <= now ? 'expired' : 'active';
  return {
    id: r.id, user: r.person, role: r.role, projects: r.projects,
    createdAt: r.created_at.toISOString(), createdBy: r.created_by, expiresAt: iso(r.expires_at),
    revokedAt: iso(r.revoked_at), revokedBy: r.revoked_by, lastUsedAt: iso(r.last_used_at), state,
  };
}
