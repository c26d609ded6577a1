/**
 * Fixed, host-independent inputs for unit tests: a fake user database and a
 * fake cgroup tree, so compiled output is the same on every machine.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileRuleset, serviceKey, type CompileEnv, type CompileResult } from '../../src/compile/compile-ruleset.js';
import { parsePolicy, type PolicyHost } from '../../src/policy/load-policy.js';
import { loadEncryptedDnsList } from '../../src/policy/encrypted-dns-list.js';
import type { Policy } from '../../src/policy/policy.js';
import { PolicyError, formatIssue } from '../../src/errors.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const GOLDEN_DIR = join(ROOT, 'test/golden');

export const FAKE_USERS = new Map([
  ['root', 0],
  ['www-data', 33],
  ['nobody', 65534],
]);

export const fakeHost: PolicyHost = {
  lookupUsers: (names) => new Map(names.flatMap((n) => (FAKE_USERS.has(n) ? [[n, FAKE_USERS.get(n) as number]] : []))),
};

/** A deterministic cgroup id for a path (what the kernel would give as an inode). */
export function fakeCgroupId(path: string): bigint {
  return BigInt(`0x${createHash('sha256').update(path).digest('hex').slice(0, 8)}`);
}

/**
 * Every service resolves except units named `stopped*`: units live under
 * /system.slice (depth 2), explicit cgroup paths at their own depth.
 */
export function fakeEnv(policy: Policy): CompileEnv {
  const cgroups: CompileEnv['cgroups'] = new Map();
  for (const holder of [...policy.rules, ...(policy.scopes ?? [])]) {
    for (const s of holder.services) {
      if (s.kind === 'unit' && s.unit.startsWith('stopped')) {
        cgroups.set(serviceKey(s), []);
        continue;
      }
      const path = s.kind === 'unit' ? `/system.slice/${s.unit}` : s.path;
      cgroups.set(serviceKey(s), [{ id: fakeCgroupId(path), level: path.split('/').length - 1, path }]);
    }
  }
  const env: CompileEnv = { cgroups };
  if (policy.dns.guard) {
    env.dns = {
      upstreams: policy.dns.upstreams ?? [{ family: 4, start: 0xc6120035n, end: 0xc6120035n }],
      encrypted: policy.dns.encryptedDns === 'block' ? loadEncryptedDnsList(policy.dns.encryptedDnsList) : { addrs: [], names: [] },
    };
  }
  return env;
}

/** Parses a policy from text with the fake host. */
export function policyFrom(yaml: string, file = 'test.yaml'): Policy {
  return parsePolicy(Buffer.from(yaml), file, fakeHost);
}

/** Every issue of a policy the loader refuses (warnings too), as FILE:LINE:COL: message; throws if it is accepted or fails otherwise. */
export function refusalIssues(yaml: string, file = 'p.yaml'): string[] {
  try {
    policyFrom(yaml, file);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw new Error(`expected PolicyError, got ${String(err)}`);
    return err.issues.map(formatIssue);
  }
  throw new Error('policy was accepted');
}

/** The errors only of a policy the loader refuses. */
export function refusalErrors(yaml: string, file = 'p.yaml'): string[] {
  return refusalIssues(yaml, file).filter((l) => !l.includes(': warning: '));
}

/** Parses and compiles a policy from text with the fake host and environment. */
export function compileFrom(yaml: string, file = 'test.yaml'): CompileResult & { policy: Policy } {
  const policy = policyFrom(yaml, file);
  return { policy, ...compileRuleset(policy, fakeEnv(policy)) };
}

export function readGolden(name: string): string {
  return readFileSync(join(GOLDEN_DIR, name), 'utf8');
}
