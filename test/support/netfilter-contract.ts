/**
 * The contract every Netfilter implementation keeps. Run against the fake in
 * the unit tier and against the kernel (inside a test namespace) in the
 * integration tier, so the fake never drifts from what the kernel does.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { objectNames } from '../../src/compile/kernel-names.js';
import { TABLE_NAME, type Ruleset } from '../../src/compile/ruleset.js';
import { NetlinkError } from '../../src/errors.js';
import { sameRuleset } from '../../src/netfilter/compare-ruleset.js';
import type { Netfilter } from '../../src/netfilter/netfilter.js';
import { compileRunRuleset } from '../../src/compile/run-ruleset.js';
import { forwardGuardRuleset } from '../../src/run/sandbox.js';
import { compileFrom, policyFrom, readGolden } from './fixtures.js';

const POLICY_A = readGolden('03-ports.yaml');
const POLICY_B = readGolden('07-domains.yaml');

function broken(rs: Ruleset): Ruleset {
  const copy = structuredClone(rs);
  const chain = copy.chains.find((c) => c.name === 'output');
  chain?.rules.push({ stmts: [{ k: 'lookup', sel: 'ip daddr', set: 'no_such_set' }, { k: 'verdict', v: 'accept' }] });
  return copy;
}

export function netfilterContract(label: string, make: () => Netfilter): void {
  describe(`contract: Netfilter (${label})`, () => {
    let nf: Netfilter;
    beforeEach(() => {
      nf = make();
      nf.remove(TABLE_NAME);
    });
    afterEach(() => {
      nf.remove(TABLE_NAME);
      nf.close();
    });

    it('reads nothing and removes nothing when there is no table', () => {
      assert.equal(nf.read(TABLE_NAME), null);
      assert.equal(nf.remove(TABLE_NAME), false);
      assert.equal(nf.counters(TABLE_NAME).size, 0);
    });

    it('reads back exactly what it wrote, with every named counter at zero', () => {
      const { ruleset } = compileFrom(POLICY_A);
      nf.replace(ruleset);
      const live = nf.read(TABLE_NAME);
      assert.ok(live);
      assert.deepEqual(live.anomalies, []);
      assert.ok(sameRuleset(ruleset, live));
      const counters = nf.counters(TABLE_NAME);
      for (const c of ruleset.counters) assert.equal(counters.get(c.name)?.packets, 0n, c.name);
    });

    it("a `sluice run` table (forward, input and NAT hooks, iifname, DNAT to the guard, masquerade) and the forward guard read back exactly as written", () => {
      const policy = policyFrom('mode: enforce\nrules:\n  - name: api\n    to: [api.example.com, 198.18.1.0/24, 198.18.2.2, "2001:db8::/48"]\n    ports: [443/tcp, 53/udp]\n  - name: no\n    action: deny\n    to: [198.18.1.254]\n  - name: ping\n    to: [198.18.3.3]\n    ports: [icmp]\n');
      const run = compileRunRuleset(policy, { table: 'sluice-run-0123abcd', hostIf: 'slr0123abcd', guard4: 0xc612c001n, inner4: 0xc612c002n, guard6: 0x20010db8005c00000000000000000001n, inner6: 0x20010db8005c00000000000000000002n, guardPort: 25353, logGroup: 40001 }).ruleset;
      for (const rs of [run, forwardGuardRuleset()]) {
        try {
          nf.replace(rs, { carryDynamic: false });
          const live = nf.read(rs.table);
          assert.ok(live, rs.table);
          assert.deepEqual(live.anomalies, [], rs.table);
          assert.ok(sameRuleset(rs, live), `${rs.table} reads back as compiled`);
        } finally {
          nf.remove(rs.table);
        }
      }
    });

    it('a second replace swaps the whole table', () => {
      const a = compileFrom(POLICY_A).ruleset;
      const b = compileFrom(POLICY_B).ruleset;
      nf.replace(a);
      nf.replace(b);
      const live = nf.read(TABLE_NAME);
      assert.ok(live && sameRuleset(b, live));
      assert.ok(!sameRuleset(a, live));
    });

    it('a replace that the kernel refuses leaves the previous table in force', () => {
      const a = compileFrom(POLICY_A).ruleset;
      nf.replace(a);
      assert.throws(() => nf.replace(broken(compileFrom(POLICY_B).ruleset)), NetlinkError);
      const live = nf.read(TABLE_NAME);
      assert.ok(live && sameRuleset(a, live), 'previous table unchanged');
    });

    it('two chains, two sets or two counters of one name are refused, and the previous table stays', () => {
      const a = compileFrom(POLICY_A).ruleset;
      nf.replace(a);
      const b = compileFrom(POLICY_B).ruleset;
      for (const dup of [
        { ...b, chains: [...b.chains, { name: b.chains[1]?.name ?? '', rules: [] }] },
        { ...b, sets: [...b.sets, { ...(b.sets[0] as Ruleset['sets'][number]), elements: [] }] },
        { ...b, counters: [...b.counters, { name: b.counters[0]?.name ?? '' }] },
      ]) {
        assert.throws(() => nf.replace(dup), NetlinkError);
      }
      const live = nf.read(TABLE_NAME);
      assert.ok(live && sameRuleset(a, live), 'previous table unchanged');
    });

    it('a port range in a hash set of ports is refused (only an interval set holds ranges), and the previous table stays', () => {
      const a = compileFrom(POLICY_A).ruleset;
      nf.replace(a);
      const b = compileFrom(POLICY_B).ruleset;
      const ports = b.sets.find((s) => s.key === 'inet_proto . inet_service' && !s.interval);
      assert.ok(ports, 'the policy has a hash set of ports');
      const bad = { ...b, sets: b.sets.map((s) => (s === ports ? { ...s, elements: [...s.elements, { t: 'protoport' as const, proto: 6, from: 8000, to: 8100 }] } : s)) };
      assert.throws(() => nf.replace(bad));
      const live = nf.read(TABLE_NAME);
      assert.ok(live && sameRuleset(a, live), 'previous table unchanged');
    });

    it('a meter on a set not made for it (no dynamic flag) is refused, and the previous table stays', () => {
      const a = compileFrom(POLICY_A).ruleset;
      nf.replace(a);
      const b = structuredClone(compileFrom(POLICY_A).ruleset);
      for (const s of b.sets) if (s.meter) s.meter = false;
      assert.throws(() => nf.replace(b), NetlinkError);
      const live = nf.read(TABLE_NAME);
      assert.ok(live && sameRuleset(a, live), 'previous table unchanged');
    });

    it('remove deletes the table once', () => {
      nf.replace(compileFrom(POLICY_A).ruleset);
      assert.equal(nf.remove(TABLE_NAME), true);
      assert.equal(nf.read(TABLE_NAME), null);
      assert.equal(nf.remove(TABLE_NAME), false);
    });

    it('remove of an unowned table (a run\'s) deletes it without reading it first, present or not', () => {
      nf.replace(compileFrom(POLICY_A).ruleset);
      assert.equal(nf.remove(TABLE_NAME, { unowned: true }), true);
      assert.equal(nf.read(TABLE_NAME), null);
      // Absent: nothing to delete, nothing made.
      nf.remove(TABLE_NAME, { unowned: true });
      assert.equal(nf.read(TABLE_NAME), null);
    });

    it('elements added to a dynamic set are read back with their timeout, and survive a replace', () => {
      const { ruleset } = compileFrom(POLICY_B);
      nf.replace(ruleset);
      const set = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 4));
      assert.ok(set);
      nf.addElements(TABLE_NAME, [
        {
          set,
          elems: [
            { t: 'addr', family: 4, start: 0xc6120a01n, end: 0xc6120a01n, timeoutMs: 300_000 },
            { t: 'addr', family: 4, start: 0xc6120a02n, end: 0xc6120a02n, timeoutMs: 300_000 },
          ],
        },
      ]);
      const read = () => nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.find((s) => s.name === set.name)?.elements ?? [];
      const before = read();
      assert.equal(before.length, 2);
      for (const e of before) assert.ok(e.t === 'addr' && (e.timeoutMs ?? 0) > 0, 'elements carry a timeout');
      nf.replace(ruleset);
      assert.equal(read().length, 2, 'learned addresses are carried across a replace');
      assert.ok(sameRuleset(ruleset, nf.read(TABLE_NAME) as NonNullable<ReturnType<Netfilter['read']>>), 'dynamic contents never count as drift');
    });

    it('adding an element of the wrong family is refused', () => {
      const { ruleset } = compileFrom(POLICY_B);
      nf.replace(ruleset);
      const set = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 4));
      assert.ok(set);
      assert.throws(() => nf.addElements(TABLE_NAME, [{ set, elems: [{ t: 'addr', family: 6, start: 1n, end: 1n }] }]));
    });

    it('elements for several sets go in one transaction: one bad change and none is added', () => {
      const { ruleset } = compileFrom(POLICY_B);
      nf.replace(ruleset);
      const v4 = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 4));
      const v6 = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 6));
      assert.ok(v4 && v6);
      assert.throws(() =>
        nf.addElements(TABLE_NAME, [
          { set: v4, elems: [{ t: 'addr', family: 4, start: 0xc6120a05n, end: 0xc6120a05n, timeoutMs: 60_000 }] },
          { set: { name: 'no_such_set', key: 'ipv6_addr', interval: false }, elems: [{ t: 'addr', family: 6, start: 5n, end: 5n, timeoutMs: 60_000 }] },
        ]),
      );
      const dyn = nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.find((s) => s.name === v4.name)?.elements ?? [];
      assert.equal(dyn.length, 0, 'nothing from the failed transaction was added');
      nf.addElements(TABLE_NAME, [
        { set: v4, elems: [{ t: 'addr', family: 4, start: 0xc6120a05n, end: 0xc6120a05n, timeoutMs: 60_000 }] },
        { set: v6, elems: [{ t: 'addr', family: 6, start: 5n, end: 5n, timeoutMs: 60_000 }] },
      ]);
      const all = nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.flatMap((s) => s.elements) ?? [];
      assert.equal(all.length, 2);
    });

    it('deletions go first, in the same transaction as the additions; deleting an element the set lacks fails the whole transaction', () => {
      const { ruleset } = compileFrom(POLICY_B);
      nf.replace(ruleset);
      const v4 = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 4));
      assert.ok(v4);
      const el = (a: bigint) => ({ t: 'addr' as const, family: 4 as const, start: a, end: a, timeoutMs: 60_000 });
      const key = (a: bigint) => ({ t: 'addr' as const, family: 4 as const, start: a, end: a });
      const read = () =>
        (nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.find((s) => s.name === v4.name)?.elements ?? [])
          .map((e) => (e.t === 'addr' ? e.start : 0n))
          .sort();
      nf.addElements(TABLE_NAME, [{ set: v4, elems: [el(1n), el(2n)] }]);
      nf.addElements(TABLE_NAME, [{ set: v4, elems: [el(3n), el(1n)], remove: [key(1n), key(2n)] }]);
      assert.deepEqual(read(), [1n, 3n], '2 deleted; 1 deleted and added again');
      assert.throws(() => nf.addElements(TABLE_NAME, [{ set: v4, elems: [el(4n)], remove: [key(9n)] }]), NetlinkError);
      assert.deepEqual(read(), [1n, 3n], 'nothing of the refused transaction happened');
    });

    it('refresh gives an element its new timeout, whether it is there, gone, or past its expiry and not yet collected', async () => {
      const { ruleset } = compileFrom(POLICY_B);
      nf.replace(ruleset);
      const v4 = ruleset.sets.find((s) => s.name === objectNames.dnsSet('api', 4));
      assert.ok(v4);
      const el = (a: bigint, timeoutMs: number) => ({ t: 'addr' as const, family: 4 as const, start: a, end: a, timeoutMs });
      const now = Date.now();
      const LONG = 600_000;
      nf.addElements(TABLE_NAME, [{ set: v4, elems: [el(1n, 30_000), el(2n, 30_000), el(4n, 1_000), el(6n, LONG)] }]);
      await new Promise((r) => setTimeout(r, 1_100)); // 4 has expired; the kernel collects it some time later
      // A change with nothing but refreshes (the usual case: an answer repeated with a longer TTL) ...
      nf.addElements(TABLE_NAME, [
        {
          set: v4,
          elems: [],
          refresh: [
            { elem: el(1n, LONG), expiresAt: now + 30_000 }, // there, well within its life
            { elem: el(2n, LONG), expiresAt: now + 1_500 }, // there, though the writer thinks it is about to go
            { elem: el(6n, LONG), expiresAt: now + LONG }, // the same timeout it has: its expiry starts again
          ],
        },
      ]);
      // ... and one beside additions.
      nf.addElements(TABLE_NAME, [
        {
          set: v4,
          elems: [el(5n, LONG)],
          refresh: [
            { elem: el(3n, LONG), expiresAt: now + 30_000 }, // the writer thinks it is there; someone deleted it
            { elem: el(4n, LONG), expiresAt: now + 1_000 }, // expired
          ],
        },
      ]);
      const got = new Map(
        (nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.find((s) => s.name === v4.name)?.elements ?? []).map((e) => [e.t === 'addr' ? e.start : -1n, e]),
      );
      assert.deepEqual([...got.keys()].sort(), [1n, 2n, 3n, 4n, 5n, 6n]);
      for (const [a, e] of got) {
        assert.ok(e.t === 'addr' && e.timeoutMs === LONG, `element ${a}: timeout ${e.t === 'addr' ? e.timeoutMs : '?'}`);
        // Read at once: every one starts its new life now, element 6 too (not 1.1 s into its old one).
        if (e.t === 'addr' && e.expiresMs !== undefined) assert.ok(e.expiresMs > LONG - 700, `element ${a} expires in ${e.expiresMs} ms`);
      }
    });
  });
}
