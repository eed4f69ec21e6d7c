/**
 * A real OpenID Connect provider (the `oidc-provider` package, the one most
 * Node identity servers are built on) on a loopback port, for the OIDC suite.
 * Each person is a client of it: a client-credentials grant gets an access
 * token (RFC 9068 JWT, signed RS256 with the provider's key) carrying the
 * person's claims, for the resource (audience) asked for. `rotate` swaps the
 * provider's signing key for a new one (a new kid) at the same address.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

export interface Issuer {
  /** http://127.0.0.1:<port>, as its tokens' `iss` reads. */
  url: string;
  /** The private signing key (a second issuer may sign with the same one). */
  key: JWK;
  /** An access token for `person` (one of the people it was started with), for `resource`. */
  token(person: string, resource?: string): Promise<string>;
  /** A new signing key with a new kid; the old one is no longer published. */
  rotate(): Promise<void>;
  close(): Promise<void>;
}

export const AUDIENCE = 'urn:gpu-gatekeeper';
/** Seconds an access token lasts (the provider's, stated here so tests can step past it). */
export const TOKEN_TTL_S = 600;

const secretOf = (person: string) => `${person}-client-secret-0123456789`;

async function newKey(kid: string): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

/** Start a provider whose tokens for each person carry `people[person]` as claims (on `port`: one stopped before comes back). */
export async function startIssuer(people: Record<string, Record<string, unknown>>, opts: { key?: JWK; port?: number } = {}): Promise<Issuer> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let generation = 1;
  let key = opts.key ?? (await newKey(`k${generation}`));
  const provider = (signingKey: JWK) =>
    new Provider(url, {
      jwks: { keys: [signingKey] },
      clients: Object.keys(people).map((p) => ({ client_id: p, client_secret: secretOf(p), grant_types: ['client_credentials'], redirect_uris: [], response_types: [] })),
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => AUDIENCE,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => ({ scope: '', audience: resource, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
        },
      },
      ttl: { ClientCredentials: TOKEN_TTL_S },
      extraTokenClaims: (_ctx, token) => people[(token as { clientId: string }).clientId],
    });
  let current = provider(key);
  server.on('request', (req, res) => current.callback()(req, res));
  return {
    url,
    get key() {
      return key;
    },
    async token(person, resource = AUDIENCE) {
      const res = await fetch(`${url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${person}:${secretOf(person)}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource }),
      });
      const body = (await res.json()) as { access_token?: string };
      if (!body.access_token) throw new Error(`the provider gave no token for ${person}: ${JSON.stringify(body)}`);
      return body.access_token;
    },
    async rotate() {
      generation += 1;
      key = await newKey(`k${generation}`);
      current = provider(key);
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
