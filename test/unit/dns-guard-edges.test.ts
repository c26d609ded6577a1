/**
 * The DNS guard's decision path at its edges. Written from hand-made mutants
 * of src/dns/dns-guard.ts that lived through the existing tests (see
 * mutation/README.md, "dns-guard.ts (by hand)"): each test here failed
 * against at least one of them. What is asserted is what the client
 * receives, what the kernel's sets hold, and what the guard records (its
 * events and the counters the metrics export).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import { decodeMessage, encodeMessage, RCODE, TYPE, type Message, type Question, type RR } from '../../src/dns/dns-message.js';
import { EDE } from '../../src/dns/dns-guard.js';
import { CNAME, SOA } from '../support/dns-records.js';
import { guardSetup, upstreamMessage, type UpstreamReply } from '../support/guard-harness.js';

const A = (name: string, addr: bigint, ttl = 300): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr } });
const AAAA = (name: string, addr: bigint, ttl = 300): RR => ({ name, type: TYPE.AAAA, class: 1, ttl, data: { kind: 'aaaa', addr } });
const V6 = 0x20010db8000000000000000000000000n;

const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53]
  ttl_floor: 0
  ttl_grace: 10
rules:
  - name: web
    to: [api.example.com, "*.shop.example.com", "*.cdn.example.com"]
    ports: [443/tcp]
  - name: trial
    action: deny
    to: [trial.shop.example.com]
    mode: audit
  - name: no-denied
    action: deny
    to: [denied.example.com]
  - name: no-plain
    action: deny
    to: [edge.cdn.example.com]
    ports: [80/tcp]
scopes:
  - name: nobody-trial
    mode: audit
    users: [65534]
`;

interface QueryOpts {
  id?: number;
  type?: number;
  /** EDNS with this UDP size and DO bit; absent: no EDNS. */
  edns?: { udpSize?: number; dnssecOk?: boolean };
  ad?: boolean;
  cd?: boolean;
  questions?: Question[];
}

function query(name: string, o: QueryOpts = {}): Buffer {
  const m: Message = {
    id: o.id ?? 777,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: o.ad ?? false, cd: o.cd ?? false, rcode: 0 },
    questions: o.questions ?? [{ name, type: o.type ?? TYPE.A, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (o.edns) m.edns = { udpSize: o.edns.udpSize ?? 1232, extendedRcode: 0, version: 0, dnssecOk: o.edns.dnssecOk ?? false, options: [] };
  return encodeMessage(m);
}

type TestClient = { address: string; port: number; transport: 'udp' | 'tcp'; uid?: number; scope?: number };
const client: TestClient = { address: '198.18.0.2', port: 40000, transport: 'udp' };
const audited: TestClient = { ...client, uid: 65534 };

function setup(answer: (q: Question) => RR[] | UpstreamReply | Error = (q) => [A(q.name, 0xc6120101n)], policyText = POLICY, opts: Parameters<typeof guardSetup>[2] = {}) {
  const t = guardSetup(policyText, answer, opts);
  const send = async (packet: Buffer, c: TestClient = client) => {
    const out = await t.guard.handle(packet, c);
    assert.ok(out, 'answered');
    return decodeMessage(out);
  };
  const ask = (name: string, o: QueryOpts = {}, c: TestClient = client) => send(query(name, o), c);
  const last = (): DnsQueryEvent => {
    const e = t.events.at(-1);
    assert.ok(e, 'an event was recorded');
    return e;
  };
  return { ...t, send, ask, last };
}

/** Lets a prefetch started by the last answer run to its end (the fakes answer at once). */
const settle = async () => {
  for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
};
const edes = (m: Message) => m.edns?.options.filter((o) => o.code === 15).map((o) => ({ code: o.data.readUInt16BE(0), text: o.data.subarray(2).toString() })) ?? [];
const addrs = (m: Message) => m.answers.flatMap((r) => (r.data.kind === 'a' || r.data.kind === 'aaaa' ? [r.data.addr] : []));

describe('unit: DNS guard edges, the query itself', () => {
  it('a bare header announcing a question gets FORMERR with its id; the same bytes with QR set (a broken response) get nothing', async () => {
    const t = setup();
    const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    const out = await t.guard.handle(header, client);
    assert.ok(out, 'a 12-byte query that does not parse is answered');
    assert.deepEqual([...out], [0x12, 0x34, 0x81, RCODE.FORMERR, 0, 0, 0, 0, 0, 0, 0, 0]);
    const response = Buffer.from(header);
    response[2] = 0x81;
    assert.equal(await t.guard.handle(response, client), null, 'never a reply to a response, parsed or not (no reflection loop)');
    assert.equal(t.guard.stats.malformed, 2);
  });

  it('zone transfers, AXFR and IXFR alike, are refused with EDE Prohibited, recorded as errors, never forwarded', async () => {
    const t = setup();
    for (const type of [252, 251]) {
      const out = await t.ask('api.example.com', { type, edns: {} });
      assert.equal(out.flags.rcode, RCODE.REFUSED, `type ${type}`);
      assert.deepEqual(edes(out), [{ code: EDE.PROHIBITED, text: 'sluice: zone transfers are refused' }]);
      assert.equal(t.last().verdict, 'error');
      assert.equal(t.last().detail, 'zone transfers are not served');
    }
    assert.equal(t.asked.length, 0);
  });

  it('a query with two questions is refused with FORMERR, and the reply echoes only the first', async () => {
    const t = setup();
    const out = await t.send(query('', { questions: [{ name: 'api.example.com', type: TYPE.A, class: 1 }, { name: 'evil.example', type: TYPE.A, class: 1 }] }));
    assert.equal(out.flags.rcode, RCODE.FORMERR);
    assert.deepEqual(out.questions.map((q) => q.name), ['api.example.com']);
  });
});

describe('unit: DNS guard edges, refusals and gradual enforcement', () => {
  it('a refused name: the asking process is identified before the answer and recorded with the event; counted as blocked', async () => {
    const seen: TestClient[] = [];
    const t = setup(undefined, POLICY, {
      identify: async (c) => {
        seen.push(c);
        return { pid: 4321, comm: 'curl', uid: 1000 };
      },
    });
    const out = await t.ask('unlisted.example', {}, { ...client, uid: 1000 });
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(t.last().process, { pid: 4321, comm: 'curl', uid: 1000 });
    assert.deepEqual(seen, [{ ...client, uid: 1000 }]);
    assert.deepEqual([t.guard.stats.queries, t.guard.stats.blocked, t.guard.stats.allowed], [1, 1, 0]);
    await t.ask('api.example.com');
    assert.equal(seen.length, 1, 'an allowed name asks nobody who sent it');
    assert.deepEqual([t.guard.stats.queries, t.guard.stats.blocked, t.guard.stats.allowed], [2, 1, 1]);
  });

  it("an outright deny in audit by its own mode, on a name an allow rule also matches: answered and recorded, and only the deny rule's set learns the address", async () => {
    const t = setup((q) => [A(q.name, 0xc6120201n)]);
    const out = await t.ask('trial.shop.example.com');
    assert.equal(out.flags.rcode, 0);
    assert.deepEqual(addrs(out), [0xc6120201n], 'the client gets the answer');
    assert.deepEqual(t.set('r_trial_d4'), ['198.18.2.1']);
    assert.deepEqual(t.set('r_web_d4'), [], 'what is answered only because a deny is in audit opens nothing an allow rule holds');
    const e = t.last();
    assert.equal(e.verdict, 'would-block');
    assert.equal(e.detail, 'trial.shop.example.com is denied by rule trial');
    assert.deepEqual(e.answers, ['198.18.2.1']);
    assert.deepEqual(e.rules, ['web', 'trial']);
    assert.equal(t.guard.stats.blocked, 1);
    assert.equal(t.guard.stats.allowed, 0);
  });

  it('the same, through a CNAME to a name a narrower deny matches: the rules recorded are those of the answer, the refusal is the asked name\'s', async () => {
    const t = setup((q) => [CNAME(q.name, 'edge.cdn.example.com'), A('edge.cdn.example.com', 0xc6120202n)]);
    await t.ask('trial.shop.example.com');
    const e = t.last();
    assert.equal(e.verdict, 'would-block');
    assert.equal(e.detail, 'trial.shop.example.com is denied by rule trial');
    assert.deepEqual(e.rules, ['web', 'trial', 'no-plain']);
  });

  it("a user in an audit scope: an unlisted name's would-block records why and what was answered; never cached, each asking goes upstream", async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120203n)], ad: true }));
    for (let i = 0; i < 2; i++) {
      const out = await t.ask('unlisted.example', { edns: { dnssecOk: true } }, audited);
      assert.deepEqual(addrs(out), [0xc6120203n]);
      assert.equal(out.flags.ad, true, "the upstream's AD is passed on to a DO client");
      const e = t.last();
      assert.equal(e.verdict, 'would-block');
      assert.equal(e.detail, 'unlisted.example is not allowed by the policy');
      assert.deepEqual(e.answers, ['198.18.2.3']);
    }
    assert.equal(t.asked.length, 2, 'not answered from memory');
    assert.equal(t.guard.cache.size, 0, 'nothing stored');
    assert.equal(t.guard.cache.stats.inserts, 0);
    assert.equal(t.guard.stats.blocked, 2);
  });

  it('a user in an audit scope asking an allowed name whose chain leads to a denied name: answered as would-block with the chain as the reason; only the deny set learns', async () => {
    const t = setup((q) => [CNAME(q.name, 'denied.example.com'), A('denied.example.com', 0xc6120204n)]);
    const out = await t.ask('api.example.com', {}, audited);
    assert.equal(out.flags.rcode, 0);
    assert.deepEqual(addrs(out), [0xc6120204n]);
    assert.equal(t.last().verdict, 'would-block');
    assert.equal(t.last().detail, 'the answer for api.example.com leads to denied.example.com is denied by rule no-denied');
    assert.deepEqual(t.set('r_no-denied_d4'), ['198.18.2.4']);
    assert.deepEqual(t.set('r_web_d4'), []);
    // Control: anyone else is refused.
    assert.equal((await t.ask('api.example.com')).flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(t.last().rules, ['no-denied']);
    assert.deepEqual([t.guard.stats.blocked, t.guard.stats.chainRefused], [2, 1]);
  });

  it('an encrypted-DNS endpoint is refused even to a user in an audit scope', async () => {
    const t = setup(undefined, POLICY, { encrypted: ['doh.example.net'] });
    assert.equal((await t.ask('doh.example.net', {}, audited)).flags.rcode, RCODE.NXDOMAIN);
    assert.equal(t.last().verdict, 'blocked');
    assert.equal(t.asked.length, 0);
  });

  it("under an audit policy, the enforce scopes' queries are refused: a member user by the kernel's uid, a member service by the kernel's mark", async () => {
    const text = `mode: audit
rules:
  - name: web
    to: [api.example.com]
scopes:
  - name: strict-users
    mode: enforce
    users: [65534]
  - name: strict-svc
    mode: enforce
    services: [a.service]
`;
    const t = setup(undefined, text);
    assert.equal((await t.ask('unlisted.example', {}, { ...client, uid: 65534 })).flags.rcode, RCODE.NXDOMAIN);
    assert.equal((await t.ask('unlisted.example', {}, { ...client, scope: 1 })).flags.rcode, RCODE.NXDOMAIN);
    assert.equal(t.asked.length, 0);
    assert.equal((await t.ask('api.example.com', {}, { ...client, uid: 65534 })).flags.rcode, 0, 'control: an allowed name');
  });
});

describe('unit: DNS guard edges, upstream and kernel', () => {
  it('the DO bit goes upstream as the client set it', async () => {
    const t = setup();
    await t.ask('api.example.com', { edns: { dnssecOk: true } });
    await t.ask('a.cdn.example.com', { edns: { dnssecOk: false } });
    await t.ask('b.cdn.example.com');
    assert.deepEqual(t.asked.map((q) => q.dnssecOk), [true, false, false]);
  });

  it('an upstream that fails: SERVFAIL with EDE No Reachable Authority, counted, recorded with the cause', async () => {
    const t = setup(() => new Error('timed out'));
    const out = await t.ask('api.example.com', { edns: {} });
    assert.equal(out.flags.rcode, RCODE.SERVFAIL);
    assert.deepEqual(edes(out), [{ code: EDE.NO_REACHABLE_AUTHORITY, text: 'sluice: no upstream answered' }]);
    assert.equal(t.guard.stats.upstreamFailures, 1);
    assert.equal(t.last().verdict, 'error');
    assert.equal(t.last().detail, 'upstream: timed out');
  });

  it('a kernel that refuses the write: SERVFAIL with EDE Network Error, for a fresh answer and for a cached one', async () => {
    const t = setup((q) => [A(q.name, 0xc6120301n, 300)]);
    assert.equal((await t.ask('api.example.com')).flags.rcode, 0);
    // The element leaves the set (as a full set pushes it out), so the hit must write it again.
    t.learned.evict('r_web_d4', 4, 0xc6120301n, Date.now());
    const add = t.nf.addElements.bind(t.nf);
    t.nf.addElements = () => {
      throw new Error('ENOBUFS');
    };
    const hit = await t.ask('api.example.com', { edns: {} });
    assert.equal(hit.flags.rcode, RCODE.SERVFAIL);
    assert.deepEqual(edes(hit), [{ code: EDE.NETWORK_ERROR, text: 'sluice: could not open the answer in the firewall' }]);
    assert.equal(t.guard.stats.kernelFailures, 1, 'the cached answer was refused for the kernel');
    const fresh = await t.ask('a.cdn.example.com', { edns: {} });
    assert.equal(fresh.flags.rcode, RCODE.SERVFAIL);
    assert.deepEqual(edes(fresh), [{ code: EDE.NETWORK_ERROR, text: 'sluice: could not open the answer in the firewall' }]);
    assert.equal(t.guard.stats.kernelFailures, 2);
    assert.equal(t.guard.stats.allowed, 1, 'only the first answer counts as allowed');
    t.nf.addElements = add;
  });
});

describe('unit: DNS guard edges, what an allowed answer carries and records', () => {
  it('a clean answer: no EDE, counted allowed; the event names the rules, the addresses, AD; a hit records the same', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120401n)], ad: true }));
    const out = await t.ask('api.example.com', { edns: { dnssecOk: true } });
    assert.deepEqual(out.edns?.options, [], 'nothing filtered, nothing said');
    assert.equal(out.flags.ad, true);
    const e = t.last();
    assert.equal(e.verdict, 'allowed');
    assert.deepEqual(e.rules, ['web']);
    assert.deepEqual(e.answers, ['198.18.4.1']);
    assert.equal(t.guard.stats.allowed, 1);
    await t.ask('api.example.com', { edns: { dnssecOk: true } });
    assert.equal(t.asked.length, 1, 'from the cache');
    assert.deepEqual(t.last().rules, ['web']);
    assert.equal(t.guard.stats.allowed, 2);
  });

  it('AD goes to a client that set AD or DO, never to one that set neither; CD is echoed', async () => {
    const t = setup((q) => ({ answers: [A(q.name, 0xc6120402n)], ad: true }), POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n'));
    assert.equal((await t.ask('api.example.com', { ad: true })).flags.ad, true, 'AD asked for, without EDNS');
    assert.equal((await t.ask('api.example.com', { edns: { dnssecOk: true } })).flags.ad, true, 'DO');
    assert.equal((await t.ask('api.example.com', { edns: {} })).flags.ad, false);
    const cd = await t.ask('api.example.com', { cd: true });
    assert.equal(cd.flags.cd, true);
    assert.equal(t.asked.length, 4);
  });

  it('what was cut is said: the dropped and the over-limit addresses counted, with an EDE each; a hit hands the limit EDE out again', async () => {
    const many = [A('api.example.com', 0x0a000001n), ...Array.from({ length: 5 }, (_, i) => A('api.example.com', 0xc6120500n + BigInt(i)))];
    const t = setup(() => many, POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 3\n'));
    const out = await t.ask('api.example.com', { edns: {} });
    assert.deepEqual(edes(out), [
      { code: EDE.FILTERED, text: 'sluice: dropped 1 address(es) in private or special ranges' },
      { code: EDE.FILTERED, text: 'sluice: left out 2 address(es) over the limit of 3 per answer' },
    ]);
    assert.deepEqual([t.guard.stats.droppedAddresses, t.guard.stats.overAnswerLimit], [1, 2]);
    const only = setup(() => many.slice(1), POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 3\n'));
    await only.ask('api.example.com', { edns: {} });
    const hit = await only.ask('api.example.com', { edns: {} });
    assert.equal(only.asked.length, 1, 'the second from the cache');
    assert.deepEqual(edes(hit), [{ code: EDE.FILTERED, text: 'sluice: left out 2 address(es) over the limit of 3 per answer' }]);
  });

  it('a negative answer passes its SOA on to the client', async () => {
    const t = setup(() => ({ rcode: RCODE.NXDOMAIN, authorities: [SOA(300, 60)] }));
    const out = await t.ask('nothing.cdn.example.com');
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(out.authorities.map((r) => r.type), [TYPE.SOA]);
  });

  it("the event names the asker (uid), the transport, the name as policy sees it, and the question's type", async () => {
    const t = setup((q) => [AAAA(q.name, V6 + 1n)]);
    await t.ask('API.Example.com', { type: TYPE.AAAA }, { ...client, transport: 'tcp', uid: 1000 });
    const e = t.last();
    assert.deepEqual(e.client, { address: client.address, port: client.port, uid: 1000 });
    assert.equal(e.transport, 'tcp');
    assert.equal(e.name, 'api.example.com');
    assert.equal(e.type, TYPE.AAAA);
  });
});

describe('unit: DNS guard edges, IPv6', () => {
  it("AAAA answers open the allow rule's IPv6 set; a chain to a narrower deny fills its IPv6 set too", async () => {
    const t = setup((q) => (q.name === 'www.shop.example.com' ? [CNAME(q.name, 'edge.cdn.example.com'), AAAA('edge.cdn.example.com', V6 + 2n)] : [AAAA(q.name, V6 + 1n)]));
    assert.equal((await t.ask('api.example.com', { type: TYPE.AAAA })).flags.rcode, 0);
    assert.deepEqual(t.set('r_web_d6'), ['2001:db8::1']);
    assert.deepEqual(t.set('r_web_d4'), []);
    await t.ask('www.shop.example.com', { type: TYPE.AAAA });
    assert.deepEqual(t.set('r_web_d6'), ['2001:db8::1', '2001:db8::2']);
    assert.deepEqual(t.set('r_no-plain_d6'), ['2001:db8::2']);
    assert.ok(t.writes.flat().every((w) => w.set.key === (w.set.name.endsWith('_d6') ? 'ipv6_addr' : 'ipv4_addr')), 'each set written with its own key type');
  });

  it('IPv6 addresses of a refused chain, or of an answer given only because a deny is in audit, go into the deny sets alone', async () => {
    const t = setup((q) => (q.name === 'api.example.com' ? [CNAME(q.name, 'denied.example.com'), AAAA('denied.example.com', V6 + 3n)] : [AAAA(q.name, V6 + 4n)]));
    assert.equal((await t.ask('api.example.com', { type: TYPE.AAAA })).flags.rcode, RCODE.NXDOMAIN);
    assert.deepEqual(t.set('r_no-denied_d6'), ['2001:db8::3']);
    assert.equal((await t.ask('trial.shop.example.com', { type: TYPE.AAAA })).flags.rcode, 0);
    assert.deepEqual(t.set('r_trial_d6'), ['2001:db8::4']);
    assert.deepEqual(t.set('r_web_d6'), [], 'nothing opened for the allow rule');
  });

  it('a full IPv6 set makes room as a full IPv4 set does: new names keep resolving', async () => {
    let n = 0n;
    const t = setup((q) => [AAAA(q.name, V6 + 0x100n + n++)], POLICY, { setCapacity: 4 });
    for (let i = 0; i < 6; i++) assert.equal((await t.ask(`n${i}.cdn.example.com`, { type: TYPE.AAAA })).flags.rcode, 0, `name ${i}`);
    assert.equal(t.set('r_web_d6').length, 4);
    assert.equal(t.guard.stats.evicted, 2);
  });

  it('the per-name limit closes IPv6 addresses too', async () => {
    let n = 0n;
    const t = setup(() => [AAAA('api.example.com', V6 + 0x200n + n++)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n  max_addresses_per_answer: 2\n  max_addresses_per_name: 2\n'));
    for (let i = 0; i < 3; i++) await t.ask('api.example.com', { type: TYPE.AAAA });
    assert.deepEqual(t.set('r_web_d6'), ['2001:db8::201', '2001:db8::202']);
    assert.equal(t.guard.stats.overNameLimit, 1);
  });
});

describe('unit: DNS guard edges, kernel writes and room', () => {
  it('an element at most 1 s (the slack) short of what a new answer needs is not written again; a millisecond more and it is', async () => {
    const clock = { now: 1_000_000 };
    const t = setup((q) => [A(q.name, 0xc6120601n, 60)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n'), { clock });
    await t.ask('api.example.com');
    clock.now += 1000;
    await t.ask('api.example.com');
    assert.equal(t.writes.length, 1, 'held until 70 s after the first answer; the second needs 71 s: within the slack');
    clock.now += 1;
    await t.ask('api.example.com');
    assert.equal(t.writes.length, 2);
  });

  it('a kernel refusal gives back exactly the room it reserved: no later answer evicts for it, none overfills the set', async () => {
    const noCache = POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n');
    // The refused answer added a new element: its reservation goes back.
    let n = 0n;
    const t = setup((q) => [A(q.name, 0xc6120700n + n++)], noCache, { setCapacity: 4 });
    const add = t.nf.addElements.bind(t.nf);
    t.nf.addElements = () => {
      throw new Error('ENOBUFS');
    };
    assert.equal((await t.ask('x.cdn.example.com')).flags.rcode, RCODE.SERVFAIL);
    t.nf.addElements = add;
    for (let i = 0; i < 4; i++) assert.equal((await t.ask(`n${i}.cdn.example.com`)).flags.rcode, 0);
    assert.equal(t.set('r_web_d4').length, 4);
    assert.equal(t.guard.stats.evicted, 0, 'four fit in four');
    // The refused answer only refreshed an element: there was no reservation to give back.
    let ttl = 60;
    const u = setup((q) => [A(q.name, q.name === 'x.cdn.example.com' ? 0xc6120710n : 0xc6120720n + n++, ttl)], noCache, { setCapacity: 2 });
    await u.ask('x.cdn.example.com');
    ttl = 600;
    const add2 = u.nf.addElements.bind(u.nf);
    u.nf.addElements = () => {
      throw new Error('ENOBUFS');
    };
    assert.equal((await u.ask('x.cdn.example.com')).flags.rcode, RCODE.SERVFAIL);
    u.nf.addElements = add2;
    assert.equal((await u.ask('y.cdn.example.com')).flags.rcode, 0);
    assert.equal((await u.ask('z.cdn.example.com')).flags.rcode, 0, 'room made in the full set');
    assert.equal(u.set('r_web_d4').length, 2);
  });

  it('an answer whose address goes into two sets reserves one place in each', async () => {
    let n = 0n;
    const t = setup((q) => [A(q.name, 0xc6120800n + n++)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n'), { setCapacity: 3 });
    await t.ask('edge.cdn.example.com');
    assert.deepEqual(t.set('r_no-plain_d4'), ['198.18.8.0']);
    await t.ask('a.cdn.example.com');
    await t.ask('b.cdn.example.com');
    assert.equal(t.set('r_web_d4').length, 3);
    assert.equal(t.guard.stats.evicted, 0, 'three fit in three');
  });
});

describe('unit: DNS guard edges, reply size', () => {
  const big = POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 100\n  max_addresses_per_name: 100\n');
  const many = (name: string, k: number) => Array.from({ length: k }, (_, i) => A(name, 0xc6120900n + BigInt(i)));

  it('an EDNS size below 512 counts as 512; above 1232 as 1232', async () => {
    const t = setup((q) => many(q.name, q.name.startsWith('small') ? 20 : 80), big);
    const small = await t.ask('small.cdn.example.com', { edns: { udpSize: 256 } });
    assert.equal(small.flags.tc, false);
    assert.equal(small.answers.length, 20);
    const large = await t.ask('large.cdn.example.com', { edns: { udpSize: 4096 } });
    assert.equal(large.flags.tc, true, 'over 1232 bytes');
    assert.equal(large.answers.length, 0);
  });

  it('a reply of exactly 512 bytes fits a client without EDNS; a truncated reply carries no records at all', async () => {
    const name = `${'x'.repeat(30)}.cdn.example.com`;
    const t = setup((q) => (q.name === name ? many(name, 28) : { answers: many(q.name, 80), authorities: [SOA(300, 60)] }), big);
    const whole = await t.guard.handle(query(name), { ...client, transport: 'tcp' });
    assert.equal(whole?.length, 512, 'the reply is 512 bytes');
    const udp = await t.ask(name);
    assert.equal(udp.flags.tc, false);
    assert.equal(udp.answers.length, 28);
    const cut = await t.ask('big.cdn.example.com');
    assert.equal(cut.flags.tc, true);
    assert.deepEqual([cut.answers.length, cut.authorities.length], [0, 0]);
  });
});

describe('unit: DNS guard edges, the answer cache', () => {
  it('an answer whose records have 2 s is cached (handed out for 1 s more); one with 1 s is not', async () => {
    const clock = { now: 5_000_000 };
    const t = setup((q) => [A(q.name, 0xc6120a01n, q.name.startsWith('two') ? 2 : 1)], POLICY, { clock });
    await t.ask('two.cdn.example.com');
    await t.ask('two.cdn.example.com');
    assert.equal(t.asked.length, 1);
    await t.ask('one.cdn.example.com');
    const again = await t.ask('one.cdn.example.com');
    assert.equal(t.asked.length, 3, 'never handed out from memory');
    assert.deepEqual(again.answers.map((r) => r.ttl), [1]);
  });

  it('with cache_size 0 there are no lookups: nothing counted as a miss; audited answers are not looked up either', async () => {
    const off = setup(undefined, POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n'));
    await off.ask('api.example.com');
    await off.ask('api.example.com');
    assert.equal(off.asked.length, 2);
    assert.deepEqual([off.guard.cache.stats.hits, off.guard.cache.stats.misses], [0, 0]);
    const on = setup();
    await on.ask('unlisted.example', {}, audited);
    assert.deepEqual([on.guard.cache.stats.hits, on.guard.cache.stats.misses], [0, 0]);
  });

  it('a reload that changes the upstreams, the mode, max_addresses_per_answer or cache_max_negative_ttl empties the cache', async () => {
    for (const [what, text, o] of [
      ['upstreams', POLICY, { newUpstream: true }],
      ['mode', POLICY.replace('mode: enforce', 'mode: audit').replace('    mode: audit\n    users', '    mode: enforce\n    users'), {}],
      ['per-answer limit', POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 7\n'), {}],
      ['negative TTL cap', POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_max_negative_ttl: 7\n'), {}],
    ] as const) {
      const t = setup();
      await t.ask('api.example.com');
      assert.equal(t.guard.cache.size, 1);
      t.reload(text, o);
      assert.equal(t.guard.cache.size, 0, what);
      assert.equal(t.guard.cache.stats.invalidated, 1, what);
    }
  });

  it("a reload drops the entries it would not hand out: a name now an encrypted-DNS endpoint, a chain now refused, an address the filter now drops, other IPv6 sets, other rules", async () => {
    const cases: [string, string, (q: Question) => RR[], string, string[]?][] = [
      ['encrypted endpoint', POLICY, (q) => [A(q.name, 0xc6120b01n)], POLICY, ['a.cdn.example.com']],
      [
        'chain now refused',
        'mode: enforce\ndefault: allow\nrules:\n  - name: no-plain\n    action: deny\n    to: [edge.cdn.example.com]\n    ports: [80/tcp]\n',
        (q) => [CNAME(q.name, 'edge.cdn.example.com'), A('edge.cdn.example.com', 0xc6120b02n)],
        'mode: enforce\ndefault: allow\nrules:\n  - name: no-plain\n    action: deny\n    to: [edge.cdn.example.com]\n',
      ],
      ['address now dropped', `${POLICY.replace('scopes:', '  - name: lan\n    to: [10.1.0.0/16]\nscopes:')}`, (q) => [A(q.name, 0x0a010203n)], POLICY],
      ['IPv6 sets', POLICY, (q) => [A(q.name, 0xc6120b03n)], POLICY.replace('"*.cdn.example.com"]', '"*.cdn.example.com", "::/0"]')],
      ['rules', POLICY, (q) => [A(q.name, 0xc6120b04n)], POLICY.replace('scopes:', '  - name: everywhere\n    to: [a.cdn.example.com, 0.0.0.0/0, "::/0"]\nscopes:')],
      // The same rules, the same number of sets: which rule covers all of IPv4 (and so has no IPv4 set) swapped.
      [
        'which rule has the IPv4 set',
        'mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: a\n    to: [a.cdn.example.com]\n  - name: b\n    to: [a.cdn.example.com, 0.0.0.0/0]\n',
        (q) => [A(q.name, 0xc6120b05n)],
        'mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: a\n    to: [a.cdn.example.com, 0.0.0.0/0]\n  - name: b\n    to: [a.cdn.example.com]\n',
      ],
    ];
    for (const [what, before, answer, after, encrypted] of cases) {
      const t = setup(answer, before);
      assert.equal((await t.ask('a.cdn.example.com')).flags.rcode, 0, what);
      assert.equal(t.guard.cache.size, 1, what);
      t.reload(after, encrypted ? { encrypted } : {});
      assert.equal(t.guard.cache.size, 0, what);
    }
  });

  it('prefetch asks with the DO bit of the hit that triggered it', async () => {
    const clock = { now: 1_000_000 };
    const t = setup((q) => [A(q.name, 0xc6120c01n, 100)], POLICY, { clock });
    for (let i = 0; i < 3; i++) await t.ask('api.example.com');
    clock.now += 95_000;
    await t.ask('api.example.com');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(t.asked.map((q) => q.dnssecOk), [false, false]);
  });

  it('prefetch keeps no truncated answer, nor one whose chain is now refused, nor one the kernel refused; a later hit tries again; one prefetch at a time', async () => {
    for (const what of ['truncated', 'refused chain', 'kernel'] as const) {
      const clock = { now: 1_000_000 };
      let second = false;
      const t = setup(
        (q) => {
          if (!second) return { answers: [A(q.name, 0xc6120d01n, 100)] };
          if (what === 'truncated') return { answers: [A(q.name, 0xc6120d02n, 100)], tc: true };
          if (what === 'refused chain') return { answers: [CNAME(q.name, 'denied.example.com'), A('denied.example.com', 0xc6120d03n, 100)] };
          return { answers: [A(q.name, 0xc6120d04n, 100)] };
        },
        POLICY,
        { clock },
      );
      for (let i = 0; i < 3; i++) await t.ask('api.example.com');
      second = true;
      const add = t.nf.addElements.bind(t.nf);
      if (what === 'kernel') {
        t.nf.addElements = () => {
          throw new Error('ENOBUFS');
        };
      }
      clock.now += 95_000;
      await Promise.all([t.ask('api.example.com'), t.ask('api.example.com')]);
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.equal(t.asked.length, 2, `${what}: one prefetch for two hits`);
      assert.deepEqual([t.guard.cache.stats.prefetches, t.guard.cache.stats.prefetchFailures], [0, 1], what);
      t.nf.addElements = add;
      await t.ask('api.example.com');
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      assert.equal(t.asked.length, 3, `${what}: the next hit tries again`);
    }
  });
});

describe('unit: DNS guard edges, prefetch across a reload', () => {

  it('a prefetched answer over the per-answer limit keeps its EDE for the hits it serves', async () => {
    const clock = { now: 1_000_000 };
    let base = 0xc6120e00n;
    const t = setup((q) => Array.from({ length: 5 }, (_, i) => A(q.name, base + BigInt(i), 100)), POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 3\n'), { clock });
    for (let i = 0; i < 3; i++) await t.ask('api.example.com', { edns: {} });
    base = 0xc6120e10n;
    clock.now += 95_000;
    await t.ask('api.example.com', { edns: {} });
    await settle();
    assert.equal(t.guard.cache.stats.prefetches, 1);
    clock.now += 10_000; // past the first entry's end: served by the prefetched one
    const hit = await t.ask('api.example.com', { edns: {} });
    assert.equal(t.asked.length, 2);
    assert.equal(addrs(hit)[0], 0xc6120e10n);
    assert.deepEqual(edes(hit), [{ code: EDE.FILTERED, text: 'sluice: left out 2 address(es) over the limit of 3 per answer' }]);
  });

  for (const when of ['upstream', 'kernel'] as const) {
    it(`a reload while a prefetch waits for the ${when}: the new answer is not kept${when === 'upstream' ? ', and opens nothing' : ''}`, async () => {
      const clock = { now: 1_000_000 };
      let addr = 0xc6120f01n;
      const t = setup((q) => [A(q.name, addr, 100)], POLICY, { clock });
      for (let i = 0; i < 3; i++) await t.ask('api.example.com');
      addr = 0xc6120f02n;
      let release: () => void = () => undefined;
      const gate = new Promise<void>((r) => (release = r));
      if (when === 'upstream') {
        const up = t.guard.deps.upstream;
        t.guard.deps.upstream = { query: async (q, f) => (await gate, up.query(q, f)) };
      } else {
        const w = t.guard.deps.writer;
        // Only the prefetch writes (its new address); the hit finds its element held.
        t.guard.deps.writer = { write: async (x) => (x.length > 0 && (await gate), w.write(x)) };
      }
      clock.now += 95_000;
      await t.ask('api.example.com');
      await settle();
      t.reload(POLICY);
      release();
      await settle();
      assert.equal(t.asked.length, 2, 'prefetched');
      assert.deepEqual([t.guard.cache.stats.prefetches, t.guard.cache.stats.prefetchFailures], [0, 1]);
      if (when === 'upstream') assert.deepEqual(t.set('r_web_d4'), ['198.18.15.1'], 'decided under the old policy: not opened');
    });
  }
});

describe('unit: DNS guard edges, from the Stryker run of 2026-12-07', () => {
  it('a parsed response sent to the guard gets nothing and counts as malformed', async () => {
    const t = setup();
    const response = Buffer.from(query('api.example.com'));
    response[2] = (response[2] ?? 0) | 0x80; // QR: the bytes of a well-formed response
    assert.equal(await t.guard.handle(response, client), null);
    assert.equal(t.guard.stats.malformed, 1);
    assert.equal(t.asked.length, 0);
  });

  it('what the guard refuses at the header is recorded with why: the opcode, the number of questions, the class', async () => {
    const t = setup();
    const notQuery = Buffer.from(query('api.example.com'));
    notQuery[2] = ((notQuery[2] ?? 0) & ~0x78) | (2 << 3); // opcode 2 (STATUS)
    assert.equal((await t.send(notQuery)).flags.rcode, RCODE.NOTIMP);
    assert.equal(t.last().detail, 'opcode 2 is not supported');
    await t.send(query('', { questions: [] }));
    assert.deepEqual([t.last().detail, t.last().name, t.last().type], ['0 questions (one is required)', '', 0], 'no question: no name, type 0');
    await t.send(query('', { questions: [{ name: 'api.example.com', type: TYPE.A, class: 3 }] }));
    assert.equal(t.last().detail, 'class 3 is not served');
    assert.ok(t.events.every((e) => e.verdict === 'error' && e.answers.length === 0 && e.dropped.length === 0 && e.rules.length === 0));
  });

  it('a kernel that refuses: the event says the kernel failed and why, for a fresh answer and for a cached one', async () => {
    const t = setup((q) => [A(q.name, 0xc6120f01n, 300)]);
    await t.ask('api.example.com');
    t.learned.evict('r_web_d4', 4, 0xc6120f01n, Date.now());
    t.nf.addElements = () => {
      throw new Error('ENOBUFS');
    };
    await t.ask('api.example.com');
    assert.equal(t.last().detail, 'kernel set update failed: ENOBUFS', 'the cached answer');
    await t.ask('a.cdn.example.com');
    assert.equal(t.last().detail, 'kernel set update failed: ENOBUFS', 'a fresh answer');
  });

  it('the writes for an answer name each set with its key type and as a plain (non-interval) set, IPv4 and IPv6', async () => {
    const t = setup((q) => (q.type === TYPE.AAAA ? [AAAA(q.name, V6 + 9n)] : [A(q.name, 0xc6120f02n)]));
    await t.ask('api.example.com');
    await t.ask('api.example.com', { type: TYPE.AAAA });
    assert.deepEqual(
      t.writes.flat().map((w) => w.set),
      [
        { name: 'r_web_d4', key: 'ipv4_addr', interval: false },
        { name: 'r_web_d6', key: 'ipv6_addr', interval: false },
      ],
    );
  });

  it('a user listed in one of several audit scopes, beside other users, is audited; a user in none is not', async () => {
    const text = POLICY.replace('    users: [65534]\n', '    users: [65533, 65534]\n  - name: other\n    mode: audit\n    users: [4000]\n');
    const t = setup((q) => [A(q.name, 0xc6120f03n)], text);
    for (const uid of [65533, 65534, 4000]) {
      const out = await t.ask('unlisted.example', {}, { ...client, uid });
      assert.equal(out.flags.rcode, 0, `uid ${uid}`);
      assert.equal(t.last().verdict, 'would-block', `uid ${uid}`);
    }
    assert.equal((await t.ask('unlisted.example', {}, { ...client, uid: 1000 })).flags.rcode, RCODE.NXDOMAIN);
    assert.equal(t.last().verdict, 'blocked');
  });

  it('the event: a client without a uid has its address and port and no uid; an allowed answer has no detail and no process', async () => {
    const t = setup();
    await t.ask('api.example.com');
    const e = t.last();
    assert.deepStrictEqual(e.client, { address: client.address, port: client.port });
    assert.equal(e.verdict, 'allowed');
    assert.ok(!('detail' in e), 'no detail key');
    assert.ok(!('process' in e), 'no process key');
    await t.ask('unlisted.example');
    assert.deepEqual([t.last().verdict, t.last().answers, t.last().dropped], ['blocked', [], []]);
  });

  it("the event's latency is the time the guard took, in milliseconds", async () => {
    const t = guardSetup(POLICY, () => []);
    t.guard.deps = {
      ...t.guard.deps,
      upstream: {
        query: async (q) => {
          await new Promise((r) => setTimeout(r, 40));
          return upstreamMessage(q, { answers: [A(q.name, 0xc6120f04n)] });
        },
      },
    };
    const before = performance.now();
    await t.guard.handle(query('api.example.com'), client);
    const took = performance.now() - before;
    const e = t.events.at(-1);
    assert.ok(e);
    assert.ok(e.latencyMs >= 35 && e.latencyMs <= took + 1, `latency ${e.latencyMs} ms, the call took ${took} ms`);
  });

  it('a reload drops an entry when the new filter refuses any one of its addresses, not only all of them', async () => {
    const t = setup(() => [A('a.cdn.example.com', 0xc6120f05n), A('a.cdn.example.com', 0x0a010203n)], POLICY.replace('scopes:', '  - name: lan\n    to: [10.1.0.0/16]\nscopes:'));
    const out = await t.ask('a.cdn.example.com');
    assert.equal(addrs(out).length, 2);
    assert.equal(t.guard.cache.size, 1);
    t.reload(POLICY);
    assert.equal(t.guard.cache.size, 0);
  });

  it('a reload that changes ttl_max and the per-answer limit empties the cache even when their digits run together (301|5 and 30|15)', async () => {
    const t = setup(undefined, POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  ttl_max: 301\n  max_addresses_per_answer: 5\n'));
    await t.ask('api.example.com');
    assert.equal(t.guard.cache.size, 1);
    t.reload(POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  ttl_max: 30\n  max_addresses_per_answer: 15\n'));
    assert.equal(t.guard.cache.size, 0);
  });

  it('a prefetched answer within the per-answer limit hands out no EDE', async () => {
    const clock = { now: 1_000_000 };
    const t = setup((q) => [A(q.name, 0xc6120f10n, 100), A(q.name, 0xc6120f11n, 100)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  max_addresses_per_answer: 3\n'), { clock });
    for (let i = 0; i < 3; i++) await t.ask('api.example.com', { edns: {} });
    clock.now += 95_000;
    await t.ask('api.example.com', { edns: {} });
    await settle();
    assert.equal(t.guard.cache.stats.prefetches, 1);
    clock.now += 10_000;
    const hit = await t.ask('api.example.com', { edns: {} });
    assert.equal(t.asked.length, 2, 'served by the prefetched entry');
    assert.deepEqual(edes(hit), []);
  });

  it("the per-name limit releasing an address a full set already pushed out: nothing to close, nothing counted, the answer goes through", async () => {
    const answers: Record<string, bigint> = { 'x.cdn.example.com': 0xc6121001n, 'y.cdn.example.com': 0xc6121002n, 'z.cdn.example.com': 0xc6121003n };
    const t = setup((q) => [A(q.name, answers[q.name] ?? 0n)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n  max_addresses_per_answer: 1\n  max_addresses_per_name: 1\n'), { setCapacity: 2 });
    for (const name of ['x.cdn.example.com', 'y.cdn.example.com', 'z.cdn.example.com']) assert.equal((await t.ask(name)).flags.rcode, 0, name);
    assert.deepEqual(t.set('r_web_d4').sort(), ['198.18.16.2', '198.18.16.3'], "x's address made room for z's");
    answers['x.cdn.example.com'] = 0xc6121004n;
    const out = await t.ask('x.cdn.example.com');
    assert.equal(out.flags.rcode, 0);
    assert.equal(t.guard.stats.overNameLimit, 0, 'the released address was no longer in the set');
    assert.deepEqual(t.set('r_web_d4').sort(), ['198.18.16.3', '198.18.16.4']);
  });
});
