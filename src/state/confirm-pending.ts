import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { PendingConfirm, StateStore } from './state-store.js';
import { writeBytesAtomic } from './state-store.js';

/** What a confirmation did. */
export interface ConfirmResult {
  confirmed: boolean;
  /** Confirmed after the deadline (the rollback timer had not run yet). */
  late?: boolean;
  /** The pending confirmation that was cleared. */
  pending?: PendingConfirm;
  /** An apply of a candidate: whether its text went into the policy file, and why not. */
  wroteBack?: { file: string; written: boolean; reason?: string };
}

/**
 * Keeps the policy applied with a confirmation window (`sluice confirm`,
 * the dashboard's Confirm): under the state lock, the pending confirmation
 * is cleared (the rollback timer sees it gone and exits) and a journal line
 * names who confirmed. An apply of a candidate file (the dashboard's "allow
 * this", "roll back to this one") then has its text written over the policy
 * file, atomically and with the file's mode, so the file says what is
 * applied and the daemon's file watch finds the same hash and does nothing;
 * unless the file changed since (someone's edit is never overwritten).
 */
export function confirmPending(state: StateStore, by: Record<string, unknown>): ConfirmResult {
  return state.withLock((): ConfirmResult => {
    const pending = state.pending();
    if (!pending) return { confirmed: false };
    state.setPending(null);
    const late = Date.parse(pending.deadline) < Date.now();
    const wroteBack = pending.writeBack ? writeBack(pending.writeBack) : undefined;
    state.journal({ event: 'confirm', deadline: pending.deadline, by, ...(wroteBack ? { wroteBack } : {}) });
    return { confirmed: true, late, pending, ...(wroteBack ? { wroteBack } : {}) };
  });
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function writeBack(w: NonNullable<PendingConfirm['writeBack']>): NonNullable<ConfirmResult['wroteBack']> {
  try {
    let mode = 0o600;
    let current: Buffer | null = null;
    try {
      current = readFileSync(w.policyFile);
      mode = statSync(w.policyFile).mode & 0o7777;
    } catch {
      current = null;
    }
    if (w.unlessChangedFrom !== null && (current === null || sha256(current) !== w.unlessChangedFrom)) {
      return { file: w.policyFile, written: false, reason: `the file changed since the apply; the confirmed policy is in ${w.candidate}` };
    }
    writeBytesAtomic(w.policyFile, readFileSync(w.candidate), mode);
    return { file: w.policyFile, written: true };
  } catch (err) {
    return { file: w.policyFile, written: false, reason: (err as Error).message };
  }
}
