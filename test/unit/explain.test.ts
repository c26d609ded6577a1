/** explain: the deciding rule, and honest conditions when the query leaves something open. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { parseCounterName, parseLogPrefix } from '../../src/compile/kernel-names.js';
import type { HostFacts } from '../../src/policy/builtins.js';
import { explain, type Query } from '../../src/policy/explain.js';
import { interpret } from '../support/interpret.js';
import { fakeEnv, policyFrom } from '../support/fixtures.js';
import { q } from '../support/explain-query.js';

const policy = policyFrom(`mode: enforce
rules:
  - name: api
    to: [198.18.1.0/24, api.example.com, "*.cdn.example.com"]
    ports: [443/tcp]
  - name: ops
    to: [198.18.2.0/24]
    users: [root]
  - name: meta
    action: deny
    to: [198.18.1.254]
`);


describe('unit: explain', () => {
  it('names the allowing rule and why', () => {
    const ex = explain(policy, q('198.18.1.10', { proto: 'tcp', port: 443 }));
    assert.equal(ex.verdict, 'allow');
    assert.deepEqual(ex.decidedBy, { kind: 'rule', rule: 'api', action: 'allow', line: 3 });
    assert.match(ex.summary, /198\.18\.1\.10 is in 198\.18\.1\.0\/24/);
  });

  it('a deny rule wins over an allow rule that also matches', () => {
    const ex = explain(policy, q('198.18.1.254', { proto: 'tcp', port: 443 }));
    assert.equal(ex.verdict, 'block');
    assert.equal(ex.decidedBy.kind === 'rule' && ex.decidedBy.rule, 'meta');
  });

  it('the default deny names the rule that would allow it under other conditions', () => {
    const ex = explain(policy, q('198.18.1.10', { proto: 'tcp', port: 80 }));
    assert.equal(ex.verdict, 'block');
    assert.deepEqual(ex.decidedBy, { kind: 'default' });
    const ops = explain(policy, q('198.18.2.9', { proto: 'tcp', port: 22 }));
    assert.equal(ops.verdict, 'block');
    assert.match(ops.summary, /rule ops .* would allow it only for users root \(0\)/);
    assert.equal(explain(policy, q('198.18.2.9', { proto: 'tcp', port: 22, uid: 0 })).verdict, 'allow');
  });

  it('domain names match domain rules on label boundaries', () => {
    assert.equal(explain(policy, q('api.example.com', { proto: 'tcp', port: 443 })).verdict, 'allow');
    assert.equal(explain(policy, q('x.y.cdn.example.com', { proto: 'tcp', port: 443 })).verdict, 'allow');
    assert.equal(explain(policy, q('cdn.example.com', { proto: 'tcp', port: 443 })).verdict, 'block');
    assert.equal(explain(policy, q('evil-cdn.example.com', { proto: 'tcp', port: 443 })).verdict, 'block');
  });

  it('an address the DNS guard learned for a domain rule is allowed by that rule', () => {
    const learned = new Map([['api', [{ family: 4 as const, start: 0xc6120505n, end: 0xc6120505n }]]]);
    const ex = explain(policy, q('198.18.5.5', { proto: 'tcp', port: 443, learned }));
    assert.equal(ex.verdict, 'allow');
    assert.match(ex.summary, /learned from a DNS answer/);
  });

  it('loopback is always allowed; audit mode reports blocks as not enforced', () => {
    assert.equal(explain(policy, q('127.0.0.1', { proto: 'tcp', port: 5432 })).decidedBy.kind, 'loopback');
    const audit = policyFrom('mode: audit\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    const ex = explain(audit, q('198.18.9.9', { proto: 'tcp', port: 1 }));
    assert.equal(ex.verdict, 'block');
    assert.equal(ex.enforced, false);
  });

  it('audit mode: a block is a WOULD block, with the words that say so; an allow is not marked', () => {
    const audit = policyFrom('mode: audit\nrules:\n  - name: a\n    to: [198.18.0.1]\n  - name: d\n    action: deny\n    to: [198.18.0.2]\n');
    assert.match(explain(audit, q('198.18.9.9', { proto: 'tcp', port: 1 })).summary, /^blocked by the default deny: no rule allows it \[audit mode: recorded, not blocked\]$/);
    assert.match(explain(audit, q('198.18.0.2', { proto: 'tcp', port: 1 })).summary, /^blocked by deny rule d \(line 5\): 198\.18\.0\.2 is in 198\.18\.0\.2 \[audit mode: recorded, not blocked\]$/);
    assert.equal(explain(audit, q('198.18.0.1', { proto: 'tcp', port: 1 })).summary, 'allowed by rule a (line 3): 198.18.0.1 is in 198.18.0.1');
  });
});

describe('unit: explain knows what the ruleset does beside the rules', () => {
  const facts: HostFacts = {
    dns: { upstreams: [{ family: 4, start: 0xc6120035n, end: 0xc6120035n }], encrypted: { addrs: [{ family: 4, start: 0x01010101n, end: 0x01010101n }], names: [] } },
    dhcpServers: [{ family: 4, start: 0xc6120001n, end: 0xc6120001n }],
    dhcpUids: [101],
  };
  const guarded = policyFrom('mode: enforce\nrules:\n  - name: web\n    to: [any]\n    ports: [443/tcp]\n  - name: names\n    to: [api.example.com]\n');

  it('every DNS query (port 53, any address, loopback too) is redirected to the guard in enforce mode; not in audit mode', () => {
    for (const dest of ['198.18.9.9', '127.0.0.53', '2001:db8::1']) {
      for (const proto of ['udp', 'tcp'] as const) {
        const ex = explain(guarded, q(dest, { proto, port: 53 }), facts);
        assert.equal(ex.verdict, 'redirect', `${dest} 53/${proto}`);
        assert.deepEqual(ex.decidedBy, { kind: 'dns-guard' });
        assert.match(ex.summary, /^redirected: every DNS query \(port 53, UDP or TCP, to any address\) goes to Sluice's DNS guard, which answers only names the policy allows; the destination is never asked$/);
      }
    }
    const open = explain(guarded, q('198.18.9.9', { proto: 'udp' }), facts);
    assert.equal(open.verdict, 'block', 'no port given: the default decides');
    assert.match(open.summary, /; unless it is DNS: every DNS query/, 'and says what port 53 would do');
    const audit = policyFrom('mode: audit\nrules:\n  - name: names\n    to: [api.example.com]\n');
    assert.equal(explain(audit, q('198.18.9.9', { proto: 'udp', port: 53 }), facts).decidedBy.kind, 'default', 'audit mode observes DNS, it does not redirect it');
    const noGuard = policyFrom('mode: enforce\ndns:\n  guard: false\nrules:\n  - name: web\n    ports: [443/tcp]\n');
    assert.equal(explain(noGuard, q('198.18.9.9', { proto: 'udp', port: 53 }), facts).decidedBy.kind, 'default');
  });

  it('essentials: neighbour discovery and MLD by type, before any rule (a deny rule too)', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: d\n    action: deny\n    to: ["ff02::/16"]\n');
    for (const t of [131, 132, 133, 135, 136, 143]) {
      const ex = explain(p, q('ff02::2', { proto: 'icmpv6', icmpType: t }));
      assert.deepEqual(ex.decidedBy, { kind: 'essentials' }, `type ${t}`);
      assert.equal(ex.verdict, 'allow');
      assert.equal(ex.summary, 'allowed as essentials (before any rule): IPv6 neighbour discovery and MLD (ICMPv6 types 131, 132, 133, 135, 136, 143) are always allowed');
    }
    assert.equal(explain(p, q('ff02::2', { proto: 'icmpv6', icmpType: 128 })).decidedBy.kind, 'rule', 'an echo request is not essential: the deny rule decides');
    assert.equal(explain(p, q('198.18.0.1', { proto: 'icmpv6', icmpType: 135 })).decidedBy.kind, 'default', 'no ICMPv6 to an IPv4 address');
    const open = explain(p, q('ff02::2', { proto: 'icmpv6' }));
    assert.deepEqual(open.decidedBy, { kind: 'rule', rule: 'd', action: 'deny', line: 3 }, 'without a type the rules decide...');
    assert.match(open.summary, /; unless it is essential traffic: IPv6 neighbour discovery/, '...and the summary says what a type would change');
    assert.deepEqual(open.builtins.map((b) => [b.builtin, b.result]), [['essentials', 'maybe']]);
    const off = policyFrom('mode: enforce\nessentials: false\nrules:\n  - name: w\n    ports: [443/tcp]\n');
    assert.equal(explain(off, q('ff02::2', { proto: 'icmpv6', icmpType: 135 })).decidedBy.kind, 'default', 'essentials: false');
  });

  it('essentials: DHCP from the client port, by a DHCP user, to broadcast, the DHCPv6 groups or a lease server only', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: w\n    ports: [443/tcp]\n');
    const dhcp = (dest: string, extra: Partial<Query>) => explain(p, q(dest, { proto: 'udp', port: 67, sport: 68, uid: 0, ...extra }), facts);
    assert.deepEqual(dhcp('255.255.255.255', {}).decidedBy, { kind: 'essentials' });
    assert.match(dhcp('255.255.255.255', {}).summary, /^allowed as essentials \(before any rule\): DHCP is always allowed from the client port to a DHCP server \(68->67\/udp, 546->547\/udp for DHCPv6; broadcast, the DHCPv6 groups or the server of a lease held\) by uid 0, 101$/);
    assert.equal(dhcp('198.18.0.1', {}).decidedBy.kind, 'essentials', "the server of a lease held (renewals are unicast)");
    assert.equal(dhcp('198.18.0.2', {}).decidedBy.kind, 'default', 'not any host');
    assert.equal(dhcp('255.255.255.255', { uid: 101 }).decidedBy.kind, 'essentials', "the DHCP client's own user");
    assert.equal(dhcp('255.255.255.255', { uid: 1000 }).decidedBy.kind, 'default', 'another user may not, even from port 68');
    assert.equal(dhcp('255.255.255.255', { sport: 40000 }).decidedBy.kind, 'default', 'not from the client port');
    assert.equal(dhcp('255.255.255.255', { proto: 'tcp' }).decidedBy.kind, 'default', 'UDP only');
    assert.equal(dhcp('255.255.255.255', { port: 68 }).decidedBy.kind, 'default', 'to the server port only');
    assert.equal(dhcp('ff02::1:2', { sport: 546, port: 547 }).decidedBy.kind, 'essentials', 'DHCPv6 to the servers group');
    assert.equal(dhcp('ff02::1:2', {}).decidedBy.kind, 'default', "DHCPv4's ports to the DHCPv6 group");
    assert.equal(dhcp('198.18.0.1', { sport: 546, port: 547 }).decidedBy.kind, 'default', "DHCPv6's ports to an IPv4 server");
    assert.equal(explain(p, q('198.18.0.1', { proto: 'udp', port: 67, uid: 0 })).decidedBy.kind, 'default', 'without host facts, no lease server is known');
    const open = explain(p, q('255.255.255.255', { proto: 'udp', port: 67 }), facts);
    assert.equal(open.decidedBy.kind, 'default');
    assert.match(open.summary, /; unless it is essential traffic: DHCP is always allowed/);
  });

  it('encrypted DNS: DNS over TLS anywhere but where an allow rule lists 853; DoH endpoints unless a rule names the address', () => {
    const dot = explain(guarded, q('198.18.9.9', { proto: 'tcp', port: 853 }), facts);
    assert.deepEqual(dot.decidedBy, { kind: 'encrypted-dns' });
    assert.equal(dot.verdict, 'block');
    assert.equal(dot.summary, 'blocked as encrypted DNS (after the deny rules, before the allow rules): DNS over TLS (port 853) is blocked except to the destinations of allow rules that list port 853');
    const doh = explain(guarded, q('1.1.1.1', { proto: 'tcp', port: 443 }), facts);
    assert.deepEqual(doh.decidedBy, { kind: 'encrypted-dns' }, 'the broad web rule does not open a DoH endpoint');
    assert.match(doh.summary, /a DNS-over-HTTPS endpoint \(port 443: the encrypted-DNS list and the guard's upstreams\) is blocked unless an allow rule names its address$/);
    assert.equal(explain(guarded, q('198.18.0.53', { proto: 'udp', port: 443 }), facts).decidedBy.kind, 'encrypted-dns', "the guard's upstream, on 443, in enforce mode");
    assert.equal(explain(guarded, q('198.18.9.9', { proto: 'tcp', port: 443 }), facts).decidedBy.kind, 'rule', 'anything else on 443: the rules');

    const named = policyFrom('mode: enforce\nrules:\n  - name: dot\n    to: [198.18.9.9]\n    ports: [853/tcp]\n  - name: doh\n    to: [1.1.1.1]\n    ports: [443/tcp]\n  - name: names\n    to: [api.example.com]\n');
    assert.deepEqual(explain(named, q('198.18.9.9', { proto: 'tcp', port: 853 }), facts).decidedBy, { kind: 'rule', rule: 'dot', action: 'allow', line: 3 }, 'a rule listing 853 to the address');
    assert.equal(explain(named, q('198.18.9.8', { proto: 'tcp', port: 853 }), facts).decidedBy.kind, 'encrypted-dns', 'not to another');
    assert.equal(explain(named, q('1.1.1.1', { proto: 'tcp', port: 443 }), facts).decidedBy.kind, 'rule', 'a rule naming the endpoint exactly');
    const prefix = policyFrom('mode: enforce\nrules:\n  - name: doh\n    to: [1.1.1.0/24]\n    ports: [443/tcp]\n  - name: names\n    to: [api.example.com]\n');
    assert.equal(explain(prefix, q('1.1.1.1', { proto: 'tcp', port: 443 }), facts).decidedBy.kind, 'encrypted-dns', 'a prefix is not naming it');
    const learned = new Map([['dot', [{ family: 4 as const, start: 0xc6120707n, end: 0xc6120707n }]]]);
    const byName = policyFrom('mode: enforce\nrules:\n  - name: dot\n    to: [dot.example.net]\n    ports: [853/tcp]\n');
    assert.equal(explain(byName, q('198.18.7.7', { proto: 'tcp', port: 853, learned }), facts).decidedBy.kind, 'rule', 'an address learned for a DoT rule\'s name');
    assert.equal(explain(byName, q('dot.example.net', { proto: 'tcp', port: 853 }), facts).decidedBy.kind, 'rule', 'the name itself');
    assert.equal(explain(byName, q('other.example.net', { proto: 'tcp', port: 853 }), facts).decidedBy.kind, 'encrypted-dns', 'another name');
    const deny = policyFrom('mode: enforce\nrules:\n  - name: d\n    action: deny\n    to: [198.18.9.9]\n  - name: names\n    to: [api.example.com]\n');
    assert.equal(explain(deny, q('198.18.9.9', { proto: 'tcp', port: 853 }), facts).decidedBy.kind, 'rule', 'a deny rule comes first');
    const allowDns = policyFrom('mode: enforce\ndns:\n  encrypted_dns: allow\nrules:\n  - name: names\n    to: [api.example.com]\n');
    assert.equal(explain(allowDns, q('198.18.9.9', { proto: 'tcp', port: 853 }), facts).decidedBy.kind, 'default', 'encrypted_dns: allow');
    const audit = policyFrom('mode: audit\nrules:\n  - name: names\n    to: [api.example.com]\n  - name: web\n    ports: [443/udp]\n');
    assert.equal(explain(audit, q('198.18.0.53', { proto: 'udp', port: 443 }), facts).decidedBy.kind, 'rule', "audit mode: the guard's upstream is not a DoH endpoint");
    assert.match(explain(audit, q('1.1.1.1', { proto: 'udp', port: 443 }), facts).summary, /\(port 443: the encrypted-DNS list\) is blocked .* \[audit mode: recorded, not blocked\]$/);
  });

  it("a DoT rule to every address (to: [any] or 0.0.0.0/0) lets 853 through everywhere of that family, in the kernel as explain says", () => {
    for (const to of ['any', '0.0.0.0/0']) {
      const p = policyFrom(`mode: enforce\nrules:\n  - name: dot\n    to: [${JSON.stringify(to)}]\n    ports: [853/tcp]\n  - name: names\n    to: [api.example.com]\n`);
      const { ruleset } = compileRuleset(p, fakeEnv(p));
      const out = interpret(ruleset, { family: 4, daddr: 0xc6120909n, l4proto: 6, dport: 853, sport: 40000, uid: 1000, oif: 2, oifname: 'eth0', cgroupAncestors: [], ct: 'new' });
      assert.equal(out.verdict, 'accept', `to: [${to}]: ${JSON.stringify(out)}`);
      assert.deepEqual(parseCounterName(out.counters.at(-1) ?? ''), { kind: 'rule', rule: 'dot' });
      assert.deepEqual(explain(p, q('198.18.9.9', { proto: 'tcp', port: 853 })).decidedBy, { kind: 'rule', rule: 'dot', action: 'allow', line: 3 });
    }
    const v4only = policyFrom('mode: enforce\nrules:\n  - name: dot\n    to: [0.0.0.0/0]\n    ports: [853/tcp]\n  - name: names\n    to: [api.example.com]\n');
    const { ruleset } = compileRuleset(v4only, fakeEnv(v4only));
    const v6 = interpret(ruleset, { family: 6, daddr: 0x20010db8000000000000000000000009n, l4proto: 6, dport: 853, sport: 40000, uid: 1000, oif: 2, oifname: 'eth0', cgroupAncestors: [], ct: 'new' });
    assert.equal(v6.verdict, 'reject', 'IPv6 is still blocked');
    assert.equal(parseLogPrefix(v6.logs[0] ?? '')?.rule, '#encrypted-dns');
    assert.equal(explain(v4only, q('2001:db8::9', { proto: 'tcp', port: 853 })).decidedBy.kind, 'encrypted-dns');
  });
});
