import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { writeFileAtomic, type StateStore } from './state-store.js';

/**
 * A candidate policy and the request to apply it, as the dashboard writes
 * them for `sluice _apply-candidate REQUEST`. The candidate lives in
 * STATE/candidates (root, 0600), never over the policy file: the daemon's
 * file watch would reload an edited policy file at once, with no
 * confirmation window. Its text goes into the policy file only when the
 * apply is confirmed (confirm-pending.ts).
 */
export interface CandidateRequest {
  /** The candidate's path (STATE/candidates/SHA.yaml). */
  candidate: string;
  /** The policy file it is read as, and replaces once confirmed (the applied policy's file). */
  policyFile: string;
  /** The applied policy's hash it was computed against: anything else applied by then refuses the apply. */
  expectApplied: string;
  /** The policy file's text hash it may replace at confirmation (null: write whatever the file holds). */
  unlessChangedFrom: string | null;
  /** Seconds until the automatic rollback. */
  confirm: number;
  /** Who asked (the journal's `by`). */
  by: Record<string, unknown>;
}

const SHA = /^[0-9a-f]{64}$/;

/** Reads a request file's text; every field checked (it is read by root and names files to read and write). */
export function parseCandidateRequest(text: string, maxConfirm: number): { ok: true; value: CandidateRequest } | { ok: false; error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { ok: false, error: 'not an object' };
  const o = v as Record<string, unknown>;
  const path = (x: unknown) => typeof x === 'string' && x.length < 4096 && isAbsolute(x) && !x.includes('\0');
  if (!path(o.candidate)) return { ok: false, error: 'candidate: want an absolute path' };
  if (!path(o.policyFile)) return { ok: false, error: 'policyFile: want an absolute path' };
  if (typeof o.expectApplied !== 'string' || !SHA.test(o.expectApplied)) return { ok: false, error: 'expectApplied: want a sha256' };
  if (o.unlessChangedFrom !== null && (typeof o.unlessChangedFrom !== 'string' || !SHA.test(o.unlessChangedFrom))) return { ok: false, error: 'unlessChangedFrom: want a sha256 or null' };
  if (typeof o.confirm !== 'number' || !Number.isSafeInteger(o.confirm) || o.confirm < 1 || o.confirm > maxConfirm) return { ok: false, error: `confirm: want 1 to ${maxConfirm}` };
  if (!o.by || typeof o.by !== 'object' || Array.isArray(o.by)) return { ok: false, error: 'by: want an object' };
  return {
    ok: true,
    value: { candidate: o.candidate as string, policyFile: o.policyFile as string, expectApplied: o.expectApplied, unlessChangedFrom: (o.unlessChangedFrom as string | null) ?? null, confirm: o.confirm, by: o.by as Record<string, unknown> },
  };
}

/** Candidates kept at most (the oldest beyond go; the pending one is referenced by its own path until confirmed). */
const KEEP = 20;

/**
 * Writes `text` as a candidate (STATE/candidates/SHA.yaml, 0600) and its
 * request (a random name beside it); returns the request's path.
 */
export function writeCandidate(state: StateStore, text: string, req: Omit<CandidateRequest, 'candidate'>): { request: string; candidate: string; sha256: string } {
  const dir = join(state.dir, 'candidates');
  const sha256 = createHash('sha256').update(text, 'utf8').digest('hex');
  const candidate = join(dir, `${sha256}.yaml`);
  writeFileAtomic(candidate, text, 0o600);
  const request = join(dir, `request-${randomBytes(8).toString('hex')}.json`);
  writeFileAtomic(request, JSON.stringify({ ...req, candidate }), 0o600);
  try {
    const files = readdirSync(dir)
      .map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    const pending = state.pending()?.writeBack?.candidate;
    for (const { f } of files.slice(KEEP * 2)) if (join(dir, f) !== pending) rmSync(join(dir, f), { force: true });
  } catch {
    // Tidying only.
  }
  return { request, candidate, sha256 };
}
