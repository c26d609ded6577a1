/**
 * Unit: the Policy page's rules (dashboard-rules.ts): each rule of the
 * applied policy with what it matches, its own mode and scopes, and the
 * kernel counters as the metric families /metrics exposes give them (the
 * families built here by kernelCounterFamilies from named counters, as the
 * dashboard's thread builds them from its counter read): rules never hit,
 * a rule the kernel has no counter for (unknown, not unhit), the default
 * action's count, and the cap on what is listed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildCounterName } from '../../src/compile/kernel-names.js';
import { dashboardRules, MAX_LISTED_RULES } from '../../src/daemon/dashboard-rules.js';
import { kernelCounterFamilies, kernelMetricsContext } from '../../src/daemon/kernel-counter-metrics.js';
import type { CounterValue } from '../../src/netfilter/netfilter.js';
import { policyFrom } from '../support/fixtures.js';

const POLICY = `mode: enforce
rules:
  - name: web
    to: [api.example.com, "*.cdn.example", 198.18.1.0/24, 198.18.2.20]
    ports: [443/tcp, 8000-8080/tcp]
    log: true
    comment: the site's API
  - name: dns-out
    to: [198.18.0.53]
    ports: [53/udp]
    users: [www-data, 65534]
  - name: no-meta
    action: deny
    to: [198.18.9.9]
    mode: audit
  - name: spare
    to: [198.18.3.3]
scopes:
  - name: trial
    mode: audit
    users: [www-data]
`;

const counters = (m: Record<string, [number, number]>) => new Map<string, CounterValue>(Object.entries(m).map(([k, [p, b]]) => [k, { packets: BigInt(p), bytes: BigInt(b) } as CounterValue]));
const rule = (name: string) => buildCounterName({ kind: 'rule', rule: name });

describe('unit: the Policy page rules with their kernel hit counters', () => {
  it('each rule with its action, what it matches, its own mode and scopes, and its packets and bytes; never hit; the default', () => {
    const policy = policyFrom(POLICY);
    const c = counters({ [rule('web')]: [12, 720], [rule('dns-out')]: [0, 0], [rule('no-meta')]: [3, 180], [rule('spare')]: [0, 0], [buildCounterName({ kind: 'default' })]: [7, 420] });
    const r = dashboardRules(policy, kernelCounterFamilies(c, kernelMetricsContext(policy)));
    assert.equal(r.counted, true);
    assert.equal(r.total, 4);
    assert.deepEqual(r.scopes, [{ name: 'trial', mode: 'audit', who: 'user www-data' }]);
    const [web, dns, meta, spare] = r.rules;
    assert.deepEqual({ ...web }, { name: 'web', action: 'allow', line: 3, to: 'api.example.com, *.cdn.example, 198.18.1.0/24, 198.18.2.20', ports: '443/tcp, 8000-8080/tcp', from: 'anyone', interfaces: null, mode: null, scopes: ['trial'], log: true, comment: "the site's API", packets: 12, bytes: 720 });
    assert.equal(dns?.from, 'user www-data, uid 65534');
    assert.deepEqual(dns?.scopes, ['trial']);
    assert.equal(dns?.ports, '53/udp');
    assert.equal(meta?.action, 'deny');
    assert.equal(meta?.mode, 'audit');
    assert.equal(spare?.ports, 'any');
    assert.deepEqual(r.neverHit, ['dns-out', 'spare']);
    assert.equal(r.neverHitTotal, 2);
    assert.deepEqual(r.default, { action: 'deny', packets: 7, bytes: 420 });
  });

  it('a rule the kernel has no counter for is unknown, not never hit; no counters read: nothing claimed', () => {
    const policy = policyFrom(POLICY);
    const r = dashboardRules(policy, kernelCounterFamilies(counters({ [rule('web')]: [1, 60] }), kernelMetricsContext(policy)));
    assert.equal(r.rules[1]?.packets, null);
    assert.deepEqual(r.neverHit, []);
    const none = dashboardRules(policy, null);
    assert.equal(none.counted, false);
    assert.equal(none.neverHitTotal, null);
    assert.ok(none.rules.every((x) => x.packets === null && x.bytes === null));
  });

  it(`lists at most ${MAX_LISTED_RULES} rules and spells out at most 6 destinations per rule, counting the rest`, () => {
    const n = MAX_LISTED_RULES + 5;
    const text = `mode: enforce\nrules:\n${Array.from({ length: n }, (_, i) => `  - name: r${i}\n    to: [${Array.from({ length: 8 }, (_, j) => `h${j}.r${i}.example`).join(', ')}]\n`).join('')}`;
    const policy = policyFrom(text);
    const r = dashboardRules(policy, kernelCounterFamilies(new Map(), kernelMetricsContext(policy)));
    assert.equal(r.total, n);
    assert.equal(r.rules.length, MAX_LISTED_RULES);
    assert.match(r.rules[0]?.to ?? '', / and 2 more$/);
  });
});
