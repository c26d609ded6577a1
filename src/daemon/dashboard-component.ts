import { Worker } from 'node:worker_threads';
import { TABLE_NAME } from '../compile/ruleset.js';
import { channels, type DnsQueryEvent, type FlowEvent } from '../events/channels.js';
import { formatListen, type ListenAddress } from '../policy/listen-address.js';
import type { Policy } from '../policy/policy.js';
import type { Component, Runtime } from '../runtime/component.js';
import type { Family } from '../runtime/metrics.js';
import { ensureDashboardToken } from './dashboard-auth.js';
import { kernelMetricsContext, type KernelMetricsContext } from './kernel-counter-metrics.js';
import type { LiveEvent } from './dashboard-live.js';
import { stopWorkerThread } from './worker-stop.js';

/**
 * The web dashboard (policy key `dashboard: {listen: 127.0.0.1:9330}`),
 * served by a worker thread (dashboard-thread.ts) so that nothing a browser
 * or a local attacker does with it runs on the event loop that answers DNS.
 * This side makes the token (STATE/dashboard.token, root, 0600), starts and
 * stops the thread as the policy gains, changes or loses the key, tells it
 * the policy in force, and forwards live events in batches, only while a
 * live stream is open (nobody watching: not even subscribed).
 */

export interface DashboardLimits {
  perPeer: number;
  total: number;
  idleMs: number;
  /** 0: no lifetime (live streams stay open; their heartbeat keeps them from idling out). */
  lifetimeMs: number;
  maxHeaderBytes: number;
  /** The request head must arrive within this (slowloris). */
  headersTimeoutMs: number;
}

/** Idle 30 s against a 15 s heartbeat on live streams; 16 connections per uid (a browser opens ~6, plus streams). */
export const DASHBOARD_LIMITS: DashboardLimits = { perPeer: 16, total: 128, idleMs: 30_000, lifetimeMs: 0, maxHeaderBytes: 8_192, headersTimeoutMs: 10_000 };

/** What the dashboard shows of the policy in force (the main thread knows it; the thread is told). */
export interface DashboardPolicyInfo {
  sha256: string | null;
  mode: 'audit' | 'enforce' | null;
  file: string | null;
  /** When the daemon started, and when it last took a new policy (reload or adoption), ISO times. */
  daemonStartedAt: string;
  lastReloadAt: string | null;
}

/** The worker's workerData. */
export interface DashboardThreadConfig {
  listen: ListenAddress;
  token: string;
  stateDir: string;
  /** The table whose liveness the status reads; null: none (tests). */
  table: string | null;
  limits: DashboardLimits;
  policy: DashboardPolicyInfo | null;
  /** The suggestion worker's time and heap (tests); default SUGGEST_WORKER. */
  suggest?: { timeoutMs?: number; maxHeapMb?: number };
}

/** Events waiting for the thread at most; beyond, dropped and counted (a flood must not grow the daemon). */
const FORWARD_MAX = 10_000;
const FORWARD_MS = 250;
const RESTART_DELAY_MS = 5_000;
const HEALTH_MIN_MS = 1_000;

export class DashboardComponent implements Component {
  readonly name = 'dashboard';
  private rt: Runtime | undefined;
  private worker: Worker | undefined;
  private listen: ListenAddress | null = null;
  private where: string | null = null;
  private error: string | null = null;
  private stopping = false;
  private readonly startedAt = new Date().toISOString();
  private lastReloadAt: string | null = null;
  private pending: LiveEvent[] = [];
  private dropped = 0;
  private subscribed = false;
  private forwardTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private healthCache: { at: number; families: Family[]; context: KernelMetricsContext } | undefined;

  constructor(private readonly opts: { limits?: Partial<DashboardLimits>; table?: string | null } = {}) {}

  private readonly onFlow = (msg: unknown): void => {
    const e = msg as FlowEvent;
    this.queue({ kind: 'flow', ...e });
  };

  private readonly onDns = (msg: unknown): void => {
    const e = msg as DnsQueryEvent;
    this.queue({ kind: 'dns', time: e.time, name: e.name, type: e.type, verdict: e.verdict, rules: e.rules, answers: e.answers.slice(0, 16), client: e.client, ...(e.process ? { process: e.process } : {}) });
  };

  private queue(e: LiveEvent): void {
    if (this.pending.length >= FORWARD_MAX) this.dropped++;
    else this.pending.push(e);
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.stopping = false;
    await this.follow(rt.policy);
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.lastReloadAt = new Date().toISOString();
    await this.follow(rt.policy);
  }

  private policyInfo(policy: Policy): DashboardPolicyInfo {
    return { sha256: policy.sha256 || null, mode: policy.mode, file: policy.file || null, daemonStartedAt: this.startedAt, lastReloadAt: this.lastReloadAt };
  }

  /** Runs the thread the policy asks for: none, the same (told the new policy), or a new one at a new address. */
  private async follow(policy: Policy): Promise<void> {
    const want = policy.dashboard?.listen ?? null;
    if (want && this.listen && formatListen(want) === formatListen(this.listen) && this.worker) {
      this.worker.postMessage({ t: 'policy', policy: this.policyInfo(policy) });
      return;
    }
    await this.stopWorker();
    this.listen = want;
    if (!want) return;
    try {
      await this.startWorker(want, policy);
    } catch (err) {
      // The firewall matters more than its dashboard: log it, keep running, try again at the next reload.
      this.error = (err as Error).message;
      this.rt?.log('error', 'the dashboard could not start', { listen: formatListen(want), error: this.error });
    }
  }

  private startWorker(listen: ListenAddress, policy: Policy): Promise<void> {
    const rt = this.rt;
    if (!rt) return Promise.resolve();
    const token = ensureDashboardToken(rt.state.dir);
    const config: DashboardThreadConfig = {
      listen,
      token,
      stateDir: rt.state.dir,
      table: this.opts.table === undefined ? TABLE_NAME : this.opts.table,
      limits: { ...DASHBOARD_LIMITS, ...this.opts.limits },
      policy: this.policyInfo(policy),
    };
    const w = new Worker(new URL('./dashboard-thread.js', import.meta.url), { workerData: config });
    this.worker = w;
    return new Promise((resolve, reject) => {
      let ready = false;
      w.on('message', (m: { t: 'listening'; host: string; port: number } | { t: 'failed'; message: string } | { t: 'watchers'; n: number } | { t: 'want-health'; id: number }) => {
        if (m.t === 'want-health') {
          this.answerHealth(w, m.id);
          return;
        }
        if (m.t === 'listening') {
          ready = true;
          this.error = null;
          this.where = formatListen({ host: m.host, port: m.port });
          rt.log('info', 'serving the dashboard', { listen: this.where, token: `${rt.state.dir}/dashboard.token` });
          resolve();
        } else if (m.t === 'failed') {
          if (!ready) reject(new Error(m.message));
          else rt.log('error', 'the dashboard thread failed', { error: m.message });
          void w.terminate();
        } else if (m.t === 'watchers') this.watch(m.n > 0);
      });
      w.on('error', (err) => {
        if (!ready) reject(err);
        else rt.log('error', 'the dashboard thread failed', { error: err.message });
      });
      w.on('exit', () => {
        if (this.worker !== w) return;
        this.worker = undefined;
        this.where = null;
        this.watch(false);
        if (!ready || this.stopping) return;
        // A crashed thread comes back after a pause, at the address the policy says then.
        this.restartTimer = setTimeout(() => {
          if (this.stopping || !this.rt) return;
          void this.follow(this.rt.policy);
        }, RESTART_DELAY_MS);
        this.restartTimer.unref();
      });
    });
  }

  /**
   * The health page's values: the registry's snapshot (what /metrics shows
   * of this process) and the labels for the kernel's counters, which the
   * thread reads itself. At most one snapshot per HEALTH_MIN_MS, however
   * often the page (or a script) asks: the snapshot runs on this event loop.
   */
  private answerHealth(w: Worker, id: number): void {
    const rt = this.rt;
    const now = performance.now();
    if (rt && (!this.healthCache || now - this.healthCache.at >= HEALTH_MIN_MS)) {
      this.healthCache = { at: now, families: rt.metrics.snapshot(), context: kernelMetricsContext(rt.policy) };
    }
    w.postMessage({ t: 'health', id, families: this.healthCache?.families ?? [], context: this.healthCache?.context ?? null });
  }

  /** Subscribes to the flow and DNS channels while a live stream is open, and only then. */
  private watch(on: boolean): void {
    if (on === this.subscribed) return;
    this.subscribed = on;
    if (on) {
      channels.flow.subscribe(this.onFlow);
      channels.dnsQuery.subscribe(this.onDns);
      this.forwardTimer = setInterval(() => this.forward(), FORWARD_MS);
      this.forwardTimer.unref();
    } else {
      channels.flow.unsubscribe(this.onFlow);
      channels.dnsQuery.unsubscribe(this.onDns);
      clearInterval(this.forwardTimer);
      this.forwardTimer = undefined;
      this.pending = [];
    }
  }

  /** One message per interval with what arrived since. */
  private forward(): void {
    if (!this.worker || (this.pending.length === 0 && this.dropped === 0)) return;
    this.worker.postMessage({ t: 'events', events: this.pending, dropped: this.dropped });
    this.pending = [];
    this.dropped = 0;
  }

  private async stopWorker(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.watch(false);
    const w = this.worker;
    this.worker = undefined;
    this.where = null;
    if (w) await stopWorkerThread(w);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.stopWorker();
  }

  status(): Record<string, unknown> {
    return { listen: this.where, ...(this.error ? { error: this.error } : {}) };
  }
}
