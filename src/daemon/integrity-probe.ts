import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { unsafeLocalUpstreams } from '../dns/guard-component.js';
import { SockDiag, TCP_LISTEN } from '../monitor/sock-diag.js';
import { formatAddr } from '../net/ip.js';
import { hostAddresses } from '../net/host-addresses.js';
import type { Policy } from '../policy/policy.js';
import { dnsUpstreamsFor, observedResolversFor } from '../system/compile-env.js';
import { dnsGuardListens } from '../policy/builtins.js';

/** What the integrity watch needs of a file: lstat's facts (a symlink is not followed). */
export interface FileFacts {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  dev: number;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
}

/** A socket bound to a port: every UDP socket, and TCP sockets in LISTEN. */
export interface BoundSocket {
  proto: 'udp' | 'tcp';
  /** The socket's own family (an AF_INET6 socket bound to `::` takes IPv4 too). */
  family: 4 | 6;
  addr: string;
  port: number;
  uid: number;
  inode: number;
}

/**
 * Everything the integrity watch reads, behind one interface, so tests give
 * it fake files, sysctls and sockets (no root, no real /proc changes).
 * Every method answers null (or an empty list) rather than throw when the
 * thing cannot be read.
 */
export interface IntegrityProbe {
  /** lstat of a path; null when it does not exist (or cannot be read). */
  lstat(path: string): FileFacts | null;
  /** The path with every symlink resolved; null when it does not resolve. */
  realpath(path: string): string | null;
  /** The names in a directory (at most `max`); null when it cannot be listed. */
  list(dir: string, max: number): string[] | null;
  /** net.ipv4.ip_unprivileged_port_start of this process's network namespace; null when unreadable. */
  portStart(): number | null;
  /** The DNS upstreams (enforce) or observed resolvers (audit) of the policy that are this host's own addresses. */
  localUpstreams(policy: Policy, portStart: number): string[];
  /** The sockets of this network namespace bound to `port` (UDP, and TCP listeners); null when they cannot be read. */
  sockets(port: number): BoundSocket[] | null;
  /** The inodes of this process's open sockets. */
  ownSocketInodes(): Set<number>;
  /** Which process holds a socket inode (`comm (pid N)`), or null; looked up only when a finding appears. */
  socketHolder(inode: number): string | null;
  /** The uid this process runs as (a file it owns is not someone else's). */
  uid(): number;
}

const kindOf = (st: Stats): FileFacts['kind'] => (st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other');

/** The largest sysctl value taken as real (ports are 16 bits). */
const MAX_PORT = 65_535;
/** Processes scanned at most to name a socket's holder. */
const MAX_PROCS = 20_000;

/**
 * Parses the content of /proc/sys/net/ipv4/ip_unprivileged_port_start:
 * digits only (a trailing newline allowed), within 0..65535; anything else
 * is null (hostile or garbled content is not a number).
 */
export function parsePortStart(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,5}$/.test(t)) return null;
  const v = Number(t);
  return v <= MAX_PORT ? v : null;
}

/** The kernel's `socket:[INODE]` link target, as an inode; null for anything else. */
export function socketInode(link: string): number | null {
  const m = /^socket:\[(\d{1,12})\]$/.exec(link);
  return m ? Number(m[1]) : null;
}

/** The real probe: lstat, /proc and sock_diag of this process's own network namespace. */
export class SystemProbe implements IntegrityProbe {
  private diag: SockDiag | undefined;

  lstat(path: string): FileFacts | null {
    try {
      const st = lstatSync(path);
      return { kind: kindOf(st), dev: st.dev, ino: st.ino, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeMs: st.mtimeMs };
    } catch {
      return null;
    }
  }

  realpath(path: string): string | null {
    try {
      return realpathSync(path);
    } catch {
      return null;
    }
  }

  list(dir: string, max: number): string[] | null {
    try {
      return readdirSync(dir).slice(0, max);
    } catch {
      return null;
    }
  }

  portStart(): number | null {
    try {
      // Read through /proc/self: the value of the network namespace this process is in.
      return parsePortStart(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').slice(0, 64));
    } catch {
      return null;
    }
  }

  localUpstreams(policy: Policy, portStart: number): string[] {
    // The guard's upstreams whenever it listens (for an audit policy's enforce scopes too), and the resolvers audit mode observes.
    const list = policy.mode === 'enforce' ? dnsUpstreamsFor(policy) : dnsGuardListens(policy) ? [...dnsUpstreamsFor(policy), ...observedResolversFor(policy)] : observedResolversFor(policy);
    return unsafeLocalUpstreams(list, portStart, hostAddresses()).map((u) => formatAddr(u.family, u.start));
  }

  sockets(port: number): BoundSocket[] | null {
    try {
      this.diag ??= new SockDiag();
      const out: BoundSocket[] = [];
      const seen = new Set<string>();
      for (const [proto, states] of [
        [17, 0xffffffff],
        [6, 1 << TCP_LISTEN],
      ] as const) {
        // dump(4) asks both socket families (keeping IPv4 traffic), dump(6) the IPv6 ones: together every
        // socket. The kernel keeps only those bound to the port: nothing else is copied or parsed.
        for (const f of [4, 6] as const) {
          for (const e of this.diag.dump(f, proto, states, port)) {
            if (e.sport !== port) continue;
            const key = `${proto}|${e.inode}|${e.family}|${e.src}`;
            if (seen.has(key)) continue;
            seen.add(key);
            out.push({ proto: proto === 17 ? 'udp' : 'tcp', family: e.sockFamily, addr: formatAddr(e.family, e.src), port: e.sport, uid: e.uid, inode: e.inode });
          }
        }
      }
      return out;
    } catch {
      this.diag?.close();
      this.diag = undefined;
      return null;
    }
  }

  ownSocketInodes(): Set<number> {
    const out = new Set<number>();
    let fds: string[];
    try {
      fds = readdirSync('/proc/self/fd');
    } catch {
      return out;
    }
    for (const fd of fds) {
      try {
        const ino = socketInode(readlinkSync(`/proc/self/fd/${fd}`));
        if (ino !== null) out.add(ino);
      } catch {
        // Closed since the listing.
      }
    }
    return out;
  }

  socketHolder(inode: number): string | null {
    const want = `socket:[${inode}]`;
    let pids: string[];
    try {
      pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).slice(0, MAX_PROCS);
    } catch {
      return null;
    }
    for (const pid of pids) {
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        if (link !== want) continue;
        let comm = '?';
        try {
          // A process names itself: printable characters only, at most the kernel's 16 bytes.
          comm = readFileSync(`/proc/${pid}/comm`, 'utf8').slice(0, 64).trim().replace(/[^\x20-\x7e]/g, '?').slice(0, 16);
        } catch {
          // Gone since.
        }
        return `${comm} (pid ${pid})`;
      }
    }
    return null;
  }

  uid(): number {
    return process.getuid?.() ?? 0;
  }

  close(): void {
    this.diag?.close();
    this.diag = undefined;
  }
}
