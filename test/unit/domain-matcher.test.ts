/**
 * The domain matcher against a reference written the plainest way (every
 * pattern compared with the whole name), on generated policies and names
 * built from labels that overlap on purpose (example / xample, cdn / a.cdn),
 * so that a suffix walk that starts in the wrong place, merges lists wrongly
 * or stops early disagrees with it. Plus what the guard asks of it besides
 * matching: encrypted endpoints, the deny names it resolves, `empty`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import type { Policy } from '../../src/policy/policy.js';
import { runs } from './support/arbitraries.js';
import { policyFrom } from '../support/fixtures.js';

const LABELS = ['a', 'b', 'cdn', 'example', 'xample', 'com', 'x-y', '_srv'];
const labels = fc.array(fc.constantFrom(...LABELS), { minLength: 1, maxLength: 4 });
const pattern = fc.record({ wildcard: fc.boolean(), labels: fc.array(fc.constantFrom(...LABELS), { minLength: 2, maxLength: 4 }) }).map((p) => (p.wildcard ? `*.${p.labels.join('.')}` : p.labels.join('.')));
const ruleArb = fc.record({ action: fc.constantFrom('allow', 'deny'), to: fc.array(pattern, { minLength: 1, maxLength: 3 }) });

function policyOf(rules: { action: string; to: string[] }[]): Policy {
  const yaml = rules.map((r, i) => `  - name: r${i}\n    action: ${r.action}\n    to: [${r.to.map((t) => JSON.stringify(t)).join(', ')}]\n`).join('');
  return policyFrom(`mode: enforce\nrules:\n${yaml}`);
}

/** The reference: each pattern against the whole lower-cased name; escaped names never match. */
function reference(policy: Policy, name: string): string[] {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (n.includes('\\')) return [];
  return policy.rules
    .filter((r) => r.domains.some((d) => (d.wildcard ? n.endsWith(`.${d.name}`) : n === d.name)))
    .map((r) => r.name)
    .sort();
}

const names = (rules: readonly { name: string }[]) => rules.map((r) => r.name).sort();

describe('unit: domain matcher', () => {
  it('property: match agrees with the plain reference on generated policies and names', () => {
    const queried = fc.tuple(labels, fc.boolean(), fc.boolean()).map(([ls, upper, dot]) => {
      const n = ls.join('.');
      return `${upper ? n.toUpperCase() : n}${dot ? '.' : ''}`;
    });
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 5 }), fc.array(queried, { minLength: 1, maxLength: 8 }), (rules, qs) => {
        const policy = policyOf(rules);
        const m = new DomainMatcher(policy);
        for (const q of qs) assert.deepEqual(names(m.match(q)), reference(policy, q), q);
      }),
      runs(400),
    );
  });

  it('a name several patterns match gets every rule once: exact and wildcard, two wildcards, one rule listing a name twice', () => {
    const p = policyOf([
      { action: 'allow', to: ['a.cdn.example.com', 'a.cdn.example.com'] },
      { action: 'allow', to: ['*.cdn.example.com'] },
      { action: 'deny', to: ['*.example.com'] },
      { action: 'allow', to: ['*.xample.com'] },
    ]);
    const m = new DomainMatcher(p);
    assert.deepEqual(names(m.match('a.cdn.example.com')), ['r0', 'r1', 'r2']);
    assert.deepEqual(names(m.match('b.cdn.example.com')), ['r1', 'r2']);
    assert.deepEqual(names(m.match('cdn.example.com')), ['r2']);
    assert.deepEqual(names(m.match('example.com')), [], 'a wildcard never matches its base, nor a name that merely ends like it');
    assert.deepEqual(names(m.exactly('a.cdn.example.com')), ['r0']);
    assert.deepEqual(names(m.exactly('b.cdn.example.com')), []);
  });

  it('an encrypted-DNS endpoint stays refused unless an allow rule names it exactly; a deny or a wildcard does not free it', () => {
    const list = ['dns.google', 'Cloudflare-DNS.com'];
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['x.example.com'] }]), list).encryptedEndpoint('dns.google'), true);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['x.example.com'] }]), list).encryptedEndpoint('CLOUDFLARE-dns.com.'), true);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['dns.google'] }]), list).encryptedEndpoint('dns.google'), false);
    assert.equal(new DomainMatcher(policyOf([{ action: 'deny', to: ['dns.google'] }]), list).encryptedEndpoint('dns.google'), true);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['*.google'] }]), list).encryptedEndpoint('dns.google'), true);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['x.example.com'] }]), list).encryptedEndpoint('dns.google.evil'), false);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['dns.google'] }])).encryptedEndpoint('dns.google'), false, 'no list, no endpoint');
  });

  it("deniedNames lists the exact names of deny rules with those rules only; allow-only names and wildcards are not in it", () => {
    const m = new DomainMatcher(
      policyOf([
        { action: 'allow', to: ['a.example.com', 'both.example.com'] },
        { action: 'deny', to: ['b.example.com', '*.evil.example.com', 'both.example.com'] },
      ]),
    );
    const got = m.deniedNames().map((d) => ({ name: d.name, rules: names(d.rules) }));
    assert.deepEqual(got.sort((x, y) => x.name.localeCompare(y.name)), [
      { name: 'b.example.com', rules: ['r1'] },
      { name: 'both.example.com', rules: ['r1'] },
    ]);
  });

  it('empty is true only for a policy without any domain pattern', () => {
    assert.equal(new DomainMatcher(policyFrom('rules:\n  - name: ip\n    to: [198.18.0.1]\n')).empty, true);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['a.example.com'] }])).empty, false);
    assert.equal(new DomainMatcher(policyOf([{ action: 'allow', to: ['*.example.com'] }])).empty, false);
  });
});
