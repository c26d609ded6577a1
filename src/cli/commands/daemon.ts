import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { TABLE_NAME } from '../../compile/ruleset.js';
import { daemonComponents } from '../../daemon/components.js';
import { Daemon, logLine, type PolicySource } from '../../daemon/daemon.js';
import { parseMetricsListen, type MetricsListen } from '../../daemon/metrics-server.js';
import { SluiceError, UsageError } from '../../errors.js';
import { native } from '../../native/native.js';
import { parsePolicy } from '../../policy/load-policy.js';
import { defaultPolicyPath, processAlive } from '../../state/state-store.js';
import { lookupUsers } from '../../system/users.js';
import { EXIT, type Context } from '../context.js';
import { loadAppliedPolicy } from './connections.js';

/** What the components run on while Sluice is off: watches nothing, blocks nothing, redirects nothing. */
const IDLE_POLICY = 'version: 1\nmode: audit\ndefault: allow\n';

/**
 * `sluice daemon [POLICY] [--metrics unix|HOST:PORT|off] [--metrics-token-file FILE]`: run until stopped, on
 * the policy that is applied. POLICY (or the default path) is applied only
 * by the very first start of this state directory.
 */
export async function daemon(ctx: Context, args: { policy?: string; metrics?: string; metricsTokenFile?: string }): Promise<number> {
  // Bad metrics settings are a usage error, found before anything is applied.
  let listen: MetricsListen | null;
  try {
    listen = parseMetricsListen(args.metrics);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (args.metricsTokenFile !== undefined && !listen?.tcp) throw new UsageError('--metrics-token-file needs --metrics HOST:PORT (the Unix socket needs no token: only root can open it)');
  ctx.state.ensureSafe();
  const pidFile = join(ctx.state.dir, 'daemon.pid');
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
      throw new SluiceError('EDAEMONRUNNING', `A Sluice daemon already runs for ${ctx.state.dir} (pid ${pid})`);
    }
  }
  const nf = ctx.netfilter({ owner: true });
  const source: PolicySource = {
    applied: () => loadAppliedPolicy(ctx),
    file: (path) => ctx.loadPolicyForApply(path),
    compile: (policy) => ctx.compileAsync(policy),
    idle: () => parsePolicy(Buffer.from(IDLE_POLICY), '(sluice is off)', { lookupUsers }),
  };
  const notifySocket = process.env.NOTIFY_SOCKET;
  const d = new Daemon({
    source,
    startPolicy: resolve(args.policy ?? defaultPolicyPath()),
    startPolicyGiven: args.policy !== undefined,
    netfilter: nf,
    state: ctx.state,
    components: daemonComponents(ctx.state.dir),
    metrics: listen ? { listen, ...(args.metricsTokenFile !== undefined ? { tokenFile: args.metricsTokenFile } : {}) } : null,
    ...(notifySocket ? { notify: (text: string) => sdNotify(notifySocket, text) } : {}),
  });

  // SIGHUP's handler first: without one, SIGHUP's default action ends the process, and a reload
  // asked for as soon as the daemon says it is ready (systemctl reload right after the start, an
  // operator's kill -HUP) could arrive before the handler below the start was in place. A reload
  // asked for while the daemon starts is run once the start is done.
  let started = false;
  let reloadAsked = false;
  const reload = () => {
    if (notifySocket) sdNotify(notifySocket, `RELOADING=1\nMONOTONIC_USEC=${(process.hrtime.bigint() / 1000n).toString()}`);
    d.reload()
      .catch((err: unknown) => logLine('error', 'reload failed; the previous policy stays', { error: String((err as Error).message) }))
      .finally(() => {
        if (notifySocket) sdNotify(notifySocket, 'READY=1');
      });
  };
  process.on('SIGHUP', () => {
    if (started) reload();
    else reloadAsked = true;
  });
  await d.start();
  started = true;
  ctx.say(`sluice daemon: running (pid ${process.pid}); state ${ctx.state.dir}; table inet ${TABLE_NAME}`);
  ctx.flush();
  if (reloadAsked) {
    logLine('info', 'a reload was asked for while the daemon started: reloading');
    reload();
  }
  // systemd's watchdog (WatchdogSec=): a ping from the event loop twice per period, so a loop
  // that stops turning (the one that answers DNS) gets the daemon restarted.
  const watchdogUsec = Number(process.env.WATCHDOG_USEC);
  const watchdogPid = process.env.WATCHDOG_PID;
  if (notifySocket && Number.isFinite(watchdogUsec) && watchdogUsec > 0 && (watchdogPid === undefined || Number(watchdogPid) === process.pid)) {
    setInterval(() => sdNotify(notifySocket, 'WATCHDOG=1'), Math.max(50, Math.floor(watchdogUsec / 2000))).unref();
  }

  return new Promise<number>((resolvePromise) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logLine('info', `received ${signal}, stopping`);
      if (notifySocket) sdNotify(notifySocket, 'STOPPING=1');
      // A stop that hangs (a peer holding a socket open) must not keep the process alive.
      setTimeout(() => {
        logLine('error', 'stop took more than 10 s; exiting anyway');
        process.exit(EXIT.failed);
      }, 10_000).unref();
      d.stop().then(
        () => resolvePromise(EXIT.ok),
        (err: unknown) => {
          logLine('error', 'stop failed', { error: String(err) });
          resolvePromise(EXIT.failed);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/** One sd_notify message; a service manager that went away is not the daemon's problem. */
function sdNotify(socket: string, text: string): void {
  try {
    native().sdNotify(socket, text);
  } catch (err) {
    logLine('warn', 'could not notify the service manager', { error: (err as Error).message });
  }
}
