import { formatRange, isLoopback as isLoopbackAddr, type AddrRange, type Family } from '../net/ip.js';
import {
  DHCP_PORTS,
  dhcpDestinations,
  dhcpUids,
  DNS_PORT,
  dnsRedirected,
  dnsRedirectScopes,
  DOH_PORT,
  dohEndpoints,
  DOT_PORT,
  dotReach,
  dotRules,
  encryptedDnsBlocked,
  ESSENTIAL_ICMPV6_TYPES,
  type HostFacts,
} from './builtins.js';
import type { DomainPattern, Policy, Rule, Scope } from './policy.js';

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
  /** The source port (DHCP clients send from theirs). */
  sport?: number;
  /** The ICMP or ICMPv6 type (neighbour discovery is essential; an echo request is not). */
  icmpType?: number;
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

/** What Sluice's ruleset does beside the policy's rules, matched against the query. */
export interface BuiltinMatch {
  builtin: 'dns-guard' | 'essentials' | 'encrypted-dns';
  result: Tri;
  detail: string;
}

export interface Explanation {
  /** `redirect`: a DNS query, answered by the DNS guard; the destination never sees it. */
  verdict: 'allow' | 'block' | 'redirect';
  /**
   * Whether a block happens or is only recorded (would-block): the deciding
   * deny rule's own mode, else the mode of the sender's scope, else the
   * policy's. When the query leaves the sender open and a scope could
   * change it, the policy's mode, and the summary says so.
   */
  enforced: boolean;
  /** The scope whose mode `enforced` is: `#rule` (the deny rule's own mode) or a `scopes:` name; absent: the policy's mode. */
  scope?: string;
  /** Deny rules in audit by their own mode that match: recorded as would-block, and the packet judged on by the rest. */
  audited: { rule: string; line: number }[];
  decidedBy:
    | { kind: 'rule'; rule: string; action: 'allow' | 'deny'; line: number }
    | { kind: 'default' }
    | { kind: 'loopback' }
    | { kind: 'local' }
    | { kind: 'dns-guard' }
    | { kind: 'essentials' }
    | { kind: 'encrypted-dns' };
  /** Built-ins that match or might match (those that decided nothing are caveats in the summary). */
  builtins: BuiltinMatch[];
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

/** Whether the destination lies in the ranges: yes when wholly inside one, maybe when it overlaps, no otherwise; a name could be anywhere. */
function destIn(d: Dest, ranges: readonly AddrRange[]): Tri {
  if (d.kind === 'name') return ranges.length > 0 ? 'maybe' : 'no';
  const r = d.range;
  const same = ranges.filter((a) => a.family === r.family);
  if (same.some((a) => a.start <= r.start && r.end <= a.end)) return 'yes';
  return same.some((a) => a.start <= r.end && r.start <= a.end) ? 'maybe' : 'no';
}

const not = (t: Tri): Tri => (t === 'yes' ? 'no' : t === 'no' ? 'yes' : 'maybe');
const or = (a: Tri, b: Tri): Tri => (a === 'yes' || b === 'yes' ? 'yes' : a === 'maybe' || b === 'maybe' ? 'maybe' : 'no');
/** A value the query may leave open, against the values that match. */
const oneOf = <T>(v: T | undefined, ok: readonly T[]): Tri => (v === undefined ? 'maybe' : ok.includes(v) ? 'yes' : 'no');
/** TCP or UDP to this port (the built-ins' port sets hold both). */
const tcpUdpPort = (q: Query, port: number): Tri => and(oneOf(q.proto, ['tcp', 'udp'] as const), oneOf(q.port, [port]));

/**
 * The built-ins, in the kernel's order, each matched against the query:
 * the DNS redirect (the nat hook, before any filtering), then essentials
 * (before every rule), then the encrypted-DNS block (after deny rules,
 * before allow rules). Each detail says what it is and what made it match.
 */
export function matchBuiltins(policy: Policy, q: Query, facts: HostFacts = {}): { redirect: BuiltinMatch; essentials: BuiltinMatch; encrypted: BuiltinMatch } {
  const no = (builtin: BuiltinMatch['builtin'], detail: string): BuiltinMatch => ({ builtin, result: 'no', detail });
  const fam = familyOf(q.dest);

  const scoped = dnsRedirectScopes(policy);
  const redirect = dnsRedirected(policy)
    ? { builtin: 'dns-guard' as const, result: tcpUdpPort(q, DNS_PORT), detail: `every DNS query (port ${DNS_PORT}, UDP or TCP, to any address) goes to Sluice's DNS guard, which answers only names the policy allows; the destination is never asked` }
    : scoped.length > 0
      ? {
          builtin: 'dns-guard' as const,
          result: and(tcpUdpPort(q, DNS_PORT), scoped.map((sc) => scopeMatch(sc, q)).reduce(or)),
          detail: `in audit mode, the DNS queries (port ${DNS_PORT}, UDP or TCP, to any address) of the enforced scopes (${scoped.map((sc) => sc.name).join(', ')}) go to Sluice's DNS guard, which answers only names the policy allows; everyone else's go where they were sent`,
        }
      : no('dns-guard', 'DNS is not redirected (no guard, or audit mode)');

  let essentials = no('essentials', 'essentials are off');
  if (policy.essentials) {
    const ndp = fam === 4 ? 'no' : and(oneOf(q.proto, ['icmpv6'] as const), oneOf(q.icmpType, ESSENTIAL_ICMPV6_TYPES));
    // destIn keeps to the destination's family: DHCP's ports and places there.
    const dhcpOf = (f: 4 | 6): Tri =>
      [oneOf(q.proto, ['udp'] as const), oneOf(q.sport, [DHCP_PORTS[f].client]), oneOf(q.port, [DHCP_PORTS[f].server]), oneOf(q.uid, dhcpUids(facts)), destIn(q.dest, dhcpDestinations(facts, f))].reduce(and);
    const dhcp = or(dhcpOf(4), dhcpOf(6));
    if (ndp !== 'no') essentials = { builtin: 'essentials', result: ndp, detail: `IPv6 neighbour discovery and MLD (ICMPv6 types ${ESSENTIAL_ICMPV6_TYPES.join(', ')}) are always allowed` };
    else if (dhcp !== 'no') {
      essentials = {
        builtin: 'essentials',
        result: dhcp,
        detail: `DHCP is always allowed from the client port to a DHCP server (${DHCP_PORTS[4].client}->${DHCP_PORTS[4].server}/udp, ${DHCP_PORTS[6].client}->${DHCP_PORTS[6].server}/udp for DHCPv6; broadcast, the DHCPv6 groups or the server of a lease held) by uid ${dhcpUids(facts).join(', ')}`,
      };
    } else essentials = no('essentials', 'not neighbour discovery or DHCP');
  }

  let encrypted = no('encrypted-dns', 'encrypted DNS is not blocked (no guard, or encrypted_dns: allow)');
  if (encryptedDnsBlocked(policy)) {
    // DNS over TLS: anywhere but to the destinations of allow rules that list port 853 themselves.
    const dot = dotRules(policy);
    let exempt: Tri;
    if (q.dest.kind === 'name') {
      const name = q.dest.name;
      const everywhere = ([4, 6] as const).filter((f) => dot.some((r) => dotReach(r, f) === 'everywhere')).length;
      // A name's addresses are unknown here: exempt for sure only where every address is, or a DoT rule names it.
      exempt = everywhere === 2 || dot.some((r) => r.domains.some((d) => domainMatches(d, name))) ? 'yes' : everywhere === 1 || dot.some((r) => r.addrs.length > 0) ? 'maybe' : 'no';
    } else {
      const f = q.dest.range.family;
      exempt = dot.some((r) => dotReach(r, f) === 'everywhere') ? 'yes' : destIn(q.dest, dot.flatMap((r) => [...r.addrs, ...(q.learned?.get(r.name) ?? [])]));
    }
    const dotHit = and(tcpUdpPort(q, DOT_PORT), not(exempt));
    const dohHit = and(tcpUdpPort(q, DOH_PORT), q.dest.kind === 'name' ? 'no' : destIn(q.dest, dohEndpoints(policy, facts)));
    if (dotHit !== 'no') {
      encrypted = { builtin: 'encrypted-dns', result: dotHit, detail: `DNS over TLS (port ${DOT_PORT}) is blocked except to the destinations of allow rules that list port ${DOT_PORT}` };
    } else if (dohHit !== 'no') {
      encrypted = { builtin: 'encrypted-dns', result: dohHit, detail: `a DNS-over-HTTPS endpoint (port ${DOH_PORT}: the encrypted-DNS list${policy.mode === 'enforce' ? " and the guard's upstreams" : ''}) is blocked unless an allow rule names its address` };
    } else encrypted = no('encrypted-dns', 'not DNS over TLS or a known DNS-over-HTTPS endpoint');
  }
  return { redirect, essentials, encrypted };
}

/** Whether the query's sender is in a scope: by uid, or by service as a rule's services match (unit, or a cgroup path and below). */
export function scopeMatch(scope: Scope, q: Query): Tri {
  if (scope.users.length > 0) return q.uid === undefined ? 'maybe' : scope.users.some((u) => u.uid === q.uid) ? 'yes' : 'no';
  if (q.service === undefined) return 'maybe';
  const svc = q.service;
  return scope.services.some((s) => (s.kind === 'unit' ? s.unit === svc : svc === s.path || svc.startsWith(`${s.path}/`))) ? 'yes' : 'no';
}

/**
 * The mode a block of this query has (gradual enforcement): a deny rule's
 * own mode, else the sender's scope's, else the policy's. `open` names the
 * scopes that might apply when the query leaves the sender open.
 */
export function blockMode(policy: Policy, q: Query, ownMode?: 'audit' | 'enforce'): { enforced: boolean; scope?: string; open: Scope[] } {
  if (ownMode) return { enforced: ownMode === 'enforce', scope: '#rule', open: [] };
  const open: Scope[] = [];
  for (const sc of policy.scopes ?? []) {
    const m = scopeMatch(sc, q);
    if (m === 'yes') return { enforced: sc.mode === 'enforce', scope: sc.name, open: [] };
    if (m === 'maybe') open.push(sc);
  }
  return { enforced: policy.mode === 'enforce', open };
}

/** The verdict the policy gives this query, with the rule that decides and why. */
export function explain(policy: Policy, q: Query, facts: HostFacts = {}): Explanation {
  const globalEnforced = policy.mode === 'enforce';
  const matches = policy.rules.map((r) => matchRule(r, q));
  const b = matchBuiltins(policy, q, facts);
  const builtins = [b.redirect, b.essentials, b.encrypted].filter((m) => m.result !== 'no');
  const deny = matches.filter((m) => m.action === 'deny');
  const allow = matches.filter((m) => m.action === 'allow');
  const conditional = matches.filter((m) => m.result === 'maybe');
  // The dimensions worth saying: everything but the unconstrained ones ("any user").
  const why = (m: RuleMatch) => m.dimensions.filter((d) => !d.detail.startsWith('any ')).map((d) => d.detail);

  // The nat hook redirects DNS before any filtering, loopback included.
  if (b.redirect.result === 'yes') {
    return { verdict: 'redirect', enforced: globalEnforced, audited: [], decidedBy: { kind: 'dns-guard' }, builtins, conditional: [], matches, summary: `redirected: ${b.redirect.detail}` };
  }
  if (isLoopback(q.dest)) {
    return { verdict: 'allow', enforced: globalEnforced, audited: [], decidedBy: { kind: 'loopback' }, builtins, conditional: [], matches, summary: 'allowed: loopback traffic is always allowed' };
  }
  if (q.local && q.dest.kind === 'range') {
    return { verdict: 'allow', enforced: globalEnforced, audited: [], decidedBy: { kind: 'local' }, builtins, conditional: [], matches, summary: "allowed: traffic to this host's own addresses is always allowed" };
  }
  // What a built-in might do when the query leaves its conditions open.
  const builtinCaveat = (list: BuiltinMatch[]) => list.filter((m) => m.result === 'maybe').map((m) => `; unless ${m.builtin === 'dns-guard' ? 'it is DNS: ' : m.builtin === 'essentials' ? 'it is essential traffic: ' : 'it is encrypted DNS: '}${m.detail}`).join('');
  if (b.essentials.result === 'yes') {
    return { verdict: 'allow', enforced: globalEnforced, audited: [], decidedBy: { kind: 'essentials' }, builtins, conditional: [], matches, summary: `allowed as essentials (before any rule): ${b.essentials.detail}` };
  }
  const before = builtinCaveat([b.redirect, b.essentials]);
  // Deny rules in the kernel's order (the file's, deny rules first): one in audit by its own mode
  // records would-block and lets the packet on; the first other one that matches decides.
  const ownMode = new Map(policy.rules.map((r) => [r.name, r.mode]));
  const audited: { rule: string; line: number }[] = [];
  let denied: RuleMatch | undefined;
  for (const m of deny) {
    if (m.result !== 'yes') continue;
    if (ownMode.get(m.rule) === 'audit') audited.push({ rule: m.rule, line: m.line });
    else {
      denied = m;
      break;
    }
  }
  const auditNote = audited.length > 0 ? `; recorded as would-block by deny rule ${audited.map((a) => `${a.rule} (line ${a.line}, mode: audit)`).join(', ')}` : '';
  /** What a block means for this sender: refused, or only recorded, and by which scope's mode. */
  const modeOf = (own?: 'audit' | 'enforce') => {
    const bm = blockMode(policy, q, own);
    const by = bm.scope === '#rule' ? "the rule's own mode" : bm.scope ? `scope ${bm.scope}` : '';
    const note = bm.enforced ? (by && !globalEnforced ? ` [enforced: ${by}]` : '') : ` [${by ? `audit by ${by}` : 'audit mode'}: recorded, not blocked]`;
    const open = bm.open.length > 0 ? `; unless the sender is in scope ${bm.open.map((s) => `${s.name} (${s.mode})`).join(', ')}` : '';
    return { enforced: bm.enforced, ...(bm.scope ? { scope: bm.scope } : {}), note: `${open}${note}` };
  };
  if (denied) {
    const md = modeOf(ownMode.get(denied.rule));
    return {
      verdict: 'block',
      enforced: md.enforced,
      ...(md.scope ? { scope: md.scope } : {}),
      audited,
      decidedBy: { kind: 'rule', rule: denied.rule, action: 'deny', line: denied.line },
      builtins,
      conditional,
      matches,
      summary: `blocked by deny rule ${denied.rule} (line ${denied.line}): ${why(denied).join('; ')}${before}${auditNote}${md.note}`,
    };
  }
  if (b.encrypted.result === 'yes') {
    const md = modeOf();
    return {
      verdict: 'block',
      enforced: md.enforced,
      ...(md.scope ? { scope: md.scope } : {}),
      audited,
      decidedBy: { kind: 'encrypted-dns' },
      builtins,
      conditional,
      matches,
      summary: `blocked as encrypted DNS (after the deny rules, before the allow rules): ${b.encrypted.detail}${before}${auditNote}${md.note}`,
    };
  }
  const allowed = allow.find((m) => m.result === 'yes');
  const maybeDeny = deny.filter((m) => m.result === 'maybe');
  const caveat = `${maybeDeny.length > 0 ? `; unless deny rule ${maybeDeny.map((m) => `${m.rule} (${why(m).join('; ')})`).join(', ')} applies` : ''}${builtinCaveat([b.redirect, b.essentials, b.encrypted])}`;
  if (allowed) {
    return {
      verdict: 'allow',
      enforced: globalEnforced,
      audited,
      decidedBy: { kind: 'rule', rule: allowed.rule, action: 'allow', line: allowed.line },
      builtins,
      conditional,
      matches,
      summary: `allowed by rule ${allowed.rule} (line ${allowed.line}): ${why(allowed).join('; ')}${caveat}${auditNote}`,
    };
  }
  if (policy.defaultAction === 'allow') {
    return { verdict: 'allow', enforced: globalEnforced, audited, decidedBy: { kind: 'default' }, builtins, conditional, matches, summary: `allowed by the default (default: allow)${caveat}${auditNote}` };
  }
  const maybeAllow = allow.filter((m) => m.result === 'maybe');
  const hint =
    maybeAllow.length > 0
      ? `; rule ${maybeAllow.map((m) => `${m.rule} (line ${m.line}) would allow it ${why(m).filter((w) => w.startsWith('only') || w.includes('depends')).join(', ') || 'under conditions the query left open'}`).join('; rule ')}`
      : '';
  const md = modeOf();
  return {
    verdict: 'block',
    enforced: md.enforced,
    ...(md.scope ? { scope: md.scope } : {}),
    audited,
    decidedBy: { kind: 'default' },
    builtins,
    conditional,
    matches,
    summary: `blocked by the default deny: no rule allows it${hint}${builtinCaveat([b.redirect, b.essentials])}${auditNote}${md.note}`,
  };
}
