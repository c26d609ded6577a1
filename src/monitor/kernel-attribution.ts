import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { addrBytes, type Family } from '../net/ip.js';
import { bpfLoader, native, type BpfLoaded } from '../native/native.js';
import { cleanText, parseCmdline } from './proc-parse.js';
import { findCgroup2Root } from '../system/cgroups.js';
import type { ProcessRef, ProcessTable } from './process-table.js';

/*
 * The user-space half of the attribution probes (native/bpf/attribution.bpf.c):
 * the map layouts, their decoding, and lookups. The probes record who sent
 * each TCP connect and UDP send, in the sender's own context, and what each
 * program was started as; the collector and the DNS guard join a record to
 * it by the flow. Nothing here decides a verdict.
 */

/** struct flow_key: netns cookie u64 | family u8 | proto u8 | sport u16 | dport u16 | pad u16 | daddr[16]. */
export const FLOW_KEY_BYTES = 32;
/** struct sender. */
export const SENDER_BYTES = 80;
/** struct exec_info. */
export const EXEC_BYTES = 800;
/** The per-CPU counters, in the order of the program's STAT_* enum. */
export const PROBE_STATS = ['captured', 'unchanged', 'execs', 'argsUnread', 'connectUnknown'] as const;
export type ProbeStat = (typeof PROBE_STATS)[number];

/** Linux's USER_HZ: /proc/PID/stat's start time is in these ticks since boot. */
const USER_HZ = 100n;
const NS_PER_TICK = 1_000_000_000n / USER_HZ;

export interface FlowKey {
  /** The socket's network namespace cookie (SO_NETNS_COOKIE of a socket there). */
  netns: bigint;
  family: Family;
  proto: number;
  sport: number;
  /** TCP keys name the destination; UDP keys do not (one entry per socket). */
  dport?: number;
  dst?: bigint;
}

export function encodeFlowKey(k: FlowKey): Buffer {
  const b = Buffer.alloc(FLOW_KEY_BYTES);
  encodeFlowKeyInto(k, b, 0);
  return b;
}

/** Writes the key at `off` in `b` (whose FLOW_KEY_BYTES there must be zero). */
export function encodeFlowKeyInto(k: FlowKey, b: Buffer, off: number): void {
  b.writeBigUInt64LE(BigInt.asUintN(64, k.netns), off);
  b.writeUInt8(k.family, off + 8);
  b.writeUInt8(k.proto & 0xff, off + 9);
  b.writeUInt16LE(k.sport & 0xffff, off + 10);
  if (k.proto === 6) {
    b.writeUInt16LE((k.dport ?? 0) & 0xffff, off + 12);
    if (k.dst !== undefined) addrBytes(k.family, k.dst).copy(b, off + 16);
  }
}

/** Who sent: captured by the probe at the connect or send. */
export interface KernelSender {
  /** CLOCK_BOOTTIME of the send (ns). */
  time: bigint;
  /** The process's start (CLOCK_BOOTTIME ns): with tgid, names one process even after its pid is reused. */
  start: bigint;
  cgroupId: bigint;
  tgid: number;
  pid: number;
  uid: number;
  gid: number;
  /** The socket's owner, which is what the kernel's log record reports. */
  skUid: number;
  family: Family | 0;
  proto: number;
  /** The destination of that send (UDP: the last one from the socket). */
  dport: number;
  dst: bigint;
  comm: string;
}

function bytesToBigint(b: Buffer): bigint {
  if (b.length === 4) return BigInt(b.readUInt32BE(0));
  if (b.length === 16) return (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8);
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
}

export function decodeSender(b: Buffer): KernelSender {
  if (b.length < SENDER_BYTES) throw new RangeError(`sender record of ${b.length} bytes, expected ${SENDER_BYTES}`);
  const family = b.readUInt8(46);
  const fam: Family | 0 = family === 4 || family === 6 ? family : 0;
  const addr = b.subarray(48, 64);
  return {
    time: b.readBigUInt64LE(0),
    start: b.readBigUInt64LE(8),
    cgroupId: b.readBigUInt64LE(16),
    tgid: b.readUInt32LE(24),
    pid: b.readUInt32LE(28),
    uid: b.readUInt32LE(32),
    gid: b.readUInt32LE(36),
    skUid: b.readUInt32LE(40),
    dport: b.readUInt16LE(44),
    family: fam,
    proto: b.readUInt8(47),
    dst: bytesToBigint(fam === 4 ? addr.subarray(0, 4) : addr),
    comm: cleanText(cString(b.subarray(64, 80)), 16),
  };
}

/** What a program was started as, recorded at its exec. */
export interface KernelExec {
  start: bigint;
  time: bigint;
  ppid: number;
  uid: number;
  /** The path given to execve (as the caller spelled it). */
  path: string;
  /** The command line as /proc/PID/cmdline would give it, from the first 511 bytes. */
  cmdline: string;
}

export function decodeExec(b: Buffer): KernelExec {
  if (b.length < EXEC_BYTES) throw new RangeError(`exec record of ${b.length} bytes, expected ${EXEC_BYTES}`);
  const pathLen = Math.min(b.readUInt16LE(24), 255);
  const argsLen = Math.min(b.readUInt16LE(26), 512);
  return {
    start: b.readBigUInt64LE(0),
    time: b.readBigUInt64LE(8),
    ppid: b.readUInt32LE(16),
    uid: b.readUInt32LE(20),
    path: cleanText(cString(b.subarray(32, 32 + pathLen)), 4096),
    cmdline: parseCmdline(b.subarray(288, 288 + argsLen)),
  };
}

/** /proc/PID/stat's start time of a process the probe saw (to tell it from a later one with the same pid). */
export function startTicks(startNs: bigint): number {
  return Number(startNs / NS_PER_TICK);
}

/**
 * The process a probe record names: its executable and command line from its
 * last exec as the probe recorded it (a /proc table entry read before that
 * exec would name the program it replaced), else from /proc while the same
 * process (same start time) lives. Shared by events and DNS queries.
 */
export function senderProcess(s: KernelSender, reader: Pick<ProbeReader, 'exec'>, procs: Pick<ProcessTable, 'current'>): ProcessRef {
  const ref: ProcessRef = { pid: s.tgid, comm: s.comm };
  const ex = reader.exec(s.tgid, s.start);
  if (ex?.path) ref.exe = ex.path;
  if (ex?.cmdline) ref.cmdline = ex.cmdline;
  if (ref.exe && ref.cmdline) return ref;
  const live = procs.current(s.tgid);
  if (live && live.exitedAt === undefined && live.startTicks === startTicks(s.start)) {
    if (!ref.exe && live.exe) ref.exe = live.exe;
    if (!ref.cmdline && live.cmdline) ref.cmdline = live.cmdline;
  }
  return ref;
}

/** The map descriptors a lookup needs: plain numbers, so a worker thread can use them too. */
export interface ProbeMaps {
  flows: number;
  execs: number;
  stats: number;
  cpus: number;
}

export interface LookupStats {
  lookups: number;
  hits: number;
  misses: number;
  /** Found, but the socket's owner disagreed with the record's (another socket on a shared port). */
  mismatched: number;
  execHits: number;
  execMisses: number;
  errors: number;
}

/** A map lookup: the value, or null when the key is absent (native bpfLookup; tests give a Map). */
export type MapLookup = (fd: number, key: Buffer, valueSize: number) => Buffer | null;
/** Many lookups at once: N status bytes (1 found, 0 absent, 2 error), then N values (native bpfLookupMany). */
export type MapLookupMany = (fd: number, keys: Buffer, keySize: number, valueSize: number) => Buffer;

/** bpfLookupMany's contract, by single lookups (for a lookup given without its batch form). */
export function lookupManyBy(lookup: MapLookup): MapLookupMany {
  return (fd, keys, keySize, valueSize) => {
    const n = keys.length / keySize;
    const out = Buffer.alloc(n + n * valueSize);
    for (let i = 0; i < n; i++) {
      try {
        const v = lookup(fd, keys.subarray(i * keySize, (i + 1) * keySize), valueSize);
        if (v) {
          out[i] = 1;
          v.copy(out, n + i * valueSize, 0, valueSize);
        }
      } catch {
        out[i] = 2;
      }
    }
    return out;
  };
}

/** Lookups in the probes' maps: one bpf() syscall each, safe on any thread that has the fds. */
export class ProbeReader {
  readonly stats: LookupStats = { lookups: 0, hits: 0, misses: 0, mismatched: 0, execHits: 0, execMisses: 0, errors: 0 };
  private readonly lookup: MapLookup;
  private readonly lookupMany: MapLookupMany;
  private readonly tgidKey = Buffer.alloc(4);

  constructor(
    readonly maps: ProbeMaps,
    lookup?: MapLookup,
    lookupMany?: MapLookupMany,
  ) {
    this.lookup = lookup ?? native().bpfLookup;
    this.lookupMany = lookupMany ?? (lookup ? lookupManyBy(lookup) : native().bpfLookupMany);
  }

  /**
   * The senders of many flows in one call (one system call each, one
   * crossing into C for all): what a batch of records needs. Counted as
   * lookups like sender(); undefined where absent or unreadable.
   */
  senders(keys: FlowKey[]): (KernelSender | undefined)[] {
    if (keys.length === 0) return [];
    const packed = Buffer.alloc(keys.length * FLOW_KEY_BYTES);
    keys.forEach((k, i) => encodeFlowKeyInto(k, packed, i * FLOW_KEY_BYTES));
    this.stats.lookups += keys.length;
    let out: Buffer;
    try {
      out = this.lookupMany(this.maps.flows, packed, FLOW_KEY_BYTES, SENDER_BYTES);
    } catch {
      this.stats.errors += keys.length;
      return keys.map(() => undefined);
    }
    const n = keys.length;
    return keys.map((_, i) => {
      const st = out[i];
      if (st === 1) {
        this.stats.hits++;
        return decodeSender(out.subarray(n + i * SENDER_BYTES, n + (i + 1) * SENDER_BYTES));
      }
      if (st === 0) this.stats.misses++;
      else this.stats.errors++;
      return undefined;
    });
  }

  /** The sender recorded for a flow, or undefined. */
  sender(k: FlowKey): KernelSender | undefined {
    this.stats.lookups++;
    let b: Buffer | null;
    try {
      b = this.lookup(this.maps.flows, encodeFlowKey(k), SENDER_BYTES);
    } catch {
      this.stats.errors++;
      return undefined;
    }
    if (!b) {
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    return decodeSender(b);
  }

  /** What process tgid was started as, if the probe saw that process (same start time) exec. */
  exec(tgid: number, start: bigint): KernelExec | undefined {
    this.tgidKey.writeUInt32LE(tgid >>> 0, 0);
    let b: Buffer | null;
    try {
      b = this.lookup(this.maps.execs, this.tgidKey, EXEC_BYTES);
    } catch {
      this.stats.errors++;
      return undefined;
    }
    const e = b ? decodeExec(b) : undefined;
    if (!e || e.start !== start) {
      this.stats.execMisses++;
      return undefined;
    }
    this.stats.execHits++;
    return e;
  }

  /** The probes' own counters, summed over CPUs. */
  probeStats(): Record<ProbeStat, number> {
    const out = Object.fromEntries(PROBE_STATS.map((s) => [s, 0])) as Record<ProbeStat, number>;
    const key = Buffer.alloc(4);
    PROBE_STATS.forEach((name, i) => {
      key.writeUInt32LE(i, 0);
      try {
        const b = this.lookup(this.maps.stats, key, 8 * this.maps.cpus);
        if (b) for (let c = 0; c < this.maps.cpus; c++) out[name] += Number(b.readBigUInt64LE(c * 8));
      } catch {
        this.stats.errors++;
      }
    });
    return out;
  }
}

/**
 * How fast the probes write new sender records, and so how long a record
 * lasts in the LRU flow map before newer ones push it out: capacity divided
 * by the capture rate over the last minute. The collector reads a record
 * within milliseconds of its packet; an eviction costs a record its sender
 * only when this falls towards the collector's lag (sluice_event_queue_length).
 * Updates of an existing entry count as captures too, so this errs short.
 */
export class CaptureRate {
  private samples: { t: number; n: number }[] = [];

  constructor(private readonly windowMs = 60_000) {}

  /** The probes' `captured` counter read at time t (ms). */
  add(t: number, n: number): void {
    const last = this.samples.at(-1);
    if (last && t <= last.t) return;
    this.samples.push({ t, n });
    // Keep the newest sample at or before the window's start, so a rate always spans the window once it can.
    while (this.samples.length > 2 && (this.samples[1] as { t: number }).t <= t - this.windowMs) this.samples.shift();
  }

  /** Captures per second over the window; undefined until two readings. */
  perSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.t === first.t) return undefined;
    return Math.max(0, last.n - first.n) / ((last.t - first.t) / 1000);
  }

  /** Seconds the map of `capacity` entries takes to turn over at that rate; null when nothing is captured (no pressure) or not known yet. */
  turnoverSeconds(capacity: number): number | null {
    const r = this.perSecond();
    return r === undefined || r === 0 ? null : capacity / r;
  }
}

/** The cookie of the network namespace this process is in (the key's netns for its sockets). */
export function ownNetns(): bigint {
  return native().netnsCookie();
}

export interface ProbeOptions {
  /** The compiled object (default: build/bpf/attribution.bpf.o in the checkout or package). */
  object?: string;
  flowsMax?: number;
  execsMax?: number;
  /** Where the sock_ops program is attached: the cgroup2 root, so it sees every process; '' leaves it for attachProbesToCgroup. */
  cgroupRoot?: string;
}

export const FLOWS_MAX_DEFAULT = 65_536;
export const EXECS_MAX_DEFAULT = 16_384;

/** The probes, loaded and attached, and why not when they are not. */
export type ProbeState = { loaded: true; maps: ProbeMaps; programs: string[]; flowsMax: number; execsMax: number; handle: BpfLoaded } | { loaded: false; reason: string };

export function defaultObjectPath(): string {
  // dist/src/monitor/kernel-attribution.js -> repository root is three levels up.
  return fileURLToPath(new URL('../../../build/bpf/attribution.bpf.o', import.meta.url));
}

/** Where the probes cannot run here, in words a user can act on (checked before trying to load). */
export function probePrerequisites(object: string): string | undefined {
  if (process.env.SLUICE_EBPF === 'off') return 'turned off (SLUICE_EBPF=off)';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF): fentry probes need it';
  if (!existsSync(object)) return `the probe object ${object} is missing (built by make setup with clang, bpftool and libbpf-dev)`;
  return undefined;
}

let shared: ProbeState | undefined;

/**
 * Loads the probes once per process (the daemon's collector and its DNS guard
 * share them); later calls return the same state. They stay attached while
 * this process lives and detach when it exits: a daemon that dies leaves no
 * program behind, and the ruleset in the kernel is unaffected either way.
 */
export function loadProbes(opts: ProbeOptions = {}): ProbeState {
  if (shared) return shared;
  const p = probeParams(opts);
  if (p.missing) return (shared = { loaded: false, reason: p.missing });
  try {
    shared = loadedState(bpfLoader().load(p.object, p.flowsMax, p.execsMax, p.cgroupRoot), p);
  } catch (err) {
    shared = failedState(err);
  }
  return shared;
}

/**
 * loadProbes without blocking this thread (the load runs on libuv's thread
 * pool): for `sluice run`, which makes its network and guard meanwhile.
 */
export async function loadProbesAsync(opts: ProbeOptions = {}): Promise<ProbeState> {
  if (shared) return shared;
  const p = probeParams(opts);
  if (p.missing) return (shared = { loaded: false, reason: p.missing });
  let state: ProbeState;
  try {
    state = loadedState(await bpfLoader().loadAsync(p.object, p.flowsMax, p.execsMax, p.cgroupRoot), p);
  } catch (err) {
    state = failedState(err);
  }
  // A synchronous load that finished first keeps its probes; these go.
  if (shared) {
    if (state.loaded) bpfLoader().close(state.handle.handle);
    return shared;
  }
  return (shared = state);
}

/** What a load of the probes takes from the options and the environment, and what is missing for it (null: nothing). */
function probeParams(opts: ProbeOptions) {
  const object = opts.object ?? process.env.SLUICE_BPF_OBJECT ?? defaultObjectPath();
  return {
    object,
    flowsMax: opts.flowsMax ?? FLOWS_MAX_DEFAULT,
    execsMax: opts.execsMax ?? EXECS_MAX_DEFAULT,
    cgroupRoot: opts.cgroupRoot ?? findCgroup2Root() ?? '/sys/fs/cgroup',
    missing: probePrerequisites(object),
  };
}

function loadedState(l: ReturnType<ReturnType<typeof bpfLoader>['load']>, p: { flowsMax: number; execsMax: number }): ProbeState {
  return { loaded: true, maps: { flows: l.flows, execs: l.execs, stats: l.stats, cpus: l.cpus }, programs: l.programs, flowsMax: p.flowsMax, execsMax: p.execsMax, handle: l };
}

function failedState(err: unknown): ProbeState {
  const msg = (err as Error).message.trim();
  const hint = /EPERM|Operation not permitted/.test(msg) ? ' (loading tracing programs needs CAP_BPF and CAP_PERFMON, or root)' : '';
  return { loaded: false, reason: `${msg.split('\n')[0]}${hint}` };
}

/**
 * Attaches the connect hook of probes loaded with `cgroupRoot: ''` (loaded
 * before the cgroup was made) to the cgroup at `path`. Throws what failed.
 */
export function attachProbesToCgroup(path: string): void {
  if (!shared?.loaded) throw new Error('the probes are not loaded');
  bpfLoader().attachCgroup(shared.handle.handle, path);
}

/** Detaches the probes (tests; the daemon lets its exit do it). */
export function unloadProbes(): void {
  if (shared?.loaded) bpfLoader().close(shared.handle.handle);
  shared = undefined;
}
