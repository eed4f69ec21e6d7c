/**
 * Where the gatekeeper may send requests (webhook deliveries): the class of
 * every address it would connect to, and whether that class is allowed.
 *
 * Why: whoever holds the admin token chooses webhook URLs, and the delivery
 * worker POSTs from inside the deployment's network. Unchecked,
 * http://169.254.169.254/ reaches the cloud's credential service (SSRF) and
 * http://10.0.0.1/ reaches services never meant to be public.
 *
 * Two tiers:
 *  - always refused, whatever WEBHOOK_ALLOWED_TARGETS says: cloud metadata
 *    (addresses and names), link-local, unspecified, multicast, broadcast and
 *    the other reserved ranges. Nothing legitimate receives webhooks there.
 *  - refused unless WEBHOOK_ALLOWED_TARGETS allows them (src/net/allowed.ts):
 *    loopback, private (RFC 1918, unique local), shared (CGNAT), benchmarking,
 *    and `localhost` / `*.localhost` names.
 * An IPv6 address that carries an IPv4 one (mapped ::ffff:a.b.c.d, translated
 * ::ffff:0:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16)
 * is judged as that IPv4 address, for its class and for the allow list alike:
 * the packets end up there.
 */
import { cidrWithin, formatIp, inCidr, parseCidr, type Cidr, type IpBytes } from './ip.ts';

export type TargetKind = 'metadata' | 'link-local' | 'unspecified' | 'multicast' | 'broadcast' | 'reserved' | 'loopback' | 'private';

/** Kinds no setting can allow. */
export const ALWAYS_REFUSED: ReadonlySet<TargetKind> = new Set(['metadata', 'link-local', 'unspecified', 'multicast', 'broadcast', 'reserved']);

/** What WEBHOOK_ALLOWED_TARGETS allows besides public addresses (see src/net/allowed.ts). */
export interface AllowedTargets {
  readonly cidrs: readonly Cidr[];
  /** Lower case, no trailing dot. */
  readonly names: readonly string[];
}

export const NO_TARGETS: AllowedTargets = Object.freeze({ cidrs: Object.freeze([]), names: Object.freeze([]) });

export interface Classified {
  kind: TargetKind;
  /** For people: "a link-local address (cloud metadata)". */
  label: string;
}

/** A refused target, as data; `TargetRefused` renders it. */
export interface Refusal extends Classified {
  /** The URL's host, as written there (never its path). */
  host: string;
  /** The address judged, when it is not the host itself (resolved, or the IPv4 inside an IPv6). */
  address?: string;
  /** "resolves to 127.0.0.1" and the like. */
  seenAs?: string;
  always: boolean;
}

/** A RangeError: the API answers it with a 400. */
export class TargetRefused extends RangeError {
  constructor(readonly refusal: Refusal) {
    const how = refusal.always ? 'always, whatever WEBHOOK_ALLOWED_TARGETS says' : 'WEBHOOK_ALLOWED_TARGETS does not allow it';
    super(`webhook url host ${refusal.host} ${refusal.seenAs ? `${refusal.seenAs}, ` : 'is '}${refusal.label}; refused (${how})`);
  }
}

const range = (cidr: string, kind: TargetKind, label: string) => ({ cidr: parseCidr(cidr) as Cidr, kind, label });

// First match wins: exact metadata addresses before the ranges that hold them.
const METADATA = [
  range('169.254.169.254/32', 'metadata', 'a link-local address (cloud metadata)'),
  range('169.254.170.2/32', 'metadata', 'a link-local address (AWS ECS task metadata)'),
  range('169.254.170.23/32', 'metadata', 'a link-local address (AWS EKS pod identity)'),
  range('fd00:ec2::254/128', 'metadata', 'a cloud metadata address (AWS, IPv6)'),
  range('fd00:ec2::23/128', 'metadata', 'a cloud metadata address (AWS EKS pod identity, IPv6)'),
  range('100.100.100.200/32', 'metadata', 'a cloud metadata address (Alibaba Cloud)'),
  range('192.0.0.192/32', 'metadata', 'a cloud metadata address (Oracle Cloud)'),
];
const V4 = [
  range('0.0.0.0/8', 'unspecified', 'an unspecified ("this network") address'),
  range('10.0.0.0/8', 'private', 'a private address'),
  range('100.64.0.0/10', 'private', 'a shared (carrier-grade NAT) address'),
  range('127.0.0.0/8', 'loopback', 'a loopback address'),
  range('169.254.0.0/16', 'link-local', 'a link-local address'),
  range('172.16.0.0/12', 'private', 'a private address'),
  range('192.0.0.0/24', 'reserved', 'an IETF protocol address (reserved)'),
  range('192.0.2.0/24', 'reserved', 'a documentation address (reserved)'),
  range('192.88.99.0/24', 'reserved', 'a 6to4 relay anycast address (reserved)'),
  range('192.168.0.0/16', 'private', 'a private address'),
  range('198.18.0.0/15', 'private', 'a benchmarking address (private)'),
  range('198.51.100.0/24', 'reserved', 'a documentation address (reserved)'),
  range('203.0.113.0/24', 'reserved', 'a documentation address (reserved)'),
  range('224.0.0.0/4', 'multicast', 'a multicast address'),
  range('255.255.255.255/32', 'broadcast', 'the broadcast address'),
  range('240.0.0.0/4', 'reserved', 'a reserved address (240.0.0.0/4)'),
];
const V6 = [
  range('::/128', 'unspecified', 'the unspecified address'),
  range('::1/128', 'loopback', 'a loopback address'),
  range('64:ff9b:1::/48', 'private', 'a local-use NAT64 address (private)'),
  range('100::/64', 'reserved', 'a discard-only address (reserved)'),
  range('2001::/32', 'reserved', 'a Teredo tunnel address (reserved)'),
  range('2001:db8::/32', 'reserved', 'a documentation address (reserved)'),
  range('3fff::/20', 'reserved', 'a documentation address (reserved)'),
  range('fc00::/7', 'private', 'a unique local (private) address'),
  range('fe80::/10', 'link-local', 'a link-local address'),
  range('fec0::/10', 'private', 'a site-local address (deprecated; private)'),
  range('ff00::/8', 'multicast', 'a multicast address'),
];
const GLOBAL_UNICAST = parseCidr('2000::/3') as Cidr;

// IPv6 forms that carry an IPv4 address, and where its 4 bytes sit.
const EMBEDDING: { cidr: Cidr; name: string; at: number }[] = [
  { cidr: parseCidr('::ffff:0:0/96') as Cidr, name: 'IPv4-mapped IPv6', at: 12 },
  { cidr: parseCidr('::ffff:0:0:0/96') as Cidr, name: 'IPv4-translated IPv6', at: 12 },
  { cidr: parseCidr('::/96') as Cidr, name: 'IPv4-compatible IPv6', at: 12 },
  { cidr: parseCidr('64:ff9b::/96') as Cidr, name: 'NAT64 IPv6', at: 12 },
  { cidr: parseCidr('2002::/16') as Cidr, name: '6to4 IPv6', at: 2 },
];

/** The IPv4 address an IPv6 one carries (and the form's name), or the address itself. */
export function judgedAs(b: IpBytes): { bytes: IpBytes; form?: string } {
  if (b.length === 16 && !inCidr(b, V6[0]!.cidr) && !inCidr(b, V6[1]!.cidr)) {
    const e = EMBEDDING.find((x) => inCidr(b, x.cidr));
    if (e) return { bytes: b.slice(e.at, e.at + 4), form: e.name };
  }
  return { bytes: b };
}

/** The class of an address (already judgedAs), or null for a public one. */
export function classify(b: IpBytes): Classified | null {
  const hit = [...METADATA, ...(b.length === 4 ? V4 : V6)].find((r) => inCidr(b, r.cidr));
  if (hit) return { kind: hit.kind, label: hit.label };
  if (b.length === 16 && !inCidr(b, GLOBAL_UNICAST)) return { kind: 'reserved', label: 'an address outside IPv6 global unicast (reserved)' };
  return null;
}

/** The label of an always-refused range that holds all of `c`, or null. */
export function alwaysRefusedHolding(c: Cidr): string | null {
  const hit = [...METADATA, ...V4, ...V6].find((r) => ALWAYS_REFUSED.has(r.kind) && cidrWithin(c, r.cidr));
  return hit?.label ?? null;
}

/** Host names of cloud metadata services (several resolve to public addresses). */
export const METADATA_NAMES: ReadonlySet<string> = new Set([
  'metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal',
  'metadata.tencentyun.com', 'metadata.packet.net', 'metadata.platformequinix.com',
]);

/** A host name as compared: lower case, one trailing dot dropped. */
export const nameKey = (name: string): string => name.toLowerCase().replace(/\.$/, '');

/** Refusal of a host name by the name alone (metadata, localhost), or null. */
export function checkName(host: string, allowed: AllowedTargets): Refusal | null {
  const key = nameKey(host);
  if (METADATA_NAMES.has(key)) return { host, kind: 'metadata', label: 'a cloud metadata host name', always: true };
  if ((key === 'localhost' || key.endsWith('.localhost')) && !allowed.names.includes(key)) {
    return { host, kind: 'loopback', label: 'a loopback host name', always: false };
  }
  return null;
}

/**
 * Refusal of an address `host` is or resolved to, or null. `resolved`: the
 * address came from resolving the name `host`, which the allow list may name
 * (then its private and loopback addresses pass; the always-refused never do).
 */
export function checkAddress(host: string, b: IpBytes, allowed: AllowedTargets, resolved = false): Refusal | null {
  const { bytes, form } = judgedAs(b);
  const c = classify(bytes);
  if (c === null) return null;
  const always = ALWAYS_REFUSED.has(c.kind);
  if (!always && (allowed.cidrs.some((x) => inCidr(bytes, x)) || (resolved && allowed.names.includes(nameKey(host))))) return null;
  const address = formatIp(bytes);
  const seen = form ? `${address} in ${form}` : address;
  return { ...c, host, always, ...(resolved ? { address, seenAs: `resolves to ${seen}` } : form ? { address, seenAs: `is ${seen}` } : {}) };
}
