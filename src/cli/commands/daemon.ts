import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TABLE_NAME } from '../../compile/ruleset.js';
import { Daemon, logLine, type Component, type Loaded } from '../../daemon/daemon.js';
import { parseMetricsListen, type MetricsListen } from '../../daemon/metrics-server.js';
import { SluiceError, UsageError } from '../../errors.js';
import { defaultPolicyPath, processAlive } from '../../state/state-store.js';
import { EXIT, type Context } from '../context.js';
import { stopTimer } from './apply.js';
import { loadAppliedPolicy } from './connections.js';

/** The components a policy needs. Later issues add the event collector and the watchdog. */
export type ComponentFactory = (ctx: Context) => Component[];
const factories: ComponentFactory[] = [];

/** Lets modules contribute daemon components without the daemon importing them. */
export function registerComponents(f: ComponentFactory): void {
  factories.push(f);
}

/** `sluice daemon [POLICY] [--metrics unix|HOST:PORT|off] [--metrics-token-file FILE]`: apply the policy and run until stopped. */
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
  const startPath = args.policy ?? defaultPolicyPath();
  const nf = ctx.netfilter();

  const load = (reason: 'start' | 'reload'): Loaded => {
    const path = reason === 'reload' ? (ctx.state.applied()?.policyFile ?? startPath) : startPath;
    const { policy, bytes } = ctx.loadPolicyForApply(path);
    const compiled = ctx.compile(policy);
    const apply = () => {
      ctx.state.withLock(() => {
        const pending = ctx.state.pending();
        nf.replace(compiled.ruleset);
        ctx.state.savePolicySnapshot(policy.sha256, bytes);
        ctx.state.setApplied({ appliedAt: new Date().toISOString(), policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, ruleset: compiled.ruleset, warnings: compiled.warnings });
        // The daemon's apply is a confirmed one: it replaces any pending confirmation.
        if (pending?.timerPid) stopTimer(pending.timerPid);
        ctx.state.setPending(null);
        ctx.state.journal({ event: `daemon-${reason}`, policy: policy.file, sha256: policy.sha256, mode: policy.mode });
      });
      for (const w of compiled.warnings) logLine('warn', w);
    };
    return { policy, compiled, apply };
  };

  await import('../../daemon/components.js');
  const d = new Daemon({
    load,
    netfilter: nf,
    state: ctx.state,
    components: factories.flatMap((f) => f(ctx)),
    metrics: listen ? { listen, ...(args.metricsTokenFile !== undefined ? { tokenFile: args.metricsTokenFile } : {}) } : null,
  });
  // `sluice apply`, `confirm`, rollback and `off` ask the daemon to adopt what is applied now.
  d.control.handle('sync', {
    call: async () => {
      const loaded = loadAppliedPolicy(ctx);
      if (!loaded) {
        logLine('warn', 'Sluice is off (no table applied); components idle until the next apply');
        return { adopted: false };
      }
      const { policy, applied } = loaded;
      await d.adopt(policy, { ruleset: applied.ruleset, warnings: applied.warnings });
      return { adopted: true, sha256: applied.sha256 };
    },
  });

  await d.start();
  ctx.say(`sluice daemon: running (pid ${process.pid}); state ${ctx.state.dir}; table inet ${TABLE_NAME}`);
  ctx.flush();

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logLine('info', `received ${signal}, stopping`);
      // A stop that hangs (a peer holding a socket open) must not keep the process alive.
      setTimeout(() => {
        logLine('error', 'stop took more than 10 s; exiting anyway');
        process.exit(EXIT.failed);
      }, 10_000).unref();
      d.stop().then(
        () => resolve(EXIT.ok),
        (err: unknown) => {
          logLine('error', 'stop failed', { error: String(err) });
          resolve(EXIT.failed);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      d.reload().catch((err: unknown) => logLine('error', 'reload failed; the previous policy stays', { error: String((err as Error).message) }));
    });
  });
}
