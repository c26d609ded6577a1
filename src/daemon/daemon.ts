import { createHash } from 'node:crypto';
import { readFileSync, realpathSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CompileResult } from '../compile/compile-ruleset.js';
import { TABLE_NAME } from '../compile/ruleset.js';
import { SluiceError } from '../errors.js';
import { sameRuleset } from '../netfilter/compare-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import type { Policy } from '../policy/policy.js';
import { currentPolicyDigest, type ListBytes } from '../policy/load-policy.js';
import { appliedPolicy, commitTable, restoreApplied } from '../state/commit-table.js';
import { rollBackPending } from '../state/rollback.js';
import { journalEntry, journalKey, journalSend, LEVEL_PRIORITY, stderrIsJournal } from '../runtime/journal.js';
import { removeStaleTemps, type AppliedState, type DaemonState, type StateStore } from '../state/state-store.js';
import { channels, publishAlert, type AlertEvent } from '../events/channels.js';
import type { Component, Runtime } from '../runtime/component.js';
import { ControlServer } from '../runtime/control-server.js';
import { kernelMetricsContext } from './kernel-counter-metrics.js';
import { LoopHealth, loopWindowMs } from '../runtime/loop-health.js';
import { Registry } from '../runtime/metrics.js';
import { MetricsServer, metricsToken, type MetricsListen } from './metrics-server.js';
import { PolicyFileWatch } from './policy-file-watch.js';

export type { Component, Runtime } from '../runtime/component.js';

/** Where the daemon's policies come from: the host's facts and files, behind one seam (tests give their own). */
export interface PolicySource {
  /** The policy the state directory says is applied, parsed from its snapshot; throws when the snapshot is missing or no longer valid here. */
  applied(): { policy: Policy; applied: AppliedState } | null;
  /** A policy file and its exact bytes (a first start, or a reload). */
  file(path: string): { policy: Policy; bytes: Buffer; lists?: ListBytes[] };
  /** Compiles with the host's facts now (cgroups, resolvers, leases), asking the host off the event loop. */
  compile(policy: Policy): Promise<CompileResult>;
  /** The policy components run on while Sluice is off: audit, no rules, so they watch and write nothing. */
  idle(): Policy;
}

export interface DaemonOptions {
  source: PolicySource;
  /** The policy file applied on the very first start, when this state directory never applied anything. */
  startPolicy: string;
  /** The operator named startPolicy (`sluice daemon POLICY`): a start that does not apply it says so. */
  startPolicyGiven?: boolean;
  netfilter: Netfilter;
  state: StateStore;
  components: Component[];
  /** Where GET /metrics is served (the root-only Unix socket, and TCP with a token), or null for nowhere. */
  metrics: { listen: MetricsListen; tokenFile?: string } | null;
  /** Tells the service manager (systemd, Type=notify) how the start went. */
  notify?: (text: string) => void;
}

/** Writes one structured log line to stderr (journald keeps it). */
export function logLine(level: string, message: string, fields: Record<string, unknown> = {}): void {
  toJournal ??= stderrIsJournal();
  if (toJournal) {
    try {
      journalSend(journalEntry(message, [['PRIORITY', LEVEL_PRIORITY[level] ?? 6], ['SYSLOG_IDENTIFIER', 'sluice'], ['SLUICE_LEVEL', level], ...Object.entries(fields).map(([k, v]) => [journalKey(k), v] as const)]));
      return;
    } catch {
      // The journal's queue full, or its socket gone: the line goes to stderr, which the journal reads too.
    }
  }
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
}

/**
 * Under systemd (stderr is the journal), log lines are journal entries with
 * fields: MESSAGE, PRIORITY, and each field as SLUICE_NAME (`journalctl
 * SLUICE_ALERT=tamper`, `SLUICE_RULE=api`); else JSON lines on stderr.
 */
let toJournal: boolean | undefined;

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
  /** Sluice is off: components run on the idle policy, nothing is in the kernel. */
  private off = false;
  private pendingTimer: NodeJS.Timeout | undefined;
  /** An owned table let go of for a CLI write (`release`): taken back at the write's sync, or at this timer. */
  private releaseTimer: NodeJS.Timeout | undefined;
  /** The applied policy's file: a change reloads it (the same path as SIGHUP). */
  private readonly fileWatch = new PolicyFileWatch(() => void this.policyFileChanged());
  /**
   * The content of that file the daemon has seen (adopted at start and on
   * every adoption, or loaded by a reload): only a change from it reloads.
   * A file that differs from what is applied is not by itself a reason: a
   * rollback restores an earlier policy while its file holds the rolled-back
   * edit, and a start finds a half-edited file; neither is applied until the
   * file is saved again.
   */
  private seenSha: string | null = null;
  private stopped = false;
  /** The main thread's event-loop delay and GC pauses, for /metrics. */
  private health: LoopHealth | undefined;
  /** Every alert goes to the log (journald keeps it) until alert sinks exist. */
  private readonly logAlert = (msg: unknown): void => {
    const a = msg as AlertEvent;
    logLine(a.severity === 'info' ? 'info' : a.severity === 'warning' ? 'warn' : 'error', a.message, { alert: a.kind, ...a.detail });
  };

  constructor(private opts: DaemonOptions) {
    this.control = new ControlServer(join(opts.state.dir, 'control.sock'));
  }

  get runtime(): Runtime {
    if (!this.rt) throw new SluiceError('ENOTSTARTED', 'The daemon has not started');
    return this.rt;
  }

  /**
   * Starts: brings back the last applied ruleset if the kernel lost it
   * (before anything that can fail), then runs on the applied policy. The
   * policy file is read only when this state directory never applied
   * anything: a restart never turns enforce into audit, never re-applies a
   * rolled-back or half-edited file, and never undoes `sluice off`. A start
   * that fails leaves the last applied ruleset in force, and says so in its
   * exit status, its log and `sluice status`.
   */
  async start(): Promise<void> {
    const { state } = this.opts;
    const previous = previousFailure(state.daemonState());
    state.setDaemonState({ state: 'starting', pid: process.pid, at: new Date().toISOString() });
    try {
      this.ensureTable();
      this.rollBackOverdue('the daemon started after the confirmation deadline');
      const loaded = await this.loadForStart();
      for (const c of this.opts.components) await c.prepare?.(loaded.policy);
      loaded.commit();
      this.holdTable();
      this.rt = {
        policy: loaded.policy,
        compiled: loaded.compiled,
        netfilter: this.opts.netfilter,
        state,
        control: this.control,
        metrics: this.metrics,
        log: (level, message, fields) => logLine(level, message, fields),
      };
      this.off = loaded.off;
      await this.startServices(previous);
    } catch (err) {
      const e = err as Error & { code?: string };
      state.setDaemonState({ state: 'failed', pid: process.pid, at: new Date().toISOString(), error: e.message, ...(e.code ? { code: e.code } : {}) });
      try {
        state.journal({ event: 'daemon-start-failed', error: e.message });
      } catch {
        // The state directory itself may be what failed.
      }
      const live = safeRead(this.opts.netfilter);
      logLine('error', 'the daemon could not start; the ruleset in the kernel stays in force', { error: e.message, table: live ? 'present' : 'absent' });
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  /** The applied ruleset is in the kernel: restored (as it was applied) when the table is missing, say after a reboot without the restore unit. */
  private ensureTable(): void {
    const { state, netfilter: nf } = this.opts;
    const applied = state.applied();
    if (!applied || state.isOff() || nf.read(TABLE_NAME, { elements: 'none' }) !== null) return;
    const r = restoreApplied(nf, state, applied, 'daemon');
    if (r.written) logLine('warn', 'the table was missing: restored the last applied ruleset', { sha256: applied.sha256, mode: applied.mode });
  }

  /**
   * Holds the table when the applied ruleset is an owned one (policy
   * `owned_table`) and no socket holds it: after the boot-time restore, a
   * previous daemon's exit, or a write by the command line. Never fatal: a
   * table held by another socket is the tamper watchdog's to report.
   */
  private holdTable(): void {
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    const nf = this.opts.netfilter;
    if (!nf.hold) return;
    try {
      if (nf.hold(TABLE_NAME) === 'taken') logLine('info', `holds table inet ${TABLE_NAME} (flags owner, persist): only the daemon can change it now`);
    } catch (err) {
      logLine('error', `cannot hold table inet ${TABLE_NAME}`, { error: (err as Error).message });
    }
  }

  /** A confirmation whose deadline passed with no timer left to act on it (a reboot in the window): roll back now. */
  private rollBackOverdue(why: string): void {
    const pending = this.opts.state.pending();
    if (!pending || Date.parse(pending.deadline) > Date.now()) return;
    if (rollBackPending(this.opts.netfilter, this.opts.state, pending.token, why, { via: 'confirm-timer', process: 'daemon' })) logLine('warn', `rolled back an unconfirmed apply: ${why}`);
  }

  /** Arms the daemon's own watch on a pending confirmation: at its deadline it rolls back, whoever else (the timer) does not first. */
  private watchPending(): void {
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pendingTimer = undefined;
    const pending = this.opts.state.pending();
    if (!pending) return;
    const wait = Math.max(0, Math.min(Date.parse(pending.deadline) - Date.now() + 1_000, 2 ** 31 - 1));
    this.pendingTimer = setTimeout(() => {
      this.pendingTimer = undefined;
      try {
        if (rollBackPending(this.opts.netfilter, this.opts.state, pending.token, 'not confirmed in time', { via: 'confirm-timer', process: 'daemon' })) {
          logLine('warn', 'rolled back an unconfirmed apply');
          void this.sync().catch((err: unknown) => logLine('error', 'adopting the rolled-back policy failed', { error: String(err) }));
        }
      } catch (err) {
        logLine('error', 'rollback failed', { error: (err as Error).message });
      }
    }, wait);
    this.pendingTimer.unref();
  }

  /** What the daemon runs on at start, and how to put it in the kernel. */
  private async loadForStart(): Promise<{ policy: Policy; compiled: CompileResult; off: boolean; commit: () => void }> {
    const { state, source, netfilter: nf } = this.opts;
    const applied = state.applied();
    const given = this.opts.startPolicyGiven === true ? this.opts.startPolicy : undefined;
    if (applied) {
      if (given !== undefined && given !== applied.policyFile) {
        logLine('warn', `${given} is not applied: the daemon runs the applied policy, ${applied.policyFile} (POLICY is applied only on a host that never applied one; sluice apply ${given} applies it)`, { given, applied: applied.policyFile, sha256: applied.sha256 });
      }
      const loaded = source.applied();
      if (!loaded) throw new SluiceError('ESTATE', 'The applied policy disappeared while the daemon started');
      const { policy } = loaded;
      const compiled = await source.compile(policy);
      // The same meaning (the applied policy) with today's facts (cgroup ids, resolvers): same epoch.
      const commit = () => {
        const r = commitTable(nf, state, {
          event: 'daemon-start',
          ruleset: compiled.ruleset,
          policy: appliedPolicy(applied, compiled.warnings),
          epoch: 'keep',
          pending: 'keep',
          unlessLive: true,
          precondition: (v) => (v.applied?.sha256 === applied.sha256 && !v.off ? null : 'the applied policy changed while the daemon started'),
        });
        if (r.skipped && r.skipped !== 'already live') throw new SluiceError('ESTATE', `Not started: ${r.skipped}; start again`);
        for (const w of compiled.warnings) logLine('warn', w);
        compiled.ruleset = r.ruleset ?? compiled.ruleset;
      };
      return { policy, compiled, off: false, commit };
    }
    if (state.isOff()) {
      logLine('info', 'Sluice is off (sluice off): no table; the daemon waits for the next apply');
      if (given !== undefined) logLine('warn', `${given} is not applied: Sluice was turned off (sluice off), and a restart never undoes that; sluice apply ${given} turns it on`, { given });
      const policy = source.idle();
      return { policy, compiled: await source.compile(policy), off: true, commit: () => undefined };
    }
    // Nothing was ever applied from this state directory: the first start applies the policy file.
    const { policy, bytes, lists } = source.file(this.opts.startPolicy);
    const compiled = await source.compile(policy);
    const commit = () => {
      const r = commitTable(nf, state, {
        event: 'daemon-start',
        ruleset: compiled.ruleset,
        policy: { policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, warnings: compiled.warnings, bytes, ...(lists ? { lists } : {}) },
        precondition: (v) => (v.applied === null && !v.off ? null : 'a policy was applied while the daemon started'),
      });
      if (!r.written) throw new SluiceError('ESTATE', `Not started: ${r.skipped ?? 'nothing written'}; start again`);
      for (const w of compiled.warnings) logLine('warn', w);
      compiled.ruleset = r.ruleset ?? compiled.ruleset;
    };
    return { policy, compiled, off: false, commit };
  }

  /** Control socket, state files, components, metrics; then ready. */
  private async startServices(previous: ReturnType<typeof previousFailure>): Promise<void> {
    const { state } = this.opts;
    const reloads = this.metrics.counter('sluice_daemon_reloads_total', 'Policy reloads, by result');
    const health = (this.health ??= new LoopHealth(loopWindowMs(process.env.SLUICE_LOOP_WINDOW_MS)));
    this.metrics.collect(() => health.families());
    this.metrics.collect(() => [
      { name: 'sluice_daemon_start_time_seconds', help: 'When the daemon started (Unix time)', type: 'gauge', samples: [{ labels: {}, value: this.startedAt / 1000 }] },
      { name: 'sluice_policy_info', help: 'The policy in force (value is always 1)', type: 'gauge', samples: this.off ? [] : [{ labels: { sha256: this.runtime.policy.sha256, mode: this.runtime.policy.mode }, value: 1 }] },
      {
        name: 'sluice_set_elements',
        help: 'Elements compiled into each static set (dynamic sets: see sluice_dns_learned_addresses)',
        type: 'gauge',
        samples: this.off ? [] : this.runtime.compiled.ruleset.sets.filter((s) => !s.dynamic).map((s) => ({ labels: { set: s.name }, value: s.elements.length })),
      },
    ]);
    this.control.handle('status', { call: () => this.status() });
    // The main thread's health alone: no table read, cheap enough to poll under load.
    this.control.handle('health', { call: () => health.summary() });
    this.control.handle('reload', {
      call: async () => {
        await this.reload();
        reloads.inc({ result: 'ok' });
        return { reloaded: true, sha256: this.runtime.policy.sha256 };
      },
    });
    // `sluice apply`, `confirm`, rollback and `off` ask the daemon to adopt what is applied now.
    this.control.handle('sync', { call: () => this.sync() });
    // A CLI write to a table the daemon owns: let go of it until that write's sync (or RELEASE_MS).
    this.control.handle('release', {
      call: () => {
        if (!this.opts.netfilter.release) return { released: false };
        this.opts.netfilter.release();
        if (this.releaseTimer) clearTimeout(this.releaseTimer);
        this.releaseTimer = setTimeout(() => {
          this.releaseTimer = undefined;
          this.holdTable();
        }, RELEASE_MS);
        this.releaseTimer.unref();
        logLine('info', `let go of table inet ${TABLE_NAME} for a write by the command line`);
        return { released: true };
      },
    });
    await this.control.start();
    channels.alert.subscribe(this.logAlert);
    writeFileSync(join(state.dir, 'daemon.pid'), `${process.pid}\n`, { mode: 0o600 });
    const stale = removeStaleTemps(state.dir);
    if (stale.length > 0) logLine('info', 'removed temporary files left by an interrupted write', { files: stale.join(', ') });
    for (const c of this.opts.components) {
      await c.start(this.runtime);
      this.started.push(c);
      logLine('info', `started ${c.name}`);
    }
    if (this.opts.metrics) await this.startMetrics(this.opts.metrics);
    this.watchPending();
    this.armFileWatch();
    state.setDaemonState({ state: 'running', pid: process.pid, at: new Date().toISOString() });
    // Said once the alert routes listen: a restart after a crash is not business as usual.
    if (previous) publishAlert({ time: Date.now(), kind: 'daemon-failed', severity: 'critical', message: previous.message, detail: previous.detail });
    const { policy } = this.runtime;
    logLine('info', 'daemon ready', this.off ? { off: true, pid: process.pid } : { sha256: policy.sha256, mode: policy.mode, pid: process.pid });
    this.opts.notify?.(`READY=1\nSTATUS=${this.off ? 'Sluice is off; waiting for an apply' : `${policy.mode} mode, policy ${policy.sha256.slice(0, 16)}`}\nMAINPID=${process.pid}`);
  }

  private async startMetrics(cfg: { listen: MetricsListen; tokenFile?: string }): Promise<void> {
    const dir = this.opts.state.dir;
    const tcp = cfg.listen.tcp ? { ...cfg.listen.tcp, token: metricsToken(dir, cfg.tokenFile) } : null;
    this.metricsServer = new MetricsServer({
      registry: this.metrics,
      unixPath: cfg.listen.unix ? join(dir, 'metrics.sock') : null,
      tcp,
      table: TABLE_NAME,
      // Kernel counters are labelled with the policy in force; its rule actions are built once per policy.
      context: () => (this.rt?.policy ? kernelMetricsContext(this.rt.policy) : null),
      log: (level, message, fields) => logLine(level, message, fields),
    });
    const where = await this.metricsServer.start();
    logLine('info', 'serving metrics', { unix: where.unix, tcp: where.tcp ? `${where.tcp.host}:${where.tcp.port}` : null, token: tcp ? (cfg.tokenFile ?? join(dir, 'metrics.token')) : null });
  }

  /**
   * An explicit reload (SIGHUP, `reload` on the control socket): re-reads the
   * applied policy's file, applies it (a new epoch: its meaning may have
   * changed), then lets components rebuild. One reload at a time. Refused
   * while Sluice is off: only an apply turns it back on.
   */
  async reload(): Promise<void> {
    if (this.reloading) return this.reloading;
    // Cleared when it settles, asynchronously: a reload that fails before its first await (a
    // broken file) settles at once, and a clear inside it would run before this assignment,
    // leaving that rejection to answer every later reload.
    const p: Promise<void> = this.reloadOnce().finally(() => {
      if (this.reloading === p) this.reloading = undefined;
    });
    this.reloading = p;
    return p;
  }

  private async reloadOnce(): Promise<void> {
    try {
      const { state, source, netfilter: nf } = this.opts;
      const applied = state.applied();
      if (!applied) throw new SluiceError('EOFF', 'Sluice is off: nothing to reload (sluice apply POLICY turns it on)');
      const { policy, bytes, lists } = source.file(applied.policyFile);
      const compiled = await source.compile(policy);
      for (const c of this.started) await c.prepare?.(policy);
      // Stopped meanwhile: the components are gone; nothing is written.
      if (this.stopped) throw new SluiceError('ESTOPPED', 'The daemon stopped: reload not done');
      const r = commitTable(nf, state, {
        event: 'reload',
        ruleset: compiled.ruleset,
        policy: { policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, warnings: compiled.warnings, bytes, ...(lists ? { lists } : {}) },
        // Nothing committed since the file was read (an apply of the same path included).
        precondition: (v) => (v.applied?.sha256 === applied.sha256 && v.applied.appliedAt === applied.appliedAt ? null : 'another policy was applied meanwhile'),
        // A reload is not a confirmation: an apply waiting for one still rolls back at its deadline.
        pending: 'keep',
      });
      if (!r.written) throw new SluiceError('ESTATE', `Reload not done: ${r.skipped ?? 'nothing written'}`);
      for (const w of compiled.warnings) logLine('warn', w);
      compiled.ruleset = r.ruleset ?? compiled.ruleset;
      this.off = false;
      this.runtime.policy = policy;
      this.runtime.compiled = compiled;
      for (const c of this.started) await c.reload?.(this.runtime);
      this.watchPending();
      this.armFileWatch(policy.sha256);
      logLine('info', 'reloaded', { sha256: policy.sha256, mode: policy.mode, epoch: r.epoch });
    } catch (err) {
      for (const c of this.started) c.reloadAborted?.();
      const e = err as Error & { issues?: unknown };
      publishAlert({
        time: Date.now(),
        kind: 'reload-rejected',
        severity: 'warning',
        message: `Reload rejected; the policy in force stays: ${e.message}`,
        detail: { error: e.message, ...(e.issues !== undefined ? { issues: e.issues } : {}) },
      });
      throw err;
    }
  }

  /**
   * Adopts what the state directory says is applied now (someone else wrote
   * it: the CLI, the rollback timer): no kernel write, components rebuild.
   * Nothing applied: components go idle, and nothing of the previous policy
   * stays armed (the service watch cannot bring the table back).
   */
  async sync(): Promise<Record<string, unknown>> {
    this.holdTable();
    const loaded = this.opts.source.applied();
    if (!loaded) {
      this.off = true;
      this.runtime.policy = this.opts.source.idle();
      this.runtime.compiled = await this.opts.source.compile(this.runtime.policy);
      if (this.stopped) return { adopted: false };
      for (const c of this.started) await c.reload?.(this.runtime);
      this.watchPending();
      this.armFileWatch();
      logLine('warn', 'Sluice is off (no table applied); components idle until the next apply');
      return { adopted: false };
    }
    const { policy, applied } = loaded;
    this.off = false;
    this.runtime.policy = policy;
    this.runtime.compiled = { ruleset: applied.ruleset, warnings: applied.warnings };
    for (const c of this.started) await c.reload?.(this.runtime);
    this.watchPending();
    this.armFileWatch();
    logLine('info', 'adopted the applied policy', { sha256: policy.sha256, mode: policy.mode });
    return { adopted: true, sha256: applied.sha256 };
  }

  /** Watches the applied policy's file (nothing while Sluice is off), its content as now (or `seen`) taken as seen. */
  private armFileWatch(seen?: string): void {
    // Stopped (or stopping): a look still under way must not watch again.
    if (this.stopped) return;
    const path = this.off ? null : (this.opts.state.applied()?.policyFile ?? null);
    this.seenSha = seen ?? (path === null ? null : this.sourceSha(path));
    // The list files (to_file:) too: a feed rewritten by its cron job reloads as an edited policy does.
    this.fileWatch.arm(path, this.listPaths());
  }

  /** The list files the policy in force read. */
  private listPaths(): string[] {
    return this.off || this.rt === undefined ? [] : (this.runtime.policy.lists ?? []).map((l) => l.path);
  }

  /** The identity of the policy file and the policy in force's list files as they are on disk now (policyDigest), or null when the file cannot be read. */
  private sourceSha(path: string): string | null {
    return currentPolicyDigest(path, this.listPaths());
  }

  /**
   * The applied policy's file may have changed: when its content changed
   * from what the daemon last saw and is not what is applied, reload (one
   * path with SIGHUP and the control command: load, compile, one atomic
   * apply, read back). A broken file is rejected with an alert, and the
   * policy in force stays until the file changes again.
   */
  private async policyFileChanged(): Promise<void> {
    if (this.off || this.rt === undefined || this.stopped) return;
    if (this.reloading) await this.reloading.catch(() => undefined);
    const applied = this.opts.state.applied();
    if (!applied) return;
    const sha = this.sourceSha(applied.policyFile);
    // Moved away or unreadable: the applied policy (its snapshot) stays in force.
    if (sha === null || sha === this.seenSha) return;
    // A write in progress (the poll can land in one): only content that holds still is read as a policy.
    await new Promise((r) => setTimeout(r, SETTLE_READ_MS));
    if (this.sourceSha(applied.policyFile) !== sha || this.off || this.rt === undefined || this.stopped) return;
    this.seenSha = sha;
    if (sha === applied.sha256) return;
    // Whoever can write the file (or rename into its directory) would set the firewall, and run
    // its alert programs as root: a file others can change is not reloaded.
    const unsafe = unsafePolicyFile(applied.policyFile);
    if (unsafe) {
      publishAlert({ time: Date.now(), kind: 'reload-rejected', severity: 'warning', message: `Not reloading ${applied.policyFile}: ${unsafe}; the policy in force stays`, detail: { file: applied.policyFile, error: unsafe } });
      return;
    }
    logLine('info', 'the policy file changed; reloading', { file: applied.policyFile, sha256: sha });
    try {
      await this.reload();
    } catch (err) {
      logLine('error', 'reload rejected; the policy in force stays', { file: applied.policyFile, error: (err as Error).message });
    }
  }

  status(): Record<string, unknown> {
    const live = this.opts.netfilter.read(TABLE_NAME);
    return {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      policy: this.off ? null : { sha256: this.runtime.policy.sha256, mode: this.runtime.policy.mode, file: this.runtime.policy.file },
      table: this.off ? (live === null ? 'off' : 'unmanaged') : live === null ? 'missing' : sameRuleset(this.runtime.compiled.ruleset, live) ? 'live' : 'drifted',
      components: Object.fromEntries(this.started.map((c) => [c.name, c.status?.() ?? {}])),
      ...(this.health ? { health: this.health.summary() } : {}),
    };
  }

  /** Stops components in reverse order. The ruleset stays in the kernel. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.fileWatch.disarm();
    for (const c of [...this.started].reverse()) {
      try {
        await c.stop();
      } catch (err) {
        logLine('error', `stopping ${c.name} failed`, { error: (err as Error).message });
      }
    }
    this.started = [];
    this.fileWatch.disarm();
    channels.alert.unsubscribe(this.logAlert);
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    await this.metricsServer?.stop();
    this.health?.stop();
    await this.control.stop();
    rmSync(join(this.opts.state.dir, 'daemon.pid'), { force: true });
    if (this.opts.state.daemonState()?.state !== 'failed') this.opts.state.setDaemonState({ state: 'stopped', pid: process.pid, at: new Date().toISOString() });
    logLine('info', 'daemon stopped; the ruleset stays in force');
  }
}

/**
 * How the previous daemon of this state directory ended, when that was not
 * a clean stop: it was running (or starting) and is gone without saying it
 * stopped (a crash, a kill, a watchdog timeout, power lost), or its start
 * failed. Null after a clean stop or on a first start. (A daemon of this
 * state directory that still runs stops this one before it gets here.)
 */
export function previousFailure(prev: DaemonState | null, pid = process.pid): { message: string; detail: Record<string, unknown> } | null {
  if (!prev || prev.pid === pid) return null;
  if (prev.state === 'failed') {
    return { message: `the previous Sluice daemon (pid ${prev.pid}) failed to start at ${prev.at}: ${prev.error ?? 'unknown error'}; this one started`, detail: { pid: prev.pid, at: prev.at, state: prev.state, ...(prev.error ? { error: prev.error } : {}) } };
  }
  if (prev.state === 'running' || prev.state === 'starting') {
    return {
      message: `the previous Sluice daemon (pid ${prev.pid}, ${prev.state} since ${prev.at}) ended without stopping cleanly (crashed, killed, missed its watchdog, or the machine lost power); this one started. Until now the ruleset stayed in force, but the DNS guard and the event log were down`,
      detail: { pid: prev.pid, at: prev.at, state: prev.state },
    };
  }
  return null;
}

/** A table let go of for the command line is taken back after this even if no sync comes. */
const RELEASE_MS = 10_000;

/** How long a changed policy file must hold still before it is read as a policy. */
const SETTLE_READ_MS = 300;

/**
 * Why a policy file is not safe to reload from (null when it is): it and its
 * directory must belong to root (or this process's user) and be writable by
 * nobody else, following a symlink to where the file really is.
 */
export function unsafePolicyFile(path: string): string | null {
  const uid = process.getuid?.() ?? 0;
  let real: string;
  try {
    real = realpathSync(path);
  } catch (err) {
    return `cannot resolve it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  for (const [what, p] of [
    ['the file', real],
    ['its directory', dirname(real)],
  ] as const) {
    let st: Stats;
    try {
      st = statSync(p);
    } catch (err) {
      return `cannot stat ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
    }
    if (st.uid !== 0 && st.uid !== uid) return `${what} (${p}) belongs to uid ${st.uid}`;
    if ((st.mode & 0o022) !== 0) return `${what} (${p}) is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`;
  }
  return null;
}


/** The table, or null when absent or unreadable (for a log line: never throws). */
function safeRead(nf: Netfilter): unknown {
  try {
    return nf.read(TABLE_NAME, { elements: 'none' });
  } catch {
    return null;
  }
}
