import { formatAddr, type AddrRange, type Family } from '../net/ip.js';
import type { PacketInfo } from '../net/packet.js';
import { decodeMessage, type Message, type Question } from './dns-message.js';

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

  constructor(resolvers: readonly AddrRange[], private windowMs = WINDOW_MS) {
    this.setResolvers(resolvers);
  }

  /** The resolvers replies are trusted from (single addresses). */
  setResolvers(resolvers: readonly AddrRange[]): void {
    const next: Record<Family, Set<bigint>> = { 4: new Set(), 6: new Set() };
    for (const r of resolvers) if (r.start === r.end) next[r.family].add(r.start);
    this.trusted = next;
  }

  /**
   * One packet the kernel copied: a query is remembered; a reply is
   * returned (decoded) when it answers a remembered query, else counted and
   * dropped (null). `now` is the record's time; `own` marks a query the
   * guard sent itself.
   */
  observe(p: PacketInfo, payload: Buffer, now: number, own = false): Message | null {
    if (p.payloadOffset === undefined || p.sport === undefined || p.dport === undefined) return null;
    let msg: Message;
    try {
      msg = decodeMessage(payload.subarray(p.payloadOffset));
    } catch {
      this.stats.malformed++;
      return null;
    }
    const q = msg.questions[0];
    if (msg.questions.length !== 1 || !q) return null;
    this.expire(now);
    if (!msg.flags.qr) {
      if (p.dport !== 53 || !this.trusted[p.family].has(p.dst)) return null;
      const key = askKey(p.family, p.src, p.sport, p.dst, msg.id, q);
      if (!this.pending.has(key)) {
        if (this.pending.size >= MAX_PENDING) this.dropOldest();
        this.pending.set(key, { at: now, own });
        this.stats.queries++;
      }
      return null;
    }
    if (p.sport !== 53) return null;
    if (!this.trusted[p.family].has(p.src)) {
      this.stats.untrusted++;
      return null;
    }
    const key = askKey(p.family, p.dst, p.dport, p.src, msg.id, q);
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

/** The query's identity: client address and port, server, id, and the question exactly as sent. */
function askKey(family: Family, client: bigint, port: number, server: bigint, id: number, q: Question): string {
  return `${formatAddr(family, client)}|${port}|${formatAddr(family, server)}|${id}|${q.type}|${q.class}|${q.name}`;
}
