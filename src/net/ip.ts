/**
 * Strict IPv4/IPv6 address and prefix parsing, with addresses as bigints so
 * both families share one range arithmetic. Strict means: no leading zeros in
 * IPv4 octets (0177.0.0.1 is octal to some parsers and decimal to others),
 * no zone ids, no IPv4-mapped IPv6 in policies (those never match on the wire
 * in an inet table; the packet is IPv4), no host bits set in a prefix.
 */

export type Family = 4 | 6;

/** An inclusive address range of one family. A host is start === end. */
export interface AddrRange {
  family: Family;
  start: bigint;
  end: bigint;
}

export const MAX4 = (1n << 32n) - 1n;
export const MAX6 = (1n << 128n) - 1n;

/** Maximum address value of a family. */
export function maxOf(family: Family): bigint {
  return family === 4 ? MAX4 : MAX6;
}

/**
 * Parses dotted-quad IPv4. Returns null for anything else. A hand-written
 * scan (no split, no regex, one BigInt): feeds of a million addresses go
 * through here.
 */
export function parseIPv4(text: string): bigint | null {
  const n = text.length;
  if (n < 7 || n > 15) return null;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return null;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      // No leading zeros: 0177 is octal to some parsers and decimal to others.
      if (digits === 1 && octet === 0) return null;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return null;
    } else return null;
  }
  if (dots !== 3 || digits === 0) return null;
  return BigInt(value * 256 + octet);
}

/**
 * Parses IPv6 text (RFC 4291 section 2.2, including a trailing dotted quad).
 * Returns null otherwise. Text without a dotted quad goes through a
 * hand-written scan (no regex, no split, no string built), as IPv6 feeds
 * of a million addresses do; the rest through parseIPv6General, which the
 * scan is tested against.
 */
export function parseIPv6(text: string): bigint | null {
  const n = text.length;
  if (n < 2 || n > 45 || text.indexOf('.') >= 0) return parseIPv6General(text);
  // The words go in a scratch array (no allocation per address); nine words are never an address.
  const words = SCRATCH6;
  let count = 0;
  let gap = -1;
  let word = 0;
  let digits = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    let v: number;
    if (c >= 48 && c <= 57) v = c - 48;
    else if (c >= 97 && c <= 102) v = c - 87;
    else if (c >= 65 && c <= 70) v = c - 55;
    else if (c === 58) {
      if (digits > 0) {
        if (count === 8) return null;
        words[count++] = word;
        word = 0;
        digits = 0;
        // A single colon at the very end ("1::2:") is not an address.
        if (i === n - 1) return null;
        if (text.charCodeAt(i + 1) !== 58) continue;
        i++;
      } else if (i === 0 && n > 1 && text.charCodeAt(1) === 58) {
        i++;
      } else return null;
      // "::" here.
      if (gap >= 0) return null;
      gap = count;
      if (i + 1 < n && text.charCodeAt(i + 1) === 58) return null;
      continue;
    } else return null;
    word = word * 16 + v;
    if (++digits > 4) return null;
  }
  if (digits > 0) {
    if (count === 8) return null;
    words[count++] = word;
  } else if (gap !== count) return null;
  if (gap >= 0) {
    const missing = 8 - count;
    if (missing < 1) return null;
    // The words after "::" move to the end; the gap is zeros.
    for (let k = count - 1; k >= gap; k--) words[k + missing] = words[k] as number;
    for (let k = gap; k < gap + missing; k++) words[k] = 0;
  } else if (count !== 8) return null;
  // Three exact doubles (48, 48 and 32 bits), then one value: no string, three small bigints.
  const w = (k: number) => words[k] as number;
  const a = w(0) * 2 ** 32 + w(1) * 2 ** 16 + w(2);
  const b = w(3) * 2 ** 32 + w(4) * 2 ** 16 + w(5);
  const c = w(6) * 2 ** 16 + w(7);
  return (BigInt(a) << 80n) | (BigInt(b) << 32n) | BigInt(c);
}

/** parseIPv6's words. */
const SCRATCH6 = new Uint16Array(8);

/** The general IPv6 parser (dotted-quad tails included); the reference the fast scan in parseIPv6 is tested against. */
export function parseIPv6General(text: string): bigint | null {
  if (text.length < 2 || text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  let head = text;
  let tailWords: number[] = [];
  const lastColon = head.lastIndexOf(':');
  const tail = head.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIPv4(tail);
    if (v4 === null) return null;
    tailWords = [Number(v4 >> 16n), Number(v4 & 0xffffn)];
    head = head.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const doubleAt = head.indexOf('::');
  if (doubleAt !== head.lastIndexOf('::')) return null;
  const parseGroups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let words: number[];
  if (doubleAt >= 0) {
    const left = parseGroups(head.slice(0, doubleAt));
    const right = parseGroups(head.slice(doubleAt + 2));
    if (!left || !right) return null;
    const missing = 8 - left.length - right.length - tailWords.length;
    if (missing < 1) return null;
    words = [...left, ...new Array<number>(missing).fill(0), ...right, ...tailWords];
  } else {
    const all = parseGroups(head);
    if (!all) return null;
    words = [...all, ...tailWords];
  }
  if (words.length !== 8) return null;
  let value = 0n;
  for (const w of words) value = (value << 16n) | BigInt(w);
  return value;
}

/** Formats an address in its canonical text form (RFC 5952 for IPv6). */
export function formatAddr(family: Family, value: bigint): string {
  if (family === 4) {
    // Number arithmetic: this runs for every event and every DNS answer address.
    const a = Number(value & 0xffffffffn);
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const words: number[] = [];
  for (let i = 7; i >= 0; i--) words.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952 section 4.2.3: compress the longest run of two or more zero words, the first if tied.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Parses an address in either family. */
export function parseAddr(text: string): { family: Family; value: bigint } | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseIPv6(text);
  if (v6 !== null) return { family: 6, value: v6 };
  return null;
}

export type PrefixParse =
  | { ok: true; range: AddrRange; prefixLen: number }
  | { ok: false; reason: string };

/**
 * Parses `ADDR`, `ADDR/LEN` or `ADDR-ADDR` into an inclusive range.
 * Host bits set in a prefix are an error that names the intended network.
 */
export function parsePrefix(text: string): PrefixParse {
  const dash = text.indexOf('-');
  if (dash > 0) {
    const a = parseAddr(text.slice(0, dash));
    const b = parseAddr(text.slice(dash + 1));
    if (!a || !b) return { ok: false, reason: 'not an address range' };
    if (a.family !== b.family) return { ok: false, reason: 'range mixes IPv4 and IPv6' };
    if (a.value > b.value) return { ok: false, reason: 'range start is after its end' };
    const mapped = checkMapped(a.family, a.value) ?? checkMapped(b.family, b.value);
    if (mapped) return { ok: false, reason: mapped };
    return { ok: true, range: { family: a.family, start: a.value, end: b.value }, prefixLen: -1 };
  }
  const slash = text.indexOf('/');
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const addr = parseAddr(addrText);
  if (!addr) return { ok: false, reason: 'not an IP address' };
  const bits = addr.family === 4 ? 32 : 128;
  let len = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > bits) {
      return { ok: false, reason: `prefix length must be 0 to ${bits}` };
    }
    len = Number(lenText);
  }
  const mapped = checkMapped(addr.family, addr.value);
  if (mapped) return { ok: false, reason: mapped };
  const hostMask = (1n << BigInt(bits - len)) - 1n;
  if ((addr.value & hostMask) !== 0n) {
    const net = addr.value & ~hostMask & maxOf(addr.family);
    return {
      ok: false,
      reason: `host bits are set (the network is ${formatAddr(addr.family, net)}/${len})`,
    };
  }
  return {
    ok: true,
    range: { family: addr.family, start: addr.value, end: addr.value | hostMask },
    prefixLen: len,
  };
}

function checkMapped(family: Family, value: bigint): string | null {
  if (family === 6 && value >> 32n === 0xffffn) {
    return 'IPv4-mapped IPv6 addresses never appear on the wire; write the IPv4 address';
  }
  return null;
}

/** Formats a range as a host, a prefix when it is one, or `a-b`. */
export function formatRange(r: AddrRange): string {
  if (r.start === r.end) return formatAddr(r.family, r.start);
  const bits = r.family === 4 ? 32 : 128;
  const size = r.end - r.start + 1n;
  if ((size & (size - 1n)) === 0n && (r.start & (size - 1n)) === 0n) {
    const len = bits - (size.toString(2).length - 1);
    return `${formatAddr(r.family, r.start)}/${len}`;
  }
  return `${formatAddr(r.family, r.start)}-${formatAddr(r.family, r.end)}`;
}

/** Sorts and merges overlapping or adjacent ranges (one family). The kernel rejects overlaps. */
export function mergeRanges(ranges: AddrRange[]): AddrRange[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: AddrRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1n) {
      if (r.end > last.end) last.end = r.end;
    } else {
      out.push({ ...r });
    }
  }
  return out;
}

/** True for 127.0.0.0/8 and ::1. */
export function isLoopback(family: Family, value: bigint): boolean {
  return family === 4 ? value >> 24n === 127n : value === 1n;
}

/** True when the range contains the address. */
export function rangeContains(r: AddrRange, family: Family, value: bigint): boolean {
  return r.family === family && r.start <= value && value <= r.end;
}

/** Big-endian bytes of an address (4 or 16 bytes). */
export function addrBytes(family: Family, value: bigint): Buffer {
  if (family === 4) {
    // One Number conversion, not four bigint shifts: a million-entry feed is encoded through here.
    const out = Buffer.allocUnsafe(4);
    out.writeUInt32BE(Number(value & 0xffffffffn));
    return out;
  }
  // Two 64-bit halves, not sixteen bigint shifts.
  const out = Buffer.allocUnsafe(16);
  out.writeBigUInt64BE((value >> 64n) & 0xffffffffffffffffn, 0);
  out.writeBigUInt64BE(value & 0xffffffffffffffffn, 8);
  return out;
}

/** Reads a big-endian address from bytes (`len` of them from `at`; by default all of `buf`). */
export function bytesAddr(buf: Uint8Array, at = 0, len = buf.length - at): bigint {
  // 32 bits at a time: one BigInt step per word instead of per byte (packets carry two addresses each).
  let v = 0n;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const w = (((buf[at + i] ?? 0) << 24) | ((buf[at + i + 1] ?? 0) << 16) | ((buf[at + i + 2] ?? 0) << 8) | (buf[at + i + 3] ?? 0)) >>> 0;
    v = (v << 32n) | BigInt(w);
  }
  for (; i < len; i++) v = (v << 8n) | BigInt(buf[at + i] ?? 0);
  return v;
}
