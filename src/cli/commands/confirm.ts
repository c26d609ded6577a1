import { TABLE_NAME } from '../../compile/ruleset.js';
import { SluiceError } from '../../errors.js';
import { EXIT, type Context } from '../context.js';
import { stopTimer } from './apply.js';

/** `sluice confirm`: keep the policy applied with --confirm. */
export function confirm(ctx: Context): number {
  return ctx.state.withLock(() => {
    const pending = ctx.state.pending();
    if (!pending) {
      ctx.say('Nothing to confirm: no apply is waiting for confirmation.');
      ctx.result({ confirmed: false, reason: 'nothing pending' });
      return EXIT.failed;
    }
    ctx.state.setPending(null);
    if (pending.timerPid) stopTimer(pending.timerPid);
    ctx.state.journal({ event: 'confirm', deadline: pending.deadline });
    const late = Date.parse(pending.deadline) < Date.now();
    ctx.say(late ? 'Confirmed (after the deadline; the rollback timer had not run).' : 'Confirmed: the applied policy stays.');
    ctx.result({ confirmed: true, late });
    return EXIT.ok;
  });
}

/** Hidden `sluice _rollback TOKEN`: the timer process started by apply --confirm. */
export async function rollbackTimer(ctx: Context, token: string): Promise<number> {
  const first = ctx.state.pending();
  if (!first || first.token !== token) return EXIT.ok;
  const wait = Math.max(0, Date.parse(first.deadline) - Date.now());
  await new Promise((r) => setTimeout(r, wait));
  const code = ctx.state.withLock(() => {
    const pending = ctx.state.pending();
    // Confirmed, or superseded by a newer apply: nothing to do.
    if (!pending || pending.token !== token) return EXIT.ok;
    const nf = ctx.netfilter();
    try {
      if (pending.previous) nf.replace(pending.previous);
      else nf.remove(TABLE_NAME);
    } catch (err) {
      ctx.state.journal({ event: 'rollback-failed', error: (err as Error).message });
      throw new SluiceError('EROLLBACK', `Rollback failed: ${(err as Error).message}`, { cause: err });
    }
    ctx.state.setApplied(pending.previousState);
    ctx.state.setPending(null);
    ctx.state.journal({ event: 'rollback', restored: pending.previous ? (pending.previousState?.sha256 ?? 'previous table') : 'no table' });
    process.stdout.write(`${new Date().toISOString()} rolled back: not confirmed by ${pending.deadline}\n`);
    return EXIT.ok;
  });
  await ctx.notifyDaemon();
  return code;
}
