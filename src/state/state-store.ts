import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, lstatSync, mkdirSync, openSync, promises as fsp, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Ruleset } from '../compile/ruleset.js';
import { SluiceError } from '../errors.js';
import { native } from '../native/native.js';

/** Where Sluice keeps state. `SLUICE_STATE_DIR` overrides, so tests and several instances never share it. */
export function stateDir(): string {
  return process.env.SLUICE_STATE_DIR || '/var/lib/sluice';
}

/** The policy used when none is given. `SLUICE_POLICY` overrides. */
export function defaultPolicyPath(): string {
  return process.env.SLUICE_POLICY || '/etc/sluice/policy.yaml';
}

/** What `apply` last wrote to the kernel. */
export interface AppliedState {
  appliedAt: string;
  policyFile: string;
  sha256: string;
  mode: 'audit' | 'enforce';
  ruleset: Ruleset;
  warnings: string[];
  /** The flow epoch of `ruleset` (src/compile/flow-mark.ts); absent in state written before epochs. */
  epoch?: number;
}

/** An apply waiting for `sluice confirm`; the rollback target is `previous` (null: no table before). */
export interface PendingConfirm {
  token: string;
  deadline: string;
  previous: Ruleset | null;
  previousState: AppliedState | null;
  /** Informational: the timer process (it watches this file and exits when its token is gone; nobody signals it). */
  timerPid?: number;
  /**
   * An apply of a candidate file (the dashboard's): on confirmation its text
   * is written over `policyFile`, unless that file no longer holds the text
   * whose hash is `unlessChangedFrom` (someone edited it meanwhile).
   */
  writeBack?: { candidate: string; policyFile: string; unlessChangedFrom: string | null };
}

const BIG = '__bigint';

const ADDR = '__addr';
const ADDRS4 = '__addrs4';
const ADDRS6 = '__addrs6';
/** A list of single hosts (a hash set's elements, start === end): the start alone, half the bytes. */
const HOSTS4 = '__hosts4';
const HOSTS6 = '__hosts6';

type PlainAddr = { t: 'addr'; family: number; start: bigint; end: bigint; timeoutMs?: number; expiresMs?: number };

const MAX32 = 0xffffffffn;
const MAX128 = (1n << 128n) - 1n;

/**
 * An address element the compact forms hold exactly: no timeout, family 4
 * or 6, start and end within the family's range. Anything else is written
 * as it is (bigints as such), so it reads back as it was.
 */
const isPlainAddr = (v: unknown): v is PlainAddr => {
  const e = v as PlainAddr | null;
  if (!e || typeof e !== 'object' || e.t !== 'addr' || e.timeoutMs !== undefined || e.expiresMs !== undefined) return false;
  if (typeof e.start !== 'bigint' || typeof e.end !== 'bigint' || e.start < 0n || e.end < 0n) return false;
  const max = e.family === 4 ? MAX32 : e.family === 6 ? MAX128 : -1n;
  return e.start <= max && e.end <= max;
};

/** A DataView of a Buffer's bytes: 64-bit bigint reads and writes through it are several times faster than Buffer's. */
function viewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.length);
}

/**
 * A list of plain address elements of one family (a set's elements) as
 * base64 of their start and end, big-endian (4 or 16 bytes each), or null
 * when the list is anything else.
 */
function packAddrs(list: unknown[]): { [k: string]: string } | null {
  const first = list[0];
  if (!isPlainAddr(first)) return null;
  const family = first.family as 4 | 6;
  const width = family === 4 ? 4 : 16;
  if (list.every((e) => isPlainAddr(e) && e.family === family && e.start === e.end)) return packHosts(family, list as PlainAddr[]);
  const buf = Buffer.allocUnsafe(list.length * 2 * width);
  const view = viewOf(buf);
  let at = 0;
  for (const e of list) {
    if (!isPlainAddr(e) || e.family !== family) return null;
    if (family === 4) {
      buf.writeUInt32BE(Number(e.start), at);
      buf.writeUInt32BE(Number(e.end), at + 4);
    } else {
      view.setBigUint64(at, e.start >> 64n);
      view.setBigUint64(at + 8, BigInt.asUintN(64, e.start));
      view.setBigUint64(at + 16, e.end >> 64n);
      view.setBigUint64(at + 24, BigInt.asUintN(64, e.end));
    }
    at += 2 * width;
  }
  return { [family === 4 ? ADDRS4 : ADDRS6]: buf.toString('base64') };
}

/** Single hosts of one family (isPlainAddr, checked by the caller) as base64 of their addresses, big-endian. */
function packHosts(family: 4 | 6, list: PlainAddr[]): { [k: string]: string } {
  const width = family === 4 ? 4 : 16;
  const buf = Buffer.allocUnsafe(list.length * width);
  const view = viewOf(buf);
  let at = 0;
  for (const e of list) {
    const v = e.start;
    if (family === 4) {
      buf.writeUInt32BE(Number(v), at);
    } else {
      view.setBigUint64(at, v >> 64n);
      view.setBigUint64(at + 8, BigInt.asUintN(64, v));
    }
    at += width;
  }
  return { [family === 4 ? HOSTS4 : HOSTS6]: buf.toString('base64') };
}

/** The hosts packHosts wrote, or null when the text is not exactly that. */
function unpackHosts(family: 4 | 6, text: string): unknown[] | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const buf = Buffer.from(text, 'base64');
  const width = family === 4 ? 4 : 16;
  if (buf.length % width !== 0 || buf.toString('base64') !== text) return null;
  const out: unknown[] = new Array<unknown>(buf.length / width);
  const view = viewOf(buf);
  for (let i = 0, at = 0; at < buf.length; i++, at += width) {
    const v = family === 4 ? BigInt(buf.readUInt32BE(at)) : (view.getBigUint64(at) << 64n) | view.getBigUint64(at + 8);
    out[i] = { t: 'addr', family, start: v, end: v };
  }
  return out;
}

/** The elements packAddrs wrote, or null when the text is not exactly that. */
function unpackAddrs(family: 4 | 6, text: string): unknown[] | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const buf = Buffer.from(text, 'base64');
  const width = family === 4 ? 4 : 16;
  if (buf.length % (2 * width) !== 0 || buf.toString('base64') !== text) return null;
  const out: unknown[] = new Array<unknown>(buf.length / (2 * width));
  const view = viewOf(buf);
  for (let i = 0, at = 0; at < buf.length; i++, at += 2 * width) {
    if (family === 4) {
      const a = buf.readUInt32BE(at);
      const b = buf.readUInt32BE(at + 4);
      const start = BigInt(a);
      out[i] = { t: 'addr', family, start, end: a === b ? start : BigInt(b) };
    } else {
      const start = (view.getBigUint64(at) << 64n) | view.getBigUint64(at + 8);
      const end = (view.getBigUint64(at + 16) << 64n) | view.getBigUint64(at + 24);
      out[i] = { t: 'addr', family, start, end };
    }
  }
  return out;
}

/**
 * JSON that keeps bigints (cgroup ids, IPv6 addresses). Address elements, the
 * bulk of a large ruleset, are written compactly as "family:start:end" in hex;
 * a list of them of one family (a set's elements) as base64 of their bytes,
 * so a million-element set is one JSON value to write and to read, not a
 * million objects through JSON's replacer and reviver.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return { [BIG]: v.toString() };
    if (Array.isArray(v) && v.length > 1 && isPlainAddr(v[0])) {
      const packed = packAddrs(v);
      if (packed) return packed;
    }
    if (isPlainAddr(v)) return { [ADDR]: `${v.family}:${v.start.toString(16)}:${v.end.toString(16)}` };
    return v;
  });
}

export function fromJson<T>(text: string): T {
  return JSON.parse(text, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length !== 1) return v;
      const p4 = (v as Record<string, unknown>)[ADDRS4];
      if (typeof p4 === 'string') return unpackAddrs(4, p4) ?? v;
      const p6 = (v as Record<string, unknown>)[ADDRS6];
      if (typeof p6 === 'string') return unpackAddrs(6, p6) ?? v;
      const h4 = (v as Record<string, unknown>)[HOSTS4];
      if (typeof h4 === 'string') return unpackHosts(4, h4) ?? v;
      const h6 = (v as Record<string, unknown>)[HOSTS6];
      if (typeof h6 === 'string') return unpackHosts(6, h6) ?? v;
      const big = (v as Record<string, unknown>)[BIG];
      if (typeof big === 'string' && /^-?[0-9]+$/.test(big)) return BigInt(big);
      const addr = (v as Record<string, unknown>)[ADDR];
      const m = typeof addr === 'string' ? /^([46]):([0-9a-f]{1,32}):([0-9a-f]{1,32})$/.exec(addr) : null;
      if (m) return { t: 'addr', family: Number(m[1]), start: BigInt(`0x${m[2]}`), end: BigInt(`0x${m[3]}`) };
    }
    return v;
  }) as T;
}

/** Writes a file so readers see the old or the new content, never a torn one, and it survives a crash. */
export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  writeBytesAtomic(file, Buffer.from(data, 'utf8'), mode);
}

/** Byte version of writeFileAtomic. */
export function writeBytesAtomic(file: string, data: Uint8Array | Uint8Array[], mode = 0o600): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  // Exclusive create: a file (or symlink) planted under the temporary name is removed, never followed.
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', mode);
  try {
    for (const part of Array.isArray(data) ? data : [data]) {
      for (let at = 0; at < part.length; ) at += writeSync(fd, part, at, part.length - at);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dfd = openSync(dirname(file), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * An atomic write off the event loop: `produce` hands pieces to `write` as
 * it makes them (each written from libuv's thread pool while the loop is
 * free), then the file is synced and renamed into place. For state written
 * while the daemon serves traffic.
 */
export async function writeAtomicStream(file: string, produce: (write: (piece: string) => Promise<void>) => Promise<void>, mode = 0o600): Promise<void> {
  await fsp.mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-async`;
  // Exclusive create, as in writeBytesAtomic.
  await fsp.rm(tmp, { force: true });
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    await produce(async (piece) => {
      if (piece.length > 0) await fh.write(piece, null, 'utf8');
    });
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await fsp.rename(tmp, file);
  const dir = await fsp.open(dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Removes temporary files left by atomic writes of processes that died
 * mid-write (`NAME.tmp-PID` and `NAME.tmp-PID-async`, PID no longer running).
 * Those of live processes are theirs to finish. Returns the names removed.
 */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /\.tmp-([0-9]{1,10})(?:-async)?$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    try {
      // lstat first: only plain files of ours, never through a link.
      if (!lstatSync(join(dir, name)).isFile()) continue;
      rmSync(join(dir, name), { force: true });
      removed.push(name);
    } catch {
      // Gone meanwhile, or not ours to remove: left.
    }
  }
  return removed;
}

function readOptional(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Typed access to the files in the state directory. */
export class StateStore {
  readonly dir: string;

  constructor(dir = stateDir()) {
    this.dir = dir;
  }

  private file(name: string): string {
    return join(this.dir, name);
  }

  private read<T>(name: string): T | null {
    const text = readOptional(this.file(name));
    if (text === null) return null;
    try {
      return fromJson<T>(text);
    } catch (err) {
      throw new SluiceError('ESTATE', `Corrupt state file: ${this.file(name)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * What is applied, or null. `applied.json` and `off.json` are written one
   * after the other; if a crash leaves both, the newer one is the truth.
   */
  applied(): AppliedState | null {
    const applied = this.read<AppliedState>('applied.json');
    if (applied === null) return null;
    const off = this.offRecord();
    return off !== null && off.at >= applied.appliedAt ? null : applied;
  }

  setApplied(s: AppliedState | null): void {
    if (s === null) rmSync(this.file('applied.json'), { force: true });
    else writeFileAtomic(this.file('applied.json'), toJson(s));
  }

  pending(): PendingConfirm | null {
    return this.read<PendingConfirm>('pending-confirm.json');
  }

  setPending(p: PendingConfirm | null): void {
    if (p === null) rmSync(this.file('pending-confirm.json'), { force: true });
    else writeFileAtomic(this.file('pending-confirm.json'), toJson(p));
  }

  /** Keeps the exact bytes of an applied policy, by content, so the daemon can load what was applied. */
  savePolicySnapshot(sha256: string, bytes: Uint8Array, keep: string[] = [], lists: { path: string; bytes: Uint8Array }[] = []): void {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new SluiceError('ESTATE', `Bad policy hash: ${sha256}`);
    const dir = join(this.dir, 'policies');
    // The list files first: a snapshot whose .yaml exists has its lists too.
    if (lists.length > 0) writeBytesAtomic(join(dir, `${sha256}.lists`), encodeLists(lists), 0o600);
    writeBytesAtomic(join(dir, `${sha256}.yaml`), bytes, 0o600);
    // Keep the 20 most recent snapshots, and always those `keep` names (the applied policy, a
    // rollback target): however many applies were rolled back since, the daemon must load them.
    const kept = new Set(keep.map((k) => `${k}.yaml`));
    const files = readdirSync(dir)
      .filter((f) => /^[0-9a-f]{64}\.yaml$/.test(f) && !kept.has(f))
      .map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { f } of files.slice(20)) {
      rmSync(join(dir, f), { force: true });
      rmSync(join(dir, f.replace(/\.yaml$/, '.lists')), { force: true });
    }
  }

  /** The list files of an applied policy as they were applied, by absolute path (empty when it read none). */
  policyListsSnapshot(sha256: string): Map<string, Buffer> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return new Map();
    let bytes: Buffer;
    try {
      bytes = readFileSync(join(this.dir, 'policies', `${sha256}.lists`));
    } catch {
      return new Map();
    }
    return decodeLists(bytes);
  }

  /** The bytes of an applied policy, or null. */
  policySnapshot(sha256: string): Buffer | null {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return null;
    try {
      return readFileSync(join(this.dir, 'policies', `${sha256}.yaml`));
    } catch {
      return null;
    }
  }

  /** The control socket of a daemon using this state directory. */
  get controlSocket(): string {
    return join(this.dir, 'control.sock');
  }

  /** Appends one line to the state directory's journal (rollbacks, applies): an audit trail. */
  journal(event: Record<string, unknown>): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const fd = openSync(this.file('journal.log'), 'a', 0o600);
    try {
      writeSync(fd, `${JSON.stringify({ at: new Date().toISOString(), ...event })}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * The journal's entries, oldest first, from its last `maxBytes` (default 4 MiB; a partial
   * first line is skipped, so are lines that are not JSON objects).
   */
  readJournal(maxBytes = 4 * 1024 * 1024): Record<string, unknown>[] {
    let fd: number;
    try {
      fd = openSync(this.file('journal.log'), 'r');
    } catch {
      return [];
    }
    try {
      const size = fstatSync(fd).size;
      // One byte before the last maxBytes as well: the first line read is whole when that byte is a newline.
      const from = size > maxBytes ? size - maxBytes - 1 : 0;
      const buf = Buffer.alloc(size - from);
      readSync(fd, buf, 0, buf.length, from);
      const all = buf.toString('utf8').split('\n');
      // Cut into a line: it is not read (the byte before the cut, when it is a newline, leaves an empty first piece).
      if (from > 0) all.shift();
      const out: Record<string, unknown>[] = [];
      for (const line of all) {
        if (line.trim() === '') continue;
        try {
          const v: unknown = JSON.parse(line);
          if (v && typeof v === 'object' && !Array.isArray(v)) out.push(v as Record<string, unknown>);
        } catch {
          // A torn line (a crash mid-write): skipped.
        }
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** The journal's last entry (read from its last 64 KiB), or null: none, or not readable as one. */
  lastJournal(): Record<string, unknown> | null {
    let fd: number;
    try {
      fd = openSync(this.file('journal.log'), 'r');
    } catch {
      return null;
    }
    try {
      const size = statSync(this.file('journal.log')).size;
      const buf = Buffer.alloc(Math.min(size, 65_536));
      readSync(fd, buf, 0, buf.length, size - buf.length);
      const line = buf.toString('utf8').trimEnd().split('\n').pop() ?? '';
      const v: unknown = JSON.parse(line);
      return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Creates the directory (0700) or checks an existing one: a real directory,
   * owned by whoever runs Sluice, writable by nobody else. Sluice writes state
   * the kernel trusts (what to roll back to, learned addresses); a directory
   * others can write to would let them choose it.
   */
  ensureSafe(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(this.dir);
    const uid = process.getuid?.() ?? 0;
    if (!st.isDirectory()) throw new SluiceError('ESTATEPERM', `State directory is not a directory (a symlink?): ${this.dir}`);
    if (st.uid !== uid) throw new SluiceError('ESTATEPERM', `State directory is owned by uid ${st.uid}, not ${uid}: ${this.dir}`);
    if (st.mode & 0o022) throw new SluiceError('ESTATEPERM', `State directory is writable by group or others (mode ${(st.mode & 0o777).toString(8)}): ${this.dir}`);
  }

  /**
   * Runs `fn` holding the state lock, so two writers (applies, a rollback,
   * the daemon) never interleave. The lock is flock(2) on `lock` in the state
   * directory: the kernel releases it when its holder exits or dies, so there
   * is never a stale lock to take over (and no race between two processes
   * taking one over). The file is never removed (removing a flock'd file lets
   * a second holder lock a new inode). Re-entrant within one process.
   */
  withLock<T>(fn: () => T, waitMs = 10_000): T {
    if (heldLocks.has(this.dir)) return fn();
    this.ensureSafe();
    const lock = this.file('lock');
    // O_NOFOLLOW: a symlink planted under the name is refused, never followed. libuv opens with O_CLOEXEC, so no child inherits the lock.
    let fd: number;
    let readOnly = false;
    try {
      fd = openSync(lock, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      // A read-only state directory (the root filesystem early at boot): nobody can write state
      // then, but a restore must still put the ruleset back. flock works on a read-only descriptor.
      if ((err as NodeJS.ErrnoException).code !== 'EROFS') throw err;
      readOnly = true;
      try {
        fd = openSync(lock, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch {
        heldLocks.add(this.dir);
        try {
          return fn();
        } finally {
          heldLocks.delete(this.dir);
        }
      }
    }
    try {
      const deadline = Date.now() + waitMs;
      while (!native().flockTry(fd)) {
        // waitMs 0 is a try-lock: the daemon's loop, which also answers DNS, never sleeps on it.
        if (Date.now() >= deadline) {
          const holder = readOptional(lock)?.trim() ?? '';
          throw new SluiceError('ELOCKED', `Another sluice command holds the lock: pid ${/^[0-9]+$/.test(holder) ? holder : 'unknown'} (${lock})`);
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
      // Who holds it, for the message above; informational only.
      if (!readOnly) {
        ftruncateSync(fd, 0);
        writeSync(fd, String(process.pid), 0);
      }
      heldLocks.add(this.dir);
      try {
        return fn();
      } finally {
        heldLocks.delete(this.dir);
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Whether `sluice off` is the last word: the table was removed on purpose, and a restart must not bring it back. */
  isOff(): boolean {
    const off = this.offRecord();
    if (off === null) return false;
    const applied = this.read<AppliedState>('applied.json');
    return applied === null || off.at >= applied.appliedAt;
  }

  private offRecord(): { at: string } | null {
    try {
      const off = this.read<{ at?: unknown }>('off.json');
      return off && typeof off.at === 'string' ? { at: off.at } : off ? { at: '' } : null;
    } catch {
      return { at: '' };
    }
  }

  /** Records (or clears) that Sluice was turned off on purpose. */
  setOff(off: { at: string } | null): void {
    if (off === null) rmSync(this.file('off.json'), { force: true });
    else writeFileAtomic(this.file('off.json'), JSON.stringify(off));
  }

  /** The daemon's last recorded state: running, stopped, or failed (with why), for `status`. */
  daemonState(): DaemonState | null {
    try {
      return this.read<DaemonState>('daemon.json');
    } catch {
      return null;
    }
  }

  setDaemonState(d: DaemonState): void {
    writeFileAtomic(this.file('daemon.json'), JSON.stringify(d));
  }
}

/** What the daemon last said about itself. */
export interface DaemonState {
  state: 'starting' | 'running' | 'stopped' | 'failed';
  pid: number;
  at: string;
  error?: string;
  code?: string;
}

/** State directories whose lock this process holds now (withLock is re-entrant). */
const heldLocks = new Set<string>();

/** True when a process with this pid exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A policy's list files in one file: per list, a line with its path (JSON) and length, then its bytes and a newline. */
function encodeLists(lists: { path: string; bytes: Uint8Array }[]): Uint8Array[] {
  // The pieces, written one after the other: a feed of a million entries is
  // not copied into one buffer first.
  const parts: Uint8Array[] = [];
  for (const l of lists) parts.push(Buffer.from(`${JSON.stringify(l.path)} ${l.bytes.length}\n`), l.bytes, Buffer.from('\n'));
  return parts;
}

/** The lists encodeLists wrote; a damaged file yields what could be read before the damage (a missing list is then an error at load). */
function decodeLists(bytes: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < bytes.length) {
    const nl = bytes.indexOf(0x0a, at);
    if (nl < 0) break;
    const m = /^("(?:[^"\\]|\\.)*") ([0-9]{1,10})$/.exec(bytes.subarray(at, nl).toString('utf8'));
    if (!m) break;
    const len = Number(m[2]);
    const start = nl + 1;
    if (start + len + 1 > bytes.length || bytes[start + len] !== 0x0a) break;
    let path: unknown;
    try {
      path = JSON.parse(m[1] as string);
    } catch {
      break;
    }
    if (typeof path !== 'string') break;
    out.set(path, bytes.subarray(start, start + len));
    at = start + len + 1;
  }
  return out;
}
