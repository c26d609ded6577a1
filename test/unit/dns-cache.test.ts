/** The DNS guard's answer cache, driven through the guard with a fake upstream, the in-memory netfilter and a clock the test moves. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import { decodeMessage, encodeMessage, RCODE, TYPE, type Message, type Question, type RR } from '../../src/dns/dns-message.js';
import { DnsGuard } from '../../src/dns/dns-guard.js';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import { LearnedState } from '../../src/dns/learned-state.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { SetWriter, type SetWrite } from '../../src/dns/set-writer.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { compileFrom } from '../support/fixtures.js';
import { CNAME, SOA } from '../support/dns-records.js';
import { upstreamMessage, type UpstreamReply } from '../support/guard-harness.js';

const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53]
  ttl_floor: 0
  ttl_grace: 5
rules:
  - name: api
    to: [api.example.com, www.example.com, gone.example.com, "*.cdn.example.com"]
    ports: [443/tcp]
  - name: other
    to: [other.example.com]
    ports: [443/tcp]
`;

const A = (name: string, addr: bigint, ttl = 60): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr } });

type Reply = UpstreamReply;

function query(name: string, opts: { id?: number; type?: number; dnssecOk?: boolean; edns?: boolean } = {}): Buffer {
  const m: Message = {
    id: opts.id ?? 4242,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
    questions: [{ name, type: opts.type ?? TYPE.A, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (opts.edns || opts.dnssecOk) m.edns = { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: opts.dnssecOk ?? false, options: [] };
  return encodeMessage(m);
}

const client = { address: '198.18.0.2', port: 40000, transport: 'udp' as const };

function setup(answer: (q: Question) => Reply, policyText = POLICY) {
  const { policy, ruleset } = compileFrom(policyText);
  const nf = new FakeNetfilter();
  nf.replace(ruleset);
  const asked: Question[] = [];
  const events: DnsQueryEvent[] = [];
  const writes: SetWrite[][] = [];
  const clock = { now: 1_000_000 };
  const writer = new SetWriter(nf, TABLE_NAME);
  const write = writer.write.bind(writer);
  const deps = (p = policy, rs = ruleset, learned = new LearnedState()) => ({
    policy: p,
    matcher: new DomainMatcher(p, []),
    rebinding: new RebindingFilter(p, []),
    dynamicSets: new Set(rs.sets.filter((x) => x.dynamic).map((x) => x.name)),
    upstream,
    writer: {
      write: (w: SetWrite[]) => {
        if (w.length > 0) writes.push(w);
        return write(w);
      },
    },
    learned,
    onEvent: (e: DnsQueryEvent) => events.push(e),
    clock: () => clock.now,
  });
  const upstream = {
    query: async (q: Question): Promise<Message> => {
      asked.push(q);
      return upstreamMessage(q, answer(q));
    },
  };
  const guard = new DnsGuard(deps());
  const ask = async (name: string, opts: Parameters<typeof query>[1] = {}) => decodeMessage((await guard.handle(query(name, opts), client)) as Buffer);
  /** A reload onto another policy (as the guard component does it: a new learned record, rebuilt from the kernel). */
  const reload = (text: string, opts: { carry?: boolean } = {}) => {
    const next = compileFrom(text);
    nf.replace(next.ruleset, { carryDynamic: opts.carry ?? true });
    const learned = new LearnedState();
    const live = nf.read(TABLE_NAME, { elements: 'dynamic' });
    const kept = (live?.ruleset.sets ?? []).flatMap((s) =>
      s.elements.flatMap((e) => (e.t === 'addr' ? [{ set: s.name, family: e.family, addr: e.start, expiresAt: clock.now + (e.timeoutMs ?? 0) }] : [])),
    );
    learned.adoptKernel(kept);
    guard.deps = deps(next.policy, next.ruleset, learned);
  };
  const elements = (set: string) => nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.find((s) => s.name === set)?.elements ?? [];
  return { guard, nf, asked, events, writes, clock, ask, reload, elements };
}

const ttls = (m: Message) => m.answers.map((r) => r.ttl);

describe('unit: the DNS guard answer cache', () => {
  it('a repeated question is answered from memory: the upstream is asked once, and nothing is written to the kernel again', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120101n, 60)] }));
    const first = await t.ask('api.example.com');
    assert.deepEqual(ttls(first), [60]);
    assert.equal(t.writes.length, 1);
    t.clock.now += 500;
    const second = await t.ask('api.example.com');
    assert.equal(t.asked.length, 1, 'the upstream saw one query');
    assert.deepEqual(second.answers.map((r) => r.data), first.answers.map((r) => r.data));
    assert.equal(t.writes.length, 1, 'no kernel write: the element opened by the first answer outlives the second');
    assert.deepEqual([t.guard.cache.stats.hits, t.guard.cache.stats.misses], [1, 1]);
    assert.equal(t.events.at(-1)?.verdict, 'allowed');
    assert.deepEqual(t.events.at(-1)?.answers, ['198.18.1.1'], 'a cached answer is recorded like a fresh one');
  });

  it('handed-out TTLs count down (rounded up), and the entry expires before a record would reach 0: then the upstream is asked again', async () => {
    const t = setup((q) => ({ answers: [CNAME(q.name, 'edge.cdn.example.com', 300), A('edge.cdn.example.com', 0xc6120102n, 10)] }));
    await t.ask('www.example.com');
    t.clock.now += 1;
    assert.deepEqual(ttls(await t.ask('www.example.com')), [299, 9], 'one millisecond later: a second less');
    t.clock.now += 3998;
    assert.deepEqual(ttls(await t.ask('www.example.com')), [296, 6]);
    t.clock.now = 1_000_000 + 9000;
    assert.deepEqual(ttls(await t.ask('www.example.com')), [291, 1], 'the last second');
    assert.equal(t.asked.length, 1);
    t.clock.now += 1;
    assert.deepEqual(ttls(await t.ask('www.example.com')), [300, 10], 'expired: fetched again, full TTLs');
    assert.equal(t.asked.length, 2);
    assert.equal(t.guard.cache.stats.expired, 1);
  });

  it('a hit at the entry\'s last millisecond is counted down with the same clock reading that found it alive: never TTL 0, even while time moves between readings', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120103n, 3)] }));
    await t.ask('api.example.com');
    // Every reading of the clock from now on is 2 ms later than the one before (a slow, loaded guard).
    const base = 1_000_000 + 2000;
    let reads = 0;
    t.guard.deps = { ...t.guard.deps, clock: () => base + 2 * reads++ };
    const hit = await t.ask('api.example.com');
    assert.equal(t.asked.length, 1, 'found alive (its last millisecond): answered from memory');
    assert.deepEqual(ttls(hit), [1], 'with the TTL of the reading that found it, not one a moment later (0)');
  });

  it('the reply carries the client id, the client spelling of the name (0x20), its flags, and is sized for the client', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120103n, 60)], ad: true }));
    await t.ask('api.example.com', { id: 1 });
    const raw = await t.guard.handle(query('aPi.ExAmPlE.cOm', { id: 0xbeef }), client);
    assert.equal(t.asked.length, 1, 'a hit');
    const r = decodeMessage(raw as Buffer);
    assert.equal(r.id, 0xbeef);
    assert.equal(r.questions[0]?.name, 'aPi.ExAmPlE.cOm');
    assert.equal(r.answers[0]?.name, 'aPi.ExAmPlE.cOm', 'records owned by the name asked carry its spelling');
    assert.equal(r.flags.qr, true);
    assert.equal(r.flags.rd, true);
    assert.equal(r.flags.ra, true);
    assert.equal(r.flags.aa, false, 'never authoritative');
    const withDo = decodeMessage((await t.guard.handle(query('api.example.com', { id: 6, dnssecOk: true }), client)) as Buffer);
    assert.equal(withDo.edns?.dnssecOk, true);
    // DO is part of the key: that query was a miss of its own; a second one with DO hits it, with AD kept.
    const again = decodeMessage((await t.guard.handle(query('API.example.com', { id: 7, dnssecOk: true }), client)) as Buffer);
    assert.equal(t.asked.length, 2);
    assert.equal(again.flags.ad, true, 'AD for a client that asked with DO');
    const plain = decodeMessage((await t.guard.handle(query('api.example.com', { id: 8 }), client)) as Buffer);
    assert.equal(plain.flags.ad, false, 'no AD for a client that asked for neither AD nor DO');
    assert.equal(t.asked.length, 2);
  });

  it('a cached answer too large for a UDP client without EDNS is sent truncated; over TCP it is whole', async () => {
    const many = Array.from({ length: 30 }, (_, i) => A('api.example.com', 0xc6120200n + BigInt(i), 60));
    const t = setup(() => ({ answers: many }));
    await t.guard.handle(query('api.example.com'), { ...client, transport: 'tcp' });
    const udp = decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer);
    assert.equal(udp.flags.tc, true);
    const tcp = decodeMessage((await t.guard.handle(query('api.example.com'), { ...client, transport: 'tcp' })) as Buffer);
    assert.equal(tcp.answers.length, 30);
    assert.equal(t.asked.length, 1);
  });

  it('NXDOMAIN and NODATA are cached for min(SOA TTL, SOA MINIMUM) (RFC 2308), capped by cache_max_negative_ttl', async () => {
    const t = setup((q) => (q.type === TYPE.AAAA ? { authorities: [SOA(300, 3600)] } : { rcode: RCODE.NXDOMAIN, authorities: [SOA(300, 20)] }), POLICY.replace('  ttl_grace: 5\n', '  ttl_grace: 5\n  cache_max_negative_ttl: 100\n'));
    const nx = await t.ask('gone.example.com');
    assert.equal(nx.flags.rcode, RCODE.NXDOMAIN);
    t.clock.now += 19_000;
    const again = await t.ask('gone.example.com');
    assert.equal(again.flags.rcode, RCODE.NXDOMAIN);
    assert.equal(again.authorities[0]?.ttl, 1, 'the SOA at the negative TTL, counted down');
    assert.equal(t.asked.length, 1);
    t.clock.now += 1;
    await t.ask('gone.example.com');
    assert.equal(t.asked.length, 2, 'after min(300, 20) s it is asked again');

    await t.ask('gone.example.com', { type: TYPE.AAAA });
    t.clock.now += 99_000;
    const nodata = await t.ask('gone.example.com', { type: TYPE.AAAA });
    assert.deepEqual([nodata.flags.rcode, nodata.answers.length, nodata.authorities[0]?.ttl], [0, 0, 1]);
    assert.equal(t.asked.length, 3, 'NODATA cached, capped at 100 s');
    t.clock.now += 1;
    await t.ask('gone.example.com', { type: TYPE.AAAA });
    assert.equal(t.asked.length, 4);
  });

  it('not cached: SERVFAIL, REFUSED, truncated answers, negative answers without SOA, answers the rebinding filter cut, chains into a denied name', async () => {
    const policy = `${POLICY}  - name: no-evil\n    action: deny\n    to: [evil.example.com]\n`;
    const t = setup((q) => {
      const n = q.name.split('.')[0];
      if (n === 'servfail') return { rcode: RCODE.SERVFAIL };
      if (n === 'refused') return { rcode: RCODE.REFUSED };
      if (n === 'tc') return { tc: true, answers: [A(q.name, 0xc6120301n)] };
      if (n === 'nosoa') return { rcode: RCODE.NXDOMAIN };
      if (n === 'private') return { answers: [A(q.name, 0x0a000001n), A(q.name, 0xc6120302n)] };
      if (n === 'alias') return { answers: [CNAME(q.name, 'evil.example.com'), A('evil.example.com', 0xc6120303n)] };
      return { answers: [A(q.name, 0xc6120304n)] };
    }, policy);
    for (const n of ['servfail', 'refused', 'tc', 'nosoa', 'private', 'alias']) {
      const before = t.asked.length;
      await t.ask(`${n}.cdn.example.com`);
      await t.ask(`${n}.cdn.example.com`);
      assert.equal(t.asked.length, before + 2, `${n}: asked upstream each time`);
    }
    assert.equal(t.guard.cache.size, 0);
    await t.ask('fine.cdn.example.com');
    await t.ask('fine.cdn.example.com');
    assert.equal(t.guard.cache.size, 1, 'the harness caches what may be cached');
  });

  it('a name the policy refuses is never looked up in the cache, and never reaches the upstream', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120401n)] }));
    const r = await t.ask('unlisted.example.net');
    assert.equal(r.flags.rcode, RCODE.NXDOMAIN);
    assert.equal(t.asked.length, 0);
    assert.deepEqual([t.guard.cache.stats.hits, t.guard.cache.stats.misses], [0, 0]);
  });

  it('never outruns the kernel: an address that left the set (pushed out, closed) is written again before the cached answer goes out', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120501n, 60)] }));
    await t.ask('api.example.com');
    assert.equal(t.elements('r_api_d4').length, 1);
    // The element leaves the kernel and the guard's record of it (as makeRoom or the per-name limit do).
    t.nf.addElements(TABLE_NAME, [{ set: { name: 'r_api_d4', key: 'ipv4_addr', interval: false }, elems: [], remove: [{ t: 'addr', family: 4, start: 0xc6120501n, end: 0xc6120501n }] }]);
    t.guard.deps.learned.evict('r_api_d4', 4, 0xc6120501n, t.clock.now);
    assert.equal(t.elements('r_api_d4').length, 0);
    t.clock.now += 10_000;
    const r = await t.ask('api.example.com');
    assert.equal(t.asked.length, 1, 'from the cache');
    assert.deepEqual(ttls(r), [50]);
    const els = t.elements('r_api_d4');
    assert.equal(els.length, 1, 'open again before the answer went out');
    const e = els[0];
    assert.ok(e && e.t === 'addr' && e.timeoutMs === (50 + 5) * 1000, `for the TTL handed out plus the grace: ${JSON.stringify(e, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
  });

  it('never outruns the kernel: a hit waits for the kernel, and a kernel that refuses makes it SERVFAIL (fail closed)', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120502n, 60)] }));
    await t.ask('api.example.com');
    t.guard.deps.learned.evict('r_api_d4', 4, 0xc6120502n, t.clock.now);
    t.nf.addElements = () => {
      throw new Error('ENOMEM');
    };
    const r = await t.ask('api.example.com');
    assert.equal(r.flags.rcode, RCODE.SERVFAIL);
    assert.equal(r.answers.length, 0);
    assert.equal(t.asked.length, 1);
  });

  it('every hit keeps each address open for at least the TTL it hands out (property over random hit times)', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120503n, 40), A(q.name, 0xc6120504n, 25)] }));
    await t.ask('api.example.com');
    const start = t.clock.now;
    let seed = 7;
    for (let i = 0; i < 200; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      t.clock.now = start + (seed % 30_000);
      const r = await t.ask('api.example.com');
      if (t.clock.now - start > 24_000) continue;
      for (const rr of r.answers) {
        if (rr.data.kind !== 'a') continue;
        const held = t.guard.deps.learned.list(t.clock.now, 'r_api_d4').find((e) => rr.data.kind === 'a' && e.addr === rr.data.addr);
        assert.ok(held && held.expiresAt >= t.clock.now + rr.ttl * 1000, `open for the TTL handed out (${rr.ttl} s at +${t.clock.now - start} ms)`);
      }
    }
  });

  it('with ttl_grace 0 an address shared by two names is written again when the second answer needs it even a fraction of a second longer', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120d01n, 60)] }), POLICY.replace('ttl_grace: 5', 'ttl_grace: 0'));
    await t.ask('api.example.com');
    t.clock.now += 500;
    await t.ask('www.example.com');
    assert.equal(t.writes.length, 2, 'the second answer extends the element by 0.5 s: there is no grace to absorb it');
    const held = t.guard.deps.learned.list(t.clock.now, 'r_api_d4')[0];
    assert.equal(held?.expiresAt, t.clock.now + 60_000);
  });

  it('an address that became one of this host\'s own is not handed out from memory: the question goes upstream and the filter drops it', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120e01n, 300), A(q.name, 0xc6120e02n, 300)] }));
    await t.ask('api.example.com');
    t.guard.deps.rebinding.setLocalAddresses([{ family: 4, value: 0xc6120e01n }]);
    const r = await t.ask('api.example.com');
    assert.equal(t.asked.length, 2, 'not a hit');
    assert.deepEqual(r.answers.map((x) => (x.data.kind === 'a' ? x.data.addr : 0n)), [0xc6120e02n]);
    assert.deepEqual([t.guard.cache.stats.hits, t.guard.cache.stats.misses], [0, 2]);
  });

  it('an apply that removes a name stops its cached answers at once; the other entries stay', async () => {
    const t = setup((q) => ({ answers: [A(q.name, q.name.startsWith('other') ? 0xc6120602n : 0xc6120601n, 300)] }));
    await t.ask('api.example.com');
    await t.ask('other.example.com');
    assert.equal(t.guard.cache.size, 2);
    t.reload(POLICY.replace('api.example.com, ', ''));
    assert.equal(t.guard.cache.size, 1, 'the entry of the removed name went at the reload');
    assert.equal(t.guard.cache.stats.invalidated, 1);
    const r = await t.ask('api.example.com');
    assert.equal(r.flags.rcode, RCODE.NXDOMAIN, 'refused, not answered from memory');
    await t.ask('other.example.com');
    assert.equal(t.asked.length, 2, 'the unchanged rule kept its entry');
  });

  it('a reload drops an entry whose sets change (another rule now matches the name), and keeps one whose rule only changed ports', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120701n, 300)] }));
    await t.ask('api.example.com');
    await t.ask('other.example.com');
    t.reload(`${POLICY.replace('[443/tcp]\n  - name: other', '[443/tcp, 8443/tcp]\n  - name: other')}  - name: more\n    to: [other.example.com]\n    ports: [22/tcp]\n`);
    assert.deepEqual(t.guard.cache.keys().map((k) => k.split('|')[2]), ['api.example.com']);
  });

  it('a reload that re-creates a set: a hit writes its addresses into the new set before answering', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120801n, 300)] }));
    await t.ask('api.example.com');
    // As when a rule's meaning changes (its set comment): the kernel does not carry the learned elements.
    t.reload(POLICY, { carry: false });
    assert.equal(t.elements('r_api_d4').length, 0);
    assert.equal(t.guard.cache.size, 1, 'the decision did not change: the entry stays');
    await t.ask('api.example.com');
    assert.equal(t.asked.length, 1, 'from the cache');
    assert.equal(t.elements('r_api_d4').length, 1, 'and written into the new set');
  });

  it('a change of ttl_max, the upstreams or the mode empties the cache; cache_size 0 turns it off', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120901n, 300)] }));
    await t.ask('api.example.com');
    t.reload(POLICY.replace('  ttl_grace: 5\n', '  ttl_grace: 5\n  ttl_max: 100\n'));
    assert.equal(t.guard.cache.size, 0);
    await t.ask('api.example.com');
    assert.equal(t.asked.length, 2);
    t.reload(POLICY.replace('  ttl_grace: 5\n', '  ttl_grace: 5\n  ttl_max: 100\n  cache_size: 0\n'));
    await t.ask('api.example.com');
    await t.ask('api.example.com');
    assert.equal(t.asked.length, 4);
    assert.equal(t.guard.cache.size, 0);
  });

  it('the cache is bounded by cache_size: the least recently asked name leaves', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120a01n, 300)] }), POLICY.replace('  ttl_grace: 5\n', '  ttl_grace: 5\n  cache_size: 2\n'));
    await t.ask('a.cdn.example.com');
    await t.ask('b.cdn.example.com');
    await t.ask('a.cdn.example.com');
    await t.ask('c.cdn.example.com');
    assert.equal(t.guard.cache.size, 2);
    assert.equal(t.guard.cache.stats.evictions, 1);
    await t.ask('a.cdn.example.com');
    assert.equal(t.asked.length, 3, 'a stayed');
    await t.ask('b.cdn.example.com');
    assert.equal(t.asked.length, 4, 'b was pushed out');
  });

  it('a hostile upstream cannot poison another name: records off the chain are not cached, under any key', async () => {
    const t = setup((q) =>
      q.name.startsWith('bait') ? { answers: [A(q.name, 0xc6120b01n), A('api.example.com', 0xc6120bffn, 86400)] } : { answers: [A(q.name, 0xc6120b02n)] },
    );
    const bait = await t.ask('bait.cdn.example.com');
    assert.deepEqual(bait.answers.map((r) => r.name), ['bait.cdn.example.com']);
    const api = await t.ask('api.example.com');
    assert.equal(t.asked.length, 2, 'api.example.com was not answered from what the bait carried');
    assert.deepEqual(api.answers.map((r) => (r.data.kind === 'a' ? r.data.addr : 0n)), [0xc6120b02n]);
    assert.ok(!t.elements('r_api_d4').some((e) => e.t === 'addr' && e.start === 0xc6120bffn));
  });

  it('prefetch: a popular answer is fetched again in its last tenth of life, so its askers never wait for the upstream', async () => {
    let addr = 0xc6120f01n;
    const t = setup((q) => ({ answers: [A(q.name, addr, 100)] }));
    await t.ask('api.example.com');
    t.clock.now += 10_000;
    await t.ask('api.example.com');
    await t.ask('api.example.com');
    assert.equal(t.asked.length, 1);
    addr = 0xc6120f02n;
    t.clock.now += 80_000; // 90 s of a 99 s entry
    const r = await t.ask('api.example.com');
    assert.deepEqual(ttls(r), [10], 'the asker is answered from the cache at once');
    await new Promise((res) => setImmediate(res));
    await new Promise((res) => setImmediate(res));
    assert.equal(t.asked.length, 2, 'and the answer was fetched again behind it');
    assert.ok(t.elements('r_api_d4').some((e) => e.t === 'addr' && e.start === 0xc6120f02n), 'its address opened as a fresh answer would');
    t.clock.now += 15_000; // past the old entry's end
    const later = await t.ask('api.example.com');
    assert.equal(t.asked.length, 2, 'served by the prefetched entry');
    assert.deepEqual(later.answers.map((x) => (x.data.kind === 'a' ? x.data.addr : 0n)), [0xc6120f02n]);
    assert.equal(t.guard.cache.stats.prefetches, 1);
  });

  it('prefetch keeps nothing the cache would not keep: a new answer the rebinding filter cut leaves the old entry to expire', async () => {
    let cut = false;
    const t = setup((q) => ({ answers: cut ? [A(q.name, 0x0a000001n, 100), A(q.name, 0xc6121001n, 100)] : [A(q.name, 0xc6121001n, 100)] }));
    for (let i = 0; i < 3; i++) await t.ask('api.example.com');
    cut = true;
    t.clock.now += 95_000;
    await t.ask('api.example.com');
    await new Promise((res) => setImmediate(res));
    await new Promise((res) => setImmediate(res));
    assert.equal(t.asked.length, 2, 'prefetched');
    assert.deepEqual([t.guard.cache.stats.prefetches, t.guard.cache.stats.prefetchFailures], [0, 1]);
    t.clock.now += 5_000;
    await t.ask('api.example.com');
    assert.equal(t.asked.length, 3, 'the old entry expired and nothing replaced it: asked upstream');
  });

  it('an answer decided before a reload that landed while it was upstream is not cached', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120c01n, 300)] }));
    const slow = t.guard.deps.upstream;
    t.guard.deps.upstream = {
      query: async (q, f) => {
        await gate;
        return slow.query(q, f);
      },
    };
    const pending = t.ask('api.example.com');
    await new Promise((r) => setImmediate(r));
    t.reload(POLICY);
    release();
    await pending;
    assert.equal(t.guard.cache.size, 0);
  });
});
