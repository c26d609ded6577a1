import { TABLE_NAME } from '../../compile/ruleset.js';
import { EXIT, type Context } from '../context.js';
import { stopTimer } from './apply.js';

/** `sluice off`: remove Sluice's table; outbound is open again. Other tables are untouched. */
export async function off(ctx: Context): Promise<number> {
  const nf = ctx.netfilter();
  const code = ctx.state.withLock(() => {
    const removed = nf.remove(TABLE_NAME);
    const pending = ctx.state.pending();
    if (pending?.timerPid) stopTimer(pending.timerPid);
    ctx.state.setPending(null);
    ctx.state.setApplied(null);
    ctx.state.journal({ event: 'off', removed });
    ctx.say(removed ? 'Removed table inet sluice: outbound traffic is no longer filtered by Sluice.' : 'No Sluice table was loaded; nothing to remove.');
    ctx.result({ removed });
    return EXIT.ok;
  });
  await ctx.notifyDaemon();
  return code;
}
