/**
 * The rebinding filter, range by range: the first and last address of each
 * special-purpose range are dropped and the addresses just outside pass. The
 * oracle is this hand-written table, not REBINDING_RANGES: a range removed
 * from or narrowed in the code fails here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { parseAddr } from '../../src/net/ip.js';
import { policyFrom } from '../support/fixtures.js';

/** [address, dropped?] */
const TABLE: [string, boolean][] = [
  // 0.0.0.0/8 this network
  ['0.0.0.0', true], ['0.255.255.255', true], ['1.0.0.0', false],
  // 10.0.0.0/8 private
  ['9.255.255.255', false], ['10.0.0.0', true], ['10.255.255.255', true], ['11.0.0.0', false],
  // 100.64.0.0/10 CGNAT
  ['100.63.255.255', false], ['100.64.0.0', true], ['100.100.100.200', true], ['100.127.255.255', true], ['100.128.0.0', false],
  // 127.0.0.0/8 loopback
  ['126.255.255.255', false], ['127.0.0.0', true], ['127.0.0.1', true], ['127.255.255.255', true], ['128.0.0.0', false],
  // 169.254.0.0/16 link-local, cloud metadata
  ['169.253.255.255', false], ['169.254.0.0', true], ['169.254.169.254', true], ['169.254.255.255', true], ['169.255.0.0', false],
  // 172.16.0.0/12 private
  ['172.15.255.255', false], ['172.16.0.0', true], ['172.31.255.255', true], ['172.32.0.0', false],
  // 192.0.0.0/24 IETF protocol assignments
  ['191.255.255.255', false], ['192.0.0.0', true], ['192.0.0.255', true], ['192.0.1.0', false],
  // 192.168.0.0/16 private
  ['192.167.255.255', false], ['192.168.0.0', true], ['192.168.255.255', true], ['192.169.0.0', false],
  // 224.0.0.0/4 multicast and 240.0.0.0/4 reserved, through the broadcast address
  ['223.255.255.255', false], ['224.0.0.0', true], ['239.255.255.255', true], ['240.0.0.0', true], ['255.255.255.255', true],
  // public
  ['8.8.8.8', false], ['198.18.0.10', false], ['203.0.113.7', false],
  // ::/128, ::1/128, ::/96 IPv4-compatible
  ['::', true], ['::1', true], ['::2', true], ['::ffff:ffff', true], ['::1:0:0', false],
  // ::ffff:0:0/96 IPv4-mapped
  ['::fffe:ffff:ffff', false], ['::ffff:0:0', true], ['::ffff:ffff:ffff', true], ['::1:0:0:0', false],
  // 64:ff9b::/96 NAT64 and 64:ff9b:1::/48 local-use NAT64
  ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', false], ['64:ff9b::', true], ['64:ff9b::ffff:ffff', true], ['64:ff9b::1:0:0', false],
  ['64:ff9b:0:ffff:ffff:ffff:ffff:ffff', false], ['64:ff9b:1::', true], ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', true], ['64:ff9b:2::', false],
  // 2001::/32 Teredo and 2002::/16 6to4
  ['2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false], ['2001::', true], ['2001:0:ffff:ffff:ffff:ffff:ffff:ffff', true], ['2001:1::', false],
  ['2001:db8::1', false], ['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false], ['2002::', true], ['2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true], ['2003::', false],
  // fc00::/7 unique local (fd00:ec2::/32, AWS metadata, inside it), fe80::/10 link-local, ff00::/8 multicast
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false], ['fc00::', true], ['fd00:ec2::254', true], ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true], ['fe00::', false],
  ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false], ['fe80::', true], ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true], ['fec0::', false],
  ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', false], ['ff00::', true], ['ff02::1', true], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', true],
  // public
  ['2606:4700::1111', false], ['2a00:1450:4001::200e', false],
];

const addr = (text: string) => {
  const a = parseAddr(text);
  assert.ok(a, text);
  return a;
};

describe('unit: rebinding filter, range by range', () => {
  const filter = new RebindingFilter(policyFrom('rules:\n  - name: web\n    to: [any]\n    ports: [443/tcp]\n'));

  for (const [text, dropped] of TABLE) {
    it(`${text} is ${dropped ? 'dropped' : 'passed'}`, () => {
      const a = addr(text);
      const why = filter.check(a.family, a.value);
      if (dropped) assert.equal(typeof why, 'string', `${text} should be dropped`);
      else assert.equal(why, null, `${text} should pass, got ${why}`);
    });
  }

  it("this host's own addresses are dropped, and only those; updating them replaces the old list", () => {
    const f = new RebindingFilter(policyFrom('rules:\n  - name: web\n    to: [any]\n'), [addr('198.18.0.2'), addr('2001:db8::2')]);
    const check = (t: string) => {
      const a = addr(t);
      return f.check(a.family, a.value);
    };
    assert.match(check('198.18.0.2') ?? '', /this host/);
    assert.match(check('2001:db8::2') ?? '', /this host/);
    assert.equal(check('198.18.0.3'), null);
    assert.equal(check('2001:db8::3'), null);
    f.setLocalAddresses([addr('198.18.0.3')]);
    assert.equal(check('198.18.0.2'), null, 'an address the host no longer has passes again');
    assert.match(check('198.18.0.3') ?? '', /this host/);
  });

  it('a range an allow rule lists opts that range in, and nothing beyond it; `any` and deny rules opt nothing in', () => {
    const f = new RebindingFilter(
      policyFrom('rules:\n  - name: lan\n    to: [10.1.0.0/16, "fd00:1::/64"]\n  - name: web\n    to: [any]\n  - name: no\n    action: deny\n    to: [192.168.0.0/16]\n'),
    );
    const check = (t: string) => {
      const a = addr(t);
      return f.check(a.family, a.value);
    };
    assert.equal(check('10.1.0.0'), null);
    assert.equal(check('10.1.255.255'), null);
    assert.match(check('10.0.255.255') ?? '', /private/);
    assert.match(check('10.2.0.0') ?? '', /private/);
    assert.equal(check('fd00:1::5'), null);
    assert.match(check('fd00:2::5') ?? '', /unique local/);
    assert.match(check('192.168.1.1') ?? '', /private/, 'a deny rule opts nothing in');
    assert.match(check('127.0.0.1') ?? '', /loopback/, '`any` opts nothing in');
  });

  it('a listed range that starts at 0 or ends at the top opts in like any other; an IPv4 range never opts in an IPv6 address', () => {
    const f = new RebindingFilter(policyFrom('rules:\n  - name: edges\n    to: [0.0.0.0/8, 240.0.0.0/4, 10.1.0.0/16]\n'));
    const check = (t: string) => {
      const a = addr(t);
      return f.check(a.family, a.value);
    };
    assert.equal(check('0.1.2.3'), null, 'starts at 0.0.0.0 but is not `any`');
    assert.equal(check('255.255.255.255'), null, 'ends at the top but is not `any`');
    // ::10.1.2.3 (IPv4-compatible) has the same low 32 bits as 10.1.2.3: the IPv4 rule does not reach it.
    assert.match(check('::a01:203') ?? '', /IPv4-compatible/);
  });
});
