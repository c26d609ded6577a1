import { formatAddr, type AddrRange, type Family } from '../net/ip.js';
import type { PacketInfo } from '../net/packet.js';
import { decodeMessage, type Message, type Question } from './dns-message.js';
import { TcpDnsStreams, type TcpStreamLimits } from './tcp-dns-streams.js';

export interface PassiveStats {
  /** Queries from this host to a trusted resolver, remembered until their reply (or the window) ends. */
  queries: number;
  /** Replies that answered a remembered query: the only ones learned from. */
  matched: number;
  /** Replies from a source that is not one of the host's resolvers: ignored. */
  untrusted: number;
  /** Replies from a resolver that answer no remembered query (wrong port, id or question, or too late): ignored. */
  unmatched: number;
  /** Remembered queries given up: unanswered within the window, or pushed out by a flood. */
  expired: number;
  malformed: number;
}

/** The transport a message came by: a UDP query is answered over UDP, a TCP one in the same flow. */
type Transport = 'udp' | 'tcp';

/** What a remembered query needs: its reply comes back on the reversed 4-tuple with the same id and question. */
interface Asked {
  at: number;
  /** Sent by the guard itself (its deny-rule lookups): the reply is dropped quietly, it taught the guard already. */
  own: boolean;
}

const WINDOW_MS = 5000;
const MAX_PENDING = 65_536;

/**
 * Audit mode learns from DNS traffic it does not control, so it learns only
 * from replies to queries this host really sent to the resolvers it is
 * configured to use. The kernel copies both directions to NFLOG (outgoing
 * queries, and replies conntrack ties to them); a reply teaches something
 * only when it comes from a trusted resolver's port 53 back to the port a
 * query left from, within WINDOW_MS, with that query's id and exactly its
 * question (same case: RFC 1035 section 7.3 matching, which also keeps any
 * 0x20 randomisation of the sender meaningful). Each query is answered once.
 *
 * Without this, any local user could send a query to a server of their
 * own on port 53 and have its reply (an allowed name, an address of the
 * user's choosing) open that address for the allowed name's rule.
 */
export class PassiveObserver {
  readonly stats: PassiveStats = { queries: 0, matched: 0, untrusted: 0, unmatched: 0, expired: 0, malformed: 0 };
  private pending = new Map<string, Asked>();
  private trusted: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
  private streams: TcpDnsStreams;

  constructor(resolvers: readonly AddrRange[], private windowMs = WINDOW_MS, tcpLimits?: TcpStreamLimits) {
    this.setResolvers(resolvers);
    this.streams = new TcpDnsStreams(tcpLimits);
  }

  /** The resolvers replies are trusted from (single addresses). */
  setResolvers(resolvers: readonly AddrRange[]): void {
    const next: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
    for (const r of resolvers) if (r.start === r.end) next[r.family].add(r.start);
    this.trusted = next;
  }

  /**
   * One UDP packet the kernel copied: a query is remembered; a reply is
   * returned (decoded) when it answers a remembered query, else counted and
   * dropped (null). `now` is the record's time; `own` marks a query the
   * guard sent itself.
   */
  observe(p: PacketInfo, payload: Buffer, now: number, own = false): Message | null {
    if (p.payloadOffset === undefined || p.sport === undefined || p.dport === undefined) return null;
    return this.message('udp', p, payload.subarray(p.payloadOffset), now, own);
  }

  /**
   * One TCP segment the kernel copied (DNS over TCP, RFC 7766). Only flows
   * from this host to a trusted resolver's port 53, followed from their SYN,
   * are reassembled (tcp-dns-streams.ts); each whole message is then judged
   * as a UDP one is: queries remembered, replies returned when they answer a
   * query sent earlier in the same flow with the same id and question.
   */
  observeTcp(p: PacketInfo, payload: Buffer, now: number, own = false): Message[] {
    if (p.payloadOffset === undefined || p.sport === undefined || p.dport === undefined || p.tcpSeq === undefined || p.tcpFlags === undefined) return [];
    const trusted = this.trusted[p.family];
    let dir: 'query' | 'reply';
    let key: string;
    if (p.dport === 53 && trusted.has(p.dst)) {
      dir = 'query';
      key = flowKey(p.family, p.src, p.sport, p.dst);
    } else if (p.sport === 53 && trusted.has(p.src)) {
      dir = 'reply';
      key = flowKey(p.family, p.dst, p.dport, p.src);
    } else {
      // Nobody's resolver: no flow is followed, so nothing it sends is read.
      if (p.sport === 53 && p.payloadOffset < payload.length) this.stats.untrusted++;
      return [];
    }
    const { data, truncated } = payloadOf(p, payload);
    const out: Message[] = [];
    for (const m of this.streams.segment(key, dir, { seq: p.tcpSeq, flags: p.tcpFlags, data, truncated }, now)) {
      const msg = this.message('tcp', p, m, now, own);
      if (msg) out.push(msg);
    }
    return out;
  }

  /** DNS-over-TCP flows followed now, and the bytes they hold. */
  get tcp(): { flows: number; bytes: number; stats: TcpDnsStreams['stats'] } {
    return { flows: this.streams.size, bytes: this.streams.bytes, stats: this.streams.stats };
  }

  /** Judges one whole message seen on `p`'s 4-tuple (its direction told by port 53 and the trusted resolvers). */
  private message(transport: Transport, p: PacketInfo, wire: Buffer, now: number, own: boolean): Message | null {
    const sport = p.sport as number;
    const dport = p.dport as number;
    let msg: Message;
    try {
      msg = decodeMessage(wire);
    } catch {
      this.stats.malformed++;
      return null;
    }
    const q = msg.questions[0];
    if (msg.questions.length !== 1 || !q) return null;
    this.expire(now);
    if (!msg.flags.qr) {
      if (dport !== 53 || !this.trusted[p.family].has(p.dst)) return null;
      const key = askKey(transport, p.family, p.src, sport, p.dst, msg.id, q);
      if (!this.pending.has(key)) {
        if (this.pending.size >= MAX_PENDING) this.dropOldest();
        this.pending.set(key, { at: now, own });
        this.stats.queries++;
      }
      return null;
    }
    if (sport !== 53) return null;
    if (!this.trusted[p.family].has(p.src)) {
      this.stats.untrusted++;
      return null;
    }
    const key = askKey(transport, p.family, p.dst, dport, p.src, msg.id, q);
    const asked = this.pending.get(key);
    if (!asked || now - asked.at > this.windowMs) {
      this.stats.unmatched++;
      return null;
    }
    this.pending.delete(key);
    if (asked.own) return null;
    this.stats.matched++;
    return msg;
  }

  /** Queries waiting for their reply. */
  get waiting(): number {
    return this.pending.size;
  }

  /** Forgets queries older than the window (the map is in arrival order). */
  private expire(now: number): void {
    for (const [key, a] of this.pending) {
      if (now - a.at <= this.windowMs) break;
      this.pending.delete(key);
      this.stats.expired++;
    }
  }

  private dropOldest(): void {
    const first = this.pending.keys().next();
    if (first.done) return;
    this.pending.delete(first.value);
    this.stats.expired++;
  }
}

/** The query's identity: transport, client address and port, server, id, and the question exactly as sent. */
function askKey(transport: Transport, family: Family, client: bigint, port: number, server: bigint, id: number, q: Question): string {
  return `${transport}|${formatAddr(family, client)}|${port}|${formatAddr(family, server)}|${id}|${q.type}|${q.class}|${q.name}`;
}

/** A TCP flow to a resolver: the client's address and port, and the server (port 53). */
function flowKey(family: Family, client: bigint, port: number, server: bigint): string {
  return `${formatAddr(family, client)}|${port}|${formatAddr(family, server)}`;
}

/**
 * The transport payload of a logged packet, ending where the IP header says
 * the packet ends (never past the record); `truncated` when the record holds
 * less than that (the snapshot length cut it).
 */
function payloadOf(p: PacketInfo, record: Buffer): { data: Buffer; truncated: boolean } {
  const start = p.payloadOffset ?? record.length;
  const end = Math.min(record.length, Math.max(start, p.length));
  return { data: record.subarray(start, end), truncated: record.length < p.length };
}
