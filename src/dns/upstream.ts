import { randomInt } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Socket as TcpSocket } from 'node:net';
import { native } from '../native/native.js';
import { formatAddr, type AddrRange } from '../net/ip.js';
import { canonicalName, decodeMessage, DnsFormatError, encodeMessage, type Message, type Question } from './dns-message.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;

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
}

interface Pending {
  server: string;
  question: Question;
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class PooledSocket {
  readonly sock: UdpSocket;
  readonly pending = new Map<number, Pending>();
  uses = 0;

  constructor(family: 4 | 6, mark: number, onBad: () => void) {
    const fd = native().markedSocket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM, mark);
    this.sock = createSocket(family === 4 ? 'udp4' : 'udp6');
    this.sock.bind({ fd });
    this.sock.on('error', () => undefined);
    this.sock.on('message', (buf, rinfo) => {
      let msg: Message;
      try {
        msg = decodeMessage(buf);
      } catch {
        onBad();
        return;
      }
      const p = this.pending.get(msg.id);
      // RFC 5452 section 9: accept only from the server asked, with the id and question asked.
      if (!p || rinfo.address !== p.server || rinfo.port !== 53 || !msg.flags.qr || !sameQuestion(msg, p.question)) {
        onBad();
        return;
      }
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      p.resolve(msg);
    });
  }

  freeId(): number {
    for (;;) {
      const id = randomInt(0, 65536);
      if (!this.pending.has(id)) return id;
    }
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
  readonly stats: UpstreamStats = { queries: 0, timeouts: 0, tcpFallbacks: 0, badReplies: 0, failures: 0 };
  private servers: { family: 4 | 6; address: string }[];
  private pools = new Map<4 | 6, PooledSocket[]>();
  private next = 0;
  private closed = false;

  constructor(
    upstreams: AddrRange[],
    private opts: UpstreamOptions,
  ) {
    this.servers = upstreams.map((u) => ({ family: u.family, address: formatAddr(u.family, u.start) }));
  }

  get configured(): boolean {
    return this.servers.length > 0;
  }

  private socketFor(family: 4 | 6): PooledSocket {
    const size = this.opts.poolSize ?? 16;
    let pool = this.pools.get(family);
    if (!pool) {
      pool = [];
      this.pools.set(family, pool);
    }
    if (pool.length < size) {
      const s = new PooledSocket(family, this.opts.mark, () => this.stats.badReplies++);
      pool.push(s);
      return s;
    }
    const i = randomInt(0, pool.length);
    let s = pool[i] as PooledSocket;
    if (s.uses >= (this.opts.socketQueries ?? 100)) {
      // Retire it once its queries are answered; new queries use a fresh port.
      const old = s;
      const closeWhenIdle = () => (old.pending.size === 0 ? old.sock.close() : setTimeout(closeWhenIdle, 500).unref());
      closeWhenIdle();
      s = new PooledSocket(family, this.opts.mark, () => this.stats.badReplies++);
      pool[i] = s;
    }
    return s;
  }

  /** Resolves `question` upstream. Throws when every upstream failed. */
  async query(question: Question, flags: { dnssecOk: boolean; cd: boolean }): Promise<Message> {
    if (this.servers.length === 0) throw new Error('no upstream resolver configured');
    this.stats.queries++;
    const timeout = this.opts.timeoutMs ?? 2000;
    let lastError: Error = new Error('no upstream answered');
    for (let attempt = 0; attempt < Math.min(this.servers.length + 1, 3); attempt++) {
      const server = this.servers[(this.next + attempt) % this.servers.length] as { family: 4 | 6; address: string };
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
    throw lastError;
  }

  private request(id: number, question: Question, flags: { dnssecOk: boolean; cd: boolean }): Buffer {
    // A fresh query built from the parsed question: nothing of the client's
    // packet but the checked question goes upstream (no parser differential,
    // no client EDNS options such as ECS or cookies).
    const msg: Message = {
      id,
      flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: flags.cd, rcode: 0 },
      questions: [question],
      answers: [],
      authorities: [],
      additionals: [],
      edns: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: flags.dnssecOk, options: [] },
    };
    return encodeMessage(msg);
  }

  private udp(server: { family: 4 | 6; address: string }, question: Question, flags: { dnssecOk: boolean; cd: boolean }, timeout: number): Promise<Message> {
    const s = this.socketFor(server.family);
    const id = s.freeId();
    s.uses++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        this.stats.timeouts++;
        reject(new Error(`upstream ${server.address} timed out`));
      }, timeout);
      s.pending.set(id, { server: server.address, question, resolve, reject, timer });
      s.sock.send(this.request(id, question, flags), 53, server.address, (err) => {
        if (!err) return;
        clearTimeout(timer);
        s.pending.delete(id);
        reject(err);
      });
    });
  }

  private tcp(server: { family: 4 | 6; address: string }, question: Question, flags: { dnssecOk: boolean; cd: boolean }, timeout: number): Promise<Message> {
    const fd = native().markedSocket(server.family === 4 ? AF_INET : AF_INET6, SOCK_STREAM, this.opts.mark);
    const id = randomInt(0, 65536);
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
    for (const pool of this.pools.values()) {
      for (const s of pool) {
        for (const p of s.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new Error('the upstream client closed'));
        }
        s.pending.clear();
        s.sock.close();
      }
    }
    this.pools.clear();
  }
}

