/*
 * The container a cgroup belongs to, read off its path the way each runtime
 * names the cgroups it makes:
 *
 *   Docker      /system.slice/docker-<64 hex>.scope          (systemd driver)
 *               /docker/<64 hex>                              (cgroupfs driver)
 *   Podman      /machine.slice/libpod-<64 hex>.scope          (libpod-conmon-<id>.scope is its monitor, not the container)
 *               /libpod_parent/libpod-<64 hex>
 *   containerd  /.../cri-containerd-<64 hex>.scope            (Kubernetes, systemd driver)
 *               /kubepods/<qos>/pod<uid>/<64 hex>             (Kubernetes, cgroupfs driver)
 *               /system.slice/nerdctl-<64 hex>.scope, /<namespace>/<64 hex> under /default or /k8s.io
 *   CRI-O       /.../crio-<64 hex>.scope
 *   nspawn      /machine.slice/systemd-nspawn@<name>.service
 *   machine     /machine.slice/machine-<name>.scope           (any machine registered with systemd-machined:
 *                                                            `systemd-nspawn -M name`, or a VM)
 *
 * The outermost match wins: that is the container on this host (one nested
 * inside it is that container's business). A path is only a name: whoever
 * controls a delegated subtree (a user's user@UID.service, where rootless
 * Podman puts its containers) can create a cgroup called
 * docker-<anything>.scope. Such a match is reported with `delegated: true`,
 * meaning "this user's own cgroup says so"; only one outside every delegated
 * subtree was made by root (a runtime, or systemd for it).
 */

export interface ContainerRef {
  runtime: 'docker' | 'podman' | 'containerd' | 'cri-o' | 'nspawn' | 'machine';
  /** The runtime's id (64 hex digits) or, for systemd-nspawn, the machine name. */
  id: string;
  /** Inside a subtree delegated to an unprivileged user: named by that user, not vouched for by root. */
  delegated?: true;
}

const HEX64 = /^[0-9a-f]{64}$/;
const SCOPED: [RegExp, ContainerRef['runtime']][] = [
  [/^docker-([0-9a-f]{64})\.scope$/, 'docker'],
  [/^libpod-([0-9a-f]{64})\.scope$/, 'podman'],
  [/^libpod-([0-9a-f]{64})$/, 'podman'],
  [/^cri-containerd-([0-9a-f]{64})\.scope$/, 'containerd'],
  [/^nerdctl-([0-9a-f]{64})\.scope$/, 'containerd'],
  [/^crio-([0-9a-f]{64})\.scope$/, 'cri-o'],
];
/** A parent segment under which a bare 64-hex segment is a container (cgroupfs drivers). */
const BARE_PARENTS: Record<string, ContainerRef['runtime']> = { docker: 'docker', default: 'containerd', 'k8s.io': 'containerd', moby: 'docker' };
/** systemd's unit-name escaping (\x2d for '-'), undone for a machine name; anything odd leaves the name as it is. */
function unescapeUnit(s: string): string {
  return s.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}
/** Machine names systemd accepts: printable, no slash, at most 64 characters. */
const MACHINE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DELEGATED = /^user@\d+\.service$/;

export function containerOf(cgroup: string | undefined): ContainerRef | undefined {
  if (!cgroup || cgroup.length > 4096) return undefined;
  const segs = cgroup.split('/');
  let delegated = false;
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i] as string;
    if (s === '') continue;
    if (DELEGATED.test(s)) delegated = true;
    let found: Omit<ContainerRef, 'delegated'> | undefined;
    for (const [re, runtime] of SCOPED) {
      const m = re.exec(s);
      if (m) {
        found = { runtime, id: m[1] as string };
        break;
      }
    }
    if (!found && HEX64.test(s)) {
      const parent = segs[i - 1] ?? '';
      const bare = BARE_PARENTS[parent];
      if (bare) found = { runtime: bare, id: s };
      // Kubernetes' cgroupfs layout: /kubepods[/<qos>]/pod<uid>/<container id>.
      else if (/^pod[0-9a-f_-]{32,36}$/.test(parent) && segs.slice(0, i).includes('kubepods')) found = { runtime: 'containerd', id: s };
    }
    if (!found && segs[i - 1] === 'machine.slice') {
      const nspawn = /^systemd-nspawn@(.+)\.service$/.exec(s);
      const machine = nspawn ? undefined : /^machine-(.+)\.scope$/.exec(s);
      const name = nspawn?.[1] ?? machine?.[1];
      const id = name !== undefined ? unescapeUnit(name) : undefined;
      if (id && MACHINE.test(id)) found = { runtime: nspawn ? 'nspawn' : 'machine', id };
    }
    if (found) return delegated ? { ...found, delegated: true } : found;
  }
  return undefined;
}

/** How a container is shown in a table: runtime and the first 12 digits of its id (as `docker ps` does). */
export function containerLabel(c: ContainerRef): string {
  const id = HEX64.test(c.id) ? c.id.slice(0, 12) : c.id;
  return `${c.runtime}:${id}${c.delegated ? '(user)' : ''}`;
}
