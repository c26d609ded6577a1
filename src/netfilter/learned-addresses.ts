import { objectNames } from '../compile/kernel-names.js';
import { TABLE_NAME } from '../compile/ruleset.js';
import type { AddrRange } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';
import type { Netfilter } from './netfilter.js';

/**
 * The addresses the DNS guard learned for each domain rule, read from the
 * live table's DNS sets (what explain needs to say an address is open by
 * name). Undefined when the policy has no domain rules, there is no table,
 * or it cannot be read (not root): explain then goes by the policy alone.
 */
export function learnedAddresses(nf: Netfilter, policy: Policy): Map<string, AddrRange[]> | undefined {
  if (!policy.rules.some((r) => r.domains.length > 0)) return undefined;
  try {
    const live = nf.read(TABLE_NAME, { elements: 'dynamic' });
    if (!live) return undefined;
    const learned = new Map<string, AddrRange[]>();
    for (const rule of policy.rules) {
      const names = new Set([objectNames.dnsSet(rule.name, 4), objectNames.dnsSet(rule.name, 6)]);
      const addrs = live.ruleset.sets
        .filter((s) => names.has(s.name))
        .flatMap((s) => s.elements)
        .flatMap((e) => (e.t === 'addr' ? [{ family: e.family, start: e.start, end: e.end }] : []));
      if (addrs.length > 0) learned.set(rule.name, addrs);
    }
    return learned;
  } catch {
    return undefined;
  }
}
