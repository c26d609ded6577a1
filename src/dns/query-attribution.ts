import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DnsQueryEvent } from '../events/channels.js';
import { parseAddr, type Family } from '../net/ip.js';
import { PerSecondBudget } from './budget.js';
import { parseCgroupFile, parseSocketLink, parseStat } from '../monitor/proc-parse.js';
import { ProcessTable, type ProcInfo } from '../monitor/process-table.js';
import { ProbeReader, senderProcess, startTicks, type ProbeMaps } from '../monitor/kernel-attribution.js';
import { SockDiag, type SockEntry } from '../monitor/sock-diag.js';
import { CgroupIndex } from '../monitor/cgroup-index.js';
import { containerOf } from '../system/containers.js';

export interface QueryAttributionStats {
  lookups: number;
  found: number;
  /** Of those found, by the attribution probes (the sender as the kernel saw it at the send). */
  kernel: number;
  /** Lookups skipped because the per-second budget was spent (a flood of queries). */
  overBudget: number;
  /** Lookups given up because one batch had read its share of /proc/PID/fd entries. */
  overWork: number;
  errors: number;
}

/** What identify() needs of a query: where its answer goes. */
export interface QueryClient {
  address: string;
  port: number;
  transport: 'udp' | 'tcp';
  /** The sender's uid, when known (UDP: from the query's mark): only a socket of that user can have sent it. */
  uid?: number;
}

export type QueryProcess = NonNullable<DnsQueryEvent['process']>;

/** How long a process whose descriptors cannot be read is left out. */
const UNREADABLE_MS = 60_000;
/** Descriptor links one batch may read: bounds the cost of a miss however many processes there are. */
const LINKS_PER_BATCH = 4096;

/**
 * Finds the process that sent a DNS query: the kernel's socket table
 * (sock_diag) gives the socket bound to the client's address and port, and
 * its inode leads to the process holding it. The socket must still exist, so
 * blocked queries are identified before their answer goes out, allowed ones
 * right after.
 *
 * Cost is bounded three ways: a budget of lookups per second (beyond it
 * events carry no process, counted), a cap on descriptor links read per
 * batch, and memory of each process's socket inodes, so a lookup first
 * checks what is known and reads /proc/PID/fd again only on a miss, most
 * likely owners first (processes that asked before, then the youngest).
 * Processes whose descriptors cannot be read are skipped for a minute.
 */
export class QueryAttribution {
  readonly stats: QueryAttributionStats = { lookups: 0, found: 0, kernel: 0, overBudget: 0, overWork: 0, errors: 0 };
  private diag: SockDiag | undefined;
  private procs: ProcessTable;
  private budget: PerSecondBudget;
  /** Socket tables by family/transport, indexed by local port, reused for 20 ms: at most 50 dumps a second each. */
  private cache = new Map<string, { at: number; byPort: Map<number, SockEntry[]> }>();
  /** Socket inodes per process (keyed by pid and start time), as last read. */
  private inodes = new Map<string, Set<number>>();
  /** Pids (with start time) whose descriptors could not be read, until when. */
  private unreadable = new Map<string, number>();
  /** Processes that asked recently, most recent last. */
  private askers: string[] = [];

  constructor(
    perSecond = 500,
    opts: { procRoot?: string; exclude?: number[]; probes?: { maps: ProbeMaps; netns: bigint } } = {},
  ) {
    if (opts.probes) this.probes = { reader: new ProbeReader(opts.probes.maps), netns: opts.probes.netns };
    this.budget = new PerSecondBudget(perSecond);
    this.procs = new ProcessTable({ procRoot: opts.procRoot, exclude: opts.exclude ?? [process.pid] });
    this.procRoot = opts.procRoot ?? '/proc';
  }

  private readonly procRoot: string;
  private probes: { reader: ProbeReader; netns: bigint } | undefined;
  /** cgroup ids (what the probes capture) to paths: a one-shot asker's cgroup is known after it exited. */
  private cgroups: CgroupIndex | undefined;

  /** The cgroup of a process that is still the one the probe saw (same start time), read from /proc: a cgroup too new for the index. */
  private liveCgroup(pid: number, start: bigint): string | undefined {
    try {
      const dir = join(this.procRoot, String(pid));
      const st = parseStat(readFileSync(join(dir, 'stat'), 'utf8'));
      if (!st || st.startTicks !== startTicks(start)) return undefined;
      return parseCgroupFile(readFileSync(join(dir, 'cgroup'), 'utf8')) ?? undefined;
    } catch {
      return undefined; // gone
    }
  }

  /** Sets the asker's cgroup and the container read off it, when known. */
  private withCgroup(q: QueryProcess, cgroup: string | null | undefined): QueryProcess {
    if (!cgroup) return q;
    q.cgroup = cgroup;
    const c = containerOf(cgroup);
    if (c) q.container = c;
    return q;
  }

  /**
   * The senders of UDP queries as the probes recorded them at their send
   * (the socket's port in this namespace; the socket's owner must be the
   * query's uid when that is known): found even when the asker has already
   * exited. One call for the batch (a system call per query, no /proc).
   */
  private fromKernel(clients: { c: QueryClient; family: Family }[]): (QueryProcess | undefined)[] {
    const probes = this.probes;
    if (!probes) return clients.map(() => undefined);
    const udp = clients.map((x, i) => (x.c.transport === 'udp' ? i : -1)).filter((i) => i >= 0);
    const found = probes.reader.senders(udp.map((i) => ({ netns: probes.netns, family: (clients[i] as { family: Family }).family, proto: 17, sport: (clients[i] as { c: QueryClient }).c.port })));
    const out: (QueryProcess | undefined)[] = clients.map(() => undefined);
    const named = new Map<string, ReturnType<typeof senderProcess>>();
    udp.forEach((i, j) => {
      const s = found[j];
      const c = (clients[i] as { c: QueryClient }).c;
      if (!s || (c.uid !== undefined && s.skUid !== c.uid)) return;
      const key = `${s.tgid}/${s.start}`;
      let p = named.get(key);
      if (!p) named.set(key, (p = senderProcess(s, probes.reader, this.procs)));
      const q: QueryProcess = { pid: p.pid, uid: s.uid };
      if (p.comm !== undefined) q.comm = p.comm;
      if (p.exe !== undefined) q.exe = p.exe;
      // By the id the probe captured at the send (a miss starts a rebuild of the index: the next
      // asker from a new cgroup is named), else the live process's own.
      this.cgroups ??= new CgroupIndex();
      out[i] = this.withCgroup(q, this.cgroups.path(s.cgroupId) ?? this.liveCgroup(p.pid, s.start));
    });
    return out;
  }

  private take(n: number): boolean {
    if (this.budget.take(n)) return true;
    this.stats.overBudget += n;
    return false;
  }

  /**
   * Identifies the senders of several queries: first by the probes' records
   * (cheap, not counted against the budget), then, for the rest, with one
   * socket-table dump per family and transport and the /proc reads the
   * budget allows.
   */
  identify(clients: QueryClient[]): (QueryProcess | undefined)[] {
    if (clients.length === 0) return [];
    try {
      const parsed = clients.map((c) => ({ c, a: parseAddr(c.address.startsWith('::ffff:') ? c.address.slice(7) : c.address) }));
      const known = parsed.filter((x): x is { c: QueryClient; a: NonNullable<typeof x.a> } => x.a !== undefined);
      const kernel = this.fromKernel(known.map((x) => ({ c: x.c, family: x.a.family })));
      const byClient = new Map<QueryClient, QueryProcess | undefined>();
      known.forEach((x, i) => {
        const k = kernel[i];
        if (k) byClient.set(x.c, k);
      });
      this.stats.lookups += clients.length;
      this.stats.found += byClient.size;
      this.stats.kernel += byClient.size;
      const rest = known.filter((x) => !byClient.has(x.c));
      if (rest.length > 0 && this.take(rest.length)) {
        this.diag ??= new SockDiag();
        this.procs.maybeRefresh(100);
        const now = Date.now();
        const work = { links: LINKS_PER_BATCH };
        for (const { c, a } of rest) {
          const socks = this.table(a.family, c.transport === 'tcp' ? 6 : 17, now).get(c.port) ?? [];
          const sock = senderSocket(socks, a.value, c.uid);
          if (!sock) continue;
          const owner = this.owner(sock, now, work);
          if (!owner) continue;
          this.stats.found++;
          const out: QueryProcess = { pid: owner.pid, comm: owner.comm, uid: owner.uid };
          if (owner.exe !== undefined) out.exe = owner.exe;
          byClient.set(c, this.withCgroup(out, owner.cgroup));
        }
      }
      return clients.map((c) => byClient.get(c));
    } catch {
      this.stats.errors++;
      return clients.map(() => undefined);
    }
  }

  private table(family: Family, proto: 6 | 17, now: number): Map<number, SockEntry[]> {
    const key = `${family}/${proto}`;
    let t = this.cache.get(key);
    if (!t || now - t.at > 20) {
      const byPort = new Map<number, SockEntry[]>();
      for (const s of (this.diag as SockDiag).dump(family, proto)) {
        const list = byPort.get(s.sport);
        if (list) list.push(s);
        else byPort.set(s.sport, [s]);
      }
      t = { at: now, byPort };
      this.cache.set(key, t);
    }
    return t.byPort;
  }

  private owner(sock: SockEntry, now: number, work: { links: number }): ProcInfo | undefined {
    const key = (p: ProcInfo) => `${p.pid}/${p.startTicks}`;
    const candidates = this.procs.candidates({ uid: sock.uid }).filter((p) => {
      // Unreadable namespace: not a process this daemon can see into (another user namespace).
      if (this.procs.selfNetns !== null && p.netns === null) return false;
      const until = this.unreadable.get(key(p));
      return until === undefined || until < now;
    });
    // What is already known costs nothing: a socket still open in a process that held it.
    for (const p of candidates) {
      if (this.inodes.get(key(p))?.has(sock.inode)) return this.remember(p, key(p));
    }
    // A miss: read descriptors again, likeliest owners first (recent askers, then the youngest).
    const rank = new Map(this.askers.map((k, i) => [k, i + 1]));
    candidates.sort((x, y) => (rank.get(key(y)) ?? 0) - (rank.get(key(x)) ?? 0) || y.firstSeen - x.firstSeen || y.pid - x.pid);
    for (const p of candidates) {
      if (work.links <= 0) {
        this.stats.overWork++;
        return undefined;
      }
      const set = this.readInodes(p, now, work);
      if (set?.has(sock.inode)) return this.remember(p, key(p));
    }
    return undefined;
  }

  private remember(p: ProcInfo, k: string): ProcInfo {
    const i = this.askers.indexOf(k);
    if (i >= 0) this.askers.splice(i, 1);
    this.askers.push(k);
    if (this.askers.length > 64) this.askers.shift();
    return p;
  }

  /** Reads a process's socket inodes (within the batch's allowance); null when its descriptors cannot be read. */
  private readInodes(p: ProcInfo, now: number, work: { links: number }): Set<number> | null {
    const k = `${p.pid}/${p.startTicks}`;
    const dir = join(this.procRoot, String(p.pid), 'fd');
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.unreadable.set(k, now + UNREADABLE_MS);
      this.inodes.delete(k);
      return null;
    }
    const out = new Set<number>();
    for (const fd of fds) {
      if (work.links-- <= 0) break;
      try {
        const inode = parseSocketLink(readlinkSync(join(dir, fd)));
        if (inode !== null) out.add(inode);
      } catch {
        /* closed meanwhile */
      }
    }
    this.inodes.set(k, out);
    if (this.inodes.size > 4096) this.forgetGone();
    return out;
  }

  /** Drops remembered inodes of processes that are gone. */
  private forgetGone(): void {
    const live = new Set(this.procs.live().map((p) => `${p.pid}/${p.startTicks}`));
    for (const k of this.inodes.keys()) if (!live.has(k)) this.inodes.delete(k);
    for (const k of this.unreadable.keys()) if (!live.has(k)) this.unreadable.delete(k);
  }

  close(): void {
    this.diag?.close();
    this.diag = undefined;
  }
}

/**
 * The socket a query came from, among those on its source port, or
 * undefined when that cannot be told. Several sockets can share a UDP port
 * (SO_REUSEADDR needs no privilege): a user's socket beside a system
 * daemon's must never get its queries blamed on the daemon. So: only
 * sockets bound to the query's source or to the wildcard (an unconnected
 * UDP socket is bound to the wildcard, not to the address it sent from),
 * only the sender's own when its uid is known, the exactly bound ones
 * before wildcard ones, and no answer at all when two remain.
 */
export function senderSocket(socks: SockEntry[], src: bigint, uid: number | undefined): SockEntry | undefined {
  const mine = socks.filter((s) => (s.src === src || s.src === 0n) && (uid === undefined || s.uid === uid));
  const exact = mine.filter((s) => s.src === src);
  const pick = exact.length > 0 ? exact : mine;
  return pick.length === 1 ? pick[0] : undefined;
}
