import { mergeRanges, type AddrRange } from '../net/ip.js';
import type { InterfaceRef, PortRange } from './policy.js';

/**
 * The normal forms of a rule's parts (addresses, ports, interfaces), shared
 * by the policy loader and by what builds rules without it (`sluice run
 * --allow`, which must not pay for YAML and the schema at start). Pure.
 */

/**
 * Per family: prefixes and ranges merged (interval sets reject overlaps), then
 * single hosts that no prefix covers, deduplicated. Hosts stay hosts so they
 * land in hash sets, which load and match faster than interval sets.
 */
export function normalizeAddrs(addrs: AddrRange[]): AddrRange[] {
  const out: AddrRange[] = [];
  for (const family of [4, 6] as const) {
    const ranges: AddrRange[] = [];
    const hostList: AddrRange[] = [];
    for (const a of addrs) if (a.family === family) (a.start === a.end ? hostList : ranges).push(a);
    const nets = mergeRanges(ranges);
    const hosts = family === 4 ? sortedUniqueV4(hostList) : sortedUniqueV6(hostList);
    // Both lists are sorted: one pass finds the hosts no prefix covers.
    let k = 0;
    // Loops, not push(...list): a spread of a million elements overflows the stack.
    for (const n of nets) out.push(n);
    for (const h of hosts) {
      while (k < nets.length && (nets[k] as AddrRange).end < h.start) k++;
      const n = nets[k];
      // The host's own object (a fresh one from the parser): a million fewer to make and collect.
      if (!n || n.start > h.start) out.push(h);
    }
  }
  return out;
}

/** Index bits of sortedUniqueV4's keys: an IPv4 value (32 bits) and an index (21) fit a double's 53 exactly. */
const INDEX_BITS = 2 ** 21;

/**
 * IPv4 hosts, sorted and deduplicated: a typed-array sort of value and index
 * packed in one double (no bigint comparisons, no new bigints, for a million
 * feed entries); beyond 2^21 hosts, values only.
 */
function sortedUniqueV4(hosts: AddrRange[]): AddrRange[] {
  const out: AddrRange[] = [];
  if (hosts.length >= INDEX_BITS) {
    const values = new Uint32Array(hosts.length);
    for (let i = 0; i < hosts.length; i++) values[i] = Number((hosts[i] as AddrRange).start);
    values.sort();
    for (let j = 0; j < values.length; j++) {
      const v = values[j] as number;
      if (j === 0 || v !== values[j - 1]) out.push({ family: 4, start: BigInt(v), end: BigInt(v) });
    }
    return out;
  }
  const keys = new Float64Array(hosts.length);
  let sorted = true;
  for (let i = 0; i < hosts.length; i++) {
    keys[i] = Number((hosts[i] as AddrRange).start) * INDEX_BITS + i;
    if (i > 0 && (keys[i] as number) < (keys[i - 1] as number)) sorted = false;
  }
  // In order already (a sorted feed): no sort.
  if (!sorted) keys.sort();
  let last = -1;
  for (let j = 0; j < keys.length; j++) {
    const key = keys[j] as number;
    const v = Math.floor(key / INDEX_BITS);
    if (v !== last) out.push(hosts[key - v * INDEX_BITS] as AddrRange);
    last = v;
  }
  return out;
}

/**
 * IPv6 hosts, sorted and deduplicated: each 128-bit value cut in three
 * exact doubles (53, 53 and 22 bits) and compared as numbers, about twice as
 * fast as comparing bigints for a feed of a million; not sorted at all when
 * they come in order.
 */
function sortedUniqueV6(hosts: AddrRange[]): AddrRange[] {
  const n = hosts.length;
  // A feed is often sorted already (FireHOL's and Spamhaus's are): one pass of bigint comparisons to see, then no sort.
  let sorted = true;
  for (let i = 1; i < n; i++) {
    if ((hosts[i - 1] as AddrRange).start > (hosts[i] as AddrRange).start) {
      sorted = false;
      break;
    }
  }
  if (sorted) {
    const out: AddrRange[] = [];
    for (let i = 0; i < n; i++) {
      const h = hosts[i] as AddrRange;
      if (i === 0 || h.start !== (hosts[i - 1] as AddrRange).start) out.push(h);
    }
    return out;
  }
  const hi = new Float64Array(n);
  const mid = new Float64Array(n);
  const lo = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = (hosts[i] as AddrRange).start;
    hi[i] = Number(v >> 75n);
    mid[i] = Number((v >> 22n) & 0x1fffffffffffffn);
    lo[i] = Number(v & 0x3fffffn);
  }
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => (hi[a] as number) - (hi[b] as number) || (mid[a] as number) - (mid[b] as number) || (lo[a] as number) - (lo[b] as number));
  const out: AddrRange[] = [];
  let last = -1;
  for (const i of order) {
    if (last >= 0 && hi[i] === hi[last] && mid[i] === mid[last] && lo[i] === lo[last]) continue;
    out.push(hosts[i] as AddrRange);
    last = i;
  }
  return out;
}

/** Drops interface names a wildcard in the same list already covers (`eth*` covers `eth0` and `eth1*`). */
export function normalizeInterfaces(list: InterfaceRef[]): InterfaceRef[] {
  const unique = dedupeBy(list, (i) => `${i.name}${i.wildcard ? '*' : ''}`);
  return unique.filter((i) => !unique.some((w) => w !== i && w.wildcard && i.name.startsWith(w.name) && (w.name !== i.name || !i.wildcard)));
}

export function dedupeBy<T>(items: T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((t) => {
    const k = key(t);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Sorts and merges port ranges per protocol (interval sets reject overlaps). */
export function mergePorts(ports: PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    const list = ports.filter((p) => p.proto === proto).sort((a, b) => a.from - b.from);
    for (const p of list) {
      const last = out[out.length - 1];
      if (last && last.proto === proto && p.from <= last.to + 1) last.to = Math.max(last.to, p.to);
      else out.push({ ...p });
    }
  }
  return out;
}
