import { Worker } from 'node:worker_threads';
import type { ProbeMaps } from '../monitor/kernel-attribution.js';
import { PerSecondBudget } from './budget.js';
import type { QueryAttributionStats, QueryClient, QueryProcess } from './query-attribution.js';

export interface AttributionClientStats extends QueryAttributionStats {
  /** Lookups that got no answer: the worker failed, was restarting, or took too long. */
  unanswered: number;
  workerRestarts: number;
}

const REPLY_TIMEOUT_MS = 2000;
/** At most one message to the worker per this many ms: under load, lookups go in batches. */
const BATCH_MS = 2;
const RESTART_DELAY_MS = 5000;

interface Waiter {
  clients: QueryClient[];
  resolve: (found: (QueryProcess | undefined)[]) => void;
}

/**
 * The event loop's side of query attribution (src/dns/query-attribution.ts,
 * run in a worker thread). Requests made in one turn of the loop go over as
 * one message; a batch the worker does not answer in time resolves with no
 * processes (counted), and a worker that died is started again after a pause.
 */
export class AttributionClient {
  private workerStats: QueryAttributionStats = { lookups: 0, found: 0, kernel: 0, overBudget: 0, overWork: 0, errors: 0 };
  private own = { overBudget: 0, unanswered: 0, workerRestarts: 0 };
  private budget: PerSecondBudget;
  private worker: Worker | undefined;
  private notBefore = 0;
  private nextId = 1;
  private inFlight = new Map<number, { waiters: Waiter[]; timer: NodeJS.Timeout }>();
  private queue: Waiter[] = [];
  private scheduled = false;
  private lastFlush = 0;
  private closed = false;

  constructor(
    private opts: {
      perSecond?: number;
      procRoot?: string;
      /** For tests: another worker script. */ script?: URL;
      /** The attribution probes' maps (fds valid in every thread of this process) and this namespace. */
      probes?: { maps: ProbeMaps; netns: bigint };
    } = {},
  ) {
    this.budget = new PerSecondBudget(opts.perSecond ?? 500);
  }

  get stats(): AttributionClientStats {
    return { ...this.workerStats, overBudget: this.workerStats.overBudget + this.own.overBudget, unanswered: this.own.unanswered, workerRestarts: this.own.workerRestarts };
  }

  /** The per-second budget, applied here (only), so a flood costs no messages to the worker. */
  private take(n: number): boolean {
    if (this.budget.take(n)) return true;
    this.own.overBudget += n;
    return false;
  }

  /**
   * One client's process, or undefined at once (not a promise) when the
   * budget is spent or the client closed: at tens of thousands of queries a
   * second, most answered queries go unattributed, and they cost no promise.
   */
  identifyOne(client: QueryClient): Promise<QueryProcess | undefined> | undefined {
    if (this.closed || !this.take(1)) return undefined;
    return new Promise((resolve) => this.enqueue([client], (r) => resolve(r[0])));
  }

  identify(clients: QueryClient[]): Promise<(QueryProcess | undefined)[]> {
    if (clients.length === 0 || this.closed || !this.take(clients.length)) return Promise.resolve(clients.map(() => undefined));
    return new Promise((resolve) => this.enqueue(clients, resolve));
  }

  /** Queues a lookup for the next batch to the worker (at most one batch every BATCH_MS). */
  private enqueue(clients: QueryClient[], resolve: (found: (QueryProcess | undefined)[]) => void): void {
    this.queue.push({ clients, resolve });
    if (this.scheduled) return;
    this.scheduled = true;
    const wait = this.lastFlush + BATCH_MS - performance.now();
    if (wait <= 0) setImmediate(() => this.flush());
    else setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.scheduled = false;
    this.lastFlush = performance.now();
    const waiters = this.queue;
    this.queue = [];
    if (waiters.length === 0) return;
    const w = this.ensureWorker();
    if (!w) {
      this.fail(waiters);
      return;
    }
    const id = this.nextId++;
    const timer = setTimeout(() => {
      // A worker that takes this long is stuck (a /proc read that blocks): messages would only
      // pile up behind it. It is replaced, after the restart pause; its batches fail, counted.
      if (this.inFlight.has(id)) this.retire(w);
    }, REPLY_TIMEOUT_MS);
    timer.unref();
    this.inFlight.set(id, { waiters, timer });
    w.postMessage({ id, clients: waiters.flatMap((x) => x.clients) });
  }

  private fail(waiters: Waiter[]): void {
    for (const x of waiters) this.own.unanswered += x.clients.length;
    for (const x of waiters) x.resolve(x.clients.map(() => undefined));
  }

  /** Forgets a worker that died or hung: its batches fail, and a new one starts after the pause. */
  private retire(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = undefined;
    this.notBefore = Date.now() + RESTART_DELAY_MS;
    if (!this.closed) this.own.workerRestarts++;
    for (const [id, entry] of this.inFlight) {
      clearTimeout(entry.timer);
      this.inFlight.delete(id);
      this.fail(entry.waiters);
    }
    void w.terminate().catch(() => undefined);
  }

  private ensureWorker(): Worker | undefined {
    if (this.worker) return this.worker;
    if (this.closed || Date.now() < this.notBefore) return undefined;
    let w: Worker;
    try {
      w = new Worker(this.opts.script ?? new URL('./attribution-thread.js', import.meta.url), {
          // The budget is kept here: a second window in the worker, not aligned with this one, could refuse what this one let through.
        workerData: { perSecond: Infinity, procRoot: this.opts.procRoot, ...(this.opts.probes ? { probes: this.opts.probes } : {}) },
        resourceLimits: { maxOldGenerationSizeMb: 128 },
      });
    } catch {
      // No thread to be had (a thread or memory limit): lookups fail, counted, until the next try.
      this.notBefore = Date.now() + RESTART_DELAY_MS;
      this.own.workerRestarts++;
      return undefined;
    }
    w.unref();
    w.on('message', (m: { id: number; found: (QueryProcess | null)[]; stats: QueryAttributionStats }) => {
      this.workerStats = m.stats;
      const entry = this.inFlight.get(m.id);
      if (!entry) return;
      this.inFlight.delete(m.id);
      clearTimeout(entry.timer);
      let i = 0;
      for (const x of entry.waiters) x.resolve(x.clients.map(() => m.found[i++] ?? undefined));
    });
    const down = () => this.retire(w);
    w.on('error', down);
    w.on('exit', down);
    this.worker = w;
    return w;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.fail(this.queue);
    this.queue = [];
    const w = this.worker;
    this.worker = undefined;
    for (const entry of this.inFlight.values()) {
      clearTimeout(entry.timer);
      this.fail(entry.waiters);
    }
    this.inFlight.clear();
    if (w) await w.terminate();
  }
}
