import type { Netfilter } from '../netfilter/netfilter.js';
import { appliedPolicy, commitTable } from './commit-table.js';
import type { StateStore } from './state-store.js';
import { SluiceError } from '../errors.js';

/**
 * Who rolled back, for the journal's `by`: the confirmation timer (the
 * `sluice _rollback` process apply --confirm started, or the daemon's own
 * watch on the same deadline, or the daemon finding the deadline passed when
 * it starts), or the boot-time `sluice restore` finding an apply that was
 * never confirmed. No person asked for these: `via` names the mechanism.
 */
export interface RollbackBy {
  via: 'confirm-timer' | 'restore';
  /** The process that acted: the timer process, the daemon, or `sluice restore`. */
  process: 'sluice _rollback' | 'daemon' | 'sluice restore';
}

/**
 * Restores the rollback target of the pending confirmation `token` (or of
 * whatever is pending, with null): the previous table, or none. The applied
 * state becomes the previous one; a rollback to no table records Sluice as
 * off, so no restart re-applies the policy that was rolled back. Returns
 * false when there was nothing to roll back (confirmed, superseded). The
 * timer process, the daemon and boot-time restore all use it; whichever
 * comes first rolls back, the others find nothing pending. `by` says which
 * of them did, in the journal (as `by` of an apply says who applied).
 */
export function rollBackPending(nf: Netfilter, state: StateStore, token: string | null, why: string, by: RollbackBy): boolean {
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
      journal: { why, by, restored: pending.previous ? (prev?.sha256 ?? 'previous table') : 'no table' },
    }).written;
  } catch (err) {
    state.journal({ event: 'rollback-failed', by, error: (err as Error).message });
    throw new SluiceError('EROLLBACK', `Rollback failed: ${(err as Error).message}`, { cause: err });
  }
}
