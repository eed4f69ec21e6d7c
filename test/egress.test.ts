/**
 * The webhook target check (src/net/egress.ts, allowed.ts, lookup.ts) as a
 * table: every spelling of a refused address is refused with its class,
 * through the URL parser and without it; private targets pass only when
 * WEBHOOK_ALLOWED_TARGETS allows them; the always-refused never pass, even
 * when the allow list names them; a host name is judged by every address it
 * resolves to. No sockets and no DNS: resolvers are given, and one that must
 * not be asked throws.
 */
import { describe, expect, it } from 'vitest';
import type { LookupAddress } from 'node:dns';
import { loadConfig } from '../src/config.ts';
import { parseIp } from '../src/net/ip.ts';
import { checkAddress, NO_TARGETS, TargetRefused, type TargetKind } from '../src/net/egress.ts';
import { parseAllowedTargets } from '../src/net/allowed.ts';
import { checkedLookup, checkTarget, type Resolve } from '../src/net/lookup.ts';

/** A resolver that must not be asked: IP literals and names refused by name are judged before any DNS. */
const noDns: Resolve = async (host) => {
  throw new Error(`DNS asked for ${host}`);
};
const answers = (...addresses: string[]): Resolve => async () => addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

/** The refusal `url` meets (null if it passes), judged as creation does. */
async function judge(url: string, allowed = NO_TARGETS, resolve: Resolve = noDns) {
  try {
    await checkTarget(new URL(url).hostname, allowed, resolve);
    return null;
  } catch (err) {
    if (err instanceof TargetRefused) return err.refusal;
    throw err;
  }
}

const PRIVATE_ALLOWED = loadConfig({
  WEBHOOK_ALLOWED_TARGETS: '127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7, localhost, api.localhost',
}).webhookAllowedTargets;
// A list config.ts refuses (test/config.test.ts): built here to show the check never leans on that refusal.
const NAMING_ALWAYS = parseAllowedTargets(
  '169.254.0.0/16, 169.254.169.254, fe80::/10, fd00::/8, 100.64.0.0/10, 0.0.0.0/0, ::/0, 224.0.0.0/4, 240.0.0.0/4, 255.255.255.255, metadata.google.internal, metadata, instance-data',
).targets;

// [case, URL as written, the same host as a raw spelling (null: the URL's), class]
const ALWAYS: [string, string, string | null, TargetKind][] = [
  ['metadata, dotted', 'http://169.254.169.254/latest/meta-data/', null, 'metadata'],
  ['metadata, decimal', 'http://2852039166/', '2852039166', 'metadata'],
  ['metadata, hex', 'http://0xa9fea9fe/', '0xa9fea9fe', 'metadata'],
  ['metadata, octal', 'http://0251.0376.0251.0376/', '0251.0376.0251.0376', 'metadata'],
  ['metadata, short form', 'http://169.254.43518/', '169.254.43518', 'metadata'],
  ['metadata, mixed hex and octal parts', 'http://0xa9.0376.0xa9fe/', '0xa9.0376.0xa9fe', 'metadata'],
  ['metadata, trailing dot', 'http://169.254.169.254./', '169.254.169.254.', 'metadata'],
  ['metadata, IPv4-mapped dotted', 'http://[::ffff:169.254.169.254]/', '::ffff:169.254.169.254', 'metadata'],
  ['metadata, IPv4-mapped hex (how WHATWG writes it)', 'http://[::ffff:a9fe:a9fe]/', '::ffff:a9fe:a9fe', 'metadata'],
  ['metadata, IPv4-mapped in full', 'http://[0:0:0:0:0:ffff:a9fe:a9fe]/', '0:0:0:0:0:ffff:a9fe:a9fe', 'metadata'],
  ['metadata, IPv4-translated', 'http://[::ffff:0:a9fe:a9fe]/', '::ffff:0:169.254.169.254', 'metadata'],
  ['metadata, IPv4-compatible', 'http://[::169.254.169.254]/', '::169.254.169.254', 'metadata'],
  ['metadata, NAT64', 'http://[64:ff9b::169.254.169.254]/', '64:ff9b::a9fe:a9fe', 'metadata'],
  ['metadata, 6to4', 'http://[2002:a9fe:a9fe::1]/', '2002:a9fe:a9fe::1', 'metadata'],
  ['metadata, AWS ECS task', 'http://169.254.170.2/v2/credentials', null, 'metadata'],
  ['metadata, AWS IPv6', 'http://[fd00:ec2::254]/', 'fd00:ec2::254', 'metadata'],
  ['metadata, AWS IPv6 uncompressed', 'http://[fd00:0ec2:0:0:0:0:0:0254]/', 'fd00:0ec2:0000:0000:0000:0000:0000:0254', 'metadata'],
  ['metadata, Alibaba (inside CGNAT)', 'http://100.100.100.200/', null, 'metadata'],
  ['metadata, Alibaba decimal', 'http://1684301000/', '1684301000', 'metadata'],
  ['link-local IPv4', 'http://169.254.1.1/', null, 'link-local'],
  ['link-local IPv4, mapped', 'http://[::ffff:169.254.1.1]/', '::ffff:a9fe:101', 'link-local'],
  ['link-local IPv6', 'http://[fe80::1]/', 'fe80::1%eth0', 'link-local'],
  ['link-local IPv6, upper end', 'http://[febf:ffff::1]/', null, 'link-local'],
  ['unspecified 0.0.0.0', 'http://0.0.0.0/', '0.0.0.0', 'unspecified'],
  ['unspecified, short 0', 'http://0/', '0', 'unspecified'],
  ['unspecified, this network', 'http://0.1.2.3/', null, 'unspecified'],
  ['unspecified ::', 'http://[::]/', '::', 'unspecified'],
  ['unspecified, mapped', 'http://[::ffff:0.0.0.0]/', '::ffff:0:0', 'unspecified'],
  ['multicast IPv4', 'http://224.0.0.1/', null, 'multicast'],
  ['multicast SSDP', 'http://239.255.255.250/', null, 'multicast'],
  ['multicast IPv6', 'http://[ff02::1]/', 'ff02::1', 'multicast'],
  ['multicast, NAT64', 'http://[64:ff9b::e000:1]/', '64:ff9b::224.0.0.1', 'multicast'],
  ['broadcast', 'http://255.255.255.255/', null, 'broadcast'],
  ['broadcast, hex', 'http://0xffffffff/', '0xffffffff', 'broadcast'],
  ['reserved 240/4', 'http://240.0.0.1/', null, 'reserved'],
  ['reserved 240/4, 6to4', 'http://[2002:f000:1::]/', '2002:f000:1::', 'reserved'],
  ['documentation IPv4', 'http://192.0.2.1/', null, 'reserved'],
  ['documentation IPv6', 'http://[2001:db8::1]/', '2001:db8::1', 'reserved'],
  ['Teredo', 'http://[2001:0:4136:e378::1]/', null, 'reserved'],
  ['IPv6 outside global unicast', 'http://[4000::1]/', '4000::1', 'reserved'],
];

const PRIVATE: [string, string, string | null, TargetKind][] = [
  ['loopback', 'http://127.0.0.1:8080/', null, 'loopback'],
  ['loopback, hex', 'http://0x7f000001/', '0x7f000001', 'loopback'],
  ['loopback, decimal', 'http://2130706433/', '2130706433', 'loopback'],
  ['loopback, octal', 'http://0177.0.0.1/', '0177.0.0.1', 'loopback'],
  ['loopback, short', 'http://127.1/', '127.1', 'loopback'],
  ['loopback, trailing dot', 'http://127.0.0.1./', '127.0.0.1.', 'loopback'],
  ['loopback elsewhere in 127/8', 'http://127.255.0.9/', null, 'loopback'],
  ['loopback IPv6', 'http://[::1]/', '::1', 'loopback'],
  ['loopback, mapped', 'http://[::ffff:127.0.0.1]/', '::ffff:7f00:1', 'loopback'],
  ['private 10/8', 'http://10.0.0.1/', '012.0.0.1', 'private'],
  ['private 172.16/12', 'http://172.31.255.254/', null, 'private'],
  ['private 192.168/16', 'http://192.168.1.1/', '0xc0a80101', 'private'],
  ['shared CGNAT 100.64/10', 'http://100.64.0.1/', null, 'private'],
  ['private, mapped', 'http://[::ffff:10.1.2.3]/', '::ffff:a01:203', 'private'],
  ['unique local fc00::/7', 'http://[fd12:3456::1]/', 'fd12:3456::1', 'private'],
  ['unique local, low end', 'http://[fc00::1]/', 'fc00::1', 'private'],
  ['localhost name', 'http://localhost:3000/', null, 'loopback'],
  ['localhost name, upper case and trailing dot', 'http://LOCALHOST./', null, 'loopback'],
  ['a *.localhost name', 'http://api.localhost/', null, 'loopback'],
];

const PUBLIC = ['http://93.184.216.34/', 'https://1.1.1.1/', 'http://[2606:4700::1111]/', 'http://[::ffff:93.184.216.34]/', 'http://[64:ff9b::5db8:d822]/', 'http://[2002:5db8:d822::1]/', 'http://100.128.0.1/', 'http://172.32.0.1/'];

describe('webhook target classes', () => {
  it.each(ALWAYS)('always refused: %s (%s)', async (_case, url, raw, kind) => {
    for (const allowed of [NO_TARGETS, PRIVATE_ALLOWED, NAMING_ALWAYS]) {
      expect(await judge(url, allowed)).toMatchObject({ kind, always: true, host: new URL(url).hostname });
    }
    // The classifier itself reads the spelling, without the URL parser's help.
    const host = raw ?? new URL(url).hostname;
    expect(checkAddress(host, parseIp(host)!, NAMING_ALWAYS)).toMatchObject({ kind, always: true });
  });

  it.each(PRIVATE)('refused unless allowed: %s (%s)', async (_case, url, raw, kind) => {
    expect(await judge(url)).toMatchObject({ kind, always: false });
    // A listed localhost name is resolved (here: as /etc/hosts would) and its addresses judged.
    expect(await judge(url, PRIVATE_ALLOWED, answers('127.0.0.1', '::1'))).toBeNull();
    if (raw) {
      expect(checkAddress(raw, parseIp(raw)!, NO_TARGETS)).toMatchObject({ kind, always: false });
      expect(checkAddress(raw, parseIp(raw)!, PRIVATE_ALLOWED)).toBeNull();
    }
  });

  it.each(PUBLIC)('public: %s passes with no allow list', async (url) => {
    expect(await judge(url)).toBeNull();
  });

  it('names each refusal for people: host, what it is, and whether a setting could allow it', async () => {
    const message = async (url: string, allowed = NO_TARGETS) => {
      const err = await checkTarget(new URL(url).hostname, allowed, noDns).catch((e: Error) => e);
      return (err as Error).message;
    };
    expect(await message('http://169.254.169.254/')).toBe('webhook url host 169.254.169.254 is a link-local address (cloud metadata); refused (always, whatever WEBHOOK_ALLOWED_TARGETS says)');
    expect(await message('http://[::ffff:169.254.169.254]/', NAMING_ALWAYS)).toBe(
      'webhook url host [::ffff:a9fe:a9fe] is 169.254.169.254 in IPv4-mapped IPv6, a link-local address (cloud metadata); refused (always, whatever WEBHOOK_ALLOWED_TARGETS says)',
    );
    expect(await message('http://10.0.0.1/')).toBe('webhook url host 10.0.0.1 is a private address; refused (WEBHOOK_ALLOWED_TARGETS does not allow it)');
    expect(await message('http://metadata.google.internal./')).toBe('webhook url host metadata.google.internal. is a cloud metadata host name; refused (always, whatever WEBHOOK_ALLOWED_TARGETS says)');
  });

  it('narrow allow lists allow only what they name', async () => {
    const only = loadConfig({ WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32, 10.1.0.0/16' }).webhookAllowedTargets;
    expect(await judge('http://127.0.0.1/', only)).toBeNull();
    expect(await judge('http://0x7f000001/', only)).toBeNull();
    expect(await judge('http://[::ffff:7f00:1]/', only)).toBeNull(); // the same socket address
    expect(await judge('http://127.0.0.2/', only)).toMatchObject({ kind: 'loopback' });
    expect(await judge('http://[::1]/', only)).toMatchObject({ kind: 'loopback' });
    expect(await judge('http://10.1.200.3/', only)).toBeNull();
    expect(await judge('http://10.2.0.1/', only)).toMatchObject({ kind: 'private' });
    // A CIDR never allows the localhost *name*: names are allowed by name.
    expect(await judge('http://localhost/', only)).toMatchObject({ kind: 'loopback' });
    // Wide ranges allow their private part and nothing always refused.
    const wide = loadConfig({ WEBHOOK_ALLOWED_TARGETS: '0.0.0.0/0, ::/0' }).webhookAllowedTargets;
    expect(await judge('http://10.2.0.1/', wide)).toBeNull();
    expect(await judge('http://[fd00::1]/', wide)).toBeNull();
    for (const url of ['http://169.254.169.254/', 'http://100.100.100.200/', 'http://[fd00:ec2::254]/', 'http://0.0.0.0/', 'http://224.0.0.1/']) {
      expect(await judge(url, wide)).toMatchObject({ always: true });
    }
  });
});

describe('webhook host names', () => {
  it.each(['metadata.google.internal', 'METADATA.GOOGLE.INTERNAL.', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal', 'metadata.tencentyun.com'])(
    'metadata name %s is refused before any DNS, even when the allow list names it',
    async (name) => {
      for (const allowed of [NO_TARGETS, NAMING_ALWAYS]) {
        expect(await judge(`http://${name}/computeMetadata/v1/`, allowed)).toMatchObject({ kind: 'metadata', always: true, label: 'a cloud metadata host name' });
      }
    },
  );

  it('a name is refused if any address it resolves to is refused', async () => {
    expect(await judge('http://hooks.example.test/', NO_TARGETS, answers('93.184.216.34', '2606:4700::1111'))).toBeNull();
    expect(await judge('http://hooks.example.test/', NO_TARGETS, answers('93.184.216.34', '169.254.169.254'))).toMatchObject({
      kind: 'metadata', always: true, address: '169.254.169.254', seenAs: 'resolves to 169.254.169.254',
    });
    expect(await judge('http://hooks.example.test/', NO_TARGETS, answers('::ffff:10.0.0.5'))).toMatchObject({ kind: 'private', address: '10.0.0.5' });
  });

  it('a listed name may resolve to private addresses, never to always-refused ones', async () => {
    const byName = loadConfig({ WEBHOOK_ALLOWED_TARGETS: 'Hooks.Corp.Example.' }).webhookAllowedTargets;
    expect(await judge('http://hooks.corp.example/', byName, answers('10.0.0.5', 'fd00::5'))).toBeNull();
    expect(await judge('http://HOOKS.corp.example./', byName, answers('127.0.0.1'))).toBeNull();
    expect(await judge('http://other.corp.example/', byName, answers('10.0.0.5'))).toMatchObject({ kind: 'private' });
    expect(await judge('http://hooks.corp.example/', byName, answers('10.0.0.5', '169.254.169.254'))).toMatchObject({ kind: 'metadata', always: true });
  });

  it('a name that does not resolve at creation is accepted (delivery judges it when it connects)', async () => {
    const nxdomain: Resolve = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    expect(await judge('http://not-yet.example.test/', NO_TARGETS, nxdomain)).toBeNull();
  });
});

describe('checkedLookup (the connect-time resolver)', () => {
  const lookup = (resolve: Resolve, options: { all?: boolean; family?: number }) =>
    new Promise<{ err: Error | null; address: string | LookupAddress[]; family?: number }>((done) =>
      checkedLookup(PRIVATE_ALLOWED, resolve)('hooks.example.test', options, (err, address, family) => done({ err, address, family })),
    );

  it('answers both shapes Node asks for: a list with { all: true }, one address without', async () => {
    const dns = answers('10.0.0.5', 'fd00::5');
    expect(await lookup(dns, { all: true })).toEqual({ err: null, address: [{ address: '10.0.0.5', family: 4 }, { address: 'fd00::5', family: 6 }], family: undefined });
    expect(await lookup(dns, {})).toEqual({ err: null, address: '10.0.0.5', family: 4 });
    expect(await lookup(dns, { family: 6 })).toEqual({ err: null, address: 'fd00::5', family: 6 });
  });

  it('refuses the whole answer if one address is refused, in both shapes', async () => {
    for (const all of [true, false]) {
      const { err } = await lookup(answers('10.0.0.5', '169.254.169.254'), { all });
      expect(err).toBeInstanceOf(TargetRefused);
      expect(err!.message).toBe('webhook url host hooks.example.test resolves to 169.254.169.254, a link-local address (cloud metadata); refused (always, whatever WEBHOOK_ALLOWED_TARGETS says)');
    }
  });
});
