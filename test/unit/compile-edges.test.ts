/**
 * Unit: the compiler at its edges, written from the compile-ruleset mutants
 * no test reached (npm run mutate -- src/compile/compile-ruleset.ts,
 * 2026-12-07): the identity-group limit and what a rule past it gets, the
 * warnings for a guard without upstreams and for a scope's service that is
 * not running, and a scope's cgroup levels in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRuleset, serviceKey } from '../../src/compile/compile-ruleset.js';
import { MAX_IDENTITY_GROUPS } from '../../src/compile/flow-mark.js';
import type { Ruleset } from '../../src/compile/ruleset.js';
import { compileFrom, fakeEnv, policyFrom } from '../support/fixtures.js';

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

  it('flows.replies: the listed local ports, TCP and UDP told apart, in an interval set the reply rule looks up; ICMP replies accepted', () => {
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
      'mode: enforce\ndns:\n  guard: true\nflows:\n  replies: [8080/tcp]\nlog:\n  allowed: true\nrules:\n  - name: web\n    to: [a.example.com, 198.18.0.0/24, "2001:db8::/64"]\n    ports: [443/tcp, 53/udp, icmp]\n    users: [1000]\n    services: [x.service]\n    interfaces: [eth*]\n  - name: no\n    action: deny\n    to: [198.18.0.5]\n  - name: dot\n    to: [198.18.7.7]\n    ports: [853/tcp]\n',
      'mode: audit\ndns:\n  guard: true\nscopes:\n  - name: ci\n    mode: enforce\n    users: [2000]\nrules:\n  - name: web\n    to: [b.example.com]\n    users: [1000]\n  - name: no\n    action: deny\n    mode: enforce\n    to: [c.example.com]\n',
      'mode: enforce\nscopes:\n  - name: lab\n    mode: audit\n    services: [lab.service]\nrules:\n  - name: no\n    action: deny\n    mode: audit\n    to: [198.18.0.9]\n    users: [1000]\n  - name: yes\n    to: [198.18.0.0/15]\n    log: true\n',
    ];
    for (const yaml of policies) {
      const { ruleset } = compileFrom(yaml);
      const sets = new Set(ruleset.sets.map((x) => x.name));
      const limits = new Set(ruleset.limits.map((x) => x.name));
      const counters = new Set(ruleset.counters.map((x) => x.name));
      const chains = new Set(ruleset.chains.map((x) => x.name));
      let seen = 0;
      for (const c of ruleset.chains) {
        for (const r of c.rules) {
          for (const st of r.stmts) {
            seen++;
            if (st.k === 'lookup' || st.k === 'meter') assert.ok(sets.has(st.set), `${c.name}: set ${st.set}`);
            if (st.k === 'limit') assert.ok(limits.has(st.name), `${c.name}: limit ${st.name}`);
            if (st.k === 'counter') assert.ok(counters.has(st.name), `${c.name}: counter ${st.name}`);
            if (st.k === 'goto' || st.k === 'jump') assert.ok(chains.has(st.chain), `${c.name}: chain ${st.chain}`);
          }
        }
      }
      assert.ok(seen > 50, 'the walk saw the rules');
    }
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

