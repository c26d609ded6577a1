import { randomFillSync } from 'node:crypto';
import { Socket as TcpSocket } from 'node:net';
import { native } from '../native/native.js';
import { addrBytes, formatAddr, type AddrRange } from '../net/ip.js';
import { UdpBatchSocket, UdpSocketGroup, type Peer } from '../net/udp-batch.js';
import { canonicalName, decodeMessage, DnsFormatError, encodeQuery, type Message, type Question, type RR } from './dns-message.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;

export interface UpstreamOptions {
  /** SO_MARK on every upstream socket: the ruleset lets only marked packets reach the resolvers. */
  mark: number;
  timeoutMs?: number;
  /** Open UDP sockets at most; beyond, new queries share the newest one (bounds descriptors under a flood; counted). */
  maxSockets?: number;
  /** The upstreams' port: 53 (tests run a fake upstream elsewhere). */
  port?: number;
}

export interface UpstreamStats {
  queries: number;
  timeouts: number;
  tcpFallbacks: number;
  badReplies: number;
  /** Replies whose question did not repeat the randomised case of the name asked (RFC 1035 section 7.3, draft-vixie-dnsext-dns0x20): refused. */
  caseMismatches: number;
  failures: number;
  /** Queries the kernel would not send (full send buffer, or refused). */
  sendFailures: number;
  /** Queries answered by a query already in flight for the same question. */
  coalesced: number;
  /** UDP sockets opened (each carries the queries of one turn of the event loop, then closes). */
  sockets: number;
  /** Queries sent on a socket that had already left, because maxSockets were open. */
  socketsShared: number;
}

interface Server {
  family: 4 | 6;
  address: string;
  peer: Peer;
}

interface Pending {
  server: Server;
  /** The question as sent: the name in randomised case. */
  asked: Question;
  /** The name as the client asked it, restored in the answer. */
  name: string;
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  deadline: number;
}

/** Unpredictable 16-bit values (query ids, case bits) from a pool refilled by the CSPRNG. */
class RandomPool {
  private buf = Buffer.alloc(8192);
  private pos = this.buf.length;

  u16(): number {
    if (this.pos + 2 > this.buf.length) {
      randomFillSync(this.buf);
      this.pos = 0;
    }
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
}

/**
 * 0x20 randomisation (draft-vixie-dnsext-dns0x20): each ASCII letter of the
 * name in a random case. Resolvers repeat the question as sent (RFC 1035
 * section 7.3), so a forged reply must also guess one bit per letter.
 * Escapes in presentation form hold only digits and punctuation, never
 * letters, so they are left as they are.
 */
export function randomCase(name: string, random: { u16(): number }): string {
  const n = name.length;
  // Assembled in a scratch buffer (one string made at the end); presentation form is ASCII.
  const out = n <= CASE_SCRATCH.length ? CASE_SCRATCH : Buffer.alloc(n);
  let bits = 0;
  let left = 0;
  for (let i = 0; i < n; i++) {
    let c = name.charCodeAt(i);
    const lower = c | 0x20;
    if (lower >= 0x61 && lower <= 0x7a) {
      if (left === 0) {
        bits = random.u16();
        left = 16;
      }
      c = bits & 1 ? lower & ~0x20 : lower;
      bits >>>= 1;
      left--;
    }
    out[i] = c;
  }
  return out.toString('latin1', 0, n);
}

/** Scratch for randomCase (names in presentation form are at most 1,004 characters: 255 octets, escaped). */
const CASE_SCRATCH = Buffer.alloc(1024);

/** Queries one socket carries at most (one turn of the event loop usually holds fewer). */
const QUERIES_PER_SOCKET = 64;

/**
 * A socket for the queries of one turn of the event loop: opened when the
 * first of them is sent, sealed (no more queries) once they have left, and
 * closed when the last is answered or times out. Its port appears in
 * /proc/net/udp only once its queries are on their way, and no later query
 * uses it: an observer who reads the port learns nothing about the next one.
 */
class QuerySocket {
  readonly sock: UdpBatchSocket;
  readonly pending = new Map<number, Pending>();
  sealed = false;

  constructor(
    family: 4 | 6,
    mark: number,
    group: UdpSocketGroup,
    private onReply: (s: QuerySocket, buf: Buffer, from: Peer, truncated: boolean) => void,
    onSendFailed: (n: number) => void,
  ) {
    // Bound by the kernel to a random free port before it is used, and alone on it; watched with
    // the other query sockets (one epoll set), so opening one costs little more than the socket.
    this.sock = UdpBatchSocket.open(family === 4 ? '0.0.0.0' : '::', 0, (buf, from, truncated) => this.onReply(this, buf, from, truncated), {
      mark,
      rcvbufBytes: 1 << 20,
      onSendFailed,
      group,
    });
  }

  freeId(random: RandomPool): number {
    for (;;) {
      const id = random.u16();
      if (!this.pending.has(id)) return id;
    }
  }
}

function sameQuestion(m: Message, q: Question): boolean {
  const a = m.questions[0];
  return m.questions.length === 1 && !!a && a.type === q.type && a.class === q.class && a.name === q.name;
}

/** The answer as if asked with the client's spelling of the name (records owned by the randomised name get it back). */
function restoreCase(m: Message, asked: string, name: string): Message {
  if (asked === name) return m;
  const q = m.questions[0];
  if (q) q.name = name;
  const fix = (list: RR[]) => {
    for (const rr of list) if (rr.name === asked) rr.name = name;
  };
  fix(m.answers);
  fix(m.authorities);
  fix(m.additionals);
  return m;
}

/**
 * Forwards queries to the upstream resolvers from sockets carrying the
 * guard's mark. Spoofing a reply means guessing, at once, the 16-bit id, the
 * source port of a socket that lives for one batch of queries, and the case
 * of every letter of the name; replies are accepted only from the server
 * asked, its port 53, with that id and exactly that question. Identical
 * questions in flight share one upstream query (no birthday attack from many
 * queries for one name). Retries the next upstream on timeout; repeats over
 * TCP when the UDP answer is truncated (RFC 7766).
 */
export class UpstreamClient {
  readonly stats: UpstreamStats = { queries: 0, timeouts: 0, tcpFallbacks: 0, badReplies: 0, caseMismatches: 0, failures: 0, sendFailures: 0, coalesced: 0, sockets: 0, socketsShared: 0 };
  private servers: Server[];
  /** The socket this turn's queries go out on, per family (sealed once they left). */
  private current = new Map<4 | 6, QuerySocket>();
  /** Every open socket: the current ones, and sealed ones waiting for their answers. */
  private open = new Set<QuerySocket>();
  private inflight = new Map<string, Promise<Message>>();
  private next = 0;
  private closed = false;
  private random = new RandomPool();
  private sweeper: NodeJS.Timeout | undefined;
  private group: UdpSocketGroup | undefined;

  constructor(
    upstreams: AddrRange[],
    private opts: UpstreamOptions,
  ) {
    const port = opts.port ?? 53;
    this.servers = upstreams.map((u) => ({ family: u.family, address: formatAddr(u.family, u.start), peer: { family: u.family, addr: addrBytes(u.family, u.start), port } }));
  }

  /**
   * One timer for every query in flight: every 50 ms, queries past their
   * deadline fail (a timer per query costs more than the check), and sealed
   * sockets with nothing left to wait for close.
   */
  private sweep(): void {
    const now = performance.now();
    for (const s of this.open) {
      for (const [id, p] of s.pending) {
        if (p.deadline > now) continue;
        s.pending.delete(id);
        this.stats.timeouts++;
        p.reject(new Error(`upstream ${p.server.address} timed out`));
      }
      this.closeIfDone(s);
    }
  }

  private closeIfDone(s: QuerySocket): void {
    if (!s.sealed || s.pending.size > 0 || !this.open.has(s)) return;
    this.open.delete(s);
    s.sock.close();
  }

  get configured(): boolean {
    return this.servers.length > 0;
  }

  /** Sockets open now (for tests and status). */
  get openSockets(): number {
    return this.open.size;
  }

  /** Local ports of the sockets open now. */
  get openPorts(): number[] {
    return [...this.open].map((s) => s.sock.port);
  }

  private receive(s: QuerySocket, buf: Buffer, from: Peer, truncated: boolean): void {
    const id = buf.length >= 2 ? buf.readUInt16BE(0) : -1;
    const p = s.pending.get(id);
    // RFC 5452 section 9: accept only from the server asked (its port 53), with the id and question asked.
    if (!p || from.port !== p.server.peer.port || from.family !== p.server.family || !from.addr.equals(p.server.peer.addr)) {
      this.stats.badReplies++;
      return;
    }
    if (truncated) {
      // Larger than the receive area: ask again over TCP, as for a TC answer.
      s.pending.delete(id);
      p.resolve({ id, flags: { qr: true, opcode: 0, aa: false, tc: true, rd: true, ra: false, ad: false, cd: false, rcode: 0 }, questions: [p.asked], answers: [], authorities: [], additionals: [] });
      this.closeIfDone(s);
      return;
    }
    let msg: Message;
    try {
      msg = decodeMessage(buf);
    } catch {
      this.stats.badReplies++;
      return;
    }
    if (!msg.flags.qr || !sameQuestion(msg, p.asked)) {
      this.stats.badReplies++;
      // The same question in another case: not what was sent (a forgery guessing the id, or a resolver that does not echo).
      const a = msg.questions[0];
      if (a && a.name !== p.asked.name && canonicalName(a.name) === canonicalName(p.asked.name)) this.stats.caseMismatches++;
      return;
    }
    s.pending.delete(id);
    p.resolve(restoreCase(msg, p.asked.name, p.name));
    this.closeIfDone(s);
  }

  private socketFor(family: 4 | 6): QuerySocket {
    const cur = this.current.get(family);
    if (cur && !cur.sealed && cur.pending.size < QUERIES_PER_SOCKET) return cur;
    if (cur && this.open.size >= (this.opts.maxSockets ?? 4096)) {
      this.stats.socketsShared++;
      return cur;
    }
    if (cur) cur.sealed = true;
    // A query the kernel did not send times out and goes to the next upstream.
    this.group ??= new UdpSocketGroup();
    const s = new QuerySocket(family, this.opts.mark, this.group, (q, buf, from, truncated) => this.receive(q, buf, from, truncated), (n) => (this.stats.sendFailures += n));
    this.stats.sockets++;
    this.current.set(family, s);
    this.open.add(s);
    // Sealed after this turn's queries: the socket's send queue flushes in a microtask queued
    // with its first query, after this one, so every query it carries leaves in that flush.
    queueMicrotask(() => {
      s.sealed = true;
    });
    return s;
  }

  /** Resolves `question` upstream. Throws when every upstream failed. */
  query(question: Question, flags: { dnssecOk: boolean }): Promise<Message> {
    // One upstream query per question in flight: the others wait for its answer.
    const key = `${question.type}|${question.class}|${flags.dnssecOk ? 1 : 0}|${canonicalName(question.name)}`;
    const same = this.inflight.get(key);
    if (same) {
      this.stats.coalesced++;
      return same;
    }
    const p = this.resolve(question, flags).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async resolve(question: Question, flags: { dnssecOk: boolean }): Promise<Message> {
    if (this.servers.length === 0) throw new Error('no upstream resolver configured');
    if (this.closed) throw new Error('the upstream client closed');
    this.stats.queries++;
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), 50);
      this.sweeper.unref();
    }
    const timeout = this.opts.timeoutMs ?? 2000;
    // Made only on failure: an Error captures a stack trace, too costly for every query.
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < Math.min(this.servers.length + 1, 3); attempt++) {
      const server = this.servers[(this.next + attempt) % this.servers.length] as Server;
      // A new spelling for every attempt: a forger learns nothing from the last one.
      const asked = { name: randomCase(question.name, this.random), type: question.type, class: question.class };
      try {
        const answer = await this.udp(server, asked, question.name, flags, timeout);
        if (!answer.flags.tc) {
          this.next = (this.next + attempt) % this.servers.length;
          return answer;
        }
        this.stats.tcpFallbacks++;
        return restoreCase(await this.tcp(server, asked, flags, timeout), asked.name, question.name);
      } catch (err) {
        lastError = err as Error;
      }
    }
    this.stats.failures++;
    throw lastError ?? new Error('no upstream answered');
  }

  private request(id: number, question: Question, flags: { dnssecOk: boolean }): Buffer {
    // A fresh query built from the parsed question: nothing of the client's
    // packet but the checked question goes upstream (no parser differential,
    // no client EDNS options such as ECS or cookies, no CD bit).
    return encodeQuery(id, question, { rd: true, cd: false, dnssecOk: flags.dnssecOk, udpSize: 1232 });
  }

  private udp(server: Server, asked: Question, name: string, flags: { dnssecOk: boolean }, timeout: number): Promise<Message> {
    const s = this.socketFor(server.family);
    const id = s.freeId(this.random);
    return new Promise((resolve, reject) => {
      s.pending.set(id, { server, asked, name, resolve, reject, deadline: performance.now() + timeout });
      s.sock.send(this.request(id, asked, flags), server.peer);
    });
  }

  private tcp(server: Server, question: Question, flags: { dnssecOk: boolean }, timeout: number): Promise<Message> {
    const fd = native().markedSocket(server.family === 4 ? AF_INET : AF_INET6, SOCK_STREAM, this.opts.mark);
    const id = this.random.u16();
    const req = this.request(id, question, flags);
    return new Promise((resolve, reject) => {
      const sock = new TcpSocket({ fd, readable: true, writable: true });
      let buf = Buffer.alloc(0);
      const done = (err: Error | null, msg?: Message) => {
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(msg as Message);
      };
      const timer = setTimeout(() => done(new Error(`upstream ${server.address} timed out over TCP`)), timeout);
      sock.on('error', (e) => done(e));
      sock.connect(server.peer.port, server.address, () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(req.length);
        sock.write(Buffer.concat([len, req]));
      });
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 65537) return done(new DnsFormatError('TCP answer too long'));
        if (buf.length < 2) return;
        const need = buf.readUInt16BE(0);
        if (buf.length < 2 + need) return;
        try {
          const msg = decodeMessage(buf.subarray(2, 2 + need));
          if (msg.id !== id || !msg.flags.qr || !sameQuestion(msg, question)) {
            const a = msg.questions[0];
            if (a && a.name !== question.name && canonicalName(a.name) === canonicalName(question.name)) this.stats.caseMismatches++;
            return done(new Error('mismatched TCP answer'));
          }
          done(null, msg);
        } catch (e) {
          done(e as Error);
        }
      });
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    for (const s of this.open) {
      for (const p of s.pending.values()) p.reject(new Error('the upstream client closed'));
      s.pending.clear();
      s.sock.close();
    }
    this.open.clear();
    this.current.clear();
    this.group?.close();
  }
}
