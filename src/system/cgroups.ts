import { readdirSync, readFileSync } from 'node:fs';
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
 * '/' first), at most `maxDirs` of them and `maxDepth` levels down; a visit
 * returning false keeps the walk out of that directory. Bounded, because a
 * cgroup tree is as large as whatever created it made it. Synchronous: for
 * indexing cgroup ids (monitoring), not for deciding what a service is
 * (resolve-services.ts).
 */
export function walkDirs(root: string, visit: (rel: string) => boolean, limits: { maxDirs: number; maxDepth: number } = { maxDirs: WALK_MAX_DIRS, maxDepth: WALK_MAX_DEPTH }): void {
  let frontier = ['/'];
  let seen = 0;
  for (let depth = 0; depth <= limits.maxDepth && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (const rel of frontier) {
      if (!visit(rel)) continue;
      let entries: import('node:fs').Dirent[];
      try {
        entries = readdirSync(join(root, rel), { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue;
        if (++seen > limits.maxDirs) return;
        next.push(rel === '/' ? `/${e.name}` : `${rel}/${e.name}`);
      }
    }
    frontier = next;
  }
}
