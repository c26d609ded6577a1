/** The fixed-capacity list behind `sluice dns`: it must agree with a plain array that drops its oldest items. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Ring } from '../../src/dns/ring.js';

describe('unit: Ring', () => {
  it('property: last(n) is the newest n of everything pushed, oldest first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.array(fc.integer(), { maxLength: 100 }), fc.integer({ min: -5, max: 40 }), (cap, pushed, n) => {
        const r = new Ring<number>(cap);
        for (const x of pushed) r.push(x);
        const model = pushed.slice(-cap);
        assert.equal(r.size, model.length);
        assert.deepEqual(r.last(), model);
        assert.deepEqual(r.last(n), n <= 0 ? [] : model.slice(-n));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new Ring(bad), RangeError);
  });
});
