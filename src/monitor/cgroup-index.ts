import { findCgroup2Root, walkDirs } from '../system/cgroups.js';

const MAX_DIRS = 50_000;
const MAX_DEPTH = 12;
/** A miss rebuilds the index at most this often: a new cgroup is rare, a flood of unknown ids is not. */
const REBUILD_EVERY_MS = 3000;

/**
 * cgroup v2 ids (the directory's inode, what sock_diag and `socket cgroupv2`
 * report) to paths, by walking the cgroup2 mount. Rebuilt on a miss, at most
 * every few seconds, and bounded, so a host with a huge tree costs a bounded
 * walk rather than an unbounded one.
 *
 * The walk is asynchronous (walkDirs: the thread pool does the stats and
 * listings), so it never holds the daemon's event loop, which also answers DNS
 * and reads NFLOG: a lookup answers from the index as it is, and a miss starts
 * a rebuild that the caller may wait for (`rebuilding`) to get the answer a
 * blocking walk would have given.
 */
export class CgroupIndex {
  private byId = new Map<bigint, string>();
  /** Low 32 bits of each id (what a packet mark can carry); null where two cgroups share them. */
  private byLow32 = new Map<number, string | null>();
  private lastWalk = -Infinity;
  private walking: Promise<void> | null = null;
  /** Completed rebuilds (for status and tests). */
  walks = 0;

  constructor(private readonly root: string | null = findCgroup2Root()) {}

  /** The path (relative to the cgroup2 root, starting with `/`) of a cgroup id, or undefined (a miss starts a rebuild). */
  path(id: bigint, now = Date.now()): string | undefined {
    const p = this.byId.get(id);
    if (p === undefined) this.miss(now);
    return p;
  }

  /** The path of the cgroup whose id has these low 32 bits, unless that is ambiguous or unknown (a miss starts a rebuild). */
  pathByLow32(low32: number, now = Date.now()): string | undefined {
    const p = this.byLow32.get(low32);
    if (p === undefined) this.miss(now);
    return p ?? undefined;
  }

  /** The rebuild in progress, if any: wait for it, then ask again. */
  rebuilding(): Promise<void> | null {
    return this.walking;
  }

  /** Starts a rebuild now unless one runs or ran within the last few seconds; resolves when the index holds its result. */
  rebuild(now = Date.now()): Promise<void> | null {
    this.miss(now);
    return this.walking;
  }

  private miss(now: number): void {
    if (!this.root || this.walking || now - this.lastWalk < REBUILD_EVERY_MS) return;
    this.lastWalk = now;
    const root = this.root;
    this.walking = this.walk(root).finally(() => {
      this.walking = null;
    });
  }

  private async walk(root: string): Promise<void> {
    const next = new Map<bigint, string>();
    const low = new Map<number, string | null>();
    try {
      await walkDirs(
        root,
        (rel, ino) => {
          next.set(ino, rel);
          const k = Number(ino & 0xffffffffn);
          low.set(k, low.has(k) ? null : rel);
          return true;
        },
        { maxDirs: MAX_DIRS, maxDepth: MAX_DEPTH },
      );
    } catch {
      return; // The index as it was is still right for every cgroup that has not gone.
    }
    this.byId = next;
    this.byLow32 = low;
    this.walks++;
  }
}
