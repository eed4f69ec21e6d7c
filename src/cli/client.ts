/** The CLI's HTTP client for /api/v1; errors carry the API's own message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class ApiClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly actor: string,
  ) {}

  async call(method: string, path: string, body?: unknown): Promise<any> {
    const res = await this.request(method, path, body);
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: reported below */
    }
    if (!res.ok) {
      const message = (json as { error?: { message?: string } } | null)?.error?.message ?? `HTTP ${res.status}`;
      throw new ApiError(res.status, message);
    }
    return json;
  }

  /** A GET whose answer is streamed (exports): the body as it arrives, or an ApiError. */
  async stream(path: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.request('GET', path);
    if (!res.ok) {
      const json = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
      throw new ApiError(res.status, json?.error?.message ?? `HTTP ${res.status}`);
    }
    return res.body!;
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    if (!this.token) throw new ApiError(401, 'no token: set GATEKEEPER_TOKEN or pass --token');
    try {
      return await fetch(`${this.baseUrl.replace(/\/$/, '')}/api/v1${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          'content-type': 'application/json',
          'x-gatekeeper-actor': this.actor.replace(/[^A-Za-z0-9._@-]/g, '_').slice(0, 64) || 'cli',
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new Error(`cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
  }
}
