import type { AttributionMethod, RecordedEvent } from '../events/event-store.js';
import { hostnameFor } from '../events/hostnames.js';
import { formatAddr, type Family } from '../net/ip.js';
import type { FlowTuple } from '../net/packet.js';
import { NetlinkError } from '../errors.js';
import { NetlinkSocket } from '../netfilter/netlink-socket.js';
import { NETLINK_SOCK_DIAG } from '../netfilter/nl-constants.js';
import type { CgroupIndex } from './cgroup-index.js';
import { containerOf } from '../system/containers.js';
import type { ServiceNames } from './service-names.js';
import { ProcessTable, type ProcInfo, type ProcessRef } from './process-table.js';
import { senderProcess, type FlowKey, type KernelSender, type ProbeReader } from './kernel-attribution.js';
import { encodeExactRequest, findSocket, parseSockDiagMessage, SockDiag, type SockEntry } from './sock-diag.js';

/** What the collector knows about a logged packet before attribution. */
export interface FlowFacts extends FlowTuple {
  time: number;
  verdict: RecordedEvent['verdict'];
  rule: string;
  /** The scope whose mode decided the record, when not the policy's (from the log prefix). */
  scope?: string;
  icmpType?: number;
  /** An ICMP echo request's identifier (a ping socket's port, for the probes). */
  echoId?: number;
  uid?: number;
  outIfindex?: number;
  /** Blocked packets in enforce mode: the low 32 bits of the sender's cgroup id, from the packet mark. */
  cgroupLow32?: number;
}

export interface AttributionStats {
  /** Named by the attribution probes: the sender as the kernel saw it at the connect or send. */
  kernel: number;
  socket: number;
  cgroup: number;
  user: number;
  /** Several processes could have sent it and nothing told them apart. */
  ambiguous: number;
  /** No process of that user (or no uid in the record: a packet without a local socket). */
  none: number;
  socketLookups: number;
  socketHits: number;
}

/** Where the attributor gets its facts; the defaults read the live system. Tests substitute them. */
export interface AttributorDeps {
  procs: ProcessTable;
  cgroups?: CgroupIndex;
  /** The unit of each cgroup by the service rules; without it, events name no unit. */
  services?: ServiceNames;
  userName?: (uid: number) => string | undefined;
  ifName?: (index: number) => string | undefined;
  /** Whether a socket can still exist for this record (false: a TCP connect already refused with a reset). */
  socketMayExist?: (f: FlowFacts) => boolean;
  /** The attribution probes' maps and the network namespace the records come from; without them, the socket table. */
  kernel?: { reader: ProbeReader; netns: bigint };
}

const INODE_CACHE_MAX = 50_000;
/** How long a record waits for a rebuild of the cgroup index (bounded: 50,000 directories) before it goes without. */
const INDEX_WAIT_MS = 5_000;

/** What attribution may need that is worked out off the event loop. */
type Need = { q: 'low32'; low32: number } | { q: 'cgroup'; id: bigint } | { q: 'unit'; path: string } | { q: 'settle' };
type AttributionSteps = Generator<Need, RecordedEvent, unknown>;

/** An answer still being worked out. */
class Later {
  constructor(readonly promise: Promise<unknown>) {}
}

/** What a need is when it is not known now: no cgroup path, no unit. */
function notKnown(q: Need): unknown {
  return q.q === 'unit' ? null : undefined;
}

/** How long a fresh UDP record waits once for the probe's record of its send (written as the send returns). */
const SETTLE_MS = 20;

/** Resolves when `p` settles or after `ms`, whichever comes first; never rejects. */
function withDeadline(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    p.then(done, done);
  });
}

/**
 * Finds the process behind a logged packet. In order:
 *  1. socket: the sending socket still exists (UDP, allowed and audited TCP,
 *     TCP refused by drop): sock_diag gives its inode and cgroup; the process
 *     holding that inode among the user's processes is the sender. Exact.
 *  2. cgroup: the socket is known but no fd was found (passed or closed):
 *     the only process of that user in the socket's cgroup.
 *  3. user: the only process of that uid in this network namespace (alive,
 *     or exited within a grace period). Exact when a service runs as its own
 *     user, which is the common server set-up; otherwise ambiguous, and then
 *     nothing is guessed.
 * A TCP connect refused with a reset has no socket left to look up by the
 * time the record is read (the reset closes it at once), so it relies on 3.
 */
/** What an event says from the packet alone: no names, no process. */
export function baseEvent(f: FlowFacts): RecordedEvent {
  const e: RecordedEvent = {
    time: f.time,
    verdict: f.verdict,
    rule: f.rule,
    family: f.family,
    proto: f.proto,
    src: formatAddr(f.family, f.src),
    dst: formatAddr(f.family, f.dst),
  };
  if (f.scope !== undefined) e.scope = f.scope;
  if (f.sport !== undefined) e.sport = f.sport;
  if (f.dport !== undefined) e.dport = f.dport;
  if (f.icmpType !== undefined) e.icmpType = f.icmpType;
  return e;
}

/** The probes' key for a record's flow: TCP by the whole flow, UDP by the socket's port. */
function flowKey(netns: bigint, f: FlowFacts): FlowKey {
  return { netns, family: f.family, proto: f.proto, sport: f.sport ?? f.echoId ?? 0, dport: f.dport, dst: f.dst };
}

/**
 * Flows the probes record a sender for: TCP and UDP by their source port,
 * ICMP echo requests sent from a ping socket by their identifier (which is
 * that socket's port). Echo requests from raw sockets carry an identifier
 * the program chose: no key matches them, and they fall to the other methods.
 */
function probeKeyed(f: FlowFacts): boolean {
  return ((f.proto === 6 || f.proto === 17) && f.sport !== undefined) || ((f.proto === 1 || f.proto === 58) && f.echoId !== undefined);
}

/** Records one socket sent share one probe record: UDP and ping sockets by family, protocol and port. */
function socketKey(f: FlowFacts): number | undefined {
  if (f.proto === 17) return f.family * 65_536 + (f.sport ?? 0);
  if (f.proto === 1 || f.proto === 58) return 1_000_000 + f.proto * 65_536 + (f.echoId ?? 0);
  return undefined;
}

export class Attributor {
  readonly stats: AttributionStats = { kernel: 0, socket: 0, cgroup: 0, user: 0, ambiguous: 0, none: 0, socketLookups: 0, socketHits: 0 };
  /** This batch's UDP sockets, by family and local port (a record's socket has its source port). */
  private udpDump = new Map<Family, Map<number, SockEntry[]>>();
  private candidatesMemo = new Map<string, ProcInfo[]>();
  private inodeOwner = new Map<number, number>();
  private refMemo = new Map<number, ProcessRef>();
  /** This batch's processes with their unit (keyed by the batch's ref of each). */
  private namedMemo = new Map<ProcessRef, ProcessRef>();
  /** This batch's processes named by the probes, by tgid, start time and cgroup. */
  private kernelMemo = new Map<string, ProcessRef>();
  /** This batch's probe records, looked up together (prefetch): null where the probes had none. */
  private prefetched = new Map<FlowFacts, KernelSender | null>();
  private lastIdReread = 0;
  private lastCgroupReread = 0;
  private diag: SockDiag | null | undefined;
  private exact: NetlinkSocket | null | undefined;
  /** The wait shared by every record that missed the cgroup index during one rebuild. */
  private indexWait: { rebuild: Promise<void>; done: Promise<void> } | undefined;

  constructor(private readonly deps: AttributorDeps) {}

  /** Call once per batch of records: refreshes the process table (throttled) and forgets per-batch memos. */
  beginBatch(now = Date.now()): void {
    this.deps.procs.maybeRefresh(20, now);
    this.deps.services?.beginBatch();
    this.udpDump.clear();
    this.candidatesMemo.clear();
    this.refMemo.clear();
    this.namedMemo.clear();
    this.kernelMemo.clear();
    this.prefetched.clear();
  }

  /**
   * Looks up the probes' records of a batch's flows in one call (one system
   * call each, no crossing into C per record); attribution then reads them
   * from here. UDP records of one socket share one lookup.
   */
  prefetch(queue: readonly FlowFacts[], from = 0, to = queue.length): void {
    const k = this.deps.kernel;
    if (!k) return;
    const keys: FlowKey[] = [];
    const owners: FlowFacts[][] = [];
    const udp = new Map<number, number>();
    for (let i = from; i < to; i++) {
      const f = queue[i] as FlowFacts;
      if (!probeKeyed(f)) continue;
      const u = socketKey(f);
      if (u !== undefined) {
        const at = udp.get(u);
        if (at !== undefined) {
          (owners[at] as FlowFacts[]).push(f);
          continue;
        }
        udp.set(u, keys.length);
      }
      keys.push(flowKey(k.netns, f));
      owners.push([f]);
    }
    const found = k.reader.senders(keys);
    found.forEach((s, i) => {
      for (const f of owners[i] as FlowFacts[]) this.prefetched.set(f, s ?? null);
    });
  }

  private candidates(uid: number, time: number): ProcInfo[] {
    // Records of one batch share their receive time, so the memo per uid holds within a batch.
    const key = `${uid}:${time}`;
    let c = this.candidatesMemo.get(key);
    if (c) return c;
    c = this.deps.procs.candidates({ uid, time });
    if (c.length === 0) {
      // A process newer than the last refresh, or one that changed its uid since it was read.
      this.deps.procs.refresh();
      c = this.deps.procs.candidates({ uid, time });
      const now = Date.now();
      if (c.length === 0 && now - this.lastIdReread > 100) {
        this.lastIdReread = now;
        this.deps.procs.rereadIds();
        c = this.deps.procs.candidates({ uid, time });
      }
    }
    this.candidatesMemo.set(key, c);
    return c;
  }

  /** Re-reading the candidates' cgroups costs a read per process: at most every 100 ms. */
  private mayRereadCgroups(now = Date.now()): boolean {
    if (now - this.lastCgroupReread < 100) return false;
    this.lastCgroupReread = now;
    return true;
  }

  private sockDiag(): SockDiag | null {
    if (this.diag === undefined) {
      try {
        this.diag = new SockDiag();
      } catch {
        this.diag = null;
      }
    }
    return this.diag;
  }

  /** One exact TCP lookup by 4-tuple: the kernel's hash lookup, O(1) whatever the number of sockets. */
  private lookupTcp(f: FlowFacts): SockEntry | undefined {
    if (this.exact === undefined) {
      try {
        this.exact = NetlinkSocket.open(NETLINK_SOCK_DIAG, { bufBytes: 1 << 20 });
      } catch {
        this.exact = null;
      }
    }
    if (!this.exact || f.sport === undefined || f.dport === undefined) return undefined;
    try {
      for (const m of this.exact.request(encodeExactRequest({ family: f.family, src: f.src, sport: f.sport, dst: f.dst, dport: f.dport }))) {
        try {
          return parseSockDiagMessage(m, 6);
        } catch {
          return undefined;
        }
      }
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
    }
    return undefined;
  }

  private findSock(f: FlowFacts): SockEntry | undefined {
    if (f.sport === undefined || f.dport === undefined) return undefined;
    this.stats.socketLookups++;
    let s: SockEntry | undefined;
    if (f.proto === 6) s = this.lookupTcp(f);
    else if (f.proto === 17) {
      let byPort = this.udpDump.get(f.family);
      if (!byPort) {
        byPort = new Map();
        let socks: SockEntry[];
        try {
          socks = this.sockDiag()?.dump(f.family, 17) ?? [];
        } catch {
          socks = [];
        }
        for (const x of socks) {
          const list = byPort.get(x.sport);
          if (list) list.push(x);
          else byPort.set(x.sport, [x]);
        }
        this.udpDump.set(f.family, byPort);
      }
      const socks = byPort.get(f.sport);
      if (socks) s = findSocket(socks, { family: f.family, src: f.src, sport: f.sport, dst: f.dst, dport: f.dport });
    }
    if (s) this.stats.socketHits++;
    return s;
  }

  /** The pid holding a socket inode, among the candidates; scanned fds go into a bounded cache. */
  private ownerOf(inode: number, cands: ProcInfo[]): ProcInfo | undefined {
    const cached = this.inodeOwner.get(inode);
    if (cached !== undefined) {
      const p = cands.find((c) => c.pid === cached);
      if (p) return p;
    }
    for (const c of cands) {
      if (c.exitedAt !== undefined) continue;
      const inodes = this.deps.procs.socketInodes(c.pid);
      if (this.inodeOwner.size + inodes.size > INODE_CACHE_MAX) this.inodeOwner.clear();
      for (const i of inodes) this.inodeOwner.set(i, c.pid);
      if (inodes.has(inode)) return c;
    }
    return undefined;
  }

  /** The event fields of a process, re-read once per batch (its executable or cgroup may have changed since it was listed). */
  private ref(p: ProcInfo): ProcessRef {
    let r = this.refMemo.get(p.pid);
    if (!r) {
      r = ProcessTable.ref(this.deps.procs.current(p.pid) ?? p);
      this.refMemo.set(p.pid, r);
    }
    return r;
  }

  /**
   * Turns packet facts into an event (names, process, unit, hostname and how
   * the process was found) from what is known now, never waiting: a cgroup
   * the index does not know yet, or a unit not yet judged, is left out, and
   * the work to know it next time starts off the event loop.
   */
  attribute(f: FlowFacts): RecordedEvent {
    const steps = this.steps(f);
    let r = steps.next();
    while (!r.done) {
      const a = this.answer(r.value);
      r = steps.next(a instanceof Later ? notKnown(r.value) : a);
    }
    return r.value;
  }

  /**
   * The same, but when something has to be worked out first (a rebuild of
   * the cgroup index, the service rules for a cgroup not seen before), a
   * promise of the event once it is: the answer a blocking lookup would have
   * given, without blocking. Waits are bounded (then: what is known).
   */
  attributeOrWait(f: FlowFacts): RecordedEvent | Promise<RecordedEvent> {
    const steps = this.steps(f);
    let r = steps.next();
    while (!r.done) {
      const a = this.answer(r.value);
      if (a instanceof Later) return this.resume(steps, a);
      r = steps.next(a);
    }
    return r.value;
  }

  private async resume(steps: AttributionSteps, first: Later): Promise<RecordedEvent> {
    let r = steps.next(await first.promise);
    while (!r.done) {
      const a = this.answer(r.value);
      r = steps.next(a instanceof Later ? await a.promise : a);
    }
    return r.value;
  }

  /** An answer now, or Later when it is being worked out. */
  private answer(q: Need): unknown {
    if (q.q === 'settle') return new Later(new Promise((r) => setTimeout(r, SETTLE_MS)));
    if (q.q === 'unit') {
      const unit = this.deps.services?.lookup(q.path) ?? null;
      return unit instanceof Promise ? new Later(unit) : unit;
    }
    const idx = this.deps.cgroups;
    if (!idx) return undefined;
    const ask = () => (q.q === 'low32' ? idx.pathByLow32(q.low32) : idx.path(q.id));
    const p = ask();
    if (p !== undefined) return p;
    const rebuild = idx.rebuilding();
    if (!rebuild) return undefined;
    if (this.indexWait?.rebuild !== rebuild) this.indexWait = { rebuild, done: withDeadline(rebuild, INDEX_WAIT_MS) };
    return new Later(this.indexWait.done.then(ask));
  }

  /** The attribution itself, as a sequence that asks for what may not be known yet (see attribute/attributeOrWait). */
  private *steps(f: FlowFacts): AttributionSteps {
    const e = baseEvent(f);
    if (f.outIfindex !== undefined) {
      const name = this.deps.ifName?.(f.outIfindex);
      if (name) e.iface = name;
    }
    const host = hostnameFor(f.family, f.dst);
    if (host) e.hostname = host;
    let found = this.kernelSender(f);
    // The UDP probe writes as the send returns, after the packet's record was queued: a record read
    // at once can come first. Not found (not: found for another socket), it waits once
    // (attributeOrWait only), then asks again.
    if (found === 'miss' && f.proto !== 6 && Date.now() - f.time < 200) {
      yield { q: 'settle' };
      found = this.kernelSender(f, true);
    }
    const sent = typeof found === 'object' ? found : undefined;
    const reader = this.deps.kernel?.reader;
    if (sent && reader) {
      e.uid = sent.uid;
      const user = this.deps.userName?.(sent.uid);
      if (user) e.user = user;
      // One process sending many times in a batch is named once (its exec record, cgroup and unit).
      const key = `${sent.s.tgid}/${sent.s.start}/${sent.s.cgroupId}`;
      let named = this.kernelMemo.get(key);
      if (!named) {
        const proc = senderProcess(sent.s, reader, this.deps.procs);
        const cgroup = (yield { q: 'cgroup', id: sent.s.cgroupId }) as string | undefined;
        if (cgroup !== undefined) {
          proc.cgroup = cgroup;
          const c = containerOf(cgroup);
          if (c) proc.container = c;
        }
        const unit = cgroup !== undefined ? ((yield { q: 'unit', path: cgroup }) as string | null) : null;
        named = unit ? { ...proc, unit } : proc;
        if (cgroup !== undefined) this.kernelMemo.set(key, named);
      }
      e.process = named;
      e.attribution = 'kernel';
      this.stats.kernel++;
      return e;
    }
    if (f.uid === undefined) {
      this.stats.none++;
      return e;
    }
    e.uid = f.uid;
    const user = this.deps.userName?.(f.uid);
    if (user) e.user = user;

    let proc: ProcessRef | undefined;
    let method: AttributionMethod | undefined;
    let cands = this.candidates(f.uid, f.time);
    // The sender's cgroup, stamped in the mark by the block chain, narrows the
    // candidates even when its socket is long gone (a TCP connect refused with a reset).
    if (cands.length > 1 && f.cgroupLow32 !== undefined && this.deps.cgroups) {
      const path = (yield { q: 'low32', low32: f.cgroupLow32 }) as string | undefined;
      if (path !== undefined) {
        const prefix = `${path === '/' ? '' : path}/`;
        const within = (cgroup: string | null | undefined) => cgroup === path || (cgroup?.startsWith(prefix) ?? false);
        let inside = cands.filter((c) => within(c.cgroup));
        // The mark is the sender's cgroup when it sent; the table's may be older (a process that moved
        // since it was last read). Unless exactly one candidate is inside and still is, read them again.
        if ((inside.length !== 1 || !within(this.ref(inside[0] as ProcInfo).cgroup)) && this.mayRereadCgroups()) {
          this.refMemo.clear();
          this.deps.procs.rereadCgroups(cands);
          inside = cands.filter((c) => within(c.cgroup));
        }
        if (inside.length === 1) {
          proc = this.ref(inside[0] as ProcInfo);
          method = 'cgroup';
        } else if (inside.length > 0) cands = inside;
      }
    }
    if (!proc) {
      const sock = (this.deps.socketMayExist?.(f) ?? true) && cands.length !== 1 ? this.findSock(f) : undefined;
      if (sock) {
        const owner = this.ownerOf(sock.inode, cands);
        if (owner) {
          proc = this.ref(owner);
          method = 'socket';
        } else if (sock.cgroupId !== undefined && this.deps.cgroups) {
          const sockCgroup = (yield { q: 'cgroup', id: sock.cgroupId }) as string | undefined;
          if (sockCgroup !== undefined) cands = cands.filter((c) => c.cgroup === sockCgroup);
          if (cands.length === 1) method = 'cgroup';
        }
      } else if (cands.length === 1) method = 'user';
      if (!proc && method && cands[0]) proc = this.ref(cands[0]);
    }
    if (proc && method) {
      // The process goes into the event with the unit the service rules give its cgroup, never one
      // read off the path's spelling: a user who controls a delegated subtree can make
      // `.../user@UID.service/app.slice/nginx.service` and send from it, and that is not nginx.
      let named = this.namedMemo.get(proc);
      if (named === undefined) {
        const unit = proc.cgroup !== undefined ? ((yield { q: 'unit', path: proc.cgroup }) as string | null) : null;
        named = unit ? { ...proc, unit } : proc;
        this.namedMemo.set(proc, named);
      }
      e.process = named;
      e.attribution = method;
      this.stats[method]++;
      return e;
    }
    if (cands.length > 1) this.stats.ambiguous++;
    else this.stats.none++;
    return e;
  }

  /**
   * The sender the probes recorded for this flow: TCP by the full flow, UDP by
   * the socket's port. A record whose socket owner differs from the recorded
   * one's is another socket on a shared port (SO_REUSEADDR): not joined.
   */
  private kernelSender(f: FlowFacts, fresh = false): { s: KernelSender; uid: number } | 'miss' | undefined {
    const k = this.deps.kernel;
    if (!k || !probeKeyed(f)) return undefined;
    const pre = fresh ? undefined : this.prefetched.get(f);
    const s = pre !== undefined ? (pre ?? undefined) : k.reader.sender(flowKey(k.netns, f));
    if (!s) return 'miss';
    if (f.uid !== undefined && s.skUid !== f.uid) {
      k.reader.stats.mismatched++;
      return undefined;
    }
    return { s, uid: s.uid };
  }

  close(): void {
    this.diag?.close();
    this.exact?.close();
    this.diag = null;
    this.exact = null;
  }
}
