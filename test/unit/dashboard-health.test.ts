/** The dashboard's health page reads the same values /metrics exposes: each figure from its family, families of one name merged. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dashboardHealth } from '../../src/daemon/dashboard-health.js';
import type { Family } from '../../src/runtime/metrics.js';

const fam = (name: string, samples: [Record<string, string>, number][], type: Family['type'] = 'counter'): Family => ({ name, help: name, type, samples: samples.map(([labels, value]) => ({ labels, value })) });

const MAIN: Family[] = [
  fam('sluice_nflog_records_total', [[{}, 120]]),
  fam('sluice_nflog_lost_records_total', [[{}, 3]]),
  fam('sluice_nflog_overflows_total', [[{}, 1]]),
  fam('sluice_nflog_malformed_total', [[{}, 2]]),
  fam('sluice_nflog_foreign_total', [[{}, 4]]),
  // The collector and the store each publish a family of the same name.
  fam('sluice_events_dropped_total', [[{ stage: 'collector' }, 5]]),
  fam('sluice_events_dropped_total', [[{ stage: 'store' }, 6]]),
  fam('sluice_event_queue_length', [[{ stage: 'collector' }, 7]], 'gauge'),
  fam('sluice_event_queue_length', [[{ stage: 'store' }, 8]], 'gauge'),
  fam('sluice_events_stored_total', [
    [{ verdict: 'blocked' }, 90],
    [{ verdict: 'would-block' }, 11],
    [{ verdict: 'allowed' }, 12],
  ]),
  fam('sluice_events_attributed_total', [
    [{ method: 'kernel' }, 60],
    [{ method: 'socket' }, 10],
    [{ method: 'cgroup' }, 5],
    [{ method: 'user' }, 5],
    [{ method: 'ambiguous' }, 4],
    [{ method: 'none' }, 16],
  ]),
  fam('sluice_attribution_probes_loaded', [[{}, 1]], 'gauge'),
  fam('sluice_dns_queries_total', [
    [{ verdict: 'allowed' }, 40],
    [{ verdict: 'blocked' }, 9],
  ]),
  fam('sluice_dns_answer_seconds', [
    [{ quantile: '0.5' }, 0.0004],
    [{ quantile: '0.99' }, 0.002],
    [{ quantile: '1' }, 0.01],
  ], 'gauge'),
  fam('sluice_dns_answers_timed', [[{}, 49]], 'gauge'),
  fam('sluice_dns_cache_hits_total', [[{}, 30]]),
  fam('sluice_dns_cache_misses_total', [[{}, 10]]),
  fam('sluice_dns_cache_entries', [[{}, 8]], 'gauge'),
  fam('sluice_dns_cache_hit_ratio', [[{}, 0.75]], 'gauge'),
  fam('sluice_dns_upstream_failures_total', [[{}, 1]]),
  fam('sluice_dns_upstream_timeouts_total', [[{}, 2]]),
  fam('sluice_dns_upstream_bad_replies_total', [[{}, 3]]),
  fam('sluice_dns_learned_addresses', [[{}, 17]], 'gauge'),
  fam('sluice_alerts_delivered_total', [
    [{ route: 'ops', sink: 'webhook' }, 4],
    [{ route: 'audit', sink: 'syslog' }, 9],
  ]),
  fam('sluice_alerts_queued', [[{ route: 'ops', sink: 'webhook' }, 2]], 'gauge'),
  fam('sluice_alerts_failed_total', [[{ route: 'ops', sink: 'webhook' }, 1]]),
  fam('sluice_alerts_retried_total', [[{ route: 'ops', sink: 'webhook' }, 6]]),
  fam('sluice_alerts_suppressed_total', [[{ route: 'audit', sink: 'syslog' }, 3]]),
  fam('sluice_event_loop_delay_seconds', [
    [{ quantile: '0.5' }, 0.001],
    [{ quantile: '0.99' }, 0.004],
    [{ quantile: '1' }, 0.02],
  ], 'gauge'),
  fam('sluice_gc_pauses_total', [
    [{ kind: 'minor' }, 30],
    [{ kind: 'major' }, 2],
  ]),
  fam('sluice_gc_pause_seconds_total', [
    [{ kind: 'minor' }, 0.03],
    [{ kind: 'major' }, 0.02],
  ]),
  fam('sluice_gc_pause_max_seconds', [[{}, 0.007]], 'gauge'),
  fam('sluice_tamper_detected_total', [[{}, 2]]),
  fam('sluice_tamper_restored_total', [[{}, 2]]),
  fam('sluice_tamper_restore_failures_total', [[{}, 0]]),
  fam('sluice_tamper_notifications_lost_total', [[{}, 1]]),
];

const KERNEL: Family[] = [
  fam('sluice_rule_packets_total', [
    [{ rule: '#default', action: 'deny', mode: 'enforce' }, 80],
    [{ rule: 'metadata', action: 'deny', mode: 'enforce' }, 20],
    [{ rule: 'web', action: 'allow', mode: 'enforce' }, 500],
    [{ rule: 'essentials', action: 'allow', mode: 'enforce' }, 7],
  ]),
  fam('sluice_log_suppressed_total', [
    [{ kind: 'block', budget: 'shared' }, 5],
    [{ kind: 'block', budget: 'user' }, 6],
    [{ kind: 'allow', budget: 'shared' }, 100],
  ]),
];

describe('unit: dashboard health figures', () => {
  it('every figure comes from its family, with the labels that say what it counts', () => {
    const h = dashboardHealth(MAIN, KERNEL, 1234);
    assert.equal(h.at, 1234);
    assert.deepEqual(h.accounting, {
      kernel: { blocked: 100, 'would-block': 0, suppressed: 11 },
      records: 120,
      lost: 3,
      overflows: 1,
      malformed: 2,
      foreign: 4,
      dropped: { collector: 5, store: 6 },
      stored: { blocked: 90, 'would-block': 11, allowed: 12 },
      queued: { collector: 7, store: 8 },
    });
    assert.deepEqual(h.attribution, { methods: { kernel: 60, socket: 10, cgroup: 5, user: 5, ambiguous: 4, none: 16 }, rate: 0.8, probesLoaded: true });
    assert.deepEqual(h.guard, {
      answers: { allowed: 40, blocked: 9 },
      latency: { p50: 0.0004, p99: 0.002, max: 0.01, count: 49 },
      cache: { hits: 30, misses: 10, entries: 8, hitRatio: 0.75 },
      upstream: { failures: 1, timeouts: 2, badReplies: 3 },
      learnedAddresses: 17,
    });
    assert.deepEqual(h.alerts, [
      { route: 'audit', sink: 'syslog', delivered: 9, retried: 0, failed: 0, queued: 0, suppressed: 3 },
      { route: 'ops', sink: 'webhook', delivered: 4, retried: 6, failed: 1, queued: 2, suppressed: 0 },
    ]);
    assert.deepEqual(h.loop, { delay: { p50: 0.001, p99: 0.004, max: 0.02 }, gcMaxPause: 0.007, gcPauses: 32, gcSeconds: 0.05 });
    assert.deepEqual(h.tamper, { detected: 2, restored: 2, restoreFailures: 0, notificationsLost: 1 });
  });

  it('audit mode: the kernel counts deny packets as would-block', () => {
    const audit = [fam('sluice_rule_packets_total', [[{ rule: '#default', action: 'deny', mode: 'audit' }, 33]])];
    assert.deepEqual(dashboardHealth(MAIN, audit, 0).accounting.kernel, { blocked: 0, 'would-block': 33, suppressed: 0 });
  });

  it('what is not there says so: no kernel counters, no guard, no probes, no events yet', () => {
    const h = dashboardHealth([], null, 0);
    assert.equal(h.accounting.kernel, null);
    assert.equal(h.guard, null);
    assert.equal(h.attribution.rate, null);
    assert.equal(h.attribution.probesLoaded, null);
    assert.deepEqual(h.alerts, []);
    const unloaded = dashboardHealth([fam('sluice_attribution_probes_loaded', [[{}, 0]], 'gauge')], null, 0);
    assert.equal(unloaded.attribution.probesLoaded, false);
  });

  it('a value that is not a finite number counts as nothing', () => {
    const h = dashboardHealth([fam('sluice_nflog_records_total', [[{}, Number.NaN]]), fam('sluice_events_dropped_total', [[{ stage: 'store' }, Infinity]])], null, 0);
    assert.equal(h.accounting.records, 0);
    assert.equal(h.accounting.dropped.store, 0);
  });
});
