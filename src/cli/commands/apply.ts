import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIssue } from '../../errors.js';
import { textDiff } from '../../policy/text-diff.js';
import { commitTable, confirmWindow, type CommitView } from '../../state/commit-table.js';
import { EXIT, type Context } from '../context.js';
import { dnsGuardListens } from '../../policy/builtins.js';

/**
 * An apply of a candidate file (the dashboard's "allow this" and "roll back
 * to this one", through the hidden `sluice _apply-candidate REQUEST`): read
 * as the policy file it would replace (`as`), applied only if what is
 * applied is still `expectApplied` (checked under the state lock), and, once
 * confirmed, written over that file (PendingConfirm.writeBack).
 */
export interface CandidateApply {
  as: string;
  expectApplied: string;
  /** The hash of the policy file's text the candidate may replace at confirmation (null: whatever it holds). */
  unlessChangedFrom: string | null;
  by: Record<string, unknown>;
}

/** Who ran a CLI command, for the journal: the uid, and the user sudo names. */
export function cliIdentity(): Record<string, unknown> {
  return { via: 'cli', uid: process.getuid?.() ?? null, ...(process.env.SUDO_USER ? { sudoUser: process.env.SUDO_USER.slice(0, 64) } : {}) };
}

/** A journal line holds at most this much of a diff (the journal is read line by line). */
const JOURNAL_DIFF_MAX = 6_000;

/** The diff from the applied policy's snapshot to `bytes`, for the journal (cut at JOURNAL_DIFF_MAX). */
function journalDiff(ctx: Context, bytes: Buffer): { previous: string | null; diff: string; diffCut?: true } {
  const applied = ctx.state.applied();
  const before = applied ? ctx.state.policySnapshot(applied.sha256) : null;
  const diff = textDiff(before?.toString('utf8') ?? '', bytes.toString('utf8'), applied ? `applied ${applied.sha256.slice(0, 16)}` : 'nothing applied', 'new');
  return { previous: applied?.sha256 ?? null, diff: diff.length > JOURNAL_DIFF_MAX ? diff.slice(0, JOURNAL_DIFF_MAX) : diff, ...(diff.length > JOURNAL_DIFF_MAX ? { diffCut: true as const } : {}) };
}

/** `sluice apply [POLICY] [--confirm SECONDS]`: atomic; with --confirm, rolls back unless confirmed in time. */
export async function apply(ctx: Context, args: { policy?: string; confirm?: number; candidate?: CandidateApply }): Promise<number> {
  // Parsed and range-checked (1 to MAX_CONFIRM_SECONDS) by the command line, spec.ts, like every numeric flag.
  const confirmSeconds = args.confirm;
  const cand = args.candidate;
  // Validate and compile before touching anything: a bad policy never reaches the kernel.
  const { policy: p, bytes, lists } = ctx.loadPolicyForApply(args.policy, cand?.as);
  const { ruleset, warnings } = ctx.compile(p);
  const nf = await ctx.tableWriter();
  const what = journalDiff(ctx, bytes);

  let note: string | undefined;
  const token = randomBytes(16).toString('hex');
  const deadline = confirmSeconds !== undefined ? new Date(Date.now() + confirmSeconds * 1000).toISOString() : undefined;
  const r = commitTable(nf, ctx.state, {
    event: 'apply',
    ruleset,
    policy: { policyFile: p.file, sha256: p.sha256, mode: p.mode, warnings, bytes, lists },
    journal: { confirmBy: deadline ?? null, by: cand?.by ?? cliIdentity(), ...(cand ? { candidate: args.policy } : {}), ...what },
    ...(cand ? { precondition: (v: CommitView) => (v.applied?.sha256 === cand.expectApplied && !v.off ? null : 'the applied policy changed since') } : {}),
    // Without --confirm there is nothing to roll back to. A new apply during a confirmation
    // window keeps the original rollback target.
    pending:
      deadline === undefined
        ? 'clear'
        : (v: CommitView) => ({
            ...confirmWindow(token, deadline, (text) => (note = text))(v),
            // Within a window already open, the policy file still holds what it held when the window
            // opened (nothing is written to it before a confirmation): that is what it may replace.
            ...(cand && args.policy ? { writeBack: { candidate: args.policy, policyFile: resolve(cand.as), unlessChangedFrom: v.pending ? (v.pending.writeBack?.unlessChangedFrom ?? v.pending.previousState?.sha256 ?? cand.unlessChangedFrom) : cand.unlessChangedFrom } } : {}),
          }),
  });
  if (!r.written) {
    ctx.say(`Not applied: ${r.skipped ?? 'refused'}`);
    ctx.result({ applied: false, reason: r.skipped ?? 'refused', stale: true });
    return EXIT.failed;
  }
  if (deadline !== undefined) {
    const pid = startRollbackTimer(ctx.state.dir, token);
    ctx.state.withLock(() => {
      const pending = ctx.state.pending();
      if (pending?.token === token) ctx.state.setPending({ ...pending, timerPid: pid });
    });
  }

  const elements = ruleset.sets.reduce((n, s) => n + s.elements.length, 0);
  for (const w of p.warnings) ctx.say(formatIssue(w));
  for (const w of warnings) ctx.say(`warning: ${w}`);
  if (note) ctx.say(`note: ${note}`);
  ctx.say(
    `Applied ${p.file} (sha256 ${p.sha256.slice(0, 16)}) in ${p.mode} mode: ${p.rules.length} rules, ${ruleset.sets.length} sets, ${elements} elements, one transaction in ${r.ms.toFixed(0)} ms`,
  );
  if (p.mode === 'audit') ctx.say('Audit mode: nothing is blocked; what would be blocked is logged.');
  if (!r.verified) ctx.say('WARNING: the table read back differs from what was written; run `sluice status`');
  if (deadline) ctx.say(`Run \`sluice confirm\` within ${confirmSeconds}s (before ${deadline}) or the previous ruleset comes back.`);
  ctx.result({
    applied: true,
    file: p.file,
    sha256: p.sha256,
    mode: p.mode,
    rules: p.rules.length,
    sets: ruleset.sets.length,
    elements,
    ms: Math.round(r.ms * 10) / 10,
    verified: r.verified,
    epoch: r.epoch,
    confirmBy: deadline ?? null,
    warnings: [...p.warnings.map((w) => w.message), ...warnings],
  });
  const code = r.verified ? EXIT.ok : EXIT.failed;
  const daemonRunning = await ctx.notifyDaemon();
  if (!daemonRunning && dnsGuardListens(p)) {
    ctx.say(`warning: DNS${p.mode === 'audit' ? " of the enforced scopes" : ''} now goes to the guard on port ${p.dns.port}, but no daemon is running: name lookups fail until \`sluice daemon\` runs`);
  }
  return code;
}

/**
 * Starts the detached process that rolls back at the deadline unless the
 * pending confirmation it was started for is gone by then (`confirm`, a
 * newer apply, `off`). It watches the state directory and exits by itself:
 * nobody ever signals it by a recorded pid, which after a reboot may belong
 * to any process.
 */
function startRollbackTimer(stateDir: string, token: string): number {
  const main = fileURLToPath(new URL('../main.js', import.meta.url));
  const log = openSync(join(stateDir, 'rollback.log'), 'a', 0o600);
  try {
    const child = spawn(process.execPath, [main, '_rollback', token], {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, SLUICE_STATE_DIR: stateDir },
    });
    child.unref();
    if (child.pid === undefined) throw new Error('could not start the rollback timer');
    return child.pid;
  } finally {
    closeSync(log);
  }
}
