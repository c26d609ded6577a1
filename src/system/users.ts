import { spawnSync } from 'node:child_process';

/**
 * Looks up user names through NSS with getent(1), so users from LDAP or sssd
 * resolve like local ones. Returns the names found with their uids.
 */
export function lookupUsers(names: string[]): Map<string, number> {
  const found = new Map<string, number>();
  if (names.length === 0) return found;
  // getent exits 2 when some keys are missing and still prints the rest.
  const r = spawnSync('getent', ['passwd', ...names], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) throw r.error;
  for (const line of (r.stdout ?? '').split('\n')) {
    const fields = line.split(':');
    const name = fields[0];
    const uid = Number(fields[2]);
    if (name && names.includes(name) && Number.isInteger(uid) && uid >= 0) found.set(name, uid);
  }
  return found;
}

/** The users whose DHCP clients may talk to DHCP servers: root, and systemd-networkd's own user where it exists. */
export const DHCP_CLIENT_USERS = ['systemd-network'];

let dhcpUidsCache: { at: number; uids: number[] } | undefined;

/**
 * The uids of the DHCP clients (root, and `systemd-network`, which runs
 * systemd-networkd's DHCP clients), looked up through NSS at most once a
 * minute: the daemon recompiles on every service restart and must not
 * spawn getent each time.
 */
export function dhcpClientUids(lookup: (names: string[]) => Map<string, number> = lookupUsers): number[] {
  if (dhcpUidsCache && Date.now() - dhcpUidsCache.at < 60_000) return dhcpUidsCache.uids;
  let found: number[] = [];
  try {
    found = [...lookup(DHCP_CLIENT_USERS).values()];
  } catch {
    // No getent: root alone.
  }
  const uids = [...new Set([0, ...found])].sort((a, b) => a - b);
  dhcpUidsCache = { at: Date.now(), uids };
  return uids;
}

const nameCache = new Map<number, string | null>();

/** A user's name for display, or undefined. Cached; failures are not errors. */
export function userName(uid: number): string | undefined {
  if (!nameCache.has(uid)) {
    const r = spawnSync('getent', ['passwd', String(uid)], { encoding: 'utf8', timeout: 5_000 });
    const name = r.status === 0 ? (r.stdout.split(':')[0] ?? null) : null;
    nameCache.set(uid, name || null);
  }
  return nameCache.get(uid) ?? undefined;
}
