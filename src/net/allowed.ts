/**
 * WEBHOOK_ALLOWED_TARGETS: the private and loopback targets webhooks may
 * reach (src/net/egress.ts refuses them otherwise).
 *
 * A comma-separated list of
 *  - CIDR ranges or single addresses: 10.0.0.0/8, 127.0.0.1, fd00::/8. IPv4
 *    is written a.b.c.d, as people read it; a range with bits set after its
 *    prefix is refused (10.0.0.1/8 most likely meant 10.0.0.0/8).
 *  - host names, matched exactly (case-insensitive, a trailing dot ignored):
 *    the name may then resolve to private and loopback addresses. No
 *    wildcards: a list of names is what an operator can audit.
 * Entries that only name always-refused targets (169.254.0.0/16, a metadata
 * address or name) are refused with the reason, so nobody believes they are
 * allowed. A wider range that contains some, 0.0.0.0/0 or fd00::/8, is
 * accepted: it allows its private part, and the always-refused part stays
 * refused.
 */
import { cidrWithin, isDottedDecimal, parseCidr, parseIPv4, type Cidr } from './ip.ts';
import { METADATA_NAMES, alwaysRefusedHolding, nameKey, type AllowedTargets } from './egress.ts';

const ALWAYS = 'link-local, cloud metadata, unspecified, multicast, broadcast and reserved targets are always refused and cannot be allowed';
const LABEL = '[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?';
const HOST_NAME = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`);
const MAPPED = parseCidr('::ffff:0:0/96') as Cidr;

/**
 * Every well-formed entry, and what is wrong with the others (config.ts
 * refuses the setting if any). `targets` also keeps well-formed entries
 * that name always-refused targets: they allow nothing.
 */
export function parseAllowedTargets(text: string): { targets: AllowedTargets; problems: string[] } {
  const cidrs: Cidr[] = [];
  const names: string[] = [];
  const problems: string[] = [];
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const shown = `"${entry.slice(0, 100)}"`;
    const addr = entry.split('/')[0]!;
    if (entry.includes('://')) {
      problems.push(`${shown} is a URL; list its host name or address only`);
    } else if (entry.includes('/') || entry.includes(':') || isDottedDecimal(addr)) {
      const c = parseCidr(entry);
      if (typeof c === 'string') problems.push(`${shown} ${c}`);
      else if (cidrWithin(c, MAPPED)) {
        problems.push(`${shown} is an IPv4-mapped IPv6 range; write it as IPv4 (a.b.c.d/n): such addresses are judged as IPv4`);
      } else {
        const always = alwaysRefusedHolding(c);
        if (always) problems.push(`${shown} is ${always}: ${ALWAYS}`);
        cidrs.push(Object.freeze(c));
      }
    } else if (parseIPv4(entry)) {
      problems.push(`${shown} is an IPv4 address in a short, hex or octal spelling; write it as a.b.c.d`);
    } else if (entry.includes('*')) {
      problems.push(`${shown}: wildcards are not supported; list each host name`);
    } else if (!HOST_NAME.test(nameKey(entry))) {
      problems.push(`${shown} is not a host name, address or CIDR range`);
    } else {
      if (METADATA_NAMES.has(nameKey(entry))) problems.push(`${shown} is a cloud metadata host name: ${ALWAYS}`);
      names.push(nameKey(entry));
    }
  }
  return { targets: Object.freeze({ cidrs: Object.freeze(cidrs), names: Object.freeze(names) }), problems };
}
