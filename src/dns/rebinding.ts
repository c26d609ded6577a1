import { parsePrefix, type AddrRange, type Family } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';

/**
 * DNS rebinding protection: an answer for a public name that points into a
 * private, loopback, link-local, CGNAT, metadata, multicast or
 * IPv4-embedding IPv6 range, or at one of this host's own addresses, is
 * dropped, unless a rule of the policy lists an address range that contains
 * it (the operator opted in).
 *
 * Ranges from the IANA special-purpose registries (RFC 6890) that a public
 * name has no business pointing to.
 */
function prefix(text: string): AddrRange {
  const p = parsePrefix(text);
  if (!p.ok) throw new Error(`bad built-in range ${text}: ${p.reason}`);
  return p.range;
}

/** ::ffff:0:0/96, built by hand: parsePrefix refuses IPv4-mapped addresses on purpose. */
const IPV4_MAPPED: AddrRange = { family: 6, start: 0xffffn << 32n, end: (0xffffn << 32n) | 0xffffffffn };

export const REBINDING_RANGES: { range: AddrRange; why: string }[] = [
  { range: prefix('0.0.0.0/8'), why: 'this network' },
  { range: prefix('10.0.0.0/8'), why: 'private' },
  { range: prefix('100.64.0.0/10'), why: 'CGNAT shared address space' },
  { range: prefix('127.0.0.0/8'), why: 'loopback' },
  { range: prefix('169.254.0.0/16'), why: 'link-local (cloud metadata lives here)' },
  { range: prefix('172.16.0.0/12'), why: 'private' },
  { range: prefix('192.0.0.0/24'), why: 'IETF protocol assignments' },
  { range: prefix('192.168.0.0/16'), why: 'private' },
  { range: prefix('224.0.0.0/4'), why: 'multicast' },
  { range: prefix('240.0.0.0/4'), why: 'reserved' },
  { range: prefix('::/128'), why: 'unspecified' },
  { range: prefix('::1/128'), why: 'loopback' },
  { range: prefix('::/96'), why: 'IPv4-compatible (embeds IPv4)' },
  { range: IPV4_MAPPED, why: 'IPv4-mapped (embeds IPv4)' },
  { range: prefix('64:ff9b::/96'), why: 'NAT64 (embeds IPv4)' },
  { range: prefix('64:ff9b:1::/48'), why: 'local-use NAT64 (embeds IPv4)' },
  { range: prefix('2002::/16'), why: '6to4 (embeds IPv4)' },
  { range: prefix('2001::/32'), why: 'Teredo (embeds IPv4)' },
  { range: prefix('fd00:ec2::/32'), why: 'cloud metadata (AWS IPv6)' },
  { range: prefix('fc00::/7'), why: 'unique local' },
  { range: prefix('fe80::/10'), why: 'link-local' },
  { range: prefix('ff00::/8'), why: 'multicast' },
];

/** Decides whether an answer address may be passed on. */
export class RebindingFilter {
  private allowed: AddrRange[];
  /** This host's own addresses, per family (refreshed by the caller as interfaces change). */
  private local: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };

  constructor(policy: Pick<Policy, 'rules'>, localAddresses: { family: Family; value: bigint }[] = []) {
    // Any prefix or range a rule lists explicitly (not `any`) opts that space in.
    this.allowed = policy.rules
      .filter((r) => r.action === 'allow')
      .flatMap((r) => r.addrs)
      .filter((a) => a.start !== 0n || a.end !== (a.family === 4 ? 0xffffffffn : (1n << 128n) - 1n));
    this.setLocalAddresses(localAddresses);
  }

  /**
   * The host's own addresses (every interface's): a name that resolves to
   * one of them reaches services listening on this host, the target of a
   * rebinding attack as much as loopback is. True when they changed.
   */
  setLocalAddresses(list: { family: Family; value: bigint }[]): boolean {
    const next: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
    for (const a of list) next[a.family].add(a.value);
    const same = ([4, 6] as const).every((f) => next[f].size === this.local[f].size && [...next[f]].every((x) => this.local[f].has(x)));
    this.local = next;
    return !same;
  }

  /** Null when the address may be passed on; otherwise why it is dropped. */
  check(family: Family, addr: bigint): string | null {
    const hit = this.local[family].has(addr) ? LOCAL : REBINDING_RANGES.find((r) => r.range.family === family && r.range.start <= addr && addr <= r.range.end)?.why;
    if (!hit) return null;
    if (this.allowed.some((a) => a.family === family && a.start <= addr && addr <= a.end)) return null;
    return hit;
  }
}

const LOCAL = "this host's own address";
