import type { Policy, Rule } from '../policy/policy.js';
import { canonicalName } from './dns-message.js';

/**
 * Which rules match a name. Compiled once per policy: exact names in one
 * map, wildcard suffixes in another; a lookup walks the name's suffixes on
 * label boundaries, so its cost is the number of labels, whatever the number
 * of patterns. `*.example.com` matches `a.example.com` and `a.b.example.com`,
 * never `example.com` or `evil-example.com`.
 *
 * Every comparison of a name with the policy goes through here, after the
 * one canonicalisation (canonicalName): the queried name, every name on an
 * answer's CNAME chain, SVCB/HTTPS target names, and the encrypted-DNS
 * endpoint list.
 */
export class DomainMatcher {
  private exact = new Map<string, Rule[]>();
  private wildcard = new Map<string, Rule[]>();
  private encrypted: Set<string>;

  constructor(policy: Pick<Policy, 'rules'>, encryptedNames: Iterable<string> = []) {
    for (const rule of policy.rules) {
      for (const d of rule.domains) {
        const map = d.wildcard ? this.wildcard : this.exact;
        const list = map.get(d.name) ?? [];
        if (!list.includes(rule)) list.push(rule);
        map.set(d.name, list);
      }
    }
    this.encrypted = new Set([...encryptedNames].map((n) => canonicalName(n)));
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

  /** Rules that name `name` exactly (not through a wildcard). */
  exactly(name: string): readonly Rule[] {
    const n = canonicalName(name);
    return n.includes('\\') ? NONE : (this.exact.get(n) ?? NONE);
  }

  /**
   * Whether `name` is a known encrypted-DNS endpoint the guard refuses: it
   * is on the list, and no allow rule names it exactly (a wildcard is not
   * an explicit allow).
   */
  encryptedEndpoint(name: string): boolean {
    const n = canonicalName(name);
    return this.encrypted.has(n) && !this.exactly(n).some((r) => r.action === 'allow');
  }

  /** Every exact name of the policy's deny rules, with its rules (what the guard resolves itself to fill their sets). */
  deniedNames(): { name: string; rules: readonly Rule[] }[] {
    const out: { name: string; rules: readonly Rule[] }[] = [];
    for (const [name, rules] of this.exact) {
      const denies = rules.filter((r) => r.action === 'deny');
      if (denies.length > 0) out.push({ name, rules: denies });
    }
    return out;
  }
}

const NONE: readonly Rule[] = Object.freeze([]);
