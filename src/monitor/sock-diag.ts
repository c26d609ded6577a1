import { NetlinkError } from '../errors.js';
import { addrBytes, bytesAddr, type Family } from '../net/ip.js';
import { NetlinkSocket } from '../netfilter/netlink-socket.js';
import { attrMap, MalformedNetlink, NlWriter, type NlMsg } from '../netfilter/nl-attr.js';
import { NETLINK_SOCK_DIAG, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from '../netfilter/nl-constants.js';

/**
 * The kernel's socket tables over NETLINK_SOCK_DIAG (linux/inet_diag.h):
 * every TCP and UDP socket of this network namespace with its addresses,
 * state, owner uid, inode and cgroup, and for TCP the byte counters of
 * tcp_info. Replies are hostile input like everything from the kernel to a
 * parser: lengths are checked and malformed messages are counted and skipped.
 */

const SOCK_DIAG_BY_FAMILY = 20;
const AF_INET = 2;
const AF_INET6 = 10;
const INET_DIAG_INFO = 2;
const INET_DIAG_CGROUP_ID = 21;
const INET_DIAG_REQ_BYTECODE = 1;
const INET_DIAG_BC_S_EQ = 11;
const MSG_LEN = 72;

export const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV'] as const;
export const TCP_LISTEN = 10;

/** One socket from a sock_diag reply. IPv4-mapped IPv6 addresses are reported as IPv4 (the packets are). */
export interface SockEntry {
  family: Family;
  /** The socket's own family (a dual-stack AF_INET6 socket can carry IPv4). */
  sockFamily: Family;
  proto: 6 | 17;
  state: number;
  src: bigint;
  sport: number;
  dst: bigint;
  dport: number;
  ifindex: number;
  uid: number;
  inode: number;
  cgroupId?: bigint;
  /** TCP only, from tcp_info: bytes the peer acknowledged, and bytes received. */
  bytesAcked?: bigint;
  bytesReceived?: bigint;
}

/**
 * The filter program (linux/inet_diag.h) that keeps sockets whose local
 * port is `port`: S_EQ jumps `yes` (8 bytes, the program's end: keep) on a
 * match and `no` (12 bytes, past the end: drop) otherwise; the port rides
 * in the second op's `no` field, as ss writes it.
 */
export function sourcePortFilter(port: number): Buffer {
  const bc = Buffer.alloc(8);
  bc.writeUInt8(INET_DIAG_BC_S_EQ, 0);
  bc.writeUInt8(8, 1);
  bc.writeUInt16LE(12, 2);
  bc.writeUInt16LE(port & 0xffff, 6);
  return bc;
}

/**
 * Builds a dump request for one family and protocol; `states` is a bit mask
 * of TCP states (all by default); `sport`: only sockets bound to that local
 * port (filtered in the kernel, so a busy host's other sockets are never copied).
 */
export function encodeDumpRequest(family: Family, proto: 6 | 17, states = 0xffffffff, seq = 1, sport?: number): Buffer {
  const hdr = Buffer.alloc(56);
  hdr.writeUInt8(family === 4 ? AF_INET : AF_INET6, 0);
  hdr.writeUInt8(proto, 1);
  hdr.writeUInt8(proto === 6 ? 1 << (INET_DIAG_INFO - 1) : 0, 2);
  hdr.writeUInt32LE(states >>> 0, 4);
  // The socket id stays zero: a dump has no id; cookie 0 is fine for dumps.
  const w = new NlWriter(128);
  w.beginRaw(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, hdr);
  if (sport !== undefined) w.bytes(INET_DIAG_REQ_BYTECODE, sourcePortFilter(sport));
  w.endMsg();
  return w.finish();
}

/** A request for the one TCP socket with this 4-tuple: the kernel's hash lookup, not a dump. */
export function encodeExactRequest(t: { family: Family; src: bigint; sport: number; dst: bigint; dport: number }, seq = 1): Buffer {
  const hdr = Buffer.alloc(56);
  hdr.writeUInt8(t.family === 4 ? AF_INET : AF_INET6, 0);
  hdr.writeUInt8(6, 1);
  hdr.writeUInt32LE(0xffffffff, 4);
  hdr.writeUInt16BE(t.sport, 8);
  hdr.writeUInt16BE(t.dport, 10);
  addrBytes(t.family, t.src).copy(hdr, 12);
  addrBytes(t.family, t.dst).copy(hdr, 28);
  hdr.writeUInt32LE(0xffffffff, 48); // INET_DIAG_NOCOOKIE: look up by addresses alone
  hdr.writeUInt32LE(0xffffffff, 52);
  const w = new NlWriter(96);
  w.beginRaw(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_ACK, seq, hdr);
  w.endMsg();
  return w.finish();
}

const MAPPED_PREFIX = 0xffffn << 32n;

/** Parses one SOCK_DIAG_BY_FAMILY reply message; throws MalformedNetlink for anything short or odd. */
export function parseSockDiagMessage(msg: NlMsg, proto: 6 | 17): SockEntry {
  const p = msg.payload;
  if (msg.type !== SOCK_DIAG_BY_FAMILY) throw new MalformedNetlink(`unexpected sock_diag message type ${msg.type}`);
  if (p.length < MSG_LEN) throw new MalformedNetlink(`sock_diag message of ${p.length} bytes, want ${MSG_LEN}`);
  const af = p.readUInt8(0);
  if (af !== AF_INET && af !== AF_INET6) throw new MalformedNetlink(`sock_diag family ${af}`);
  const sockFamily: Family = af === AF_INET ? 4 : 6;
  const addrLen = sockFamily === 4 ? 4 : 16;
  let src = bytesAddr(p.subarray(8, 8 + addrLen));
  let dst = bytesAddr(p.subarray(24, 24 + addrLen));
  let family: Family = sockFamily;
  // A dual-stack socket talking IPv4 shows ::ffff:a.b.c.d (or :: when unbound); packets are IPv4.
  const mapped = (a: bigint) => a >> 32n === 0xffffn;
  if (sockFamily === 6 && mapped(src) && (mapped(dst) || dst === 0n)) {
    family = 4;
    src -= MAPPED_PREFIX;
    if (dst !== 0n) dst -= MAPPED_PREFIX;
  }
  const e: SockEntry = {
    family,
    sockFamily,
    proto,
    state: p.readUInt8(1),
    sport: p.readUInt16BE(4),
    dport: p.readUInt16BE(6),
    src,
    dst,
    ifindex: p.readUInt32LE(40),
    uid: p.readUInt32LE(64),
    inode: p.readUInt32LE(68),
  };
  const attrs = attrMap(p, MSG_LEN);
  const cg = attrs.get(INET_DIAG_CGROUP_ID);
  if (cg && cg.length >= 8) e.cgroupId = cg.readBigUInt64LE(0);
  const info = attrs.get(INET_DIAG_INFO);
  if (proto === 6 && info && info.length >= 136) {
    e.bytesAcked = info.readBigUInt64LE(120);
    e.bytesReceived = info.readBigUInt64LE(128);
  }
  return e;
}

export interface SockDiagStats {
  dumps: number;
  malformed: number;
}

/** Reads socket tables of the caller's network namespace. */
export class SockDiag {
  readonly stats: SockDiagStats = { dumps: 0, malformed: 0 };
  private sock: NetlinkSocket;
  private seq = 0;

  constructor() {
    this.sock = NetlinkSocket.open(NETLINK_SOCK_DIAG, { bufBytes: 4 << 20 });
  }

  /** Every socket of one family and protocol (both socket families for IPv4, to include dual-stack sockets); `sport`: bound to that local port only. */
  dump(family: Family, proto: 6 | 17, states = 0xffffffff, sport?: number): SockEntry[] {
    const out: SockEntry[] = [];
    const families: Family[] = family === 4 ? [4, 6] : [6];
    for (const f of families) {
      this.stats.dumps++;
      for (const m of this.sock.dump(encodeDumpRequest(f, proto, states, ++this.seq, sport))) {
        try {
          const e = parseSockDiagMessage(m, proto);
          if (e.family === family) out.push(e);
        } catch {
          this.stats.malformed++;
        }
      }
    }
    return out;
  }

  /** Every TCP and UDP socket of both families. */
  dumpAll(): SockEntry[] {
    const out: SockEntry[] = [];
    for (const proto of [6, 17] as const) {
      for (const f of [4, 6] as const) {
        this.stats.dumps++;
        for (const m of this.sock.dump(encodeDumpRequest(f, proto, 0xffffffff, ++this.seq))) {
          try {
            out.push(parseSockDiagMessage(m, proto));
          } catch {
            this.stats.malformed++;
          }
        }
      }
    }
    return out;
  }

  /**
   * The TCP socket with exactly this 4-tuple (the kernel's hash lookup, not a
   * dump), or undefined. An IPv4 peer may hold a dual-stack IPv6 socket, so
   * an IPv4 tuple is also looked up in its IPv4-mapped form.
   */
  tcp(t: { family: Family; src: bigint; sport: number; dst: bigint; dport: number }): SockEntry | undefined {
    const tries = t.family === 4 ? [t, { ...t, family: 6 as const, src: t.src + MAPPED_PREFIX, dst: t.dst + MAPPED_PREFIX }] : [t];
    for (const q of tries) {
      try {
        for (const m of this.sock.request(encodeExactRequest(q, ++this.seq))) {
          try {
            return parseSockDiagMessage(m, 6);
          } catch {
            this.stats.malformed++;
          }
        }
      } catch (err) {
        // ENOENT: no such socket (it is gone, or has the other family).
        if (!(err instanceof NetlinkError)) throw err;
      }
    }
    return undefined;
  }

  close(): void {
    this.sock.close();
  }
}

/** Finds the socket that sent a packet: same local port, local address (or wildcard) and remote (or unconnected). */
export function findSocket(socks: SockEntry[], pkt: { family: Family; src: bigint; sport: number; dst: bigint; dport: number }): SockEntry | undefined {
  let loose: SockEntry | undefined;
  for (const s of socks) {
    if (s.family !== pkt.family || s.sport !== pkt.sport || s.state === TCP_LISTEN) continue;
    if (s.src !== pkt.src && s.src !== 0n) continue;
    if (s.dst === pkt.dst && s.dport === pkt.dport) return s;
    // An unconnected UDP socket (sendto) has no remote: it matches on the local side alone.
    if (s.dst === 0n && s.dport === 0) loose ??= s;
  }
  return loose;
}
