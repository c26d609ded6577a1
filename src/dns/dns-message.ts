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
  | { kind: 'raw'; bytes: Buffer };

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
  return n.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

class Reader {
  constructor(
    readonly buf: Buffer,
    public pos = 0,
  ) {}

  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new DnsFormatError(`truncated message: need ${n} bytes at offset ${this.pos} of ${this.buf.length}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
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

  /** Reads a possibly compressed name. Pointers must go strictly backwards. */
  name(): string {
    const labels: string[] = [];
    let pos = this.pos;
    let jumped = false;
    let hops = 0;
    let wire = 1;
    let lowest = pos;
    for (;;) {
      if (pos >= this.buf.length) throw new DnsFormatError('truncated name');
      const len = this.buf[pos] as number;
      if ((len & 0xc0) === 0xc0) {
        if (pos + 1 >= this.buf.length) throw new DnsFormatError('truncated compression pointer');
        const target = ((len & 0x3f) << 8) | (this.buf[pos + 1] as number);
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
      if (pos + 1 + len > this.buf.length) throw new DnsFormatError('truncated label');
      wire += len + 1;
      if (wire > MAX_NAME_WIRE) throw new DnsFormatError('name longer than 255 octets');
      labels.push(escapeLabel(this.buf.subarray(pos + 1, pos + 1 + len)));
      pos += 1 + len;
    }
    return labels.length === 0 ? '.' : labels.join('.');
  }
}

function decodeRR(r: Reader): RR {
  const name = r.name();
  const type = r.u16();
  const klass = r.u16();
  const ttl = r.u32();
  const rdlen = r.u16();
  r.need(rdlen);
  const end = r.pos + rdlen;
  let data: RData;
  const sub = () => {
    // Names inside rdata may point anywhere earlier in the whole message.
    const inner = new Reader(r.buf.subarray(0, end), r.pos);
    return inner;
  };
  if (type === TYPE.A && klass === CLASS_IN) {
    if (rdlen !== 4) throw new DnsFormatError(`A record with ${rdlen} bytes`);
    data = { kind: 'a', addr: BigInt(r.buf.readUInt32BE(r.pos)) };
  } else if (type === TYPE.AAAA && klass === CLASS_IN) {
    if (rdlen !== 16) throw new DnsFormatError(`AAAA record with ${rdlen} bytes`);
    let v = 0n;
    for (const b of r.buf.subarray(r.pos, end)) v = (v << 8n) | BigInt(b);
    data = { kind: 'aaaa', addr: v };
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
  } else {
    data = { kind: 'raw', bytes: Buffer.from(r.buf.subarray(r.pos, end)) };
  }
  r.pos = end;
  return { name, type, class: klass, ttl, data };
}

/** Decodes a DNS message. Throws DnsFormatError for anything malformed. */
export function decodeMessage(buf: Buffer): Message {
  if (buf.length < 12) throw new DnsFormatError(`message of ${buf.length} bytes is shorter than a header`);
  if (buf.length > 65535) throw new DnsFormatError('message longer than 65535 bytes');
  const r = new Reader(buf);
  const id = r.u16();
  const f = r.u16();
  const counts = [r.u16(), r.u16(), r.u16(), r.u16()] as const;
  // Every question takes at least 5 bytes and every record at least 11: reject counts the message cannot hold.
  if (counts[0] * 5 + (counts[1] + counts[2] + counts[3]) * 11 > buf.length - 12) {
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
  for (let i = 0; i < counts[0]; i++) questions.push({ name: r.name(), type: r.u16(), class: r.u16() });
  const section = (n: number) => Array.from({ length: n }, () => decodeRR(r));
  const answers = section(counts[1]);
  const authorities = section(counts[2]);
  const rawAdditionals = section(counts[3]);
  const msg: Message = { id, flags, questions, answers, authorities, additionals: [] };
  for (const rr of rawAdditionals) {
    if (rr.type !== TYPE.OPT) {
      msg.additionals.push(rr);
      continue;
    }
    // RFC 6891 section 6.1.1: one OPT, owner name root.
    if (msg.edns) throw new DnsFormatError('more than one OPT record');
    if (rr.name !== '.') throw new DnsFormatError('OPT record with a non-root owner name');
    const raw = rr.data.kind === 'raw' ? rr.data.bytes : Buffer.alloc(0);
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

class Writer {
  buf = Buffer.alloc(512);
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
    this.buf.writeUInt16BE(v & 0xffff, this.pos);
    this.pos += 2;
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
    const labels = nameToLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = labels
        .slice(i)
        .map((l) => l.toString('latin1').toLowerCase())
        .join('\u0000');
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
}

function encodeRR(w: Writer, rr: RR): void {
  w.name(rr.name);
  w.u16(rr.type);
  w.u16(rr.class);
  w.u32(rr.ttl);
  const lenAt = w.pos;
  w.u16(0);
  const start = w.pos;
  const d = rr.data;
  switch (d.kind) {
    case 'a':
      w.u32(Number(d.addr));
      break;
    case 'aaaa': {
      const b = Buffer.alloc(16);
      let v = d.addr;
      for (let i = 15; i >= 0; i--) {
        b[i] = Number(v & 0xffn);
        v >>= 8n;
      }
      w.bytes(b);
      break;
    }
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
    case 'raw':
      w.bytes(d.bytes);
      break;
  }
  w.buf.writeUInt16BE(w.pos - start, lenAt);
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
    const opts = Buffer.concat(
      e.options.map((o) => {
        const h = Buffer.alloc(4);
        h.writeUInt16BE(o.code, 0);
        h.writeUInt16BE(o.data.length, 2);
        return Buffer.concat([h, o.data]);
      }),
    );
    encodeRR(w, {
      name: '.',
      type: TYPE.OPT,
      class: e.udpSize,
      ttl: ((e.extendedRcode & 0xff) << 24) | ((e.version & 0xff) << 16) | (e.dnssecOk ? 0x8000 : 0),
      data: { kind: 'raw', bytes: opts },
    });
  }
  if (w.pos > 65535) throw new DnsFormatError('encoded message longer than 65535 bytes');
  return Buffer.from(w.buf.subarray(0, w.pos));
}
