import type { CompileResult } from '../compile/compile-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import { appliedPolicy, commitTable } from '../state/commit-table.js';
import type { StateStore } from '../state/state-store.js';

/**
 * The service watch's one write to the kernel table, through the one table
 * writer: under the state lock, and only if the policy it compiled
 * (`sha256`) is the one applied now, read from applied.json under that lock
 * right before writing. Nothing applied (after `sluice off`), or another
 * policy applied (by the CLI, not yet adopted by the daemon): the table is
 * not the watch's to write, and it is left as it is. New cgroup ids do not
 * change what the policy means: the flow epoch stays.
 *
 * `lockWaitMs` is short because the caller is the daemon's event loop: a
 * held lock throws ELOCKED and the caller tries again later, instead of the
 * loop (which also answers DNS) waiting for it.
 */
export function writeServiceRuleset(state: StateStore, nf: Netfilter, sha256: string, compiled: CompileResult, lockWaitMs = 0): 'written' | 'not-applied' {
  const r = commitTable(nf, state, {
    event: 'service-cgroups-changed',
    ruleset: compiled.ruleset,
    // The applied policy, with the ruleset its new cgroup ids give.
    policy: (v) => (v.applied ? appliedPolicy(v.applied, compiled.warnings) : null),
    epoch: 'keep',
    pending: 'keep',
    lockWaitMs,
    precondition: (v) => (v.applied?.sha256 === sha256 && !v.off ? null : 'not-applied'),
  });
  return r.written ? 'written' : 'not-applied';
}
