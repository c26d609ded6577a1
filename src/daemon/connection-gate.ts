import type { Socket } from 'node:net';
import { SockDiag } from '../monitor/sock-diag.js';
import { parseAddr } from '../net/ip.js';

/**
 * Caps on who holds a local HTTP server's connections (the metrics server's,
 * the dashboard's): per peer (the uid owning the peer's socket, from the
 * kernel's socket table, so one local user cannot take every slot from
 * another), in total, with an idle timeout and, optionally, a lifetime.
 * Lives in the server's worker thread.
 */

export interface GateLimits {
  /** Connections open at once per peer uid. */
  perPeer: number;
  /** Connections open at once in all. */
  total: number;
  /** A connection that sends and receives nothing for this long is closed. */
  idleMs: number;
  /** No connection lives longer than this; 0: no limit (a live stream). */
  lifetimeMs: number;
}

export class ConnectionGate {
  /** Connections closed at once, by reason (`total`, `peer`). */
  readonly refused = new Map<string, number>();
  private readonly perPeer = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly peers = new WeakMap<Socket, string>();
  private open = 0;
  private diag: SockDiag | null | undefined;

  constructor(private readonly limits: GateLimits) {}

  /** Connections open now. */
  get size(): number {
    return this.open;
  }

  /** The uid owning the peer's end of a loopback TCP connection, from the kernel's socket table (`unknown` when it cannot be read). */
  peerUid(sock: Socket): string {
    if (this.diag === undefined) {
      try {
        this.diag = new SockDiag();
      } catch {
        this.diag = null;
      }
    }
    const remote = sock.remoteAddress ? parseAddr(sock.remoteAddress) : null;
    const local = sock.localAddress ? parseAddr(sock.localAddress) : null;
    if (!this.diag || !remote || !local || remote.family !== local.family || sock.remotePort === undefined || sock.localPort === undefined) return 'unknown';
    // The peer's socket: its source is our remote end.
    const e = this.diag.tcp({ family: remote.family, src: remote.value, sport: sock.remotePort, dst: local.value, dport: sock.localPort });
    return e ? `uid:${e.uid}` : 'unknown';
  }

  /**
   * Admits a connection or destroys it at once. `peer`: the bucket it counts
   * in (default: its uid); `perPeer: false` applies the total cap alone (a
   * root-only Unix socket). Every admitted one gets the idle timeout and lifetime.
   */
  admit(sock: Socket, opts: { peer?: string; perPeer?: boolean } = {}): boolean {
    const peer = opts.peer ?? this.peerUid(sock);
    const mine = this.perPeer.get(peer) ?? 0;
    const reason = this.open >= this.limits.total ? 'total' : opts.perPeer !== false && mine >= this.limits.perPeer ? 'peer' : null;
    if (reason) {
      this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
      sock.destroy();
      return false;
    }
    this.open++;
    this.perPeer.set(peer, mine + 1);
    this.peers.set(sock, peer);
    this.sockets.add(sock);
    sock.setTimeout(this.limits.idleMs, () => sock.destroy());
    const lifetime = this.limits.lifetimeMs > 0 ? setTimeout(() => sock.destroy(), this.limits.lifetimeMs) : undefined;
    lifetime?.unref();
    sock.once('close', () => {
      clearTimeout(lifetime);
      this.sockets.delete(sock);
      this.open--;
      const n = (this.perPeer.get(peer) ?? 1) - 1;
      if (n > 0) this.perPeer.set(peer, n);
      else this.perPeer.delete(peer);
    });
    return true;
  }

  /** The bucket an admitted connection counts in (`uid:N`, `unknown`), or `unknown`. */
  peerOf(sock: Socket | undefined): string {
    return (sock && this.peers.get(sock)) ?? 'unknown';
  }

  /** Destroys every open connection and lets go of the socket-table handle. */
  close(): void {
    for (const s of this.sockets) s.destroy();
    this.diag?.close();
    this.diag = null;
  }
}
