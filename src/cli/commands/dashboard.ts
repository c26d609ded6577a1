import { SluiceError } from '../../errors.js';
import { dashboardTokenPath, readDashboardToken, signInUrl } from '../../daemon/dashboard-auth.js';
import { formatListen } from '../../policy/listen-address.js';
import { EXIT, type Context } from '../context.js';
import { loadAppliedPolicy } from './connections.js';

/**
 * `sluice dashboard [--json]`: the sign-in link of the dashboard the daemon
 * serves (policy key `dashboard.listen`), with the token from the state
 * directory. Root only: the token file is readable by root alone, and the
 * link is as good as the token.
 */
export function dashboard(ctx: Context): number {
  const loaded = loadAppliedPolicy(ctx);
  const listen = loaded?.policy.dashboard?.listen;
  if (!listen) {
    ctx.say('The dashboard is off: the applied policy has no dashboard key (add `dashboard: {listen: 127.0.0.1:9330}` and apply it).');
    ctx.result({ on: false });
    return EXIT.failed;
  }
  const path = dashboardTokenPath(ctx.state.dir);
  let token: string;
  try {
    token = readDashboardToken(path);
  } catch (err) {
    const code = (err as Error).message.includes('ENOENT') ? 'the daemon has not made it yet (is `sluice daemon` running?)' : (err as Error).message.includes('EACCES') ? 'run this as root' : (err as Error).message;
    throw new SluiceError('EDASHBOARD', `Cannot read the dashboard token ${path}: ${code}`);
  }
  const url = signInUrl(listen, token);
  ctx.say(`Open ${url}`);
  ctx.say(`(the link signs this browser in; keep it private: it is as good as the token in ${path})`);
  ctx.result({ on: true, listen: formatListen(listen), url });
  return EXIT.ok;
}
