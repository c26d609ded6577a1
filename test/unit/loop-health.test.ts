/**
 * The daemon's main-thread health for /metrics (src/runtime/loop-health.ts):
 * event-loop delay per window and garbage-collection pauses by kind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { constants } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import type { Family } from '../../src/runtime/metrics.js';
import { LoopHealth, loopWindowMs } from '../../src/runtime/loop-health.js';
import { ROOT } from '../support/fixtures.js';

const sample = (fams: Family[], name: string, labels: Record<string, string> = {}): number | undefined =>
  fams.find((f) => f.name === name)?.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))?.value;

describe('unit: loop health', () => {
  it('a loop held for 300 ms shows as a delay of at least 0.2 s in the window it happened in, and not in the next', async () => {
    const h = new LoopHealth(3_600_000);
    try {
      await new Promise((r) => setTimeout(r, 50));
      const until = performance.now() + 300;
      while (performance.now() < until) {
        /* holding the loop, as a long synchronous task would */
      }
      // The sampling timer (10 ms) must run once more to record how late it was.
      await new Promise((r) => setTimeout(r, 50));
      h.roll();
      const held = h.families();
      assert.ok((sample(held, 'sluice_event_loop_delay_seconds', { quantile: '1' }) ?? 0) >= 0.2, JSON.stringify(held[0]));
      assert.ok((sample(held, 'sluice_event_loop_delay_seconds', { quantile: '0.5' }) ?? 1) < 0.2, 'the median is not the one stall');
      await new Promise((r) => setTimeout(r, 100));
      h.roll();
      assert.ok((sample(h.families(), 'sluice_event_loop_delay_seconds', { quantile: '1' }) ?? 1) < 0.2, 'the next window starts afresh');
    } finally {
      h.stop();
    }
  });

  it('the delay is how late the loop ran: the sampling interval (10 ms) the histogram counts in every sample is not lateness', () => {
    // monitorEventLoopDelay records the time between two runs of its 10 ms timer: an idle loop reads ~10 ms.
    const values: Record<number, number> = { 50: 10.1e6, 99: 12.3e6 };
    const fake = { enable: () => true, disable: () => true, reset: () => undefined, percentile: (q: number) => values[q] ?? NaN, count: 500, max: 87.8e6 };
    const h = new LoopHealth(3_600_000, undefined, fake);
    try {
      h.roll();
      const f = h.families();
      const q = (quantile: string) => Math.round((sample(f, 'sluice_event_loop_delay_seconds', { quantile }) ?? NaN) * 1e7) / 1e7;
      assert.deepEqual([q('0.5'), q('0.99'), q('1')], [0.0001, 0.0023, 0.0778]);
      // A sample shorter than the interval (a timer run early) is on time, never negative.
      values[50] = 9.5e6;
      h.roll();
      assert.equal(sample(h.families(), 'sluice_event_loop_delay_seconds', { quantile: '0.5' }), 0);
    } finally {
      h.stop();
    }
  });

  it('GC pauses add up per kind; the longest of a window is reported until the next closes', () => {
    const h = new LoopHealth(3_600_000);
    try {
      h.recordGc(constants.NODE_PERFORMANCE_GC_MINOR, 2);
      h.recordGc(constants.NODE_PERFORMANCE_GC_MINOR, 3);
      h.recordGc(constants.NODE_PERFORMANCE_GC_MAJOR, 40);
      h.recordGc(constants.NODE_PERFORMANCE_GC_INCREMENTAL, 1);
      h.recordGc(constants.NODE_PERFORMANCE_GC_WEAKCB, 0.5);
      h.recordGc(999, 7);
      h.roll();
      const f = h.families();
      assert.deepEqual(
        Object.fromEntries(['minor', 'major', 'incremental', 'weakcb', 'other'].map((k) => [k, sample(f, 'sluice_gc_pauses_total', { kind: k })])),
        { minor: 2, major: 1, incremental: 1, weakcb: 1, other: 1 },
      );
      assert.equal(sample(f, 'sluice_gc_pause_seconds_total', { kind: 'minor' }), 0.005);
      assert.equal(sample(f, 'sluice_gc_pause_seconds_total', { kind: 'major' }), 0.04);
      assert.equal(sample(f, 'sluice_gc_pause_max_seconds'), 0.04);
      h.recordGc(constants.NODE_PERFORMANCE_GC_MINOR, 1);
      h.roll();
      const next = h.families();
      assert.equal(sample(next, 'sluice_gc_pause_max_seconds'), 0.001, 'the window after has its own maximum');
      assert.equal(sample(next, 'sluice_gc_pauses_total', { kind: 'minor' }), 3, 'totals keep counting');
      for (const fam of next) assert.ok(['counter', 'gauge'].includes(fam.type) && /^sluice_[a-z_]+$/.test(fam.name));
    } finally {
      h.stop();
    }
  });

  it("the kernel's collector is observed: a forced full collection shows as a major pause", () => {
    const script = `
      const { LoopHealth } = await import(${JSON.stringify(join(ROOT, 'dist/src/runtime/loop-health.js'))});
      const h = new LoopHealth(3_600_000);
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 100));
      const f = h.families();
      h.stop();
      process.stdout.write(JSON.stringify(f));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const f = JSON.parse(r.stdout) as Family[];
    assert.ok((sample(f, 'sluice_gc_pauses_total', { kind: 'major' }) ?? 0) >= 1, r.stdout);
    assert.ok((sample(f, 'sluice_gc_pause_seconds_total', { kind: 'major' }) ?? 0) > 0);
  });
});

describe('unit: loop health window setting', () => {
  it('SLUICE_LOOP_WINDOW_MS: 1,000 to 3,600,000 ms; anything else is the default minute', () => {
    assert.equal(loopWindowMs(undefined), 60_000);
    assert.equal(loopWindowMs('5000'), 5_000);
    assert.equal(loopWindowMs('1000'), 1_000);
    assert.equal(loopWindowMs('3600000'), 3_600_000);
    for (const bad of ['999', '3600001', '', '5e3', '-5000', ' 5000', '5000ms', '0x1388', '99999999']) assert.equal(loopWindowMs(bad), 60_000, bad);
  });

  it('the summary carries the same figures as the metrics', () => {
    const h = new LoopHealth(5_000);
    try {
      h.recordGc(constants.NODE_PERFORMANCE_GC_MAJOR, 12);
      h.roll();
      const s = h.summary();
      assert.equal(s.windowSeconds, 5);
      assert.deepEqual(s.gc, { major: { count: 1, seconds: 0.012 } });
      assert.equal(s.gcMaxPause, 0.012);
      assert.equal(s.loopDelay.max, sample(h.families(), 'sluice_event_loop_delay_seconds', { quantile: '1' }));
    } finally {
      h.stop();
    }
  });
});
