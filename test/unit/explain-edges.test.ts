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
import { explain, matchBuiltins, matchRule, type Query } from '../../src/policy/explain.js';
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
