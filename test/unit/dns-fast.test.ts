/**
 * The guard's fast path (native/dns_fast.c, src/dns/fast-answers.ts): for
 * every question the JS cache would answer, the native table gives the same
 * bytes at the same moment, or nothing (the query then goes through JS); it
 * gives nothing after the deadline, after a reload, or once an element left
 * a set; and its parser survives hostile packets.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { native } from '../../src/native/native.js';
import { UdpBatchSocket } from '../../src/net/udp-batch.js';
import { decodeMessage, encodeMessage, OPT_EDE, TYPE, type EdnsOption, type Message, type RR } from '../../src/dns/dns-message.js';
import { encodeTemplate, FastAnswers, fastKey } from '../../src/dns/fast-answers.js';
import { CNAME, SOA } from '../support/dns-records.js';
import { guardSetup } from '../support/guard-harness.js';

const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53]
  ttl_floor: 5
  ttl_grace: 5
rules:
  - name: api
    to: [api.example.com, www.example.com, none.example.com, "*.cdn.example.com", v6.example.com]
    ports: [443/tcp]
`;

const A = (name: string, addr: bigint, ttl = 60): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr } });
const AAAA = (name: string, addr: bigint, ttl = 60): RR => ({ name, type: TYPE.AAAA, class: 1, ttl, data: { kind: 'aaaa', addr } });

interface Q {
  id?: number;
  type?: number;
  edns?: boolean;
  dnssecOk?: boolean;
  udpSize?: number;
  ad?: boolean;
  cd?: boolean;
  rd?: boolean;
  options?: EdnsOption[];
}

function query(name: string, o: Q = {}): Buffer {
  const m: Message = {
    id: o.id ?? 0x1234,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: o.rd ?? true, ra: false, ad: o.ad ?? false, cd: o.cd ?? false, rcode: 0 },
    questions: [{ name, type: o.type ?? TYPE.A, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (o.edns || o.dnssecOk) m.edns = { udpSize: o.udpSize ?? 1232, extendedRcode: 0, version: 0, dnssecOk: o.dnssecOk ?? false, options: o.options ?? [] };
  return encodeMessage(m);
}

const client = { address: '198.18.0.2', port: 40000, transport: 'udp' as const, uid: 1000 };

function setup() {
  const clock = { now: 1_700_000_000_000 };
  const t = guardSetup(POLICY, (q) => {
    const n = q.name.toLowerCase();
    if (n === 'www.example.com') return { answers: [CNAME(q.name, 'edge.cdn.example.com', 300), A('edge.cdn.example.com', 0xc6120102n, 40)], ad: true };
    if (n === 'none.example.com') return { rcode: 3, authorities: [SOA(600, 30)] };
    if (n === 'v6.example.com' && q.type === TYPE.AAAA) return [AAAA(q.name, 0x20010db8000000000000000000000001n, 120), AAAA(q.name, 0x20010db8000000000000000000000002n, 90)];
    if (n === 'v6.example.com') return { authorities: [SOA(600, 20)] };
    return [A(q.name, 0xc6120101n, 60)];
  }, { clock });
  const fast = new FastAnswers(1000);
  t.guard.attachFast(fast);
  /** The JS answer (a cache hit, after the first) and the native one, at the same clock reading. */
  const both = async (q: Buffer) => {
    const nat = native().dnsFastAnswer(fast.table, q, clock.now);
    const js = (await t.guard.handle(q, client)) as Buffer;
    return { nat, js };
  };
  return { ...t, clock, fast, both };
}

describe('unit: the DNS guard fast path (native/dns_fast.c)', () => {
  it('answers what the JS cache answers, byte for byte, at every moment of the entry\'s life: EDNS or not, DO, AD, CD, RD, 0x20 spelling, CNAME chains, negative answers, AAAA', async () => {
    const t = setup();
    const variants: [string, Q][] = [
      ['api.example.com', {}],
      ['API.Example.COM', { id: 7 }],
      ['api.example.com', { edns: true }],
      ['api.example.com', { dnssecOk: true, ad: true }],
      ['www.example.com', { edns: true, ad: true, cd: true }],
      ['WWW.example.com', { dnssecOk: true }],
      ['www.example.com', { rd: false }],
      ['none.example.com', {}],
      ['None.Example.com', { edns: true, udpSize: 4096 }],
      ['v6.example.com', { type: TYPE.AAAA, edns: true }],
      ['v6.example.com', { type: TYPE.A }],
      ['api.example.com', { edns: true, options: [{ code: 10, data: Buffer.from('0123456789abcdef', 'hex') }] }],
    ];
    // The first of each key goes upstream (a miss) and puts the answer in the table.
    for (const [name, o] of variants) await t.guard.handle(query(name, o), client);
    assert.ok(t.fast.size >= 6, `entries in the table: ${t.fast.size}`);
    let compared = 0;
    for (const step of [0, 1, 999, 1000, 1001, 4500, 19_000, 29_999]) {
      t.clock.now += step;
      for (const [name, o] of variants) {
        const q = query(name, { ...o, id: (compared * 7919) & 0xffff });
        const { nat, js } = await t.both(q);
        if (nat === null) continue;
        assert.equal(nat.toString('hex'), js.toString('hex'), `${name} ${JSON.stringify(o)} at +${step} ms`);
        compared++;
      }
    }
    assert.ok(compared >= 60, `answers compared: ${compared}`);
  });

  it('an answer that does not fit the client (512 bytes without EDNS) is left to JS, which truncates it', async () => {
    const t = setup();
    const many = Array.from({ length: 40 }, (_, i) => A('big.cdn.example.com', 0xc6120200n + BigInt(i), 60));
    const t2 = guardSetup(POLICY, () => many, { clock: t.clock });
    const fast = new FastAnswers(100);
    t2.guard.attachFast(fast);
    await t2.guard.handle(query('big.cdn.example.com', { edns: true }), client);
    assert.equal(fast.size, 1);
    assert.ok(native().dnsFastAnswer(fast.table, query('big.cdn.example.com', { edns: true }), t.clock.now), 'fits 1232');
    assert.equal(native().dnsFastAnswer(fast.table, query('big.cdn.example.com', { edns: true, udpSize: 512 }), t.clock.now), null, '40 A records do not fit 512');
    const js = decodeMessage((await t2.guard.handle(query('big.cdn.example.com', { edns: true, udpSize: 512 }), client)) as Buffer);
    assert.equal(js.flags.tc, true);
  });

  it('nothing after the deadline: the last moment every element is sure to outlive what a hit hands out (ttl_floor and ttl_grace counted)', async () => {
    const t = setup();
    await t.guard.handle(query('api.example.com'), client);
    const e = t.guard.cache.peek([...t.guard.cache.keys()][0] as string);
    assert.ok(e?.fastUntil !== undefined);
    // TTL 60, floor 5, grace 5: the element lives until stored + 65 s; the floor's hits are covered until 65 - 10 = 55 s,
    // plus the second open() itself allows short of that (taken out of the grace).
    assert.equal(e.fastUntil - e.storedAt, 56_000);
    const q = query('api.example.com');
    assert.ok(native().dnsFastAnswer(t.fast.table, q, e.storedAt + 56_000));
    assert.equal(native().dnsFastAnswer(t.fast.table, q, e.storedAt + 56_001), null);
  });

  it('names that share an address both go in the table: the second answer, which finds the element fresh enough not to write it again, is covered by what open() guarantees', async () => {
    const clock = { now: 1_700_000_000_000 };
    const t = guardSetup(POLICY, (q) => [A(q.name, 0xc6120301n, 60)], { clock });
    const fast = new FastAnswers(100);
    t.guard.attachFast(fast);
    await t.guard.handle(query('a.cdn.example.com'), client);
    clock.now += 600;
    await t.guard.handle(query('b.cdn.example.com'), client);
    assert.equal(t.writes.length, 1, 'the second answer wrote nothing (its element lives within the slack of what it needs)');
    assert.equal(fast.size, 2);
    assert.ok(native().dnsFastAnswer(fast.table, query('b.cdn.example.com'), clock.now + 1000));
  });

  it('an element leaving a set (a full set makes room) empties the table', async () => {
    const clock = { now: 1_700_000_000_000 };
    let n = 0;
    const t = guardSetup(POLICY, (q) => [A(q.name, 0xc6120300n + BigInt(n++), 60)], { clock, setCapacity: 2 });
    const fast = new FastAnswers(100);
    t.guard.attachFast(fast);
    await t.guard.handle(query('a.cdn.example.com'), client);
    await t.guard.handle(query('b.cdn.example.com'), client);
    assert.equal(fast.size, 2);
    clock.now += 1000;
    await t.guard.handle(query('c.cdn.example.com'), client);
    assert.ok(t.guard.stats.evicted >= 1, 'the set was full: an element made room');
    assert.equal(fast.size, 1, 'only the answer stored after the eviction is left');
    assert.equal(native().dnsFastAnswer(fast.table, query('a.cdn.example.com'), clock.now), null);
  });

  it('this host\'s addresses changing is reported, so that the table empties (the guard component drops it then)', () => {
    const t = setup();
    const r = t.guard.deps.rebinding;
    assert.equal(r.setLocalAddresses([{ family: 4, value: 0xc6120101n }]), true);
    assert.equal(r.setLocalAddresses([{ family: 4, value: 0xc6120101n }]), false);
    assert.equal(r.setLocalAddresses([]), true);
  });

  it('a reload empties the table at once', async () => {
    const t = setup();
    await t.guard.handle(query('api.example.com'), client);
    await t.guard.handle(query('www.example.com'), client);
    assert.equal(t.fast.size, 2);
    t.reload(POLICY.replace('api.example.com, ', ''));
    assert.equal(t.fast.size, 0, 'emptied by the reload');
    assert.equal(native().dnsFastAnswer(t.fast.table, query('api.example.com'), t.clock.now), null);
    const blocked = decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer);
    assert.equal(blocked.flags.rcode, 3, 'the JS path refuses the name the reload removed');
    // Back in the table through a JS hit.
    await t.guard.handle(query('www.example.com'), client);
    assert.equal(t.fast.size, 1);
    t.guard.dropFast();
    assert.equal(t.fast.size, 0);
  });

  it('a reload while a JS cache hit waits on the kernel write does not put the entry back: the name it now refuses stays out of the table (review finding)', async () => {
    const clock = { now: 1_700_000_000_000 };
    const t = guardSetup(POLICY, (q) => [A(q.name, 0xc6120101n, 300)], { clock });
    const fast = new FastAnswers(100);
    t.guard.attachFast(fast);
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(fast.size, 1);
    t.guard.dropFast();
    clock.now += 2000;
    // The next hit goes through JS; its open() waits on the set writer for the length of a reload.
    const writer = t.guard.deps.writer;
    const write = writer.write.bind(writer);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    writer.write = async (w) => {
      await gate;
      return write(w);
    };
    const hit = t.guard.handle(query('api.example.com'), client);
    await new Promise((r) => setImmediate(r));
    t.reload(POLICY + '  - name: no\n    action: deny\n    to: [api.example.com]\n');
    release();
    await hit;
    assert.equal(decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer).flags.rcode, 3, 'refused under the new policy');
    assert.equal(fast.size, 0);
    assert.equal(native().dnsFastAnswer(fast.table, query('api.example.com'), clock.now + 30_000), null);
  });

  it('while a reload is under way (frozen), nothing goes into the table; the new dependencies, or an aborted reload, open it again', async () => {
    const t = setup();
    t.guard.freezeFast();
    await t.guard.handle(query('api.example.com'), client);
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(t.fast.size, 0, 'a miss and a JS hit while frozen put nothing in');
    t.guard.thawFast();
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(t.fast.size, 1, 'thawed: the next JS hit puts it in');
    t.guard.freezeFast();
    t.reload(POLICY);
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(t.fast.size, 1, 'the new dependencies thaw it');
  });

  it('the TTL countdown saturates: an entry stored more than 2^32 s before now hands out TTL 0, never a wrapped age', () => {
    const table = native().dnsTableOpen(4);
    const key = fastKey(query('api.example.com'), TYPE.A, false) as Buffer;
    const now = 1e13;
    const tmpl = encodeTemplate({ name: 'api.example.com', type: TYPE.A, class: 1 }, { id: 1, rcode: 0, ad: false, storedAt: now - (2 ** 32 + 5) * 1000, deadline: now + 1000, answers: [A('api.example.com', 0xc6120101n, 300)], authorities: [], ede: [] }) as Buffer;
    assert.equal(native().dnsTablePut(table, key, tmpl), true);
    const out = native().dnsFastAnswer(table, query('api.example.com'), now);
    assert.deepEqual(decodeMessage(out as Buffer).answers.map((a) => a.ttl), [0]);
  });

  it('a fast-path hit is recorded as an answer and counted as a cache hit; a hit on an entry that left is still recorded from its query', async () => {
    const t = setup();
    await t.guard.handle(query('api.example.com'), client);
    const e = t.guard.cache.peek([...t.guard.cache.keys()][0] as string);
    assert.ok(e?.fastId !== undefined);
    const before = t.events.length;
    t.guard.fastHit(e.fastId, query('api.example.com'), client);
    assert.equal(t.events.length, before + 1);
    assert.deepEqual([t.events.at(-1)?.verdict, t.events.at(-1)?.name, t.events.at(-1)?.answers, t.events.at(-1)?.rules], ['allowed', 'api.example.com', ['198.18.1.1'], ['api']]);
    assert.equal(t.guard.cache.stats.hits, 1);
    t.guard.dropFast();
    t.guard.fastHit(e.fastId, query('API.example.com'), client);
    assert.deepEqual([t.events.at(-1)?.verdict, t.events.at(-1)?.name], ['allowed', 'api.example.com']);
  });

  it('hostile packets: the parser answers only well-formed single-question queries, never reads past the datagram, and agrees with the key JS computes', async () => {
    const t = setup();
    await t.guard.handle(query('api.example.com', { edns: true }), client);
    await t.guard.handle(query('api.example.com'), client);
    const good = [query('api.example.com'), query('API.example.com', { edns: true }), query('api.example.com', { edns: true, options: [{ code: OPT_EDE, data: Buffer.alloc(2) }] })];
    for (const g of good) assert.ok(native().dnsFastAnswer(t.fast.table, g, t.clock.now), 'the unmutated query is answered');
    // Not answered here: a response, another opcode, two questions, an answer record, a compressed name, class CH, trailing bytes, a truncated OPT, EDNS version 1.
    const bad: Buffer[] = [];
    const mut = (f: (b: Buffer) => Buffer) => bad.push(f(Buffer.from(good[0] as Buffer)));
    mut((b) => ((b[2] = (b[2] as number) | 0x80), b));
    mut((b) => ((b[2] = (b[2] as number) | 0x10), b));
    mut((b) => (b.writeUInt16BE(2, 4), b));
    mut((b) => (b.writeUInt16BE(1, 6), b));
    mut((b) => Buffer.concat([b.subarray(0, 12), Buffer.from([0xc0, 0x0c]), b.subarray(b.length - 4)]));
    mut((b) => (b.writeUInt16BE(3, b.length - 2), b));
    mut((b) => Buffer.concat([b, Buffer.from([0])]));
    bad.push((good[1] as Buffer).subarray(0, (good[1] as Buffer).length - 3));
    const v1 = Buffer.from(good[1] as Buffer);
    v1[v1.length - 5] = 1;
    bad.push(v1);
    for (const b of bad) assert.equal(native().dnsFastAnswer(t.fast.table, b, t.clock.now), null, b.toString('hex'));
    // Random mutations and truncations: whatever the native side answers, JS decodes as a query with that key.
    let answered = 0;
    for (let i = 0; i < 20_000; i++) {
      const base = Buffer.from(good[i % good.length] as Buffer);
      const b = i % 5 === 0 ? base.subarray(0, i % base.length) : base;
      for (let k = 0; k < 1 + (i % 3); k++) if (b.length > 0) b[(i * 31 + k * 17) % b.length] = randomBytes(1)[0] as number;
      const out = native().dnsFastAnswer(t.fast.table, b, t.clock.now);
      if (!out) continue;
      answered++;
      const q = decodeMessage(b);
      const question = q.questions[0];
      assert.ok(question && q.questions.length === 1 && !q.flags.qr && q.flags.opcode === 0, b.toString('hex'));
      const key = fastKey(b, question.type, q.edns?.dnssecOk ?? false);
      assert.ok(key && t.guard.cache.peek([...t.guard.cache.keys()].find((k) => k.endsWith('api.example.com')) as string), 'an entry exists for it');
      const reply = decodeMessage(out);
      assert.equal(reply.id, q.id);
      assert.equal(reply.questions[0]?.name.toLowerCase(), question.name.toLowerCase());
    }
    assert.ok(answered > 0, 'some mutations (in the ID, flags bits JS ignores) are still answered');
  });

  it('on loopback: the thread answers hits from the table, and every hit it answered is reported, even those whose report arrives after the socket closed (a reload moving the listener)', async () => {
    const table = native().dnsTableOpen(16);
    const now = Date.now();
    const tmpl = encodeTemplate({ name: 'api.example.com', type: TYPE.A, class: 1 }, { id: 7, rcode: 0, ad: false, storedAt: now, deadline: now + 600_000, answers: [A('api.example.com', 0xc6120101n, 60)], authorities: [], ede: [] }) as Buffer;
    assert.equal(native().dnsTablePut(table, fastKey(query('api.example.com'), TYPE.A, false) as Buffer, tmpl), true);
    const reported: number[] = [];
    const forJs: Buffer[] = [];
    const sock = UdpBatchSocket.open('127.0.0.1', 0, (d) => forJs.push(Buffer.from(d)), { fast: { table, onHit: (id) => reported.push(id) } });
    // The client sends with sendmmsg from this thread (no turn of the event loop needed), in udpSend's framing.
    const loopback = Buffer.from([127, 0, 0, 1]);
    const clientFd = native().udpOpen(2, loopback, 0, 0, 0, 0);
    const frames = (qs: Buffer[]) =>
      Buffer.concat(
        qs.map((q) => {
          const h = Buffer.alloc(28);
          h.writeUInt16LE(q.length, 0);
          h.writeUInt16LE(sock.port, 2);
          h[4] = 4;
          loopback.copy(h, 8);
          return Buffer.concat([h, q]);
        }),
      );
    try {
      native().udpSend(clientFd, frames([query('other.example.com')]));
      const t0 = Date.now();
      while (forJs.length < 1 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
      assert.equal(forJs.length, 1, 'a name not in the table went to JS');
      const N = 50;
      assert.equal(native().udpSend(clientFd, frames(Array.from({ length: N }, (_, i) => query('api.example.com', { id: i })))), N);
      // Without a turn of the loop until the close: the reports cannot have been delivered before it.
      const t1 = Date.now();
      while ((sock.fast?.answered ?? 0) < N && Date.now() - t1 < 5000) {
        /* the thread answers meanwhile */
      }
      assert.equal(sock.fast?.answered, N, 'every hit answered by the thread');
      assert.equal(reported.length, 0);
      sock.close();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(reported.length, N, 'every answered hit reported, after the close');
      assert.ok(reported.every((id) => id === 7));
      assert.equal(sock.fast?.running, false);
    } finally {
      native().closeFd(clientFd);
    }
  });

  it('a template the native side would misread is refused, not stored', () => {
    const table = native().dnsTableOpen(4);
    const key = Buffer.from([0, 1, 0, 0]);
    assert.equal(native().dnsTablePut(table, key, Buffer.alloc(10)), false);
    const bad = Buffer.alloc(28 + 6 + 2 + 2 + 4);
    bad.writeUInt16LE(1, 26);
    bad.writeUInt16LE(2, 28); // TTL at offset 2 of a 4-byte body: runs past it
    bad.writeUInt16LE(0, 34);
    bad.writeUInt16LE(4, 36);
    assert.equal(native().dnsTablePut(table, key, bad), false);
    bad.writeUInt16LE(0, 28);
    assert.equal(native().dnsTablePut(table, key, bad), true);
    assert.equal(native().dnsTableSize(table), 1);
    assert.throws(() => native().dnsTablePut(table, Buffer.alloc(2), bad), /key/);
  });
});
