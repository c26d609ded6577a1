import type { Family } from '../runtime/metrics.js';

/**
 * The dashboard's health page, as data: the figures an operator needs to
 * trust what the other pages show, read from the same values /metrics
 * exposes (the main thread's registry snapshot, and the kernel's counters
 * read by the dashboard's own thread), so the page and a Prometheus scrape
 * can never disagree. Pure: tests feed it families.
 *
 * - accounting: every block-kind packet the kernel counted either became a
 *   stored event, was held back by the log budget (suppressed), was lost in
 *   the kernel (NFLOG sequence gaps), dropped by a queue in Sluice, was
 *   malformed, or is still queued. The kernel's counters start at the last
 *   apply and the pipeline's at the daemon's start, so the page compares
 *   differences between two readings, not the totals.
 * - attribution: events by how their process was found.
 * - guard: answer time over the last minute, answers by verdict, cache, upstream.
 * - alerts: each route's outbox.
 * - loop: the main thread's event-loop delay and GC pauses (what the guard's tail depends on).
 * - tamper: foreign changes seen and restored.
 */
export interface DashboardHealth {
  at: number;
  accounting: {
    /** Packets the kernel's rule counters saw meet a deny (a deny rule or the default deny), by what became of them; null: counters not readable. */
    kernel: { blocked: number; 'would-block': number; suppressed: number } | null;
    records: number;
    lost: number;
    overflows: number;
    malformed: number;
    foreign: number;
    dropped: { collector: number; store: number };
    stored: { blocked: number; 'would-block': number; allowed: number };
    queued: { collector: number; store: number };
  };
  attribution: {
    methods: Record<string, number>;
    /** Share of events with a process (kernel, socket, cgroup or user method); null before the first event. */
    rate: number | null;
    probesLoaded: boolean | null;
  };
  guard: {
    answers: Record<string, number>;
    /** Seconds, over the last minute; count is how many answers that covers. */
    latency: { p50: number; p99: number; max: number; count: number };
    cache: { hits: number; misses: number; entries: number; hitRatio: number };
    upstream: { failures: number; timeouts: number; badReplies: number };
    learnedAddresses: number;
  } | null;
  alerts: { route: string; sink: string; delivered: number; retried: number; failed: number; queued: number; suppressed: number }[];
  loop: { delay: { p50: number; p99: number; max: number }; gcMaxPause: number; gcPauses: number; gcSeconds: number };
  tamper: { detected: number; restored: number; restoreFailures: number; notificationsLost: number };
}

type Labels = Record<string, string>;

/** The families by name; the same name from two collectors (the registry allows it) merges. */
function index(families: Family[]): Map<string, Family['samples']> {
  const out = new Map<string, Family['samples']>();
  for (const f of families) {
    const have = out.get(f.name);
    if (have) have.push(...f.samples);
    else out.set(f.name, [...f.samples]);
  }
  return out;
}

function matches(labels: Labels, want: Labels): boolean {
  for (const [k, v] of Object.entries(want)) if (labels[k] !== v) return false;
  return true;
}

export function dashboardHealth(main: Family[], kernel: Family[] | null, now: number): DashboardHealth {
  const m = index(main);
  const k = kernel ? index(kernel) : null;
  const has = (name: string) => m.has(name);
  /** The sum of a family's samples whose labels include `want`. */
  const sum = (name: string, want: Labels = {}, from = m): number => {
    let total = 0;
    for (const s of from.get(name) ?? []) if (matches(s.labels, want) && Number.isFinite(s.value)) total += s.value;
    return total;
  };
  const byLabel = (name: string, label: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const s of m.get(name) ?? []) {
      const key = s.labels[label];
      if (key !== undefined && Number.isFinite(s.value)) out[key] = (out[key] ?? 0) + s.value;
    }
    return out;
  };

  const methods = byLabel('sluice_events_attributed_total', 'method');
  const all = Object.values(methods).reduce((a, b) => a + b, 0);
  const found = ['kernel', 'socket', 'cgroup', 'user'].reduce((a, key) => a + (methods[key] ?? 0), 0);

  const routes = new Map<string, DashboardHealth['alerts'][number]>();
  const route = (name: string, field: 'delivered' | 'retried' | 'failed' | 'queued' | 'suppressed') => {
    for (const s of m.get(name) ?? []) {
      const r = s.labels.route;
      if (r === undefined) continue;
      const entry = routes.get(r) ?? { route: r, sink: s.labels.sink ?? '', delivered: 0, retried: 0, failed: 0, queued: 0, suppressed: 0 };
      entry[field] += Number.isFinite(s.value) ? s.value : 0;
      routes.set(r, entry);
    }
  };
  route('sluice_alerts_delivered_total', 'delivered');
  route('sluice_alerts_retried_total', 'retried');
  route('sluice_alerts_failed_total', 'failed');
  route('sluice_alerts_queued', 'queued');
  route('sluice_alerts_suppressed_total', 'suppressed');

  return {
    at: now,
    accounting: {
      kernel: k
        ? {
            blocked: sum('sluice_rule_packets_total', { action: 'deny', mode: 'enforce' }, k),
            'would-block': sum('sluice_rule_packets_total', { action: 'deny', mode: 'audit' }, k),
            suppressed: sum('sluice_log_suppressed_total', { kind: 'block' }, k),
          }
        : null,
      records: sum('sluice_nflog_records_total'),
      lost: sum('sluice_nflog_lost_records_total'),
      overflows: sum('sluice_nflog_overflows_total'),
      malformed: sum('sluice_nflog_malformed_total'),
      foreign: sum('sluice_nflog_foreign_total'),
      dropped: { collector: sum('sluice_events_dropped_total', { stage: 'collector' }), store: sum('sluice_events_dropped_total', { stage: 'store' }) },
      stored: {
        blocked: sum('sluice_events_stored_total', { verdict: 'blocked' }),
        'would-block': sum('sluice_events_stored_total', { verdict: 'would-block' }),
        allowed: sum('sluice_events_stored_total', { verdict: 'allowed' }),
      },
      queued: { collector: sum('sluice_event_queue_length', { stage: 'collector' }), store: sum('sluice_event_queue_length', { stage: 'store' }) },
    },
    attribution: {
      methods,
      rate: all > 0 ? found / all : null,
      probesLoaded: has('sluice_attribution_probes_loaded') ? sum('sluice_attribution_probes_loaded') > 0 : null,
    },
    guard: has('sluice_dns_queries_total')
      ? {
          answers: byLabel('sluice_dns_queries_total', 'verdict'),
          latency: {
            p50: sum('sluice_dns_answer_seconds', { quantile: '0.5' }),
            p99: sum('sluice_dns_answer_seconds', { quantile: '0.99' }),
            max: sum('sluice_dns_answer_seconds', { quantile: '1' }),
            count: sum('sluice_dns_answers_timed'),
          },
          cache: {
            hits: sum('sluice_dns_cache_hits_total'),
            misses: sum('sluice_dns_cache_misses_total'),
            entries: sum('sluice_dns_cache_entries'),
            hitRatio: sum('sluice_dns_cache_hit_ratio'),
          },
          upstream: {
            failures: sum('sluice_dns_upstream_failures_total'),
            timeouts: sum('sluice_dns_upstream_timeouts_total'),
            badReplies: sum('sluice_dns_upstream_bad_replies_total'),
          },
          learnedAddresses: sum('sluice_dns_learned_addresses'),
        }
      : null,
    alerts: [...routes.values()].sort((a, b) => a.route.localeCompare(b.route)),
    loop: {
      delay: {
        p50: sum('sluice_event_loop_delay_seconds', { quantile: '0.5' }),
        p99: sum('sluice_event_loop_delay_seconds', { quantile: '0.99' }),
        max: sum('sluice_event_loop_delay_seconds', { quantile: '1' }),
      },
      gcMaxPause: sum('sluice_gc_pause_max_seconds'),
      gcPauses: sum('sluice_gc_pauses_total'),
      gcSeconds: sum('sluice_gc_pause_seconds_total'),
    },
    tamper: {
      detected: sum('sluice_tamper_detected_total'),
      restored: sum('sluice_tamper_restored_total'),
      restoreFailures: sum('sluice_tamper_restore_failures_total'),
      notificationsLost: sum('sluice_tamper_notifications_lost_total'),
    },
  };
}
