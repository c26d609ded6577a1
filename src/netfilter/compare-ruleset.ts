import { sortElements } from '../compile/compile-ruleset.js';
import { renderRuleset } from '../compile/render-nft.js';
import type { Ruleset, SetElem } from '../compile/ruleset.js';
import { diffLines } from '../policy/text-diff.js';
import type { LiveTable } from './nft-decode.js';

/**
 * The comparable essence of a ruleset: objects sorted by name, elements
 * sorted, run-time state (dynamic set contents, element timers, display-only
 * fields) left out. Two rulesets are the same when these are equal.
 */
const stripTimers = (e: SetElem): SetElem => {
  if (e.t === 'addr') return { t: 'addr', family: e.family, start: e.start, end: e.end };
  if (e.t === 'num') return { t: 'num', value: e.value };
  return e;
};

export function canonical(rs: Ruleset): unknown {
  const byName = <T extends { name: string }>(xs: T[]) => [...xs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    table: rs.table,
    comment: rs.comment,
    owned: rs.owned === true,
    counters: byName(rs.counters).map((c) => ({ name: c.name, comment: c.comment ?? null })),
    limits: byName(rs.limits).map((l) => ({ name: l.name, rate: l.rate, burst: l.burst })),
    sets: byName(rs.sets).map((s) => ({
      name: s.name,
      key: s.key,
      interval: s.interval,
      timeout: s.timeout,
      meter: s.meter === true,
      comment: s.comment ?? null,
      elements: s.dynamic ? [] : sortElements(s.elements).map(stripTimers),
    })),
    chains: byName(rs.chains).map((c) => ({
      name: c.name,
      base: c.base ?? null,
      comment: c.comment ?? null,
      rules: c.rules.map((r) => ({ stmts: r.stmts, comment: r.comment ?? null })),
    })),
  };
}

const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

/** True when the live table is exactly what `desired` describes. */
export function sameRuleset(desired: Ruleset, live: LiveTable): boolean {
  return live.anomalies.length === 0 && json(canonical(desired)) === json(canonical(live.ruleset));
}

/** The ruleset with every set emptied: its shape, what a read without elements gives. */
export function withoutElements(rs: Ruleset): Ruleset {
  return { ...rs, sets: rs.sets.map((s) => ({ ...s, elements: [] })) };
}

/** Like sameRuleset, ignoring set elements: the shape of the table (what a read without elements can check). */
export function sameStructure(desired: Ruleset, live: LiveTable): boolean {
  return live.anomalies.length === 0 && json(canonical(withoutElements(desired))) === json(canonical(withoutElements(live.ruleset)));
}

/**
 * True when two compiled rulesets are the same, object for object in the
 * order the compiler wrote them: for telling whether a recompiled policy
 * means what the applied one meant. Linear and without sorting, so 100,000
 * elements compare in milliseconds (sameRuleset canonicalises both sides,
 * which costs about a second there). A ruleset written in another order
 * compares as different: only ever a false "different", never a false
 * "same". Dynamic sets' elements and element timers are left out.
 */
export function sameCompiled(a: Ruleset, b: Ruleset): boolean {
  if (a.table !== b.table || a.comment !== b.comment || (a.owned === true) !== (b.owned === true) || a.sets.length !== b.sets.length) return false;
  const { sets: _a, owned: _oa, ...restA } = a;
  const { sets: _b, owned: _ob, ...restB } = b;
  if (json(restA) !== json(restB)) return false;
  for (let i = 0; i < a.sets.length; i++) {
    const x = a.sets[i] as Ruleset['sets'][number];
    const y = b.sets[i] as Ruleset['sets'][number];
    const { elements: ex, ...sx } = x;
    const { elements: ey, ...sy } = y;
    if (json(sx) !== json(sy)) return false;
    if (x.dynamic) continue;
    if (ex.length !== ey.length) return false;
    for (let j = 0; j < ex.length; j++) if (!sameElement(ex[j] as SetElem, ey[j] as SetElem)) return false;
  }
  return true;
}

/** Two set elements are the same value (timers aside). */
function sameElement(x: SetElem, y: SetElem): boolean {
  if (x.t !== y.t) return false;
  switch (x.t) {
    case 'addr':
      return y.t === 'addr' && x.family === y.family && x.start === y.start && x.end === y.end;
    case 'num':
      return y.t === 'num' && x.value === y.value;
    case 'protoport':
      return y.t === 'protoport' && x.proto === y.proto && x.from === y.from && x.to === y.to;
    case 'ifname':
      return y.t === 'ifname' && x.name === y.name && x.wildcard === y.wildcard;
    case 'port':
      return y.t === 'port' && x.from === y.from && x.to === y.to;
  }
}

/** Each element's comparable key, with how many times it is there. */
function elementCounts(elements: SetElem[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of elements) {
    const k = json(stripTimers(e));
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/**
 * A unified-style line diff of two rulesets rendered as nft text. A set on
 * both sides whose elements differ is rendered with only the elements the
 * other side lacks (counted: an element there twice on one side and once
 * on the other shows once, as added or removed), so every changed element
 * shows (within `maxElements`) wherever it sorts, and unchanged elements
 * never shift into the diff.
 */
export function diffRulesets(before: Ruleset | null, after: Ruleset | null, opts: { maxElements?: number } = {}): string[] {
  const elems = (rs: Ruleset | null) => new Map((rs?.sets ?? []).filter((s) => !s.dynamic).map((s) => [s.name, elementCounts(s.elements)]));
  const beforeElems = elems(before);
  const afterElems = elems(after);
  const strip = (rs: Ruleset | null, other: Map<string, Map<string, number>>) => {
    if (!rs) return [];
    const sets = rs.sets.map((s) => {
      if (s.dynamic) return { ...s, elements: [] };
      const theirs = other.get(s.name);
      if (!theirs) return s;
      const left = new Map(theirs);
      const onlyHere = s.elements.filter((e) => {
        const k = json(stripTimers(e));
        const n = left.get(k) ?? 0;
        if (n === 0) return true;
        left.set(k, n - 1);
        return false;
      });
      const same = onlyHere.length === 0 && [...left.values()].every((n) => n === 0);
      return same ? s : { ...s, elements: onlyHere };
    });
    return renderRuleset({ ...rs, sets }, opts).split('\n');
  };
  return lineDiff(strip(before, afterElems), strip(after, beforeElems));
}

/** Longest-common-subsequence line diff (policy/text-diff.ts); `-` removed, `+` added, common lines omitted. */
export function lineDiff(a: string[], b: string[]): string[] {
  // Rulesets usually differ in a few lines: the common head and tail are trimmed before the table.
  return diffLines(a, b, { maxCells: 25_000_000, prefer: '+' })
    .filter((op) => op.k !== ' ')
    .map((op) => `${op.k}${op.line}`);
}
