import { TABLE_NAME } from '../../compile/ruleset.js';
import { restoreApplied } from '../../state/commit-table.js';
import { rollBackPending } from '../../state/rollback.js';
import { EXIT, type Context } from '../context.js';

/**
 * `sluice restore`: puts the last applied ruleset back into the kernel, as
 * it was applied, without reading any policy file, resolving any user or
 * starting anything. The boot unit (sluice-restore.service) runs it before
 * the network comes up, so the host is never without its egress policy, even
 * when the daemon cannot start. An apply still waiting for confirmation when
 * the host went down is rolled back instead (its timer died with the host).
 * After `sluice off`, or when nothing was ever applied, it does nothing.
 * Run by hand while the daemon runs, it also tells the daemon (which takes
 * an owned table back).
 */
export async function restore(ctx: Context): Promise<number> {
  // A table a running daemon holds (owned_table) is let go of for this write, as for apply.
  const nf = await ctx.tableWriter();
  if (ctx.state.isOff()) {
    ctx.say('Sluice is off (sluice off): nothing to restore.');
    ctx.result({ restored: false, reason: 'off' });
    return EXIT.ok;
  }
  const pending = ctx.state.pending();
  if (pending) {
    const rolled = rollBackPending(nf, ctx.state, pending.token, 'restored after a restart, before it was confirmed', { via: 'restore', process: 'sluice restore' });
    const applied = ctx.state.applied();
    ctx.say(rolled ? `Rolled back an apply that was not confirmed before the restart: ${applied ? `restored the policy with sha256 ${applied.sha256.slice(0, 16)}` : 'no table'}.` : 'The pending confirmation went away meanwhile.');
    ctx.result({ restored: rolled, rolledBack: rolled, sha256: applied?.sha256 ?? null });
    return EXIT.ok;
  }
  const applied = ctx.state.applied();
  if (!applied) {
    ctx.say('Nothing was applied: nothing to restore.');
    ctx.result({ restored: false, reason: 'nothing applied' });
    return EXIT.ok;
  }
  const r = restoreApplied(nf, ctx.state, applied, 'sluice restore');
  if (r.skipped === 'already live') ctx.say(`Already live: table inet ${TABLE_NAME} holds the applied policy (sha256 ${applied.sha256.slice(0, 16)}).`);
  else if (!r.written) ctx.say(`Not restored: ${r.skipped ?? 'unknown reason'}.`);
  else ctx.say(`Restored table inet ${TABLE_NAME}: the policy applied ${applied.appliedAt} (${applied.mode} mode, sha256 ${applied.sha256.slice(0, 16)}) in ${r.ms.toFixed(0)} ms.`);
  if (r.written) await ctx.notifyDaemon();
  ctx.result({ restored: r.written, skipped: r.skipped ?? null, sha256: applied.sha256, mode: applied.mode, verified: r.verified, ms: Math.round(r.ms * 10) / 10 });
  return r.written && !r.verified ? EXIT.failed : EXIT.ok;
}
