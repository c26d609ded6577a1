import { NLA_F_NESTED, NLA_TYPE_MASK } from './nl-constants.js';

/**
 * Netlink message building and parsing. Integers inside nf_tables attributes
 * are big-endian; netlink and attribute headers are host order (little-endian
 * on every platform Sluice supports, checked at load).
 */

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('Sluice supports little-endian hosts only');
}

const align4 = (n: number) => (n + 3) & ~3;

/** Appends netlink messages and attributes to one growing buffer. */
export class NlWriter {
  private buf: Buffer;
  private pos = 0;
  private stack: number[] = [];
  private finished = false;

  constructor(initial = 4096) {
    this.buf = Buffer.alloc(initial);
  }

  get length(): number {
    return this.pos;
  }

  private dv: DataView | undefined;

  /** A DataView of the current buffer (made again when ensure has replaced it). */
  private view(): DataView {
    if (this.dv === undefined || this.dv.buffer !== this.buf.buffer || this.dv.byteOffset !== this.buf.byteOffset) this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    return this.dv;
  }

  private ensure(n: number): void {
    if (this.finished) throw new Error('NlWriter: written to after finish()');
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Starts a netlink message with an nfgenmsg header. Close it with endMsg. */
  beginMsg(type: number, flags: number, seq: number, family: number, resId = 0): this {
    this.ensure(20);
    this.stack.push(this.pos);
    this.buf.writeUInt32LE(0, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 4);
    this.buf.writeUInt16LE(flags, this.pos + 6);
    this.buf.writeUInt32LE(seq >>> 0, this.pos + 8);
    this.buf.writeUInt32LE(0, this.pos + 12);
    this.buf.writeUInt8(family, this.pos + 16);
    this.buf.writeUInt8(0, this.pos + 17);
    this.buf.writeUInt16BE(resId, this.pos + 18);
    this.pos += 20;
    return this;
  }

  /** Starts a netlink message with a raw family header of `hdr` bytes. */
  beginRaw(type: number, flags: number, seq: number, hdr: Buffer): this {
    this.ensure(16 + align4(hdr.length));
    this.stack.push(this.pos);
    this.buf.writeUInt32LE(0, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 4);
    this.buf.writeUInt16LE(flags, this.pos + 6);
    this.buf.writeUInt32LE(seq >>> 0, this.pos + 8);
    this.buf.writeUInt32LE(0, this.pos + 12);
    hdr.copy(this.buf, this.pos + 16);
    this.pos += 16 + align4(hdr.length);
    return this;
  }

  endMsg(): this {
    const start = this.stack.pop();
    if (start === undefined) throw new Error('endMsg without beginMsg');
    this.buf.writeUInt32LE(this.pos - start, start);
    return this;
  }

  bytes(type: number, data: Uint8Array): this {
    const len = 4 + data.length;
    if (len > 0xffff) throw new RangeError(`netlink attribute ${type} too long: ${len} bytes`);
    this.ensure(align4(len));
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    this.buf.set(data, this.pos + 4);
    this.buf.fill(0, this.pos + len, this.pos + align4(len));
    this.pos += align4(len);
    return this;
  }

  str(type: number, s: string): this {
    return this.bytes(type, Buffer.from(`${s}\0`, 'utf8'));
  }

  u8(type: number, v: number): this {
    return this.bytes(type, Buffer.from([v & 0xff]));
  }

  u16be(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    return this.bytes(type, b);
  }

  u32be(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.bytes(type, b);
  }

  u64be(type: number, v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    return this.bytes(type, b);
  }

  /** Nested attribute; the callback writes its children. */
  nest(type: number, body: () => void): this {
    this.ensure(4);
    const start = this.pos;
    this.buf.writeUInt16LE(0, start);
    this.buf.writeUInt16LE(type | NLA_F_NESTED, start + 2);
    this.pos += 4;
    body();
    const len = this.pos - start;
    if (len > 0xffff) throw new RangeError(`nested netlink attribute ${type} too long: ${len} bytes`);
    this.buf.writeUInt16LE(len, start);
    return this;
  }

  /**
   * One element of an address hash set, written in place: what
   * `nest(LIST_ELEM, () => nest(KEY, () => bytes(VALUE, addr)))` writes, the
   * same bytes (a test compares them), without a Buffer and three closures per
   * element, for feeds of a million addresses. `value` is the address as an
   * unsigned integer of 32 (IPv4) or 128 bits (IPv6).
   */
  addrElem(listElem: number, key: number, valueType: number, family: 4 | 6, value: bigint): this {
    const width = family === 4 ? 4 : 16;
    const total = 12 + width;
    this.ensure(total);
    const b = this.buf;
    const at = this.pos;
    b.writeUInt16LE(total, at);
    b.writeUInt16LE(listElem | NLA_F_NESTED, at + 2);
    b.writeUInt16LE(total - 4, at + 4);
    b.writeUInt16LE(key | NLA_F_NESTED, at + 6);
    b.writeUInt16LE(4 + width, at + 8);
    b.writeUInt16LE(valueType, at + 10);
    if (family === 4) {
      b.writeUInt32BE(Number(value), at + 12);
    } else {
      // Two 64-bit halves through a DataView: a third of the time of four 32-bit writes of bigint parts.
      const view = this.view();
      view.setBigUint64(at + 12, BigInt.asUintN(64, value >> 64n));
      view.setBigUint64(at + 20, BigInt.asUintN(64, value));
    }
    this.pos = at + total;
    return this;
  }

  /** Bytes written since `from`, for size-based chunking. */
  since(from: number): number {
    return this.pos - from;
  }

  /**
   * Room for `n` more bytes in one step: a writer that knows its size (a
   * feed's elements, tens of megabytes) does not copy its buffer at every
   * doubling.
   */
  reserve(n: number): this {
    this.ensure(n);
    return this;
  }

  /**
   * Everything written, without a copy (a million-element batch is tens of
   * megabytes); the writer takes no more writes after it.
   */
  finish(): Buffer {
    if (this.stack.length > 0) throw new Error('unterminated netlink message');
    this.finished = true;
    return this.buf.subarray(0, this.pos);
  }
}

/** One parsed attribute: its type (flags stripped) and payload. */
export interface Attr {
  type: number;
  nested: boolean;
  data: Buffer;
}

/** Thrown for malformed netlink data. Callers that read kernel records count these and move on. */
export class MalformedNetlink extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedNetlink';
  }
}

/** Walks a run of attributes, checking every length against the buffer. */
function walkAttrs(buf: Buffer, start: number, end: number, visit: (type: number, nested: boolean, data: Buffer) => void): void {
  let pos = start;
  while (pos + 4 <= end) {
    const len = buf.readUInt16LE(pos);
    const rawType = buf.readUInt16LE(pos + 2);
    if (len < 4 || pos + len > end) throw new MalformedNetlink(`attribute length ${len} at offset ${pos} overruns ${end}`);
    visit(rawType & NLA_TYPE_MASK, (rawType & NLA_F_NESTED) !== 0, buf.subarray(pos + 4, pos + len));
    pos += align4(len);
  }
}

/** Parses a run of attributes. Every length is checked against the buffer. */
export function parseAttrs(buf: Buffer, start = 0, end = buf.length): Attr[] {
  const out: Attr[] = [];
  walkAttrs(buf, start, end, (type, nested, data) => out.push({ type, nested, data }));
  return out;
}

/** Attributes keyed by type (last one wins, as in the kernel's nla_parse). One pass, no intermediate list: every NFLOG record goes through here. */
export function attrMap(buf: Buffer, start = 0, end = buf.length): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  walkAttrs(buf, start, end, (type, _nested, data) => m.set(type, data));
  return m;
}

export function attrStr(b: Buffer | undefined): string | undefined {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.subarray(0, nul >= 0 ? nul : b.length).toString('utf8');
}

export function attrU32(b: Buffer | undefined): number | undefined {
  if (!b || b.length < 4) return undefined;
  return b.readUInt32BE(0);
}

export function attrI32(b: Buffer | undefined): number | undefined {
  if (!b || b.length < 4) return undefined;
  return b.readInt32BE(0);
}

export function attrU16(b: Buffer | undefined): number | undefined {
  if (!b || b.length < 2) return undefined;
  return b.readUInt16BE(0);
}

export function attrU64(b: Buffer | undefined): bigint | undefined {
  if (!b || b.length < 8) return undefined;
  return b.readBigUInt64BE(0);
}

/** One netlink message from a receive buffer. */
export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Payload after the 16-byte netlink header. */
  payload: Buffer;
}

/** Splits a datagram into netlink messages. */
export function parseMessages(buf: Buffer): NlMsg[] {
  const out: NlMsg[] = [];
  let pos = 0;
  while (pos + 16 <= buf.length) {
    const len = buf.readUInt32LE(pos);
    if (len < 16 || pos + len > buf.length) throw new MalformedNetlink(`message length ${len} at offset ${pos} overruns ${buf.length}`);
    out.push({
      type: buf.readUInt16LE(pos + 4),
      flags: buf.readUInt16LE(pos + 6),
      seq: buf.readUInt32LE(pos + 8),
      pid: buf.readUInt32LE(pos + 12),
      payload: buf.subarray(pos + 16, pos + len),
    });
    pos += align4(len);
  }
  return out;
}

/** User-data TLVs (libnftnl's udata: 1-byte type, 1-byte length). Used for comments. */
export function udataEncode(type: number, value: string): Buffer {
  const body = Buffer.from(`${value}\0`, 'utf8');
  if (body.length > 255) throw new RangeError('comment too long');
  return Buffer.concat([Buffer.from([type, body.length]), body]);
}

export function udataDecode(buf: Buffer | undefined, type: number): string | undefined {
  if (!buf) return undefined;
  let pos = 0;
  while (pos + 2 <= buf.length) {
    const t = buf[pos] ?? 0;
    const len = buf[pos + 1] ?? 0;
    if (pos + 2 + len > buf.length) return undefined;
    if (t === type) return attrStr(buf.subarray(pos + 2, pos + 2 + len));
    pos += 2 + len;
  }
  return undefined;
}
