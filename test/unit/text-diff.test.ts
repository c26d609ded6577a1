/**
 * The project's one line diff (src/policy/text-diff.ts), behind the policy
 * diffs of the journal and the dashboard and the ruleset diffs of
 * netfilter/compare-ruleset.ts: whatever the inputs, the kept and removed
 * lines are the first list and the kept and added lines the second, in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { diffLines } from '../../src/policy/text-diff.js';
import { lineDiff } from '../../src/netfilter/compare-ruleset.js';

const list = fc.array(fc.constantFrom('a', 'b', 'c', 'd', ''), { maxLength: 30 });

describe('unit: the line diff', () => {
  it('rebuilds both sides, table or fallback, either preference', () => {
    fc.assert(
      fc.property(list, list, fc.constantFrom(4_000_000, 4), fc.constantFrom('-' as const, '+' as const), (a, b, maxCells, prefer) => {
        const ops = diffLines(a, b, { maxCells, prefer });
        assert.deepEqual(ops.filter((o) => o.k !== '+').map((o) => o.line), a);
        assert.deepEqual(ops.filter((o) => o.k !== '-').map((o) => o.line), b);
      }),
      { numRuns: 500 },
    );
  });

  it('keeps the longest common part: equal lists have nothing removed or added, and one changed line costs two', () => {
    assert.deepEqual(lineDiff(['x', 'y', 'z'], ['x', 'y', 'z']), []);
    assert.deepEqual(lineDiff(['x', 'y', 'z'], ['x', 'Y', 'z']), ['+Y', '-y']);
    assert.deepEqual(diffLines(['x', 'y', 'z'], ['x', 'Y', 'z']).map((o) => `${o.k}${o.line}`), [' x', '-y', '+Y', ' z']);
  });
});
