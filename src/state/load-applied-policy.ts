import { SluiceError } from '../errors.js';
import { parsePolicy } from '../policy/load-policy.js';
import type { ListRead } from '../policy/list-file.js';
import type { Policy } from '../policy/policy.js';
import { lookupUsers } from '../system/users.js';
import type { AppliedState, StateStore } from './state-store.js';

/** The applied policy, parsed from the state directory's snapshot; null when nothing is applied, throws when the snapshot is missing or bad. */
export function loadAppliedPolicy(state: StateStore): { policy: Policy; applied: AppliedState } | null {
  const applied = state.applied();
  if (!applied) return null;
  const bytes = state.policySnapshot(applied.sha256);
  if (!bytes) throw new SluiceError('ESTATE', `No snapshot of the applied policy ${applied.sha256.slice(0, 16)}`);
  // The list files as they were applied (the files on disk may have changed since).
  const lists = state.policyListsSnapshot(applied.sha256);
  const readList = (path: string): ListRead => {
    const b = lists.get(path);
    return b ? { ok: true, bytes: b } : { ok: false, reason: 'not in the snapshot of the applied policy' };
  };
  return { policy: parsePolicy(bytes, applied.policyFile, { lookupUsers, readList }), applied };
}
