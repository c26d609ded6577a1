/**
 * Audit mode's DNS over TCP: segments the kernel copied are reassembled per
 * flow by sequence number (RFC 7766, RFC 1035 section 4.2.2 length prefix),
 * and a reply teaches only when it answers a query sent earlier in the same
 * flow to a trusted resolver. Hostile segments: bad lengths, gaps, floods.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeMessage, TYPE, type Message } from '../../src/dns/dns-message.js';
import { PassiveObserver } from '../../src/dns/passive-observer.js';
import { TcpDnsStreams, TCP_STREAM_LIMITS } from '../../src/dns/tcp-dns-streams.js';
import type { PacketInfo } from '../../src/net/packet.js';
import { parseAddr } from '../../src/net/ip.js';
import { aMessage } from '../support/dns-records.js';
import { parsePacket } from '../../src/net/packet.js';

const ip = (t: string) => parseAddr(t)?.value ?? 0n;
const RESOLVER = '198.18.0.53';
const HOST = '198.18.0.2';
const PORT = 40100;
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;
const resolvers = [{ family: 4 as const, start: ip(RESOLVER), end: ip(RESOLVER) }];

const msg = aMessage;

/** A message with its two-byte length prefix, as on a TCP stream. */
function framed(m: Message): Buffer {
  const wire = encodeMessage(m);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(wire.length);
  return Buffer.concat([len, wire]);
}

/** A TCP segment as NFLOG hands it over: headers already parsed, payload at offset 0, the IP length its size. */
function seg(dir: 'query' | 'reply', seq: number, flags: number, data: Buffer = Buffer.alloc(0), opts: { port?: number; server?: string; length?: number } = {}): [PacketInfo, Buffer] {
  const server = ip(opts.server ?? RESOLVER);
  const port = opts.port ?? PORT;
  const [src, dst, sport, dport] = dir === 'query' ? [ip(HOST), server, port, 53] : [server, ip(HOST), 53, port];
  return [{ family: 4, proto: 6, src, dst, sport, dport, payloadOffset: 0, length: opts.length ?? data.length, tcpSeq: seq >>> 0, tcpFlags: flags }, data];
}

/** A handshake: the client's SYN (ISN c) and the server's SYN+ACK (ISN s). */
function handshake(o: PassiveObserver, c: number, s: number, now = 1000, port = PORT): void {
  o.observeTcp(...seg('query', c, SYN, undefined, { port }), now);
  o.observeTcp(...seg('reply', s, SYN | ACK, undefined, { port }), now);
}

/** Splits a buffer at the given cut points into [offset, bytes] pieces. */
function cut(b: Buffer, at: number[]): [number, Buffer][] {
  const points = [...new Set(at.filter((x) => x > 0 && x < b.length))].sort((x, y) => x - y);
  const out: [number, Buffer][] = [];
  let from = 0;
  for (const p of [...points, b.length]) {
    out.push([from, b.subarray(from, p)]);
    from = p;
  }
  return out;
}

const answersOf = (ms: Message[]) => ms.flatMap((m) => m.answers.map((a) => (a.data.kind === 'a' ? a.data.addr : -1n)));

describe('unit: audit mode reassembles DNS over TCP', () => {
  it('a query and its reply split across segments, byte by byte, are matched and learned from', () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 1000, 5000);
    const q = framed(msg(false, 21, 'api.example.com'));
    for (let i = 0; i < q.length; i++) assert.deepEqual(o.observeTcp(...seg('query', 1001 + i, ACK, q.subarray(i, i + 1)), 1001), []);
    const r = framed(msg(true, 21, 'api.example.com', '198.18.1.10'));
    const got: Message[] = [];
    for (const [off, piece] of cut(r, [1, 2, 7, 30])) got.push(...o.observeTcp(...seg('reply', 5001 + off, ACK, piece), 1002));
    assert.deepEqual(answersOf(got), [ip('198.18.1.10')]);
    assert.equal(o.stats.matched, 1);
  });

  it('several messages in one segment (pipelined queries, RFC 7766 section 6.2.1.1), answered out of order', () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 10, 20);
    const qs = Buffer.concat([framed(msg(false, 1, 'a.example.com')), framed(msg(false, 2, 'b.example.com'))]);
    o.observeTcp(...seg('query', 11, ACK | 0x08, qs), 1001);
    const rs = Buffer.concat([framed(msg(true, 2, 'b.example.com', '198.18.1.2')), framed(msg(true, 1, 'a.example.com', '198.18.1.1'))]);
    assert.deepEqual(answersOf(o.observeTcp(...seg('reply', 21, ACK, rs), 1002)), [ip('198.18.1.2'), ip('198.18.1.1')]);
  });

  it('segments arriving out of order are placed by sequence number; a retransmission with other bytes changes nothing', () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 100, 200);
    const q = framed(msg(false, 3, 'api.example.com'));
    o.observeTcp(...seg('query', 101, ACK, q), 1001);
    const r = framed(msg(true, 3, 'api.example.com', '198.18.1.10'));
    const forged = framed(msg(true, 3, 'api.example.com', '198.18.2.22'));
    assert.equal(r.length, forged.length);
    const [a, b, c] = cut(r, [10, 25]) as [[number, Buffer], [number, Buffer], [number, Buffer]];
    assert.deepEqual(o.observeTcp(...seg('reply', 201 + c[0], ACK, c[1]), 1002), [], 'held until the gap fills');
    assert.deepEqual(o.observeTcp(...seg('reply', 201 + a[0], ACK, a[1]), 1002), []);
    // A "retransmission" of the first part with different bytes, overlapping what was delivered: the first copy wins.
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, forged.subarray(0, 20)), 1002), []);
    const got = o.observeTcp(...seg('reply', 201 + b[0], ACK, b[1]), 1002);
    assert.deepEqual(answersOf(got), [ip('198.18.1.10')]);
    // A duplicate of the whole reply, now with the forged answer: already delivered, and the query was answered once.
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, forged), 1003), []);
    assert.equal(o.stats.matched, 1);
  });

  it('a query carried on the SYN (TCP Fast Open) is read from the byte after the SYN', () => {
    const o = new PassiveObserver(resolvers);
    o.observeTcp(...seg('query', 500, SYN, framed(msg(false, 31, 'api.example.com'))), 1000);
    o.observeTcp(...seg('reply', 900, SYN | ACK), 1000);
    assert.deepEqual(answersOf(o.observeTcp(...seg('reply', 901, ACK, framed(msg(true, 31, 'api.example.com', '198.18.1.10'))), 1001)), [ip('198.18.1.10')]);
  });

  it('sequence numbers that wrap past 2^32 are followed', () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 0xffff_fff0, 0xffff_fffe);
    const q = framed(msg(false, 4, 'api.example.com'));
    for (const [off, piece] of cut(q, [5, 20])) o.observeTcp(...seg('query', 0xffff_fff1 + off, ACK, piece), 1001);
    const r = framed(msg(true, 4, 'api.example.com', '198.18.1.10'));
    const got: Message[] = [];
    for (const [off, piece] of cut(r, [1, 3])) got.push(...o.observeTcp(...seg('reply', 0xffff_ffff + off, ACK, piece), 1002));
    assert.deepEqual(answersOf(got), [ip('198.18.1.10')]);
  });

  it('a flow whose SYN was not seen is not read: its first bytes could be anywhere in the stream', () => {
    const o = new PassiveObserver(resolvers);
    o.observeTcp(...seg('query', 101, ACK, framed(msg(false, 5, 'api.example.com'))), 1001);
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, framed(msg(true, 5, 'api.example.com', '198.18.1.10'))), 1002), []);
    assert.equal(o.tcp.flows, 0);
    assert.equal(o.stats.queries, 0);
  });

  it("replies teach only what this flow's queries asked: another name, id or flow answers nothing", () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 100, 200);
    handshake(o, 300, 400, 1000, PORT + 1);
    o.observeTcp(...seg('query', 101, ACK, framed(msg(false, 6, 'api.example.com'))), 1001);
    // The other flow (another socket, maybe another user) answers the first flow's question: nothing.
    assert.deepEqual(o.observeTcp(...seg('reply', 401, ACK, framed(msg(true, 6, 'api.example.com', '198.18.2.22')), { port: PORT + 1 }), 1002), []);
    // In the right flow: an extra unasked answer, then a wrong id, then the right one.
    const extra = Buffer.concat([framed(msg(true, 6, 'evil.example.com', '198.18.2.23')), framed(msg(true, 7, 'api.example.com', '198.18.2.24')), framed(msg(true, 6, 'api.example.com', '198.18.1.10'))]);
    assert.deepEqual(answersOf(o.observeTcp(...seg('reply', 201, ACK, extra), 1002)), [ip('198.18.1.10')]);
    assert.equal(o.stats.unmatched, 3);
  });

  it('a resolver the host does not use is not followed, nor is a UDP query answered over TCP', () => {
    const o = new PassiveObserver(resolvers);
    o.observeTcp(...seg('query', 100, SYN, undefined, { server: '198.18.5.53' }), 1000);
    o.observeTcp(...seg('reply', 200, SYN | ACK, undefined, { server: '198.18.5.53' }), 1000);
    o.observeTcp(...seg('query', 101, ACK, framed(msg(false, 8, 'api.example.com')), { server: '198.18.5.53' }), 1001);
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, framed(msg(true, 8, 'api.example.com', '198.18.2.22')), { server: '198.18.5.53' }), 1002), []);
    assert.equal(o.tcp.flows, 0);
    // A UDP query from the same port: its answer must come over UDP, not in a TCP flow.
    const udpQuery = encodeMessage(msg(false, 9, 'api.example.com'));
    o.observe({ family: 4, proto: 17, src: ip(HOST), dst: ip(RESOLVER), sport: PORT, dport: 53, payloadOffset: 0, length: 0 }, udpQuery, 1000);
    handshake(o, 100, 200);
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, framed(msg(true, 9, 'api.example.com', '198.18.2.22'))), 1002), []);
  });

  it('hostile lengths: a length no DNS message can have, or a truncated record, ends the flow', () => {
    const o = new PassiveObserver(resolvers);
    handshake(o, 100, 200);
    o.observeTcp(...seg('query', 101, ACK, framed(msg(false, 10, 'api.example.com'))), 1001);
    const r = framed(msg(true, 10, 'api.example.com', '198.18.1.10'));
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, Buffer.from([0, 3, 1, 2, 3])), 1002), []);
    assert.equal(o.tcp.flows, 0, 'given up');
    assert.deepEqual(o.observeTcp(...seg('reply', 206, ACK, r), 1002), [], 'nothing more is read from it');
    // A record the snapshot length cut: the flow is given up rather than read with a hole.
    handshake(o, 100, 200);
    o.observeTcp(...seg('query', 101, ACK, framed(msg(false, 10, 'api.example.com'))), 1001);
    assert.deepEqual(o.observeTcp(...seg('reply', 201, ACK, r.subarray(0, 10), { length: r.length }), 1002), []);
    assert.deepEqual(o.observeTcp(...seg('reply', 211, ACK, r.subarray(10)), 1002), []);
    assert.ok(o.tcp.stats.givenUp >= 2);
  });

  it('a gap that never fills: what follows it is never read, and the segments held for it are bounded', () => {
    const s = new TcpDnsStreams();
    s.segment('f', 'reply', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0); // ignored: the client's SYN comes first
    s.segment('f', 'query', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0);
    s.segment('f', 'reply', { seq: 0, flags: SYN | ACK, data: Buffer.alloc(0) }, 0);
    const r = framed(msg(true, 1, 'api.example.com', '198.18.1.10'));
    let out: Buffer[] = [];
    for (let i = 0; i < TCP_STREAM_LIMITS.maxOutOfOrder; i++) out = out.concat(s.segment('f', 'reply', { seq: 1 + 100 + i * r.length, flags: ACK, data: r }, 1));
    assert.deepEqual(out, []);
    assert.equal(s.size, 1);
    s.segment('f', 'reply', { seq: 1 + 100 + 99 * r.length, flags: ACK, data: r }, 1);
    assert.equal(s.size, 0, 'one more past the bound: given up');
    assert.equal(s.bytes, 0, 'and its bytes released');
  });

  it('a message that never ends is held up to the bound only; flows and total bytes are bounded', () => {
    const limits = { ...TCP_STREAM_LIMITS, maxFlows: 8, maxTotalBytes: 300_000 };
    const s = new TcpDnsStreams(limits);
    const big = Buffer.alloc(60_000, 0x41);
    big.writeUInt16BE(0xffff, 0);
    const rest = Buffer.alloc(5_000, 0x41);
    // One flow: a message is at most 65,537 bytes with its prefix, so a flow holds more only past a gap;
    // segments held past a gap over the flow's bound give it up.
    s.segment('one', 'query', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0);
    for (let k = 1; k <= 3; k++) s.segment('one', 'query', { seq: 1 + k * 60_000, flags: ACK, data: big }, 0);
    assert.equal(s.size, 0, 'over its own bound: given up');
    // Many flows, each holding a message that never ends: the total and the number of flows stay bounded.
    for (let f = 0; f < 20; f++) {
      s.segment(`f${f}`, 'query', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0);
      s.segment(`f${f}`, 'query', { seq: 1, flags: ACK, data: big }, 0);
      s.segment(`f${f}`, 'query', { seq: 1 + big.length, flags: ACK, data: rest }, 0);
      assert.ok(s.size <= limits.maxFlows);
      assert.ok(s.bytes <= limits.maxTotalBytes, `bytes ${s.bytes}`);
    }
    assert.ok(s.stats.givenUp >= 15);
    // Only SYNs, no bytes: the number of flows alone is bounded.
    for (let f = 0; f < 20; f++) s.segment(`syn${f}`, 'query', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0);
    assert.equal(s.size, limits.maxFlows);
  });

  it('idle flows expire; RST and both FINs end a flow', () => {
    const s = new TcpDnsStreams();
    for (const k of ['idle', 'rst', 'fin']) {
      s.segment(k, 'query', { seq: 0, flags: SYN, data: Buffer.alloc(0) }, 0);
      s.segment(k, 'reply', { seq: 0, flags: SYN | ACK, data: Buffer.alloc(0) }, 0);
    }
    s.segment('rst', 'reply', { seq: 1, flags: RST, data: Buffer.alloc(0) }, 10);
    assert.equal(s.size, 2);
    s.segment('fin', 'query', { seq: 1, flags: FIN | ACK, data: Buffer.alloc(0) }, 10_000);
    s.segment('fin', 'reply', { seq: 1, flags: FIN | ACK, data: Buffer.alloc(0) }, 10_000);
    assert.equal(s.size, 1);
    s.segment('other', 'reply', { seq: 1, flags: ACK, data: Buffer.alloc(0) }, 40_000);
    assert.equal(s.size, 0, 'the idle flow expired');
  });

  it('property: any segmentation, with duplicates and reordering within the bound, yields exactly the messages sent', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(0xffff), fc.domain()), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(2000), { maxLength: 30 }),
        fc.nat(0xffff_ffff),
        fc.array(fc.nat(1000), { maxLength: 8 }),
        (ms, cuts, isn, shuffle) => {
          const messages = ms.map(([id, name]) => msg(true, id, name.slice(0, 200), '198.18.1.1'));
          const stream = Buffer.concat(messages.map(framed));
          const pieces = cut(stream, cuts);
          // Reorder by a few swaps of neighbours, and repeat some pieces (retransmissions).
          for (const x of shuffle) {
            const i = x % pieces.length;
            if (i + 1 < pieces.length) [pieces[i], pieces[i + 1]] = [pieces[i + 1] as [number, Buffer], pieces[i] as [number, Buffer]];
            pieces.push(pieces[i] as [number, Buffer]);
          }
          const s = new TcpDnsStreams({ ...TCP_STREAM_LIMITS, maxOutOfOrder: 64 });
          s.segment('f', 'query', { seq: 7, flags: SYN, data: Buffer.alloc(0) }, 0);
          s.segment('f', 'reply', { seq: isn, flags: SYN | ACK, data: Buffer.alloc(0) }, 0);
          const out: Buffer[] = [];
          for (const [off, data] of pieces) out.push(...s.segment('f', 'reply', { seq: (isn + 1 + off) >>> 0, flags: ACK, data }, 0));
          assert.deepEqual(out.map((b) => b.toString('hex')), messages.map((m) => encodeMessage(m).toString('hex')));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('fuzz: arbitrary segments never throw, stay within bounds, and never teach without a query', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ dir: fc.constantFrom('query' as const, 'reply' as const), seq: fc.nat(0xffff_ffff), flags: fc.nat(0xff), data: fc.uint8Array({ maxLength: 300 }), port: fc.constantFrom(PORT, PORT + 1) }),
          { maxLength: 60 },
        ),
        (segs) => {
          const o = new PassiveObserver(resolvers, 5000, { ...TCP_STREAM_LIMITS, maxFlows: 2, maxTotalBytes: 4096 });
          for (const x of segs) {
            // Only reply-direction bytes are random: no query is ever sent, so nothing may be learned.
            const data = x.dir === 'query' ? Buffer.alloc(0) : Buffer.from(x.data);
            assert.deepEqual(o.observeTcp(...seg(x.dir, x.seq, x.flags, data, { port: x.port }), 1000), []);
            assert.ok(o.tcp.flows <= 2 && o.tcp.bytes <= 4096);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a real TCP header: sequence number and flags are read, the payload ends where the IP length says', () => {
    const payload = framed(msg(true, 1, 'api.example.com', '198.18.1.10'));
    const b = Buffer.alloc(20 + 20 + payload.length + 4); // four bytes of trailing junk beyond the IP length
    b[0] = 0x45;
    b.writeUInt16BE(40 + payload.length, 2);
    b[9] = 6;
    b.writeUInt32BE(0xc6120035, 12);
    b.writeUInt32BE(0xc6120002, 16);
    b.writeUInt16BE(53, 20);
    b.writeUInt16BE(PORT, 22);
    b.writeUInt32BE(0xfedcba98, 24);
    b[32] = 5 << 4;
    b[33] = ACK | 0x08;
    payload.copy(b, 40);
    const p = parsePacket(b);
    assert.deepEqual({ seq: p?.tcpSeq, flags: p?.tcpFlags, off: p?.payloadOffset }, { seq: 0xfedcba98, flags: ACK | 0x08, off: 40 });
    assert.equal(parsePacket(b.subarray(0, 30))?.tcpSeq, undefined, 'a truncated header gives no sequence number');
  });
});
