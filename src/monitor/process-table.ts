import { containerOf, type ContainerRef } from '../system/containers.js';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseCgroupFile, parseCmdline, parseNsLink, parseSocketLink, parseStat, parseStatus } from './proc-parse.js';

/** NFLOG delivers records within about 10 ms (the listener's flush timeout); a margin on top for a busy loop. */
const EXIT_MARGIN_MS = 50;
/** How long after first sight a process is re-read on every refresh. */
const YOUNG_MS = 2000;

/** One process as last seen in /proc. */
export interface ProcInfo {
  pid: number;
  startTicks: number;
  comm: string;
  uid: number;
  euid: number;
  fsuid: number;
  gid: number;
  /** cgroup v2 path, null on v1-only hosts or when unreadable. */
  cgroup: string | null;
  /** Network namespace inode; null when unreadable. */
  netns: number | null;
  exe?: string;
  cmdline?: string;
  /** When a refresh first found the process gone (ms); it stays a candidate for a grace period. */
  exitedAt?: number;
  /** When the table first saw it (ms): young processes are re-read, since fork, setuid and exec come in quick succession. */
  firstSeen: number;
}

/** The process fields events carry. */
export interface ProcessRef {
  pid: number;
  exe?: string;
  cmdline?: string;
  comm?: string;
  /**
   * The systemd unit the process belongs to by the service rules
   * (resolve-services.ts: cgroupService), set by whoever asked them; never
   * read off the cgroup path's spelling, which whoever controls a delegated
   * subtree chooses.
   */
  unit?: string;
  /** The cgroup v2 path, as the kernel reports it (names in it are not vouched for). */
  cgroup?: string;
  /** The container the cgroup belongs to, read off its path (containers.ts; `delegated` when a user named it). */
  container?: ContainerRef;
}

export interface ProcessTableStats {
  scans: number;
  /** /proc entries that could not be parsed (raced with an exit, or odd content). */
  unreadable: number;
  entries: number;
}

export interface ProcessTableOptions {
  procRoot?: string;
  /** How long an exited process stays a candidate (ms): records arrive after the packet. */
  graceMs?: number;
  /** Upper bound on entries; beyond it new processes are not tracked until some leave. */
  maxEntries?: number;
  /** Pids never to attribute to (the collector itself). */
  exclude?: number[];
}

/**
 * A table of the host's processes built from /proc and refreshed
 * incrementally: a refresh lists /proc and reads only pids it has not seen,
 * so it is cheap enough to run on each batch of records. Processes that
 * exited stay for a grace period, so a process that sent a packet and
 * exited before its record was read can still be named.
 */
export class ProcessTable {
  readonly stats: ProcessTableStats = { scans: 0, unreadable: 0, entries: 0 };
  private procs = new Map<number, ProcInfo>();
  private lastScan = 0;
  private readonly root: string;
  private readonly graceMs: number;
  private readonly maxEntries: number;
  private readonly exclude: Set<number>;
  /** This process's network namespace: only processes in it can send packets this table's ruleset sees. */
  readonly selfNetns: number | null;

  constructor(opts: ProcessTableOptions = {}) {
    this.root = opts.procRoot ?? '/proc';
    this.graceMs = opts.graceMs ?? 10_000;
    this.maxEntries = opts.maxEntries ?? 65_536;
    this.exclude = new Set(opts.exclude ?? []);
    this.selfNetns = this.readNetns('self');
  }

  private readNetns(pid: number | 'self'): number | null {
    try {
      return parseNsLink(readlinkSync(join(this.root, String(pid), 'ns/net')));
    } catch {
      return null;
    }
  }

  private read(pid: number, now = Date.now()): ProcInfo | null {
    const dir = join(this.root, String(pid));
    try {
      const stat = parseStat(readFileSync(join(dir, 'stat'), 'latin1'));
      const status = parseStatus(readFileSync(join(dir, 'status'), 'latin1'));
      if (!stat || !status) return null;
      let cgroup: string | null = null;
      try {
        cgroup = parseCgroupFile(readFileSync(join(dir, 'cgroup'), 'utf8'));
      } catch {
        cgroup = null;
      }
      const info: ProcInfo = { pid, startTicks: stat.startTicks, comm: stat.comm, ...status, cgroup, netns: this.readNetns(pid), firstSeen: now };
      try {
        info.exe = readlinkSync(join(dir, 'exe')).replace(/ \(deleted\)$/, '').slice(0, 4096);
      } catch {
        // Kernel threads have no executable; a process may also have just exited.
      }
      try {
        const cmd = parseCmdline(readFileSync(join(dir, 'cmdline')));
        if (cmd) info.cmdline = cmd;
      } catch {
        /* raced with exit */
      }
      return info;
    } catch {
      return null;
    }
  }

  /** Lists /proc: new processes are read, vanished ones marked exited, long-gone ones dropped. */
  refresh(now = Date.now()): void {
    this.stats.scans++;
    this.lastScan = now;
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return;
    }
    const present = new Set<number>();
    for (const name of names) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || pid <= 0) continue;
      present.add(pid);
      const known = this.procs.get(pid);
      // Known and settled: nothing to read. A young process may still setuid, exec or change cgroup.
      if (known && known.exitedAt === undefined && now - known.firstSeen > YOUNG_MS) continue;
      if (this.procs.size >= this.maxEntries && !known) continue;
      const info = this.read(pid, now);
      if (info && known && known.exitedAt === undefined && info.startTicks === known.startTicks) info.firstSeen = known.firstSeen;
      if (info) this.procs.set(pid, info);
      else if (!known) this.stats.unreadable++;
    }
    for (const [pid, p] of this.procs) {
      if (present.has(pid)) continue;
      if (p.exitedAt === undefined) p.exitedAt = now;
      else if (now - p.exitedAt > this.graceMs) this.procs.delete(pid);
    }
    this.stats.entries = this.procs.size;
  }

  /** Refreshes unless the last refresh is younger than `minIntervalMs`. */
  maybeRefresh(minIntervalMs: number, now = Date.now()): void {
    if (now - this.lastScan >= minIntervalMs) this.refresh(now);
  }

  /** Re-reads the ids of live processes (a process may have changed uid since it was first read). */
  rereadIds(): void {
    for (const p of this.procs.values()) {
      if (p.exitedAt !== undefined) continue;
      try {
        const s = parseStatus(readFileSync(join(this.root, String(p.pid), 'status'), 'latin1'));
        if (s) Object.assign(p, s);
      } catch {
        /* exited; the next refresh marks it */
      }
    }
  }

  /**
   * Re-reads the cgroup of these live processes, in place. A process moves
   * between cgroups whenever its manager moves it (a service manager placing a
   * forked child, `systemd-run --scope`, a container runtime), and the table
   * re-reads a process on its own only while it is young.
   */
  rereadCgroups(procs: ProcInfo[]): void {
    for (const p of procs) {
      if (p.exitedAt !== undefined) continue;
      try {
        p.cgroup = parseCgroupFile(readFileSync(join(this.root, String(p.pid), 'cgroup'), 'utf8'));
      } catch {
        /* exited; the next refresh marks it */
      }
    }
  }

  get(pid: number): ProcInfo | undefined {
    return this.procs.get(pid);
  }

  /** Re-reads a live process now (its executable, cgroup or uid may have changed since it was read). */
  current(pid: number): ProcInfo | undefined {
    const known = this.procs.get(pid);
    if (!known || known.exitedAt !== undefined) return known;
    const info = this.read(pid);
    if (!info || info.startTicks !== known.startTicks) return known;
    info.firstSeen = known.firstSeen;
    this.procs.set(pid, info);
    return info;
  }

  /**
   * Processes that could own a socket of this uid: in this network
   * namespace, with the uid as real, effective or filesystem uid, in the
   * cgroup when given, alive or exited within the grace period (and, when
   * the record's time is given, not found gone before it).
   */
  candidates(f: { uid: number; cgroup?: string; netns?: number | null; time?: number }): ProcInfo[] {
    const netns = f.netns === undefined ? this.selfNetns : f.netns;
    // A process already found gone before the record arrived (less a margin for the kernel's delivery delay) did not send it.
    const goneBefore = f.time === undefined ? undefined : f.time - EXIT_MARGIN_MS;
    const out: ProcInfo[] = [];
    for (const p of this.procs.values()) {
      if (this.exclude.has(p.pid)) continue;
      if (p.exitedAt !== undefined && goneBefore !== undefined && p.exitedAt < goneBefore) continue;
      if (p.fsuid !== f.uid && p.euid !== f.uid && p.uid !== f.uid) continue;
      if (netns !== null && p.netns !== null && p.netns !== netns) continue;
      if (f.cgroup !== undefined && p.cgroup !== f.cgroup) continue;
      if (!p.exe && !p.cmdline) continue; // kernel threads send no packets of their own sockets
      out.push(p);
    }
    return out;
  }

  /** Socket inodes a process holds (reads /proc/PID/fd now). Empty when it exited. */
  socketInodes(pid: number, limit = 65_536): Set<number> {
    const out = new Set<number>();
    const dir = join(this.root, String(pid), 'fd');
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch {
      return out;
    }
    for (const fd of fds.slice(0, limit)) {
      try {
        const inode = parseSocketLink(readlinkSync(join(dir, fd)));
        if (inode !== null) out.add(inode);
      } catch {
        /* closed meanwhile */
      }
    }
    return out;
  }

  /** The fields an event carries for a process (all but the unit, which the service rules decide). */
  static ref(p: ProcInfo): ProcessRef {
    const r: ProcessRef = { pid: p.pid, comm: p.comm };
    if (p.exe) r.exe = p.exe;
    if (p.cmdline) r.cmdline = p.cmdline;
    if (p.cgroup) {
      r.cgroup = p.cgroup;
      const c = containerOf(p.cgroup);
      if (c) r.container = c;
    }
    return r;
  }

  /** Every live process (for connections/top: inode -> process). */
  live(): ProcInfo[] {
    return [...this.procs.values()].filter((p) => p.exitedAt === undefined && !this.exclude.has(p.pid));
  }
}
