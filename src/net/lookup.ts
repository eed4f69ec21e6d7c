/**
 * Resolving a webhook host with the egress check (src/net/egress.ts) in the
 * path, at creation and at connect time.
 *
 * Why a lookup function rather than a check before the request: a check that
 * resolves the name and then lets the HTTP client resolve it again is fooled
 * by a DNS server that answers a public address the first time and an
 * internal one the second (DNS rebinding). Given to http.request as `lookup`,
 * `checkedLookup` is the only resolution: the addresses it passes are the
 * ones the socket may connect to. Every address must pass, not just the
 * first: the socket may try any of them (happy eyeballs).
 *
 * Node never calls `lookup` for an IP literal, so `checkLiteral` judges those
 * before the request.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { parseIp } from './ip.ts';
import { checkAddress, checkName, TargetRefused, type AllowedTargets } from './egress.ts';

/** How a name becomes addresses: the system resolver, or a test's own (a DNS server that lies). */
export type Resolve = (host: string) => Promise<LookupAddress[]>;
export const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

/** A URL's hostname as sockets take it: IPv6 without brackets. */
export const bareHost = (hostname: string): string => hostname.replace(/^\[(.*)\]$/, '$1');

/** Judge an IP-literal host (throws TargetRefused if refused); false for a host name, which is judged when resolved. */
export function checkLiteral(hostname: string, allowed: AllowedTargets): boolean {
  const bytes = parseIp(hostname);
  if (!bytes) return false;
  const refused = checkAddress(hostname, bytes, allowed);
  if (refused) throw new TargetRefused(refused);
  return true;
}

/** Resolve `host` and judge it by name and every address; throws TargetRefused if any is refused. */
export async function resolveChecked(host: string, allowed: AllowedTargets, resolve: Resolve = systemResolve): Promise<LookupAddress[]> {
  const byName = checkName(host, allowed);
  if (byName) throw new TargetRefused(byName);
  const addrs = await resolve(host);
  if (addrs.length === 0) throw Object.assign(new Error(`${host} has no address`), { code: 'ENOTFOUND' });
  for (const a of addrs) {
    const bytes = parseIp(a.address);
    if (!bytes) throw new Error(`${host} resolved to "${a.address.slice(0, 60)}", which is not an address`);
    const refused = checkAddress(host, bytes, allowed, true);
    if (refused) throw new TargetRefused(refused);
  }
  return addrs;
}

/**
 * At creation: judge the URL's host now. A name that does not resolve (yet)
 * passes: refusing it would add nothing, as delivery resolves and judges it
 * again at connect time, and its record may simply not exist yet.
 */
export async function checkTarget(hostname: string, allowed: AllowedTargets, resolve: Resolve = systemResolve): Promise<void> {
  if (checkLiteral(hostname, allowed)) return;
  try {
    await resolveChecked(hostname, allowed, resolve);
  } catch (err) {
    if (err instanceof TargetRefused) throw err;
  }
}

/**
 * A `lookup` for http.request / net.connect that resolves, judges every
 * address, and hands the socket only judged ones. Node 20 calls it with
 * `{ all: true }` when it may try several addresses (autoSelectFamily), and
 * without for one; both answer shapes are given.
 */
export function checkedLookup(allowed: AllowedTargets, resolve: Resolve = systemResolve): LookupFunction {
  return (hostname, options, callback) => {
    const f = options.family;
    const family = f === 4 || f === 'IPv4' ? 4 : f === 6 || f === 'IPv6' ? 6 : 0;
    resolveChecked(hostname, allowed, resolve).then(
      (all) => {
        const addrs = family === 0 ? all : all.filter((a) => a.family === family);
        if (addrs.length === 0) callback(Object.assign(new Error(`${hostname} has no IPv${family} address`), { code: 'ENOTFOUND' }), '');
        else if (options.all) callback(null, addrs);
        else callback(null, addrs[0]!.address, addrs[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };
}
