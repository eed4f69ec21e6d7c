/**
 * One webhook POST over node:http / node:https.
 *
 * Not fetch: fetch resolves the host itself and takes no lookup function, so
 * the egress check could only run before it, on an answer the connection
 * need not use (DNS rebinding). Here the caller's `lookup` (src/net/lookup.ts)
 * is the only resolution. Like the fetch call it replaces: redirects are not
 * followed (http.request never does; a 3xx is the caller's failure), the
 * answer's body is discarded, and the whole request, answer headers
 * included, is bounded by `timeoutMs`.
 *
 * Connections are kept alive in the caller's own agents, never Node's global
 * one: a pooled socket was checked by the lookup that opened it, so it must
 * not be shared with code that checks differently (or not at all).
 */
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { bareHost } from '../net/lookup.ts';

export interface Agents {
  http: http.Agent;
  https: https.Agent;
}

export const createAgents = (): Agents => ({ http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) });

/** No answer (headers) within the time limit. */
export class NoAnswer extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
  }
}

export interface PostRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  lookup: LookupFunction;
  agents: Agents;
}

/** POST `body`; resolves with the answer's status. */
export function post(r: PostRequest): Promise<number> {
  const tls = r.url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(
      {
        method: 'POST',
        hostname: bareHost(r.url.hostname),
        port: r.url.port || undefined,
        path: `${r.url.pathname}${r.url.search}`,
        headers: { ...r.headers, 'content-length': String(Buffer.byteLength(r.body)) },
        agent: tls ? r.agents.https : r.agents.http,
        lookup: r.lookup,
      },
      (res) => {
        // Drained, not read, so the connection can serve the next delivery;
        // the timer below still ends a body that never finishes.
        res.on('error', () => {}).resume();
        resolve(res.statusCode ?? 0);
      },
    );
    const timer = setTimeout(() => req.destroy(new NoAnswer(r.timeoutMs)), r.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(r.body);
  });
}
