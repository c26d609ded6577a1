import { native } from '../native/native.js';
import { parsePacket, type PacketInfo } from '../net/packet.js';
import { NetlinkSocket } from './netlink-socket.js';
import { attrMap, attrStr, attrU32, MalformedNetlink, NlWriter, parseMessages, type NlMsg } from './nl-attr.js';
import { NETLINK_NETFILTER, NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG, NFULNL_MSG_PACKET, NLM_F_ACK, NLM_F_REQUEST } from './nl-constants.js';

/** nfnetlink_log attributes (linux/netfilter/nfnetlink_log.h). */
const NFULA = { PACKET_HDR: 1, MARK: 2, TIMESTAMP: 3, INDEV: 4, OUTDEV: 5, PAYLOAD: 9, PREFIX: 10, UID: 11, SEQ: 12, GID: 14 } as const;
const NFULA_CFG = { CMD: 1, MODE: 2, NLBUFSIZ: 3, TIMEOUT: 4, QTHRESH: 5, FLAGS: 6 } as const;
const CFG_CMD_BIND = 1;
const COPY_PACKET = 2;
const CFG_F_SEQ = 1;

/** One packet record from the kernel. */
export interface NflogRecord {
  group: number;
  prefix: string;
  /** Kernel timestamp in ms when present (the receive time otherwise). */
  timeMs: number;
  uid?: number;
  gid?: number;
  mark?: number;
  outIfindex?: number;
  inIfindex?: number;
  /** Per-group sequence number: gaps mean records the kernel could not deliver. */
  seq?: number;
  packet: PacketInfo | null;
  payload: Buffer;
}

/**
 * Parses an NFULNL_MSG_PACKET message. Returns null for other message types;
 * throws MalformedNetlink for broken attributes (callers count and skip).
 */
export function parseNflogMessage(msg: NlMsg, nowMs = Date.now()): NflogRecord | null {
  if (msg.type !== ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) return null;
  if (msg.payload.length < 4) throw new MalformedNetlink('NFLOG message shorter than its header');
  const group = msg.payload.readUInt16BE(2);
  const a = attrMap(msg.payload, 4);
  const u32 = (t: number) => attrU32(a.get(t));
  const payload = a.get(NFULA.PAYLOAD) ?? Buffer.alloc(0);
  const ts = a.get(NFULA.TIMESTAMP);
  let timeMs = nowMs;
  if (ts && ts.length >= 16) {
    const sec = ts.readBigUInt64BE(0);
    const usec = ts.readBigUInt64BE(8);
    const ms = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    if (Number.isFinite(ms) && ms > 0) timeMs = ms;
  }
  const rec: NflogRecord = {
    group,
    prefix: (attrStr(a.get(NFULA.PREFIX)) ?? '').slice(0, 128),
    timeMs,
    packet: parsePacket(payload),
    payload,
  };
  const uid = u32(NFULA.UID);
  const gid = u32(NFULA.GID);
  const mark = u32(NFULA.MARK);
  const outIf = u32(NFULA.OUTDEV);
  const inIf = u32(NFULA.INDEV);
  const seq = u32(NFULA.SEQ);
  if (uid !== undefined) rec.uid = uid;
  if (gid !== undefined) rec.gid = gid;
  if (mark !== undefined) rec.mark = mark;
  if (outIf !== undefined) rec.outIfindex = outIf;
  if (inIf !== undefined) rec.inIfindex = inIf;
  if (seq !== undefined) rec.seq = seq;
  return rec;
}

export interface NflogStats {
  records: number;
  malformed: number;
  /** Times the socket buffer overflowed (ENOBUFS): the kernel dropped records. */
  overflows: number;
  /** Records missing according to the kernel's sequence numbers. */
  seqGaps: number;
}

/**
 * A subscription to one NFLOG group, delivered on the event loop. Binding a
 * group needs CAP_NET_ADMIN, and one socket per group per namespace.
 */
export class NflogListener {
  readonly stats: NflogStats = { records: 0, malformed: 0, overflows: 0, seqGaps: 0 };
  private sock: NetlinkSocket;
  private handle: unknown;
  private lastSeq: number | undefined;

  constructor(
    readonly group: number,
    onRecords: (records: NflogRecord[]) => void,
    opts: { copyBytes?: number; bufBytes?: number; qthresh?: number } = {},
  ) {
    this.sock = NetlinkSocket.open(NETLINK_NETFILTER, { bufBytes: opts.bufBytes ?? 32 << 20 });
    const cfg = (attrs: (w: NlWriter) => void) => {
      const w = new NlWriter(64);
      w.beginMsg((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, 1, 0, group);
      attrs(w);
      w.endMsg();
      this.sock.request(w.finish());
    };
    try {
      cfg((w) => w.bytes(NFULA_CFG.CMD, Buffer.from([CFG_CMD_BIND])));
      const mode = Buffer.alloc(6);
      mode.writeUInt32BE(opts.copyBytes ?? 128, 0);
      mode[4] = COPY_PACKET;
      cfg((w) => w.bytes(NFULA_CFG.MODE, mode));
      cfg((w) => w.u16be(NFULA_CFG.FLAGS, CFG_F_SEQ));
      // Deliver promptly in small batches: at most 10 ms or 64 records (qthresh: 1 delivers each record at once).
      cfg((w) => w.u32be(NFULA_CFG.TIMEOUT, 1));
      cfg((w) => w.u32be(NFULA_CFG.QTHRESH, opts.qthresh ?? 64));
    } catch (err) {
      this.sock.close();
      throw err;
    }
    this.handle = native().watch(this.sock.fd, (err, data) => {
      if (err) {
        if (err.code === 'ENOBUFS') this.stats.overflows++;
        return;
      }
      if (!data) return;
      const out: NflogRecord[] = [];
      let msgs: NlMsg[];
      try {
        msgs = parseMessages(data);
      } catch {
        this.stats.malformed++;
        return;
      }
      const now = Date.now();
      for (const m of msgs) {
        try {
          const r = parseNflogMessage(m, now);
          if (!r) continue;
          if (r.seq !== undefined) {
            if (this.lastSeq !== undefined && r.seq > this.lastSeq + 1) this.stats.seqGaps += r.seq - this.lastSeq - 1;
            this.lastSeq = r.seq;
          }
          out.push(r);
        } catch {
          this.stats.malformed++;
        }
      }
      this.stats.records += out.length;
      if (out.length > 0) onRecords(out);
    });
  }

  close(): void {
    if (this.handle) native().unwatch(this.handle);
    this.handle = undefined;
    this.sock.close();
  }
}
