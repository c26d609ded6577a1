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
  match(name: string): readonly Rule[] {
    const n = canonicalName(name);
    if (n.includes('\\')) return NONE;
    // Usually one pattern matches: its list is returned as is (shared, never to be changed by
    // callers), which also lets callers memoise per list.
    let only: Rule[] | undefined = this.exact.get(n);
    let out: Set<Rule> | undefined;
    const add = (list: Rule[] | undefined) => {
      if (!list) return;
      if (!only && !out) {
        only = list;
        return;
      }
      out ??= new Set(only);
      for (const r of list) out.add(r);
    };
    let dot = n.indexOf('.');
    while (dot >= 0) {
      add(this.wildcard.get(n.slice(dot + 1)));
      dot = n.indexOf('.', dot + 1);
    }
    if (out) return [...out];
    return only ?? NONE;
  }
}

const NONE: readonly Rule[] = Object.freeze([]);
