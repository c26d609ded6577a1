import { DEFAULT_RULE, ENCRYPTED_DNS_RULE } from '../compile/kernel-names.js';
import type { HostFacts } from '../policy/builtins.js';
import { hostAddresses } from '../net/host-addresses.js';
import { formatAddr, isLoopback, type Family } from '../net/ip.js';
import { hostnameFor } from '../events/hostnames.js';
import { explain } from '../policy/explain.js';
import type { Policy } from '../policy/policy.js';
import { cgroupServices } from '../system/resolve-services.js';
import { userName } from '../system/users.js';
import { readConntrack, type CtEntry } from '../netfilter/conntrack.js';
import type { OpenedLookup } from './opened.js';
import { ProcessTable, type ProcessRef } from './process-table.js';
import { SockDiag, TCP_LISTEN, TCP_STATES, type SockEntry } from './sock-diag.js';

/** One live outbound connection, as `sluice connections` and `top` show it. */
export interface Connection {
  proto: 'tcp' | 'udp';
  state: string;
  family: Family;
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  uid: number;
  user?: string;
  process?: ProcessRef;
  hostname?: string;
  /** The policy rule that allows (or would block) this destination, from `explain` on the applied policy. */
  rule?: string;
  /** Seconds since conntrack saw the flow start (needs net.netfilter.nf_conntrack_timestamp=1). */
  ageSeconds?: number;
  /** TCP: bytes the peer acknowledged and bytes received, from tcp_info. */
  bytesOut?: number;
  bytesIn?: number;
  inode: number;
}

export interface ConnectionsSnapshot {
  connections: Connection[];
  conntrack: { entries: number; unavailable?: string; timestamps: boolean };
  malformed: number;
}

const TCP_TIME_WAIT = 6;
const TCP_CLOSE = 7;

/** Sockets that are outbound connections: connected, not to loopback, not accepted on a local listening port. */
export function outboundSockets(socks: SockEntry[]): SockEntry[] {
  const listening = new Set<string>();
  for (const s of socks) if (s.proto === 6 && s.state === TCP_LISTEN) listening.add(`${s.family}:${s.sport}`);
  return socks.filter((s) => {
    if (s.dport === 0 || s.dst === 0n || isLoopback(s.family, s.dst)) return false;
    if (s.proto === 6) {
      if (s.state === TCP_LISTEN || s.state === TCP_TIME_WAIT || s.state === TCP_CLOSE) return false;
      if (listening.has(`${s.family}:${s.sport}`)) return false;
    }
    return true;
  });
}

function ctKey(family: Family, proto: number, src: bigint, sport: number | undefined, dst: bigint, dport: number | undefined): string {
  return `${family}|${proto}|${src}|${sport}|${dst}|${dport}`;
}

/**
 * Reads the live outbound connections of this network namespace from the
 * kernel: sock_diag for sockets (with owner uid and inode), /proc for the
 * process holding each inode and its cgroup (named after a unit only when the
 * service rules say the cgroup is that unit's), conntrack for the age, and the
 * applied policy for the rule. No daemon and no event store needed.
 */
/** `facts`: the host facts the policy's built-ins depend on (hostFactsFor), read once by the caller. */
/** `opened`: what the DNS guard opened (openedFromKernel): a destination it opened is named by its rule and name, not by its address alone. */
export function listConnections(opts: { policy?: Policy | null; facts?: HostFacts; procs?: ProcessTable; now?: number; opened?: OpenedLookup } = {}): ConnectionsSnapshot {
  const now = opts.now ?? Date.now();
  const diag = new SockDiag();
  let socks: SockEntry[];
  try {
    socks = outboundSockets(diag.dumpAll());
  } finally {
    diag.close();
  }
  const procs = opts.procs ?? new ProcessTable({ exclude: [process.pid] });
  procs.refresh(now);
  const owner = new Map<number, ProcessRef>();
  const wanted = new Set(socks.map((s) => s.inode));
  for (const p of procs.live()) {
    if (owner.size === wanted.size) break;
    let ref: ProcessRef | undefined;
    for (const inode of procs.socketInodes(p.pid)) {
      if (!wanted.has(inode) || owner.has(inode)) continue;
      // Read again: a long-lived table (`top`) holds where the process was, and it may have moved cgroup since.
      ref ??= ProcessTable.ref(procs.current(p.pid) ?? p);
      owner.set(inode, ref);
    }
  }
  // The unit of each process's cgroup, by the service rules (all paths at once), never by its spelling.
  const refs = new Set(owner.values());
  const units = cgroupServices([...new Set([...refs].flatMap((r) => (r.cgroup !== undefined ? [r.cgroup] : [])))]);
  for (const r of refs) {
    const unit = r.cgroup !== undefined ? units.get(r.cgroup)?.unit : null;
    if (unit) r.unit = unit;
  }
  const ct = readConntrack();
  const flows = new Map<string, CtEntry>();
  for (const e of ct.entries) flows.set(ctKey(e.family, e.proto, e.src, e.sport, e.dst, e.dport), e);
  const timestamps = ct.entries.some((e) => e.startMs !== undefined);
  const own = new Set(hostAddresses().map((a) => `${a.family}/${a.value}`));

  const connections = socks.map((s) => {
    const c: Connection = {
      proto: s.proto === 6 ? 'tcp' : 'udp',
      state: s.proto === 6 ? (TCP_STATES[s.state] ?? String(s.state)) : 'CONNECTED',
      family: s.family,
      local: formatAddr(s.family, s.src),
      localPort: s.sport,
      remote: formatAddr(s.family, s.dst),
      remotePort: s.dport,
      uid: s.uid,
      inode: s.inode,
    };
    const user = userName(s.uid);
    if (user) c.user = user;
    const p = owner.get(s.inode);
    if (p) c.process = p;
    const opened = opts.opened?.(s.family, s.dst);
    const host = opened?.names[0] ?? hostnameFor(s.family, s.dst);
    if (host) c.hostname = host;
    const flow = flows.get(ctKey(s.family, s.proto, s.src, s.sport, s.dst, s.dport));
    if (flow?.startMs !== undefined) c.ageSeconds = Math.max(0, Math.round((now - flow.startMs) / 1000));
    if (s.bytesAcked !== undefined) c.bytesOut = Number(s.bytesAcked);
    if (s.bytesReceived !== undefined) c.bytesIn = Number(s.bytesReceived);
    if (opts.policy) {
      try {
        const q = {
          proto: c.proto,
          port: s.dport,
          sport: s.sport,
          uid: s.uid,
          ...(p?.unit ? { service: p.unit } : {}),
          ...(own.has(`${s.family}/${s.dst}`) ? { local: true } : {}),
        } as const;
        const d = explain(opts.policy, { ...q, dest: { kind: 'range', range: { family: s.family, start: s.dst, end: s.dst } } }, opts.facts).decidedBy;
        c.rule = d.kind === 'rule' ? d.rule : d.kind === 'default' ? DEFAULT_RULE : d.kind === 'encrypted-dns' ? ENCRYPTED_DNS_RULE : d.kind;
        // An address the guard opened: the rule is the one whose set holds it and which allows this
        // port for one of the names that filled it (the address alone matches no domain rule).
        if (opened && (d.kind !== 'rule' || !opened.rules.includes(d.rule))) {
          const byName = opened.names
            .map((name) => explain(opts.policy as Policy, { ...q, dest: { kind: 'name', name } }, opts.facts).decidedBy)
            .find((x) => x.kind === 'rule' && opened.rules.includes(x.rule));
          if (byName?.kind === 'rule') c.rule = byName.rule;
          else if (opened.names.length === 0 && opened.rules.length === 1) c.rule = opened.rules[0];
        }
      } catch {
        /* no rule shown */
      }
    }
    return c;
  });
  connections.sort((a, b) => (a.process?.pid ?? 1e9) - (b.process?.pid ?? 1e9) || a.remote.localeCompare(b.remote) || a.remotePort - b.remotePort);
  const conntrack: ConnectionsSnapshot['conntrack'] = { entries: ct.entries.length, timestamps };
  if (ct.unavailable) conntrack.unavailable = ct.unavailable;
  return { connections, conntrack, malformed: diag.stats.malformed + ct.malformed };
}
