import { isLoopback, parseAddr, type AddrRange } from '../net/ip.js';
import { explain, type Explanation, type Query } from '../policy/explain.js';
import type { DomainPattern, Policy } from '../policy/policy.js';

/** What a stored event says about one flow, as far as a verdict depends on it. */
export interface ObservedFlow {
  dst: string;
  proto: number;
  dport?: number;
  sport?: number;
  icmpType?: number;
  uid?: number;
  /** A systemd unit (its cgroup is /system.slice/UNIT) or another cgroup path. */
  service?: string;
  iface?: string;
  /** The name the destination was resolved from, when the DNS observation knew it. */
  hostname?: string;
}

const PROTO: Record<number, Query['proto']> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };

function domainMatches(p: DomainPattern, name: string): boolean {
  return p.wildcard ? name.endsWith(`.${p.name}`) : name === p.name;
}

/**
 * The service a stored event's process ran in, as the policy matches it: a
 * unit only when its cgroup is the system manager's own `/system.slice/UNIT`
 * (a user's delegated cgroup may carry any unit-like name), else the cgroup
 * path.
 */
export function serviceOf(p: { unit?: string; cgroup?: string } | undefined): string | undefined {
  if (!p) return undefined;
  if (p.unit && p.cgroup === `/system.slice/${p.unit}`) return p.unit;
  return p.cgroup;
}

/**
 * The verdict `policy` gives an observed flow, by the compiler's own
 * interpreter (explain: the same semantics as the kernel ruleset, property-
 * tested against it). A destination that came from a DNS answer is in the
 * set of every allow rule whose names match the hostname, as the DNS guard
 * would have put it there in enforce mode.
 */
export function judgeFlow(policy: Policy, f: ObservedFlow): Explanation | null {
  const a = parseAddr(f.dst);
  if (!a) return null;
  const range: AddrRange = { family: a.family, start: a.value, end: a.value };
  const q: Query = { dest: { kind: 'range', range } };
  if (f.hostname !== undefined) {
    const learned = new Map<string, AddrRange[]>();
    for (const r of policy.rules) if (r.action === 'allow' && r.domains.some((d) => domainMatches(d, f.hostname as string))) learned.set(r.name, [range]);
    if (learned.size > 0) q.learned = learned;
  }
  const proto = PROTO[f.proto];
  if (proto) q.proto = proto;
  if (f.dport !== undefined) q.port = f.dport;
  if (f.sport !== undefined) q.sport = f.sport;
  if (f.icmpType !== undefined) q.icmpType = f.icmpType;
  if (f.uid !== undefined) q.uid = f.uid;
  if (f.service !== undefined) q.service = f.service;
  if (f.iface !== undefined) q.iface = f.iface;
  return explain(policy, q);
}

/** True when the flow's destination is loopback (always allowed; never a rule). */
export function isLoopbackFlow(f: ObservedFlow): boolean {
  const a = parseAddr(f.dst);
  return a !== null && isLoopback(a.family, a.value);
}

/**
 * Whether the DNS guard would answer this name under `policy` (enforce
 * mode): an allow rule lists it (or the default allows), and no deny rule
 * refuses it outright (a deny rule naming it with no other condition).
 */
export function nameResolves(policy: Policy, name: string): boolean {
  const refused = policy.rules.some(
    (r) => r.action === 'deny' && r.domains.some((d) => domainMatches(d, name)) && r.ports.length === 0 && !r.icmp && !r.icmpv6 && r.users.length === 0 && r.services.length === 0 && r.interfaces.length === 0,
  );
  if (refused) return false;
  return policy.defaultAction === 'allow' || policy.rules.some((r) => r.action === 'allow' && r.domains.some((d) => domainMatches(d, name)));
}
