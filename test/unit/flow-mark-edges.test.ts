/**
 * The edges of the flow-mark helpers the apply path trusts: which table
 * comments carry an epoch and layout (anything else is "no flow marks"),
 * epoch succession, and that moving a ruleset to another epoch touches
 * exactly Sluice's ct-mark statements. Written from the mutants that lived
 * through test/unit/flow-marks.test.ts (npm run mutate -- src/compile/flow-mark.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildTableComment } from '../../src/compile/kernel-names.js';
import { flowMarkFields, flowMarkLayout, flowTag, nextEpoch, rulesetFlowMark, withEpoch } from '../../src/compile/flow-mark.js';
import type { Ruleset, Stmt } from '../../src/compile/ruleset.js';

const SHA = 'b'.repeat(64);
const comment = (fields: Record<string, string>) => buildTableComment({ mode: 'enforce', sha256: SHA, fields });

function ruleset(fields: Record<string, string>, stmts: Stmt[] = []): Ruleset {
  return { table: 'sluice', comment: comment(fields), sets: [], counters: [], limits: [], chains: [{ name: 'flows', rules: [{ stmts }] }] };
}

describe('unit: flow marks, edges', () => {
  it('layouts: the shift is the lowest bit of the mask, and 0 for no mask', () => {
    assert.deepEqual(flowMarkLayout(0xffff0000), { mask: 0xffff0000, shift: 16 });
    assert.deepEqual(flowMarkLayout(0x0000ffff), { mask: 0x0000ffff, shift: 0 });
    assert.deepEqual(flowMarkLayout(0x00ffff00), { mask: 0x00ffff00, shift: 8 });
    assert.deepEqual(flowMarkLayout(0), { mask: 0, shift: 0 });
    assert.deepEqual(flowMarkFields(flowMarkLayout(0x0000ffff), 7), { ctmark: '0x0000ffff', epoch: '7' });
  });

  it('epochs run 1..255 and wrap to 1; nothing below 1 or missing continues', () => {
    assert.deepEqual([undefined, -5, 0, 1, 254, 255, 256].map(nextEpoch), [1, 1, 1, 2, 255, 1, 1]);
  });

  it('only a Sluice comment with a whole epoch in 1..255 and a whole 16-bit contiguous mask carries flow marks', () => {
    assert.deepEqual(rulesetFlowMark(ruleset({ ctmark: '0xffff0000', epoch: '255' })), { epoch: 255, layout: { mask: 0xffff0000, shift: 16 } });
    assert.deepEqual(rulesetFlowMark(ruleset({ ctmark: '0x0000ffff', epoch: '1' })), { epoch: 1, layout: { mask: 0xffff, shift: 0 } });
    for (const f of <Record<string, string>[]>[
      { ctmark: '0xffff0000' },
      { epoch: '3' },
      { ctmark: '0xffff0000', epoch: '0' },
      { ctmark: '0xffff0000', epoch: '256' },
      { ctmark: '0xffff0000', epoch: '1000' },
      { ctmark: '0xffff0000', epoch: 'x3' },
      { ctmark: '0xffff0000', epoch: '3x' },
      { ctmark: '0x00ff0000', epoch: '3' },
      { ctmark: '0xffff0001', epoch: '3' },
      { ctmark: 'x0xffff0000', epoch: '3' },
      { ctmark: '0xffff00000', epoch: '3' },
      { ctmark: 'ffff0000', epoch: '3' },
    ]) {
      assert.equal(rulesetFlowMark(ruleset(f)), null, JSON.stringify(f));
    }
    assert.equal(rulesetFlowMark({ comment: 'made by someone else' }), null);
    assert.equal(rulesetFlowMark({ comment: '' }), null);
  });

  it('withEpoch returns the very same ruleset when the epoch is already that one, or when it has no flow marks', () => {
    const rs = ruleset({ ctmark: '0xffff0000', epoch: '4' });
    assert.equal(withEpoch(rs, 4), rs);
    const bare = ruleset({});
    assert.equal(withEpoch(bare, 9), bare);
  });

  it("withEpoch moves only Sluice's ct-mark writes and comparisons under its own mask", () => {
    const layout = flowMarkLayout(0xffff0000);
    const tag = flowTag(layout, 4, 3);
    const stmts: Stmt[] = [
      { k: 'ct-mark-set', mask: 0xffff0000, value: tag },
      { k: 'cmp', sel: 'ct mark', op: 'eq', value: tag, mask: 0xffff0000 },
      // Not Sluice's: another mask, another selector under the same mask, a plain comparison.
      { k: 'ct-mark-set', mask: 0x0000ffff, value: 0x1234 },
      { k: 'cmp', sel: 'ct mark', op: 'eq', value: 0x0400_0000, mask: 0xff000000 },
      { k: 'cmp', sel: 'meta mark', op: 'eq', value: tag, mask: 0xffff0000 },
      { k: 'cmp', sel: 'th dport', op: 'eq', value: 443 },
    ];
    const moved = withEpoch(ruleset(flowMarkFields(layout, 4), stmts), 9);
    const out = moved.chains[0]?.rules[0]?.stmts ?? [];
    const want = flowTag(layout, 9, 3);
    assert.deepEqual(out, [
      { k: 'ct-mark-set', mask: 0xffff0000, value: want },
      { k: 'cmp', sel: 'ct mark', op: 'eq', value: want, mask: 0xffff0000 },
      ...stmts.slice(2),
    ]);
    assert.deepEqual(rulesetFlowMark(moved), { epoch: 9, layout });
  });
});
