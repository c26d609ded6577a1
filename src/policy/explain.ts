import { formatRange, isLoopback as isLoopbackAddr, type AddrRange, type Family } from '../net/ip.js';
import type { DomainPattern, Policy, Rule } from './policy.js';

/**
 * Explains a verdict from the policy alone, with the same semantics the
 * compiled ruleset has in the kernel (a property test checks the two agree):
 * deny rules win over allow rules, rule order never matters, an absent
 * dimension means "any". Parts of the query that are not given (no user, no
 * port) make matches conditional rather than guessed.
 */

export type Dest = { kind: 'range'; range: AddrRange } | { kind: 'name'; name: string };

export interface Query {
  dest: Dest;
  proto?: 'tcp' | 'udp' | 'icmp' | 'icmpv6';
  port?: number;
  uid?: number;
  /** A unit name or a cgroup path. */
  service?: string;
  iface?: string;
  /** Addresses the DNS guard has learned, per rule name (from the live kernel sets). */
  learned?: Map<string, AddrRange[]>;
  /**
   * The destination is one of this host's own addresses: the ruleset admits
   * traffic to them before any rule (`fib daddr type local`), as it does loopback.
   */
  local?: boolean;
}

/** Tri-state match: yes, no, or depends on something the query left open. */
export type Tri = 'yes' | 'no' | 'maybe';

export interface DimensionMatch {
  dimension: 'to' | 'ports' | 'users' | 'services' | 'interfaces';
  result: Tri;
  detail: string;
}

export interface RuleMatch {
  rule: string;
  action: 'allow' | 'deny';
  line: number;
  result: Tri;
  dimensions: DimensionMatch[];
}

export interface Explanation {
  verdict: 'allow' | 'block';
  /** In audit mode a block is only recorded. */
  enforced: boolean;
  decidedBy: { kind: 'rule'; rule: string; action: 'allow' | 'deny'; line: number } | { kind: 'default' } | { kind: 'loopback' } | { kind: 'local' };
  /** Rules whose verdict depends on parts of the query that were not given. */
  conditional: RuleMatch[];
  matches: RuleMatch[];
  summary: string;
}

const and = (a: Tri, b: Tri): Tri => (a === 'no' || b === 'no' ? 'no' : a === 'maybe' || b === 'maybe' ? 'maybe' : 'yes');

function domainMatches(p: DomainPattern, name: string): boolean {
  return p.wildcard ? name.endsWith(`.${p.name}`) : name === p.name;
}

function familyOf(d: Dest): Family | null {
  return d.kind === 'range' ? d.range.family : null;
}

const addrIndexes = new WeakMap<Rule, Record<Family, AddrRange[]>>();

/** A rule's ranges of one family, sorted by start (built once per rule: connections explains every socket). */
function addrIndex(rule: Rule, family: Family): AddrRange[] {
  let idx = addrIndexes.get(rule);
  if (!idx) {
    const byStart = (a: AddrRange, b: AddrRange) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);
    idx = { 4: rule.addrs.filter((a) => a.family === 4).sort(byStart), 6: rule.addrs.filter((a) => a.family === 6).sort(byStart) };
    addrIndexes.set(rule, idx);
  }
  return idx[family];
}

function matchTo(rule: Rule, q: Query): DimensionMatch {
  const dim = 'to' as const;
  if (rule.addrs.length === 0 && rule.domains.length === 0) return { dimension: dim, result: 'yes', detail: 'any destination' };
  if (q.dest.kind === 'name') {
    const name = q.dest.name;
    const hit = rule.domains.find((d) => domainMatches(d, name));
    if (hit) return { dimension: dim, result: 'yes', detail: `${name} matches ${hit.text} (its addresses are opened when the DNS guard answers)` };
    if (rule.addrs.length > 0) {
      return { dimension: dim, result: 'maybe', detail: `depends on what ${name} resolves to (this rule lists addresses)` };
    }
    return { dimension: dim, result: 'no', detail: `${name} is not in ${rule.domains.map((d) => d.text).join(', ')}` };
  }
  const r = q.dest.range;
  const sorted = addrIndex(rule, r.family);
  // The loader leaves a rule's ranges disjoint (merged prefixes, hosts outside them): the last
  // one starting at or before a point is the only one that can hold it.
  const at = (v: bigint) => {
    let lo = 0;
    let hi = sorted.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((sorted[mid] as AddrRange).start <= v) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? undefined : sorted[found];
  };
  const holder = at(r.start);
  const inside = holder && r.end <= holder.end ? holder : undefined;
  if (inside) return { dimension: dim, result: 'yes', detail: `${formatRange(r)} is in ${formatRange(inside)}` };
  const learned = (q.learned?.get(rule.name) ?? []).find((a) => a.family === r.family && a.start <= r.start && r.end <= a.end);
  if (learned) return { dimension: dim, result: 'yes', detail: `${formatRange(r)} was learned from a DNS answer for ${rule.domains.map((d) => d.text).join(', ')}` };
  const last = at(r.end);
  const overlaps = last !== undefined && r.start <= last.end;
  if (overlaps) return { dimension: dim, result: 'maybe', detail: `${formatRange(r)} is only partly inside this rule's addresses` };
  if (rule.domains.length > 0) {
    return { dimension: dim, result: 'no', detail: `not listed; the rule's names (${rule.domains.map((d) => d.text).join(', ')}) open only addresses the DNS guard has seen in answers` };
  }
  return { dimension: dim, result: 'no', detail: `${formatRange(r)} is not in this rule's addresses` };
}

function describePorts(rule: Rule): string {
  const parts = rule.ports.map((p) => `${p.from === p.to ? p.from : `${p.from}-${p.to}`}/${p.proto}`);
  if (rule.icmp) parts.push('icmp');
  if (rule.icmpv6) parts.push('icmpv6');
  return parts.join(', ');
}

function matchPorts(rule: Rule, q: Query): DimensionMatch {
  const dim = 'ports' as const;
  if (rule.ports.length === 0 && !rule.icmp && !rule.icmpv6) return { dimension: dim, result: 'yes', detail: 'any protocol and port' };
  const listed = describePorts(rule);
  if (q.proto === 'icmp' || q.proto === 'icmpv6') {
    const fam = familyOf(q.dest);
    const ok = (q.proto === 'icmp' ? rule.icmp : rule.icmpv6) && (fam === null || fam === (q.proto === 'icmp' ? 4 : 6));
    return { dimension: dim, result: ok ? 'yes' : 'no', detail: `${q.proto} ${ok ? 'is' : 'is not'} in ${listed}` };
  }
  if (q.proto === undefined && q.port === undefined) return { dimension: dim, result: 'maybe', detail: `only ${listed}` };
  const protos = q.proto ? [q.proto] : (['tcp', 'udp'] as const);
  // Per protocol: yes if the port (or, without a port, every port) is listed.
  const per = protos.map((proto): Tri => {
    const ranges = rule.ports.filter((r) => r.proto === proto);
    if (q.port !== undefined) return ranges.some((r) => r.from <= (q.port as number) && (q.port as number) <= r.to) ? 'yes' : 'no';
    if (ranges.some((r) => r.from <= 1 && r.to === 65535)) return 'yes';
    return ranges.length > 0 ? 'maybe' : 'no';
  });
  const what = `${q.port ?? 'any port'}${q.proto ? `/${q.proto}` : ''}`;
  if (per.every((t) => t === 'yes')) return { dimension: dim, result: 'yes', detail: `${what} is in ${listed}` };
  if (per.some((t) => t !== 'no')) return { dimension: dim, result: 'maybe', detail: `${what}: only ${listed}` };
  return { dimension: dim, result: 'no', detail: `${what} is not in ${listed}` };
}

function matchUsers(rule: Rule, q: Query): DimensionMatch {
  const dim = 'users' as const;
  if (rule.users.length === 0) return { dimension: dim, result: 'yes', detail: 'any user' };
  const listed = rule.users.map((u) => (u.name ? `${u.name} (${u.uid})` : String(u.uid))).join(', ');
  if (q.uid === undefined) return { dimension: dim, result: 'maybe', detail: `only for users ${listed}` };
  const ok = rule.users.some((u) => u.uid === q.uid);
  return { dimension: dim, result: ok ? 'yes' : 'no', detail: `uid ${q.uid} ${ok ? 'is' : 'is not'} in ${listed}` };
}

function matchServices(rule: Rule, q: Query): DimensionMatch {
  const dim = 'services' as const;
  if (rule.services.length === 0) return { dimension: dim, result: 'yes', detail: 'any service' };
  const listed = rule.services.map((s) => (s.kind === 'unit' ? s.unit : s.path)).join(', ');
  if (q.service === undefined) return { dimension: dim, result: 'maybe', detail: `only for services ${listed}` };
  const svc = q.service;
  const ok = rule.services.some((s) => (s.kind === 'unit' ? s.unit === svc : svc === s.path || svc.startsWith(`${s.path}/`)));
  return { dimension: dim, result: ok ? 'yes' : 'no', detail: `${svc} ${ok ? 'is' : 'is not'} in ${listed}` };
}

function matchInterfaces(rule: Rule, q: Query): DimensionMatch {
  const dim = 'interfaces' as const;
  if (rule.interfaces.length === 0) return { dimension: dim, result: 'yes', detail: 'any interface' };
  const listed = rule.interfaces.map((i) => `${i.name}${i.wildcard ? '*' : ''}`).join(', ');
  if (q.iface === undefined) return { dimension: dim, result: 'maybe', detail: `only out of ${listed}` };
  const ifc = q.iface;
  const ok = rule.interfaces.some((i) => (i.wildcard ? ifc.startsWith(i.name) : ifc === i.name));
  return { dimension: dim, result: ok ? 'yes' : 'no', detail: `${ifc} ${ok ? 'is' : 'is not'} in ${listed}` };
}

/** Evaluates one rule against the query. */
export function matchRule(rule: Rule, q: Query): RuleMatch {
  const dimensions = [matchTo(rule, q), matchPorts(rule, q), matchUsers(rule, q), matchServices(rule, q), matchInterfaces(rule, q)];
  return { rule: rule.name, action: rule.action, line: rule.line, result: dimensions.reduce<Tri>((acc, d) => and(acc, d.result), 'yes'), dimensions };
}

function isLoopback(d: Dest): boolean {
  if (d.kind !== 'range') return d.name === 'localhost';
  const r = d.range;
  // The whole range: its two ends loopback, and (IPv4) in one /8.
  return isLoopbackAddr(r.family, r.start) && isLoopbackAddr(r.family, r.end);
}

/** The verdict the policy gives this query, with the rule that decides and why. */
export function explain(policy: Policy, q: Query): Explanation {
  const enforced = policy.mode === 'enforce';
  const matches = policy.rules.map((r) => matchRule(r, q));
  const deny = matches.filter((m) => m.action === 'deny');
  const allow = matches.filter((m) => m.action === 'allow');
  const conditional = matches.filter((m) => m.result === 'maybe');
  // The dimensions worth saying: everything but the unconstrained ones ("any user").
  const why = (m: RuleMatch) => m.dimensions.filter((d) => !d.detail.startsWith('any ')).map((d) => d.detail);

  if (isLoopback(q.dest)) {
    return { verdict: 'allow', enforced, decidedBy: { kind: 'loopback' }, conditional: [], matches, summary: 'allowed: loopback traffic is always allowed' };
  }
  if (q.local && q.dest.kind === 'range') {
    return { verdict: 'allow', enforced, decidedBy: { kind: 'local' }, conditional: [], matches, summary: "allowed: traffic to this host's own addresses is always allowed" };
  }
  const denied = deny.find((m) => m.result === 'yes');
  if (denied) {
    return {
      verdict: 'block',
      enforced,
      decidedBy: { kind: 'rule', rule: denied.rule, action: 'deny', line: denied.line },
      conditional,
      matches,
      summary: `blocked by deny rule ${denied.rule} (line ${denied.line}): ${why(denied).join('; ')}${enforced ? '' : ' [audit mode: recorded, not blocked]'}`,
    };
  }
  const allowed = allow.find((m) => m.result === 'yes');
  const maybeDeny = deny.filter((m) => m.result === 'maybe');
  const caveat = maybeDeny.length > 0 ? `; unless deny rule ${maybeDeny.map((m) => `${m.rule} (${why(m).join('; ')})`).join(', ')} applies` : '';
  if (allowed) {
    return {
      verdict: 'allow',
      enforced,
      decidedBy: { kind: 'rule', rule: allowed.rule, action: 'allow', line: allowed.line },
      conditional,
      matches,
      summary: `allowed by rule ${allowed.rule} (line ${allowed.line}): ${why(allowed).join('; ')}${caveat}`,
    };
  }
  if (policy.defaultAction === 'allow') {
    return { verdict: 'allow', enforced, decidedBy: { kind: 'default' }, conditional, matches, summary: `allowed by the default (default: allow)${caveat}` };
  }
  const maybeAllow = allow.filter((m) => m.result === 'maybe');
  const hint =
    maybeAllow.length > 0
      ? `; rule ${maybeAllow.map((m) => `${m.rule} (line ${m.line}) would allow it ${why(m).filter((w) => w.startsWith('only') || w.includes('depends')).join(', ') || 'under conditions the query left open'}`).join('; rule ')}`
      : '';
  return {
    verdict: 'block',
    enforced,
    decidedBy: { kind: 'default' },
    conditional,
    matches,
    summary: `blocked by the default deny: no rule allows it${hint}${enforced ? '' : ' [audit mode: recorded, not blocked]'}`,
  };
}
