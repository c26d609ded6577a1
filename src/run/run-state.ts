import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SystemError } from '../errors.js';

/**
 * Where `sluice run` keeps what it made, so any exit path can be cleaned up:
 * one file per live run (its slot), naming its network namespace, veth,
 * table and the process that owns them; and the host's forwarding settings
 * as they were before the first run changed them. A run killed with SIGKILL
 * leaves its slot file behind; the next run (or `sluice run --cleanup`) sees
 * the owner is gone and removes what it made.
 *
 * The directory is $SLUICE_RUN_DIR or /run/sluice/run (tmpfs: a reboot
 * clears it, as it clears the namespaces and tables it lists).
 */

export const MAX_SLOTS = 16384;

/** What one run made; written before anything is made, so a crash at any point leaves a complete list. */
export interface RunRecord {
  slot: number;
  id: string;
  pid: number;
  /** The owner's start time (field 22 of /proc/PID/stat): a reused pid is not taken for the owner. */
  pidStart: string;
  netns: string;
  hostIf: string;
  table: string;
  /** The run's cgroup, when it has one (processes are killed and it is removed at cleanup). */
  cgroup?: string;
  startedAt: string;
}

export function runDir(): string {
  return process.env.SLUICE_RUN_DIR ?? '/run/sluice/run';
}

/** The start time of a process, or null when it is gone. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null;
  } catch {
    return null;
  }
}

/** True while the process that wrote the record is alive (same pid, same start time). */
export function ownerAlive(r: Pick<RunRecord, 'pid' | 'pidStart'>): boolean {
  return processStart(r.pid) === r.pidStart;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Runs `fn` holding the run directory's lock (an O_EXCL file naming its
 * holder; a holder that died leaves a lock the next taker breaks). Setting
 * up and tearing down hold it, so the forwarding settings and the slot list
 * change one run at a time.
 */
export function withRunLock<T>(fn: () => T, timeoutMs = 10_000): T {
  const dir = runDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, 'lock');
  const me = { pid: process.pid, pidStart: processStart(process.pid) ?? '' };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder: { pid: number; pidStart: string } | null = null;
      try {
        holder = JSON.parse(readFileSync(lock, 'utf8')) as { pid: number; pidStart: string };
      } catch {
        holder = null; // being written, or garbage
      }
      if (holder && typeof holder.pid === 'number' && !ownerAlive(holder)) {
        // Break a dead holder's lock: rename it away first, so two breakers cannot both win.
        try {
          renameSync(lock, `${lock}.stale-${process.pid}`);
          rmSync(`${lock}.stale-${process.pid}`, { force: true });
        } catch {
          /* someone else broke it */
        }
        continue;
      }
      if (Date.now() > deadline) throw new SystemError('ERUNLOCK', `Another sluice run holds ${lock} (pid ${holder?.pid ?? '?'}) for more than ${timeoutMs / 1000} s; nothing was started.`);
      sleep(5);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

function slotFile(slot: number): string {
  return join(runDir(), `slot-${slot}.json`);
}

/** Every slot file present, parsed (unreadable ones are skipped). */
export function readSlots(): RunRecord[] {
  let names: string[];
  try {
    names = readdirSync(runDir());
  } catch {
    return [];
  }
  const out: RunRecord[] = [];
  for (const n of names) {
    if (!/^slot-[0-9]+\.json$/.test(n)) continue;
    try {
      const r = JSON.parse(readFileSync(join(runDir(), n), 'utf8')) as RunRecord;
      if (typeof r.slot === 'number' && typeof r.netns === 'string' && typeof r.hostIf === 'string' && typeof r.table === 'string') out.push(r);
    } catch {
      /* a torn write: its owner is writing it now, or died doing so (then --cleanup finds nothing to name) */
    }
  }
  return out;
}

/** Takes a free slot (under the lock), starting from a random one, and writes the record. */
export function takeSlot(make: (slot: number) => RunRecord, limit = MAX_SLOTS): RunRecord {
  const used = new Set(readSlots().map((r) => r.slot));
  const slots = Math.max(1, Math.min(limit, MAX_SLOTS));
  const start = Math.floor(Math.random() * slots);
  for (let i = 0; i < slots; i++) {
    const slot = (start + i) % slots;
    if (used.has(slot)) continue;
    const rec = make(slot);
    const fd = openSync(slotFile(slot), 'wx', 0o600);
    try {
      writeSync(fd, JSON.stringify(rec));
    } finally {
      closeSync(fd);
    }
    return rec;
  }
  throw new SystemError('ERUNSLOTS', `All ${slots} run slots are in use; run \`sluice run --cleanup\` to free those of runs that died.`);
}

export function releaseSlot(slot: number): void {
  rmSync(slotFile(slot), { force: true });
}

/** The host's forwarding settings before the first run changed them (absent: runs changed nothing). */
export interface ForwardingPrior {
  v4?: string;
  v6?: string;
}

const FORWARDING = 'forwarding.json';

export function readForwardingPrior(): ForwardingPrior | null {
  try {
    return JSON.parse(readFileSync(join(runDir(), FORWARDING), 'utf8')) as ForwardingPrior;
  } catch {
    return null;
  }
}

export function writeForwardingPrior(p: ForwardingPrior): void {
  const file = join(runDir(), FORWARDING);
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(p));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export function clearForwardingPrior(): void {
  rmSync(join(runDir(), FORWARDING), { force: true });
}
