import type { DnsQueryEvent } from '../daemon/events.js';
import { parseAddr, type Family } from '../net/ip.js';
import { ProcessTable } from '../monitor/process-table.js';
import { SockDiag, type SockEntry } from '../monitor/sock-diag.js';
import type { Client } from './dns-guard.js';

export interface QueryAttributionStats {
  lookups: number;
  found: number;
  /** Lookups skipped because the per-second budget was spent (a flood of queries). */
  overBudget: number;
  errors: number;
}

/**
 * Finds the process that sent a DNS query: the kernel's socket table
 * (sock_diag) gives the socket bound to the client's address and port, and
 * its inode leads to the process holding it. The socket must still exist, so
 * blocked queries are identified before their answer goes out, allowed ones
 * right after. Lookups cost a socket-table dump, so they run in batches and
 * within a budget per second; beyond it events carry no process (counted).
 */
export class QueryAttribution {
  readonly stats: QueryAttributionStats = { lookups: 0, found: 0, overBudget: 0, errors: 0 };
  private diag: SockDiag | undefined;
  private procs = new ProcessTable({ exclude: [process.pid] });
  private budget: number;
  private windowStart = 0;
  private used = 0;

  /** Socket tables by family/transport, reused for 20 ms: a flood of queries costs at most 50 dumps a second. */
  private cache = new Map<string, { at: number; socks: SockEntry[] }>();

  constructor(private perSecond = 500) {
    this.budget = perSecond;
  }

  private take(n: number): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used + n > this.budget) {
      this.stats.overBudget += n;
      return false;
    }
    this.used += n;
    return true;
  }

  /** Identifies the senders of several queries with one socket-table dump per family and transport. */
  identify(clients: Client[]): (DnsQueryEvent['process'] | undefined)[] {
    if (clients.length === 0 || !this.take(clients.length)) return clients.map(() => undefined);
    try {
      this.diag ??= new SockDiag();
      this.procs.maybeRefresh(100);
      const now = Date.now();
      const table = (family: Family, proto: 6 | 17) => {
        const key = `${family}/${proto}`;
        let t = this.cache.get(key);
        if (!t || now - t.at > 20) {
          t = { at: now, socks: (this.diag as SockDiag).dump(family, proto) };
          this.cache.set(key, t);
        }
        return t.socks;
      };
      return clients.map((c) => {
        this.stats.lookups++;
        const a = parseAddr(c.address.startsWith('::ffff:') ? c.address.slice(7) : c.address);
        if (!a) return undefined;
        // An unconnected UDP socket is bound to the wildcard address, not to the source the query came from.
        const sock = table(a.family, c.transport === 'tcp' ? 6 : 17).find((s) => s.sport === c.port && (s.src === a.value || s.src === 0n));
        if (!sock) return undefined;
        for (const p of this.procs.candidates({ uid: sock.uid })) {
          if (!this.procs.socketInodes(p.pid).has(sock.inode)) continue;
          this.stats.found++;
          const out: NonNullable<DnsQueryEvent['process']> = { pid: p.pid, comm: p.comm, uid: p.uid };
          if (p.exe !== undefined) out.exe = p.exe;
          return out;
        }
        return undefined;
      });
    } catch {
      this.stats.errors++;
      return clients.map(() => undefined);
    }
  }

  close(): void {
    this.diag?.close();
    this.diag = undefined;
  }
}
