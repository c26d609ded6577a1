/** explain: the deciding rule, and honest conditions when the query leaves something open. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePrefix } from '../../src/net/ip.js';
import { explain, type Query } from '../../src/policy/explain.js';
import { policyFrom } from '../support/fixtures.js';

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

function q(dest: string, rest: Partial<Query> = {}): Query {
  const p = parsePrefix(dest);
  return { dest: p.ok ? { kind: 'range', range: p.range } : { kind: 'name', name: dest }, ...rest };
}

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
});
