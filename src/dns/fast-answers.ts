import { native } from '../native/native.js';
import type { CachedAnswer } from './answer-cache.js';
import { encodeMessage, type EdnsOption, type Message, type RR } from './dns-message.js';

/**
 * The JavaScript half of the guard's fast path (native/dns_fast.c): a table
 * of answers, in wire form, that a thread outside the event loop hands out
 * for repeated questions, each until a deadline this side computed. What may
 * go in, until when, and when everything leaves is decided here and in
 * dns-guard.ts; the native side answers only the exact question an entry was
 * made for, before its deadline.
 */

/** What the native side needs of a cached answer to answer from it. */
export interface FastTemplate {
  id: number;
  rcode: number;
  ad: boolean;
  storedAt: number;
  deadline: number;
  answers: readonly RR[];
  authorities: readonly RR[];
  ede: readonly EdnsOption[];
}

/**
 * The key dns_fast.c computes for a query: u16 type, the DO bit, then the
 * question's name in wire form with ASCII letters in lower case. Null when
 * the name is not a plain uncompressed name at offset 12 (the native side
 * never answers such a query, so no entry is made for it).
 */
export function fastKey(packet: Buffer, qtype: number, dnssecOk: boolean): Buffer | null {
  let i = 12;
  const bytes: number[] = [qtype >> 8, qtype & 0xff, dnssecOk ? 1 : 0];
  for (;;) {
    if (i >= packet.length) return null;
    const l = packet[i] as number;
    if (l === 0) {
      bytes.push(0);
      break;
    }
    if (l > 63 || i + 1 + l >= packet.length) return null;
    bytes.push(l);
    for (let j = 1; j <= l; j++) {
      const c = packet[i + j] as number;
      bytes.push(c >= 0x41 && c <= 0x5a ? c + 32 : c);
    }
    i += 1 + l;
  }
  if (bytes.length - 3 > 255) return null;
  return Buffer.from(bytes);
}

/** Skips a (possibly compressed) name in `b` at `i`; the offset after it. */
function skipName(b: Buffer, i: number): number {
  for (;;) {
    const l = b[i];
    if (l === undefined) throw new RangeError('name runs past the message');
    if (l === 0) return i + 1;
    if ((l & 0xc0) === 0xc0) return i + 2;
    i += 1 + l;
  }
}

/**
 * The template dns_fast.c reads (its layout is in that file's comment):
 * the records as they follow `question` in a reply, with the offset of every
 * TTL, so that each answer counts them down from storedAt. Null when the
 * records do not fit an answer the native side sends (1232 bytes).
 */
export function encodeTemplate(question: Message['questions'][number], t: FastTemplate): Buffer | null {
  const msg: Message = {
    id: 0,
    flags: { qr: true, opcode: 0, aa: false, tc: false, rd: false, ra: true, ad: false, cd: false, rcode: t.rcode & 0xf },
    questions: [question],
    answers: t.answers as RR[],
    authorities: t.authorities as RR[],
    additionals: [],
  };
  const wire = encodeMessage(msg);
  const qend = skipName(wire, 12) + 4;
  const body = wire.subarray(qend);
  if (body.length > 1232) return null;
  const offsets: { off: number; ttl: number }[] = [];
  let i = qend;
  for (let n = 0; n < t.answers.length + t.authorities.length; n++) {
    i = skipName(wire, i) + 4;
    offsets.push({ off: i - qend, ttl: wire.readUInt32BE(i) });
    i += 4;
    i += 2 + wire.readUInt16BE(i);
  }
  if (i !== wire.length) throw new RangeError('template records do not add up');
  const ede = Buffer.concat(t.ede.flatMap((o) => {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(o.code, 0);
    h.writeUInt16BE(o.data.length, 2);
    return [h, o.data];
  }));
  if (ede.length > 1232) return null;
  const out = Buffer.alloc(28 + offsets.length * 6 + 2 + ede.length + 2 + body.length);
  out.writeUInt32LE(t.id >>> 0, 0);
  out[4] = t.rcode & 0xf;
  out[5] = t.ad ? 1 : 0;
  out.writeUInt16LE(t.answers.length, 6);
  out.writeUInt16LE(t.authorities.length, 8);
  out.writeDoubleLE(t.storedAt, 10);
  out.writeDoubleLE(t.deadline, 18);
  out.writeUInt16LE(offsets.length, 26);
  let o = 28;
  for (const x of offsets) {
    out.writeUInt16LE(x.off, o);
    out.writeUInt32LE(x.ttl, o + 2);
    o += 6;
  }
  out.writeUInt16LE(ede.length, o);
  ede.copy(out, o + 2);
  o += 2 + ede.length;
  out.writeUInt16LE(body.length, o);
  body.copy(out, o + 2);
  return out;
}

export interface FastAnswersStats {
  /** Entries put in the table (or replaced). */
  puts: number;
  /** Puts the native side refused (the table full, or a template it would not take). */
  refused: number;
  /** Times the table was emptied at once (a reload, an element taken out of a set). */
  clears: number;
}

/**
 * The table, shared by the guard's UDP listeners (one thread each). Entries
 * are CachedAnswers of the guard's cache, known here by id so that the hits
 * the threads report are counted and recorded against their entry.
 */
export class FastAnswers {
  readonly table: unknown;
  readonly stats: FastAnswersStats = { puts: 0, refused: 0, clears: 0 };
  private byId = new Map<number, CachedAnswer>();
  private nextId = 1;

  constructor(readonly maxEntries: number) {
    this.table = native().dnsTableOpen(Math.max(1, Math.min(maxEntries, 1 << 22)));
  }

  /** Puts (or replaces) an entry's answer under `key`, to be handed out until `deadline`. */
  put(e: CachedAnswer, key: Buffer, question: Message['questions'][number], deadline: number): boolean {
    if (e.fastKey && !e.fastKey.equals(key)) this.delete(e);
    const id = e.fastId ?? this.allocateId();
    const tmpl = encodeTemplate(question, { id, rcode: e.rcode, ad: e.ad, storedAt: e.storedAt, deadline, answers: e.answers, authorities: e.authorities, ede: e.ede });
    if (!tmpl || !native().dnsTablePut(this.table, key, tmpl)) {
      this.stats.refused++;
      if (e.fastKey) this.delete(e);
      return false;
    }
    this.stats.puts++;
    e.fastKey = key;
    e.fastId = id;
    e.fastUntil = deadline;
    e.fastQuestion = question;
    this.byId.set(id, e);
    return true;
  }

  /** Takes an entry out (its cache entry left, or may no longer be handed out). */
  delete(e: CachedAnswer): void {
    if (!e.fastKey) return;
    native().dnsTableDelete(this.table, e.fastKey);
    if (e.fastId !== undefined && this.byId.get(e.fastId) === e) this.byId.delete(e.fastId);
    e.fastKey = undefined;
    e.fastId = undefined;
    e.fastUntil = undefined;
    e.fastQuestion = undefined;
  }

  /** Empties the table at once: from the next query on, every question goes through the guard in JavaScript. */
  clear(): void {
    native().dnsTableClear(this.table);
    for (const e of this.byId.values()) {
      e.fastKey = undefined;
      e.fastId = undefined;
      e.fastUntil = undefined;
      e.fastQuestion = undefined;
    }
    this.byId.clear();
    this.stats.clears++;
  }

  /** The entry a hit report names (undefined when it left since). */
  entry(id: number): CachedAnswer | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return native().dnsTableSize(this.table);
  }

  private allocateId(): number {
    let id = this.nextId;
    // Ids wrap after 2^32 puts; one still in use is skipped.
    while (this.byId.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }
}
