/**
 * Names resolved but never connected to (issue 11): the stored lookups reach
 * `suggest --check`, which reports the names the DNS guard would refuse under
 * the checked policy (decided by the guard's own matcher), and `suggest`,
 * whose suggestion must count 0 of them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import type { LookupRow, RecordedEvent } from '../../src/events/event-store.js';
import { EventStoreComponent, lookupOf } from '../../src/events/store-component.js';
import { publishDnsQuery, type DnsQueryEvent } from '../../src/events/channels.js';
import { ZERO_COUNTERS } from '../../src/events/event-store.js';
import type { Runtime } from '../../src/runtime/component.js';
import { Registry } from '../../src/runtime/metrics.js';
import { DnsGuard } from '../../src/dns/dns-guard.js';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import { LearnedState } from '../../src/dns/learned-state.js';
import { refusedName } from '../../src/dns/name-refusal.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { SetWriter } from '../../src/dns/set-writer.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { checkPolicy } from '../../src/learn/check-policy.js';
import { factsOf, Observations } from '../../src/learn/observations.js';
import { judgeFlow } from '../../src/learn/replay.js';
import { suggestPolicy } from '../../src/learn/suggest-policy.js';
import { scanWindow } from '../../src/learn/suggest-report.js';
import { MemoryStore } from '../../src/events/memory-store.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import { compileFrom, fakeHost } from '../support/fixtures.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const load = (yaml: string) => parsePolicy(Buffer.from(yaml), 's.yaml', fakeHost);

function ev(dst: string, dport: number, extra: Partial<RecordedEvent> = {}): RecordedEvent {
  return { time: T0, verdict: 'would-block', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst, sport: 40000, dport, uid: 1000, user: 'alice', ...extra };
}

function lookup(name: string, over: Partial<LookupRow> = {}): LookupRow {
  return { day: Math.floor(T0 / DAY), name, verdict: 'would-block', uid: 1000, unit: null, cgroup: null, process: 'app', count: 3, first: T0, last: T0 + 60_000, ...over };
}

/** A workload: a name connected to, and names only resolved (a health check, a failed connect). */
function observe(events: RecordedEvent[], lookups: LookupRow[]): Observations {
  const store = new MemoryStore();
  store.append(events, undefined, lookups);
  const source = { scanFlows: (q: { since: number; until: number }) => store.query(q).map(factsOf), firstTime: () => T0, scanLookups: (q: { since: number; until: number }) => store.scanLookups(q) };
  return scanWindow(source, { since: T0 - DAY, until: T0 + DAY }).obs;
}

const EVENTS = [ev('198.18.1.10', 443, { hostname: 'api.example.com' })];
const LOOKUPS = [lookup('api.example.com'), lookup('health.example.org'), lookup('only-resolved.example.net', { count: 5, uid: 0, process: 'cron' })];

describe('suggest --check: names resolved in the window must still resolve', () => {
  it('reports names only resolved (never connected to) that the guard would refuse, with the lookups and why; exit-worthy', () => {
    const p = load(`mode: enforce
rules:
  - name: api
    to: [api.example.com]
    ports: [443/tcp]
`);
    const r = checkPolicy(p, observe(EVENTS, LOOKUPS));
    assert.equal(r.wouldBreak.events, 0, 'every flow is allowed');
    assert.equal(r.wouldBreak.lookups, 8);
    assert.deepEqual(
      r.wouldBreak.names.map((n) => [n.name, n.events, n.lookups, n.why]),
      [
        ['only-resolved.example.net', 0, 5, 'only-resolved.example.net is not allowed by the policy'],
        ['health.example.org', 0, 3, 'health.example.org is not allowed by the policy'],
      ],
    );
    assert.deepEqual(r.resolved, { lookups: 11, names: 3, overflow: 0 });
  });

  it('decides as the guard: an outright deny refuses, a narrower deny does not; an encrypted-DNS endpoint needs an exact name', () => {
    const p = load(`mode: enforce
rules:
  - name: all
    to: ["*.example.org", "*.example.net", "*.google"]
    ports: [443/tcp]
  - name: no-health
    action: deny
    to: [health.example.org]
  - name: narrow
    action: deny
    to: [only-resolved.example.net]
    ports: [80/tcp]
`);
    const facts = { dns: { upstreams: [], encrypted: { addrs: [], names: ['dns.google'] } } };
    const r = checkPolicy(p, observe([], [lookup('health.example.org'), lookup('only-resolved.example.net'), lookup('dns.google')]), 100, facts);
    assert.deepEqual(r.wouldBreak.names.map((n) => [n.name, n.why]).sort(), [
      ['dns.google', 'dns.google is an encrypted DNS endpoint; a rule must name it exactly'],
      ['health.example.org', 'health.example.org is denied by rule no-health'],
    ]);
  });

  it('a deny rule in audit by its own mode only records: its name is answered, not counted', () => {
    const p = load(`mode: enforce
rules:
  - name: all
    to: ["*.example.org"]
    ports: [443/tcp]
  - name: trial-deny
    action: deny
    mode: audit
    to: [health.example.org]
  - name: real-deny
    action: deny
    to: [x.example.org]
`);
    const r = checkPolicy(p, observe([], [lookup('health.example.org'), lookup('x.example.org')]));
    assert.deepEqual(r.wouldBreak.names.map((n) => n.name), ['x.example.org']);
  });

  it('a user in an audit scope is answered whatever the policy: not counted', () => {
    const p = load(`mode: enforce
scopes:
  - name: trial
    mode: audit
    users: [1000]
rules: []
`);
    const r = checkPolicy(p, observe([], [lookup('health.example.org'), lookup('x.example.org', { uid: 1001 })]));
    assert.deepEqual(r.wouldBreak.names.map((n) => n.name), ['x.example.org']);
  });

  it('property: the offline decision is the DNS guard\'s own (classify), for any name', () => {
    const text = `mode: enforce
dns:
  upstreams: [198.18.0.53]
rules:
  - name: api
    to: [api.example.com, "*.cdn.example.com", dns.google, "*.google"]
    ports: [443/tcp]
  - name: deny-x
    action: deny
    to: [x.cdn.example.com]
  - name: deny-narrow
    action: deny
    to: [y.cdn.example.com]
    users: [0]
`;
    const { policy, ruleset } = compileFrom(text);
    const encrypted = ['dns.google', 'one.one.one.one', 'doh.cdn.example.com'];
    const nf = new FakeNetfilter();
    nf.replace(ruleset);
    const guard = new DnsGuard({
      policy,
      matcher: new DomainMatcher(policy, encrypted),
      rebinding: new RebindingFilter(policy, []),
      dynamicSets: new Set(),
      upstream: { query: async () => Promise.reject(new Error('unused')) },
      writer: new SetWriter(nf, TABLE_NAME),
      learned: new LearnedState(),
      onEvent: () => undefined,
    });
    const label = fc.constantFrom('api', 'x', 'y', 'doh', 'cdn', 'example', 'com', 'google', 'dns', 'one', 'API', 'Cdn', 'a\\.b');
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 5 }), (labels) => {
        const name = labels.join('.');
        assert.equal(refusedName(policy, name, encrypted), guard.classify(name).refused, name);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('suggest: names resolved but never connected to', () => {
  const s = suggestPolicy(observe(EVENTS, LOOKUPS), { since: T0 - DAY, until: T0 + DAY });
  const policy = load(s.yaml);

  it('go into one resolve-only rule (interfaces: [lo]): the suggestion checks with 0 lookups refused', () => {
    const rule = s.rules.find((r) => r.resolveOnly);
    assert.ok(rule, s.yaml);
    assert.deepEqual(rule.to, ['health.example.org', 'only-resolved.example.net'], 'api.example.com has its own rule');
    assert.equal(rule.events, 8);
    assert.match(s.yaml, /- name: resolve-only\n\s+to:\n/);
    assert.match(s.yaml, /interfaces:\n\s+- lo\n/);
    const r = checkPolicy(policy, observe(EVENTS, LOOKUPS));
    assert.equal(r.wouldBreak.lookups, 0, JSON.stringify(r.wouldBreak.names));
    assert.equal(r.wouldBreak.events, 0);
  });

  it('the resolve-only rule opens nothing: a connect to such a name is blocked', () => {
    const x = judgeFlow(policy, { dst: '198.18.9.9', proto: 6, dport: 443, hostname: 'only-resolved.example.net', iface: 'eth0' });
    assert.equal(x?.verdict, 'block', JSON.stringify(x));
    const y = judgeFlow(policy, { dst: '198.18.9.9', proto: 17, dport: 53, hostname: 'health.example.org', iface: 'eth0' });
    assert.equal(y?.verdict, 'block');
  });

  it('with a base policy: names it lets resolve add nothing (and count as its rules\' use); an outright deny is reported, not overruled', () => {
    const text = `mode: audit
rules:
  - name: org
    to: ["*.example.org"]
    ports: [443/tcp]
  - name: no-net
    action: deny
    to: [only-resolved.example.net]
`;
    const existing = { policy: load(text), text, file: 'base.yaml' };
    const t = suggestPolicy(observe([], LOOKUPS), { existing, since: T0 - DAY, until: T0 + DAY });
    const rule = t.rules.find((r) => r.resolveOnly);
    assert.deepEqual(rule?.to, ['api.example.com']);
    assert.deepEqual(t.couldGo, [], 'the org rule let health.example.org resolve: it was needed');
    assert.deepEqual(t.refusedNames, [{ name: 'only-resolved.example.net', lookups: 5, why: 'denied by rule no-net' }]);
  });

  it('hostile names from the store are never written: not a name a policy can hold, not kept', () => {
    const o = observe([], [lookup('evil.example.org\n  - name: pwn\n    to: [any]'), lookup('\u001b[31mred.example.org'), lookup('*.example.org'), lookup('ok.example.org')]);
    assert.equal(o.unnameable, 9);
    const t = suggestPolicy(o, { since: T0 - DAY, until: T0 + DAY });
    assert.deepEqual(t.rules.find((r) => r.resolveOnly)?.to, ['ok.example.org']);
    assert.doesNotMatch(t.yaml, /pwn|\u001b|\*\.example\.org/);
  });

  it('the names table is bounded: lookups beyond it are counted, not kept', () => {
    const o = new Observations(10, 2);
    for (const n of ['a', 'b', 'c', 'd']) o.addLookup(lookup(`${n}.example.org`));
    assert.equal(o.names.size, 2);
    assert.equal(o.lookupOverflow, 6);
    assert.equal(o.lookups, 12);
  });
});

describe('the store keeps resolved lookups only', () => {
  const base = { time: T0, transport: 'udp' as const, client: { address: '198.18.0.2', port: 40000, uid: 1000 }, name: 'api.example.com', type: 1, rules: [], answers: [], dropped: [], latencyMs: 1 };
  it('answered NOERROR, allowed or would-block; not refused, NXDOMAIN, errors or names no rule can hold', () => {
    assert.deepEqual(lookupOf({ ...base, verdict: 'allowed', rcode: 0, process: { pid: 1, exe: '/usr/bin/curl', unit: 'x.service', cgroup: '/system.slice/x.service' } }), {
      day: Math.floor(T0 / DAY),
      name: 'api.example.com',
      verdict: 'allowed',
      uid: 1000,
      unit: 'x.service',
      cgroup: '/system.slice/x.service',
      process: 'curl',
    });
    assert.equal(lookupOf({ ...base, verdict: 'would-block', rcode: 0 })?.verdict, 'would-block');
    assert.equal(lookupOf({ ...base, verdict: 'blocked', rcode: 5 }), null);
    assert.equal(lookupOf({ ...base, verdict: 'allowed', rcode: 3 }), null, 'NXDOMAIN: a search-list guess or a typo');
    assert.equal(lookupOf({ ...base, verdict: 'error', rcode: 2 }), null);
    assert.equal(lookupOf({ ...base, verdict: 'allowed', rcode: 0, name: `${'a'.repeat(250)}.com` }), null);
  });
});

describe('the store component aggregates lookups per day and asker, bounded', () => {
  it("lookups stay off the events' 100 ms writes: they go every lookupFlushMs, in slices of lookupSlice rows, one transaction per turn of the loop", async () => {
    const store = new MemoryStore();
    const appends: { events: number; lookups: number; names: string[] }[] = [];
    const append = store.append.bind(store);
    store.append = (events, counters, lookups) => {
      appends.push({ events: events.length, lookups: lookups?.length ?? 0, names: (lookups ?? []).map((l) => l.name) });
      append(events, counters, lookups);
    };
    const rt = { metrics: new Registry(), control: { handle: () => undefined }, log: () => undefined } as unknown as Runtime;
    const c = new EventStoreComponent({ open: () => store, counters: () => ({ ...ZERO_COUNTERS }), flushMs: 10, lookupFlushMs: 200, lookupSlice: 7 });
    await c.start(rt);
    const e = (name: string): DnsQueryEvent => ({ time: T0, transport: 'udp', client: { address: '198.18.0.2', port: 40000, uid: 1000 }, name, type: 1, verdict: 'allowed', rules: [], rcode: 0, answers: [], dropped: [], latencyMs: 0 });
    try {
      for (let i = 0; i < 50; i++) publishDnsQuery(e(`n${i}.example.com`));
      c.flush();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(appends.filter((a) => a.lookups > 0).length, 0, 'nothing written by the event flushes');
      const deadline = Date.now() + 5_000;
      while ([...store.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })].length < 50 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal([...store.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })].length, 50);
      const slices = appends.filter((a) => a.lookups > 0);
      assert.deepEqual(slices.map((a) => a.lookups), [7, 7, 7, 7, 7, 7, 7, 1]);
      assert.ok(slices.every((a) => a.events === 0));
      // What is left at stop is written then.
      publishDnsQuery(e('late.example.com'));
    } finally {
      await c.stop();
    }
    // (The memory store forgets everything at close: what reached it is in the spy.)
    assert.deepEqual(appends.at(-1)?.names, ['late.example.com']);
  });

  it('the timer\'s lookup writes take at most a quarter of the event loop: each slice is followed by a pause three times its length (the guard answers meanwhile)', async () => {
    const store = new MemoryStore();
    const spans: { start: number; end: number }[] = [];
    const append = store.append.bind(store);
    store.append = (events, counters, lookups) => {
      if ((lookups?.length ?? 0) > 0) {
        const start = performance.now();
        while (performance.now() - start < 4) {
          /* a slow disk: 4 ms a slice */
        }
        spans.push({ start, end: performance.now() });
      }
      append(events, counters, lookups);
    };
    const rt = { metrics: new Registry(), control: { handle: () => undefined }, log: () => undefined } as unknown as Runtime;
    const c = new EventStoreComponent({ open: () => store, counters: () => ({ ...ZERO_COUNTERS }), flushMs: 10, lookupFlushMs: 100, lookupSlice: 7 });
    await c.start(rt);
    const e = (name: string): DnsQueryEvent => ({ time: T0, transport: 'udp', client: { address: '198.18.0.2', port: 40000, uid: 1000 }, name, type: 1, verdict: 'allowed', rules: [], rcode: 0, answers: [], dropped: [], latencyMs: 0 });
    try {
      for (let i = 0; i < 35; i++) publishDnsQuery(e(`p${i}.example.com`));
      const deadline = Date.now() + 5_000;
      while (spans.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(spans.length, 5, 'five slices of 7');
      for (let i = 1; i < spans.length; i++) {
        const prev = spans[i - 1] as { start: number; end: number };
        const gap = (spans[i] as { start: number }).start - prev.end;
        assert.ok(gap >= 2.5 * (prev.end - prev.start), `slice ${i} came ${gap.toFixed(1)} ms after a ${(prev.end - prev.start).toFixed(1)} ms slice`);
      }
    } finally {
      await c.stop();
    }
  });

  it('one row per day, name and asker (counts add up); distinct rows past the day\'s bound are dropped and counted', async () => {
    const store = new MemoryStore();
    const handlers = new Map<string, unknown>();
    const rt = { metrics: new Registry(), control: { handle: (name: string, h: unknown) => handlers.set(name, h) }, log: () => undefined } as unknown as Runtime;
    const c = new EventStoreComponent({ open: () => store, counters: () => ({ ...ZERO_COUNTERS }), flushMs: 60_000, lookupKeysPerDay: 3 });
    await c.start(rt);
    const e = (name: string, time: number, uid = 1000): DnsQueryEvent => ({ time, transport: 'passive', client: { address: '198.18.0.2', port: 40000, uid }, name, type: 1, verdict: 'allowed', rules: [], rcode: 0, answers: [], dropped: [], latencyMs: 0 });
    try {
      for (let i = 0; i < 5; i++) publishDnsQuery(e('api.example.com', T0 + i));
      publishDnsQuery(e('api.example.com', T0, 1001));
      publishDnsQuery(e('b.example.com', T0));
      publishDnsQuery(e('c.example.com', T0));
      publishDnsQuery(e('d.example.com', T0));
      publishDnsQuery(e('api.example.com', T0 + DAY));
      c.flushLookups();
      publishDnsQuery(e('api.example.com', T0 + DAY + 5));
      c.flushLookups();
      const rows = [...store.scanLookups({ since: 0, until: Number.MAX_SAFE_INTEGER })];
      assert.deepEqual(
        rows.map((r) => [r.day - Math.floor(T0 / DAY), r.name, r.uid, r.count, r.first - T0, r.last - T0]),
        [
          [0, 'api.example.com', 1000, 5, 0, 4],
          [0, 'api.example.com', 1001, 1, 0, 0],
          [0, 'b.example.com', 1000, 1, 0, 0],
          [1, 'api.example.com', 1000, 2, DAY, DAY + 5],
        ],
      );
      assert.equal((c.status() as { lookupsDropped: number }).lookupsDropped, 2, 'c and d: past the 3 rows of that day');
    } finally {
      await c.stop();
    }
  });
});
