/**
 * Group commit: one call in flight; whatever arrives meanwhile goes out
 * together as the next call, in arrival order. An idle system pays no delay
 * (a request is sent at once); a busy one sends fewer, larger calls, each
 * request still decided on its own inside the script.
 *
 * Why (measured with INFO cpu and --cpu-prof over 20,000 jobs, see
 * docs/benchmarks.md): a Redis call costs about 8 us of Redis CPU
 * before a script does anything, and a call per job per step cost the
 * gatekeeper about 20 us of Redis and 25 us of Node CPU per job over a plain
 * relay. Allowing 2 or 4 calls in flight made batches smaller and every job
 * dearer, so one it is; it also keeps decisions in arrival order.
 */
export class GroupCommit<Req, Res> {
  private queue: { req: Req; resolve: (r: Res) => void; reject: (e: unknown) => void }[] = [];
  private inFlight = false;

  constructor(
    private readonly send: (batch: Req[]) => Promise<Res[]>,
    private readonly maxBatch = 128,
  ) {}

  submit(req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      if (!this.inFlight) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.inFlight = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        const results = await this.send(batch.map((b) => b.req));
        batch.forEach((b, i) => b.resolve(results[i]!));
      } catch (err) {
        // The whole call failed (connection lost...): each caller decides
        // what to do; the gatekeeper retries, and since every step is
        // idempotent a call that did partly apply is harmless.
        for (const b of batch) b.reject(err);
      }
    }
    this.inFlight = false;
  }
}
