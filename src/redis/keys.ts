/**
 * Every Redis key gpu-gatekeeper owns, built in one place. All of them share
 * one hash tag, so any one script's keys live in one Redis Cluster slot
 * whatever scopes a job touches. The cost, accepted: the accounting keys of
 * one deployment sit on one shard (they are small and hot; measured per call
 * in the benchmark).
 */
export class Keys {
  readonly base: string;

  /**
   * `cluster`: the keys live on a Redis Cluster. There the queue prefix
   * carries a hash tag (config refuses one without) and the base reuses it:
   * `{bull}` gives `gk:{bull}`, the slot of BullMQ's `{bull}:<queue>:...`
   * keys. Wrapping it again (`gk:{{bull}}`, the single-server form) would
   * hash on `{bull`: one slot still, but another one than the queues', and
   * the reconciler reads both in one pipeline, which an ioredis Cluster
   * sends to one node only. On one server a tag means nothing, and those
   * names stay as they were (counters already there stay found; prefixes
   * `bull` and `{bull}` on one server never share keys).
   */
  constructor(queuePrefix: string, cluster = false) {
    if (cluster && hashTag(queuePrefix) === null) {
      throw new RangeError(`on Redis Cluster the queue prefix must carry a hash tag such as {bull}, got "${queuePrefix}"`);
    }
    this.base = cluster ? `gk:${queuePrefix}` : `gk:{${queuePrefix}}`;
  }

  /**
   * Counter hash of one scope in one period (its id is '<base>@<period label>',
   * or the base for one-off scopes): used, reserved, exemptUsed,
   * exemptReserved, carry, adjust (GPU-ms). See lua/includes/scopes.lua.
   */
  scope(scopeId: string): string {
    return `${this.base}:scope:${scopeId}`;
  }

  /** Set of every counter id with used/reserved amounts (the drift audit reads them all at once). */
  get counters(): string {
    return `${this.base}:counters`;
  }

  /** Definition hash of one scope base: limit, policy, grace, period, rollover, rolloverCap, setAt, thresholds, and c (all of them in one field, see lua/includes/scopes.lua). */
  def(scopeBase: string): string {
    return `${this.base}:def:${scopeBase}`;
  }

  /** Hash of one submission rate limit ('user:<u>', 'project:<p>'): jpm, burst and the bucket's state t (lua/includes/rate.lua). */
  rate(scope: string): string {
    return `${this.base}:rate:${scope}`;
  }

  /** Set of the scopes with a rate limit: reserve reads a bucket only while it is not empty. */
  get rateScopes(): string {
    return `${this.base}:rate-scopes`;
  }

  /** Zset of throttled jobs' ids, scored by due time (epoch ms): waiting on intake for their rate. */
  get throttled(): string {
    return `${this.base}:throttled`;
  }

  /** Zset: held jobs waiting in line for one scope base, scored by submission order. */
  line(scopeBase: string): string {
    return `${this.base}:line:${scopeBase}`;
  }

  /** Stream of events (see src/events/types.ts); capped, stored in Postgres by the event store. */
  get events(): string {
    return `${this.base}:events`;
  }

  /** Stream of audit rows waiting for Postgres: a change made in Redis whose row Postgres refused at that moment. */
  get auditOutbox(): string {
    return `${this.base}:audit-outbox`;
  }

  /** Set of exempt job types, as versions before usage factors kept them (start-up removes it; `factors` holds them as 0). */
  get exemptTypes(): string {
    return `${this.base}:exempt-types`;
  }

  /** Hash: GPU type -> its rate history 'from:unitsMilli:usdMicro;...', ascending ('*': the default rate); lua/includes/pricing.lua. */
  get rates(): string {
    return `${this.base}:rates`;
  }

  /** Hash: project -> the GPU types it may use, comma separated (absent: any); reserve rejects others. */
  get gpuAllowed(): string {
    return `${this.base}:gpu-allowed`;
  }

  /** Hash: job type -> usage factor in thousandths (absent: 1000, counts fully; 0: exempt). */
  get factors(): string {
    return `${this.base}:factors`;
  }

  /** Reservation hash of one job: amount, scopes, state, admittedAt, meta. */
  reservation(jobId: string): string {
    return `${this.base}:res:${jobId}`;
  }

  /** Zset of job ids with an open (unsettled) reservation, scored by admittedAt. */
  get open(): string {
    return `${this.base}:open`;
  }

  /** Stream of ledger entries waiting to be written to Postgres. */
  get ledger(): string {
    return `${this.base}:ledger`;
  }

  /** Zset of one project's held job ids, scored by submission order (for listing). */
  held(project: string): string {
    return `${this.base}:held:${project}`;
  }

  /** Hash: project -> number of its jobs held now (for metrics). */
  get heldCount(): string {
    return `${this.base}:held-count`;
  }

  /** Zset of every held job id, scored by submission order. */
  get allHeld(): string {
    return `${this.base}:held`;
  }

  /** Zset of scope bases whose line may move now (room appeared), scored by the first signal's time: the waker's work (lua/includes/wake.lua). */
  get wake(): string {
    return `${this.base}:wake`;
  }

  /** Hash: GPU cap base -> its definition, 'max|peakMax|days|from|to' (lua/includes/caps.lua); absent while no cap is set. */
  get caps(): string {
    return `${this.base}:caps`;
  }

  /** String: a random value set anew at each key revocation; processes forget the keys they kept when it changes (src/people/api-keys.ts). */
  get keysEpoch(): string {
    return `${this.base}:keys-epoch`;
  }

  /** String: the job ids a /submit form queued (JSON), or 'pending'; its once-token makes a reloaded form queue nothing twice (src/api/submit.ts). */
  submitted(token: string): string {
    return `${this.base}:submitted:${token}`;
  }

  /** What scripts that build keys themselves prepend (all but settle.lua). */
  get prefix(): string {
    return `${this.base}:`;
  }
}

/**
 * The part of `key` Redis Cluster hashes to pick its slot: what lies between
 * the first '{' and the first '}' after it, if that is not empty; null when
 * there is none (the whole key is hashed). Redis looks no further, so `{}{a}`
 * has no tag and `{{a}}` has the tag `{a`.
 */
export function hashTag(key: string): string | null {
  const open = key.indexOf('{');
  if (open < 0) return null;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : null;
}
