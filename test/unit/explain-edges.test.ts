/**
 * Unit: explain at its edges, written from the explain mutants that lived
 * through explain.test.ts and explain-words.test.ts (npm run mutate --
 * src/policy/explain.ts): a rule's addresses of the other family, a range
 * that touches a host at its last address, a port range that starts at 1 or
 * ends at 65535 without being every port, and the encrypted-DNS built-in for
 * a name, where several DNS-over-TLS rules decide together.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HostFacts } from '../../src/policy/builtins.js';
import { blockMode, explain, matchBuiltins, matchRule, scopeMatch, type Query } from '../../src/policy/explain.js';
import type { Policy } from '../../src/policy/policy.js';
import { policyFrom } from '../support/fixtures.js';
import { q, range } from '../support/explain-query.js';

const ruleOf = (p: Policy, name: string) => {
  const r = p.rules.find((x) => x.name === name);
  assert.ok(r, name);
  return r;
};
const to = (p: Policy, name: string, query: Query) => {
  const d = matchRule(ruleOf(p, name), query).dimensions.find((x) => x.dimension === 'to');
  assert.ok(d);
  return d.result;
};
const ports = (p: Policy, name: string, query: Query) => {
  const d = matchRule(ruleOf(p, name), query).dimensions.find((x) => x.dimension === 'ports');
  assert.ok(d);
  return [d.result, d.detail];
};

describe('unit: explain, edges', () => {
  it("a rule's addresses of one family never hold a destination of the other, however small its number", () => {
    // ::/96 holds the numbers 0..2^32-1, as IPv6 addresses; 0.0.0.0/8 the numbers 0..2^24-1, as IPv4 ones.
    const p = policyFrom('mode: enforce\nrules:\n  - name: v6low\n    to: ["::/96"]\n  - name: v4low\n    to: [0.0.0.0/8]\n  - name: both\n    to: ["::/96", 0.0.0.0/8]\n');
    assert.equal(to(p, 'v6low', q('0.0.0.1')), 'no', 'an IPv4 address is not in ::/96');
    assert.equal(to(p, 'v6low', q('::1')), 'yes', 'the control: ::1 is');
    assert.equal(to(p, 'v4low', q('::1')), 'no', '::1 is not in 0.0.0.0/8');
    assert.equal(to(p, 'v4low', q('0.0.0.1')), 'yes');
    assert.equal(to(p, 'both', q('0.0.0.1')), 'yes');
    assert.equal(to(p, 'both', q('::2')), 'yes');
    assert.equal(to(p, 'both', q('1.0.0.1')), 'no');
    assert.equal(explain(p, q('0.0.0.1', { proto: 'tcp', port: 80 })).decidedBy.kind, 'rule');
  });

  it("a rule's hosts below its prefixes (the loader lists prefixes first, then hosts) are found: the index is sorted by start", () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: r\n    to: [198.18.5.0/24, 198.18.9.0/24, 198.18.0.1, 198.18.7.7, "2001:db8:5::/48", "2001:db8::1"]\n');
    for (const a of ['198.18.0.1', '198.18.7.7', '198.18.5.9', '198.18.9.255', '2001:db8::1', '2001:db8:5::9']) assert.equal(to(p, 'r', q(a)), 'yes', a);
    for (const a of ['198.18.0.2', '198.18.7.8', '198.18.6.0', '2001:db8::2']) assert.equal(to(p, 'r', q(a)), 'no', a);
  });

  it('addresses learned for a rule count for their own family only', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: api\n    to: [api.example.com]\n');
    const learned = new Map([['api', [range('::/96')]]]);
    assert.equal(to(p, 'api', q('0.0.0.1', { learned })), 'no', 'a learned IPv6 range does not hold an IPv4 address');
    assert.equal(to(p, 'api', q('::1', { learned })), 'yes', 'the control');
    assert.equal(to(p, 'api', q('::/95', { learned })), 'no', 'a wider range is not learned whole');
  });

  it('a range that reaches into a listed host is only partly inside: maybe, at both of its ends', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: host\n    to: [198.18.0.2, 198.18.0.5]\n');
    assert.equal(to(p, 'host', q('198.18.0.2/31')), 'maybe', '198.18.0.2-3 starts at the host');
    assert.equal(to(p, 'host', q('198.18.0.4/31')), 'maybe', '198.18.0.4-5 ends at the other');
    assert.equal(to(p, 'host', q('198.18.0.0/31')), 'no', '198.18.0.0-1 ends before the first');
    assert.equal(to(p, 'host', q('198.18.0.6/31')), 'no', '198.18.0.6-7 starts after the last');
    assert.equal(to(p, 'host', q('198.18.0.3')), 'no');
    assert.equal(to(p, 'host', q('198.18.0.5')), 'yes');
    assert.equal(to(p, 'host', q('198.18.0.0/29')), 'maybe', 'both hosts inside a wider range');
  });

  it('ports without a port given: every port only when the range is 1-65535, not when it only starts at 1 or ends at 65535', () => {
    const p = policyFrom(`mode: enforce
rules:
  - name: low
    ports: [1-100/tcp]
  - name: high
    ports: [1000-65535/tcp]
  - name: all
    ports: [1-65535/tcp]
  - name: split
    ports: [1-1000/tcp, 1001-65535/tcp]
`);
    const tcp = q('198.18.0.1', { proto: 'tcp' });
    assert.deepEqual(ports(p, 'low', tcp), ['maybe', 'any port/tcp: only 1-100/tcp']);
    assert.deepEqual(ports(p, 'high', tcp), ['maybe', 'any port/tcp: only 1000-65535/tcp']);
    assert.deepEqual(ports(p, 'all', tcp), ['yes', 'any port/tcp is in 1-65535/tcp']);
    assert.deepEqual(ports(p, 'split', tcp), ['yes', 'any port/tcp is in 1-65535/tcp'], 'the loader merges adjacent ranges: 1-1000 and 1001-65535 are every port');
    assert.equal(ports(p, 'all', q('198.18.0.1', { proto: 'udp' }))[0], 'no', 'another protocol');
  });

  describe('encrypted DNS for a name (its addresses unknown): several DNS-over-TLS rules decide together', () => {
    const facts: HostFacts = { dns: { upstreams: [range('198.18.0.53')], encrypted: { addrs: [range('198.18.4.4')], names: [] } } };
    const enc = (yaml: string, query: Query) => matchBuiltins(policyFrom(`mode: enforce\ndns:\n  guard: true\nrules:\n${yaml}`), query, facts).encrypted;
    const dot = (name: string) => q(name, { proto: 'tcp', port: 853 });

    it('exempt for sure only where both families are open to DoT, or a DoT rule names it', () => {
      const everywhere = '  - name: dot-any\n    to: [0.0.0.0/0, "::/0"]\n    ports: [853/tcp]\n';
      assert.equal(enc(everywhere, dot('resolver.example.net')).result, 'no', 'every address of both families: not blocked');
      const v4only = '  - name: dot-v4\n    to: [0.0.0.0/0]\n    ports: [853/tcp]\n';
      assert.equal(enc(v4only, dot('resolver.example.net')).result, 'maybe', 'only IPv4 everywhere: depends on the address');
    });

    it('any of the DoT rules naming it exempts it, and any of a rule\'s names', () => {
      const two = '  - name: dot-a\n    to: [a.example.net, b.example.net]\n    ports: [853/tcp]\n  - name: dot-c\n    to: [c.example.net]\n    ports: [853/tcp]\n';
      assert.equal(enc(two, dot('b.example.net')).result, 'no', "the second of one rule's names");
      assert.equal(enc(two, dot('c.example.net')).result, 'no', 'the name of the second rule');
      const blocked = enc(two, dot('d.example.net'));
      assert.equal(blocked.result, 'yes', 'a name none of them lists: blocked (the rules list no addresses)');
      assert.equal(blocked.detail, 'DNS over TLS (port 853) is blocked except to the destinations of allow rules that list port 853');
    });

    it('a DoT rule with addresses makes any name a maybe, whichever rule it is', () => {
      const mixed = '  - name: dot-names\n    to: [a.example.net]\n    ports: [853/tcp]\n  - name: dot-addrs\n    to: [198.18.9.9]\n    ports: [853/tcp]\n';
      assert.equal(enc(mixed, dot('z.example.net')).result, 'maybe');
      const reversed = '  - name: dot-addrs\n    to: [198.18.9.9]\n    ports: [853/tcp]\n  - name: dot-names\n    to: [a.example.net]\n    ports: [853/tcp]\n';
      assert.equal(enc(reversed, dot('z.example.net')).result, 'maybe');
    });

    it('a name on port 443 is not judged a DNS-over-HTTPS endpoint (the list is of addresses); an address on it is', () => {
      const web = '  - name: web\n    ports: [443/tcp]\n';
      const name = enc(web, q('doh.example.net', { proto: 'tcp', port: 443 }));
      assert.deepEqual([name.result, name.detail], ['no', 'not DNS over TLS or a known DNS-over-HTTPS endpoint']);
      assert.equal(enc(web, q('198.18.4.4', { proto: 'tcp', port: 443 })).result, 'yes', 'the control: the listed address');
    });
  });

  it("essentials' DHCP places: a destination of the other family never matches by number, a range reaching a lease server is maybe at either end, a name is maybe", () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: web\n    ports: [443/tcp]\n');
    const facts: HostFacts = { dhcpServers: [range('198.18.0.1'), range('198.18.0.6')], dhcpUids: [101] };
    const dhcp4 = (dest: string) => matchBuiltins(p, q(dest, { proto: 'udp', port: 67, sport: 68, uid: 0 }), facts).essentials.result;
    assert.equal(dhcp4('255.255.255.255'), 'yes', 'the control: broadcast');
    assert.equal(dhcp4('::ffff:ffff'), 'no', "::ffff:ffff has broadcast's number, as IPv6: not a DHCPv4 place");
    assert.equal(dhcp4('::c612:1'), 'no', "nor the lease server's number as IPv6");
    assert.equal(dhcp4('198.18.0.0/31'), 'maybe', 'ends at the server 198.18.0.1');
    assert.equal(dhcp4('198.18.0.6/31'), 'maybe', 'starts at the server 198.18.0.6');
    assert.equal(dhcp4('198.18.0.2/31'), 'no', 'between the two');
    assert.equal(dhcp4('dhcp.example.net'), 'maybe', 'a name could be any of them');
  });

  it("gradual enforcement's words: deny rules in audit by their own mode, a scope's mode, the rule's own mode, and the scopes a sender could be in", () => {
    const enforce = policyFrom(`mode: enforce
scopes:
  - name: builders
    mode: audit
    users: [1234]
  - name: testers
    mode: audit
    users: [4321]
rules:
  - name: web
    to: [198.18.0.0/16]
    ports: [443/tcp]
  - name: trial-deny
    action: deny
    mode: audit
    to: [198.18.1.0/24]
  - name: trial-deny2
    action: deny
    mode: audit
    to: [198.18.1.7]
  - name: hard-deny
    action: deny
    to: [198.18.2.0/24]
`);
    const audit = policyFrom(`mode: audit
scopes:
  - name: locked
    mode: enforce
    users: [1234]
rules:
  - name: own-enforce
    action: deny
    mode: enforce
    to: [198.18.3.0/24]
`);
    const say = (p: Policy, dest: string, uid?: number) => {
      const ex = explain(p, q(dest, { proto: 'tcp', port: 22, ...(uid === undefined ? {} : { uid }) }));
      return [ex.enforced, ex.scope, ex.summary];
    };
    const NO_RULE = 'blocked by the default deny: no rule allows it';
    assert.deepEqual(say(enforce, '198.18.1.7', 0), [true, undefined, `${NO_RULE}; recorded as would-block by deny rule trial-deny (line 13, mode: audit), trial-deny2 (line 17, mode: audit)`]);
    assert.deepEqual(say(enforce, '198.18.9.9'), [true, undefined, `${NO_RULE}; unless the sender is in scope builders (audit), testers (audit)`]);
    assert.deepEqual(say(enforce, '198.18.9.9', 0), [true, undefined, NO_RULE]);
    assert.deepEqual(say(enforce, '198.18.2.1', 1234), [false, 'builders', 'blocked by deny rule hard-deny (line 21): 198.18.2.1 is in 198.18.2.0/24 [audit by scope builders: recorded, not blocked]']);
    assert.deepEqual(say(audit, '198.18.9.9', 1234), [true, 'locked', `${NO_RULE} [enforced: scope locked]`]);
    assert.deepEqual(say(audit, '198.18.9.9', 0), [false, undefined, `${NO_RULE} [audit mode: recorded, not blocked]`]);
    assert.deepEqual(say(audit, '198.18.9.9'), [false, undefined, `${NO_RULE}; unless the sender is in scope locked (enforce) [audit mode: recorded, not blocked]`]);
    assert.deepEqual(say(audit, '198.18.3.1', 0), [true, '#rule', "blocked by deny rule own-enforce (line 7): 198.18.3.1 is in 198.18.3.0/24 [enforced: the rule's own mode]"]);
    // A deny rule whose own mode is the policy's says nothing of it.
    const plain = policyFrom('mode: enforce\nrules:\n  - name: same\n    action: deny\n    mode: enforce\n    to: [198.18.3.0/24]\n');
    assert.deepEqual(say(plain, '198.18.3.1', 0), [true, '#rule', 'blocked by deny rule same (line 3): 198.18.3.1 is in 198.18.3.0/24']);
  });

  it("the built-ins' own words when they decide nothing", () => {
    const audit = policyFrom('mode: audit\nessentials: false\ndns:\n  encrypted_dns: allow\nrules:\n  - name: web\n    ports: [443/tcp]\n');
    const b = matchBuiltins(audit, q('198.18.0.1', { proto: 'udp', port: 53 }));
    assert.deepEqual(b.redirect, { builtin: 'dns-guard', result: 'no', detail: 'DNS is not redirected (no guard, or audit mode)' });
    assert.deepEqual(b.essentials, { builtin: 'essentials', result: 'no', detail: 'essentials are off' });
    assert.deepEqual(b.encrypted, { builtin: 'encrypted-dns', result: 'no', detail: 'encrypted DNS is not blocked (no guard, or encrypted_dns: allow)' });
    const on = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: web\n    ports: [443/tcp]\n');
    const e = matchBuiltins(on, q('198.18.0.1', { proto: 'tcp', port: 80 }));
    assert.deepEqual(e.essentials, { builtin: 'essentials', result: 'no', detail: 'not neighbour discovery or DHCP' });
    assert.deepEqual(e.encrypted, { builtin: 'encrypted-dns', result: 'no', detail: 'not DNS over TLS or a known DNS-over-HTTPS endpoint' });
  });
});

describe('unit: explain, the built-ins and scopes in their own words', () => {
  const TLS = { proto: 'tcp', port: 853 } as const;
  const DOT_WORDS = 'DNS over TLS (port 853) is blocked except to the destinations of allow rules that list port 853';

  it("DNS over TLS: blocked by name, except inside a DoT rule's addresses, or where DoT rules reach every address of a family", () => {
    const listed = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: dot\n    to: [198.18.5.0/24]\n    ports: [853/tcp]\n');
    assert.deepEqual(matchBuiltins(listed, q('198.18.6.1', TLS)).encrypted, { builtin: 'encrypted-dns', result: 'yes', detail: DOT_WORDS });
    assert.equal(matchBuiltins(listed, q('198.18.5.1', TLS)).encrypted.result, 'no', "inside the rule's addresses: the rule judges it");
    const v4 = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: dot\n    to: [0.0.0.0/0]\n    ports: [853/tcp]\n');
    assert.equal(matchBuiltins(v4, q('198.18.6.1', TLS)).encrypted.result, 'no', 'a rule to all of IPv4 exempts every IPv4 address');
    assert.equal(matchBuiltins(v4, q('dns.example', TLS)).encrypted.result, 'maybe', 'a name might resolve to IPv6');
    const both = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: dot4\n    to: [0.0.0.0/0]\n    ports: [853/tcp]\n  - name: dot6\n    to: ["::/0"]\n    ports: [853/tcp]\n');
    assert.equal(matchBuiltins(both, q('dns.example', TLS)).encrypted.result, 'no', 'two rules, one per family, together reach every address of both');
  });

  it('a known DNS-over-HTTPS endpoint on 443 is named as encrypted DNS', () => {
    const p = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: web\n    to: [198.18.0.0/15]\n    ports: [443/tcp]\n');
    const facts: HostFacts = { dns: { upstreams: [], encrypted: { addrs: [range('198.18.7.7')], names: [] } } };
    assert.deepEqual(matchBuiltins(p, q('198.18.7.7', { proto: 'tcp', port: 443 }), facts).encrypted, {
      builtin: 'encrypted-dns',
      result: 'yes',
      detail: "a DNS-over-HTTPS endpoint (port 443: the encrypted-DNS list and the guard's upstreams) is blocked unless an allow rule names its address",
    });
  });

  it('what a built-in leaves open is said in its own words: an allowed query to an unknown port may be encrypted DNS', () => {
    const p = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: lab\n    to: [198.18.0.0/15]\n');
    const e = explain(p, q('198.18.6.1', { proto: 'tcp' }));
    assert.equal(e.verdict, 'allow');
    assert.ok(e.summary.includes(`; unless it is encrypted DNS: ${DOT_WORDS}`), e.summary);
    assert.ok(!e.summary.includes('essential traffic'), e.summary);
  });

  it("this host's own addresses are allowed before any rule; a range with only one end in loopback is not loopback", () => {
    const p = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: none\n    to: [198.18.9.9]\n');
    const local = explain(p, q('198.18.1.1', { proto: 'tcp', port: 22, local: true }));
    assert.deepEqual([local.verdict, local.decidedBy.kind], ['allow', 'local']);
    const edge = explain(p, q('126.0.0.0/7', { proto: 'tcp', port: 22 }));
    assert.notEqual(edge.decidedBy.kind, 'loopback', '126.0.0.0-127.255.255.255 is not all loopback');
    assert.equal(explain(p, q('127.0.0.0/8', { proto: 'tcp', port: 22 })).decidedBy.kind, 'loopback', 'the control');
  });

  it("a scope's services: a sender not known is maybe, a cgroup path matches itself and below; a deny rule's own audit mode is not enforced", () => {
    const p = policyFrom('mode: enforce\nscopes:\n  - name: units\n    mode: audit\n    services: [x.service]\n  - name: tree\n    mode: audit\n    services: [/lab.slice]\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    const [units, tree] = p.scopes;
    assert.ok(units && tree);
    assert.equal(scopeMatch(units, q('198.18.0.1')), 'maybe');
    assert.equal(scopeMatch(tree, q('198.18.0.1')), 'maybe');
    assert.equal(scopeMatch(tree, q('198.18.0.1', { service: '/lab.slice' })), 'yes');
    assert.equal(scopeMatch(tree, q('198.18.0.1', { service: '/lab.slice/x.service' })), 'yes');
    assert.equal(scopeMatch(tree, q('198.18.0.1', { service: '/lab.slicer' })), 'no');
    assert.deepEqual(blockMode(p, q('198.18.0.1'), 'audit'), { enforced: false, scope: '#rule', open: [] });
    assert.deepEqual(blockMode(p, q('198.18.0.1'), 'enforce'), { enforced: true, scope: '#rule', open: [] });
  });

  it('lists are said whole, in order, with their separators: built-ins left open, audit deny rules, open scopes, deny rules that may apply', () => {
    const g = 'mode: enforce\ndns:\n  guard: true\n';
    assert.equal(
      explain(policyFrom(`${g}rules:\n  - name: lab\n    to: [198.18.0.0/15]\n`), q('198.18.6.1', { proto: 'tcp' })).summary,
      "allowed by rule lab (line 5): 198.18.6.1 is in 198.18.0.0/15; unless it is DNS: every DNS query (port 53, UDP or TCP, to any address) goes to Sluice's DNS guard, which answers only names the policy allows; the destination is never asked; unless it is encrypted DNS: DNS over TLS (port 853) is blocked except to the destinations of allow rules that list port 853",
    );
    const scoped = policyFrom('mode: audit\ndns:\n  guard: true\nscopes:\n  - name: ci\n    mode: enforce\n    users: [1234]\n  - name: ops\n    mode: enforce\n    users: [1235]\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    assert.deepEqual(matchBuiltins(scoped, q('198.18.0.1', { proto: 'udp', port: 53 })).redirect, {
      builtin: 'dns-guard',
      result: 'maybe',
      detail: "in audit mode, the DNS queries (port 53, UDP or TCP, to any address) of the enforced scopes (ci, ops) go to Sluice's DNS guard, which answers only names the policy allows; everyone else's go where they were sent",
    });
    const audits = policyFrom('mode: enforce\nrules:\n  - name: d1\n    action: deny\n    mode: audit\n    to: [198.18.1.0/24]\n  - name: d2\n    action: deny\n    mode: audit\n    to: [198.18.1.1]\n');
    assert.equal(explain(audits, q('198.18.1.1', { proto: 'tcp', port: 80 })).summary, 'blocked by the default deny: no rule allows it; recorded as would-block by deny rule d1 (line 3, mode: audit), d2 (line 7, mode: audit)');
    const open = policyFrom('mode: enforce\nscopes:\n  - name: s1\n    mode: audit\n    users: [1234]\n  - name: s2\n    mode: audit\n    users: [1235]\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    assert.equal(explain(open, q('198.18.1.1', { proto: 'tcp', port: 80 })).summary, 'blocked by the default deny: no rule allows it; unless the sender is in scope s1 (audit), s2 (audit)');
    const denies = policyFrom('mode: enforce\nrules:\n  - name: d1\n    action: deny\n    to: [198.18.1.1]\n    users: [1234]\n  - name: d2\n    action: deny\n    to: [198.18.1.1]\n    users: [1235]\n  - name: a\n    to: [198.18.1.1]\n');
    assert.equal(
      explain(denies, q('198.18.1.1', { proto: 'tcp', port: 80 })).summary,
      'allowed by rule a (line 11): 198.18.1.1 is in 198.18.1.1; unless deny rule d1 (198.18.1.1 is in 198.18.1.1; only for users 1234), d2 (198.18.1.1 is in 198.18.1.1; only for users 1235) applies',
    );
  });

  it('the verdicts decided before any rule name no audit or conditional rule; a scope that holds the sender leaves none open', () => {
    const p = policyFrom('mode: enforce\ndns:\n  guard: true\nscopes:\n  - name: ci\n    mode: audit\n    users: [1234]\nrules:\n  - name: maybe\n    to: [198.18.0.0/15]\n    users: [1234]\n');
    for (const [query, kind] of [
      [q('198.18.0.1', { proto: 'udp', port: 53 }), 'dns-guard'],
      [q('127.0.0.1', { proto: 'tcp', port: 80 }), 'loopback'],
      [q('255.255.255.255', { proto: 'udp', sport: 68, port: 67, uid: 0 }), 'essentials'],
    ] as const) {
      const e = explain(p, query);
      assert.equal(e.decidedBy.kind, kind);
      assert.deepEqual([e.audited, e.conditional], [[], []], kind);
    }
    assert.deepEqual(blockMode(p, q('198.18.0.1', { uid: 1234 })), { enforced: false, scope: 'ci', open: [] });
    assert.deepEqual(blockMode(p, q('198.18.0.1', { uid: 1 })), { enforced: true, open: [] });
  });

  it('DHCPv6 from a sender not known is maybe essential: either family that might hold it keeps it open', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    assert.equal(matchBuiltins(p, q('ff02::1:2', { proto: 'udp', sport: 546, port: 547 })).essentials.result, 'maybe');
    assert.equal(matchBuiltins(p, q('ff02::1:2', { proto: 'udp', sport: 546, port: 547, uid: 0 })).essentials.result, 'yes', 'the control: root is a DHCP client');
  });
});
