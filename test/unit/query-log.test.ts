/** The column-stored log behind `sluice dns`: what comes out is what went in, newest kept. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import { QueryLog } from '../../src/dns/query-log.js';

const word = fc.stringMatching(/^[a-z0-9.-]{1,12}$/);
const event: fc.Arbitrary<DnsQueryEvent> = fc
  .record({
    time: fc.integer({ min: 0, max: 2 ** 45 }),
    transport: fc.constantFrom('udp' as const, 'tcp' as const, 'passive' as const),
    client: fc.record({ address: fc.constantFrom('127.0.0.1', '::1', '198.18.0.2'), port: fc.integer({ min: 0, max: 65535 }) }),
    // Short names in their slot; long ones (a 253-byte name, multi-byte text around the 96-byte slot) beside it.
    name: fc.oneof(word, fc.string({ minLength: 90, maxLength: 260 }), fc.string({ unit: 'grapheme', minLength: 20, maxLength: 60 }), fc.constant(`${'a'.repeat(95)}\u00e9`)),
    type: fc.integer({ min: 0, max: 65535 }),
    verdict: fc.constantFrom('allowed' as const, 'blocked' as const, 'would-block' as const, 'error' as const),
    // Rule lists repeat (shared by their text): from a small pool, names with the separators a join might use.
    rules: fc.array(fc.constantFrom('api', 'a\nb', 'a', 'b', '["a","b"]', 'b\nc'), { maxLength: 3 }),
    rcode: fc.integer({ min: 0, max: 4095 }),
    answers: fc.array(fc.constantFrom('198.18.0.10', '2001:db8::1', '198.18.16.7', '2001:db8:ffff:ffff:ffff:ffff:ffff:fffe'), { maxLength: 4 }),
    dropped: fc.array(fc.record({ address: fc.constantFrom('10.0.0.1', '127.0.0.1'), why: word }), { maxLength: 2 }),
    latencyMs: fc.integer({ min: 0, max: 10_000_000 }).map((x) => x / 1000),
  })
  .chain((e) =>
    fc.record({ detail: fc.option(word, { nil: undefined }), process: fc.option(fc.record({ pid: fc.integer({ min: 1, max: 4_000_000 }), comm: word }), { nil: undefined }) }).map((o) => {
      const out: DnsQueryEvent = { ...e };
      if (o.detail !== undefined) out.detail = o.detail;
      if (o.process) out.process = o.process;
      return out;
    }),
  );

describe('unit: QueryLog', () => {
  it('property: last(n) gives back the newest n events as they were pushed, oldest first', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(event, { maxLength: 40 }), fc.integer({ min: -3, max: 50 }), (cap, pushed, n) => {
        const log = new QueryLog(cap);
        for (const e of pushed) log.push(e);
        // Plain objects on both sides (fast-check builds records without a prototype).
        const plain = (x: unknown) => JSON.parse(JSON.stringify(x)) as unknown;
        const model = pushed.slice(-cap);
        assert.equal(log.size, model.length);
        assert.deepEqual(plain(log.last()), plain(model));
        assert.deepEqual(plain(log.last(n)), plain(n <= 0 ? [] : model.slice(-n)));
      }),
      { numRuns: 300 },
    );
  });

  it('events handed out are copies: changing one changes nothing kept', () => {
    const log = new QueryLog(4);
    const e: DnsQueryEvent = { time: 1, transport: 'udp', client: { address: '127.0.0.1', port: 5 }, name: 'a.example', type: 1, verdict: 'allowed', rules: ['api'], rcode: 0, answers: ['198.18.0.10'], dropped: [], latencyMs: 0.5 };
    log.push(e);
    const out = log.last(1)[0] as DnsQueryEvent;
    out.rules.push('x');
    out.answers.length = 0;
    assert.deepEqual(log.last(1)[0], e);
  });

  it('property: answerTimes(since) is the median, 99th percentile (nearest rank), maximum and count of the kept answers at or after since, passive observations left out', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(event, { maxLength: 40 }), fc.integer({ min: 0, max: 2 ** 45 }), (cap, pushed, since) => {
        const log = new QueryLog(cap);
        for (const e of pushed) log.push(e);
        const xs = pushed
          .slice(-cap)
          .filter((e) => e.time >= since && e.transport !== 'passive')
          .map((e) => e.latencyMs)
          .sort((a, b) => a - b);
        const n = xs.length;
        const want = n === 0 ? { count: 0, p50: 0, p99: 0, max: 0 } : { count: n, p50: xs[Math.ceil(0.5 * n) - 1], p99: xs[Math.ceil(0.99 * n) - 1], max: xs[n - 1] };
        assert.deepEqual(log.answerTimes(since), want);
      }),
      { numRuns: 300 },
    );
  });

  it('answerTimes: 100 answers of 1..100 ms give 50, 99 and 100; an older one and a passive one do not count, wherever they sit', () => {
    const log = new QueryLog(200);
    const at = (time: number, latencyMs: number, transport: DnsQueryEvent['transport'] = 'udp'): DnsQueryEvent => ({ time, transport, client: { address: '127.0.0.1', port: 5 }, name: 'a.example', type: 1, verdict: 'allowed', rules: [], rcode: 0, answers: [], dropped: [], latencyMs });
    log.push(at(1_000, 100_000));
    for (let i = 1; i <= 100; i++) {
      log.push(at(5_000 + i, i));
      // Recorded late (its process was looked up first): older than since, between newer ones.
      if (i === 50) log.push(at(1_500, 90_000));
    }
    log.push(at(9_000, 70_000, 'passive'));
    assert.deepEqual(log.answerTimes(5_000), { count: 100, p50: 50, p99: 99, max: 100 });
    assert.deepEqual(log.answerTimes(10_000), { count: 0, p50: 0, p99: 0, max: 0 });
  });

  it('refuses a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => new QueryLog(bad), RangeError);
  });
});
