import { parseChainName, parseLogPrefix, parseSetName, parseTableComment, RULE_SCOPE } from './kernel-names.js';
import type { Ruleset } from './ruleset.js';

/** Gradual enforcement as a ruleset holds it: each scope's mode and members, and each deny rule with a mode of its own. */
export interface ScopedModes {
  /** The policy's own mode (the table comment's). */
  mode: 'audit' | 'enforce' | null;
  scopes: { name: string; mode: 'audit' | 'enforce'; users: number[]; cgroups: number }[];
  rules: { rule: string; mode: 'audit' | 'enforce' }[];
}

/**
 * Reads the scoped modes back from a compiled or live ruleset (for
 * `status`): scopes from their sets (`s_<scope>_u`, `s_<scope>_cg<L>`; a
 * scope's mode is always the other one than the policy's, which the loader
 * guarantees), rules from their block chains' records (`@#rule`). What the
 * kernel holds, not what a policy file says.
 */
export function scopedModes(rs: Ruleset): ScopedModes {
  const mode = parseTableComment(rs.comment)?.mode ?? null;
  const other = mode === 'audit' ? 'enforce' : 'audit';
  const scopes = new Map<string, ScopedModes['scopes'][number]>();
  for (const set of rs.sets) {
    const ref = parseSetName(set.name);
    if (ref?.kind !== 'scope') continue;
    const sc = scopes.get(ref.scope) ?? { name: ref.scope, mode: other, users: [], cgroups: 0 };
    for (const e of set.elements) {
      if (e.t !== 'num') continue;
      if (ref.dim === 'u') sc.users.push(Number(e.value));
      else sc.cgroups++;
    }
    scopes.set(ref.scope, sc);
  }
  const rules: ScopedModes['rules'] = [];
  for (const chain of rs.chains) {
    const ref = parseChainName(chain.name);
    if (ref?.kind !== 'block') continue;
    for (const r of chain.rules) {
      const log = r.stmts.find((s) => s.k === 'log');
      const p = log && log.k === 'log' ? parseLogPrefix(log.prefix) : null;
      if (p?.scope === RULE_SCOPE) {
        rules.push({ rule: p.rule, mode: p.verdict === 'blocked' ? 'enforce' : 'audit' });
        break;
      }
    }
  }
  return { mode, scopes: [...scopes.values()].sort((a, b) => (a.name < b.name ? -1 : 1)), rules };
}
