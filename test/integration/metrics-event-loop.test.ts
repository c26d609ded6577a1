/**
 * Integration: how long a /metrics scrape blocks the daemon's event loop (the
 * one that answers DNS), before and after scrapes moved to a worker thread,
 * against a real table of 2,000 rules. The numbers are printed as test
 * diagnostics; they are measurements, not pass/fail criteria (these machines
 * are shared and noisy). What is checked is that both ways served every
 * scrape with the kernel's counters in it.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE } from '../support/monitor-helpers.js';
import { ROOT, World } from '../world/world.js';

interface Side {
  scrapes: { ok: number; failed: number; ms: number; bytes: number };
  blockedPerScrapeMs: { mean: number; max: number };
  loopDelayMs: { mean: number; p99: number; max: number };
}

describe('integration: metrics scrapes and the event loop', () => {
  let w: World;
  before(async () => {
    w = await World.create({ servers: false });
  });
  after(async () => {
    await w?.destroy();
  });

  it('2,000 rules, 100 scrapes: event-loop time per scrape on the loop (before) and in the worker (after)', async (t) => {
    const r = await w.exec([NODE, join(ROOT, 'dist/test/support/measure-metrics-loop.js'), '2000', '100'], { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim()) as { rules: number; counters: number; before: Side; after: Side };
    for (const side of ['before', 'after'] as const) {
      assert.deepEqual({ ok: m[side].scrapes.ok, failed: m[side].scrapes.failed }, { ok: 100, failed: 0 }, `${side}: every scrape served`);
      // Both carry the kernel's per-rule counters: about 2,000 rules times two families.
      assert.ok(m[side].scrapes.bytes > 2000 * 2 * 60, `${side}: the kernel counters are in the text (${m[side].scrapes.bytes} bytes)`);
    }
    const line = (side: 'before' | 'after') => {
      const s = m[side];
      return `${side}: event loop busy per scrape mean ${s.blockedPerScrapeMs.mean} ms, max ${s.blockedPerScrapeMs.max} ms; loop delay during scrapes mean ${s.loopDelayMs.mean} ms, p99 ${s.loopDelayMs.p99} ms, max ${s.loopDelayMs.max} ms; ${s.scrapes.ok} scrapes in ${s.scrapes.ms} ms`;
    };
    t.diagnostic(`${m.rules} rules, ${m.counters} kernel counters`);
    t.diagnostic(line('before'));
    t.diagnostic(line('after'));
  });
});
