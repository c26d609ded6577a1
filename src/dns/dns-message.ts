/**
 * A strict DNS message codec (RFC 1035 section 4, EDNS RFC 6891, unknown
 * types RFC 3597). Every packet is hostile input: every length is checked,
 * compression pointers must point strictly backwards (so they cannot loop,
 * RFC 1035 section 4.1.4 only allows pointers to prior occurrences), names
 * are at most 255 octets, and anything malformed throws DnsFormatError,
 * which the guard answers with FORMERR or drops.
 *
 * Names are kept in presentation form with RFC 1035 section 5.1 escapes
 * (`\.` inside a label, `\DDD` for other bytes), so a label containing a dot
 * or odd bytes can never compare equal to an allowed name.
 */

export class DnsFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DnsFormatError';
  }
}

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, SVCB: 64, HTTPS: 65, ANY: 255 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** EDNS option codes. */
export const OPT_EDE = 15;

export interface Question {
  name: string;
  type: number;
  class: number;
}

export type RData =
  | { kind: 'a'; addr: bigint }
  | { kind: 'aaaa'; addr: bigint }
  /** CNAME, NS, PTR (and the other RFC 1035 single-name types): rdata is a compressible name. */
  | { kind: 'name'; name: string }
  | { kind: 'mx'; preference: number; exchange: string }
  | { kind: 'soa'; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }
  /** SVCB and HTTPS (RFC 9460): priority 0 is AliasMode; params in strictly increasing key order. */
  | { kind: 'svcb'; priority: number; target: string; params: SvcParam[] }
  | { kind: 'raw'; bytes: Buffer };

/** One SvcParam of an SVCB or HTTPS record: its key and its wire value. */
export interface SvcParam {
  key: number;
  value: Buffer;
}

/** SvcParamKeys the guard reads (RFC 9460 section 14.3.2). */
export const SVC_KEY = { MANDATORY: 0, IPV4HINT: 4, IPV6HINT: 6 } as const;

export interface RR {
  name: string;
  type: number;
  class: number;
  ttl: number;
  data: RData;
}

export interface EdnsOption {
  code: number;
  data: Buffer;
}

export interface Edns {
  udpSize: number;
  extendedRcode: number;
  version: number;
  dnssecOk: boolean;
  options: EdnsOption[];
}

export interface Flags {
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
}

export interface Message {
  id: number;
  flags: Flags;
  questions: Question[];
  answers: RR[];
  authorities: RR[];
  additionals: RR[];
  edns?: Edns;
}

const MAX_NAME_WIRE = 255;
const MAX_POINTER_HOPS = 64;
const NAME_RDATA_TYPES = new Set<number>([2, 3, 4, 5, 7, 8, 9, 12]);

function escapeLabel(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) {
    if ((b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f || b === 0x2a) {
      out += String.fromCharCode(b);
    } else if (b === 0x2e || b === 0x5c) {
      out += `\\${String.fromCharCode(b)}`;
    } else {
      out += `\\${String(b).padStart(3, '0')}`;
    }
  }
  return out;
}

/** Splits a presentation-form name into wire labels, undoing escapes. The root is "" or ".". */
export function nameToLabels(name: string): Buffer[] {
  if (name === '' || name === '.') return [];
  const labels: Buffer[] = [];
  let cur: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c) {
      const next = name.slice(i + 1, i + 4);
      if (/^[0-9]{3}$/.test(next)) {
        const v = Number(next);
        if (v > 255) throw new DnsFormatError(`bad escape in name ${JSON.stringify(name)}`);
        cur.push(v);
        i += 3;
      } else if (i + 1 < name.length) {
        cur.push(name.charCodeAt(++i) & 0xff);
      } else throw new DnsFormatError(`dangling escape in name ${JSON.stringify(name)}`);
    } else if (c === 0x2e) {
      if (cur.length === 0) throw new DnsFormatError(`empty label in name ${JSON.stringify(name)}`);
      labels.push(Buffer.from(cur));
      cur = [];
    } else {
      if (c > 0x7f) throw new DnsFormatError(`non-ASCII character in name ${JSON.stringify(name)}`);
      cur.push(c);
    }
  }
  if (cur.length > 0) labels.push(Buffer.from(cur));
  let wire = 1;
  for (const l of labels) {
    if (l.length > 63) throw new DnsFormatError('label longer than 63 octets');
    wire += l.length + 1;
  }
  if (wire > MAX_NAME_WIRE) throw new DnsFormatError('name longer than 255 octets');
  return labels;
}

/** Lower-case ASCII form of a name for comparisons (DNS names compare case-insensitively, RFC 4343). */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return n.replace(/[A-Z]/g, (x) => x.toLowerCase());
  }
  return n;
}

/** Bytes that appear unescaped in presentation form: letters, digits, '-', '_' and '*'. */
const PLAIN = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  PLAIN[b] = (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f || b === 0x2a ? 1 : 0;
}

/** Scratch for assembling a name's text (a name is at most 255 octets on the wire). */
const NAME_SCRATCH = Buffer.alloc(256);

class Reader {
  /** Reads stop here (a record's rdata end); compression pointers may point anywhere before it. */
  limit: number;

  constructor(
    readonly buf: Buffer,
    public pos = 0,
    limit?: number,
  ) {
    this.limit = limit ?? buf.length;
  }

  need(n: number): void {
    if (this.pos + n > this.limit) throw new DnsFormatError(`truncated message: need ${n} bytes at offset ${this.pos} of ${this.limit}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    this.need(2);
    const b = this.buf;
    const v = ((b[this.pos] as number) << 8) | (b[this.pos + 1] as number);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /**
   * Reads a possibly compressed name. Pointers must go strictly backwards;
   * with `compressed` false they are refused (names in rdata of types newer
   * than RFC 1035 are never compressed, RFC 3597 section 4).
   */
  name(compressed = true): string {
    const buf = this.buf;
    const limit = this.limit;
    let pos = this.pos;
    let jumped = false;
    let hops = 0;
    let wire = 1;
    let lowest = pos;
    // Plain names (the common case) are assembled as bytes and turned into one string;
    // a label with any other byte switches to escaped presentation form.
    let out = 0;
    let plain = true;
    let labels: string[] | undefined;
    for (;;) {
      if (pos >= limit) throw new DnsFormatError('truncated name');
      const len = buf[pos] as number;
      if ((len & 0xc0) === 0xc0) {
        if (!compressed) throw new DnsFormatError(`compression pointer at ${pos} in a name that must not be compressed`);
        if (pos + 1 >= limit) throw new DnsFormatError('truncated compression pointer');
        const target = ((len & 0x3f) << 8) | (buf[pos + 1] as number);
        if (target >= lowest) throw new DnsFormatError(`compression pointer at ${pos} does not point backwards (to ${target})`);
        if (++hops > MAX_POINTER_HOPS) throw new DnsFormatError('too many compression pointers');
        if (!jumped) this.pos = pos + 2;
        jumped = true;
        pos = target;
        lowest = target;
        continue;
      }
      if (len & 0xc0) throw new DnsFormatError(`reserved label type 0x${len.toString(16)}`);
      if (len === 0) {
        if (!jumped) this.pos = pos + 1;
        break;
      }
      if (pos + 1 + len > limit) throw new DnsFormatError('truncated label');
      wire += len + 1;
      if (wire > MAX_NAME_WIRE) throw new DnsFormatError('name longer than 255 octets');
      const start = pos + 1;
      const end = start + len;
      if (plain) {
        let ok = true;
        for (let i = start; i < end; i++) {
          if (PLAIN[buf[i] as number] === 0) {
            ok = false;
            break;
          }
        }
        if (ok) {
          if (out > 0) NAME_SCRATCH[out++] = 0x2e;
          // Byte by byte: Buffer#copy of a slice allocates a view per call.
          for (let i = start; i < end; i++) NAME_SCRATCH[out++] = buf[i] as number;
        } else {
          plain = false;
          labels = out > 0 ? NAME_SCRATCH.toString('latin1', 0, out).split('.') : [];
        }
      }
      if (!plain) (labels as string[]).push(escapeLabel(buf.subarray(start, end)));
      pos = end;
    }
    if (plain) return out === 0 ? '.' : NAME_SCRATCH.toString('latin1', 0, out);
    return (labels as string[]).join('.');
  }
}

/** Empty rdata (an OPT record without options, mostly): one shared, read-only by convention. */
const NO_BYTES = Buffer.alloc(0);

function decodeRR(r: Reader): RR {
  const name = r.name();
  const type = r.u16();
  const klass = r.u16();
  const ttl = r.u32();
  const rdlen = r.u16();
  r.need(rdlen);
  const end = r.pos + rdlen;
  let data: RData;
  // Names inside rdata may point anywhere earlier in the whole message, and must end inside the rdata.
  const sub = () => new Reader(r.buf, r.pos, end);
  if (type === TYPE.A && klass === CLASS_IN) {
    if (rdlen !== 4) throw new DnsFormatError(`A record with ${rdlen} bytes`);
    data = { kind: 'a', addr: BigInt(r.buf.readUInt32BE(r.pos)) };
  } else if (type === TYPE.AAAA && klass === CLASS_IN) {
    if (rdlen !== 16) throw new DnsFormatError(`AAAA record with ${rdlen} bytes`);
    data = { kind: 'aaaa', addr: (r.buf.readBigUInt64BE(r.pos) << 64n) | r.buf.readBigUInt64BE(r.pos + 8) };
  } else if (NAME_RDATA_TYPES.has(type)) {
    const inner = sub();
    data = { kind: 'name', name: inner.name() };
    if (inner.pos !== end) throw new DnsFormatError(`rdata of type ${type} has trailing bytes`);
  } else if (type === TYPE.MX) {
    const inner = sub();
    const preference = inner.u16();
    data = { kind: 'mx', preference, exchange: inner.name() };
    if (inner.pos !== end) throw new DnsFormatError('MX rdata has trailing bytes');
  } else if (type === TYPE.SOA) {
    const inner = sub();
    const mname = inner.name();
    const rname = inner.name();
    data = { kind: 'soa', mname, rname, serial: inner.u32(), refresh: inner.u32(), retry: inner.u32(), expire: inner.u32(), minimum: inner.u32() };
    if (inner.pos !== end) throw new DnsFormatError('SOA rdata has trailing bytes');
  } else if ((type === TYPE.SVCB || type === TYPE.HTTPS) && klass === CLASS_IN) {
    data = decodeSvcb(sub(), end);
  } else {
    data = { kind: 'raw', bytes: rdlen === 0 ? NO_BYTES : Buffer.from(r.buf.subarray(r.pos, end)) };
  }
  r.pos = end;
  return { name, type, class: klass, ttl, data };
}

/**
 * SVCB/HTTPS rdata (RFC 9460 section 2.2): SvcPriority, an uncompressed
 * TargetName, then SvcParams whose keys must strictly increase (a record
 * that breaks this is malformed, section 2.2). The values the guard reads
 * are checked here: address hints must be whole, non-empty lists
 * (section 7.3), and `mandatory` a non-empty, sorted list of keys that does
 * not name itself (section 8). Key 65535 is reserved as invalid.
 */
function decodeSvcb(r: Reader, end: number): RData {
  const priority = r.u16();
  const target = r.name(false);
  const params: SvcParam[] = [];
  let last = -1;
  while (r.pos < end) {
    const key = r.u16();
    const len = r.u16();
    if (key <= last) throw new DnsFormatError(`SvcParam keys out of order (${key} after ${last})`);
    if (key === 65535) throw new DnsFormatError('SvcParam key 65535 is reserved');
    last = key;
    const value = Buffer.from(r.bytes(len));
    if (key === SVC_KEY.IPV4HINT && (len === 0 || len % 4 !== 0)) throw new DnsFormatError(`ipv4hint of ${len} bytes`);
    if (key === SVC_KEY.IPV6HINT && (len === 0 || len % 16 !== 0)) throw new DnsFormatError(`ipv6hint of ${len} bytes`);
    if (key === SVC_KEY.MANDATORY) {
      if (len === 0 || len % 2 !== 0) throw new DnsFormatError(`mandatory of ${len} bytes`);
      for (let i = 0; i < len; i += 2) {
        const k = value.readUInt16BE(i);
        if (k === SVC_KEY.MANDATORY || (i > 0 && k <= value.readUInt16BE(i - 2))) throw new DnsFormatError('mandatory keys are not a sorted list of other keys');
      }
    }
    params.push({ key, value });
  }
  return { kind: 'svcb', priority, target, params };
}

/** The keys a `mandatory` SvcParam lists (empty when there is none). */
export function mandatoryKeys(params: readonly SvcParam[]): number[] {
  const m = params.find((p) => p.key === SVC_KEY.MANDATORY);
  const out: number[] = [];
  if (m) for (let i = 0; i + 1 < m.value.length; i += 2) out.push(m.value.readUInt16BE(i));
  return out;
}

function section(r: Reader, n: number): RR[] {
  const out: RR[] = [];
  for (let i = 0; i < n; i++) out.push(decodeRR(r));
  return out;
}

/** Decodes a DNS message. Throws DnsFormatError for anything malformed. */
export function decodeMessage(buf: Buffer): Message {
  if (buf.length < 12) throw new DnsFormatError(`message of ${buf.length} bytes is shorter than a header`);
  if (buf.length > 65535) throw new DnsFormatError('message longer than 65535 bytes');
  const r = new Reader(buf);
  const id = r.u16();
  const f = r.u16();
  const qd = r.u16();
  const an = r.u16();
  const ns = r.u16();
  const ar = r.u16();
  // Every question takes at least 5 bytes and every record at least 11: reject counts the message cannot hold.
  if (qd * 5 + (an + ns + ar) * 11 > buf.length - 12) {
    throw new DnsFormatError('record counts exceed the message size');
  }
  const flags: Flags = {
    qr: (f & 0x8000) !== 0,
    opcode: (f >> 11) & 0xf,
    aa: (f & 0x0400) !== 0,
    tc: (f & 0x0200) !== 0,
    rd: (f & 0x0100) !== 0,
    ra: (f & 0x0080) !== 0,
    ad: (f & 0x0020) !== 0,
    cd: (f & 0x0010) !== 0,
    rcode: f & 0xf,
  };
  const questions: Question[] = [];
  for (let i = 0; i < qd; i++) questions.push({ name: r.name(), type: r.u16(), class: r.u16() });
  const answers = section(r, an);
  const authorities = section(r, ns);
  const rawAdditionals = section(r, ar);
  const msg: Message = { id, flags, questions, answers, authorities, additionals: [] };
  for (const rr of rawAdditionals) {
    if (rr.type !== TYPE.OPT) {
      msg.additionals.push(rr);
      continue;
    }
    // RFC 6891 section 6.1.1: one OPT, owner name root.
    if (msg.edns) throw new DnsFormatError('more than one OPT record');
    if (rr.name !== '.') throw new DnsFormatError('OPT record with a non-root owner name');
    const raw = rr.data.kind === 'raw' ? rr.data.bytes : NO_BYTES;
    const options: EdnsOption[] = [];
    const or = new Reader(raw);
    while (or.pos < raw.length) {
      const code = or.u16();
      const len = or.u16();
      options.push({ code, data: Buffer.from(or.bytes(len)) });
    }
    msg.edns = {
      udpSize: rr.class,
      extendedRcode: rr.ttl >>> 24,
      version: (rr.ttl >>> 16) & 0xff,
      dnssecOk: (rr.ttl & 0x8000) !== 0,
      options,
    };
  }
  return msg;
}

/** Scratch the encoder writes into (encoding is synchronous); each message is copied out at the end. */
let SCRATCH = Buffer.alloc(1 << 16);

class Writer {
  buf = SCRATCH;
  pos = 0;
  private names = new Map<string, number>();

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf[this.pos++] = (v >> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Writes a name, compressing against names already written (case-insensitive suffix match). */
  name(name: string, compress = true): void {
    if (name === '' || name === '.') {
      this.u8(0);
      return;
    }
    const n = name.endsWith('.') ? name.slice(0, -1) : name;
    if (!isPlainName(n)) {
      this.escapedName(name, compress);
      return;
    }
    // Plain names: letters, digits, '-', '_', '*' and dots between non-empty labels (checked
    // by isPlainName), so the text is the wire form and a suffix of it is a suffix name.
    if (n.length + 2 > MAX_NAME_WIRE) throw new DnsFormatError('name longer than 255 octets');
    const lower = n.toLowerCase();
    let start = 0;
    this.ensure(n.length + 2);
    for (;;) {
      if (compress) {
        const key = start === 0 ? lower : lower.slice(start);
        const at = this.names.get(key);
        if (at !== undefined) {
          this.u16(0xc000 | at);
          return;
        }
        if (this.pos < 0x4000) this.names.set(key, this.pos);
      }
      let end = n.indexOf('.', start);
      if (end < 0) end = n.length;
      const len = end - start;
      if (len > 63) throw new DnsFormatError('label longer than 63 octets');
      const b = this.buf;
      b[this.pos++] = len;
      for (let i = start; i < end; i++) b[this.pos++] = n.charCodeAt(i);
      if (end === n.length) break;
      start = end + 1;
    }
    this.u8(0);
  }

  /**
   * Names with escapes: labels as bytes. Compression keys are the lower-cased
   * wire form (length-prefixed labels, so a label holding a dot or a zero
   * byte cannot pass for two labels), after a backslash, which plain names'
   * keys never contain.
   */
  private escapedName(name: string, compress: boolean): void {
    const labels = nameToLabels(name);
    const wire = labels.map((l) => String.fromCharCode(l.length) + l.toString('latin1').replace(/[A-Z]/g, (c) => c.toLowerCase()));
    for (let i = 0; i < labels.length; i++) {
      const key = `\\${wire.slice(i).join('')}`;
      const at = compress ? this.names.get(key) : undefined;
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (compress && this.pos < 0x4000) this.names.set(key, this.pos);
      const l = labels[i] as Buffer;
      this.u8(l.length);
      this.bytes(l);
    }
    this.u8(0);
  }

  /** The message written, in a buffer of its own. */
  result(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    if (this.buf !== SCRATCH && this.buf.length <= 1 << 17) SCRATCH = this.buf;
    return out;
  }
}

/** True for names of plain labels only: [A-Za-z0-9_*-], each 1 to 63 long, separated by single dots. */
function isPlainName(n: string): boolean {
  if (n.length === 0) return false;
  let label = 0;
  for (let i = 0; i < n.length; i++) {
    const c = n.charCodeAt(i);
    if (c === 0x2e) {
      if (label === 0) return false;
      label = 0;
      continue;
    }
    if (c > 0xff || PLAIN[c] === 0) return false;
    label++;
  }
  return label > 0;
}

/** Writes a record's fixed part with a zero data length; returns where the length goes (for endRecord). */
function beginRecord(w: Writer, name: string, type: number, cls: number, ttl: number): number {
  w.name(name);
  w.u16(type);
  w.u16(cls);
  w.u32(ttl);
  const lenAt = w.pos;
  w.u16(0);
  return lenAt;
}

/** Patches in the length of the data written since beginRecord. */
function endRecord(w: Writer, lenAt: number): void {
  const rdlen = w.pos - lenAt - 2;
  if (rdlen > 0xffff) throw new DnsFormatError('record data longer than 65535 bytes');
  w.buf.writeUInt16BE(rdlen, lenAt);
}

function encodeRR(w: Writer, rr: RR): void {
  const lenAt = beginRecord(w, rr.name, rr.type, rr.class, rr.ttl);
  encodeRdata(w, rr.data);
  endRecord(w, lenAt);
}

function encodeRdata(w: Writer, d: RR['data']): void {
  switch (d.kind) {
    case 'a':
      w.u32(Number(d.addr));
      break;
    case 'aaaa':
      w.ensure(16);
      w.buf.writeBigUInt64BE((d.addr >> 64n) & 0xffffffffffffffffn, w.pos);
      w.buf.writeBigUInt64BE(d.addr & 0xffffffffffffffffn, w.pos + 8);
      w.pos += 16;
      break;
    case 'name':
      w.name(d.name);
      break;
    case 'mx':
      w.u16(d.preference);
      w.name(d.exchange);
      break;
    case 'soa':
      w.name(d.mname);
      w.name(d.rname);
      for (const v of [d.serial, d.refresh, d.retry, d.expire, d.minimum]) w.u32(v);
      break;
    case 'svcb':
      w.u16(d.priority);
      // RFC 9460 section 2.2: TargetName is never compressed.
      w.name(d.target, false);
      for (const p of d.params) {
        w.u16(p.key);
        w.u16(p.value.length);
        w.bytes(p.value);
      }
      break;
    case 'raw':
      w.bytes(d.bytes);
      break;
  }
}

/**
 * A query with one question and an OPT record, encoded without building a
 * Message (the guard sends one upstream per query it forwards). The same
 * bytes as encodeMessage of the equivalent message.
 */
export function encodeQuery(id: number, q: Question, opts: { rd: boolean; cd: boolean; dnssecOk: boolean; udpSize: number }): Buffer {
  const w = new Writer();
  w.u16(id);
  w.u16((opts.rd ? 0x0100 : 0) | (opts.cd ? 0x0010 : 0));
  w.u16(1);
  w.u16(0);
  w.u16(0);
  w.u16(1);
  w.name(q.name, false);
  w.u16(q.type);
  w.u16(q.class);
  // OPT: root owner, class = UDP size, TTL = extended rcode 0, version 0, DO bit; no options.
  w.u8(0);
  w.u16(TYPE.OPT);
  w.u16(opts.udpSize);
  w.u32(opts.dnssecOk ? 0x8000 : 0);
  w.u16(0);
  return w.result();
}

/** Encodes a message. EDNS, when present, becomes the OPT record at the end of the additional section. */
export function encodeMessage(msg: Message): Buffer {
  const w = new Writer();
  const f = msg.flags;
  w.u16(msg.id);
  w.u16(
    (f.qr ? 0x8000 : 0) |
      ((f.opcode & 0xf) << 11) |
      (f.aa ? 0x0400 : 0) |
      (f.tc ? 0x0200 : 0) |
      (f.rd ? 0x0100 : 0) |
      (f.ra ? 0x0080 : 0) |
      (f.ad ? 0x0020 : 0) |
      (f.cd ? 0x0010 : 0) |
      (f.rcode & 0xf),
  );
  w.u16(msg.questions.length);
  w.u16(msg.answers.length);
  w.u16(msg.authorities.length);
  w.u16(msg.additionals.length + (msg.edns ? 1 : 0));
  for (const q of msg.questions) {
    w.name(q.name);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const rr of msg.answers) encodeRR(w, rr);
  for (const rr of msg.authorities) encodeRR(w, rr);
  for (const rr of msg.additionals) encodeRR(w, rr);
  if (msg.edns) {
    const e = msg.edns;
    // The OPT record; its options are written in place.
    const lenAt = beginRecord(w, '.', TYPE.OPT, e.udpSize, ((e.extendedRcode & 0xff) << 24) | ((e.version & 0xff) << 16) | (e.dnssecOk ? 0x8000 : 0));
    for (const o of e.options) {
      w.u16(o.code);
      w.u16(o.data.length);
      w.bytes(o.data);
    }
    endRecord(w, lenAt);
  }
  if (w.pos > 65535) throw new DnsFormatError('encoded message longer than 65535 bytes');
  return w.result();
}
