import type { CompileResult } from '../compile/compile-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import type { StateStore } from '../state/state-store.js';

/**
 * The service watch's one write to the kernel table, as a transaction on the
 * state directory: under the state lock, and only if the policy it compiled
 * (`sha256`) is the one applied now, read from applied.json under that lock
 * right before writing. Nothing applied (after `sluice off`), or another
 * policy applied (by the CLI, not yet adopted by the daemon): the table is
 * not the watch's to write, and it is left as it is.
 *
 * `lockWaitMs` is short because the caller is the daemon's event loop: a
 * held lock throws ELOCKED and the caller tries again later, instead of the
 * loop (which also answers DNS) waiting for it.
 *
 * Kept apart from the watch so it can become a call of the shared apply
 * transaction (lock, apply, read back, journal, state).
 */
export function writeServiceRuleset(state: StateStore, nf: Netfilter, sha256: string, compiled: CompileResult, lockWaitMs = 0): 'written' | 'not-applied' {
  return state.withLock(() => {
    const applied = state.applied();
    if (!applied || applied.sha256 !== sha256) return 'not-applied';
    nf.replace(compiled.ruleset);
    state.setApplied({ ...applied, ruleset: compiled.ruleset, warnings: compiled.warnings, appliedAt: new Date().toISOString() });
    state.journal({ event: 'service-cgroups-changed', sha256 });
    return 'written';
  }, lockWaitMs);
}
