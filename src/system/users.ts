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
