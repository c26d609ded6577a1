import { native, type DnsFastStats } from '../native/native.js';
import { addrBytes, bytesAddr, formatAddr, parseAddr, type Family } from './ip.js';

const AF_INET = 2;
const AF_INET6 = 10;
/** Frame header, see native/sluice_native.c: u16 len, u16 port, u8 family, u8 flags, u16 0, 16 bytes address, u32 mark. */
const HDR = 28;
/** Queued frames beyond this go out before more are queued. */
const MAX_OUT = 256 * 1024;
const EMPTY = Buffer.alloc(0);

/** Where a datagram came from (or goes to). `addr` is 4 or 16 bytes. */
export interface Peer {
  family: Family;
  addr: Buffer;
  port: number;
}

export interface UdpBatchStats {
  received: number;
  /** Datagrams larger than the receive area (64 KiB), cut short: handed over flagged, never parsed as whole. */
  truncated: number;
  sent: number;
  /** Datagrams the kernel did not take (full send buffer, or refused). */
  sendFailed: number;
  errors: number;
}

/** One datagram; `mark` is its packet mark when the socket was opened with `receiveMark` (else 0). */
export type OnDatagram = (data: Buffer, from: Peer, truncated: boolean, mark: number) => void;

/** A query the fast path's thread answered from its table's entry `id` (native/dns_fast.c). */
export type OnFastHit = (id: number, query: Buffer, from: Peer, mark: number) => void;

/** A socket read by the DNS guard's fast-path thread instead of the event loop: hits are answered there. */
export interface FastPathOption {
  table: unknown;
  onHit: OnFastHit;
}

/** IPv4 addresses already put in text (a DNS guard hears from few): at most V4_TEXT_MAX, then started again. */
const v4Text = new Map<number, string>();
const V4_TEXT_MAX = 4096;

/** Text form of a peer's address (for events and logs; the hot path keeps bytes). */
export function peerAddress(p: Peer): string {
  if (p.family !== 4 || p.addr.length !== 4) return formatAddr(p.family, bytesAddr(p.addr));
  const n = p.addr.readUInt32BE(0);
  let t = v4Text.get(n);
  if (t === undefined) {
    if (v4Text.size >= V4_TEXT_MAX) v4Text.clear();
    t = formatAddr(4, BigInt(n));
    v4Text.set(n, t);
  }
  return t;
}

/** The bytes of an address in text form; throws on anything that is not an address. */
export function addressBytes(text: string): { family: Family; bytes: Buffer } {
  const a = parseAddr(text);
  if (!a) throw new Error(`not an IP address: ${JSON.stringify(text)}`);
  return { family: a.family, bytes: addrBytes(a.family, a.value) };
}

/**
 * A UDP socket read and written in batches: the kernel hands over up to 64
 * datagrams per recvmmsg, JS gets them in one callback, and replies queued
 * during one turn of the event loop leave in sendmmsg calls of up to 64. At
 * tens of thousands of datagrams a second this removes most of the per-packet
 * cost of node:dgram (a JS callback, a system call and allocations per packet).
 * Sockets are bound at creation and never carry SO_REUSEADDR.
 */
export class UdpBatchSocket {
  readonly stats: UdpBatchStats = { received: 0, truncated: 0, sent: 0, sendFailed: 0, errors: 0 };
  private localPort = -1;
  private handle: unknown;
  /** Outgoing frames; small at first (upstream sockets live for ~100 queries), grown as needed. */
  private out = EMPTY;
  private outLen = 0;
  private outCount = 0;
  private scheduled = false;
  private closed = false;
  private fastHandle: unknown;
  private onHit: OnFastHit | undefined;

  private constructor(
    readonly fd: number,
    readonly family: Family,
    private onDatagram: OnDatagram,
    private onSendFailed?: (count: number) => void,
    private group?: UdpSocketGroup,
    fast?: FastPathOption,
  ) {
    if (group) group.add(this);
    else if (fast) {
      this.onHit = fast.onHit;
      this.fastHandle = native().dnsFastStart(fd, fast.table, (data) => this.dispatch(data));
    } else {
      this.handle = native().udpWatch(fd, (err, data) => {
        if (err || !data) {
          this.stats.errors++;
          return;
        }
        this.dispatch(data);
      });
    }
  }

  /**
   * Opens a socket bound to `address` (text) and `port` (0: the kernel
   * picks a random free one). `mark` sets SO_MARK (0: none); `receiveMark`
   * hands each datagram's packet mark over (SO_RCVMARK). In a `group`, the
   * socket is watched with the group's others (cheap to open and close).
   */
  static open(
    address: string,
    port: number,
    onDatagram: OnDatagram,
    opts: { mark?: number; rcvbufBytes?: number; receiveMark?: boolean; onSendFailed?: (count: number) => void; group?: UdpSocketGroup; fast?: FastPathOption } = {},
  ): UdpBatchSocket {
    const a = addressBytes(address);
    const fd = native().udpOpen(a.family === 4 ? AF_INET : AF_INET6, a.bytes, port, opts.mark ?? 0, opts.rcvbufBytes ?? 0, opts.receiveMark ? 1 : 0);
    try {
      return new UdpBatchSocket(fd, a.family, onDatagram, opts.onSendFailed, opts.group, opts.fast);
    } catch (err) {
      native().closeFd(fd);
      throw err;
    }
  }

  /** Delivers a batch of frames (from its own watcher or its group's). */
  dispatch(data: Buffer): void {
    const onDatagram = this.onDatagram;
    let off = 0;
    while (off + HDR <= data.length) {
      const len = data.readUInt16LE(off);
      const end = off + HDR + len;
      if (end > data.length) break;
      const truncated = (data[off + 5] as number) !== 0;
      const family: Family = data[off + 4] === 6 ? 6 : 4;
      const from: Peer = { family, addr: data.subarray(off + 8, off + (family === 4 ? 12 : 24)), port: data.readUInt16LE(off + 2) };
      // After close, only the reports of answers the thread already sent are still taken (its last
      // batch arrives after the stop): each is recorded; queries for JS are not handled any more.
      if (this.closed && data[off + 6] !== 1) {
        off = end;
        continue;
      }
      this.stats.received++;
      if (data[off + 6] === 1 && this.onHit && len >= 4) {
        // Answered by the fast path's thread: told, not handled. A failure to record it must not take
        // the daemon down (this runs straight from the native callback, outside any query's promise).
        try {
          this.onHit(data.readUInt32LE(off + HDR), data.subarray(off + HDR + 4, end), from, data.readUInt32LE(off + 24));
        } catch {
          this.stats.errors++;
        }
        off = end;
        continue;
      }
      if (truncated) this.stats.truncated++;
      onDatagram(data.subarray(off + HDR, end), from, truncated, data.readUInt32LE(off + 24));
      off = end;
    }
  }

  /** Queues a datagram; everything queued in this turn of the event loop leaves together. */
  send(payload: Buffer, to: Peer): void {
    if (this.closed) return;
    const need = HDR + payload.length;
    if (this.outLen + need > this.out.length) {
      if (this.out.length < MAX_OUT) {
        // Grow (doubling, up to MAX_OUT), keeping what is queued.
        const grown = Buffer.allocUnsafe(Math.min(MAX_OUT, Math.max(4096, this.out.length * 2, this.outLen + need)));
        grown.set(this.out.subarray(0, this.outLen));
        this.out = grown;
      }
      if (this.outLen + need > this.out.length) {
        if (this.outLen > 0) this.flush();
        if (need > this.out.length) this.out = Buffer.allocUnsafe(need);
      }
    }
    const o = this.outLen;
    const b = this.out;
    b.writeUInt16LE(payload.length, o);
    b.writeUInt16LE(to.port, o + 2);
    b[o + 4] = to.family;
    b[o + 5] = 0;
    b[o + 6] = 0;
    b[o + 7] = 0;
    // TypedArray set: the cheapest copy there is for small buffers.
    b.set(to.addr, o + 8);
    if (to.addr.length === 4) b.fill(0, o + 12, o + 24);
    b.writeUInt32LE(0, o + 24);
    b.set(payload, o + HDR);
    this.outLen += need;
    this.outCount++;
    if (!this.scheduled) {
      this.scheduled = true;
      // At the end of this macrotask (after its microtasks): what one callback or one kernel commit
      // made ready leaves together, without waiting for another turn of the event loop.
      queueMicrotask(() => this.flush());
    }
  }

  /** The bound port (asked of the kernel once, when first needed: the guard opens a socket per batch of queries). */
  get port(): number {
    if (this.localPort < 0) this.localPort = native().udpLocalPort(this.fd);
    return this.localPort;
  }

  /** Sends what is queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.outLen === 0 || this.closed) return;
    const count = this.outCount;
    let sent = 0;
    try {
      sent = native().udpSend(this.fd, this.out.subarray(0, this.outLen));
    } catch {
      this.stats.errors++;
    }
    this.stats.sent += sent;
    this.stats.sendFailed += count - sent;
    if (count > sent) this.onSendFailed?.(count - sent);
    this.outLen = 0;
    this.outCount = 0;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.group) this.group.remove(this);
    else if (this.fastHandle) this.fastStats = native().dnsFastStop(this.fastHandle);
    else native().unwatch(this.handle);
    // In a group, closing the fd also takes it out of the group's epoll set.
    native().closeFd(this.fd);
  }

  /** The fast path's thread's counters (when it reads this socket). */
  get fast(): DnsFastStats | undefined {
    if (this.fastStats) return this.fastStats;
    return this.fastHandle ? native().dnsFastStats(this.fastHandle) : undefined;
  }

  private fastStats: DnsFastStats | undefined;

  /** Counts a failed receive (from its group). */
  receiveFailed(): void {
    this.stats.errors++;
  }
}

/**
 * UDP sockets watched together through one epoll instance (native): opening
 * and closing a member costs its socket and one epoll_ctl, not a watcher of
 * its own. For sockets that live for a batch of DNS queries.
 */
export class UdpSocketGroup {
  private handle: unknown;
  private members = new Map<number, UdpBatchSocket>();
  private closed = false;

  constructor() {
    this.handle = native().udpGroupOpen((err, fd, data) => {
      const s = this.members.get(fd);
      if (!s) return;
      if (err || !data) s.receiveFailed();
      else s.dispatch(data);
    });
  }

  add(s: UdpBatchSocket): void {
    if (this.closed) throw new Error('the socket group is closed');
    native().udpGroupAdd(this.handle, s.fd);
    this.members.set(s.fd, s);
  }

  remove(s: UdpBatchSocket): void {
    if (this.members.get(s.fd) === s) this.members.delete(s.fd);
  }

  /** Members open now. */
  get size(): number {
    return this.members.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().udpGroupClose(this.handle);
  }
}
