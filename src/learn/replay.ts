import { isLoopback, parseAddr, type AddrRange } from '../net/ip.js';
import type { HostFacts } from '../policy/builtins.js';
import { explain, type Explanation, type Query } from '../policy/explain.js';
import type { DomainPattern, Policy, Rule } from '../policy/policy.js';
import { refusedName } from '../dns/name-refusal.js';

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
 * The rules whose `to` can match a flow, found by index rather than by
 * trying every rule: exact names, wildcard suffixes, single addresses,
 * prefixes and ranges (few, scanned), and rules with no destination. For one
 * address every other rule's `to` says no, so explain over these rules alone
 * gives the verdict it gives over all of them; a policy of thousands of
 * rules is replayed against hundreds of thousands of flows in seconds.
 */
class RuleIndex {
  private byName = new Map<string, Rule[]>();
  private bySuffix = new Map<string, Rule[]>();
  private byAddr = new Map<string, Rule[]>();
  private ranges: { r: AddrRange; rule: Rule }[] = [];
  private anyDest: Rule[] = [];
  private memo = new Map<string, Policy>();

  constructor(private readonly policy: Policy) {
    const push = <K>(m: Map<K, Rule[]>, k: K, r: Rule) => {
      const l = m.get(k);
      if (!l) m.set(k, [r]);
      else if (l[l.length - 1] !== r) l.push(r);
    };
    for (const rule of policy.rules) {
      if (rule.addrs.length === 0 && rule.domains.length === 0) this.anyDest.push(rule);
      for (const d of rule.domains) push(d.wildcard ? this.bySuffix : this.byName, d.name, rule);
      for (const a of rule.addrs) {
        if (a.start === a.end) push(this.byAddr, `${a.family}/${a.start}`, rule);
        else this.ranges.push({ r: a, rule });
      }
    }
  }

  /** The rules that can match, in policy order (explain's order: the first allow rule that matches decides). */
  candidates(family: 4 | 6, addr: bigint, hostname: string | undefined, f: ObservedFlow): Rule[] {
    const set = new Set<Rule>(this.anyDest);
    for (const r of this.byAddr.get(`${family}/${addr}`) ?? []) set.add(r);
    for (const x of this.ranges) if (x.r.family === family && x.r.start <= addr && addr <= x.r.end) set.add(x.rule);
    if (hostname !== undefined) {
      for (const r of this.byName.get(hostname) ?? []) set.add(r);
      for (let i = hostname.indexOf('.'); i >= 0; i = hostname.indexOf('.', i + 1)) for (const r of this.bySuffix.get(hostname.slice(i + 1)) ?? []) set.add(r);
    }
    return this.policy.rules.filter((r) => set.has(r) && mayMatch(r, f));
  }

  /** The policy restricted to these rules (memoised: flows share candidate sets). */
  restricted(rules: Rule[]): Policy {
    if (rules.length === this.policy.rules.length) return this.policy;
    const key = rules.map((r) => r.index).join(',');
    let p = this.memo.get(key);
    if (!p) {
      if (this.memo.size > 10_000) this.memo.clear();
      p = { ...this.policy, rules };
      this.memo.set(key, p);
    }
    return p;
  }
}

/**
 * False only when explain would certainly say no for this rule on the
 * dimensions the flow gives exactly (TCP/UDP port, uid, service): such a
 * rule cannot decide, so explain need not be asked about it. Anything the
 * flow leaves open keeps the rule (explain then says maybe).
 */
function mayMatch(rule: Rule, f: ObservedFlow): boolean {
  if ((f.proto === 6 || f.proto === 17) && f.dport !== undefined && (rule.ports.length > 0 || rule.icmp || rule.icmpv6)) {
    const proto = f.proto === 6 ? 'tcp' : 'udp';
    const port = f.dport;
    if (!rule.ports.some((p) => p.proto === proto && p.from <= port && port <= p.to)) return false;
  }
  if (f.uid !== undefined && rule.users.length > 0 && !rule.users.some((u) => u.uid === f.uid)) return false;
  if (f.service !== undefined && rule.services.length > 0) {
    const svc = f.service;
    if (!rule.services.some((s) => (s.kind === 'unit' ? s.unit === svc : svc === s.path || svc.startsWith(`${s.path}/`)))) return false;
  }
  return true;
}

const indexes = new WeakMap<Policy, RuleIndex>();

/**
 * The verdict `policy` gives an observed flow, by the compiler's own
 * interpreter (explain: the same semantics as the kernel ruleset, property-
 * tested against it). A destination that came from a DNS answer is in the
 * set of every rule whose names match the hostname, as the DNS guard would
 * have put it there in enforce mode.
 */
export function judgeFlow(policy: Policy, f: ObservedFlow, facts: HostFacts = {}): Explanation | null {
  const a = parseAddr(f.dst);
  if (!a) return null;
  let idx = indexes.get(policy);
  if (!idx) {
    idx = new RuleIndex(policy);
    indexes.set(policy, idx);
  }
  const rules = idx.candidates(a.family, a.value, f.hostname, f);
  const range: AddrRange = { family: a.family, start: a.value, end: a.value };
  const q: Query = { dest: { kind: 'range', range } };
  if (f.hostname !== undefined) {
    const learned = new Map<string, AddrRange[]>();
    for (const r of rules) if (r.domains.some((d) => domainMatches(d, f.hostname as string))) learned.set(r.name, [range]);
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
  return explain(idx.restricted(rules), q, facts);
}

/** True when the flow's destination is loopback (always allowed; never a rule). */
export function isLoopbackFlow(f: ObservedFlow): boolean {
  const a = parseAddr(f.dst);
  return a !== null && isLoopback(a.family, a.value);
}

/**
 * Whether the DNS guard would answer this name under `policy` (enforce
 * mode), decided as the guard decides it (dns/name-refusal.ts: its
 * DomainMatcher and refusal rules): an allow rule lists it (or the default
 * allows), no deny rule refuses it outright, and it is no encrypted-DNS
 * endpoint (the list in `facts`) that no rule names exactly.
 */
export function nameResolves(policy: Policy, name: string, facts: HostFacts = {}): boolean {
  return nameRefusedBy(policy, name, facts) === undefined;
}

/**
 * Why the DNS guard would refuse this name under `policy` (its mode taken as
 * enforce), or undefined: see nameResolves. A deny rule in audit by its own
 * mode refuses nothing (the guard answers and records would-block).
 */
export function nameRefusedBy(policy: Policy, name: string, facts: HostFacts = {}): string | undefined {
  return refusedName(policy, name, facts.dns?.encrypted.names ?? [], { ownModes: true });
}

/** A flow's port as a policy writes it: `443/tcp`, `udp` (no port known), `icmp`, `icmpv6`; undefined for a protocol a policy cannot name. */
export function portToken(f: ObservedFlow): string | undefined {
  if (f.proto === 6 || f.proto === 17) {
    const p = f.proto === 6 ? 'tcp' : 'udp';
    return f.dport !== undefined ? `${f.dport}/${p}` : p;
  }
  if (f.proto === 1) return 'icmp';
  if (f.proto === 58) return 'icmpv6';
  return undefined;
}
