/** NFLOG records and logged packets are hostile input: parsed within bounds, malformed ones refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parsePacket } from '../../src/net/packet.js';
import { MalformedNetlink, NlWriter, parseMessages } from '../../src/netfilter/nl-attr.js';
import { parseNflogMessage } from '../../src/netfilter/nflog.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** IPv4 TCP SYN 198.18.0.2:40000 -> 198.18.1.10:443 */
const TCP4 = hex('4500 003c 0000 4000 4006 0000 c6120002 c612010a  9c40 01bb 00000000 00000000 5002 faf0 0000 0000');
/** IPv6 UDP 2001:db8::2:5353 -> 2001:db8:1::10:53 with 4 payload bytes */
const UDP6 = hex('6000 0000 000c 1140 20010db8000000000000000000000002 20010db8000100000000000000000010 14e9 0035 000c 0000 deadbeef');

function nflogMessage(payload: Buffer, prefix: string, uid?: number): Buffer {
  const w = new NlWriter();
  w.beginMsg((4 << 8) | 0, 0, 0, 2, 7331);
  w.bytes(1, hex('0800 03 00'));
  w.str(10, prefix);
  if (uid !== undefined) w.u32be(11, uid);
  w.u32be(12, 42);
  w.bytes(9, payload);
  w.endMsg();
  return w.finish();
}

describe('unit: logged packets and NFLOG records', () => {
  it('parses IPv4 TCP and IPv6 UDP headers, with the UDP payload offset', () => {
    const t = parsePacket(TCP4);
    assert.deepEqual(t, { family: 4, proto: 6, src: 0xc6120002n, dst: 0xc612010an, length: 60, sport: 40000, dport: 443, payloadOffset: 40, tcpSeq: 0, tcpFlags: 2 });
    const u = parsePacket(UDP6);
    assert.equal(u?.family, 6);
    assert.equal(u?.dport, 53);
    assert.equal(u?.payloadOffset, 48);
  });

  it('ICMP and ICMPv6 echo requests carry their identifier (a ping socket\'s port, for the probes); other types and cut headers do not', () => {
    // 198.18.0.2 -> 198.18.1.10, echo request id 0x1234 seq 1
    const echo4 = hex('4500 001c 0000 4000 4001 0000 c6120002 c612010a  08 00 0000 1234 0001');
    assert.deepEqual(parsePacket(echo4), { family: 4, proto: 1, src: 0xc6120002n, dst: 0xc612010an, length: 28, icmpType: 8, echoId: 0x1234 });
    const reply4 = Buffer.from(echo4);
    reply4[20] = 0;
    assert.equal(parsePacket(reply4)?.echoId, undefined, 'an echo reply is not a send to name');
    assert.equal(parsePacket(echo4.subarray(0, 25))?.echoId, undefined, 'cut before the identifier');
    assert.equal(parsePacket(echo4.subarray(0, 25))?.icmpType, 8);
    // 2001:db8::2 -> 2001:db8:1::10, ICMPv6 echo request (128) id 0xbeef; type 8 there is not an echo request
    const echo6 = hex('6000 0000 0008 3a40 20010db8000000000000000000000002 20010db8000100000000000000000010 80 00 0000 beef 0001');
    assert.equal(parsePacket(echo6)?.echoId, 0xbeef);
    const eight6 = Buffer.from(echo6);
    eight6[40] = 8;
    assert.equal(parsePacket(eight6)?.echoId, undefined);
  });

  it('a snapshot cut anywhere never reads past the buffer', () => {
    for (const p of [TCP4, UDP6]) {
      for (let i = 0; i <= p.length; i++) {
        const r = parsePacket(p.subarray(0, i));
        if (r?.payloadOffset !== undefined) assert.ok(r.payloadOffset <= i);
      }
    }
    assert.equal(parsePacket(hex('45')), null);
    assert.equal(parsePacket(hex('7500')), null, 'unknown IP version');
  });

  it('reads prefix, uid, sequence number and packet from a record', () => {
    const [msg] = parseMessages(nflogMessage(TCP4, 'sluice:B:api ', 65534));
    assert.ok(msg);
    const r = parseNflogMessage(msg);
    assert.equal(r?.group, 7331);
    assert.equal(r?.prefix, 'sluice:B:api ');
    assert.equal(r?.uid, 65534);
    assert.equal(r?.seq, 42);
    assert.equal(r?.packet?.dport, 443);
  });

  it('property: random packets and mutated records parse or fail with MalformedNetlink only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        const p = parsePacket(Buffer.from(bytes));
        if (p?.payloadOffset !== undefined) assert.ok(p.payloadOffset <= bytes.length);
      }),
      { numRuns: 3000 },
    );
    const base = nflogMessage(UDP6, 'sluice:W:x ', 0);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 5 }), (edits) => {
        const b = Buffer.from(base);
        for (const [at, v] of edits) b[at] = v;
        try {
          for (const m of parseMessages(b)) parseNflogMessage(m);
        } catch (err) {
          if (!(err instanceof MalformedNetlink)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
