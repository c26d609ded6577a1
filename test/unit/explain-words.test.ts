/**
 * Unit: explain's words, dimension by dimension and verdict by verdict.
 * `sluice explain`, `connections` and `suggest --check` show these details
 * to people deciding whether to open something, so each is asserted as
 * written, with the branch that produced it: a detail that says "is" where
 * the code decided "is not", or a caveat that goes missing, fails here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { explain, matchRule, type Query } from '../../src/policy/explain.js';
import type { Policy } from '../../src/policy/policy.js';
import { policyFrom } from '../support/fixtures.js';
import { q, range } from '../support/explain-query.js';


const policy = policyFrom(`mode: enforce
rules:
  - name: web
    to: [198.18.1.0/24, 198.18.3.7, 2001:db8:1::/64]
    ports: [443/tcp, 8000-8100/tcp, 53/udp]
  - name: names
    to: [api.example.com, "*.cdn.example.com"]
    ports: [443/tcp]
  - name: mixed
    to: [198.18.5.0/24, mixed.example.com]
  - name: anyport
    to: [198.18.6.0/24]
    ports: [1-65535/tcp]
  - name: pingable
    to: [198.18.7.0/24]
    ports: [icmp, icmpv6]
  - name: ops
    to: [198.18.2.0/24]
    users: [root, 1234]
    services: [ssh.service, /system.slice/cron.service]
    interfaces: [eth0, "wg*"]
  - name: meta
    action: deny
    to: [198.18.1.254]
  - name: deny-ops-user
    action: deny
    to: [198.18.8.0/24]
    users: [1234]
`);
const rule = (p: Policy, name: string) => {
  const r = p.rules.find((x) => x.name === name);
  assert.ok(r, name);
  return r;
};
const dims = (name: string, query: Query) => Object.fromEntries(matchRule(rule(policy, name), query).dimensions.map((d) => [d.dimension, [d.result, d.detail]]));

describe('unit: explain, destinations', () => {
  it('an address inside, outside, partly inside, and one a DNS answer opened', () => {
    assert.deepEqual(dims('web', q('198.18.1.10')).to, ['yes', '198.18.1.10 is in 198.18.1.0/24']);
    assert.deepEqual(dims('web', q('198.18.3.7')).to, ['yes', '198.18.3.7 is in 198.18.3.7']);
    assert.deepEqual(dims('web', q('198.18.3.8')).to, ['no', "198.18.3.8 is not in this rule's addresses"]);
    assert.deepEqual(dims('web', q('198.18.0.255')).to, ['no', "198.18.0.255 is not in this rule's addresses"], 'just below the range');
    assert.deepEqual(dims('web', q('198.18.2.0')).to, ['no', "198.18.2.0 is not in this rule's addresses"], 'just above it');
    assert.deepEqual(dims('web', q('198.18.1.128/25')).to, ['yes', '198.18.1.128/25 is in 198.18.1.0/24']);
    assert.deepEqual(dims('web', q('198.18.0.0/23')).to, ['maybe', "198.18.0.0/23 is only partly inside this rule's addresses"]);
    assert.deepEqual(dims('web', q('198.18.3.0/24')).to, ['maybe', "198.18.3.0/24 is only partly inside this rule's addresses"], 'a host inside a wider query');
    assert.deepEqual(dims('web', q('2001:db8:1::5')).to, ['yes', '2001:db8:1::5 is in 2001:db8:1::/64']);
    assert.deepEqual(dims('web', q('2001:db8:2::5')).to, ['no', "2001:db8:2::5 is not in this rule's addresses"]);
    // Families do not mix: the IPv4 ranges say nothing about an IPv6 address.
    assert.equal(dims('anyport', q('2001:db8::c612:601')).to?.[0], 'no');
    assert.deepEqual(dims('names', q('198.18.9.9')).to, ['no', "not listed; the rule's names (api.example.com, *.cdn.example.com) open only addresses the DNS guard has seen in answers"]);
    const learned = new Map([['names', [range('198.18.9.9')]]]);
    assert.deepEqual(dims('names', q('198.18.9.9', { learned })).to, ['yes', '198.18.9.9 was learned from a DNS answer for api.example.com, *.cdn.example.com']);
    assert.equal(dims('names', q('198.18.9.10', { learned })).to?.[0], 'no', 'learned for that address only');
    assert.equal(dims('names', q('198.18.9.9', { learned: new Map([['web', [range('198.18.9.9')]]]) })).to?.[0], 'no', "learned for another rule's names");
    assert.equal(dims('names', q('2001:db8::9', { learned: new Map([['names', [range('198.18.9.9')]]]) })).to?.[0], 'no');
  });

  it('a name: matched, wildcard, not listed, and "depends" for a rule that lists addresses', () => {
    assert.deepEqual(dims('names', q('api.example.com')).to, ['yes', 'api.example.com matches api.example.com (its addresses are opened when the DNS guard answers)']);
    assert.deepEqual(dims('names', q('x.cdn.example.com')).to, ['yes', 'x.cdn.example.com matches *.cdn.example.com (its addresses are opened when the DNS guard answers)']);
    assert.deepEqual(dims('names', q('cdn.example.com')).to, ['no', 'cdn.example.com is not in api.example.com, *.cdn.example.com'], 'a wildcard is not its own zone');
    assert.deepEqual(dims('names', q('xapi.example.com')).to?.[0], 'no');
    assert.deepEqual(dims('mixed', q('other.example.com')).to, ['maybe', 'depends on what other.example.com resolves to (this rule lists addresses)']);
    assert.deepEqual(dims('web', q('other.example.com')).to, ['maybe', 'depends on what other.example.com resolves to (this rule lists addresses)']);
    assert.deepEqual(dims('ops', q('x')).to?.[0], 'maybe');
  });

  it('a rule without `to` matches any destination', () => {
    const p = policyFrom('rules:\n  - name: all\n    ports: [22/tcp]\n');
    assert.deepEqual(matchRule(rule(p, 'all'), q('198.18.0.1')).dimensions[0], { dimension: 'to', result: 'yes', detail: 'any destination' });
    assert.deepEqual(matchRule(rule(p, 'all'), q('a.example')).dimensions[0], { dimension: 'to', result: 'yes', detail: 'any destination' });
  });
});

describe('unit: explain, ports and protocols', () => {
  it('a port listed, in a range, at both ends of it, outside it, and of another protocol', () => {
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp', port: 443 })).ports, ['yes', '443/tcp is in 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp', port: 8000 })).ports?.[0], 'yes');
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp', port: 8100 })).ports?.[0], 'yes');
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp', port: 7999 })).ports, ['no', '7999/tcp is not in 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp', port: 8101 })).ports?.[0], 'no');
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'udp', port: 443 })).ports, ['no', '443/udp is not in 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'udp', port: 53 })).ports, ['yes', '53/udp is in 443/tcp, 8000-8100/tcp, 53/udp']);
  });

  it('what the query leaves open: no protocol, no port, neither', () => {
    assert.deepEqual(dims('web', q('198.18.1.1')).ports, ['maybe', 'only 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('web', q('198.18.1.1', { port: 443 })).ports, ['maybe', '443: only 443/tcp, 8000-8100/tcp, 53/udp'], 'tcp yes, udp no');
    assert.deepEqual(dims('web', q('198.18.1.1', { port: 9 })).ports, ['no', '9 is not in 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'tcp' })).ports, ['maybe', 'any port/tcp: only 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('names', q('198.18.1.1', { proto: 'udp' })).ports, ['no', 'any port/udp is not in 443/tcp']);
    assert.deepEqual(dims('anyport', q('198.18.6.1', { proto: 'tcp' })).ports, ['yes', 'any port/tcp is in 1-65535/tcp'], 'every port listed');
    assert.deepEqual(dims('anyport', q('198.18.6.1', { port: 22 })).ports, ['maybe', '22: only 1-65535/tcp']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { proto: 'udp', port: 1 })).ports, ['yes', 'any protocol and port']);
  });

  it('ICMP: listed per family, and never across families', () => {
    assert.deepEqual(dims('pingable', q('198.18.7.1', { proto: 'icmp' })).ports, ['yes', 'icmp is in icmp, icmpv6']);
    assert.deepEqual(dims('pingable', q('2001:db8::1', { proto: 'icmpv6' })).ports, ['yes', 'icmpv6 is in icmp, icmpv6']);
    assert.deepEqual(dims('pingable', q('2001:db8::1', { proto: 'icmp' })).ports, ['no', 'icmp is not in icmp, icmpv6'], 'icmp to an IPv6 address');
    assert.deepEqual(dims('pingable', q('198.18.7.1', { proto: 'icmpv6' })).ports, ['no', 'icmpv6 is not in icmp, icmpv6']);
    assert.deepEqual(dims('pingable', q('ping.example', { proto: 'icmp' })).ports?.[0], 'yes', 'a name could be either family');
    assert.deepEqual(dims('web', q('198.18.1.1', { proto: 'icmp' })).ports, ['no', 'icmp is not in 443/tcp, 8000-8100/tcp, 53/udp']);
    assert.deepEqual(dims('pingable', q('198.18.7.1', { proto: 'tcp', port: 1 })).ports, ['no', '1/tcp is not in icmp, icmpv6']);
  });
});

describe('unit: explain, users, services, interfaces', () => {
  it('users by uid, named or not, and left open', () => {
    assert.deepEqual(dims('web', q('198.18.1.1')).users, ['yes', 'any user']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { uid: 0 })).users, ['yes', 'uid 0 is in root (0), 1234']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { uid: 1234 })).users, ['yes', 'uid 1234 is in root (0), 1234']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { uid: 1000 })).users, ['no', 'uid 1000 is not in root (0), 1234']);
    assert.deepEqual(dims('ops', q('198.18.2.1')).users, ['maybe', 'only for users root (0), 1234']);
  });

  it('services by unit and by cgroup path (and below it), and left open', () => {
    assert.deepEqual(dims('web', q('198.18.1.1')).services, ['yes', 'any service']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { service: 'ssh.service' })).services, ['yes', 'ssh.service is in ssh.service, /system.slice/cron.service']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { service: '/system.slice/cron.service' })).services?.[0], 'yes');
    assert.deepEqual(dims('ops', q('198.18.2.1', { service: '/system.slice/cron.service/job' })).services?.[0], 'yes');
    assert.deepEqual(dims('ops', q('198.18.2.1', { service: '/system.slice/cron.service2' })).services, ['no', '/system.slice/cron.service2 is not in ssh.service, /system.slice/cron.service']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { service: 'sshd.service' })).services?.[0], 'no');
    assert.deepEqual(dims('ops', q('198.18.2.1')).services, ['maybe', 'only for services ssh.service, /system.slice/cron.service']);
  });

  it('interfaces by name and by prefix, and left open', () => {
    assert.deepEqual(dims('web', q('198.18.1.1')).interfaces, ['yes', 'any interface']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { iface: 'eth0' })).interfaces, ['yes', 'eth0 is in eth0, wg*']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { iface: 'wg7' })).interfaces, ['yes', 'wg7 is in eth0, wg*']);
    assert.deepEqual(dims('ops', q('198.18.2.1', { iface: 'eth01' })).interfaces, ['no', 'eth01 is not in eth0, wg*'], 'eth0 is not a prefix');
    assert.deepEqual(dims('ops', q('198.18.2.1')).interfaces, ['maybe', 'only out of eth0, wg*']);
  });

  it('a rule matches when every dimension does: any "no" is no, else any "maybe" is maybe', () => {
    const all = { uid: 0, service: 'ssh.service', iface: 'eth0', proto: 'tcp' as const, port: 22 };
    assert.equal(matchRule(rule(policy, 'ops'), q('198.18.2.1', all)).result, 'yes');
    assert.equal(matchRule(rule(policy, 'ops'), q('198.18.2.1', { ...all, iface: undefined })).result, 'maybe');
    assert.equal(matchRule(rule(policy, 'ops'), q('198.18.2.1', { ...all, iface: undefined, uid: 5 })).result, 'no');
    assert.equal(matchRule(rule(policy, 'ops'), q('198.18.9.1', all)).result, 'no');
    const m = matchRule(rule(policy, 'ops'), q('198.18.2.1', all));
    assert.deepEqual({ rule: m.rule, action: m.action, line: m.line }, { rule: 'ops', action: 'allow', line: 17 });
  });
});

describe('unit: explain, verdicts and summaries', () => {
  it('allowed by a rule: the rule, its line, and only the dimensions that constrain', () => {
    const ex = explain(policy, q('198.18.1.10', { proto: 'tcp', port: 443 }));
    assert.equal(ex.summary, 'allowed by rule web (line 3): 198.18.1.10 is in 198.18.1.0/24; 443/tcp is in 443/tcp, 8000-8100/tcp, 53/udp');
    assert.deepEqual(ex.decidedBy, { kind: 'rule', rule: 'web', action: 'allow', line: 3 });
    assert.equal(ex.enforced, true);
  });

  it('allowed, unless a deny rule the query leaves open applies', () => {
    const ex = explain(policy, q('198.18.8.1', { proto: 'tcp', port: 443 }), {});
    // No allow rule lists 198.18.8.0/24: the default denies, and the deny rule is conditional.
    assert.equal(ex.verdict, 'block');
    const p = policyFrom(`mode: enforce
rules:
  - name: open
    to: [198.18.8.0/24]
  - name: deny-ops-user
    action: deny
    to: [198.18.8.0/24]
    users: [1234]
`);
    const open = explain(p, q('198.18.8.1', { proto: 'tcp', port: 443 }));
    assert.equal(open.verdict, 'allow');
    assert.equal(open.summary, 'allowed by rule open (line 3): 198.18.8.1 is in 198.18.8.0/24; unless deny rule deny-ops-user (198.18.8.1 is in 198.18.8.0/24; only for users 1234) applies');
    assert.deepEqual(open.conditional.map((m) => m.rule), ['deny-ops-user']);
    const asRoot = explain(p, q('198.18.8.1', { proto: 'tcp', port: 443, uid: 0 }));
    assert.equal(asRoot.summary, 'allowed by rule open (line 3): 198.18.8.1 is in 198.18.8.0/24', 'the deny rule does not apply to root: no caveat');
    assert.deepEqual(asRoot.conditional, []);
    const asUser = explain(p, q('198.18.8.1', { proto: 'tcp', port: 443, uid: 1234 }));
    assert.equal(asUser.verdict, 'block');
    assert.equal(asUser.summary, 'blocked by deny rule deny-ops-user (line 5): 198.18.8.1 is in 198.18.8.0/24; uid 1234 is in 1234');
    assert.deepEqual(asUser.decidedBy, { kind: 'rule', rule: 'deny-ops-user', action: 'deny', line: 5 });
  });

  it('the default deny: the rules that would allow it and on what condition, or none', () => {
    const ex = explain(policy, q('198.18.2.9', { proto: 'tcp', port: 22 }));
    assert.equal(ex.summary, 'blocked by the default deny: no rule allows it; rule ops (line 17) would allow it only for users root (0), 1234, only for services ssh.service, /system.slice/cron.service, only out of eth0, wg*');
    assert.deepEqual(ex.decidedBy, { kind: 'default' });
    const nowhere = explain(policy, q('198.18.99.1', { proto: 'tcp', port: 22 }));
    assert.equal(nowhere.summary, 'blocked by the default deny: no rule allows it');
    assert.deepEqual(nowhere.conditional, []);
    const name = explain(policy, q('other.example.com', { proto: 'tcp', port: 8080 }));
    assert.equal(name.verdict, 'block');
    assert.equal(
      name.summary,
      'blocked by the default deny: no rule allows it; rule web (line 3) would allow it depends on what other.example.com resolves to (this rule lists addresses); rule mixed (line 9) would allow it depends on what other.example.com resolves to (this rule lists addresses); rule anyport (line 11) would allow it depends on what other.example.com resolves to (this rule lists addresses); rule ops (line 17) would allow it depends on what other.example.com resolves to (this rule lists addresses), only for users root (0), 1234, only for services ssh.service, /system.slice/cron.service, only out of eth0, wg*',
    );
    assert.deepEqual(name.conditional.map((m) => m.rule).sort(), ['deny-ops-user', 'meta', 'web', 'mixed', 'anyport', 'ops'].sort());
  });

  it('a conditional allow whose open part says neither "only" nor "depends" is described as conditions left open', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: part\n    to: [198.18.4.0/24]\n');
    const ex = explain(p, q('198.18.4.0/23'));
    assert.equal(ex.summary, 'blocked by the default deny: no rule allows it; rule part (line 3) would allow it under conditions the query left open');
  });

  it('audit mode says a block is only recorded; a default of allow says so', () => {
    const audit = policyFrom('mode: audit\nrules:\n  - name: x\n    to: [198.18.1.0/24]\n  - name: d\n    action: deny\n    to: [198.18.1.9]\n');
    const denied = explain(audit, q('198.18.1.9'));
    assert.equal(denied.enforced, false);
    assert.equal(denied.summary, 'blocked by deny rule d (line 5): 198.18.1.9 is in 198.18.1.9 [audit mode: recorded, not blocked]');
    assert.equal(explain(audit, q('198.18.2.1')).summary, 'blocked by the default deny: no rule allows it [audit mode: recorded, not blocked]');
    const open = policyFrom('mode: enforce\ndefault: allow\nrules:\n  - name: d\n    action: deny\n    to: [198.18.1.0/24]\n    users: [1234]\n');
    const ex = explain(open, q('198.18.1.1'));
    assert.equal(ex.verdict, 'allow');
    assert.deepEqual(ex.decidedBy, { kind: 'default' });
    assert.equal(ex.summary, 'allowed by the default (default: allow); unless deny rule d (198.18.1.1 is in 198.18.1.0/24; only for users 1234) applies');
    assert.equal(explain(open, q('198.18.2.1')).summary, 'allowed by the default (default: allow)');
  });

  it('loopback and this host\'s own addresses are allowed before any rule (a range only when wholly loopback)', () => {
    for (const d of ['127.0.0.1', '::1', '127.1.2.0/24', 'localhost']) {
      const ex = explain(policy, q(d, { proto: 'tcp', port: 1 }));
      assert.equal(ex.verdict, 'allow', d);
      assert.deepEqual(ex.decidedBy, { kind: 'loopback' }, d);
      assert.equal(ex.summary, 'allowed: loopback traffic is always allowed');
      assert.deepEqual(ex.conditional, []);
    }
    assert.notDeepEqual(explain(policy, q('126.255.255.0/23')).decidedBy, { kind: 'loopback' }, 'partly outside 127/8');
    assert.notDeepEqual(explain(policy, q('localhost.example')).decidedBy, { kind: 'loopback' });
    const local = explain(policy, q('198.18.99.1', { local: true }));
    assert.deepEqual(local.decidedBy, { kind: 'local' });
    assert.equal(local.summary, "allowed: traffic to this host's own addresses is always allowed");
    assert.deepEqual(local.conditional, []);
    assert.deepEqual(explain(policy, q('some.name', { local: true })).decidedBy, { kind: 'default' }, 'a name is not known to be local');
  });
});
