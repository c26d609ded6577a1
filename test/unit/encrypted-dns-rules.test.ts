/** DNS that would go around the guard: DoT anywhere, DoH to known endpoints and to the guard's own upstreams. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { fakeEnv, policyFrom } from '../support/fixtures.js';
import { interpret, type Packet } from '../support/interpret.js';

const RESOLVER = 0xc6120035n; // 198.18.0.53, the fixtures' upstream
const pkt = (daddr: bigint, dport: number): Packet => ({ family: 4, daddr, l4proto: 6, dport, uid: 1000, oif: 2, oifname: 'eth0', cgroupAncestors: [], ct: 'new' });

describe('unit: encrypted DNS around the guard', () => {
  it("HTTPS to the guard's upstream is blocked in enforce mode even when a broad rule allows HTTPS anywhere; a rule naming it still wins", () => {
    const broad = policyFrom(`mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: web\n    to: [any]\n    ports: [443/tcp]\n  - name: api\n    to: [api.example.com]\n`);
    const rs = compileRuleset(broad, fakeEnv(broad)).ruleset;
    const out = interpret(rs, pkt(RESOLVER, 443));
    assert.equal(out.verdict, 'reject');
    assert.ok(out.counters.includes('encrypted_dns'));
    assert.equal(interpret(rs, pkt(0xc6120202n, 443)).verdict, 'accept', 'other HTTPS is allowed');
    const named = policyFrom(`mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: doh\n    to: [198.18.0.53]\n    ports: [443/tcp]\n  - name: api\n    to: [api.example.com]\n`);
    assert.equal(interpret(compileRuleset(named, fakeEnv(named)).ruleset, pkt(RESOLVER, 443)).verdict, 'accept', 'explicitly allowed');
  });
});
