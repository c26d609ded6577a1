import { Worker } from 'node:worker_threads';
import type { SuggestRequest } from './dashboard-query.js';
import { SUGGEST_LIMITS } from './dashboard-suggest.js';
import type { SuggestWorkerData } from './dashboard-suggest-worker.js';

/**
 * The answer of one suggestion: the page's figures, an error (a 500), or
 * "not now" (a 503 with Retry-After: another window is being computed, or
 * this one ran over its time or heap and was ended).
 */
/** `busy`: another window is being computed (the same request later will do); without it a `retryAfter` answer ran over its time or heap (a shorter window will). */
export type SuggestAnswer = { ok: true; value: Record<string, unknown> } | { ok: false; error: string; retryAfter?: number; busy?: true };

export interface SuggestRunnerOptions {
  stateDir: string;
  /** The worker is ended after this long (ms) and the request answered 503. */
  timeoutMs: number;
  /** The worker's old-generation heap (MiB); over it, the worker is ended and the request answered 503. */
  maxHeapMb: number;
  /** The scan's own bounds (dashboard-suggest.ts). */
  limits?: SuggestWorkerData['limits'];
  /** The worker's entry (tests); default dashboard-suggest-worker.js beside this file. */
  entry?: URL;
}

/**
 * Above the scan's own 10 s budget: the scan stops itself then, and what
 * follows it (the suggestion and its replay over the flows read) is bounded
 * by the flow cap; this catches what is not.
 */
export const SUGGEST_WORKER: Pick<SuggestRunnerOptions, 'timeoutMs' | 'maxHeapMb'> = { timeoutMs: 30_000, maxHeapMb: 512 };

/**
 * Runs the dashboard's Suggestions (`sluice suggest` and `--check` over a
 * window of the event store) in a short-lived worker of its own, so the
 * seconds a large store takes hold up neither the dashboard's other
 * requests nor its live streams. One at a time: a request for the window
 * being computed shares its answer; a request for another window is told
 * to come back (503 with Retry-After) rather than starting a second scan.
 * The worker is ended when it runs over its time or heap, and when the
 * runner stops.
 */
export class SuggestRunner {
  private running: { key: string; startedAt: number; answer: Promise<SuggestAnswer>; worker: Worker } | null = null;

  constructor(private readonly opts: SuggestRunnerOptions) {}

  /** What is being computed now (for the status page), or null. */
  get busy(): { key: string; startedAt: string } | null {
    return this.running ? { key: this.running.key, startedAt: new Date(this.running.startedAt).toISOString() } : null;
  }

  /** The suggestion for `req`; `key` names what it depends on (window, stable days, applied policy). */
  run(req: SuggestRequest, key: string): Promise<SuggestAnswer> {
    if (this.running) {
      if (this.running.key === key) return this.running.answer;
      const left = Math.max(1, Math.ceil((this.running.startedAt + this.opts.timeoutMs - Date.now()) / 1000));
      return Promise.resolve({ ok: false, error: 'another suggestion is being computed; try again shortly', retryAfter: left, busy: true });
    }
    const data: SuggestWorkerData = { stateDir: this.opts.stateDir, req, limits: this.opts.limits ?? { budgetMs: SUGGEST_LIMITS.budgetMs, maxFlows: SUGGEST_LIMITS.maxFlows } };
    const worker = new Worker(this.opts.entry ?? new URL('./dashboard-suggest-worker.js', import.meta.url), {
      workerData: data,
      resourceLimits: { maxOldGenerationSizeMb: this.opts.maxHeapMb },
    });
    const answer = new Promise<SuggestAnswer>((resolve) => {
      let done = false;
      const finish = (a: SuggestAnswer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (this.running?.worker === worker) this.running = null;
        resolve(a);
        void worker.terminate();
      };
      const retry = Math.max(1, Math.ceil(this.opts.timeoutMs / 1000));
      const timer = setTimeout(() => finish({ ok: false, error: `the suggestion took longer than ${this.opts.timeoutMs / 1000} s and was stopped; try a shorter window`, retryAfter: retry }), this.opts.timeoutMs);
      worker.once('message', (m: SuggestAnswer) => finish(m.ok ? { ok: true, value: m.value } : { ok: false, error: String(m.error) }));
      worker.once('error', (err: Error & { code?: string }) =>
        finish(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? { ok: false, error: `the suggestion needed more than ${this.opts.maxHeapMb} MiB and was stopped; try a shorter window`, retryAfter: retry } : { ok: false, error: err.message }),
      );
      worker.once('exit', (code) => finish({ ok: false, error: `the suggestion's worker ended (exit ${code}) without an answer`, retryAfter: retry }));
    });
    this.running = { key, startedAt: Date.now(), answer, worker };
    return answer;
  }

  /** Ends a worker still computing (the dashboard stopping). */
  stop(): void {
    const r = this.running;
    this.running = null;
    if (r) void r.worker.terminate();
  }
}
