import type { Policy, Rule } from '../policy/policy.js';
import { canonicalName } from './dns-message.js';
import { DomainMatcher } from './domain-matcher.js';

/**
 * A deny rule that names a domain with no other condition refuses the name
 * itself: forwarding it would carry data to exactly the domain the policy
 * denies. Narrower deny rules (some ports, users...) let the name resolve
 * when it is otherwise allowed.
 */
export function refusesOutright(r: Rule): boolean {
  return r.action === 'deny' && r.ports.length === 0 && !r.icmp && !r.icmpv6 && r.users.length === 0 && r.services.length === 0 && r.interfaces.length === 0;
}

/** What the guard needs from the rules a name matched to refuse it or not. */
export interface NameRules {
  allows: readonly Rule[];
  refusedBy: Rule | undefined;
}

/** The allow rules among `matched`, and the first deny rule that refuses the name outright. */
export function nameRules(matched: readonly Rule[]): NameRules {
  return { allows: matched.filter((r) => r.action === 'allow'), refusedBy: matched.find(refusesOutright) };
}

/**
 * Why the DNS guard refuses a name (canonical form) under enforcement, or
 * undefined when it answers it: an encrypted-DNS endpoint no allow rule names
 * exactly, a deny rule refusing it outright, or no allow rule listing it
 * under a default deny. DnsGuard.classify and `sluice suggest --check` both
 * decide by this function, over the same DomainMatcher.
 */
export function nameRefusal(name: string, d: NameRules, matcher: DomainMatcher, defaultAction: Policy['defaultAction']): string | undefined {
  if (matcher.encryptedEndpoint(name)) return `${name} is an encrypted DNS endpoint; a rule must name it exactly`;
  if (d.refusedBy) return `${name} is denied by rule ${d.refusedBy.name}`;
  if (d.allows.length > 0 || defaultAction === 'allow') return undefined;
  return `${name} is not allowed by the policy`;
}

const matchers = new WeakMap<Policy, { encrypted: string; matcher: DomainMatcher }>();

/**
 * The guard's word on a name, offline (no guard running): the policy's
 * DomainMatcher (built once per policy and encrypted-DNS list) and
 * nameRefusal. `encryptedNames`: the encrypted-DNS endpoint list in force
 * (compile-env's encryptedDnsFor), empty when the guard is off. With
 * `ownModes`, a refusal by a deny rule whose own mode is audit does not
 * count: the guard answers the name and records would-block.
 */
export function refusedName(policy: Policy, name: string, encryptedNames: readonly string[] = [], opts: { ownModes?: boolean } = {}): string | undefined {
  const key = encryptedNames.join('\n');
  let m = matchers.get(policy);
  if (!m || m.encrypted !== key) {
    m = { encrypted: key, matcher: new DomainMatcher(policy, encryptedNames) };
    matchers.set(policy, m);
  }
  const n = canonicalName(name);
  const rules = nameRules(m.matcher.match(n));
  const why = nameRefusal(n, rules, m.matcher, policy.defaultAction);
  // ownModes: as the guard acts on it (DnsGuard.auditedFor): a deny rule in audit by its own mode only
  // records the lookup, and the name is answered (an encrypted-DNS endpoint is refused whatever the modes).
  if (why !== undefined && opts.ownModes && rules.refusedBy?.mode === 'audit' && !m.matcher.encryptedEndpoint(n)) return undefined;
  return why;
}
