/**
 * IP addresses as bytes, and CIDR ranges over them, for the egress check
 * (src/net/egress.ts).
 *
 * Why bytes and our own parser: an address must be judged by what a socket
 * will connect to, whatever its spelling. IPv4 takes every spelling that
 * inet_aton and the WHATWG URL parser take (decimal 2852039166, hex
 * 0xa9fea9fe, octal 0251.0376.0251.0376, short 127.1, a trailing dot), so a
 * host that skipped URL normalisation is still judged right. IPv6 takes the
 * textual forms of RFC 4291 (`::`, an embedded dotted IPv4, brackets, a zone
 * id, which is ignored). node:net's BlockList could match ranges, but the
 * rules that look inside an IPv6 address for an IPv4 one (mapped, NAT64,
 * 6to4) need the bytes anyway.
 */
import { isIPv6 } from 'node:net';

/** 4 bytes (IPv4) or 16 (IPv6), network order. */
export type IpBytes = Uint8Array;

export interface Cidr {
  readonly bytes: IpBytes;
  /** Leading bits that must match. */
  readonly prefix: number;
}

/** One IPv4 part as inet_aton reads it: 0x… hex, 0… octal, else decimal. */
function v4Part(p: string): number | null {
  if (/^0x[0-9a-f]*$/i.test(p)) return p.length === 2 ? 0 : parseInt(p.slice(2), 16);
  if (/^0[0-7]+$/.test(p)) return parseInt(p, 8);
  if (/^(0|[1-9][0-9]*)$/.test(p)) return Number(p);
  return null;
}

/** IPv4 in any inet_aton / WHATWG spelling, or null. */
export function parseIPv4(text: string): IpBytes | null {
  const parts = text.split('.');
  if (parts.length > 1 && parts.at(-1) === '') parts.pop();
  if (parts.length < 1 || parts.length > 4) return null;
  const nums = parts.map(v4Part);
  if (nums.some((n) => n === null)) return null;
  const last = nums.pop()!;
  // The last part fills the bytes the others left: 127.1 is 127.0.0.1.
  if (nums.some((n) => n! > 255) || last > 256 ** (4 - nums.length) - 1) return null;
  let value = last;
  nums.forEach((n, i) => (value += n! * 256 ** (3 - i)));
  return Uint8Array.of(value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255);
}

/** Exactly a.b.c.d, each 0-255 without leading zeros: how the settings write IPv4. */
export const isDottedDecimal = (text: string): boolean =>
  /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/.test(text);

/** IPv6 (brackets and a %zone allowed, the zone ignored), or null. */
export function parseIPv6(text: string): IpBytes | null {
  const bare = text.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (!isIPv6(bare)) return null;
  const out = new Uint8Array(16);
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const gs = s.split(':');
    const tail = gs.at(-1)!;
    if (!tail.includes('.')) return gs.map((g) => parseInt(g, 16));
    const v4 = parseIPv4(tail)!; // isIPv6 accepted it: a dotted quad
    return [...gs.slice(0, -1).map((g) => parseInt(g, 16)), (v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
  };
  const [head, rest] = bare.split('::') as [string, string | undefined];
  const hi = groups(head);
  const lo = rest === undefined ? [] : groups(rest);
  const all = [...hi, ...new Array<number>(8 - hi.length - lo.length).fill(0), ...lo];
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 255;
  });
  return out;
}

/** An IPv4 or IPv6 address in any spelling above, or null (a host name). */
export const parseIp = (text: string): IpBytes | null => parseIPv4(text) ?? parseIPv6(text);

export function formatIp(b: IpBytes): string {
  if (b.length === 4) return b.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16));
  // Shorten the longest run of zero groups (RFC 5952), as URLs and logs show them.
  const joined = `:${groups.join(':')}:`;
  const runs = joined.match(/(:0)+:/g) ?? [];
  const longest = runs.reduce((a, r) => (r.length > a.length ? r : a), '');
  return (longest.length > 3 ? joined.replace(longest, '::') : joined).replace(/^:(?!:)|(?<!:):$/g, '');
}

/** "a.b.c.d/n" or "x::/n" (strict spellings), or a reason it is not one. */
export function parseCidr(text: string): Cidr | string {
  const [addr, bits, extra] = text.split('/');
  const bytes = addr !== undefined && (isDottedDecimal(addr) ? parseIPv4(addr) : addr.includes(':') ? parseIPv6(addr) : null);
  if (!bytes || extra !== undefined) return 'is not an address or CIDR range (write IPv4 as a.b.c.d, e.g. 10.0.0.0/8, fd00::/8)';
  const max = bytes.length * 8;
  if (bits !== undefined && !/^(0|[1-9][0-9]*)$/.test(bits)) return `has a prefix length that is not a whole number from 0 to ${max}`;
  const prefix = bits === undefined ? max : Number(bits);
  if (prefix > max) return `has a prefix length over ${max}`;
  const network = mask(bytes, prefix);
  if (network.some((byte, i) => byte !== bytes[i])) return `has bits set after the first ${prefix}; did you mean ${formatIp(network)}/${prefix}?`;
  return { bytes, prefix };
}

function mask(b: IpBytes, prefix: number): IpBytes {
  return b.map((byte, i) => (i * 8 >= prefix ? 0 : i * 8 + 8 <= prefix ? byte : byte & (0xff << (8 - (prefix - i * 8))) & 0xff));
}

/** True if `b` is in `c` (an IPv4 address is never in an IPv6 range, nor the reverse). */
export function inCidr(b: IpBytes, c: Cidr): boolean {
  if (b.length !== c.bytes.length) return false;
  const whole = c.prefix >> 3;
  for (let i = 0; i < whole; i++) if (b[i] !== c.bytes[i]) return false;
  const rest = c.prefix & 7;
  return rest === 0 || ((b[whole]! ^ c.bytes[whole]!) & (0xff << (8 - rest)) & 0xff) === 0;
}

/** True if every address of `inner` is in `outer`. */
export const cidrWithin = (inner: Cidr, outer: Cidr): boolean => inner.prefix >= outer.prefix && inCidr(inner.bytes, outer);
