import { parseSetName } from '../compile/kernel-names.js';
import type { Ruleset } from '../compile/ruleset.js';
import type { Family } from '../net/ip.js';

/** What opened an address: the rules whose DNS sets hold it in the kernel, and the names whose answers put it there. */
export interface Opened {
  rules: string[];
  names: string[];
}

export type OpenedLookup = (family: Family, addr: bigint) => Opened | undefined;

/**
 * The addresses the DNS guard opened, as the kernel holds them: each element
 * of a rule's DNS set (r_RULE_d4, r_RULE_d6) names that rule. The names come
 * from whoever knows them (the daemon's guard, or its saved state when it is
 * down); the rule never comes from a name, only from the kernel's sets.
 */
export function openedFromKernel(rs: Pick<Ruleset, 'sets'> | null | undefined, namesFor: (family: Family, addr: bigint) => string[]): OpenedLookup {
  const rules = new Map<string, string[]>();
  for (const s of rs?.sets ?? []) {
    const ref = parseSetName(s.name);
    if (ref?.kind !== 'rule' || (ref.dim !== 'd4' && ref.dim !== 'd6')) continue;
    for (const e of s.elements) {
      if (e.t !== 'addr' || e.start !== e.end || `d${e.family}` !== ref.dim) continue;
      const key = `${e.family}/${e.start}`;
      const list = rules.get(key);
      if (!list) rules.set(key, [ref.rule]);
      else if (!list.includes(ref.rule)) list.push(ref.rule);
    }
  }
  return (family, addr) => {
    const r = rules.get(`${family}/${addr}`);
    return r ? { rules: r, names: namesFor(family, addr) } : undefined;
  };
}
