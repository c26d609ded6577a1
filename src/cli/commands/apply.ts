import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TABLE_NAME, type Ruleset } from '../../compile/ruleset.js';
import { formatIssue, UsageError } from '../../errors.js';
import { sameStructure } from '../../netfilter/compare-ruleset.js';
import type { Netfilter } from '../../netfilter/netfilter.js';
import type { AppliedState, StateStore } from '../../state/state-store.js';
import { EXIT, type Context } from '../context.js';

const MAX_CONFIRM_SECONDS = 24 * 3600;

/**
 * What to restore if an unconfirmed apply times out: what is in the kernel
 * now, read back exactly, when Sluice can rewrite all of it; otherwise the
 * last policy Sluice applied.
 */
function rollbackTarget(nf: Netfilter, state: StateStore): { ruleset: Ruleset | null; note?: string } {
  const live = nf.read(TABLE_NAME);
  if (live === null) return { ruleset: null };
  if (live.anomalies.length === 0) return { ruleset: live.ruleset };
  const applied = state.applied();
  return {
    ruleset: applied?.ruleset ?? null,
    note: `the live table has parts Sluice did not write (${live.anomalies[0]}); a rollback restores the last applied policy instead`,
  };
}

/** `sluice apply [POLICY] [--confirm SECONDS]`: atomic; with --confirm, rolls back unless confirmed in time. */
export async function apply(ctx: Context, args: { policy?: string; confirm?: string }): Promise<number> {
  let confirmSeconds: number | undefined;
  if (args.confirm !== undefined) {
    if (!/^[0-9]+$/.test(args.confirm) || Number(args.confirm) < 1 || Number(args.confirm) > MAX_CONFIRM_SECONDS) {
      throw new UsageError(`--confirm takes a number of seconds from 1 to ${MAX_CONFIRM_SECONDS}: ${JSON.stringify(args.confirm)}`);
    }
    confirmSeconds = Number(args.confirm);
  }
  // Validate and compile before touching anything: a bad policy never reaches the kernel.
  const { policy: p, bytes } = ctx.loadPolicyForApply(args.policy);
  const { ruleset, warnings } = ctx.compile(p);
  const nf = ctx.netfilter();

  const code = ctx.state.withLock(() => {
    const pendingBefore = ctx.state.pending();
    // A new apply during a confirmation window keeps the original rollback target;
    // without --confirm there is nothing to roll back to, so the live table is not read.
    const target = pendingBefore
      ? { ruleset: pendingBefore.previous, previousState: pendingBefore.previousState }
      : confirmSeconds !== undefined
        ? { ...rollbackTarget(nf, ctx.state), previousState: ctx.state.applied() }
        : { ruleset: null, previousState: ctx.state.applied() };
    const started = performance.now();
    nf.replace(ruleset);
    const ms = performance.now() - started;
    // The kernel acknowledged every message of the transaction; read back the
    // structure (chains, rules, sets, objects) to be sure it is what was meant.
    // Elements are compared by status and plan.
    const live = nf.read(TABLE_NAME, { elements: 'none' });
    const verified = live !== null && sameStructure(ruleset, live);

    const applied: AppliedState = {
      appliedAt: new Date().toISOString(),
      policyFile: p.file,
      sha256: p.sha256,
      mode: p.mode,
      ruleset,
      warnings,
    };
    ctx.state.savePolicySnapshot(p.sha256, bytes);
    ctx.state.setApplied(applied);
    if (pendingBefore?.timerPid) stopTimer(pendingBefore.timerPid);

    let deadline: string | undefined;
    if (confirmSeconds !== undefined) {
      const token = randomBytes(16).toString('hex');
      deadline = new Date(Date.now() + confirmSeconds * 1000).toISOString();
      ctx.state.setPending({ token, deadline, previous: target.ruleset, previousState: target.previousState });
      const pid = startRollbackTimer(ctx.state.dir, token);
      ctx.state.setPending({ token, deadline, previous: target.ruleset, previousState: target.previousState, timerPid: pid });
    } else {
      ctx.state.setPending(null);
    }
    ctx.state.journal({ event: 'apply', policy: p.file, sha256: p.sha256, mode: p.mode, confirmBy: deadline ?? null, ms: Math.round(ms) });

    const elements = ruleset.sets.reduce((n, s) => n + s.elements.length, 0);
    for (const w of p.warnings) ctx.say(formatIssue(w));
    for (const w of warnings) ctx.say(`warning: ${w}`);
    if ('note' in target && target.note) ctx.say(`note: ${target.note}`);
    ctx.say(
      `Applied ${p.file} (sha256 ${p.sha256.slice(0, 16)}) in ${p.mode} mode: ${p.rules.length} rules, ${ruleset.sets.length} sets, ${elements} elements, one transaction in ${ms.toFixed(0)} ms`,
    );
    if (p.mode === 'audit') ctx.say('Audit mode: nothing is blocked; what would be blocked is logged.');
    if (!verified) ctx.say('WARNING: the table read back differs from what was written; run `sluice status`');
    if (deadline) ctx.say(`Run \`sluice confirm\` within ${confirmSeconds}s (before ${deadline}) or the previous ruleset comes back.`);
    ctx.result({
      applied: true,
      file: p.file,
      sha256: p.sha256,
      mode: p.mode,
      rules: p.rules.length,
      sets: ruleset.sets.length,
      elements,
      ms: Math.round(ms * 10) / 10,
      verified,
      confirmBy: deadline ?? null,
      warnings: [...p.warnings.map((w) => w.message), ...warnings],
    });
    return verified ? EXIT.ok : EXIT.failed;
  });
  const daemonRunning = await ctx.notifyDaemon();
  if (!daemonRunning && p.dns.guard && p.mode === 'enforce') {
    ctx.say(`warning: DNS now goes to the guard on port ${p.dns.port}, but no daemon is running: name lookups fail until \`sluice daemon\` runs`);
  }
  return code;
}

/** Starts the detached process that rolls back at the deadline unless `confirm` removes the pending file first. */
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

export function stopTimer(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
}
