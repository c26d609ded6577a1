import { maxOf, type AddrRange, type Family } from '../net/ip.js';
import type { Policy, Rule, Scope } from './policy.js';

/**
 * What every compiled ruleset does beside the policy's rules, in one place:
 * the compiler builds its chains from these, and `explain` reasons from the
 * same facts, so the two cannot drift apart (test/unit/explain-agrees.test.ts
 * checks they agree packet by packet).
 */

/** IPv6 neighbour discovery and MLD messages a host must send to stay reachable (RFC 4861, RFC 3810). */
export const ESSENTIAL_ICMPV6_TYPES: readonly number[] = [131, 132, 133, 135, 136, 143];

/** DHCP's client and server ports, per family (RFC 2131, RFC 8415). */
export const DHCP_PORTS: Readonly<Record<Family, { client: number; server: number }>> = { 4: { client: 68, server: 67 }, 6: { client: 546, server: 547 } };

/** Where DHCP clients find servers before they have a lease (RFC 2131 4.1, RFC 8415 7.1). */
export const DHCP_BROADCAST4: AddrRange = { family: 4, start: 0xffffffffn, end: 0xffffffffn };
export const DHCP_MULTICAST6: readonly AddrRange[] = [
  { family: 6, start: 0xff020000000000000000000000010002n, end: 0xff020000000000000000000000010002n },
  { family: 6, start: 0xff050000000000000000000000010003n, end: 0xff050000000000000000000000010003n },
];

export const DNS_PORT = 53;
export const DOT_PORT = 853;
export const DOH_PORT = 443;

/** Facts about the host the built-ins depend on (the compiler's environment, less the cgroups). */
export interface HostFacts {
  /** For the DNS guard: the resolvers it forwards to, and the encrypted-DNS endpoints to block. */
  dns?: { upstreams: AddrRange[]; encrypted: { addrs: AddrRange[]; names: string[] } };
  /** Servers of the DHCP leases this host holds (renewals go to them by unicast). */
  dhcpServers?: AddrRange[];
  /** The users the DHCP clients run as (default: root only; systemd-networkd runs as systemd-network). */
  dhcpUids?: number[];
}

/** The users whose DHCP traffic is essential: root and the host's DHCP client users, sorted, once each. */
export function dhcpUids(facts: HostFacts): number[] {
  return [...new Set([0, ...(facts.dhcpUids ?? [])])].sort((a, b) => a - b);
}

/** Where essential DHCP traffic of a family may go: broadcast or the server multicast groups, and the servers of leases held. */
export function dhcpDestinations(facts: HostFacts, family: Family): AddrRange[] {
  const base = family === 4 ? [DHCP_BROADCAST4] : [...DHCP_MULTICAST6];
  return [...base, ...(facts.dhcpServers ?? []).filter((a) => a.family === family && a.start === a.end)];
}

/** In enforce mode with the guard, every new DNS query (port 53, UDP or TCP, to any address) is redirected to the guard. */
export function dnsRedirected(policy: Policy): boolean {
  return policy.dns.guard && policy.mode === 'enforce';
}

/**
 * In audit mode with the guard, the enforce scopes' DNS queries (and only
 * theirs) are redirected to the guard: what is enforced for them then depends
 * on the guard, as in enforce mode (fail closed), while everyone else's DNS
 * goes where it was sent and is observed, as audit mode must. Empty otherwise.
 */
export function dnsRedirectScopes(policy: Policy): Scope[] {
  return policy.dns.guard && policy.mode === 'audit' ? (policy.scopes ?? []).filter((s) => s.mode === 'enforce') : [];
}

/** Whether the DNS guard listens: its redirect is in the ruleset, for everyone or for an audit policy's enforce scopes. */
export function dnsGuardListens(policy: Policy): boolean {
  return dnsRedirected(policy) || dnsRedirectScopes(policy).length > 0;
}

/** Whether the guard blocks encrypted DNS (DNS over TLS, DNS over HTTPS to known endpoints). */
export function encryptedDnsBlocked(policy: Policy): boolean {
  return policy.dns.guard && policy.dns.encryptedDns === 'block';
}

/**
 * The DNS-over-HTTPS endpoints blocked on port 443: the list's, and in
 * enforce mode the guard's own upstreams (many resolvers also answer DoH, a
 * way around the guard for anyone a broad rule lets reach them), less any
 * address an allow rule names exactly (an explicit allow wins, a broad one
 * does not). Not merged: the caller dedupes.
 */
export function dohEndpoints(policy: Policy, facts: HostFacts): AddrRange[] {
  const dns = facts.dns ?? { upstreams: [], encrypted: { addrs: [], names: [] } };
  const all = policy.mode === 'audit' ? dns.encrypted.addrs : [...dns.encrypted.addrs, ...dns.upstreams];
  const explicit = new Set(policy.rules.filter((r) => r.action === 'allow').flatMap((r) => r.addrs.filter((a) => a.start === a.end).map((a) => `${a.family}:${a.start}`)));
  return all.filter((a) => a.start === a.end && !explicit.has(`${a.family}:${a.start}`));
}

/** Allow rules that list port 853 themselves: DNS over TLS to their destinations is theirs to judge. */
export function dotRules(policy: Policy): Rule[] {
  return policy.rules.filter((r) => r.action === 'allow' && r.ports.some((p) => p.from === DOT_PORT && p.to === DOT_PORT));
}

/** A DoT rule's destinations of a family: every address (no destination, or the whole family), or its addresses and names. */
export function dotReach(rule: Rule, family: Family): 'everywhere' | 'listed' {
  if (rule.addrs.length === 0 && rule.domains.length === 0) return 'everywhere';
  return rule.addrs.some((a) => a.family === family && a.start === 0n && a.end === maxOf(family)) ? 'everywhere' : 'listed';
}

/**
 * Packet marks from here up carry a service scope's index to the DNS guard
 * (compile/kernel-names.ts scopeQueryMark), never a uid: `dns.mark` may not
 * be one of them.
 */
export const SCOPE_QUERY_MARK_BASE = 0xfffff000;
