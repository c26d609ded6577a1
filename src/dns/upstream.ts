import { randomFillSync } from 'node:crypto';
import { Socket as TcpSocket } from 'node:net';
import { native } from '../native/native.js';
import { addrBytes, formatAddr, type AddrRange } from '../net/ip.js';
import { UdpBatchSocket, type Peer } from '../net/udp-batch.js';
import { canonicalName, decodeMessage, DnsFormatError, encodeQuery, type Message, type Question } from './dns-message.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;

export interface UpstreamOptions {
  /** SO_MARK on every upstream socket: the ruleset lets only marked packets reach the resolvers. */
  mark: number;
  timeoutMs?: number;
  /** UDP sockets per family; each gets its own random source port. */
  poolSize?: number;
  /** Replace a UDP socket after this many queries, so source ports keep changing. */
  socketQueries?: number;
}

export interface UpstreamStats {
  queries: number;
  timeouts: number;
  tcpFallbacks: number;
  badReplies: number;
  failures: number;
  /** Queries the kernel would not send (full send buffer, or refused). */
  sendFailures: number;
}

interface Server {
  family: 4 | 6;
  address: string;
  peer: Peer;
}

interface Pending {
  server: Server;
  question: Question;
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  deadline: number;
}

/** Unpredictable 16-bit values (query ids) from a pool refilled by the CSPRNG. */
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

class PooledSocket {
  readonly sock: UdpBatchSocket;
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;

  constructor(family: 4 | 6, mark: number, onBad: () => void, onSendFailed: (n: number) => void) {
    // Bound by the kernel to a random free port before it is used, and alone on it.
    this.sock = UdpBatchSocket.open(family === 4 ? '0.0.0.0' : '::', 0, (buf, from, truncated) => this.receive(buf, from, truncated, onBad), {
      mark,
      rcvbufBytes: 1 << 20,
      onSendFailed,
    });
  }

  private receive(buf: Buffer, from: Peer, truncated: boolean, onBad: () => void): void {
    const id = buf.length >= 2 ? buf.readUInt16BE(0) : -1;
    const p = this.pending.get(id);
    // RFC 5452 section 9: accept only from the server asked, with the id and question asked.
    if (!p || from.port !== 53 || from.family !== p.server.family || !from.addr.equals(p.server.peer.addr)) {
      onBad();
      return;
    }
    if (truncated) {
      // Larger than the receive area: ask again over TCP, as for a TC answer.
      this.pending.delete(id);
      p.resolve({ id, flags: { qr: true, opcode: 0, aa: false, tc: true, rd: true, ra: false, ad: false, cd: false, rcode: 0 }, questions: [p.question], answers: [], authorities: [], additionals: [] });
      return;
    }
    let msg: Message;
    try {
      msg = decodeMessage(buf);
    } catch {
      onBad();
      return;
    }
    if (!msg.flags.qr || !sameQuestion(msg, p.question)) {
      onBad();
      return;
    }
    this.pending.delete(id);
    p.resolve(msg);
  }

  freeId(random: RandomPool): number {
    for (;;) {
      const id = random.u16();
      if (!this.pending.has(id)) return id;
    }
  }

  close(): void {
    this.sock.close();
  }
}

function sameQuestion(m: Message, q: Question): boolean {
  const a = m.questions[0];
  return m.questions.length === 1 && !!a && a.type === q.type && a.class === q.class && canonicalName(a.name) === canonicalName(q.name);
}

/**
 * Forwards queries to the upstream resolvers from sockets carrying the
 * guard's mark. Retries the next upstream on timeout; repeats over TCP when
 * the UDP answer is truncated (RFC 7766).
 */
export class UpstreamClient {
  readonly stats: UpstreamStats = { queries: 0, timeouts: 0, tcpFallbacks: 0, badReplies: 0, failures: 0, sendFailures: 0 };
  private servers: Server[];
  private pools = new Map<4 | 6, PooledSocket[]>();
  /** Retired sockets waiting for their last answers. */
  private draining = new Set<PooledSocket>();
  private next = 0;
  private closed = false;
  private random = new RandomPool();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    upstreams: AddrRange[],
    private opts: UpstreamOptions,
  ) {
    this.servers = upstreams.map((u) => ({ family: u.family, address: formatAddr(u.family, u.start), peer: { family: u.family, addr: addrBytes(u.family, u.start), port: 53 } }));
  }

  /**
   * One timer for every query in flight: every 50 ms, queries past their
   * deadline fail (a timer per query costs more than the check), and retired
   * sockets with nothing left to wait for close.
   */
  private sweep(): void {
    const now = performance.now();
    const expire = (s: PooledSocket) => {
      for (const [id, p] of s.pending) {
        if (p.deadline > now) continue;
        s.pending.delete(id);
        this.stats.timeouts++;
        p.reject(new Error(`upstream ${p.server.address} timed out`));
      }
    };
    for (const pool of this.pools.values()) pool.forEach(expire);
    for (const s of this.draining) {
      expire(s);
      if (s.pending.size === 0) {
        s.close();
        this.draining.delete(s);
      }
    }
  }

  get configured(): boolean {
    return this.servers.length > 0;
  }

  private newSocket(family: 4 | 6): PooledSocket {
    // A query the kernel did not send times out and goes to the next upstream.
    return new PooledSocket(
      family,
      this.opts.mark,
      () => this.stats.badReplies++,
      (n) => (this.stats.sendFailures += n),
    );
  }

  private socketFor(family: 4 | 6): PooledSocket {
    const size = this.opts.poolSize ?? 16;
    let pool = this.pools.get(family);
    if (!pool) {
      pool = [];
      this.pools.set(family, pool);
    }
    if (pool.length < size) {
      const s = this.newSocket(family);
      pool.push(s);
      return s;
    }
    const i = this.random.u16() % pool.length;
    let s = pool[i] as PooledSocket;
    if (s.uses >= (this.opts.socketQueries ?? 100)) {
      // Retired: it closes once its queries are answered or timed out; new queries use a fresh port.
      this.draining.add(s);
      s = this.newSocket(family);
      pool[i] = s;
    }
    return s;
  }

  /** Resolves `question` upstream. Throws when every upstream failed. */
  async query(question: Question, flags: { dnssecOk: boolean; cd: boolean }): Promise<Message> {
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
      try {
        const answer = await this.udp(server, question, flags, timeout);
        if (!answer.flags.tc) {
          this.next = (this.next + attempt) % this.servers.length;
          return answer;
        }
        this.stats.tcpFallbacks++;
        return await this.tcp(server, question, flags, timeout);
      } catch (err) {
        lastError = err as Error;
      }
    }
    this.stats.failures++;
    throw lastError ?? new Error('no upstream answered');
  }

  private request(id: number, question: Question, flags: { dnssecOk: boolean; cd: boolean }): Buffer {
    // A fresh query built from the parsed question: nothing of the client's
    // packet but the checked question goes upstream (no parser differential,
    // no client EDNS options such as ECS or cookies).
    return encodeQuery(id, question, { rd: true, cd: flags.cd, dnssecOk: flags.dnssecOk, udpSize: 1232 });
  }

  private udp(server: Server, question: Question, flags: { dnssecOk: boolean; cd: boolean }, timeout: number): Promise<Message> {
    const s = this.socketFor(server.family);
    const id = s.freeId(this.random);
    s.uses++;
    return new Promise((resolve, reject) => {
      s.pending.set(id, { server, question, resolve, reject, deadline: performance.now() + timeout });
      s.sock.send(this.request(id, question, flags), server.peer);
    });
  }

  private tcp(server: Server, question: Question, flags: { dnssecOk: boolean; cd: boolean }, timeout: number): Promise<Message> {
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
      sock.connect(53, server.address, () => {
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
          if (msg.id !== id || !msg.flags.qr || !sameQuestion(msg, question)) return done(new Error('mismatched TCP answer'));
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
    for (const s of [...[...this.pools.values()].flat(), ...this.draining]) {
      for (const p of s.pending.values()) p.reject(new Error('the upstream client closed'));
      s.pending.clear();
      s.close();
    }
    this.pools.clear();
    this.draining.clear();
  }
}

