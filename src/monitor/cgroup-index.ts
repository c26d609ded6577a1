import { statSync } from 'node:fs';
import { join } from 'node:path';
import { findCgroup2Root, walkDirs } from '../system/cgroups.js';

const MAX_DIRS = 50_000;
const MAX_DEPTH = 12;

/**
 * cgroup v2 ids (the directory's inode, what sock_diag and `socket cgroupv2`
 * report) to paths, by walking the cgroup2 mount. Rebuilt on a miss, at most
 * every few seconds, and bounded, so a host with a huge tree costs a bounded
 * walk rather than an unbounded one.
 */
export class CgroupIndex {
  private byId = new Map<bigint, string>();
  /** Low 32 bits of each id (what a packet mark can carry); null where two cgroups share them. */
  private byLow32 = new Map<number, string | null>();
  private lastWalk = 0;

  constructor(private readonly root: string | null = findCgroup2Root()) {}

  /** The path (relative to the cgroup2 root, starting with `/`) of a cgroup id, or undefined. */
  path(id: bigint, now = Date.now()): string | undefined {
    const p = this.byId.get(id);
    if (p !== undefined || !this.root) return p;
    if (now - this.lastWalk < 3000) return undefined;
    this.lastWalk = now;
    this.walk(this.root);
    return this.byId.get(id);
  }

  /** The path of the cgroup whose id has these low 32 bits, unless that is ambiguous. */
  pathByLow32(low32: number, now = Date.now()): string | undefined {
    let p = this.byLow32.get(low32);
    if (p === undefined && this.root && now - this.lastWalk >= 3000) {
      this.lastWalk = now;
      this.walk(this.root);
      p = this.byLow32.get(low32);
    }
    return p ?? undefined;
  }

  private walk(root: string): void {
    const next = new Map<bigint, string>();
    walkDirs(
      root,
      (rel) => {
        try {
          next.set(statSync(join(root, rel), { bigint: true }).ino, rel);
          return true;
        } catch {
          return false;
        }
      },
      { maxDirs: MAX_DIRS, maxDepth: MAX_DEPTH },
    );
    this.byId = next;
    const low = new Map<number, string | null>();
    for (const [id, path] of next) {
      const k = Number(id & 0xffffffffn);
      low.set(k, low.has(k) ? null : path);
    }
    this.byLow32 = low;
  }
}
