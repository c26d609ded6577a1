import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SystemError } from '../errors.js';

/** The syscall bridge in native/sluice_native.c. */
export interface NativeBinding {
  nlOpen(protocol: number): number;
  nlPortId(fd: number): number;
  setIntOpt(fd: number, level: number, name: number, value: number): void;
  nlSend(fd: number, buf: Buffer): number;
  nlRecv(fd: number, size: number, block: boolean): Buffer | null;
  closeFd(fd: number): void;
  watch(fd: number, cb: (err: (Error & { code?: string }) | null, data: Buffer | null) => void): unknown;
  unwatch(handle: unknown): void;
  markedSocket(family: number, type: number, mark: number): number;
  /** A bound, non-blocking UDP socket (addr: 4 or 16 bytes; port 0: any; mark 0: none; flags 1: SO_RCVMARK). */
  udpOpen(family: number, addr: Buffer, port: number, mark: number, rcvbufBytes: number, flags?: number): number;
  udpLocalPort(fd: number): number;
  /** Batches of datagrams, framed (see src/net/udp-batch.ts). */
  udpWatch(fd: number, cb: (err: (Error & { code?: string }) | null, data: Buffer | null) => void): unknown;
  /** Sends framed datagrams; returns how many the kernel took. */
  udpSend(fd: number, frames: Buffer): number;
  /** Nice value of the calling thread alone. */
  setThreadNice(nice: number): void;
  /** A bound, listening TCP socket with SO_MARK (mark 0: none), for Node's server.listen({ fd }). */
  tcpListen(family: number, addr: Buffer, port: number, mark: number, backlog: number): number;
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false when another process holds it. */
  flockTry(fd: number): boolean;
  /** One datagram to systemd's notification socket (a path, or `@abstract`). */
  sdNotify(path: string, text: string): void;
  /** One datagram (text under 4 KiB) to a unix datagram socket; never blocks (EAGAIN when its queue is full). */
  unixDgramSend(path: string, text: string): void;
  /** UDP sockets watched together through one epoll instance: callback(err, fd, frames) per batch. */
  udpGroupOpen(cb: (err: (Error & { code?: string }) | null, fd: number, data: Buffer | null) => void): unknown;
  /** Adds a socket to a group (closing the fd takes it out). */
  udpGroupAdd(group: unknown, fd: number): void;
  udpGroupClose(group: unknown): void;
  /** One BPF_MAP_LOOKUP_ELEM on a map fd: the value (valueSize bytes), or null when the key is absent. */
  bpfLookup(fd: number, key: Buffer, valueSize: number): Buffer | null;
  /** keys.length / keySize lookups in one call: N status bytes (1 found, 0 absent, 2 error), then N values. */
  bpfLookupMany(fd: number, keys: Buffer, keySize: number, valueSize: number): Buffer;
  /** This thread's network namespace cookie (SO_NETNS_COOKIE, Linux 5.14). */
  /** SO_NETNS_COOKIE of this namespace, or of the one at `path` (a /run/netns file). */
  netnsCookie(path?: string): bigint;
  /** The DNS guard's fast path (native/dns_fast.c): a table of wire-form answers, shared by its threads. */
  dnsTableOpen(maxEntries: number): unknown;
  /** false: the table is full, or the template is malformed. */
  dnsTablePut(table: unknown, key: Buffer, template: Buffer): boolean;
  dnsTableDelete(table: unknown, key: Buffer): boolean;
  dnsTableClear(table: unknown): number;
  dnsTableSize(table: unknown): number;
  /** The answer the fast path's thread would send for `query` at `nowMs`, or null (it would hand the query to JS). */
  dnsFastAnswer(table: unknown, query: Buffer, nowMs: number): Buffer | null;
  /** A thread reading the UDP socket `fd`: hits answered there, batches (UDP framing; header byte 6 = 1 for a hit) to `cb`. */
  dnsFastStart(fd: number, table: unknown, cb: (frames: Buffer) => void): unknown;
  /** Joins the thread (the fd stays open) and returns its counters. */
  dnsFastStop(handle: unknown): DnsFastStats;
  dnsFastStats(handle: unknown): DnsFastStats;
}

/** Counters of one fast-path thread. */
export interface DnsFastStats {
  received: number;
  /** Answered by the thread from the table. */
  answered: number;
  /** Handed to JavaScript (not in the table, past its deadline, or not a query the thread answers). */
  forwarded: number;
  /** Dropped because JavaScript was too far behind (the client asks again). */
  dropped: number;
  sendFailed: number;
  /** recvmmsg calls that returned datagrams (received / batches: datagrams per system call). */
  batches: number;
  /** Receive errors the thread could not go on from (it ended: running false). */
  errors: number;
  running: boolean;
}

/** The attribution probes, loaded and attached (see native/sluice_bpf.c). */
export interface BpfLoaded {
  /** Keeps the programs attached while referenced; close() detaches at once. */
  handle: unknown;
  flows: number;
  execs: number;
  stats: number;
  /** Possible CPUs: the width of per-CPU values. */
  cpus: number;
  programs: string[];
}

/** The eBPF loader (libbpf), a separate addon so that a host without libbpf loses only kernel attribution. */
export interface BpfLoader {
  /** Throws an Error whose message says which stage failed and libbpf's reason. */
  /** cgroupRoot "": the sock_ops programs are left for attachCgroup (the tracepoints are attached). */
  load(objectPath: string, flowsMax: number, execsMax: number, cgroupRoot: string): BpfLoaded;
  /** load() on libuv's thread pool: this thread goes on meanwhile. */
  loadAsync(objectPath: string, flowsMax: number, execsMax: number, cgroupRoot: string): Promise<BpfLoaded>;
  /** Attaches the sock_ops programs a load(..., "") left to the cgroup at `path`. */
  attachCgroup(handle: unknown, path: string): void;
  close(handle: unknown): void;
}

let cached: NativeBinding | undefined;
let cachedBpf: BpfLoader | undefined;

function addonPath(name: string): string {
  // dist/src/native/native.js -> repository root is three levels up.
  return fileURLToPath(new URL(`../../../build/Release/${name}.node`, import.meta.url));
}

/** Loads the addon built by `npm install` (node-gyp) into build/Release. */
export function native(): NativeBinding {
  if (cached) return cached;
  const path = addonPath('sluice_native');
  if (!existsSync(path)) {
    throw new SystemError('ENATIVE', `Native addon missing: ${path}: run make (or npm install) in the Sluice checkout`);
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeBinding;
  return cached;
}

/** Loads the eBPF loader addon; throws (SystemError ENATIVE) when it was not built. */
export function bpfLoader(): BpfLoader {
  if (cachedBpf) return cachedBpf;
  const path = addonPath('sluice_bpf');
  if (!existsSync(path)) throw new SystemError('ENATIVE', `eBPF loader missing: ${path}: run make setup`);
  const require = createRequire(import.meta.url);
  cachedBpf = require(path) as BpfLoader;
  return cachedBpf;
}
