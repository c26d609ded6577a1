import type { Ruleset, SetDef, SetElem, Stmt } from '../compile/ruleset.js';
import { NetlinkError } from '../errors.js';
import { DYNAMIC_SET_MAX } from './nft-encode.js';
import { carriesLearned, sameLearnedSet, type CounterValue, type ElementChange, type LiveTable, type Netfilter, type ReadOptions } from './netfilter.js';

const clone = <T>(v: T): T => structuredClone(v);

/**
 * An in-memory Netfilter for unit tests of the layers above the kernel. It
 * checks what the kernel would refuse (references to missing sets, chains or
 * objects; elements of the wrong kind) and keeps the previous table when a
 * replace fails, like the real transaction.
 */
export class FakeNetfilter implements Netfilter {
  private tables = new Map<string, Ruleset>();
  /** How many elements a DNS-filled set holds, as the kernel's set size (smaller in tests that fill one). */
  private readonly dynamicSetSize: number;

  constructor(opts: { dynamicSetSize?: number } = {}) {
    this.dynamicSetSize = opts.dynamicSetSize ?? DYNAMIC_SET_MAX;
  }

  private counterValues = new Map<string, Map<string, CounterValue>>();
  /** How many times each operation ran (tests assert that bad input never reached here). */
  readonly calls = { replace: 0, remove: 0, addElements: 0 };
  /** The conntrack forgets asked for (the fake has no conntrack: it never touches the host's). */
  readonly forgotten: { value: number; mask: number }[] = [];

  forgetFlows(value: number, mask: number): void {
    this.forgotten.push({ value, mask });
  }

  replace(ruleset: Ruleset, opts: { carryDynamic?: boolean } = {}): void {
    this.calls.replace++;
    validate(ruleset);
    const next = clone(ruleset);
    const prev = this.tables.get(ruleset.table);
    if (prev && opts.carryDynamic !== false && carriesLearned(prev.comment, next.comment)) {
      for (const s of next.sets) {
        const old = prev.sets.find((p) => p.dynamic && sameLearnedSet(p, s));
        if (old) s.elements = clone(old.elements);
      }
    }
    this.tables.set(ruleset.table, next);
    this.counterValues.set(ruleset.table, new Map(next.counters.map((c) => [c.name, { packets: 0n, bytes: 0n }])));
  }

  remove(table: string): boolean {
    this.calls.remove++;
    this.counterValues.delete(table);
    return this.tables.delete(table);
  }

  read(table: string, opts: ReadOptions = {}): LiveTable | null {
    const t = this.tables.get(table);
    if (!t) return null;
    const which = opts.elements ?? 'static';
    const rs = clone(t);
    for (const s of rs.sets) {
      const keep = which === 'all' || (which === 'static' && !s.dynamic) || (which === 'dynamic' && s.dynamic);
      if (!keep) s.elements = [];
    }
    return { ruleset: rs, anomalies: [] };
  }

  counters(table: string): Map<string, CounterValue> {
    return new Map(this.counterValues.get(table) ?? []);
  }

  addElements(table: string, changes: ElementChange[]): void {
    this.calls.addElements++;
    const t = this.tables.get(table);
    // Check everything first: a transaction is all or nothing.
    const next = changes.map((c) => {
      const target = t?.sets.find((s) => s.name === c.set.name);
      if (!target) throw new NetlinkError(2, `Kernel refused adding elements of set ${c.set.name}: ENOENT (no such object)`);
      for (const e of [...c.elems, ...(c.remove ?? []), ...(c.refresh ?? []).map((r) => r.elem)]) checkElem(target, e);
      let elements = target.elements;
      for (const e of c.remove ?? []) {
        const at = elements.findIndex((x) => elemKey(x) === elemKey(e));
        if (at < 0) throw new NetlinkError(2, `Kernel refused deleting elements of set ${c.set.name}: ENOENT (no such object)`);
        elements = [...elements.slice(0, at), ...elements.slice(at + 1)];
      }
      // Like Linux 6.12+: adding an element the set holds sets its timeout anew.
      for (const e of [...c.elems, ...(c.refresh ?? []).map((r) => r.elem)]) {
        elements = elements.filter((x) => elemKey(x) !== elemKey(e));
        elements.push(clone(e));
      }
      // The kernel's set size: a full set refuses new elements (ENFILE).
      if (target.dynamic && elements.length > this.dynamicSetSize) throw new NetlinkError(23, `Kernel refused adding elements of set ${c.set.name}: ENFILE (set full)`);
      return { target, elements };
    });
    for (const n of next) n.target.elements = n.elements;
  }

  timeoutUpdates(): boolean {
    return true;
  }

  /** Test hook: bump a counter as if packets matched. */
  count(table: string, name: string, packets: number, bytes: number): void {
    const m = this.counterValues.get(table);
    const c = m?.get(name);
    if (m && c) m.set(name, { packets: c.packets + BigInt(packets), bytes: c.bytes + BigInt(bytes) });
  }

  close(): void {}
}

const big = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);
/** An element's identity (its key), without its timeout. */
const elemKey = (e: SetElem): string => JSON.stringify({ ...e, timeoutMs: undefined, expiresMs: undefined }, big);

function checkElem(set: SetDef, e: SetElem): void {
  const ok =
    (e.t === 'addr' && ((set.key === 'ipv4_addr' && e.family === 4) || (set.key === 'ipv6_addr' && e.family === 6)) && (set.interval || e.start === e.end)) ||
    (e.t === 'protoport' && set.key === 'inet_proto . inet_service' && (set.interval || e.from === e.to)) ||
    (e.t === 'port' && set.key === 'inet_service' && e.from <= e.to && (set.interval || e.from === e.to)) ||
    (e.t === 'ifname' && set.key === 'ifname') ||
    (e.t === 'num' && ['uid', 'cgroupv2', 'icmpv6_type', 'mark'].includes(set.key));
  if (!ok) throw new NetlinkError(22, `Kernel refused adding elements of set ${set.name}: EINVAL (invalid argument)`);
}

function validate(rs: Ruleset): void {
  // The kernel refuses a second object of a kind with the same name (EEXIST).
  for (const [kind, names] of [['set', rs.sets], ['chain', rs.chains], ['counter', rs.counters], ['limit', rs.limits]] as const) {
    const seen = new Set<string>();
    for (const { name } of names) {
      if (seen.has(name)) throw new NetlinkError(17, `Kernel refused adding ${kind} ${name}: EEXIST (file exists)`);
      seen.add(name);
    }
  }
  const sets = new Set(rs.sets.map((s) => s.name));
  const chains = new Set(rs.chains.map((c) => c.name));
  const counters = new Set(rs.counters.map((c) => c.name));
  const limits = new Set(rs.limits.map((l) => l.name));
  for (const s of rs.sets) for (const e of s.elements) checkElem(s, e);
  const meters = new Set(rs.sets.filter((s) => s.meter && s.timeout && s.key === 'uid' && !s.interval).map((s) => s.name));
  const refs = (st: Stmt): string | null => {
    if (st.k === 'lookup' && !sets.has(st.set)) return `set ${st.set}`;
    // The kernel updates from the packet path only sets made for it (flags dynamic, timeout for the element's timeout).
    if (st.k === 'meter' && !meters.has(st.set)) return `meter set ${st.set}`;
    if ((st.k === 'goto' || st.k === 'jump') && !chains.has(st.chain)) return `chain ${st.chain}`;
    if (st.k === 'counter' && !counters.has(st.name)) return `counter ${st.name}`;
    if (st.k === 'limit' && !limits.has(st.name)) return `limit ${st.name}`;
    if (st.k === 'unknown') return 'an unknown statement';
    return null;
  };
  for (const c of rs.chains) {
    for (const r of c.rules) {
      for (const st of r.stmts) {
        const missing = refs(st);
        if (missing) throw new NetlinkError(2, `Kernel refused adding a rule to chain ${c.name}: ENOENT (no such object): ${missing}`);
      }
    }
  }
}
