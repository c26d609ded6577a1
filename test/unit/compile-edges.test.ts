/**
 * Unit: the compiler at its edges, written from the compile-ruleset mutants
 * no test reached (npm run mutate -- src/compile/compile-ruleset.ts,
 * 2026-12-07): the identity-group limit and what a rule past it gets, the
 * warnings for a guard without upstreams and for a scope's service that is
 * not running, and a scope's cgroup levels in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRuleset, dnsLogGroup, serviceKey } from '../../src/compile/compile-ruleset.js';
import { MAX_IDENTITY_GROUPS } from '../../src/compile/flow-mark.js';
import { protoPortSet, type KeyType, type Ruleset, type Selector } from '../../src/compile/ruleset.js';
import { compileRunRuleset } from '../../src/compile/run-ruleset.js';
import { compileFrom, fakeEnv, policyFrom } from '../support/fixtures.js';

/** A run's network, as test/unit/run.test.ts has it. */
const RUN_NET = { table: 'sluice-run-00000001', hostIf: 'slr00000001', guard4: 0xc612c001n, inner4: 0xc612c002n, guardPort: 25353, logGroup: 40001 };

/** The set key type each selector reads (src/netfilter/nft-expr.ts loads that many bytes). */
const KEY_OF: Partial<Record<Selector, KeyType>> = {
  'ip daddr': 'ipv4_addr',
  'ip saddr': 'ipv4_addr',
  'ip6 daddr': 'ipv6_addr',
  'ip6 saddr': 'ipv6_addr',
  'meta skuid': 'uid',
  'meta l4proto . th dport': 'inet_proto . inet_service',
  'th dport': 'inet_service',
  'meta l4proto . th sport': 'inet_proto . inet_service',
  'meta oifname': 'ifname',
  'meta iifname': 'ifname',
  'socket cgroupv2': 'cgroupv2',
  'icmpv6 type': 'icmpv6_type',
  'meta mark': 'mark',
  'ct mark': 'mark',
};
const rulesOf = (rs: Ruleset, chain: string) => rs.chains.find((c) => c.name === chain)?.rules ?? [];

describe('unit: compile-ruleset edges', () => {
  it(`the first ${MAX_IDENTITY_GROUPS} allow rules with an identity get a group each; the next is warned about and accepted without one`, () => {
    const n = MAX_IDENTITY_GROUPS + 1;
    const yaml = `mode: enforce\nrules:\n${Array.from({ length: n }, (_, i) => `  - name: r${i}\n    to: [198.18.${i >> 8}.${i & 255}]\n    users: [${1000 + i}]\n`).join('')}`;
    const { ruleset, warnings } = compileFrom(yaml);
    const last = `r${n - 1}`;
    assert.deepEqual(warnings, [`rule ${last}: more than ${MAX_IDENTITY_GROUPS} rules with users, services or interfaces; its flows are judged again on every packet (slower, and they end when a DNS-learned address expires)`]);
    const output = rulesOf(ruleset, 'output');
    const verdictOf = (rule: string) => output.filter((r) => r.comment === `allow ${rule}`).map((r) => r.stmts[r.stmts.length - 1]);
    assert.deepEqual(verdictOf(last), [{ k: 'verdict', v: 'accept' }], 'past the last group: accepted, and judged again on every packet');
    assert.deepEqual(
      verdictOf('r0').map((s) => s?.k),
      ['goto'],
      'the first rule: to its admit chain',
    );
  });

  it('with scopes, the groups they take come off the rules: the warning says rules and scopes', () => {
    const n = MAX_IDENTITY_GROUPS;
    const yaml = `mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    users: [4000]\nrules:\n${Array.from({ length: n }, (_, i) => `  - name: r${i}\n    to: [198.18.${i >> 8}.${i & 255}]\n    users: [${1000 + i}]\n`).join('')}`;
    const { warnings } = compileFrom(yaml);
    assert.deepEqual(warnings, [`rule r${n - 1}: more than ${MAX_IDENTITY_GROUPS} rules and scopes with users, services or interfaces; its flows are judged again on every packet (slower, and they end when a DNS-learned address expires)`]);
  });

  it('a guard with no upstream resolver is warned about: allowed names would get SERVFAIL', () => {
    const policy = policyFrom('mode: enforce\ndns:\n  guard: true\nrules:\n  - name: a\n    to: [a.example.com]\n');
    const env = { ...fakeEnv(policy), dns: { upstreams: [], encrypted: { addrs: [], names: [] } } };
    assert.ok(compileRuleset(policy, env).warnings.includes('the DNS guard has no upstream resolver: allowed names will get SERVFAIL (set dns.upstreams)'));
    assert.ok(!compileRuleset(policy, fakeEnv(policy)).warnings.some((w) => w.includes('no upstream')), 'the control: with an upstream, no warning');
    assert.ok(compileRuleset(policy, { cgroups: new Map() }).warnings.includes('the DNS guard has no upstream resolver: allowed names will get SERVFAIL (set dns.upstreams)'), 'no DNS facts at all: the same');
  });

  it("a scope's service with no cgroup now is warned about by its name, a unit's or a path's; its cgroups are matched level by level, shallowest first", () => {
    const policy = policyFrom('mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    services: [stopped.service, /lab.slice/gone, deep.service]\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    const env = fakeEnv(policy);
    const scope = policy.scopes[0];
    assert.ok(scope);
    const [, gone, deep] = scope.services;
    assert.ok(gone && deep);
    env.cgroups.set(serviceKey(gone), []);
    env.cgroups.set(serviceKey(deep), [
      { id: 9n, level: 3, path: '/system.slice/deep.service/x' },
      { id: 7n, level: 2, path: '/system.slice/deep.service' },
    ]);
    const { ruleset, warnings } = compileRuleset(policy, env);
    assert.deepEqual(warnings, [
      "scope lab: service stopped.service has no cgroup now (not running?); it keeps the policy's mode until the next apply",
      "scope lab: service /lab.slice/gone has no cgroup now (not running?); it keeps the policy's mode until the next apply",
    ]);
    const levels = ruleset.sets.filter((s) => s.key === 'cgroupv2').map((s) => [s.level, s.elements.map((e) => (e.t === 'num' ? e.value : null))]);
    assert.deepEqual(levels, [
      [2, [7n]],
      [3, [9n]],
    ]);
  });

  it('a prefix from the start or to the end of the address space is not the whole family: the rule still names its addresses', () => {
    const { ruleset } = compileFrom('mode: enforce\nrules:\n  - name: low\n    to: [0.0.0.0/8]\n  - name: high\n    to: [240.0.0.0/4]\n  - name: low6\n    to: ["::/8"]\n  - name: all4\n    to: [0.0.0.0/0]\n');
    const output = rulesOf(ruleset, 'output');
    const names = (rule: string) => output.filter((r) => r.comment === `allow ${rule}`).map((r) => r.stmts.some((x) => 'sel' in x && /daddr/.test(String(x.sel))));
    for (const rule of ['low', 'high', 'low6']) {
      assert.ok(names(rule).length > 0 && names(rule).every(Boolean), `${rule}: every nft rule matches the destination`);
    }
    assert.deepEqual(names('all4'), [false], 'the control: all of IPv4 needs no destination match');
  });

  it('flows.replies: the listed local ports, TCP and UDP told apart, in a set (interval, for the range) the reply rule looks up; ICMP replies accepted', () => {
    const { ruleset } = compileFrom('mode: enforce\nflows:\n  replies: [8080/tcp, 53/udp, 6000-6010/tcp]\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    const set = ruleset.sets.find((x) => x.name.endsWith('reply_ports'));
    assert.ok(set);
    assert.deepEqual({ ...set, elements: [...set.elements].sort((a, b) => (a.t === 'protoport' && b.t === 'protoport' ? a.from - b.from : 0)) }, {
      name: set.name,
      key: 'inet_proto . inet_service',
      interval: true,
      timeout: false,
      dynamic: false,
      elements: [
        { t: 'protoport', proto: 17, from: 53, to: 53 },
        { t: 'protoport', proto: 6, from: 6000, to: 6010 },
        { t: 'protoport', proto: 6, from: 8080, to: 8080 },
      ],
      comment: 'local ports that may answer inbound flows',
    });
    const output = rulesOf(ruleset, 'output');
    const byComment = (c: string) => output.filter((r) => r.comment === c).map((r) => r.stmts);
    assert.deepEqual(byComment('replies to inbound flows, from the listed ports'), [
      [{ k: 'ct', states: ['established'] }, { k: 'cmp', sel: 'ct direction', op: 'eq', value: 1 }, { k: 'lookup', sel: 'meta l4proto . th sport', set: set.name }, { k: 'verdict', v: 'accept' }],
    ]);
    assert.deepEqual(
      byComment('ICMP replies').map((st) => st.slice(2)),
      [1, 58].map((value) => [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value }, { k: 'verdict', v: 'accept' }]),
    );
  });

  it('a port set is a hash set when every element is one port, an interval set (pipapo, 0.4-1 us more a connection) only when one is a range, and a rule\'s single ports go in a hash set, its ranges in a set of ports per protocol: rule ports, reply ports, DNS ports, a run\'s', () => {
    const kinds = (rs: Ruleset) => Object.fromEntries(rs.sets.filter((x) => x.key === 'inet_proto . inet_service').map((x) => [x.name, x.interval]));
    const { ruleset } = compileFrom(
      'mode: enforce\nflows:\n  replies: [8080/tcp, 53/udp]\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: single\n    to: [198.18.0.1]\n    ports: [443/tcp, 53/udp]\n  - name: ranged\n    to: [198.18.0.2]\n    ports: [443/tcp, 8000-8001/tcp]\n  - name: named\n    to: [api.example.com]\n    ports: [443/tcp]\n',
    );
    const got = kinds(ruleset);
    const of = (suffix: string) => Object.entries(got).filter(([n]) => n.endsWith(suffix)).map(([, v]) => v);
    assert.deepEqual(of('single_p'), [false]);
    assert.deepEqual(of('named_p'), [false]);
    // A rule with ports and ranges: its single ports in a hash set of proto . port, its TCP ranges in an interval
    // set of ports (an rbtree, not pipapo) looked up behind meta l4proto tcp, each by a rule of its own.
    assert.deepEqual(of('ranged_p'), [false]);
    assert.deepEqual(of('ranged_pt'), [], 'not a proto . port set');
    const pt = ruleset.sets.find((x) => x.name.endsWith('ranged_pt'));
    assert.deepEqual(pt && { key: pt.key, interval: pt.interval, elements: pt.elements }, { key: 'inet_service', interval: true, elements: [{ t: 'port', from: 8000, to: 8001 }] });
    assert.equal(ruleset.sets.some((x) => x.name.endsWith('ranged_pu')), false, 'no UDP ranges, no UDP set');
    assert.deepEqual(ruleset.sets.find((x) => x.name.endsWith('ranged_p'))?.elements, [{ t: 'protoport', proto: 6, from: 443, to: 443 }]);
    const rulesWith = (suffix: string) => ruleset.chains.flatMap((c) => c.rules).filter((r) => r.stmts.some((x) => x.k === 'lookup' && x.set.endsWith(suffix)));
    assert.equal(rulesWith('ranged_p').length, rulesWith('ranged_pt').length, 'one rule per set, alike otherwise');
    assert.ok(rulesWith('ranged_p').length > 0);
    for (const r of rulesWith('ranged_pt')) {
      const at = r.stmts.findIndex((x) => x.k === 'lookup' && x.set.endsWith('ranged_pt'));
      assert.deepEqual(r.stmts.slice(at - 1, at + 1), [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: 6 }, { k: 'lookup', sel: 'th dport', set: pt?.name }]);
    }
    assert.deepEqual(of('reply_ports'), [false]);
    assert.deepEqual(of('dns_ports'), [false], 'the DNS ports, looked up on every packet of an established flow with the guard on, are a hash set');
    assert.equal(compileFrom('mode: enforce\nflows:\n  replies: [6000-6010/tcp]\nrules:\n  - name: a\n    to: [198.18.0.1]\n').ruleset.sets.find((x) => x.name.endsWith('reply_ports'))?.interval, true);
    // A run's table: its rule ports and its guard's port.
    const run = compileRunRuleset(policyFrom('mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.0/24]\n    ports: [443/tcp]\n  - name: r\n    to: [198.18.2.0/24]\n    ports: [1000-2000/udp]\n'), RUN_NET).ruleset;
    // The guard's port and api's 443 as proto . port sets; r's UDP range as a set of ports.
    assert.equal(run.sets.filter((x) => x.key === 'inet_proto . inet_service').length, 2);
    assert.equal(run.sets.filter((x) => x.key === 'inet_service').length, 1);
    for (const x of run.sets.filter((y) => y.key === 'inet_proto . inet_service')) {
      assert.equal(x.interval, x.elements.some((e) => e.t === 'protoport' && e.from !== e.to), x.name);
    }
    for (const x of run.sets.filter((y) => y.key === 'inet_service')) {
      assert.ok(x.interval && x.elements.every((e) => e.t === 'port' && e.from < e.to), x.name);
    }
    assert.deepEqual(protoPortSet({ name: 'p', elements: [{ t: 'protoport', proto: 6, from: 1, to: 1 }] }), { name: 'p', key: 'inet_proto . inet_service', interval: false, timeout: false, dynamic: false, elements: [{ t: 'protoport', proto: 6, from: 1, to: 1 }] });
  });

  it("DHCP by a host's DHCP client users: root alone is one comparison, root and others a lookup in a set of them", () => {
    const policy = policyFrom('mode: enforce\nrules:\n  - name: a\n    to: [198.18.0.1]\n');
    const dhcpRule = (rs: Ruleset) => rulesOf(rs, 'output').find((r) => r.comment === 'essentials: DHCP')?.stmts.filter((x) => 'sel' in x && x.sel === 'meta skuid');
    assert.deepEqual(dhcpRule(compileRuleset(policy, fakeEnv(policy)).ruleset), [{ k: 'cmp', sel: 'meta skuid', op: 'eq', value: 0 }]);
    const rs = compileRuleset(policy, { ...fakeEnv(policy), dhcpUids: [101] }).ruleset;
    const users = rs.sets.find((x) => x.name.endsWith('dhcp_users'));
    assert.ok(users);
    assert.deepEqual(dhcpRule(rs), [{ k: 'lookup', sel: 'meta skuid', set: users.name }]);
    assert.deepEqual([users.key, users.interval, users.timeout, users.dynamic, users.comment, users.elements], ['uid', false, false, false, 'DHCP clients: root, systemd-network', [{ t: 'num', value: 0n }, { t: 'num', value: 101n }]]);
  });

  it('identity groups: in audit mode with an enforce scope the would-block group is reserved, so no rule shares it or group 0; in pure audit mode no rule takes a group', () => {
    const groupsOf = (yaml: string) => {
      const { ruleset } = compileFrom(yaml);
      const admits = rulesOf(ruleset, 'output').filter((r) => r.comment === 'allow who').map((r) => r.stmts[r.stmts.length - 1]);
      return admits.map((v) => (v && v.k === 'goto' ? /(\d+)$/.exec(v.chain)?.[1] : undefined));
    };
    const rule = 'rules:\n  - name: who\n    to: [198.18.0.1]\n    users: [1000]\n';
    assert.deepEqual(groupsOf(`mode: audit\nscopes:\n  - name: ci\n    mode: enforce\n    users: [2000]\n${rule}`), ['2'], 'group 1 is the would-block flows of the audit policy');
    assert.deepEqual(groupsOf(`mode: enforce\n${rule}`), ['1']);
    assert.deepEqual(groupsOf(`mode: audit\n${rule}`), ['0'], 'nothing is refused in pure audit mode: no identity to re-check');
  });

  it('every set, limit, counter and chain a rule names is defined, across policies that use every construct', () => {
    const policies = [
      'mode: enforce\ndns:\n  guard: true\n  encrypted_dns: block\nflows:\n  replies: [8080/tcp, 9000-9010/udp]\nlog:\n  allowed: true\nrules:\n  - name: web\n    to: [a.example.com, 198.18.0.0/24, "2001:db8::/64", 198.18.9.1-198.18.9.7]\n    ports: [443/tcp, 53/udp, 6000-6100/tcp, icmp, icmpv6]\n    users: [1000]\n    services: [x.service, /lab.slice/y]\n    interfaces: [eth*, wg0]\n  - name: no\n    action: deny\n    to: [198.18.0.5, "2001:db8::5", b.example.com]\n  - name: dot\n    to: [198.18.7.7, "2001:db8::53", dot.example.com]\n    ports: [853/tcp]\n',
      'mode: audit\ndns:\n  guard: true\nscopes:\n  - name: ci\n    mode: enforce\n    users: [2000]\nrules:\n  - name: web\n    to: [b.example.com]\n    users: [1000]\n  - name: no\n    action: deny\n    mode: enforce\n    to: [c.example.com]\n',
      'mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    services: [lab.service]\nrules:\n  - name: no\n    action: deny\n    mode: audit\n    to: [198.18.0.9]\n    users: [1000]\n  - name: yes\n    to: [198.18.0.0/15]\n    log: true\n',
    ];
    for (const yaml of policies) {
      const { ruleset } = compileFrom(yaml);
      const sets = new Set(ruleset.sets.map((x) => x.name));
      const byName = new Map(ruleset.sets.map((x) => [x.name, x]));
      for (const set of ruleset.sets) {
        for (const e of set.elements) {
          // A range, a prefix or a wildcard needs an interval set; an element's timeout needs a timeout set.
          const ranged = (e.t === 'addr' && e.start !== e.end) || (e.t === 'protoport' && e.from !== e.to) || (e.t === 'ifname' && e.wildcard);
          if (ranged) assert.ok(set.interval, `${set.name}: a range in a set without the interval flag`);
          if ((e.t === 'addr' || e.t === 'num') && e.timeoutMs !== undefined) assert.ok(set.timeout, `${set.name}: an element timeout`);
        }
        // A meter's set is filled by the kernel: dynamic (its elements never compared, or tamper-watch would
        // see every user's bucket as a change), with timeouts, keyed by uid, no elements of its own.
        if (set.meter) assert.deepEqual([set.dynamic, set.timeout, set.interval, set.key, set.elements.length], [true, true, false, 'uid', 0], set.name);
      }
      assert.ok(ruleset.sets.some((x) => x.meter), 'the walk saw a meter set');
      const limits = new Set(ruleset.limits.map((x) => x.name));
      const counters = new Set(ruleset.counters.map((x) => x.name));
      const chains = new Set(ruleset.chains.map((x) => x.name));
      let seen = 0;
      for (const c of ruleset.chains) {
        for (const r of c.rules) {
          for (const st of r.stmts) {
            seen++;
            if (st.k === 'lookup' || st.k === 'meter') {
              assert.ok(sets.has(st.set), `${c.name}: set ${st.set}`);
              // The kernel reads the set's key length from the register whatever was loaded there: a
              // selector of another type (ip daddr in an IPv6 set) is accepted and never matches.
              assert.equal(byName.get(st.set)?.key, KEY_OF[st.sel], `${c.name}: ${st.sel} looked up in ${st.set}`);
            }
            if (st.k === 'limit') assert.ok(limits.has(st.name), `${c.name}: limit ${st.name}`);
            if (st.k === 'counter') assert.ok(counters.has(st.name), `${c.name}: counter ${st.name}`);
            if (st.k === 'goto' || st.k === 'jump') assert.ok(chains.has(st.chain), `${c.name}: chain ${st.chain}`);
          }
        }
      }
      assert.ok(seen > 50, 'the walk saw the rules');
    }
  });

  it('pure audit mode assigns no identity groups, so it warns of no group limit however many identity rules it has', () => {
    const n = MAX_IDENTITY_GROUPS + 2;
    const yaml = `mode: audit\nrules:\n${Array.from({ length: n }, (_, i) => `  - name: r${i}\n    to: [198.18.${i >> 8}.${i & 255}]\n    users: [${1000 + i}]\n`).join('')}`;
    assert.deepEqual(compileFrom(yaml).warnings, []);
    assert.equal(compileFrom(yaml.replace('mode: audit', 'mode: enforce')).warnings.length, 2, 'the control: enforced, the two past the limit are warned about');
  });

  it("the DNS log group is the event group plus one, and 65534 when the event group is the last one", () => {
    assert.equal(dnsLogGroup(policyFrom('log:\n  group: 100\nrules: []\n')), 101);
    assert.equal(dnsLogGroup(policyFrom('log:\n  group: 65535\nrules: []\n')), 65534);
  });

  it("a rule's service with no cgroup now is warned about by its name, a unit's or a path's", () => {
    const policy = policyFrom('mode: enforce\nrules:\n  - name: a\n    to: [198.18.0.1]\n    services: [stopped.service]\n  - name: b\n    to: [198.18.0.2]\n    services: [/lab.slice/gone]\n');
    const env = fakeEnv(policy);
    const path = policy.rules[1]?.services[0];
    assert.ok(path);
    env.cgroups.set(serviceKey(path), []);
    assert.deepEqual(compileRuleset(policy, env).warnings, [
      'rule a: service stopped.service has no cgroup now (not running?); the rule cannot match it until the next apply',
      'rule b: service /lab.slice/gone has no cgroup now (not running?); the rule cannot match it until the next apply',
    ]);
  });

  it("a scope's cgroup ids: once each, sorted, one set per level", () => {
    const policy = policyFrom('mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    services: [a.service, b.service]\nrules:\n  - name: r\n    to: [198.18.0.1]\n');
    const env = fakeEnv(policy);
    const [a, b] = policy.scopes[0]?.services ?? [];
    assert.ok(a && b);
    env.cgroups.set(serviceKey(a), [
      { id: 30n, level: 2, path: '/system.slice/a.service/z' },
      { id: 10n, level: 2, path: '/system.slice/a.service/x' },
    ]);
    env.cgroups.set(serviceKey(b), [
      { id: 20n, level: 2, path: '/system.slice/b.service/y' },
      { id: 10n, level: 2, path: '/system.slice/a.service/x' },
    ]);
    const { ruleset } = compileRuleset(policy, env);
    assert.deepEqual(
      ruleset.sets.filter((x) => x.key === 'cgroupv2').map((x) => x.elements.map((e) => (e.t === 'num' ? e.value : null))),
      [[10n, 20n, 30n]],
    );
  });

  it("a DNS set's comment: the rule, a hash and its names, whole up to 200 bytes, cut to 190 and '...' past them", () => {
    // "rule a [" + 12 hex digits + "]: " is 23 bytes; the rest is the name.
    const commentFor = (nameBytes: number) => {
      const label = (n: number, c: string) => c.repeat(n);
      const rest = nameBytes - 4 - 63 - 1 - 63 - 1; // ".com" and two full labels with their dots
      const name = `${label(63, 'a')}.${label(63, 'b')}.${label(rest, 'c')}.com`;
      assert.equal(name.length, nameBytes);
      const { ruleset } = compileFrom(`mode: enforce\ndns:\n  guard: true\nrules:\n  - name: a\n    to: [${name}]\n`);
      const set = ruleset.sets.find((x) => x.dynamic && x.comment?.startsWith('rule a ['));
      assert.ok(set?.comment);
      return { comment: set.comment, name };
    };
    const whole = commentFor(177);
    assert.equal(Buffer.byteLength(whole.comment), 200);
    assert.match(whole.comment, new RegExp(`^rule a \\[[0-9a-f]{12}\\]: ${whole.name}$`));
    const cut = commentFor(178);
    assert.equal(cut.comment, `${`rule a [${cut.comment.slice(8, 20)}]: ${cut.name}`.slice(0, 190)}...`);
  });

  it('in audit mode with an enforce scope, a deny rule audited by its own mode is not judged again for the scope: it refuses no one', () => {
    const flowsOf = (mode: string) =>
      rulesOf(compileFrom(`mode: audit\nscopes:\n  - name: ci\n    mode: enforce\n    users: [2000]\nrules:\n  - name: no\n    action: deny\n${mode}    to: [198.18.0.9]\n    users: [1000]\n`).ruleset, 'flows')
        .map((r) => r.comment)
        .filter((c) => c?.startsWith('deny no'));
    assert.deepEqual(flowsOf('    mode: audit\n'), []);
    assert.deepEqual(flowsOf(''), ['deny no: judged again'], 'the control: without its own mode it is the policy\'s, enforced for the scope');
  });

  it("a service scope's DNS queries carry the scope's mark only when the scope is in audit: under an audit policy an enforce scope's carry the sender's uid", () => {
    const scoped = (yaml: string) =>
      compileFrom(yaml)
        .ruleset.chains.flatMap((c) => c.rules)
        .filter((r) => r.comment?.startsWith('a DNS query from scope'))
        .map((r) => r.comment);
    const rule = 'rules:\n  - name: a\n    to: [a.example.com]\n';
    assert.deepEqual(scoped(`mode: enforce\ndns:\n  guard: true\nscopes:\n  - name: lab\n    mode: audit\n    services: [lab.service]\n${rule}`), ['a DNS query from scope lab (audit)', 'a DNS query from scope lab (audit)'], 'the control: port 53 and the guard port');
    assert.deepEqual(scoped(`mode: audit\ndns:\n  guard: true\nscopes:\n  - name: ci\n    mode: enforce\n    services: [ci.service]\n${rule}`), []);
  });

  it('elements are sorted, whatever the order in the policy: users, scope users, cgroup ids', () => {
    const policy = policyFrom('mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    users: [3002, 3000, 3001]\nrules:\n  - name: who\n    to: [198.18.0.1]\n    users: [1002, 1000, 1001]\n    services: [s.service]\n');
    const env = fakeEnv(policy);
    const svc = policy.rules[0]?.services[0];
    assert.ok(svc);
    env.cgroups.set(serviceKey(svc), [
      { id: 30n, level: 2, path: '/system.slice/s.service/c' },
      { id: 10n, level: 2, path: '/system.slice/s.service/a' },
      { id: 20n, level: 2, path: '/system.slice/s.service/b' },
      { id: 20n, level: 2, path: '/system.slice/s.service/b' },
    ]);
    const { ruleset } = compileRuleset(policy, env);
    const nums = (pred: (name: string, key: string) => boolean) => ruleset.sets.filter((x) => !x.dynamic && pred(x.name, x.key)).map((x) => x.elements.map((e) => (e.t === 'num' ? e.value : null)));
    assert.deepEqual(nums((n, k) => k === 'uid' && !n.includes('lab') && !n.includes('dhcp')), [[1000n, 1001n, 1002n]]);
    assert.deepEqual(nums((n, k) => k === 'uid' && n.includes('lab')), [[3000n, 3001n, 3002n]]);
    assert.deepEqual(nums((_n, k) => k === 'cgroupv2'), [[10n, 20n, 30n]], 'once each, in order');
  });
});

