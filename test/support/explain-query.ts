/** Explain's queries and ranges from text, for the explain tests. */
import assert from 'node:assert/strict';
import { parsePrefix, type AddrRange } from '../../src/net/ip.js';
import type { Query } from '../../src/policy/explain.js';

/** A query to an address, a prefix or (anything else) a name. */
export function q(dest: string, rest: Partial<Query> = {}): Query {
  const p = parsePrefix(dest);
  return { dest: p.ok ? { kind: 'range', range: p.range } : { kind: 'name', name: dest }, ...rest };
}

/** An address or prefix as a range (the test fails on anything else). */
export function range(s: string): AddrRange {
  const p = parsePrefix(s);
  assert.ok(p.ok, s);
  return p.range;
}
