/** The DNS guard's decision path, with a fake upstream and the in-memory netfilter. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import { filterAnswer, type FilteredAnswer } from '../../src/dns/answer-filter.js';
import { canonicalName, decodeMessage, encodeMessage, RCODE, TYPE, type Message, type Question, type RR } from '../../src/dns/dns-message.js';
import { DnsGuard, EDE } from '../../src/dns/dns-guard.js';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import { LearnedState } from '../../src/dns/learned-state.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { SetWriter } from '../../src/dns/set-writer.js';
import { unsafeLocalUpstreams } from '../../src/dns/guard-component.js';
import type { ElementChange } from '../../src/netfilter/netfilter.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { formatAddr, parseAddr } from '../../src/net/ip.js';
import { compileFrom } from '../support/fixtures.js';

const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53]
  ttl_floor: 30
  ttl_grace: 10
rules:
  - name: api
    to: [api.example.com, "*.cdn.example.com", dns.google]
    ports: [443/tcp]
  - name: lan
    to: [10.1.0.0/16]
`;

const A = (name: string, addr: bigint, ttl = 60): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr } });
const CNAME = (name: string, target: string, ttl = 300): RR => ({ name, type: TYPE.CNAME, class: 1, ttl, data: { kind: 'name', name: target } });

function query(name: string, type: number = TYPE.A, opts: { edns?: boolean; id?: number } = {}): Buffer {
  const m: Message = {
    id: opts.id ?? 4242,
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
    questions: [{ name, type, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (opts.edns) m.edns = { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: false, options: [{ code: 8, data: Buffer.from('0001180011', 'hex') }] };
  return encodeMessage(m);
}

function reply(q: Question, answers: RR[], rcode = 0): Message {
  return {
    id: 1,
    flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode },
    questions: [q],
    answers,
    authorities: [],
    additionals: [],
  };
}

function setup(answers: (q: Question) => RR[] | Error = () => [], policyText = POLICY, encrypted: string[] = [], opts: { setCapacity?: number; local?: string[] } = {}) {
  const { policy, ruleset } = compileFrom(policyText);
  const nf = new FakeNetfilter(opts.setCapacity ? { dynamicSetSize: opts.setCapacity } : {});
  nf.replace(ruleset);
  const upstreamCalls: Question[] = [];
  const events: DnsQueryEvent[] = [];
  const learned = new LearnedState();
  const guard = new DnsGuard({
    policy,
    matcher: new DomainMatcher(policy, encrypted),
    rebinding: new RebindingFilter(policy, (opts.local ?? []).map((a) => parseAddr(a)).filter((a) => a !== null)),
    dynamicSets: new Set(ruleset.sets.filter((x) => x.dynamic).map((x) => x.name)),
    ...(opts.setCapacity ? { setCapacity: opts.setCapacity } : {}),
    upstream: {
      query: async (q) => {
        upstreamCalls.push(q);
        const a = answers(q);
        if (a instanceof Error) throw a;
        return reply(q, a);
      },
    },
    writer: new SetWriter(nf, TABLE_NAME),
    learned,
    onEvent: (e) => events.push(e),
  });
  const dyn = () => nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.filter((s) => s.dynamic).flatMap((s) => s.elements.map((e) => ({ set: s.name, e }))) ?? [];
  return { guard, nf, upstreamCalls, events, learned, dyn };
}

const client = { address: '198.18.0.2', port: 40000, transport: 'udp' as const };

/**
 * The chain walk as first written (sets and array copies, simple to read), kept as the model
 * the faster filterAnswer must agree with.
 */
function referenceFilter(qname: string, qtype: number, upstream: Message, rebinding: RebindingFilter, ttlMax: number): FilteredAnswer {
  const out: FilteredAnswer = { rcode: upstream.flags.rcode, answers: [], authorities: [], addresses: [], dropped: [], offChain: 0, names: [canonicalName(qname)], targets: [], overLimit: 0 };
  const cap = (rr: RR): RR => ({ ...rr, ttl: Math.min(rr.ttl, ttlMax) });
  out.authorities = upstream.authorities.filter((rr) => rr.type === TYPE.SOA && rr.class === 1).map(cap);
  if (upstream.flags.rcode !== RCODE.NOERROR) return out;

  const remaining = new Set(upstream.answers);
  let current = canonicalName(qname);
  const seen = new Set<string>([current]);
  for (let hop = 0; hop <= 16; hop++) {
    const here = [...remaining].filter((rr) => canonicalName(rr.name) === current && rr.class === 1);
    const cname = here.find((rr) => rr.type === TYPE.CNAME && rr.data.kind === 'name');
    for (const rr of here) {
      if (rr.type === TYPE.CNAME) continue;
      remaining.delete(rr);
      if (rr.type !== qtype && qtype !== TYPE.ANY) {
        out.offChain++;
        continue;
      }
      if (rr.data.kind === 'a' || rr.data.kind === 'aaaa') {
        const family: 4 | 6 = rr.data.kind === 'a' ? 4 : 6;
        const why = rebinding.check(family, rr.data.addr);
        if (why) {
          out.dropped.push({ address: formatAddr(family, rr.data.addr), why });
          continue;
        }
        out.addresses.push({ family, addr: rr.data.addr, ttl: Math.min(rr.ttl, ttlMax), owner: rr.name });
      }
      out.answers.push(cap(rr));
    }
    if (!cname || cname.data.kind !== 'name' || qtype === TYPE.CNAME) {
      if (cname && qtype === TYPE.CNAME) {
        remaining.delete(cname);
        out.answers.push(cap(cname));
      }
      break;
    }
    remaining.delete(cname);
    out.answers.push(cap(cname));
    const next = canonicalName(cname.data.name);
    if (seen.has(next)) break; // a CNAME loop: stop, keep what is there
    seen.add(next);
    out.names.push(next);
    current = next;
  }
  out.offChain += remaining.size;
  return out;
}


describe('unit: DNS guard decisions', () => {
  it('gradual enforcement: a user in an audit scope gets an unlisted name answered (would-block, nothing opened); others, a TCP query or an unknown sender are refused', async () => {
    const text = `${POLICY}  - name: trial
    action: deny
    to: [trial.example]
    mode: audit
  - name: hard
    action: deny
    to: [hard.example]
    mode: enforce
scopes:
  - name: nobody-trial
    mode: audit
    users: [65534]
`;
    const t = setup((q) => [A(q.name, 0xc6120b01n)], text);
    const ask = async (name: string, c: { address: string; port: number; transport: 'udp' | 'tcp'; uid?: number }) => decodeMessage((await t.guard.handle(query(name), c)) as Buffer).flags.rcode;
    assert.equal(await ask('unlisted.example', { ...client, uid: 65534 }), 0, 'uid 65534 is audited: answered');
    assert.equal(t.events.at(-1)?.verdict, 'would-block');
    assert.deepEqual(t.dyn(), [], 'an unlisted name opens nothing: the kernel judges the connection by its scope');
    assert.equal(await ask('unlisted.example', { ...client, uid: 1001 }), RCODE.NXDOMAIN, 'another user is enforced');
    assert.equal(await ask('unlisted.example', client), RCODE.NXDOMAIN, 'no uid (the guard cannot tell who asked): enforced, fail closed');
    assert.equal(await ask('unlisted.example', { ...client, transport: 'tcp', uid: 65534 }), RCODE.NXDOMAIN, 'TCP carries no kernel uid: enforced');
    assert.equal(await ask('hard.example', { ...client, uid: 65534 }), RCODE.NXDOMAIN, "a deny rule's own enforce wins over the scope");
    assert.equal(await ask('trial.example', { ...client, uid: 1001 }), 0, "a deny rule in audit by its own mode: answered for anyone, recorded");
    assert.equal(t.events.at(-1)?.verdict, 'would-block');
    assert.deepEqual([...new Set(t.dyn().map((x) => x.set))], ['r_trial_d4'], 'an audited answer teaches only the deny rule its name is in');
    assert.equal(await ask('api.example.com', { ...client, uid: 1001 }), 0, 'allowed names are unchanged');
    assert.equal(t.events.at(-1)?.verdict, 'allowed');
  });

  it('gradual enforcement: a query the kernel marked as from a service scope in audit is answered; a user scope\'s index, an unknown index or TCP are enforced', async () => {
    const text = `${POLICY}scopes:
  - name: nobody-trial
    mode: audit
    users: [65534]
  - name: svc-trial
    mode: audit
    services: [a.service]
`;
    const t = setup((q) => [A(q.name, 0xc6120b01n)], text);
    const ask = async (name: string, c: { address: string; port: number; transport: 'udp' | 'tcp'; uid?: number; scope?: number }) => decodeMessage((await t.guard.handle(query(name), c)) as Buffer).flags.rcode;
    assert.equal(await ask('unlisted.example', { ...client, scope: 1 }), 0, 'the service scope (index 1) is audited: answered');
    assert.equal(t.events.at(-1)?.verdict, 'would-block');
    assert.deepEqual(t.dyn(), [], 'an unlisted name opens nothing: the kernel judges the connection by its scope');
    assert.equal(await ask('unlisted.example', { ...client, scope: 0 }), RCODE.NXDOMAIN, 'index 0 is a user scope: its members are told by uid, never by a scope mark');
    assert.equal(await ask('unlisted.example', { ...client, scope: 7 }), RCODE.NXDOMAIN, 'no such scope (a mark from another policy): enforced');
    assert.equal(await ask('unlisted.example', { ...client, transport: 'tcp', scope: 1 }), RCODE.NXDOMAIN, 'TCP carries no mark: enforced');
    assert.equal(await ask('api.example.com', { ...client, scope: 1 }), 0, 'allowed names are unchanged');
    assert.equal(t.events.at(-1)?.verdict, 'allowed');
  });

  it('a name no rule allows gets NXDOMAIN with a Blocked EDE, and is never forwarded', async () => {
    const t = setup();
    const out = decodeMessage((await t.guard.handle(query('secret-data.evil.example', TYPE.A, { edns: true }), client)) as Buffer);
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.equal(out.id, 4242);
    const ede = out.edns?.options.find((o) => o.code === 15);
    assert.equal(ede?.data.readUInt16BE(0), EDE.BLOCKED);
    assert.match(ede?.data.subarray(2).toString() ?? '', /not allowed by the policy/);
    assert.equal(t.upstreamCalls.length, 0, 'not forwarded');
    assert.equal(t.events[0]?.verdict, 'blocked');
  });

  it('an allowed name is forwarded, and its addresses are in the rule set before the answer is returned', async () => {
    const t = setup((q) => [A(q.name, 0xc6120a01n, 20)]);
    const pending = t.guard.handle(query('API.Example.COM', TYPE.A, { edns: true }), client);
    const out = decodeMessage((await pending) as Buffer);
    assert.equal(out.flags.rcode, 0);
    assert.deepEqual(out.answers.map((a) => a.data), [{ kind: 'a', addr: 0xc6120a01n }]);
    const inSet = t.dyn().filter((x) => x.set === 'r_api_d4');
    assert.equal(inSet.length, 1);
    const e = inSet[0]?.e;
    assert.ok(e?.t === 'addr' && e.timeoutMs === (30 + 10) * 1000, 'timeout is max(TTL 20, floor 30) + grace 10');
    assert.deepEqual(t.upstreamCalls, [{ name: 'API.Example.COM', type: TYPE.A, class: 1 }], 'only the checked question goes upstream');
  });

  it('ttl_max is a cap on the TTL clients are given; the kernel keeps an address ttl_grace longer (cap plus grace)', async () => {
    const text = POLICY.replace('  ttl_grace: 10', '  ttl_grace: 10\n  ttl_max: 3600');
    for (const [ttl, cached, life] of [
      [999_999, 3600, 3600 + 10], // above the cap: the client caches 3600 s, the address stays open 3610 s
      [100, 100, 100 + 10], // between floor and cap: TTL + grace
      [5, 5, 30 + 10], // below the floor: the client keeps its TTL, the address stays open floor + grace
    ] as const) {
      const t = setup((q) => [CNAME(q.name, 'edge.cdn.example.com', ttl), A('edge.cdn.example.com', 0xc6120a07n, ttl)], text);
      const out = decodeMessage((await t.guard.handle(query('api.example.com', TYPE.A), client)) as Buffer);
      assert.deepEqual(out.answers.map((a) => a.ttl), [cached, cached], `TTL ${ttl}: what the client may cache`);
      const e = t.dyn().find((x) => x.set === 'r_api_d4')?.e;
      assert.ok(e?.t === 'addr' && e.timeoutMs === life * 1000, `TTL ${ttl}: the set element lives ${life} s (got ${e?.t === 'addr' ? e.timeoutMs : '-'} ms)`);
      assert.ok(life <= 3600 + 10, 'never more than ttl_max + ttl_grace');
    }
  });

  it('wildcards match on label boundaries only', async () => {
    const t = setup((q) => [A(q.name, 0xc6120a02n)]);
    for (const [name, rcode] of [
      ['a.cdn.example.com', 0],
      ['a.b.cdn.example.com', 0],
      ['cdn.example.com', RCODE.NXDOMAIN],
      ['evil-cdn.example.com', RCODE.NXDOMAIN],
      ['cdn.example.com.evil', RCODE.NXDOMAIN],
    ] as const) {
      const out = decodeMessage((await t.guard.handle(query(name), client)) as Buffer);
      assert.equal(out.flags.rcode, rcode, name);
    }
  });

  it('a label holding a dot (or any escaped byte) never matches: evil\\.cdn.example.com is not under cdn.example.com', async () => {
    const t = setup((q) => [A(q.name, 0xc6120a02n)]);
    const wire = query('evil\\.cdn.example.com');
    // On the wire: three labels, the first "evil.cdn" (8 bytes, dot included), then example, com.
    assert.equal(wire[12], 8);
    assert.equal(wire.subarray(13, 21).toString('latin1'), 'evil.cdn');
    assert.equal(wire[21], 7);
    for (const w of [wire, query('a.cdn\\.example.com'), query('a.b\\046cdn.example.com'), query('api\\.example.com')]) {
      const out = decodeMessage((await t.guard.handle(w, client)) as Buffer);
      assert.equal(out.flags.rcode, RCODE.NXDOMAIN, decodeMessage(w).questions[0]?.name);
    }
    assert.equal(t.upstreamCalls.length, 0, 'none forwarded');
    // The matcher itself, under the guard: presentation form with escapes matches nothing.
    const { policy } = compileFrom(POLICY);
    const m = new DomainMatcher(policy);
    assert.equal(m.match('evil\\.cdn.example.com').length, 0);
    assert.equal(m.exactly('api\\.example.com').length, 0);
    // Control: the same labels without the escape match.
    assert.equal(m.match('evil.cdn.example.com').length, 1);
    assert.equal(m.exactly('api.example.com').length, 1);
  });

  it('a CNAME chain is followed; records off the chain are left out and open nothing', async () => {
    const t = setup(() => [
      CNAME('api.example.com', 'edge.cdn.net'),
      CNAME('edge.cdn.net', 'edge2.cdn.net'),
      A('edge2.cdn.net', 0xc6120b01n),
      A('unrelated.example.org', 0xc6120b99n),
    ]);
    const out = decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer);
    assert.deepEqual(out.answers.map((a) => a.type), [TYPE.CNAME, TYPE.CNAME, TYPE.A]);
    assert.deepEqual(t.dyn().map((x) => (x.e.t === 'addr' ? x.e.start : 0n)), [0xc6120b01n]);
  });

  it('answers pointing into private or special ranges are dropped (rebinding), unless a rule lists the range', async () => {
    const t = setup(() => [A('api.example.com', 0x0a000001n), A('api.example.com', 0x7f000001n), A('api.example.com', 0xa9fea9fen), A('api.example.com', 0x0a010203n), A('api.example.com', 0xc6120c01n)]);
    const out = decodeMessage((await t.guard.handle(query('api.example.com', TYPE.A, { edns: true }), client)) as Buffer);
    const addrs = out.answers.map((a) => (a.data.kind === 'a' ? a.data.addr : 0n));
    assert.deepEqual(addrs, [0x0a010203n, 0xc6120c01n], '10.1.2.3 is inside the lan rule; 10.0.0.1, 127.0.0.1, 169.254.169.254 are dropped');
    assert.equal(out.edns?.options.find((o) => o.code === 15)?.data.readUInt16BE(0), EDE.FILTERED);
    assert.equal(t.events[0]?.dropped.length, 3);
  });

  it('a shorter TTL never shortens an address another answer keeps open longer', async () => {
    let ttl = 3600;
    const t = setup(() => [A('api.example.com', 0xc6120d01n, ttl)]);
    await t.guard.handle(query('api.example.com'), client);
    const writes = t.nf.calls.addElements;
    ttl = 5;
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(t.nf.calls.addElements, writes, 'no kernel write for a shorter lifetime');
    const e = t.dyn()[0]?.e;
    assert.ok(e?.t === 'addr' && e.timeoutMs === (3600 + 10) * 1000);
  });

  it('two answers in one turn open one address for different TTLs: one add, with the longer (the kernel keeps the last add\'s)', async () => {
    const t = setup((q) => [A(q.name, 0xc6120d02n, q.name === 'api.example.com' ? 3000 : 5)]);
    const seen: ElementChange[][] = [];
    const add = t.nf.addElements.bind(t.nf);
    t.nf.addElements = (table, changes) => {
      seen.push(structuredClone(changes));
      add(table, changes);
    };
    await Promise.all([t.guard.handle(query('api.example.com'), client), t.guard.handle(query('x.cdn.example.com'), client)]);
    assert.equal(seen.length, 1, 'one transaction');
    assert.equal(seen[0]?.flatMap((c) => c.elems).length, 1, 'one add for the element');
    const e = t.dyn()[0]?.e;
    assert.ok(e?.t === 'addr' && e.timeoutMs === (3000 + 10) * 1000, `kernel timeout ${JSON.stringify(e, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
  });

  it('a longer TTL for an address already open is a refresh, carrying when the kernel would otherwise close it', async () => {
    let ttl = 60;
    // Both answers from upstream (the answer cache would hand out the first again: dns-cache.test.ts).
    const t = setup(() => [A('api.example.com', 0xc6120d03n, ttl)], POLICY.replace('  ttl_grace: 10\n', '  ttl_grace: 10\n  cache_size: 0\n'));
    const seen: ElementChange[][] = [];
    const add = t.nf.addElements.bind(t.nf);
    t.nf.addElements = (table, changes) => {
      seen.push(structuredClone(changes));
      add(table, changes);
    };
    const before = Date.now();
    await t.guard.handle(query('api.example.com'), client);
    assert.equal(seen[0]?.[0]?.refresh, undefined, 'the first answer adds');
    ttl = 600;
    await t.guard.handle(query('api.example.com'), client);
    const r = seen[1]?.[0]?.refresh?.[0];
    assert.ok(r, 'the second extends');
    assert.ok(r.elem.t === 'addr' && r.elem.timeoutMs === (600 + 10) * 1000);
    assert.ok(r.expiresAt >= before + (60 + 10) * 1000 && r.expiresAt <= Date.now() + (60 + 10) * 1000, 'held until the first answer\'s end');
    assert.deepEqual(seen[1]?.[0]?.elems, []);
  });

  it('fails closed: a kernel update that fails answers SERVFAIL, and an unreachable upstream too', async () => {
    const t = setup((q) => [A(q.name, 0xc6120e01n)]);
    t.nf.remove(TABLE_NAME);
    const out = decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer);
    assert.equal(out.flags.rcode, RCODE.SERVFAIL);
    assert.equal(out.answers.length, 0, 'no address is handed out that the firewall did not open');
    assert.equal(t.guard.stats.kernelFailures, 1);
    const u = setup(() => new Error('timed out'));
    assert.equal(decodeMessage((await u.guard.handle(query('api.example.com'), client)) as Buffer).flags.rcode, RCODE.SERVFAIL);
  });

  it('encrypted DNS endpoints are refused unless a rule names them exactly', async () => {
    const t = setup((q) => [A(q.name, 0xc6120f01n)], POLICY, ['dns.google', 'cloudflare-dns.com']);
    assert.equal(decodeMessage((await t.guard.handle(query('dns.google'), client)) as Buffer).flags.rcode, 0, 'named exactly by rule api');
    const wild = setup((q) => [A(q.name, 0xc6120f01n)], `mode: enforce\nrules:\n  - name: all\n    to: ["*.com"]\n`, ['cloudflare-dns.com']);
    const out = decodeMessage((await wild.guard.handle(query('cloudflare-dns.com'), client)) as Buffer);
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN, 'a wildcard is not an explicit allow');
  });

  it('refuses what it does not serve: zone transfers, other classes, other opcodes, several questions', async () => {
    const t = setup((q) => [A(q.name, 1n)]);
    assert.equal(decodeMessage((await t.guard.handle(query('api.example.com', 252), client)) as Buffer).flags.rcode, RCODE.REFUSED);
    const chaos = decodeMessage(query('version.bind', TYPE.TXT));
    chaos.questions[0] = { name: 'version.bind', type: TYPE.TXT, class: 3 };
    assert.equal(decodeMessage((await t.guard.handle(encodeMessage(chaos), client)) as Buffer).flags.rcode, RCODE.REFUSED);
    const notify = decodeMessage(query('api.example.com'));
    notify.flags.opcode = 4;
    assert.equal(decodeMessage((await t.guard.handle(encodeMessage(notify), client)) as Buffer).flags.rcode, RCODE.NOTIMP);
    const two = decodeMessage(query('api.example.com'));
    two.questions.push({ name: 'evil.example', type: 1, class: 1 });
    assert.equal(decodeMessage((await t.guard.handle(encodeMessage(two), client)) as Buffer).flags.rcode, RCODE.FORMERR);
    assert.equal(t.upstreamCalls.length, 0);
  });

  it('answers malformed queries with FORMERR (or not at all), and never answers a response', async () => {
    const t = setup();
    const bad = Buffer.concat([query('api.example.com').subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    const out = decodeMessage((await t.guard.handle(bad, client)) as Buffer);
    assert.equal(out.flags.rcode, RCODE.FORMERR);
    assert.equal(out.id, 4242);
    assert.equal(await t.guard.handle(Buffer.from([1, 2, 3]), client), null);
    const resp = decodeMessage(query('api.example.com'));
    resp.flags.qr = true;
    assert.equal(await t.guard.handle(encodeMessage(resp), client), null, 'no reflection');
  });

  it('an answer too big for the client over UDP is truncated (TC), and complete over TCP', async () => {
    const many = Array.from({ length: 200 }, (_, i) => A('api.example.com', 0xc6121000n + BigInt(i)));
    const t = setup(() => many, POLICY.replace('  ttl_grace: 10', '  ttl_grace: 10\n  max_addresses_per_answer: 200\n  max_addresses_per_name: 200'));
    const udp = decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer);
    assert.equal(udp.flags.tc, true);
    assert.equal(udp.answers.length, 0);
    const tcp = decodeMessage((await t.guard.handle(query('api.example.com'), { ...client, transport: 'tcp' })) as Buffer);
    assert.equal(tcp.flags.tc, false);
    assert.equal(tcp.answers.length, 200);
    assert.equal(t.dyn().length, 200, 'every address opened, even the one the UDP client did not get');
  });

  it('a domain a deny rule names is never forwarded, even when an allow rule also matches it', async () => {
    const t = setup((q) => [A(q.name, 0xc6121200n)], `mode: enforce\nrules:\n  - name: web\n    to: ["*.example.com"]\n    ports: [443/tcp]\n  - name: no-tracker\n    action: deny\n    to: ["*.tracker.example.com"]\n`);
    const out = decodeMessage((await t.guard.handle(query('c2VjcmV0.x.tracker.example.com'), client)) as Buffer);
    assert.equal(out.flags.rcode, RCODE.NXDOMAIN);
    assert.equal(t.upstreamCalls.length, 0, 'the denied domain never sees the query');
    assert.match(t.events[0]?.detail ?? '', /denied by rule no-tracker/);
    assert.equal(decodeMessage((await t.guard.handle(query('www.example.com'), client)) as Buffer).flags.rcode, 0);
  });

  it('a narrower deny (some ports) lets the name resolve and puts its addresses in the deny set too', async () => {
    const t = setup((q) => [A(q.name, 0xc6121300n)], `mode: enforce\nrules:\n  - name: web\n    to: [api.example.com]\n  - name: no-plain-http\n    action: deny\n    to: [api.example.com]\n    ports: [80/tcp]\n`);
    assert.equal(decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer).flags.rcode, 0);
    assert.deepEqual(t.dyn().map((x) => x.set).sort(), ['r_no-plain-http_d4', 'r_web_d4']);
  });

  it('blocklist mode (default: allow) forwards names no rule matches and refuses denied ones', async () => {
    const t = setup((q) => [A(q.name, 0xc6121400n)], `mode: enforce\ndefault: allow\nrules:\n  - name: bad\n    action: deny\n    to: ["*.bad.example"]\n`);
    assert.equal(decodeMessage((await t.guard.handle(query('anything.example.org'), client)) as Buffer).flags.rcode, 0);
    assert.equal(decodeMessage((await t.guard.handle(query('x.bad.example'), client)) as Buffer).flags.rcode, RCODE.NXDOMAIN);
  });

  it('a rule covering a whole family has no DNS set for it, and that is not an error', async () => {
    const t = setup((q) => [A(q.name, 0xc6121500n)], `mode: enforce\nrules:\n  - name: web\n    to: [any, api.example.com]\n`);
    assert.equal(decodeMessage((await t.guard.handle(query('api.example.com'), client)) as Buffer).flags.rcode, 0);
  });

  it('one full or missing set fails only the queries that write to it, not others in the same batch', async () => {
    const t = setup((q) => [A(q.name, q.name.startsWith('api') ? 0xc6121600n : 0xc6121601n)], `mode: enforce\nrules:\n  - name: one\n    to: [api.example.com]\n  - name: two\n    to: [www.example.com]\n`);
    // Break rule one's set the way a full set breaks: the kernel refuses the write.
    const live = t.nf.read(TABLE_NAME, { elements: 'all' });
    assert.ok(live);
    t.nf.replace({ ...live.ruleset, sets: live.ruleset.sets.filter((x) => x.name !== 'r_one_d4'), chains: live.ruleset.chains.map((c) => ({ ...c, rules: c.rules.filter((r) => !r.stmts.some((st) => st.k === 'lookup' && st.set === 'r_one_d4')) })) });
    const [a, b] = await Promise.all([t.guard.handle(query('api.example.com'), client), t.guard.handle(query('www.example.com'), client)]);
    assert.equal(decodeMessage(a as Buffer).flags.rcode, RCODE.SERVFAIL);
    assert.equal(decodeMessage(b as Buffer).flags.rcode, 0, 'the other query of the batch is answered');
  });

  it('blocked_answer: refused answers REFUSED', async () => {
    const t = setup(() => [], `mode: enforce\ndns:\n  blocked_answer: refused\nrules:\n  - name: a\n    to: [a.example.com]\n`);
    assert.equal(decodeMessage((await t.guard.handle(query('b.example.com'), client)) as Buffer).flags.rcode, RCODE.REFUSED);
  });

  it('property: any packet gets null or a well-formed reply with the same id, never an exception', async () => {
    const t = setup((q) => [A(q.name, 0xc6121100n)]);
    const valid = query('api.example.com', TYPE.A, { edns: true });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((edits) => {
            const b = Buffer.from(valid);
            for (const [at, v] of edits) b[at] = v;
            return b;
          }),
        ),
        async (packet) => {
          const out = await t.guard.handle(packet, client);
          if (out === null) return;
          const m = decodeMessage(out);
          assert.equal(m.flags.qr, true);
          assert.equal(m.id, packet.readUInt16BE(0));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('unit: answer filter and learned state', () => {
  const { policy } = compileFrom(POLICY);
  const rebinding = new RebindingFilter(policy);

  it('a CNAME loop ends the chain without hanging', () => {
    const f = filterAnswer('a.example.com', TYPE.A, reply({ name: 'a.example.com', type: 1, class: 1 }, [CNAME('a.example.com', 'b.example.com'), CNAME('b.example.com', 'a.example.com')]), rebinding, { ttlMax: 86400 });
    assert.equal(f.answers.length, 2);
    assert.equal(f.addresses.length, 0);
  });

  it('TTLs are capped at ttl_max, and a negative answer keeps only its SOA', () => {
    const f = filterAnswer('api.example.com', TYPE.A, reply({ name: 'api.example.com', type: 1, class: 1 }, [A('api.example.com', 0xc6120001n, 999_999)]), rebinding, { ttlMax: 3600 });
    assert.equal(f.answers[0]?.ttl, 3600);
    const neg = reply({ name: 'nx.example.com', type: 1, class: 1 }, [], RCODE.NXDOMAIN);
    neg.authorities = [
      { name: 'example.com', type: TYPE.SOA, class: 1, ttl: 60, data: { kind: 'soa', mname: 'ns', rname: 'h', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 1 } },
      { name: 'example.com', type: TYPE.NS, class: 1, ttl: 60, data: { kind: 'name', name: 'ns.evil.example' } },
    ];
    const fn = filterAnswer('nx.example.com', TYPE.A, neg, rebinding, { ttlMax: 3600 });
    assert.deepEqual(fn.authorities.map((r) => r.type), [TYPE.SOA]);
  });

  it('property: filterAnswer agrees with the reference chain walk on arbitrary answers', () => {
    const rebinding = new RebindingFilter(compileFrom(POLICY).policy);
    const names = ['q.example.com', 'Q.Example.COM', 'b.example.com', 'c.example.com', 'x.evil.example'];
    const rr = fc.oneof(
      fc.record({ n: fc.constantFrom(...names), a: fc.constantFrom(0xc6120a01n, 0x0a000001n, 0x7f000001n), ttl: fc.integer({ min: 0, max: 200_000 }), cls: fc.constantFrom(1, 3) }).map((x): RR => ({ name: x.n, type: TYPE.A, class: x.cls, ttl: x.ttl, data: { kind: 'a', addr: x.a } })),
      fc.record({ n: fc.constantFrom(...names), t: fc.constantFrom(...names), ttl: fc.integer({ min: 0, max: 200_000 }) }).map((x): RR => CNAME(x.n, x.t, x.ttl)),
      fc.record({ n: fc.constantFrom(...names), a: fc.constantFrom(0x20010db8000000000000000000000001n, 0xfe800000000000000000000000000001n) }).map((x): RR => ({ name: x.n, type: TYPE.AAAA, class: 1, ttl: 60, data: { kind: 'aaaa', addr: x.a } })),
    );
    fc.assert(
      fc.property(fc.array(rr, { maxLength: 12 }), fc.constantFrom(TYPE.A, TYPE.AAAA, TYPE.CNAME, TYPE.ANY), fc.constantFrom(0, 3), fc.constantFrom(3600, 86400), (answers, qtype, rcode, ttlMax) => {
        const m = reply({ name: 'q.example.com', type: qtype, class: 1 }, answers, rcode);
        assert.deepEqual(filterAnswer('q.example.com', qtype, m, rebinding, { ttlMax }), referenceFilter('q.example.com', qtype, m, rebinding, ttlMax));
      }),
      { numRuns: 2000 },
    );
  });

  const dir = mkdtempSync(join(tmpdir(), 'sluice-learned-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('learned state survives a save and load, and a corrupt file gives an empty state', () => {
    const s = new LearnedState();
    const now = Date.now();
    s.committed('r_api_d4', 4, 0xc6120a01n, now + 60_000);
    s.committed('r_api_d6', 6, 0x20010db8000000000000000000000001n, now + 60_000);
    s.committed('r_api_d4', 4, 0xc6120a02n, now - 1);
    s.nameAddress(4, 0xc6120a01n, 'api.example.com', now + 60_000);
    const file = join(dir, 'learned.json');
    s.save(file, now);
    const back = LearnedState.load(file, now);
    assert.equal(back.list(now).length, 2, 'the expired entry is not kept');
    assert.deepEqual(back.namesFor(4, 0xc6120a01n, now), ['api.example.com']);
    writeFileSync(file, '{ "entries": [ {"set": "x; rm -rf /", "family": 4, "addr": "1.2.3.4", "expiresAt": 9e15} ] }');
    assert.equal(LearnedState.load(file, now).list(now).length, 0, 'entries with impossible set names are ignored');
    writeFileSync(file, 'garbage');
    assert.equal(LearnedState.load(file, now).size, 0);
  });

  it('state saved in audit mode never comes back in enforce mode (nor the reverse); a set whose rule changed meaning loses its entries; lifetimes are capped', () => {
    const s = new LearnedState();
    const now = Date.now();
    s.committed('r_api_d4', 4, 0xc6120a01n, now + 3_600_000);
    s.committed('r_web_d4', 4, 0xc6120a02n, now + 60_000);
    const comments = { r_api_d4: 'allow api', r_web_d4: 'allow web' };
    const file = join(dir, 'learned-mode.json');
    s.save(file, now, { mode: 'audit', setComments: comments });
    const expect = (mode: string, setComments = comments, maxLifeMs = 86_400_000) => LearnedState.load(file, now, { mode, setComments, maxLifeMs }).list(now);
    // Control: the same mode and meaning bring everything back.
    assert.equal(expect('audit').length, 2);
    assert.equal(expect('enforce').length, 0, 'audit learned by watching traffic it did not control');
    s.save(file, now, { mode: 'enforce', setComments: comments });
    assert.equal(expect('audit').length, 0);
    assert.equal(expect('enforce').length, 2);
    const changed = expect('enforce', { ...comments, r_web_d4: 'allow web-v2' });
    assert.deepEqual(changed.map((e) => e.set), ['r_api_d4'], 'only the set whose rule still means the same');
    const capped = expect('enforce', comments, 120_000);
    assert.deepEqual(capped.map((e) => e.expiresAt).sort(), [now + 60_000, now + 120_000], 'no lifetime beyond the policy`s');
  });

  it('the background save writes what the synchronous one writes, in slices, and keeps learning meanwhile', async () => {
    const s = new LearnedState();
    const now = Date.now();
    for (let i = 0; i < 50; i++) {
      s.committed('r_api_d4', 4, 0xc6120a00n + BigInt(i), now + (i % 5 === 0 ? -1 : 60_000 + i));
      s.nameAddress(4, 0xc6120a00n + BigInt(i), `h${i}.example.com`, now + (i % 7 === 0 ? -1 : 60_000));
    }
    const ctx = { mode: 'enforce', setComments: { r_api_d4: 'allow api' } };
    const syncFile = join(dir, 'sync.json');
    const asyncFile = join(dir, 'async.json');
    s.save(syncFile, now, ctx);
    const pending = s.saveAsync(asyncFile, now, ctx, 0);
    s.committed('r_api_d4', 4, 0xc6120b01n, now + 90_000); // learned while the save yields
    await pending;
    assert.equal(s.dirty, true, 'what was learned during the save still needs saving');
    const expect = { mode: 'enforce', setComments: ctx.setComments, maxLifeMs: 3_600_000 };
    const a = LearnedState.load(syncFile, now, expect);
    const b = LearnedState.load(asyncFile, now, expect);
    const view = (x: LearnedState) => x.list(now).map((e) => [e.set, e.addr, e.expiresAt, x.namesFor(e.family, e.addr, now)]);
    assert.equal(a.list(now).length, 40);
    assert.deepEqual(view(b).filter((v) => v[1] !== 0xc6120b01n), view(a));
  });
});

describe('unit: upstreams the guard can trust', () => {
  const up = (text: string) => {
    const p = parseAddr(text);
    assert.ok(p);
    return { family: p.family, start: p.value, end: p.value };
  };
  const hostAddrs = [parseAddr('198.18.0.2'), parseAddr('2001:db8::2')].filter((x) => x !== null);
  const upstreams = ['127.0.0.53', '::1', '198.18.0.2', '2001:db8::2', '198.18.9.9', '2001:db8::9'].map(up);

  it('with port 53 unprivileged, an upstream on loopback or on this host is refused, one elsewhere is not', () => {
    const bad = unsafeLocalUpstreams(upstreams, 0, hostAddrs).map((u) => formatAddr(u.family, u.start));
    assert.deepEqual(bad, ['127.0.0.53', '::1', '198.18.0.2', '2001:db8::2']);
    assert.equal(unsafeLocalUpstreams(upstreams, 53, hostAddrs).length, 4, 'port 53 itself unprivileged');
  });

  it('with port 53 privileged (the default 1024, or anything above 53), every upstream is fine', () => {
    assert.deepEqual(unsafeLocalUpstreams(upstreams, 1024, hostAddrs), []);
    assert.deepEqual(unsafeLocalUpstreams(upstreams, 54, hostAddrs), []);
  });
});
