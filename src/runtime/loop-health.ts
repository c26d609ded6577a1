import { constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import type { Family } from './metrics.js';

/**
 * How the daemon's main thread is doing: how late its event loop runs (the
 * loop that answers DNS: a late loop is a late answer) and the garbage
 * collector's pauses, for /metrics. The loop delay is reported per window of
 * `windowMs` (the last complete window, so every scraper sees the same
 * figures whatever its interval, as a summary's quantiles); the pauses as
 * running totals per kind, plus the longest pause of the last window.
 */

/** The GC kinds Node reports, by the names Prometheus exporters use. */
const GC_KIND: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

interface Window {
  p50: number;
  p99: number;
  max: number;
  gcMax: number;
}

/**
 * The window of the loop-delay figures, from `$SLUICE_LOOP_WINDOW_MS`
 * (1,000 to 3,600,000; default 60,000). Anything else is the default: a
 * metrics setting is no reason for the firewall's daemon not to start.
 */
export function loopWindowMs(text: string | undefined): number {
  if (text === undefined || !/^[0-9]{4,7}$/.test(text)) return 60_000;
  const n = Number(text);
  return n >= 1_000 && n <= 3_600_000 ? n : 60_000;
}

/** The sampling interval of the loop-delay histogram, in ms. */
const SAMPLE_MS = 10;

/** What LoopHealth reads of monitorEventLoopDelay's histogram (a fake in tests). */
export type LoopSamples = Pick<IntervalHistogram, 'enable' | 'disable' | 'reset' | 'percentile' | 'count' | 'max'>;

/**
 * How late the loop ran, in seconds, from one of the histogram's values
 * (ns): the histogram records the whole time between two runs of its
 * sampling timer, so an idle loop reads as the sampling interval (10 ms),
 * not as on time. Lateness is what exceeds the interval.
 */
const lateness = (ns: number) => Math.max(0, ns / 1e6 - SAMPLE_MS) / 1000;

export class LoopHealth {
  private readonly histogram: LoopSamples;
  private readonly observer: PerformanceObserver;
  private readonly gc = new Map<string, { count: number; seconds: number }>();
  private gcMaxNow = 0;
  private last: Window | null = null;
  private windowStart: number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly windowMs = 60_000,
    private readonly now: () => number = () => performance.now(),
    histogram?: LoopSamples,
  ) {
    // 10 ms sampling: finer costs wake-ups, coarser misses short stalls.
    this.histogram = histogram ?? monitorEventLoopDelay({ resolution: SAMPLE_MS });
    this.histogram.enable();
    this.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.recordGc(((e as { detail?: { kind?: number } }).detail)?.kind ?? -1, e.duration);
    });
    this.observer.observe({ entryTypes: ['gc'] });
    this.windowStart = this.now();
    this.timer = setInterval(() => this.roll(), windowMs);
    this.timer.unref();
  }

  /** One GC pause of `ms` milliseconds of the given kind (the observer's callback; public for tests). */
  recordGc(kind: number, ms: number): void {
    const name = GC_KIND[kind] ?? 'other';
    const cur = this.gc.get(name) ?? { count: 0, seconds: 0 };
    cur.count++;
    cur.seconds += ms / 1000;
    this.gc.set(name, cur);
    if (ms / 1000 > this.gcMaxNow) this.gcMaxNow = ms / 1000;
  }

  /** Closes the current window: its figures become what a scrape reports. */
  roll(): void {
    const h = this.histogram;
    // A histogram with no sample yet reports its extremes as NaN or huge values.
    const ok = h.count > 0;
    this.last = {
      p50: ok ? lateness(h.percentile(50)) : 0,
      p99: ok ? lateness(h.percentile(99)) : 0,
      max: ok ? lateness(h.max) : 0,
      gcMax: this.gcMaxNow,
    };
    h.reset();
    this.gcMaxNow = 0;
    this.windowStart = this.now();
  }

  families(): Family[] {
    // Before the first window closes, the one running so far (a daemon scraped right after it starts).
    if (this.last === null && this.now() - this.windowStart > 0) this.roll();
    const w = this.last ?? { p50: 0, p99: 0, max: 0, gcMax: 0 };
    const gc = [...this.gc.entries()];
    const seconds = this.windowMs / 1000;
    return [
      {
        name: 'sluice_event_loop_delay_seconds',
        help: `How late the daemon's event loop (the one that answers DNS) ran its timers, over the last ${seconds} s: median, 99th percentile and maximum`,
        type: 'gauge',
        samples: [
          { labels: { quantile: '0.5' }, value: w.p50 },
          { labels: { quantile: '0.99' }, value: w.p99 },
          { labels: { quantile: '1' }, value: w.max },
        ],
      },
      { name: 'sluice_gc_pauses_total', help: "The daemon's main-thread garbage-collection pauses, by kind", type: 'counter', samples: gc.map(([kind, v]) => ({ labels: { kind }, value: v.count })) },
      { name: 'sluice_gc_pause_seconds_total', help: 'Time in those pauses, by kind', type: 'counter', samples: gc.map(([kind, v]) => ({ labels: { kind }, value: v.seconds })) },
      { name: 'sluice_gc_pause_max_seconds', help: `The longest garbage-collection pause over the last ${seconds} s`, type: 'gauge', samples: [{ labels: {}, value: w.gcMax }] },
    ];
  }

  /** The same figures for `sluice status --json` (and the benchmarks): seconds, per kind. */
  summary(): { windowSeconds: number; loopDelay: { p50: number; p99: number; max: number }; gcMaxPause: number; gc: Record<string, { count: number; seconds: number }> } {
    const f = this.families();
    const q = (quantile: string) => f[0]?.samples.find((s) => s.labels.quantile === quantile)?.value ?? 0;
    return {
      windowSeconds: this.windowMs / 1000,
      loopDelay: { p50: q('0.5'), p99: q('0.99'), max: q('1') },
      gcMaxPause: f[3]?.samples[0]?.value ?? 0,
      gc: Object.fromEntries([...this.gc.entries()].map(([k, v]) => [k, { ...v }])),
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
    this.observer.disconnect();
  }
}
