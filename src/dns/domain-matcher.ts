import type { Policy, Rule } from '../policy/policy.js';
import { canonicalName } from './dns-message.js';

/**
 * Which rules allow a queried name. Compiled once per policy: exact names in
 * one map, wildcard suffixes in another; a lookup walks the name's suffixes
 * on label boundaries, so its cost is the number of labels, whatever the
 * number of patterns. `*.example.com` matches `a.example.com` and
 * `a.b.example.com`, never `example.com` or `evil-example.com`.
 */
export class DomainMatcher {
  private exact = new Map<string, Rule[]>();
  private wildcard = new Map<string, Rule[]>();

  constructor(policy: Pick<Policy, 'rules'>) {
    for (const rule of policy.rules) {
      for (const d of rule.domains) {
        const map = d.wildcard ? this.wildcard : this.exact;
        const list = map.get(d.name) ?? [];
        if (!list.includes(rule)) list.push(rule);
        map.set(d.name, list);
      }
    }
  }

  /** True when the policy has any domain rule at all. */
  get empty(): boolean {
    return this.exact.size === 0 && this.wildcard.size === 0;
  }

  /**
   * Rules whose patterns match `name` (presentation form, any case). Names
   * with escaped bytes never match: policy patterns only hold letters,
   * digits, hyphens and underscores.
   */
  match(name: string): Rule[] {
    const n = canonicalName(name);
    if (n.includes('\\')) return [];
    const out = new Set<Rule>(this.exact.get(n) ?? []);
    let dot = n.indexOf('.');
    while (dot >= 0) {
      for (const r of this.wildcard.get(n.slice(dot + 1)) ?? []) out.add(r);
      dot = n.indexOf('.', dot + 1);
    }
    return [...out];
  }
}
