/**
 * The owned table (policy `owned_table`, table flags owner and persist)
 * without the kernel: the policy key reaches the ruleset, the ruleset's
 * comparisons and state file keep it, the replace batch repeats the live
 * flags before it writes the new ones, the table decoder reads the owner,
 * and the watchdog's ownership finding. The kernel's side is in
 * test/integration/owned-table.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Ruleset } from '../../src/compile/ruleset.js';
import { renderRuleset } from '../../src/compile/render-nft.js';
import { findTampering, ownership } from '../../src/daemon/tamper-watch.js';
import { PolicyError } from '../../src/errors.js';
import { diffRulesets, sameCompiled, sameRuleset } from '../../src/netfilter/compare-ruleset.js';
import { attrMap, attrU32, NlWriter, parseMessages } from '../../src/netfilter/nl-attr.js';
import { MSG, TABLE, TABLE_F } from '../../src/netfilter/nl-constants.js';
import { decodeTable } from '../../src/netfilter/nft-decode.js';
import { encodeDelete, encodeReplace } from '../../src/netfilter/nft-encode.js';
import { fromJson, toJson } from '../../src/state/state-store.js';
import { compileFrom, policyFrom } from '../support/fixtures.js';

const YAML = (owned?: string) => `mode: enforce\n${owned !== undefined ? `owned_table: ${owned}\n` : ''}rules:\n  - name: lan\n    to: [198.18.2.0/24]\n`;
const owned = compileFrom(YAML('true')).ruleset;
const plain = compileFrom(YAML()).ruleset;
/** The owned ruleset without its flags (so that only they differ: the policy's hash is in the comment). */
const stripped = (): Ruleset => {
  const r = structuredClone(owned);
  delete r.owned;
  return r;
};

/** The flags of each NEWTABLE message of a batch, in order. */
const tableFlags = (buf: Buffer): number[] =>
  parseMessages(buf)
    .filter((m) => (m.type & 0xff) === MSG.NEWTABLE && m.type >> 8 !== 0)
    .map((m) => attrU32(attrMap(m.payload, 4).get(TABLE.FLAGS)) ?? -1);

describe('unit: the owned table', () => {
  it('owned_table: true makes an owned ruleset; absent or false, the ruleset has no owned key at all', () => {
    assert.equal(owned.owned, true);
    assert.equal('owned' in plain, false);
    assert.equal('owned' in compileFrom(YAML('false')).ruleset, false);
    assert.equal(policyFrom(YAML('true')).ownedTable, true);
    assert.equal(policyFrom(YAML()).ownedTable, false);
  });

  it('a value that is not a boolean is an error, not a guess', () => {
    for (const v of ['yes', '"true"', '1', 'owner']) assert.throws(() => policyFrom(YAML(v)), PolicyError, v);
  });

  it('the rendered table says flags owner, persist only when owned', () => {
    assert.match(renderRuleset(owned), /^\tflags owner, persist$/m);
    assert.doesNotMatch(renderRuleset(plain), /^\tflags /m);
  });

  it('owned and unowned rulesets differ in every comparison, and the state file keeps the difference', () => {
    assert.equal(sameCompiled(owned, stripped()), false);
    assert.equal(sameCompiled(stripped(), owned), false);
    assert.equal(sameRuleset(owned, { ruleset: stripped(), anomalies: [] }), false);
    assert.equal(sameRuleset(owned, { ruleset: structuredClone(owned), anomalies: [] }), true);
    assert.deepEqual(diffRulesets(owned, stripped(), { maxElements: 20 }), ['-\tflags owner, persist']);
    const back = fromJson<Ruleset>(toJson(owned));
    assert.equal(back.owned, true);
    assert.equal(sameCompiled(owned, back), true);
    assert.equal('owned' in fromJson<Ruleset>(toJson(plain)), false);
  });

  it('a replace repeats the live flags in its create-if-missing, then writes the new ones; a delete repeats them too', () => {
    const OP = TABLE_F.OWNER | TABLE_F.PERSIST;
    assert.deepEqual(tableFlags(encodeReplace(owned, undefined, { live: OP, table: OP }).finish()), [OP, OP]);
    assert.deepEqual(tableFlags(encodeReplace(plain, undefined, { live: OP, table: 0 }).finish()), [OP, 0]);
    assert.deepEqual(tableFlags(encodeReplace(plain).finish()), [0, 0], 'unowned by default');
    assert.deepEqual(tableFlags(encodeDelete('sluice', TABLE_F.PERSIST).finish()), [TABLE_F.PERSIST]);
  });

  it('the table decoder reads the owner attribute when the kernel sends one, and none when it does not', () => {
    const msg = (owner?: number) => {
      const w = new NlWriter();
      w.beginMsg((10 << 8) | MSG.NEWTABLE, 0, 1, 1);
      w.str(TABLE.NAME, 'sluice').u32be(TABLE.FLAGS, 6);
      if (owner !== undefined) w.u32be(TABLE.OWNER, owner);
      w.endMsg();
      const [m] = parseMessages(w.finish());
      assert.ok(m);
      return m;
    };
    assert.deepEqual(decodeTable(msg(4242)), { name: 'sluice', comment: '', flags: 6, owner: 4242 });
    assert.deepEqual(decodeTable(msg()), { name: 'sluice', comment: '', flags: 6 });
  });

  it('ownership: held by the daemon is fine; no owner, or another socket, is reported; nothing is looked at while let go or unowned', () => {
    const nf = (holds: boolean, port = 77) => ({ holds: () => holds, portId: () => port });
    const live = (owner?: number) => ({ ruleset: structuredClone(owned), anomalies: [], ...(owner !== undefined ? { owner } : {}) });
    assert.equal(ownership(owned, live(77), nf(true)), null);
    assert.match(ownership(owned, live(), nf(true)) ?? '', /no longer held by the daemon/);
    assert.match(ownership(owned, live(88), nf(true)) ?? '', /another process's netlink socket \(port 88\)/);
    assert.equal(ownership(owned, live(), nf(false)), null, 'let go for a command-line write');
    assert.equal(ownership(plain, { ruleset: plain, anomalies: [] }, nf(true)), null, 'not an owned policy');
    assert.equal(ownership(owned, null, nf(true)), null, 'a missing table is the shape check\'s finding');
    assert.equal(ownership(owned, live(), {}), null, 'a writer that never owns tables');
  });

  it('the watchdog counts a table that lost its flags, or gained them, as changed', () => {
    const opts = { elements: false, learned: null };
    assert.notDeepEqual(findTampering(owned, { ruleset: stripped(), anomalies: [] }, opts), []);
    assert.notDeepEqual(findTampering(stripped(), { ruleset: structuredClone(owned), anomalies: [] }, opts), []);
    assert.deepEqual(findTampering(owned, { ruleset: structuredClone(owned), anomalies: [] }, opts), []);
  });
});
