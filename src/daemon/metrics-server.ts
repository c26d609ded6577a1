import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { SluiceError } from '../errors.js';
import type { KernelMetricsContext } from './kernel-counter-metrics.js';
import type { Family, Registry } from '../runtime/metrics.js';
import { stopWorkerThread } from './worker-stop.js';

/**
 * GET /metrics, served by a worker thread (metrics-thread.ts) so that a
 * scrape never runs on the event loop that answers DNS: connections, HTTP
 * parsing, authentication, the kernel counter read and the rendering all
 * happen there. The event loop's part is a snapshot of in-process values
 * (plain numbers the components keep), taken at most once per
 * `snapshotMinMs` however often anyone scrapes.
 *
 * Who may read: by default only root, over a Unix socket in the state
 * directory (mode 0600). TCP (loopback only) only when configured, and then
 * only with a bearer token. Connections are capped per peer (the uid owning
 * the peer socket, from the kernel's socket table) and in total, with an idle
 * timeout and a lifetime, so idle connections from one user cannot keep
 * anyone else from scraping.
 */

export interface MetricsLimits {
  /** TCP connections open at once per peer uid. */
  perPeer: number;
  /** Connections open at once in all. */
  total: number;
  /** A connection that sends nothing for this long is closed. */
  idleMs: number;
  /** No connection lives longer than this (a scrape takes milliseconds). */
  lifetimeMs: number;
  /** Largest request head accepted. */
  maxHeaderBytes: number;
}

export const METRICS_LIMITS: MetricsLimits = { perPeer: 8, total: 256, idleMs: 5_000, lifetimeMs: 15_000, maxHeaderBytes: 8_192 };

/** What the worker thread is told (its workerData). */
export interface MetricsThreadConfig {
  unixPath: string | null;
  tcp: { host: string; port: number; token: string } | null;
  /** The table whose counters the worker reads from the kernel; null: none (tests). */
  table: string | null;
  limits: MetricsLimits;
}

/** Where metrics are served: the Unix socket, and TCP when configured. */
export interface MetricsListen {
  unix: boolean;
  tcp: { host: string; port: number } | null;
}

/**
 * Parses `--metrics`: `off`, `unix` (the default: the root-only socket
 * alone), or `HOST:PORT` on loopback (the socket and TCP with a token).
 */
export function parseMetricsListen(text: string | undefined): MetricsListen | null {
  if (text === undefined || text === 'unix') return { unix: true, tcp: null };
  if (text === 'off') return null;
  const m = /^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):([0-9]{1,5})$/.exec(text);
  if (!m) throw new SluiceError('EMETRICS', `Bad metrics address (want off, unix, or HOST:PORT on loopback): ${JSON.stringify(text)}`);
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
  const port = Number(m[2]);
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) throw new SluiceError('EMETRICS', `Metrics listen on loopback only, not: ${host}`);
  if (port < 1 || port > 65535) throw new SluiceError('EMETRICS', `Bad metrics port: ${port}`);
  return { unix: true, tcp: { host: host === 'localhost' ? '127.0.0.1' : host, port } };
}

const TOKEN = /^[\x21-\x7e]{16,512}$/;

/** Reads a token file that only its owner (root) can read; refuses anything else. */
function readTokenFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new SluiceError('EMETRICS', `Cannot read the metrics token file: ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SluiceError('EMETRICS', `The metrics token file is not a regular file: ${path}`);
    if (st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
      throw new SluiceError('EMETRICS', `The metrics token file must be owned and readable by ${process.getuid?.() === 0 ? 'root' : 'this user'} only: ${path} (owner ${st.uid}, mode 0${(st.mode & 0o777).toString(8)})`);
    }
    const token = readFileSync(fd, 'utf8').trim();
    if (!TOKEN.test(token)) throw new SluiceError('EMETRICS', `The metrics token must be 16 to 512 printable characters without spaces: ${path}`);
    return token;
  } finally {
    closeSync(fd);
  }
}

/**
 * The bearer token for TCP scrapes: from `file` when given, otherwise
 * `metrics.token` in the state directory, generated (32 random bytes,
 * mode 0600) the first time. Never taken from the command line, which every
 * local user can read in /proc.
 */
export function metricsToken(stateDir: string, file?: string): string {
  if (file !== undefined) return readTokenFile(file);
  const path = `${stateDir}/metrics.token`;
  try {
    writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new SluiceError('EMETRICS', `Cannot write the metrics token: ${path}: ${(err as Error).message}`);
  }
  return readTokenFile(path);
}

export interface MetricsServerOptions {
  registry: Registry;
  unixPath: string | null;
  tcp: { host: string; port: number; token: string } | null;
  table: string | null;
  /** The policy in force, for labelling kernel counters; null when there is none. */
  context: () => KernelMetricsContext | null;
  limits?: Partial<MetricsLimits>;
  /** The event loop takes at most one snapshot per this many ms (default 250). */
  snapshotMinMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface MetricsServerStats {
  /** Snapshots the event loop took, and the time it spent on them. */
  snapshots: number;
  snapshotMs: number;
  snapshotMaxMs: number;
  workerRestarts: number;
}

const RESTART_DELAY_MS = 5_000;

/** The event loop's side of the metrics worker. */
export class MetricsServer {
  readonly stats: MetricsServerStats = { snapshots: 0, snapshotMs: 0, snapshotMaxMs: 0, workerRestarts: 0 };
  private worker: Worker | undefined;
  private stopping = false;
  private cached: { at: number; families: Family[]; context: KernelMetricsContext | null } | undefined;
  private restartTimer: NodeJS.Timeout | undefined;

  constructor(private opts: MetricsServerOptions) {}

  /** Starts the worker; resolves once it listens, with where. */
  start(): Promise<{ unix: string | null; tcp: { host: string; port: number } | null }> {
    const config: MetricsThreadConfig = { unixPath: this.opts.unixPath, tcp: this.opts.tcp, table: this.opts.table, limits: { ...METRICS_LIMITS, ...this.opts.limits } };
    const w = new Worker(new URL('./metrics-thread.js', import.meta.url), { workerData: config });
    this.worker = w;
    return new Promise((resolve, reject) => {
      let ready = false;
      w.on('message', (m: { t: 'listening'; unix: string | null; tcp: { host: string; port: number } | null } | { t: 'failed'; message: string } | { t: 'want'; id: number }) => {
        if (m.t === 'want') this.answer(w, m.id);
        else if (m.t === 'listening') {
          ready = true;
          resolve({ unix: m.unix, tcp: m.tcp });
        } else if (m.t === 'failed') {
          if (!ready) reject(new SluiceError('EMETRICS', `Cannot serve metrics: ${m.message}`));
          else this.opts.log?.('error', 'metrics thread failed', { error: m.message });
          void w.terminate();
        }
      });
      w.on('error', (err) => {
        if (!ready) reject(new SluiceError('EMETRICS', `Cannot serve metrics: ${err.message}`));
        else this.opts.log?.('error', 'metrics thread failed', { error: err.message });
      });
      w.on('exit', () => {
        if (this.worker !== w) return;
        this.worker = undefined;
        if (!ready || this.stopping) return;
        // Metrics are not worth a daemon: start the thread again after a pause.
        this.stats.workerRestarts++;
        this.restartTimer = setTimeout(() => {
          if (this.stopping) return;
          this.start().catch((err: unknown) => this.opts.log?.('error', 'metrics thread could not restart', { error: (err as Error).message }));
        }, RESTART_DELAY_MS);
        this.restartTimer.unref();
      });
    });
  }

  /** The worker wants the in-process values: a fresh snapshot, or the last one if it is recent. */
  private answer(w: Worker, id: number): void {
    const now = performance.now();
    if (!this.cached || now - this.cached.at >= (this.opts.snapshotMinMs ?? 250)) {
      const families = this.opts.registry.snapshot();
      const context = this.opts.context();
      const ms = performance.now() - now;
      this.stats.snapshots++;
      this.stats.snapshotMs += ms;
      this.stats.snapshotMaxMs = Math.max(this.stats.snapshotMaxMs, ms);
      families.push(
        { name: 'sluice_metrics_snapshots_total', help: 'Snapshots of in-process values the event loop took for scrapes', type: 'counter', samples: [{ labels: {}, value: this.stats.snapshots }] },
        { name: 'sluice_metrics_snapshot_seconds_total', help: 'Event-loop time spent taking those snapshots', type: 'counter', samples: [{ labels: {}, value: this.stats.snapshotMs / 1000 }] },
      );
      this.cached = { at: now, families, context };
    }
    w.postMessage({ t: 'snapshot', id, families: this.cached.families, context: this.cached.context });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const w = this.worker;
    this.worker = undefined;
    if (w) await stopWorkerThread(w);
  }
}
