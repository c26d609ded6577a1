import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedCgroup } from '../compile/compile-ruleset.js';
import { serviceKey } from '../compile/compile-ruleset.js';
import type { Policy, ServiceRef } from '../policy/policy.js';

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

/** A cgroup's id (the kernfs inode, what `socket cgroupv2` compares) and depth. */
export function cgroupAt(root: string, relPath: string): ResolvedCgroup | null {
  const clean = `/${relPath.split('/').filter(Boolean).join('/')}`;
  const dir = join(root, clean);
  try {
    const st = statSync(dir, { bigint: true });
    if (!st.isDirectory() || !existsSync(join(dir, 'cgroup.procs'))) return null;
    return { id: st.ino, level: clean === '/' ? 0 : clean.split('/').length - 1, path: clean };
  } catch {
    return null;
  }
}

const WALK_MAX_DIRS = 200_000;
const WALK_MAX_DEPTH = 12;

/**
 * Visits the directories below `root` breadth-first (paths relative to it,
 * '/' first), at most `maxDirs` of them and `maxDepth` levels down; a visit
 * returning false keeps the walk out of that directory. Bounded, because a
 * cgroup tree is as large as whatever created it made it.
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

/** Every cgroup below root whose directory name is `unit` (not looking inside those). */
export function findUnitCgroups(root: string, unit: string): ResolvedCgroup[] {
  const out: ResolvedCgroup[] = [];
  walkDirs(root, (rel) => {
    if (rel === '/' || rel.slice(rel.lastIndexOf('/') + 1) !== unit) return true;
    const cg = cgroupAt(root, rel);
    if (cg) out.push(cg);
    return false;
  });
  return out;
}

/** The unit's cgroup according to systemd, when systemd manages this host. */
function systemdControlGroup(unit: string): string | null {
  if (!existsSync('/run/systemd/system')) return null;
  const r = spawnSync('systemctl', ['show', '--property=ControlGroup', '--value', '--', unit], { encoding: 'utf8', timeout: 5_000 });
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path.startsWith('/') ? path : null;
}

/** Resolves one service reference to the cgroups it names right now. */
export function resolveService(root: string, s: ServiceRef): ResolvedCgroup[] {
  if (s.kind === 'cgroup') {
    const cg = cgroupAt(root, s.path);
    return cg ? [cg] : [];
  }
  const fromSystemd = systemdControlGroup(s.unit);
  if (fromSystemd) {
    const cg = cgroupAt(root, fromSystemd);
    if (cg) return [cg];
  }
  return findUnitCgroups(root, s.unit);
}

/** Resolves every service a policy names. Empty when there is no cgroup2 mount (warned by the compiler). */
export function resolveCgroups(policy: Policy, root = findCgroup2Root()): Map<string, ResolvedCgroup[]> {
  const out = new Map<string, ResolvedCgroup[]>();
  for (const rule of policy.rules) {
    for (const s of rule.services) {
      const key = serviceKey(s);
      if (!out.has(key)) out.set(key, root ? resolveService(root, s) : []);
    }
  }
  return out;
}
