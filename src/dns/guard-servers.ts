import { createServer, type Server, type Socket } from 'node:net';
import { queryMarkScope } from '../compile/kernel-names.js';
import { native } from '../native/native.js';
import { addressBytes, peerAddress, UdpBatchSocket, type Peer, type UdpBatchStats } from '../net/udp-batch.js';
import type { DnsFastStats } from '../native/native.js';

const AF_INET = 2;
const AF_INET6 = 10;
import type { Client } from './dns-guard.js';
import { InflightShares } from './inflight-shares.js';

export type Handle = (packet: Buffer, client: Client) => Promise<Buffer | null>;

/** The guard's fast path (fast-answers.ts): its table, and who is told of each query answered from it. */
export interface FastPath {
  table: unknown;
  onHit: (id: number, query: Buffer, client: Client) => void;
}

export interface ServerStats {
  udpDropped: number;
  /** Queries dropped because their user (or, over TCP, all TCP clients together) held a full share of the slots. */
  overShare: number;
  /** Replies the kernel did not take (full send buffer). */
  udpSendFailed: number;
  tcpConnections: number;
  tcpRejected: number;
}

const MAX_INFLIGHT = 4096;
/**
 * One user's share of MAX_INFLIGHT. UDP queries are counted per uid (the
 * ruleset marks each query with its sender's uid, and the socket reads the
 * mark back); TCP queries, whose senders the guard cannot tell apart so
 * cheaply, share one such share together.
 */
const SHARE = MAX_INFLIGHT / 4;
const TCP_KEY = -1;

/** What bounds a TCP client (RFC 7766 section 6.2: servers must protect themselves). */
export interface TcpLimits {
  /** Connections open at once on each listener (127.0.0.1 and ::1); beyond, new ones are closed at once (counted in tcpRejected). */
  maxConnections: number;
  /** Closed after this long without a byte. */
  idleMs: number;
  /** Closed unless a whole first query arrived this soon (a client trickling bytes keeps no slot). */
  firstQueryMs: number;
  /** No connection lives longer. */
  lifetimeMs: number;
  /** Queries of one connection in flight at once; one more closes the connection. */
  pipeline: number;
}

const TCP_LIMITS: TcpLimits = { maxConnections: 256, idleMs: 10_000, firstQueryMs: 5_000, lifetimeMs: 30_000, pipeline: 32 };
/**
 * The guard's listeners on 127.0.0.1 and ::1 (where the kernel redirects
 * port 53). UDP and TCP (RFC 7766: two-byte length prefix, pipelining,
 * idle timeout). Work is bounded: in-flight queries, TCP connections and
 * per-connection pipelining all have ceilings; beyond them queries are
 * dropped and counted, never queued without bound. Each user gets a share
 * of the in-flight ceiling, so one user cannot starve the others.
 */
export class GuardServers {
  private base: Omit<ServerStats, 'overShare'> = { udpDropped: 0, udpSendFailed: 0, tcpConnections: 0, tcpRejected: 0 };
  private udp: UdpBatchSocket[] = [];
  private tcp: Server[] = [];
  private slots: InflightShares<number>;
  private limits: TcpLimits;
  /** The addresses the guard listens on: loopback for the host's guard, the veth's host end for a `sluice run`. */
  private hosts: readonly string[];
  private fast: FastPath | undefined;

  /**
   * `mark` goes on every listening socket (SO_MARK, which needs
   * CAP_NET_ADMIN): the ruleset delivers redirected queries only to sockets
   * carrying it, so nobody else who binds the port ever sees one.
   */
  constructor(
    readonly port: number,
    private handle: Handle,
    readonly mark = 0,
    opts: { total?: number; share?: number; tcp?: Partial<TcpLimits>; hosts?: readonly string[]; fast?: FastPath } = {},
  ) {
    this.fast = opts.fast;
    this.hosts = opts.hosts ?? ['127.0.0.1', '::1'];
    this.slots = new InflightShares(opts.total ?? MAX_INFLIGHT, opts.share ?? SHARE);
    this.limits = { ...TCP_LIMITS, ...opts.tcp };
  }

  async start(): Promise<void> {
    const fast = this.fast;
    for (const host of this.hosts) {
      // Batched UDP (recvmmsg/sendmmsg): queries arrive up to 64 per callback, and the
      // answers ready in one turn of the event loop leave in one system call.
      const sock = UdpBatchSocket.open(host, this.port, (msg, from, truncated, mark) => {
        if (truncated) {
          this.base.udpDropped++;
          return;
        }
        // The mark is the sender's uid, or a service scope's mark (kernel-names.ts): either way one share.
        if (!this.slots.take(mark)) {
          this.base.udpDropped++;
          return;
        }
        // `msg` and `from` point into the receive batch (up to 64 datagrams, 4 MiB). A query that
        // waits on an upstream must not keep all of that alive: it keeps copies of its own bytes.
        const peer: Peer = { family: from.family, addr: Buffer.from(from.addr), port: from.port };
        this.handle(Buffer.from(msg), sender(peerAddress(peer), peer.port, mark))
          .then((out) => {
            if (out) sock.send(out, peer);
          })
          .catch(() => undefined)
          .finally(() => this.slots.give(mark));
      }, { rcvbufBytes: 4 << 20, receiveMark: true, mark: this.mark, ...(fast ? { fast: { table: fast.table, onHit: (id, query, from, mark) => fast.onHit(id, query, sender(peerAddress(from), from.port, mark)) } } : {}) });
      this.udp.push(sock);

      const server = createServer((conn) => this.serveTcp(conn));
      server.maxConnections = this.limits.maxConnections;
      server.on('drop', () => this.base.tcpRejected++);
      const a = addressBytes(host);
      const fd = native().tcpListen(a.family === 4 ? AF_INET : AF_INET6, a.bytes, this.port, this.mark, 511);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd }, () => resolve());
      });
      this.tcp.push(server);
    }
  }

  get stats(): ServerStats {
    return { ...this.base, overShare: this.slots.overShare, udpSendFailed: this.udp.reduce((n, u) => n + u.stats.sendFailed, 0) };
  }

  /** Counters of the fast path's threads (one per UDP listener), when they read the sockets. */
  get fastStats(): DnsFastStats[] {
    return this.udp.flatMap((u) => (u.fast ? [u.fast] : []));
  }

  /** Counters of the UDP sockets (received, sent, truncated...). */
  get udpStats(): UdpBatchStats[] {
    return this.udp.map((u) => ({ ...u.stats }));
  }

  private serveTcp(conn: Socket): void {
    this.base.tcpConnections++;
    // Idle time alone resets on every byte, so trickling clients could hold every slot:
    // also a deadline for the first query and a hard lifetime.
    const { idleMs, firstQueryMs, lifetimeMs, pipeline } = this.limits;
    conn.setTimeout(idleMs, () => conn.destroy());
    let answered = false;
    const first = setTimeout(() => {
      if (!answered) conn.destroy();
    }, firstQueryMs);
    const life = setTimeout(() => conn.destroy(), lifetimeMs);
    conn.on('close', () => {
      clearTimeout(first);
      clearTimeout(life);
    });
    conn.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    let pipelined = 0;
    conn.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        answered = true;
        if (pipelined >= pipeline || !this.slots.take(TCP_KEY)) {
          conn.destroy();
          return;
        }
        pipelined++;
        this.handle(msg, { address: conn.remoteAddress ?? '', port: conn.remotePort ?? 0, transport: 'tcp' })
          .then((out) => {
            if (!out || conn.destroyed) return;
            const len2 = Buffer.alloc(2);
            len2.writeUInt16BE(out.length);
            conn.write(Buffer.concat([len2, out]));
          })
          .catch(() => undefined)
          .finally(() => {
            pipelined--;
            this.slots.give(TCP_KEY);
          });
      }
    });
  }

  async stop(): Promise<void> {
    for (const s of this.udp) s.close();
    await Promise.all(this.tcp.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.udp = [];
    this.tcp = [];
  }
}

/** A UDP query's client: the sender's uid from its mark, or the service scope the mark names. */
function sender(address: string, port: number, mark: number): Client {
  const scope = queryMarkScope(mark);
  return scope === undefined ? { address, port, transport: 'udp', uid: mark } : { address, port, transport: 'udp', scope };
}
