import { commitTable } from '../../state/commit-table.js';
import { EXIT, type Context } from '../context.js';

/**
 * `sluice off`: remove Sluice's table; outbound is open again. Other tables
 * are untouched. Recorded as off, so no restart of the daemon and no reboot
 * brings the table back; only an apply does.
 */
export async function off(ctx: Context): Promise<number> {
  const r = commitTable(await ctx.tableWriter(), ctx.state, { event: 'off', ruleset: null, policy: null });
  const removed = r.removed ?? false;
  ctx.say(removed ? 'Removed table inet sluice: outbound traffic is no longer filtered by Sluice.' : 'No Sluice table was loaded; nothing to remove.');
  ctx.result({ removed });
  await ctx.notifyDaemon();
  return EXIT.ok;
}
