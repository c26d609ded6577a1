/**
 * The contract every EventStore keeps, run against the memory store and the
 * SQLite store (test/unit/event-store-contract.test.ts), so the collector can
 * rely on one behaviour whichever store is configured.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import type { EventQuery, EventStore, LookupRow, RecordedEvent, StoredEvent } from '../../src/events/event-store.js';
import { ZERO_COUNTERS } from '../../src/events/event-store.js';
import { eventMatches } from '../../src/events/memory-store.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');

/** A blocked TCP connect, with overrides. */
export function ev(over: Partial<RecordedEvent> = {}): RecordedEvent {
  return {
    time: T0,
    verdict: 'blocked',
    rule: '#default',
    family: 4,
    proto: 6,
    src: '198.18.0.2',
    dst: '198.18.1.10',
    sport: 40000,
    dport: 443,
    ...over,
  };
}

const full: RecordedEvent = ev({
  iface: 'eth0',
  uid: 65534,
  user: 'nobody',
  process: { pid: 4242, exe: '/usr/bin/curl', cmdline: 'curl -s https://x', comm: 'curl', unit: 'backup.service', cgroup: '/system.slice/backup.service' },
  hostname: 'api.example.com',
  attribution: 'cgroup',
});

const strip = (e: StoredEvent): RecordedEvent => {
  const { id: _id, ...rest } = e;
  return rest;
};

export function eventStoreContract(label: string, make: () => EventStore): void {
  describe(`contract: EventStore (${label})`, () => {
    let s: EventStore;
    beforeEach(() => {
      s = make();
    });
    afterEach(() => {
      s.close();
    });

    it('a new store is empty, with zero counters', () => {
      assert.deepEqual(s.query({}), []);
      assert.equal(s.lastId(), 0);
      assert.deepEqual(s.counters(), ZERO_COUNTERS);
      assert.equal(s.stats({}).total, 0);
    });

    it('keeps every field, and leaves absent fields absent', () => {
      const icmp6 = ev({ family: 6, proto: 58, src: '2001:db8::2', dst: '2001:db8:1::10', sport: undefined, dport: undefined, icmpType: 128, verdict: 'would-block' });
      delete icmp6.sport;
      delete icmp6.dport;
      s.append([full, icmp6]);
      const got = s.query({});
      assert.equal(got.length, 2);
      assert.deepEqual(strip(got[0] as StoredEvent), full);
      assert.deepEqual(strip(got[1] as StoredEvent), icmp6);
      assert.ok((got[1] as StoredEvent).id > (got[0] as StoredEvent).id, 'ids increase in write order');
      assert.equal(s.lastId(), (got[1] as StoredEvent).id);
    });

    it('lookups: rows of one key add up (count, first, last); unknown askers stay unknown; the window selects by overlap', () => {
      const day = Math.floor(T0 / 86_400_000);
      const row = (over: Partial<LookupRow> = {}): LookupRow => ({ day, name: 'api.example.com', verdict: 'allowed', uid: 1000, unit: null, cgroup: '/user.slice', process: 'curl', count: 2, first: T0 + 10, last: T0 + 20, ...over });
      s.append([], undefined, [row(), row({ uid: null, cgroup: null, process: null, count: 1 })]);
      s.append([], undefined, [row({ count: 3, first: T0 + 5, last: T0 + 50 }), row({ name: 'late.example.com', day: day + 1, first: T0 + 86_400_000, last: T0 + 86_400_000 })]);
      const all = [...s.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })];
      assert.equal(all.length, 3);
      const api = all.filter((r) => r.name === 'api.example.com');
      assert.deepEqual(
        api.find((r) => r.uid === 1000),
        row({ count: 5, first: T0 + 5, last: T0 + 50 }),
      );
      assert.deepEqual(api.find((r) => r.uid === null), row({ uid: null, cgroup: null, process: null, count: 1 }), 'null askers are their own row, read back as null');
      assert.deepEqual([...s.scanLookups({ since: T0 + 51, until: T0 + 86_400_000 })].map((r) => r.name), [], 'a row ends at its last lookup; the window ends before the next day');
      assert.deepEqual([...s.scanLookups({ since: T0 + 51, until: T0 + 86_400_001 })].map((r) => r.name), ['late.example.com']);
    });

    it('lookups: hostile names are kept verbatim; retention by age removes them by their last lookup', () => {
      const nasty = `x'); DROP TABLE lookups; --\u0000"\n`;
      const day = Math.floor(T0 / 86_400_000);
      s.append([ev({ time: T0 + 86_400_000 })], undefined, [{ day, name: nasty, verdict: 'would-block', uid: null, unit: null, cgroup: null, process: nasty, count: 1, first: T0, last: T0 }]);
      assert.equal([...s.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })][0]?.name, nasty);
      s.retain({ maxAgeMs: 1000 }, T0 + 2000);
      assert.deepEqual([...s.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })], []);
      assert.equal(s.query({}).length, 1, 'the newer event stays');
    });

    it('stores hostile text verbatim', () => {
      const nasty = `x'); DROP TABLE events; --\u0000"\n\u202e\u{1f600}`;
      s.append([ev({ rule: nasty, process: { pid: 1, exe: nasty, cmdline: nasty, comm: nasty } })]);
      const [got] = s.query({ rule: nasty });
      assert.equal(got?.rule, nasty);
      assert.equal(got?.process?.cmdline, nasty);
      assert.equal(s.query({}).length, 1);
    });

    it('without afterId, limit keeps the newest; with afterId, the oldest after it; always in id order', () => {
      s.append(Array.from({ length: 10 }, (_, i) => ev({ time: T0 + i, sport: 1000 + i })));
      assert.deepEqual(s.query({ limit: 3 }).map((e) => e.sport), [1007, 1008, 1009]);
      const all = s.query({});
      const third = all[2] as StoredEvent;
      assert.deepEqual(s.query({ afterId: third.id, limit: 2 }).map((e) => e.sport), [1003, 1004]);
      assert.deepEqual(s.query({ afterId: s.lastId() }), []);
      assert.deepEqual(s.query({ limit: 0 }), []);
    });

    it('filters by time window, verdict, rule and process (comm, executable path or its base name, exactly)', () => {
      s.append([
        ev({ time: T0, verdict: 'blocked', rule: 'a' }),
        ev({ time: T0 + 1000, verdict: 'would-block', rule: 'b', process: { pid: 7, exe: '/usr/bin/curl', comm: 'curl' } }),
        ev({ time: T0 + 2000, verdict: 'allowed', rule: 'c', process: { pid: 8, exe: '/opt/app/bin/agent', comm: 'agent-main' } }),
      ]);
      assert.deepEqual(s.query({ since: T0 + 1000 }).map((e) => e.rule), ['b', 'c']);
      assert.deepEqual(s.query({ until: T0 + 1000 }).map((e) => e.rule), ['a']);
      assert.deepEqual(s.query({ verdict: 'would-block' }).map((e) => e.rule), ['b']);
      assert.deepEqual(s.query({ rule: 'c' }).map((e) => e.rule), ['c']);
      assert.deepEqual(s.query({ process: 'curl' }).map((e) => e.rule), ['b']);
      assert.deepEqual(s.query({ process: 'agent' }).map((e) => e.rule), ['c'], 'base name of the executable');
      assert.deepEqual(s.query({ process: 'agent-main' }).map((e) => e.rule), ['c'], 'comm');
      assert.deepEqual(s.query({ process: '/usr/bin/curl' }).map((e) => e.rule), ['b'], 'full path');
      assert.deepEqual(s.query({ process: 'cur' }), [], 'no partial matches');
      assert.deepEqual(s.query({ process: '%' }), [], 'no wildcards');
      assert.deepEqual(s.query({ verdict: 'blocked', rule: 'b' }), [], 'filters combine with AND');
    });

    it('property: any query returns exactly what the reference filter selects', () => {
      const arbEvent = fc.record({
        time: fc.integer({ min: T0, max: T0 + 100 }),
        verdict: fc.constantFrom('blocked' as const, 'would-block' as const, 'allowed' as const),
        rule: fc.constantFrom('a', 'b', '#default'),
        comm: fc.option(fc.constantFrom('curl', 'wget'), { nil: undefined }),
      });
      const arbQuery = fc.record(
        {
          since: fc.integer({ min: T0, max: T0 + 100 }),
          until: fc.integer({ min: T0, max: T0 + 100 }),
          verdict: fc.constantFrom('blocked' as const, 'would-block' as const, 'allowed' as const),
          rule: fc.constantFrom('a', 'b', '#default', 'zz'),
          process: fc.constantFrom('curl', 'wget', 'x'),
          limit: fc.integer({ min: 0, max: 30 }),
          afterId: fc.integer({ min: 0, max: 10 }),
        },
        { requiredKeys: [] },
      );
      fc.assert(
        fc.property(fc.array(arbEvent, { maxLength: 25 }), arbQuery, (events, q: EventQuery) => {
          const store = make();
          try {
            store.append(events.map((x) => ev({ time: x.time, verdict: x.verdict, rule: x.rule, ...(x.comm ? { process: { pid: 1, comm: x.comm, exe: `/usr/bin/${x.comm}` } } : {}) })));
            const all = store.query({});
            let want = all.filter((e) => eventMatches(e, q));
            if (q.limit !== undefined) want = q.afterId !== undefined ? want.slice(0, q.limit) : want.slice(Math.max(0, want.length - q.limit));
            assert.deepEqual(store.query(q), want);
          } finally {
            store.close();
          }
        }),
        { numRuns: 150 },
      );
    });

    it('stats: totals per verdict, rule, destination and process, over a window', () => {
      s.append([
        ev({ time: T0 - 10_000, rule: 'old' }),
        ev({ time: T0, rule: 'a', dst: '198.18.1.10', dport: 443, process: { pid: 1, exe: '/usr/bin/curl', comm: 'curl' } }),
        ev({ time: T0 + 1, rule: 'a', dst: '198.18.1.10', dport: 443, process: { pid: 2, exe: '/usr/bin/curl', comm: 'curl' } }),
        ev({ time: T0 + 2, rule: 'a', verdict: 'would-block', dst: '198.18.1.11', dport: 80 }),
        ev({ time: T0 + 3, rule: 'b', verdict: 'allowed', family: 6, dst: '2001:db8:1::10', proto: 17, dport: 53, process: { pid: 3, comm: 'dig' } }),
      ]);
      const st = s.stats({ since: T0 });
      assert.equal(st.total, 4);
      assert.deepEqual(st.byVerdict, { blocked: 2, 'would-block': 1, allowed: 1 });
      assert.deepEqual(st.byRule[0], { rule: 'a', verdict: 'blocked', count: 2 });
      assert.equal(st.byRule.length, 3);
      assert.deepEqual(st.byDestination[0], { key: '198.18.1.10 tcp/443', count: 2 });
      assert.ok(st.byDestination.some((d) => d.key === '[2001:db8:1::10] udp/53' && d.count === 1));
      assert.deepEqual(st.byProcess[0], { key: '/usr/bin/curl', count: 2 });
      assert.ok(st.byProcess.some((p) => p.key === 'dig'));
      assert.ok(st.byProcess.some((p) => p.key === '(unknown)'));
      assert.equal(st.attributed, 3);
      assert.equal(st.first, T0);
      assert.equal(st.last, T0 + 3);
      assert.equal(s.stats({}).total, 5);
      assert.equal(s.stats({ since: T0 }, 1).byDestination.length, 1, 'top N');
    });

    it('timeline: counts per verdict per bucket, buckets aligned to multiples of their length, in a window', () => {
      s.append([
        ev({ time: T0 - 60_000, rule: 'old' }),
        ev({ time: T0 }),
        ev({ time: T0 + 59_999 }),
        ev({ time: T0 + 30_000, verdict: 'would-block' }),
        ev({ time: T0 + 60_000, verdict: 'allowed' }),
        ev({ time: T0 + 61_000, verdict: 'allowed' }),
      ]);
      assert.deepEqual(s.timeline({ since: T0 }, 60_000), [
        { time: T0, verdict: 'blocked', count: 2 },
        { time: T0, verdict: 'would-block', count: 1 },
        { time: T0 + 60_000, verdict: 'allowed', count: 2 },
      ]);
      assert.deepEqual(s.timeline({ since: T0 + 60_000 }, 1_000), [
        { time: T0 + 60_000, verdict: 'allowed', count: 1 },
        { time: T0 + 61_000, verdict: 'allowed', count: 1 },
      ]);
      assert.equal(s.timeline({}, 60_000).length, 4);
    });

    it('pipeline counters are replaced with a batch, and kept with an empty batch', () => {
      const c = { ...ZERO_COUNTERS, records: 10, seqGaps: 2, storeDrops: 1 };
      s.append([ev()], c);
      assert.deepEqual(s.counters(), c);
      const c2 = { ...c, records: 11 };
      s.append([], c2);
      assert.deepEqual(s.counters(), c2);
      s.append([ev()]);
      assert.deepEqual(s.counters(), c2, 'a batch without counters leaves them');
    });

    it('retention by age deletes older events only', () => {
      const now = T0 + 10 * 86_400_000;
      s.append([ev({ time: T0 }), ev({ time: now - 1000 }), ev({ time: now })]);
      assert.equal(s.retain({ maxAgeMs: 86_400_000 }, now), 1);
      assert.deepEqual(s.query({}).map((e) => e.time), [now - 1000, now]);
    });

    it('retention by size keeps the newest events and gets under the limit', () => {
      const batch = (from: number) => Array.from({ length: 500 }, (_, i) => ev({ time: T0 + from + i, process: { pid: i, cmdline: 'x'.repeat(200) } }));
      for (let b = 0; b < 6; b++) s.append(batch(b * 500));
      const before = s.sizeBytes();
      assert.ok(before > 0);
      const limit = Math.floor(before / 3);
      const deleted = s.retain({ maxBytes: limit });
      assert.ok(deleted > 0);
      assert.ok(s.sizeBytes() <= limit, `size ${s.sizeBytes()} within ${limit}`);
      const left = s.query({});
      assert.equal(left.length, 3000 - deleted);
      assert.equal(left.at(-1)?.time, T0 + 2999, 'the newest event stays');
      for (let i = 1; i < left.length; i++) assert.ok((left[i] as StoredEvent).time > (left[i - 1] as StoredEvent).time, 'only the oldest went');
      assert.equal(s.retain({ maxBytes: limit }), 0, 'nothing more to do');
    });

    it('ids keep increasing after retention', () => {
      s.append([ev(), ev()]);
      const last = s.lastId();
      s.retain({ maxAgeMs: 0 }, T0 + 1);
      s.append([ev({ time: T0 + 5 })]);
      assert.ok((s.query({})[0] as StoredEvent).id > last);
    });
  });
}
