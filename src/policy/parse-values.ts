import { domainToASCII } from 'node:url';
import { MAX4, MAX6, parseAddr, parseIPv4, parseIPv6, parsePrefix, type AddrRange } from '../net/ip.js';
import type { DomainPattern, InterfaceRef, PortRange, ServiceRef } from './policy.js';

/**
 * Parsers for the values a policy holds. Each returns a value or a reason; the
 * loader turns reasons into positioned errors. These are the only gate
 * between a policy file and the kernel, so they accept a strict subset and
 * never pass a string through unvalidated (nft would, for example, resolve an
 * unknown word as a host name).
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = <T>(reason: string): Parsed<T> => ({ ok: false, reason });

/** Printable form of a hostile value for error messages: quoted, escaped, truncated. */
export function showValue(value: unknown): string {
  if (typeof value === 'string') {
    // Cut on code points (never half a surrogate pair), then escape what JSON leaves raw (DEL, C1 controls).
    const cps = [...value];
    const clipped = cps.length > 60 ? `${cps.slice(0, 57).join('')}...` : value;
    return escapeControls(JSON.stringify(clipped));
  }
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return '[...]';
  if (typeof value === 'object') return '{...}';
  return JSON.stringify(String(value));
}

/** Escapes DEL and C1 control characters, which terminals interpret (JSON.stringify leaves them raw). */
export function escapeControls(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export type Destination =
  | { kind: 'addr'; range: AddrRange }
  | { kind: 'any' }
  | { kind: 'domain'; pattern: DomainPattern };

const MAX_NAME = 253;
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * Parses a domain name or a `*.suffix` wildcard into lower-case IDNA form.
 * A wildcard must be the whole first label (RFC 4592 section 2.1.1 puts the
 * asterisk label only there); it matches any name below the suffix, at any
 * depth, and never the suffix itself.
 */
export function parseDomain(text: string): Parsed<DomainPattern> {
  let rest = text.trim();
  if (rest !== text || rest.length === 0) return bad('domain names cannot be empty or padded with spaces');
  let wildcard = false;
  if (rest.startsWith('*.')) {
    wildcard = true;
    rest = rest.slice(2);
  }
  if (rest.includes('*')) {
    return bad('a wildcard must be the whole first label, as in *.example.com');
  }
  if (rest.endsWith('.')) rest = rest.slice(0, -1);
  if (rest.length === 0) return bad('a wildcard needs a suffix, as in *.example.com');
  // Check characters before any IDNA processing: the WHATWG host parser behind
  // domainToASCII stops at ?, # and \, drops tab and newlines and decodes %
  // escapes, so "evil.com?.bücher.example" would come out as "evil.com".
  // ASCII is limited to letters, digits, hyphen, underscore and dot; other
  // characters must be letters, marks or digits (IDNA), and invisible format
  // characters (zero-width space, soft hyphen, BOM) are refused rather than
  // silently dropped.
  const badAscii = /[^A-Za-z0-9._-]/.exec(rest.replace(/[^\x00-\x7f]/g, ''));
  if (badAscii) return bad(`character ${JSON.stringify(badAscii[0])} is not allowed in a domain name`);
  if (/\p{Cf}|\p{Cc}|\p{Z}/u.test(rest)) return bad('invisible or space characters are not allowed in a domain name');
  if (/[^\x00-\x7f]/.test(rest) && !/^[\p{L}\p{M}\p{N}._-]+$/u.test(rest)) return bad('only letters, digits, hyphens and underscores are allowed in a domain name');
  // IDNA label by label, so no mapping can move a dot (U+3002 and friends map to ".").
  const parts = rest.split('.');
  const asciiLabels: string[] = [];
  for (const part of parts) {
    if (part.length === 0) return bad('empty label (two dots in a row)');
    if (!/[^\x00-\x7f]/.test(part)) {
      asciiLabels.push(part.toLowerCase());
      continue;
    }
    const converted = domainToASCII(part);
    if (converted === '' || converted.includes('.')) return bad('not a valid international domain name');
    asciiLabels.push(converted);
  }
  const ascii = asciiLabels.join('.');
  if (ascii.length > MAX_NAME) return bad(`a domain name is at most ${MAX_NAME} characters`);
  const labels = ascii.split('.');
  // No label is empty here: empty parts were refused above, and IDNA's empty or dotted results too.
  for (const label of labels) {
    if (label.length > 63) return bad('a label is at most 63 characters');
    if (!LABEL.test(label)) return bad(`bad label ${JSON.stringify(label)}: use letters, digits, hyphens and underscores`);
  }
  const last = labels[labels.length - 1] ?? '';
  if (/^[0-9]+$/.test(last)) return bad('not an IP address, and not a domain name (the last label is numeric)');
  if (labels.length < 2 && !wildcard) {
    return bad('a single-label name is ambiguous (search domains); write the full name');
  }
  return ok({ text: wildcard ? `*.${ascii}` : ascii, name: ascii, wildcard });
}

/**
 * An IPv4 address or a prefix without host bits, the bulk of every feed, in
 * Number arithmetic; null for anything else (parsePrefix then gives the
 * answer, or the reason). Equal to what parsePrefix returns for these.
 */
function fastIPv4(value: string): Destination | null {
  const slash = value.indexOf('/');
  const addrText = slash < 0 ? value : value.slice(0, slash);
  const v = parseIPv4(addrText);
  if (v === null) return null;
  if (slash < 0) return { kind: 'addr', range: { family: 4, start: v, end: v } };
  const lenText = value.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(lenText)) return null;
  const len = Number(lenText);
  if (len > 32) return null;
  const n = Number(v);
  const size = 2 ** (32 - len);
  if (n % size !== 0) return null;
  return { kind: 'addr', range: { family: 4, start: v, end: len === 32 ? v : BigInt(n + size - 1) } };
}

/** Parses one `to` entry: an address, prefix, range, `any`, a domain name or a wildcard. */
export function parseDestination(value: unknown): Parsed<Destination> {
  if (typeof value !== 'string') return bad('expected an address, a prefix or a domain name as a string');
  if (value === 'any') return ok({ kind: 'any' });
  const fast = fastIPv4(value);
  if (fast) return ok(fast);
  // A plain IPv6 host (the bulk of IPv6 feeds): no prefix arithmetic needed; mapped addresses go the long way (refused there).
  if (value.includes(':') && !value.includes('/') && !value.includes('-')) {
    const v6 = parseIPv6(value);
    if (v6 !== null && v6 >> 32n !== 0xffffn) return ok({ kind: 'addr', range: { family: 6, start: v6, end: v6 } });
  }
  const looksLikeAddr = /^[0-9a-fA-F:.]+(\/[0-9]+)?$/.test(value) && (value.includes(':') || /^[0-9.\/]+$/.test(value));
  // A range only when its start is an address: "cafe-babe.de" is a name.
  const dash = value.indexOf('-');
  const looksLikeRange = dash > 0 && parseAddr(value.slice(0, dash)) !== null;
  if (looksLikeAddr || looksLikeRange || value.includes('/')) {
    const p = parsePrefix(value);
    if (!p.ok) return bad(p.reason);
    return ok({ kind: 'addr', range: p.range });
  }
  const d = parseDomain(value);
  if (!d.ok) return d;
  return ok({ kind: 'domain', pattern: d.value });
}

/** Both families' full ranges: what `any` means. */
export const ANY_RANGES: AddrRange[] = [
  { family: 4, start: 0n, end: MAX4 },
  { family: 6, start: 0n, end: MAX6 },
];

export type PortEntry =
  | { kind: 'ports'; ranges: PortRange[] }
  | { kind: 'icmp' }
  | { kind: 'icmpv6' };

/** Protocols written alone: a port after one is a mistake worth naming (`443/icmp`). */
const NO_PORTS = ['icmp', 'icmpv6', 'ipv6-icmp'];

/**
 * Parses one `ports` entry: `443` (TCP and UDP, as ufw does), `443/tcp`,
 * `60000-61000/udp`, or a bare protocol: `tcp`, `udp`, `icmp`, `icmpv6`.
 */
export function parsePortEntry(value: unknown): Parsed<PortEntry> {
  let text: string;
  if (typeof value === 'number') text = String(value);
  else if (typeof value === 'string') text = value;
  else return bad('expected a port, a port range or a protocol');
  const lower = text.toLowerCase();
  if (lower === 'icmp') return ok({ kind: 'icmp' });
  if (lower === 'icmpv6' || lower === 'ipv6-icmp') return ok({ kind: 'icmpv6' });
  if (lower === 'tcp' || lower === 'udp') {
    return ok({ kind: 'ports', ranges: [{ proto: lower, from: 0, to: 65535 }] });
  }
  const m = /^([0-9]+)(?:-([0-9]+))?(?:\/([a-z0-9-]+))?$/.exec(lower);
  if (!m) {
    return bad('expected PORT, PORT/PROTO, FROM-TO/PROTO or one of tcp, udp, icmp, icmpv6 (service names are not resolved)');
  }
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  const proto = m[3];
  if (!Number.isInteger(from) || from < 1 || from > 65535 || !/^[0-9]{1,5}$/.test(m[1] ?? '')) {
    return bad('a port is a number from 1 to 65535');
  }
  if (!Number.isInteger(to) || to < 1 || to > 65535 || (m[2] !== undefined && !/^[0-9]{1,5}$/.test(m[2]))) {
    return bad('a port is a number from 1 to 65535');
  }
  if (to < from) return bad('a port range must go from low to high');
  if (proto !== undefined && proto !== 'tcp' && proto !== 'udp') {
    return bad(
      NO_PORTS.includes(proto)
        ? `${proto} has no ports; write it alone`
        : `unknown protocol ${JSON.stringify(proto)}: use tcp or udp`,
    );
  }
  const protos: ('tcp' | 'udp')[] = proto === undefined ? ['tcp', 'udp'] : [proto];
  return ok({ kind: 'ports', ranges: protos.map((p) => ({ proto: p, from, to })) });
}

/** Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no slash or space; a trailing `*` matches a prefix. */
export function parseInterface(value: unknown): Parsed<InterfaceRef> {
  if (typeof value !== 'string') return bad('expected an interface name');
  const wildcard = value.endsWith('*');
  const name = wildcard ? value.slice(0, -1) : value;
  if (name.length === 0) return bad('an interface wildcard needs a prefix, as in wg*');
  if (name.includes('*')) return bad('a wildcard is only allowed at the end, as in wg*');
  if (name.length > 15) return bad('an interface name is at most 15 characters');
  if (!/^[A-Za-z0-9_.:@-]+$/.test(name)) return bad('interface names use letters, digits and . _ - : @');
  if (!wildcard && (name === '.' || name === '..')) return bad('not an interface name');
  return ok({ name, wildcard });
}

const UNIT = /^[A-Za-z0-9:_.@\\-]{1,240}\.(service|scope|slice)$/;
const CGROUP_SEGMENT = /^[A-Za-z0-9:_.@\\-]{1,255}$/;

/** A systemd unit name, or an absolute cgroup v2 path relative to the cgroup root. */
export function parseService(value: unknown): Parsed<ServiceRef> {
  if (typeof value !== 'string') return bad('expected a systemd unit name or a cgroup path');
  if (value.startsWith('/')) {
    const segments = value.slice(1).split('/');
    if (value.length > 4000 || segments.some((s) => !CGROUP_SEGMENT.test(s) || s === '.' || s === '..')) {
      return bad('a cgroup path is /segment/segment/... with letters, digits and : _ . @ - in each');
    }
    return ok({ kind: 'cgroup', path: value });
  }
  if (!UNIT.test(value)) {
    return bad('expected a unit name ending in .service, .scope or .slice (or a cgroup path starting with /)');
  }
  return ok({ kind: 'unit', unit: value });
}

/** A user name as useradd accepts it, or a numeric uid. Resolution happens in the loader. */
export function parseUser(value: unknown): Parsed<{ uid?: number; name?: string }> {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0 || value > 0xfffffffe) return bad('a uid is an integer from 0 to 4294967294');
    return ok({ uid: value });
  }
  if (typeof value !== 'string') return bad('expected a user name or uid');
  if (/^[0-9]+$/.test(value)) return parseUser(Number(value));
  if (!/^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(value)) return bad('not a valid user name');
  return ok({ name: value });
}

/**
 * The grammar of rule names. They end up in kernel object names, comments and
 * log prefixes (src/compile/kernel-names.ts builds and parses those): short
 * and plain, and never starting with `#`, which marks Sluice's built-in rules.
 */
export const RULE_NAME = /^[a-z0-9][a-z0-9_.-]{0,47}$/;

/** Rule names end up in kernel object comments and log prefixes: keep them short and plain. */
export function parseRuleName(value: unknown, what: 'rule' | 'scope' = 'rule'): Parsed<string> {
  if (typeof value !== 'string') return bad(`a ${what} name is a string`);
  if (!RULE_NAME.test(value)) {
    return bad(`a ${what} name is 1 to 48 lower-case letters, digits, and . _ - (starting with a letter or digit)`);
  }
  return ok(value);
}

/** Milliseconds per duration unit, for every duration Sluice reads (`window:`, `timeout:`, `--since`). */
export const DURATION_MS: Readonly<Record<'ms' | 's' | 'm' | 'h' | 'd' | 'w', number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `60s`, `5m`, `1h`, `1d`, `250ms`, or a number of seconds; in ms, or null when it is none of those. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? Math.round(v * 1000) : null;
  if (typeof v !== 'string') return null;
  const m = /^([0-9]{1,6})(ms|s|m|h|d)$/.exec(v);
  if (!m) return null;
  return Number(m[1]) * DURATION_MS[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
}
