import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CompileResult } from '../compile/compile-ruleset.js';
import { TABLE_NAME } from '../compile/ruleset.js';
import { SluiceError } from '../errors.js';
import { sameRuleset } from '../netfilter/compare-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import type { Policy } from '../policy/policy.js';
import { removeStaleTemps, type StateStore } from '../state/state-store.js';
import { ControlServer } from './control-server.js';
import { publishAlert } from './events.js';
import type { KernelMetricsContext } from './kernel-counter-metrics.js';
import { Registry } from './metrics.js';
import { MetricsServer, metricsToken, type MetricsListen } from './metrics-server.js';

/** What a daemon component gets: the current policy and the shared services. */
export interface Runtime {
  policy: Policy;
  compiled: CompileResult;
  netfilter: Netfilter;
  state: StateStore;
  control: ControlServer;
  metrics: Registry;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

/** A part of the daemon (DNS guard, event collector, watchdog...). */
export interface Component {
  readonly name: string;
  /**
   * Runs before the policy is written to the kernel, on start and on reload:
   * whatever the new ruleset will rely on (the DNS guard's sockets) must exist
   * first. Throwing here stops the start or the reload before the kernel changes.
   */
  prepare?(policy: Policy): Promise<void>;
  start(rt: Runtime): Promise<void>;
  stop(): Promise<void>;
  /** The policy changed; rt holds the new one. Components that keep derived state rebuild it. */
  reload?(rt: Runtime): Promise<void>;
  /** A short status object for `sluice status` and the control socket. */
  status?(): Record<string, unknown>;
}

/** A loaded and compiled policy, not yet in the kernel. */
export interface Loaded {
  policy: Policy;
  compiled: CompileResult;
  /** Writes it to the kernel (and the state directory). */
  apply: () => void;
}

export interface DaemonOptions {
  /** Loads and compiles the current policy; applying it is a separate step. */
  load: (reason: 'start' | 'reload') => Loaded;
  netfilter: Netfilter;
  state: StateStore;
  components: Component[];
  /** Where GET /metrics is served (the root-only Unix socket, and TCP with a token), or null for nowhere. */
  metrics: { listen: MetricsListen; tokenFile?: string } | null;
}

/** Writes one structured log line to stderr (journald keeps it). */
export function logLine(level: string, message: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
}

/**
 * The one long-running process. It applies the policy, runs its components,
 * and serves the control socket and metrics. Stopping it never removes the
 * ruleset: enforcement is the kernel's, and it stays (fail closed).
 */
export class Daemon {
  readonly metrics = new Registry();
  readonly control: ControlServer;
  private rt: Runtime | undefined;
  private metricsServer: MetricsServer | undefined;
  private started: Component[] = [];
  private reloading: Promise<void> | undefined;
  private startedAt = Date.now();

  constructor(private opts: DaemonOptions) {
    this.control = new ControlServer(join(opts.state.dir, 'control.sock'));
  }

  get runtime(): Runtime {
    if (!this.rt) throw new SluiceError('ENOTSTARTED', 'The daemon has not started');
    return this.rt;
  }

  async start(): Promise<void> {
    const loaded = this.opts.load('start');
    for (const c of this.opts.components) await c.prepare?.(loaded.policy);
    loaded.apply();
    const { policy, compiled } = loaded;
    this.rt = {
      policy,
      compiled,
      netfilter: this.opts.netfilter,
      state: this.opts.state,
      control: this.control,
      metrics: this.metrics,
      log: (level, message, fields) => logLine(level, message, fields),
    };
    const reloads = this.metrics.counter('sluice_daemon_reloads_total', 'Policy reloads, by result');
    this.metrics.collect(() => [
      { name: 'sluice_daemon_start_time_seconds', help: 'When the daemon started (Unix time)', type: 'gauge', samples: [{ labels: {}, value: this.startedAt / 1000 }] },
      { name: 'sluice_policy_info', help: 'The policy in force (value is always 1)', type: 'gauge', samples: [{ labels: { sha256: this.runtime.policy.sha256, mode: this.runtime.policy.mode }, value: 1 }] },
      {
        name: 'sluice_set_elements',
        help: 'Elements compiled into each static set (dynamic sets: see sluice_dns_learned_addresses)',
        type: 'gauge',
        samples: this.runtime.compiled.ruleset.sets.filter((s) => !s.dynamic).map((s) => ({ labels: { set: s.name }, value: s.elements.length })),
      },
    ]);
    this.control.handle('status', { call: () => this.status() });
    this.control.handle('reload', {
      call: async () => {
        await this.reload();
        reloads.inc({ result: 'ok' });
        return { reloaded: true, sha256: this.runtime.policy.sha256 };
      },
    });
    await this.control.start();
    writeFileSync(join(this.opts.state.dir, 'daemon.pid'), `${process.pid}\n`, { mode: 0o600 });
    const stale = removeStaleTemps(this.opts.state.dir);
    if (stale.length > 0) logLine('info', 'removed temporary files left by an interrupted write', { files: stale.join(', ') });
    for (const c of this.opts.components) {
      await c.start(this.runtime);
      this.started.push(c);
      logLine('info', `started ${c.name}`);
    }
    if (this.opts.metrics) await this.startMetrics(this.opts.metrics);
    logLine('info', 'daemon ready', { sha256: policy.sha256, mode: policy.mode, pid: process.pid });
  }

  private async startMetrics(cfg: { listen: MetricsListen; tokenFile?: string }): Promise<void> {
    const dir = this.opts.state.dir;
    const tcp = cfg.listen.tcp ? { ...cfg.listen.tcp, token: metricsToken(dir, cfg.tokenFile) } : null;
    // Kernel counters are labelled with the policy in force; its rule actions are built once per policy.
    let labelled: { policy: Policy; context: KernelMetricsContext } | undefined;
    this.metricsServer = new MetricsServer({
      registry: this.metrics,
      unixPath: cfg.listen.unix ? join(dir, 'metrics.sock') : null,
      tcp,
      table: TABLE_NAME,
      context: () => {
        const policy = this.rt?.policy;
        if (!policy) return null;
        if (labelled?.policy !== policy) {
          labelled = { policy, context: { mode: policy.mode, defaultAction: policy.defaultAction, actions: Object.fromEntries(policy.rules.map((r) => [r.name, r.action])) } };
        }
        return labelled.context;
      },
      log: (level, message, fields) => logLine(level, message, fields),
    });
    const where = await this.metricsServer.start();
    logLine('info', 'serving metrics', { unix: where.unix, tcp: where.tcp ? `${where.tcp.host}:${where.tcp.port}` : null, token: tcp ? (cfg.tokenFile ?? join(dir, 'metrics.token')) : null });
  }

  /** Re-reads and re-applies the policy, then lets components rebuild. One reload at a time. */
  async reload(): Promise<void> {
    if (this.reloading) return this.reloading;
    this.reloading = (async () => {
      try {
        const loaded = this.opts.load('reload');
        for (const c of this.started) await c.prepare?.(loaded.policy);
        loaded.apply();
        const { policy, compiled } = loaded;
        this.runtime.policy = policy;
        this.runtime.compiled = compiled;
        for (const c of this.started) await c.reload?.(this.runtime);
        logLine('info', 'reloaded', { sha256: policy.sha256, mode: policy.mode });
      } catch (err) {
        publishAlert({ time: Date.now(), kind: 'reload-failed', severity: 'warning', message: `Reload failed: ${(err as Error).message}` });
        throw err;
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  /** Adopts a policy someone else applied (the CLI): no kernel write, components rebuild. */
  async adopt(policy: Policy, compiled: CompileResult): Promise<void> {
    this.runtime.policy = policy;
    this.runtime.compiled = compiled;
    for (const c of this.started) await c.reload?.(this.runtime);
    logLine('info', 'adopted the applied policy', { sha256: policy.sha256, mode: policy.mode });
  }

  status(): Record<string, unknown> {
    const live = this.opts.netfilter.read(TABLE_NAME);
    return {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      policy: { sha256: this.runtime.policy.sha256, mode: this.runtime.policy.mode, file: this.runtime.policy.file },
      table: live === null ? 'missing' : sameRuleset(this.runtime.compiled.ruleset, live) ? 'live' : 'drifted',
      components: Object.fromEntries(this.started.map((c) => [c.name, c.status?.() ?? {}])),
    };
  }

  /** Stops components in reverse order. The ruleset stays in the kernel. */
  async stop(): Promise<void> {
    for (const c of [...this.started].reverse()) {
      try {
        await c.stop();
      } catch (err) {
        logLine('error', `stopping ${c.name} failed`, { error: (err as Error).message });
      }
    }
    this.started = [];
    await this.metricsServer?.stop();
    await this.control.stop();
    rmSync(join(this.opts.state.dir, 'daemon.pid'), { force: true });
    logLine('info', 'daemon stopped; the ruleset stays in force');
  }
}
