/**
 * What a DNS answer may open: every name on its chain goes through the
 * policy, deny rules' sets are filled, and no answer, name or flood can fill
 * a rule's set so that other names stop resolving. A fake upstream and the
 * in-memory netfilter (with a small set size where sets must fill).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import { DenyRefresher } from '../../src/dns/deny-refresher.js';
import { decodeMessage, encodeMessage, RCODE, TYPE, type Message, type Question, type RR } from '../../src/dns/dns-message.js';
import { DnsGuard, EDE } from '../../src/dns/dns-guard.js';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import { LearnedState } from '../../src/dns/learned-state.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { SetWriter } from '../../src/dns/set-writer.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { formatAddr } from '../../src/net/ip.js';
import { compileFrom } from '../support/fixtures.js';

const A = (name: string, addr: bigint, ttl = 300): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr } });
const CNAME = (name: string, target: string): RR => ({ name, type: TYPE.CNAME, class: 1, ttl: 300, data: { kind: 'name', name: target } });
const client = { address: '198.18.0.2', port: 40000, transport: 'udp' as const };

function query(name: string, type: number = TYPE.A): Buffer {
  return encodeMessage({
    id: 99,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
    questions: [{ name, type, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
    edns: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: false, options: [] },
  });
}

function setup(policyText: string, answers: (q: Question) => RR[], opts: { setCapacity?: number; encrypted?: string[] } = {}) {
  const { policy, ruleset } = compileFrom(policyText);
  const nf = new FakeNetfilter(opts.setCapacity ? { dynamicSetSize: opts.setCapacity } : {});
  nf.replace(ruleset);
  const asked: Question[] = [];
  const events: DnsQueryEvent[] = [];
  const learned = new LearnedState();
  const writer = new SetWriter(nf, TABLE_NAME);
  const guard = new DnsGuard({
    policy,
    matcher: new DomainMatcher(policy, opts.encrypted ?? []),
    rebinding: new RebindingFilter(policy),
    dynamicSets: new Set(ruleset.sets.filter((x) => x.dynamic).map((x) => x.name)),
    ...(opts.setCapacity ? { setCapacity: opts.setCapacity } : {}),
    upstream: {
      query: async (q): Promise<Message> => {
        asked.push(q);
        return { id: 1, flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 }, questions: [q], answers: answers(q), authorities: [], additionals: [] };
      },
    },
    writer,
    learned,
    onEvent: (e) => events.push(e),
  });
  /** Addresses in a set, as text. */
  const set = (name: string): string[] =>
    nf
      .read(TABLE_NAME, { elements: 'dynamic' })
      ?.ruleset.sets.find((s) => s.name === name)
      ?.elements.map((e) => (e.t === 'addr' ? formatAddr(e.family, e.start) : '?')) ?? [];
  const ask = async (name: string, type: number = TYPE.A) => decodeMessage((await guard.handle(query(name, type), client)) as Buffer);
  return { guard, nf, asked, events, learned, set, ask, policy, writer };
}

const ede = (m: Message) => m.edns?.options.filter((o) => o.code === 15).map((o) => ({ code: o.data.readUInt16BE(0), text: o.data.subarray(2).toString() })) ?? [];

describe('unit: every name on an answer goes through the policy', () => {
  const POLICY = `mode: enforce
rules:
  - name: web
    to: [alias.example.test, www.example.test, svc.example.test, "*.cdn.example.test"]
    ports: [443/tcp]
  - name: no-denied
    action: deny
    to: [denied.example.test, "*.tracker.example.test"]
  - name: no-plain
    action: deny
    to: [edge.cdn.example.test]
    ports: [80/tcp]
`;
  const zone = (q: Question): RR[] => {
    switch (q.name.toLowerCase()) {
      case 'alias.example.test':
        return [CNAME(q.name, 'denied.example.test'), A('denied.example.test', 0xc6120214n)];
      case 'www.example.test':
        return [CNAME(q.name, 'x.tracker.example.test'), A('x.tracker.example.test', 0xc6120215n)];
      case 'cdnalias.cdn.example.test':
        return [CNAME(q.name, 'edge.cdn.example.test'), A('edge.cdn.example.test', 0xc6120216n)];
      case 'svc.example.test':
        return [CNAME(q.name, 'provider.example.net'), A('provider.example.net', 0xc6120217n)];
      case 'doh.cdn.example.test':
        return [CNAME(q.name, 'dns.google'), A('dns.google', 0x08080808n)];
      default:
        return [A(q.name, 0xc6120218n)];
    }
  };

  it('a CNAME from an allowed name to a denied one is refused whole, the EDE names the denied name, and only the deny set learns its address', async () => {
    const t = setup(POLICY, zone);
    const out = await t.ask('alias.example.test');
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.equal(out.answers.length, 0, 'no address handed out');
    assert.deepEqual(ede(out).map((e) => e.code), [EDE.BLOCKED]);
    assert.match(ede(out)[0]?.text ?? '', /alias\.example\.test leads to denied\.example\.test is denied by rule no-denied/);
    assert.deepEqual(t.set('r_web_d4'), [], 'the allow rule opened nothing');
    assert.deepEqual(t.set('r_no-denied_d4'), ['198.18.2.20'], 'the deny rule knows the address now');
    assert.equal(t.events[0]?.verdict, 'blocked');
    assert.equal(t.guard.stats.chainRefused, 1);
  });

  it('a chain through a name a wildcard deny matches is refused, and fills that deny set', async () => {
    const t = setup(POLICY, zone);
    assert.equal((await t.ask('www.example.test')).flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(t.set('r_no-denied_d4'), ['198.18.2.21']);
    assert.deepEqual(t.set('r_web_d4'), []);
  });

  it('a chain through an encrypted-DNS endpoint is refused; blocked_answer refused answers REFUSED', async () => {
    const t = setup(POLICY.replace('mode: enforce', 'mode: enforce\ndns:\n  blocked_answer: refused'), zone, { encrypted: ['dns.google'] });
    const out = await t.ask('doh.cdn.example.test');
    assert.equal(out.flags.rcode, RCODE.REFUSED);
    assert.match(ede(out)[0]?.text ?? '', /dns\.google is an encrypted DNS endpoint/);
  });

  it("a chain to a name no rule lists (a CDN's) is answered: allowing a name allows its provider's names", async () => {
    const t = setup(POLICY, zone);
    const out = await t.ask('svc.example.test');
    assert.equal(out.flags.rcode, 0);
    assert.deepEqual(t.set('r_web_d4'), ['198.18.2.23']);
  });

  it('a chain through a name a deny rule with conditions matches is answered, and that deny set gets the address too', async () => {
    const t = setup(POLICY, zone);
    assert.equal((await t.ask('cdnalias.cdn.example.test')).flags.rcode, 0);
    assert.deepEqual(t.set('r_web_d4'), ['198.18.2.22']);
    assert.deepEqual(t.set('r_no-plain_d4'), ['198.18.2.22'], 'the kernel enforces the narrower deny on the chain target');
  });

  it('an HTTPS record whose target is denied is refused like a CNAME to it', async () => {
    const t = setup(POLICY, (q) => [{ name: q.name, type: TYPE.HTTPS, class: 1, ttl: 60, data: { kind: 'svcb', priority: 1, target: 'denied.example.test', params: [{ key: 4, value: Buffer.from([198, 18, 2, 30]) }] } }]);
    const out = await t.ask('alias.example.test', TYPE.HTTPS);
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(t.set('r_web_d4'), []);
  });

  it("the deny refresher resolves deny rules' exact names itself, writes only their sets, and looks again before expiry", async () => {
    let now = 1_000_000;
    const t = setup(POLICY.replace('  - name: web', '  - name: all-test\n    to: ["*.example.test"]\n    ports: [443/tcp]\n  - name: web'), (q) => [A(q.name, q.name === 'denied.example.test' ? 0xc6120214n : 0xc6120299n, 120)]);
    const r = new DenyRefresher(t.guard, () => now);
    r.reset();
    assert.equal(r.planned, 4, 'denied.example.test and edge.cdn.example.test, A and AAAA: wildcards cannot be resolved');
    await r.tick();
    assert.deepEqual(t.asked.map((q) => `${q.name}/${q.type}`).sort(), ['denied.example.test/1', 'denied.example.test/28', 'edge.cdn.example.test/1', 'edge.cdn.example.test/28']);
    assert.deepEqual(t.set('r_no-denied_d4'), ['198.18.2.20']);
    assert.deepEqual(t.set('r_all-test_d4'), [], 'not into the allow rule that also matches the denied name');
    assert.deepEqual(t.set('r_no-plain_d4'), ['198.18.2.153'], 'deny rules with conditions too');
    await r.tick();
    assert.equal(t.asked.length, 4, 'nothing due yet');
    // TTL 120, floor 30, grace 30: open for 150 s; looked up again at 120 s (a fifth early).
    now += 119_000;
    await r.tick();
    assert.equal(t.asked.length, 4);
    now += 2_000;
    await r.tick();
    assert.deepEqual(t.asked.slice(4).map((q) => q.type), [TYPE.A, TYPE.A], 'the A lookups again, before the 150 s expiry (the AAAA ones found nothing: again in 5 minutes)');
  });
});

describe('unit: limits per answer, per name, and full sets', () => {
  const POLICY = `mode: enforce
dns:
  max_addresses_per_answer: 8
  max_addresses_per_name: 16
  cache_size: 0                # every answer from the flooding upstream (cached answers: dns-cache.test.ts)
rules:
  - name: web
    to: ["*.example.test"]
    ports: [443/tcp]
`;
  /** A hostile upstream: every answer brings `n` new addresses. */
  const flood = (n: number) => {
    let next = 0xc6130000n;
    return (q: Question) => Array.from({ length: n }, () => A(q.name, next++));
  };

  it('an answer of 4,000 addresses opens (and passes on) only the per-answer limit, with an EDE saying so', async () => {
    const t = setup(POLICY, flood(4000));
    const out = await t.ask('huge.example.test');
    assert.equal(out.answers.length, 8);
    assert.equal(t.set('r_web_d4').length, 8);
    assert.ok(ede(out).some((e) => e.code === EDE.FILTERED && /left out 3992 address\(es\) over the limit of 8 per answer/.test(e.text)));
  });

  it('one name answered again and again holds at most its limit: its oldest addresses close', async () => {
    const t = setup(POLICY, flood(8));
    for (let i = 0; i < 10; i++) assert.equal((await t.ask('rotating.example.test')).flags.rcode, 0);
    const inSet = t.set('r_web_d4');
    assert.equal(inSet.length, 16, 'the limit of 16, not 80');
    const last = await t.ask('rotating.example.test');
    for (const a of last.answers) assert.ok(inSet.length > 0 && t.set('r_web_d4').includes(formatAddr(4, a.data.kind === 'a' ? a.data.addr : 0n)), 'the latest answer is open');
    assert.ok(t.guard.stats.overNameLimit > 0);
  });

  it('an address another name still holds is not closed by the per-name limit', async () => {
    let shared = true;
    let n = 0xc6140000n;
    const t = setup(POLICY, (q) => (q.name === 'keeper.example.test' || shared ? [A(q.name, 0xc6149999n), ...Array.from({ length: 7 }, () => A(q.name, n++))] : Array.from({ length: 8 }, () => A(q.name, n++))));
    await t.ask('keeper.example.test');
    await t.ask('churn.example.test');
    shared = false;
    for (let i = 0; i < 4; i++) await t.ask('churn.example.test');
    assert.ok(t.set('r_web_d4').includes('198.20.153.153'), 'keeper.example.test still holds it');
  });

  it('a flood of new names fills a full set by evicting the least recently answered, in the same transaction: legitimate names keep resolving', async () => {
    const t = setup(POLICY, flood(8), { setCapacity: 64 });
    for (let i = 0; i < 40; i++) assert.equal((await t.ask(`n${i}.example.test`)).flags.rcode, 0, `flood query ${i}`);
    const calls = t.nf.calls.addElements;
    const legit = await t.ask('legit.example.test');
    assert.equal(legit.flags.rcode, 0, 'not SERVFAIL: room was made');
    assert.equal(t.nf.calls.addElements, calls + 1, 'deletions and additions in one transaction');
    const inSet = t.set('r_web_d4');
    assert.equal(inSet.length, 64);
    for (const a of legit.answers) assert.ok(inSet.includes(formatAddr(4, a.data.kind === 'a' ? a.data.addr : 0n)));
    assert.ok(t.guard.stats.evicted >= 40 * 8 + 8 - 64);
    assert.equal(t.learned.list().length, 64, 'the learned state mirrors the kernel set');
  });

  it('a recently answered address survives eviction; the least recently answered goes first', async () => {
    // kept.example.test is 198.21.0.1; nK.example.test is 198.21.1.K.
    const s = setup(POLICY, (q) => [A(q.name, q.name === 'kept.example.test' ? 0xc6150001n : 0xc6150100n + BigInt(Number(q.name.slice(1, q.name.indexOf('.')))))], { setCapacity: 4 });
    await s.ask('kept.example.test');
    await s.ask('n1.example.test');
    await s.ask('n2.example.test');
    await s.ask('n3.example.test');
    await s.ask('kept.example.test'); // answered again: now the most recent
    await s.ask('n4.example.test'); // the set is full: n1 (least recent) goes
    const inSet = s.set('r_web_d4');
    assert.ok(inSet.includes('198.21.0.1'), 'kept');
    assert.ok(!inSet.includes('198.21.1.1'), 'n1 evicted');
    assert.ok(inSet.includes('198.21.1.4'));
  });

  it('when the kernel refuses, what was taken out to make room is put back in the learned state', async () => {
    const t = setup(POLICY, flood(8), { setCapacity: 16 });
    await t.ask('a.example.test');
    await t.ask('b.example.test');
    const before = t.learned.list().length;
    t.nf.remove(TABLE_NAME);
    assert.equal((await t.ask('c.example.test')).flags.rcode, RCODE.SERVFAIL);
    assert.equal(t.learned.list().length, before);
  });
});

describe('unit: a set written once per answer', () => {
  it('a conditional deny matching both the asked name and a chain name gets one write per address, and the learned state stays exact', async () => {
    const t = setup(
      `mode: enforce\nrules:\n  - name: web\n    to: ["*.example.test"]\n  - name: no-plain\n    action: deny\n    to: ["*.example.test"]\n    ports: [80/tcp]\n`,
      (q) => [CNAME(q.name, 'edge.example.test'), A('edge.example.test', 0xc6160001n)],
      { setCapacity: 8 },
    );
    assert.equal((await t.ask('www.example.test')).flags.rcode, 0);
    assert.deepEqual(t.set('r_no-plain_d4'), ['198.22.0.1']);
    assert.deepEqual(t.set('r_web_d4'), ['198.22.0.1']);
    assert.equal(t.learned.list().length, 2);
    assert.equal(t.writer.stats.elements, 2, 'one element per set, not one per name matching the deny rule');
  });
});
