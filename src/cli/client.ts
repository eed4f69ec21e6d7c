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
    if (!this.token) throw new ApiError(401, 'no token: set GATEKEEPER_TOKEN or pass --token');
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}/api/v1${path}`, {
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
}
