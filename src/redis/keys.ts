/**
 * Every Redis key gpu-gatekeeper owns, built in one place. All of them carry
 * the same hash tag ({<queue prefix>}), so any one script's keys live in one
 * Redis Cluster slot whatever scopes a job touches. The cost, accepted: the
 * accounting keys of one deployment sit on one shard (they are small and hot;
 * measured per call in the benchmark).
 */
export class Keys {
  readonly base: string;

  constructor(queuePrefix: string) {
    this.base = `gk:{${queuePrefix}}`;
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

  /** Definition hash of one scope base: limit, policy, grace, period, rollover, rolloverCap, setAt. */
  def(scopeBase: string): string {
    return `${this.base}:def:${scopeBase}`;
  }

  /** Zset: held jobs waiting in line for one scope base, scored by submission order. */
  line(scopeBase: string): string {
    return `${this.base}:line:${scopeBase}`;
  }

  /** Stream of events (see src/events/types.ts); capped, stored in Postgres by the event store. */
  get events(): string {
    return `${this.base}:events`;
  }

  /** Set of exempt job types: admitted, tracked, never counted. */
  get exemptTypes(): string {
    return `${this.base}:exempt-types`;
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

  /** What scripts that build keys themselves prepend (all but settle.lua). */
  get prefix(): string {
    return `${this.base}:`;
  }
}
