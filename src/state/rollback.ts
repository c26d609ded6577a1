import type { Netfilter } from '../netfilter/netfilter.js';
import { appliedPolicy, commitTable } from './commit-table.js';
import type { StateStore } from './state-store.js';
import { SluiceError } from '../errors.js';

/**
 * Restores the rollback target of the pending confirmation `token` (or of
 * whatever is pending, with null): the previous table, or none. The applied
 * state becomes the previous one; a rollback to no table records Sluice as
 * off, so no restart re-applies the policy that was rolled back. Returns
 * false when there was nothing to roll back (confirmed, superseded). The
 * timer process, the daemon and boot-time restore all use it; whichever
 * comes first rolls back, the others find nothing pending.
 */
export function rollBackPending(nf: Netfilter, state: StateStore, token: string | null, why: string): boolean {
  const pending = state.pending();
  if (!pending || (token !== null && pending.token !== token)) return false;
  const prev = pending.previousState;
  try {
    return commitTable(nf, state, {
      event: 'rollback',
      // Confirmed or superseded since it was read: nothing to do.
      precondition: (v) => (v.pending?.token === pending.token ? null : 'confirmed or superseded'),
      ruleset: pending.previous,
      policy: pending.previous && prev ? appliedPolicy(prev) : null,
      journal: { why, restored: pending.previous ? (prev?.sha256 ?? 'previous table') : 'no table' },
    }).written;
  } catch (err) {
    state.journal({ event: 'rollback-failed', error: (err as Error).message });
    throw new SluiceError('EROLLBACK', `Rollback failed: ${(err as Error).message}`, { cause: err });
  }
}
