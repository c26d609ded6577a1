import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { UsageError } from '../../errors.js';
import { MAX_CONFIRM_SECONDS } from '../spec.js';
import { parseCandidateRequest } from '../../state/candidate-request.js';
import type { Context } from '../context.js';
import { apply } from './apply.js';

/**
 * Hidden `sluice _apply-candidate REQUEST`: the dashboard's apply, run as
 * its own process so it is `sluice apply --confirm` itself (the same load,
 * compile, table writer, rollback timer and daemon notification), with the
 * candidate read as the policy file it would replace, the applied policy it
 * was computed against checked under the lock, and who asked in the journal.
 */
export async function applyCandidate(ctx: Context, requestFile: string): Promise<number> {
  if (!isAbsolute(requestFile)) throw new UsageError(`_apply-candidate wants the absolute path of a request: ${JSON.stringify(requestFile)}`);
  const r = parseCandidateRequest(readFileSync(requestFile, 'utf8'), MAX_CONFIRM_SECONDS);
  if (!r.ok) throw new UsageError(`Bad candidate request ${requestFile}: ${r.error}`);
  const q = r.value;
  return apply(ctx, { policy: q.candidate, confirm: q.confirm, candidate: { as: q.policyFile, expectApplied: q.expectApplied, unlessChangedFrom: q.unlessChangedFrom, by: q.by } });
}
