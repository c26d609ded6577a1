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
});
