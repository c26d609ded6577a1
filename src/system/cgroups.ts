import { promises as fsp, readFileSync, type Dirent } from 'node:fs';
import { join } from 'node:path';

/**
 * Finds the cgroup v2 mount. Unified hosts mount it at /sys/fs/cgroup; hybrid
 * ones (systemd's legacy layout, this project's CI) at /sys/fs/cgroup/unified.
 * Read from mountinfo, so any other mount point works too.
 */
export function findCgroup2Root(mountinfo = readMountinfo()): string | null {
  const mounts: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (fstype === 'cgroup2' && mountPoint) mounts.push(unescapeMount(mountPoint));
  }
  for (const preferred of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    if (mounts.includes(preferred)) return preferred;
  }
  return mounts[0] ?? null;
}

function readMountinfo(): string {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return '';
  }
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Bounds of a walk of the cgroup tree: a tree is as large as whatever created it made it. */
export const WALK_MAX_DIRS = 200_000;
export const WALK_MAX_DEPTH = 12;

/**
 * Visits the directories below `root` breadth-first (paths relative to it,
 * '/' first, each with its inode: a cgroup's id), at most `maxDirs` of them
 * and `maxDepth` levels down; a visit returning false keeps the walk out of
 * that directory. Bounded, because a cgroup tree is as large as whatever
 * created it made it. Asynchronous: every stat and listing goes through
 * libuv's thread pool, `concurrency` directories at a time, so the event loop
 * (which also answers DNS and reads NFLOG) only ever runs a few visits between
 * them, never the walk. For indexing cgroup ids (monitoring), not for deciding
 * what a service is (resolve-services.ts).
 */
export async function walkDirs(
  root: string,
  visit: (rel: string, ino: bigint) => boolean,
  limits: { maxDirs: number; maxDepth: number; concurrency?: number } = { maxDirs: WALK_MAX_DIRS, maxDepth: WALK_MAX_DEPTH },
): Promise<void> {
  const concurrency = Math.max(1, limits.concurrency ?? 8);
  let frontier = ['/'];
  let seen = 0;
  for (let depth = 0; depth <= limits.maxDepth && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (let i = 0; i < frontier.length; i += concurrency) {
      const batch = frontier.slice(i, i + concurrency);
      const read = await Promise.all(batch.map((rel) => readDir(join(root, rel))));
      // In order, so the walk visits and counts exactly as a sequential one would.
      for (const [j, rel] of batch.entries()) {
        const r = read[j];
        if (!r || !visit(rel, r.ino) || !r.entries) continue;
        for (const e of r.entries) {
          if (!e.isDirectory()) continue;
          if (++seen > limits.maxDirs) return;
          next.push(rel === '/' ? `/${e.name}` : `${rel}/${e.name}`);
        }
      }
    }
    frontier = next;
  }
}

/** A directory's inode and entries (null entries: unreadable); null when it is gone or not a directory. */
async function readDir(dir: string): Promise<{ ino: bigint; entries: Dirent[] | null } | null> {
  const [st, entries] = await Promise.all([
    fsp.stat(dir, { bigint: true }).catch(() => null),
    fsp.readdir(dir, { withFileTypes: true }).catch(() => null),
  ]);
  if (!st || !st.isDirectory()) return null;
  return { ino: st.ino, entries };
}
