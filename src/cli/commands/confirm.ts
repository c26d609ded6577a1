import { confirmPending } from '../../state/confirm-pending.js';
import { rollBackPending } from '../../state/rollback.js';
import { cliIdentity } from './apply.js';
import { EXIT, type Context } from '../context.js';

/** `sluice confirm`: keep the policy applied with --confirm. The rollback timer sees the confirmation gone and exits. */
export function confirm(ctx: Context): number {
  const r = confirmPending(ctx.state, cliIdentity());
  if (!r.confirmed) {
    ctx.say('Nothing to confirm: no apply is waiting for confirmation.');
    ctx.result({ confirmed: false, reason: 'nothing pending' });
    return EXIT.failed;
  }
  ctx.say(r.late ? 'Confirmed (after the deadline; the rollback timer had not run).' : 'Confirmed: the applied policy stays.');
  if (r.wroteBack) ctx.say(r.wroteBack.written ? `Wrote the confirmed policy to ${r.wroteBack.file}.` : `Did not write ${r.wroteBack.file}: ${r.wroteBack.reason ?? ''}`);
  ctx.result({ confirmed: true, late: r.late ?? false, ...(r.wroteBack ? { wroteBack: r.wroteBack } : {}) });
  return EXIT.ok;
}

/** How often the rollback timer looks whether its confirmation is still pending. */
const TIMER_POLL_MS = 250;

/**
 * Hidden `sluice _rollback TOKEN`: the timer process started by apply
 * --confirm. Until the deadline it checks that its confirmation is still
 * pending and exits as soon as it is not (confirmed, superseded, `off`);
 * at the deadline it rolls back through the one table writer.
 */
export async function rollbackTimer(ctx: Context, token: string): Promise<number> {
  const first = ctx.state.pending();
  if (!first || first.token !== token) return EXIT.ok;
  for (;;) {
    const left = Date.parse(first.deadline) - Date.now();
    if (left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(left, TIMER_POLL_MS)));
    if (ctx.state.pending()?.token !== token) return EXIT.ok;
  }
  return rollBack(ctx, token, 'not confirmed in time');
}

/** Rolls back the pending confirmation `token` and tells the daemon. */
async function rollBack(ctx: Context, token: string, why: string): Promise<number> {
  const pending = ctx.state.pending();
  if (!rollBackPending(await ctx.tableWriter(), ctx.state, token, why, { via: 'confirm-timer', process: 'sluice _rollback' })) return EXIT.ok;
  process.stdout.write(`${new Date().toISOString()} rolled back (${why}): not confirmed by ${pending?.deadline ?? '?'}\n`);
  await ctx.notifyDaemon();
  return EXIT.ok;
}
