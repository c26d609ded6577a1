import { SluiceError } from '../errors.js';
import { parsePolicy } from '../policy/load-policy.js';
import type { ListRead } from '../policy/list-file.js';
import type { Policy } from '../policy/policy.js';
import { lookupUsers } from '../system/users.js';
import type { AppliedState, StateStore } from './state-store.js';

/**
 * The applied policy, parsed from the state directory's snapshot; null when
 * nothing is applied, throws when the snapshot is missing or bad. With it
 * its text, and a parser that reads another text as this one was read (the
 * list files as they were applied): what an edit of it would load to.
 */
export function loadAppliedPolicy(state: StateStore): { policy: Policy; applied: AppliedState; text: string; parse: (text: string) => Policy } | null {
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
  const parse = (text: string) => parsePolicy(Buffer.from(text), applied.policyFile, { lookupUsers, readList });
  return { policy: parsePolicy(bytes, applied.policyFile, { lookupUsers, readList }), applied, text: bytes.toString('utf8'), parse };
}
