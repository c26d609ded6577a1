/**
 * Reassembles DNS-over-TCP messages (RFC 7766; RFC 1035 section 4.2.2: each
 * message is preceded by a two-byte length) from TCP segments the kernel
 * copied to NFLOG, for audit mode's passive observer.
 *
 * Hostile input: the segments come from any local process (queries) or from
 * the network (replies), and NFLOG may lose some. So a flow is followed only
 * from its SYN (its initial sequence numbers known), bytes are placed by
 * sequence number only, a byte already delivered is never replaced (the
 * first copy wins, as in the receiving socket), and anything that cannot be
 * placed for sure (a gap that does not fill, a truncated record, a length
 * too short to be a DNS message, a buffer over its bound) ends the flow:
 * nothing more is learned from it. Every buffer and the number of flows are
 * bounded; idle flows expire.
 */

/** One direction of a TCP flow. */
export type TcpDirection = 'query' | 'reply';

export interface TcpSegment {
  seq: number;
  /** The TCP flags byte: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10. */
  flags: number;
  data: Buffer;
  /** The record held less than the segment: its bytes cannot all be placed. */
  truncated?: boolean;
}

export interface TcpStreamStats {
  /** Flows followed from their SYN. */
  flows: number;
  /** Segments with data of followed flows. */
  segments: number;
  /** DNS messages reassembled. */
  messages: number;
  /** Flows given up: a gap that did not fill, a truncated record, a bad length, a buffer over its bound, or evicted by newer flows. */
  givenUp: number;
  /** Segments of a flow not followed (its SYN not seen, or given up): ignored. */
  unfollowed: number;
}

export interface TcpStreamLimits {
  /** Flows followed at once (the oldest is given up for a new one). */
  maxFlows: number;
  /** Bytes held for one direction: the partial message plus out-of-order segments. */
  maxHalfBytes: number;
  /** Out-of-order segments held for one direction. */
  maxOutOfOrder: number;
  /** Bytes held over all flows. */
  maxTotalBytes: number;
  /** A flow with no segment for this long is forgotten (ms). */
  idleMs: number;
}

export const TCP_STREAM_LIMITS: TcpStreamLimits = {
  maxFlows: 256,
  // The largest message with its prefix (65,537 bytes) plus the segment that completes it.
  maxHalfBytes: 2 * 65_537,
  maxOutOfOrder: 16,
  maxTotalBytes: 8 << 20,
  idleMs: 30_000,
};

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
/** The smallest DNS message: the 12-byte header (RFC 1035 section 4.1.1). */
const MIN_MESSAGE = 12;

interface Half {
  /** The next sequence number expected; undefined until this direction's SYN is seen. */
  next: number | undefined;
  /** Bytes in order, not yet a whole message. */
  buf: Buffer;
  /** Segments past a gap, waiting for it to fill. */
  ofo: { seq: number; data: Buffer }[];
  fin: boolean;
}

interface Flow {
  at: number;
  query: Half;
  reply: Half;
  bytes: number;
}

const newHalf = (): Half => ({ next: undefined, buf: Buffer.alloc(0), ofo: [], fin: false });

/** Signed distance a - b in sequence space (RFC 793 modulo 2^32 arithmetic). */
function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** Bytes of a half held in memory. */
function halfBytes(h: Half): number {
  let n = h.buf.length;
  for (const s of h.ofo) n += s.data.length;
  return n;
}

/**
 * DNS-over-TCP flows, keyed by the caller (client address and port and the
 * server). `segment` returns the whole messages a segment completed, in
 * order, without their length prefix.
 */
export class TcpDnsStreams {
  readonly stats: TcpStreamStats = { flows: 0, segments: 0, messages: 0, givenUp: 0, unfollowed: 0 };
  private flows = new Map<string, Flow>();
  private total = 0;

  constructor(private readonly limits: TcpStreamLimits = TCP_STREAM_LIMITS) {}

  /** Flows followed now. */
  get size(): number {
    return this.flows.size;
  }

  /** Bytes held over all flows now. */
  get bytes(): number {
    return this.total;
  }

  segment(key: string, dir: TcpDirection, seg: TcpSegment, now: number): Buffer[] {
    this.expire(now);
    const seq = seg.seq >>> 0;
    if (seg.flags & RST) {
      this.drop(key, false);
      return [];
    }
    if (seg.flags & SYN) {
      // The client's SYN starts a flow (a new one replaces an old flow on the same ports);
      // the server's SYN+ACK gives the reply direction its start, once.
      if (dir === 'query' && !(seg.flags & ACK)) {
        this.drop(key, false);
        if (this.flows.size >= this.limits.maxFlows) this.evictOldest();
        const f: Flow = { at: now, query: newHalf(), reply: newHalf(), bytes: 0 };
        f.query.next = (seq + 1) >>> 0;
        this.flows.set(key, f);
        this.stats.flows++;
        // TCP Fast Open (RFC 7413): the query may ride on the SYN, its bytes right after the SYN's sequence number.
        if (seg.data.length === 0) return [];
        return this.segment(key, dir, { ...seg, seq: (seq + 1) >>> 0, flags: seg.flags & ~SYN }, now);
      }
      const f = this.flows.get(key);
      if (dir === 'reply' && f && f.reply.next === undefined) {
        f.reply.next = (seq + 1) >>> 0;
        this.touch(key, f, now);
      }
      return [];
    }
    const f = this.flows.get(key);
    const h = f?.[dir];
    if (!f || !h || h.next === undefined) {
      if (seg.data.length > 0) this.stats.unfollowed++;
      return [];
    }
    this.touch(key, f, now);
    if (seg.data.length > 0) this.stats.segments++;
    if (seg.truncated) {
      this.drop(key, true);
      return [];
    }
    const out: Buffer[] = [];
    if (seg.data.length > 0 && !this.place(f, h, seq, seg.data)) {
      this.drop(key, true);
      return [];
    }
    if (!this.take(f, h, out)) {
      this.drop(key, true);
      return out;
    }
    if (seg.flags & FIN && seqDiff((seq + seg.data.length) >>> 0, h.next) === 0 && h.ofo.length === 0) h.fin = true;
    if (f.query.fin && f.reply.fin) this.drop(key, false);
    else if (this.total > this.limits.maxTotalBytes) this.evictUntilWithin(key);
    return out;
  }

  /** Forgets a flow (its messages so far were delivered). */
  forget(key: string): void {
    this.drop(key, false);
  }

  /** Places a segment's bytes by sequence number; false when the flow must be given up. */
  private place(f: Flow, h: Half, seq: number, data: Buffer): boolean {
    const next = h.next as number;
    let d = seqDiff(seq, next);
    if (d + data.length <= 0) return true; // all delivered already: a retransmission
    if (d > 0) {
      // Past a gap: held (bounded) until the gap fills. A segment starting at the same place as
      // one held keeps the first copy's bytes; the overlap rule below applies when it is taken.
      if (h.ofo.length >= this.limits.maxOutOfOrder || halfBytes(h) + data.length > this.limits.maxHalfBytes) return false;
      const copy = Buffer.from(data);
      h.ofo.push({ seq, data: copy });
      f.bytes += copy.length;
      this.total += copy.length;
      return true;
    }
    if (d < 0) {
      data = data.subarray(-d); // the part already delivered keeps its first copy
      d = 0;
    }
    if (!this.append(f, h, data)) return false;
    // Fill from held segments while they start at or before the next byte.
    for (let progress = true; progress && h.ofo.length > 0; ) {
      progress = false;
      for (let i = 0; i < h.ofo.length; i++) {
        const s = h.ofo[i] as { seq: number; data: Buffer };
        const sd = seqDiff(s.seq, h.next as number);
        if (sd > 0) continue;
        h.ofo.splice(i, 1);
        f.bytes -= s.data.length;
        this.total -= s.data.length;
        if (sd + s.data.length > 0 && !this.append(f, h, s.data.subarray(-sd))) return false;
        progress = true;
        break;
      }
    }
    return true;
  }

  private append(f: Flow, h: Half, data: Buffer): boolean {
    if (halfBytes(h) + data.length > this.limits.maxHalfBytes) return false;
    h.buf = h.buf.length === 0 ? Buffer.from(data) : Buffer.concat([h.buf, data]);
    h.next = ((h.next as number) + data.length) >>> 0;
    f.bytes += data.length;
    this.total += data.length;
    return true;
  }

  /** Moves whole messages from the buffer to `out`; false on a length no DNS message can have. */
  private take(f: Flow, h: Half, out: Buffer[]): boolean {
    let off = 0;
    while (h.buf.length - off >= 2) {
      const len = h.buf.readUInt16BE(off);
      if (len < MIN_MESSAGE) return false;
      if (h.buf.length - off < 2 + len) break;
      out.push(Buffer.from(h.buf.subarray(off + 2, off + 2 + len)));
      this.stats.messages++;
      off += 2 + len;
    }
    if (off > 0) {
      h.buf = Buffer.from(h.buf.subarray(off));
      f.bytes -= off;
      this.total -= off;
    }
    return true;
  }

  /** Keeps the map in order of last activity (oldest first), for expiry and eviction. */
  private touch(key: string, f: Flow, now: number): void {
    f.at = now;
    this.flows.delete(key);
    this.flows.set(key, f);
  }

  private drop(key: string, givenUp: boolean): void {
    const f = this.flows.get(key);
    if (!f) return;
    this.total -= f.bytes;
    this.flows.delete(key);
    if (givenUp) this.stats.givenUp++;
  }

  private evictOldest(): void {
    const first = this.flows.keys().next();
    if (!first.done) this.drop(first.value, true);
  }

  private evictUntilWithin(keep: string): void {
    for (const key of [...this.flows.keys()]) {
      if (this.total <= this.limits.maxTotalBytes) return;
      if (key !== keep) this.drop(key, true);
    }
    if (this.total > this.limits.maxTotalBytes) this.drop(keep, true);
  }

  private expire(now: number): void {
    for (const [key, f] of this.flows) {
      if (now - f.at <= this.limits.idleMs) break;
      this.drop(key, false);
    }
  }
}
