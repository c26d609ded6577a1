/** Comparing rulesets: what `status` and `plan` show as the difference. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withEpoch } from '../../src/compile/flow-mark.js';
import { diffRulesets, sameCompiled, sameRuleset } from '../../src/netfilter/compare-ruleset.js';
import { fromJson, toJson } from '../../src/state/state-store.js';
import { compileFrom } from '../support/fixtures.js';

const policy = (addrs: string[]) => compileFrom(`mode: enforce\nrules:\n  - name: api\n    to: [${addrs.join(', ')}]\n    ports: [443/tcp]\n`).ruleset;
const hosts = (n: number) => Array.from({ length: n }, (_, i) => `198.18.${Math.floor(i / 250)}.${(i % 250) + 1}`);

describe('unit: ruleset diff', () => {
  it('an element changed past the first 20 of a set shows in the truncated diff, and nothing else does', () => {
    const before = hosts(100);
    const after = [...before];
    after[70] = '198.19.9.9';
    const a = policy(before);
    const b = policy(after);
    assert.equal(sameRuleset(a, { ruleset: b, anomalies: [] }), false);
    const diff = diffRulesets(a, b, { maxElements: 20 });
    assert.ok(diff.some((l) => l.startsWith('-') && l.includes('198.18.0.71')), diff.join('\n'));
    assert.ok(diff.some((l) => l.startsWith('+') && l.includes('198.19.9.9')), diff.join('\n'));
    assert.equal(diff.filter((l) => /198\.18\.0\.(?!71\b)\d+/.test(l)).length, 0, `no unchanged element in the diff:\n${diff.join('\n')}`);
  });

  it('identical rulesets have no diff; a removed set element shows only as removed', () => {
    const a = policy(hosts(50));
    assert.deepEqual(diffRulesets(a, policy(hosts(50)), { maxElements: 20 }), []);
    const diff = diffRulesets(a, policy(hosts(50).filter((h) => h !== '198.18.0.40')), { maxElements: 20 });
    assert.ok(diff.some((l) => l.startsWith('-') && l.includes('198.18.0.40')), diff.join('\n'));
    assert.equal(diff.filter((l) => l.startsWith('+') && /198\.18\./.test(l)).length, 0, diff.join('\n'));
  });

  it('an element there twice reads as that element added once more, not as the set emptied (and the other way round)', () => {
    const a = policy(hosts(5));
    const b = structuredClone(a);
    const set = b.sets.find((s) => !s.dynamic && s.elements.length === 5);
    assert.ok(set);
    set.elements.push(structuredClone(set.elements[2] as (typeof set.elements)[number]));
    assert.equal(sameRuleset(a, { ruleset: b, anomalies: [] }), false);
    assert.deepEqual(diffRulesets(a, b, { maxElements: 20 }).filter((l) => /198\.18\./.test(l)), ['+\t\t\t198.18.0.3']);
    assert.deepEqual(diffRulesets(b, a, { maxElements: 20 }).filter((l) => /198\.18\./.test(l)), ['-\t\t\t198.18.0.3']);
  });

  it('sameCompiled: equal in compiler order, through the state file too; any element, a dynamic set aside, makes them differ', () => {
    const a = policy(hosts(1000));
    assert.equal(sameCompiled(a, policy(hosts(1000))), true);
    assert.equal(sameCompiled(a, fromJson(toJson(a))), true, 'the applied ruleset read back from applied.json');
    const changed = hosts(1000);
    changed[999] = '198.19.9.9';
    assert.equal(sameCompiled(a, policy(changed)), false);
    assert.equal(sameCompiled(a, withEpoch(a, 2)), false, 'another epoch is another ruleset');
    const dns = compileFrom('mode: enforce\nrules:\n  - name: api\n    to: [api.example.com]\n').ruleset;
    const learned = { ...dns, sets: dns.sets.map((s) => (s.dynamic ? { ...s, elements: [{ t: 'addr' as const, family: 4 as const, start: 1n, end: 1n }] } : s)) };
    assert.equal(sameCompiled(dns, learned), true, 'DNS-learned elements are run-time state');
  });
});
