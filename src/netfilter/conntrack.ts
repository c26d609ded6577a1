import { addrBytes, bytesAddr, isLoopback, type Family } from '../net/ip.js';
import type { FlowTuple } from '../net/packet.js';
import { NetlinkSocket } from './netlink-socket.js';
import { attrMap, MalformedNetlink, NlWriter, type NlMsg } from './nl-attr.js';
import { NETLINK_NETFILTER, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST } from './nl-constants.js';

/**
 * The conntrack table over ctnetlink (linux/netfilter/nfnetlink_conntrack.h):
 * flows the kernel tracks in this namespace, with their state, counters and,
 * when `net.netfilter.nf_conntrack_timestamp` is on, their start time (the
 * only place an age of a connection can come from). Hostile input: parsed
 * within bounds; malformed messages are counted and skipped.
 */

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CTA = { TUPLE_ORIG: 1, TUPLE_REPLY: 2, STATUS: 3, PROTOINFO: 4, TIMEOUT: 7, MARK: 8, COUNTERS_ORIG: 9, COUNTERS_REPLY: 10, ID: 12, TIMESTAMP: 20, MARK_MASK: 21 } as const;
const TUPLE = { IP: 1, PROTO: 2 } as const;
const IP = { V4_SRC: 1, V4_DST: 2, V6_SRC: 3, V6_DST: 4 } as const;
const PROTO = { NUM: 1, SRC_PORT: 2, DST_PORT: 3 } as const;
const COUNTERS = { PACKETS: 1, BYTES: 2 } as const;
const TCP_CT_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];

/** One tracked flow, in its original direction. */
export interface CtEntry extends FlowTuple {
  /** The reply direction (differs from the original reversed when NAT applies, as for the DNS redirect). */
  reply?: FlowTuple;
  /** TCP conntrack state name. */
  tcpState?: string;
  mark?: number;
  /** Seconds until the entry expires. */
  timeout?: number;
  /** Wall-clock start (ms), when conntrack timestamps are on. */
  startMs?: number;
  packetsOut?: bigint;
  bytesOut?: bigint;
  packetsIn?: bigint;
  bytesIn?: bigint;
}

/**
 * Builds a dump request for every family; with `mark`, only the flows whose
 * conntrack mark ANDed with `mark.mask` equals `mark.value` (the kernel
 * filters: CTA_MARK and CTA_MARK_MASK in the request).
 */
export function encodeCtDump(seq = 1, mark?: { value: number; mask: number }): Buffer {
  const w = new NlWriter(64);
  w.beginMsg((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, 0);
  if (mark) w.u32be(CTA.MARK, mark.value >>> 0).u32be(CTA.MARK_MASK, mark.mask >>> 0);
  w.endMsg();
  return w.finish();
}

function be(b: Buffer | undefined, bytes: 1 | 2 | 4 | 8): bigint | undefined {
  if (!b || b.length < bytes) return undefined;
  if (bytes === 1) return BigInt(b.readUInt8(0));
  if (bytes === 2) return BigInt(b.readUInt16BE(0));
  if (bytes === 4) return BigInt(b.readUInt32BE(0));
  return b.readBigUInt64BE(0);
}

/** Parses a CTA_TUPLE_* nest: addresses, protocol and ports. */
function parseTuple(buf: Buffer): FlowTuple {
  const t = attrMap(buf);
  const ip = t.get(TUPLE.IP);
  const pr = t.get(TUPLE.PROTO);
  if (!ip || !pr) throw new MalformedNetlink('conntrack tuple without addresses or protocol');
  const ipa = attrMap(ip);
  const pa = attrMap(pr);
  let family: Family;
  let src: Buffer | undefined;
  let dst: Buffer | undefined;
  if (ipa.has(IP.V4_SRC)) {
    family = 4;
    src = ipa.get(IP.V4_SRC);
    dst = ipa.get(IP.V4_DST);
    if (src?.length !== 4 || dst?.length !== 4) throw new MalformedNetlink('IPv4 conntrack address of the wrong size');
  } else {
    family = 6;
    src = ipa.get(IP.V6_SRC);
    dst = ipa.get(IP.V6_DST);
    if (src?.length !== 16 || dst?.length !== 16) throw new MalformedNetlink('IPv6 conntrack address of the wrong size');
  }
  const proto = be(pa.get(PROTO.NUM), 1);
  if (proto === undefined) throw new MalformedNetlink('conntrack tuple without a protocol number');
  const e: FlowTuple = { family, proto: Number(proto), src: bytesAddr(src), dst: bytesAddr(dst) };
  const sport = be(pa.get(PROTO.SRC_PORT), 2);
  const dport = be(pa.get(PROTO.DST_PORT), 2);
  if (sport !== undefined) e.sport = Number(sport);
  if (dport !== undefined) e.dport = Number(dport);
  return e;
}

/** Parses one ctnetlink message; throws MalformedNetlink when its tuple is missing or broken. */
export function parseCtMessage(msg: NlMsg): CtEntry {
  if (msg.type >> 8 !== NFNL_SUBSYS_CTNETLINK) throw new MalformedNetlink(`unexpected ctnetlink message type ${msg.type}`);
  if (msg.payload.length < 4) throw new MalformedNetlink('ctnetlink message shorter than its header');
  const a = attrMap(msg.payload, 4);
  const orig = a.get(CTA.TUPLE_ORIG);
  if (!orig) throw new MalformedNetlink('conntrack entry without its original tuple');
  const e: CtEntry = parseTuple(orig);
  const replyAttr = a.get(CTA.TUPLE_REPLY);
  if (replyAttr) {
    try {
      e.reply = parseTuple(replyAttr);
    } catch {
      // The original direction is what every reader needs; a broken reply tuple only loses NAT facts.
    }
  }
  const mark = be(a.get(CTA.MARK), 4);
  if (mark !== undefined) e.mark = Number(mark);
  const timeout = be(a.get(CTA.TIMEOUT), 4);
  if (timeout !== undefined) e.timeout = Number(timeout);
  const pinfo = a.get(CTA.PROTOINFO);
  if (pinfo) {
    const tcp = attrMap(pinfo).get(1);
    const st = tcp ? be(attrMap(tcp).get(1), 1) : undefined;
    if (st !== undefined) e.tcpState = TCP_CT_STATES[Number(st)] ?? `state-${st}`;
  }
  const ts = a.get(CTA.TIMESTAMP);
  if (ts) {
    const start = be(attrMap(ts).get(1), 8);
    if (start !== undefined && start > 0n) e.startMs = Number(start / 1_000_000n);
  }
  for (const [key, dir] of [[CTA.COUNTERS_ORIG, 'Out'], [CTA.COUNTERS_REPLY, 'In']] as const) {
    const c = a.get(key);
    if (!c) continue;
    const cm = attrMap(c);
    const packets = be(cm.get(COUNTERS.PACKETS), 8);
    const bytes = be(cm.get(COUNTERS.BYTES), 8);
    if (packets !== undefined) e[`packets${dir}`] = packets;
    if (bytes !== undefined) e[`bytes${dir}`] = bytes;
  }
  return e;
}

/** Reads the conntrack table; empty (with a reason) when conntrack is not loaded in this namespace. */
export function readConntrack(): { entries: CtEntry[]; malformed: number; unavailable?: string } {
  let sock: NetlinkSocket;
  try {
    sock = NetlinkSocket.open(NETLINK_NETFILTER, { bufBytes: 4 << 20 });
  } catch (err) {
    return { entries: [], malformed: 0, unavailable: (err as Error).message };
  }
  try {
    const entries: CtEntry[] = [];
    let malformed = 0;
    for (const m of sock.dump(encodeCtDump())) {
      try {
        entries.push(parseCtMessage(m));
      } catch {
        malformed++;
      }
    }
    return { entries, malformed };
  } catch (err) {
    return { entries: [], malformed: 0, unavailable: (err as Error).message };
  } finally {
    sock.close();
  }
}

/** A request to delete the tracked flow whose original tuple is `t`. */
export function encodeCtDelete(t: FlowTuple, seq = 1): Buffer {
  const w = new NlWriter(128);
  w.beginMsg((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, t.family === 4 ? 2 : 10);
  w.nest(CTA.TUPLE_ORIG, () => {
    w.nest(TUPLE.IP, () => {
      w.bytes(t.family === 4 ? IP.V4_SRC : IP.V6_SRC, addrBytes(t.family, t.src));
      w.bytes(t.family === 4 ? IP.V4_DST : IP.V6_DST, addrBytes(t.family, t.dst));
    });
    w.nest(TUPLE.PROTO, () => {
      w.u8(PROTO.NUM, t.proto);
      if (t.sport !== undefined) w.u16be(PROTO.SRC_PORT, t.sport);
      if (t.dport !== undefined) w.u16be(PROTO.DST_PORT, t.dport);
    });
  });
  w.endMsg();
  return w.finish();
}

/** A DNS flow (to port 53) that the redirect to local `port` sent to the guard: its replies come from loopback, from that port. */
export function redirectedTo(e: CtEntry, port: number): boolean {
  const r = e.reply;
  return (e.proto === 6 || e.proto === 17) && e.dport === 53 && r !== undefined && r.sport === port && isLoopback(r.family, r.src);
}

/**
 * Forgets the DNS flows redirected to local `port`, once no rule redirects
 * there any more. Conntrack keeps a flow's NAT binding for its lifetime
 * (30 s for a UDP query) whatever the rules say: without this, a program
 * that reuses a source port after the guard stops (audit mode, `sluice off`,
 * another port) would still be sent to a port nobody answers on. Best effort:
 * returns what it removed and what it could not.
 */
export function forgetRedirects(port: number): { removed: number; failed: number } {
  return forgetFlows(encodeCtDump(), (e) => redirectedTo(e, port));
}

/**
 * Forgets the DNS flows (to port 53) that the redirect to local `port` did
 * not send to the guard: flows that began before the redirect was there
 * (audit mode, `sluice off`). Their next packet then starts a new flow,
 * which is redirected, instead of being refused for the rest of the old
 * flow's life.
 */
export function forgetUnredirected(port: number): { removed: number; failed: number } {
  return forgetFlows(encodeCtDump(), (e) => (e.proto === 6 || e.proto === 17) && e.dport === 53 && !redirectedTo(e, port));
}

/**
 * Forgets the flows whose conntrack mark ANDed with `mask` is `value`: the
 * flows an earlier policy admitted in an epoch that is about to be used
 * again (src/compile/flow-mark.ts), which must never pass for flows the new
 * policy admitted. Best effort, as forgetRedirects.
 */
export function forgetFlowsMarked(value: number, mask: number): { removed: number; failed: number } {
  return forgetFlows(encodeCtDump(1, { value, mask }), (e) => e.mark !== undefined && ((e.mark & mask) >>> 0) === value >>> 0);
}

/** Deletes the flows of a dump that `which` selects. */
function forgetFlows(request: Buffer, which: (e: CtEntry) => boolean): { removed: number; failed: number } {
  let sock: NetlinkSocket;
  try {
    sock = NetlinkSocket.open(NETLINK_NETFILTER, { bufBytes: 4 << 20 });
  } catch {
    return { removed: 0, failed: 0 };
  }
  let removed = 0;
  let failed = 0;
  try {
    for (const m of sock.dump(request)) {
      let e: CtEntry;
      try {
        e = parseCtMessage(m);
      } catch {
        continue;
      }
      if (!which(e)) continue;
      try {
        sock.request(encodeCtDelete(e));
        removed++;
      } catch {
        failed++; // gone meanwhile (ENOENT), or refused
      }
    }
  } catch {
    // No conntrack in this namespace, or the dump failed: nothing more to do.
  } finally {
    sock.close();
  }
  return { removed, failed };
}
