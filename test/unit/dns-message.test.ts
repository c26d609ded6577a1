/** The DNS codec: strict on hostile input, lossless on valid messages. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalName, decodeMessage, DnsFormatError, encodeMessage, encodeQuery, nameToLabels, TYPE, type Message } from '../../src/dns/dns-message.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A real response (api.example.com A, with a CNAME chain and compression), as a server writes it. */
function sampleResponse(): Buffer {
  const msg: Message = {
    id: 0x1234,
    flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
    questions: [{ name: 'www.example.com', type: TYPE.A, class: 1 }],
    answers: [
      { name: 'www.example.com', type: TYPE.CNAME, class: 1, ttl: 300, data: { kind: 'name', name: 'edge.cdn.example.com' } },
      { name: 'edge.cdn.example.com', type: TYPE.A, class: 1, ttl: 20, data: { kind: 'a', addr: 0xc6120a01n } },
      { name: 'edge.cdn.example.com', type: TYPE.AAAA, class: 1, ttl: 20, data: { kind: 'aaaa', addr: 0x20010db8000000000000000000000001n } },
    ],
    authorities: [
      { name: 'example.com', type: TYPE.SOA, class: 1, ttl: 60, data: { kind: 'soa', mname: 'ns.example.com', rname: 'host.example.com', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } },
    ],
    additionals: [{ name: 'example.com', type: TYPE.MX, class: 1, ttl: 5, data: { kind: 'mx', preference: 10, exchange: 'mail.example.com' } }],
    edns: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, options: [{ code: 10, data: hex('0102030405060708') }] },
  };
  return encodeMessage(msg);
}

describe('unit: DNS message codec', () => {
  it('decodes what it encodes, with compression, CNAME chains, SOA, MX and EDNS', () => {
    const buf = sampleResponse();
    const m = decodeMessage(buf);
    assert.equal(m.id, 0x1234);
    assert.equal(m.questions[0]?.name, 'www.example.com');
    assert.deepEqual(m.answers[0]?.data, { kind: 'name', name: 'edge.cdn.example.com' });
    assert.deepEqual(m.answers[1]?.data, { kind: 'a', addr: 0xc6120a01n });
    assert.equal(m.edns?.udpSize, 1232);
    assert.equal(m.edns?.dnssecOk, true);
    assert.deepEqual(decodeMessage(encodeMessage(m)), m);
    assert.ok(buf.length < 200, `names were compressed (${buf.length} bytes)`);
  });

  it('decodes a query as dig sends it', () => {
    // dig +noedns api.example.com A: id 0xabcd, RD
    const q = hex('abcd 0100 0001 0000 0000 0000 03617069 076578616d706c65 03636f6d 00 0001 0001');
    const m = decodeMessage(q);
    assert.deepEqual(m.questions, [{ name: 'api.example.com', type: 1, class: 1 }]);
    assert.equal(m.flags.rd, true);
    assert.equal(m.flags.qr, false);
  });

  it('rejects a compression pointer loop, a self pointer and a forward pointer', () => {
    const header = hex('0001 0000 0001 0000 0000 0000');
    assert.throws(() => decodeMessage(Buffer.concat([header, hex('c00c 0001 0001')])), DnsFormatError, 'pointer to itself');
    assert.throws(() => decodeMessage(Buffer.concat([header, hex('01 61 c00c 0001 0001')])), DnsFormatError, 'loop through its own label');
    assert.throws(() => decodeMessage(Buffer.concat([header, hex('c012 0001 0001 01 61 00')])), DnsFormatError, 'forward pointer');
  });

  it('rejects names over 255 octets, labels over 63, reserved label types and truncation anywhere', () => {
    const header = hex('0001 0000 0001 0000 0000 0000');
    const long = Buffer.concat([...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), hex('00 0001 0001')]);
    assert.throws(() => decodeMessage(Buffer.concat([header, long])), /longer than 255/);
    assert.throws(() => decodeMessage(Buffer.concat([header, hex('40'), Buffer.alloc(64, 0x61), hex('00 0001 0001')])), DnsFormatError);
    const good = sampleResponse();
    for (let i = 0; i < good.length; i++) {
      assert.throws(() => decodeMessage(good.subarray(0, i)), DnsFormatError, `truncated at ${i}`);
    }
  });

  it('rejects counts the message cannot hold (a 12-byte header claiming 65535 answers)', () => {
    assert.throws(() => decodeMessage(hex('0001 8000 0000 ffff 0000 0000')), /counts exceed/);
  });

  it('escapes label bytes so a dot inside a label never looks like a separator', () => {
    const header = hex('0001 0000 0001 0000 0000 0000');
    const m = decodeMessage(Buffer.concat([header, hex('07 6170692e636f6d 00 0001 0001')]));
    assert.equal(m.questions[0]?.name, 'api\\.com');
    assert.notEqual(canonicalName(m.questions[0]?.name ?? ''), 'api.com');
    assert.deepEqual(nameToLabels('api\\.com').map((l) => l.toString()), ['api.com']);
    const bin = decodeMessage(Buffer.concat([header, hex('03 00ff20 00 0001 0001')]));
    assert.equal(bin.questions[0]?.name, '\\000\\255\\032');
  });

  it('property: arbitrary bytes either decode or raise DnsFormatError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          decodeMessage(Buffer.from(bytes));
        } catch (err) {
          if (!(err instanceof DnsFormatError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('property: mutations of a valid response decode or fail cleanly, and re-encoding is stable', () => {
    const base = sampleResponse();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
        const b = Buffer.from(base);
        for (const [at, v] of edits) b[at] = v;
        let m: Message;
        try {
          m = decodeMessage(b);
        } catch (err) {
          if (err instanceof DnsFormatError) return;
          throw err;
        }
        let again: Buffer;
        try {
          again = encodeMessage(m);
        } catch (err) {
          // A decoded message may hold a record the encoder refuses (e.g. OPT-like raw data); that must still be a format error.
          if (err instanceof DnsFormatError) return;
          throw err;
        }
        assert.deepEqual(decodeMessage(again), m);
      }),
      { numRuns: 3000 },
    );
  });

  it('property: compression never merges different names (plain and escaped labels, any case)', () => {
    // Labels from a small alphabet so suffixes repeat: dots and backslashes inside labels, mixed case.
    const label = fc.array(fc.constantFrom(0x61, 0x41, 0x62, 0x2d, 0x2e, 0x5c, 0x2a, 0x00), { minLength: 1, maxLength: 4 }).map((a) => Buffer.from(a));
    const lower = (b: Buffer) => Buffer.from([...b].map((x) => (x >= 0x41 && x <= 0x5a ? x + 32 : x)));
    const present = (labels: Buffer[]) => {
      const header = hex('0001 0000 0001 0000 0000 0000');
      const wire = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), hex('00 0001 0001')]);
      return decodeMessage(Buffer.concat([header, wire])).questions[0]?.name ?? '';
    };
    fc.assert(
      fc.property(fc.array(fc.array(label, { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 8 }), (names) => {
        const text = names.map(present);
        const msg: Message = {
          id: 1,
          flags: { qr: true, opcode: 0, aa: false, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
          questions: [{ name: text[0] as string, type: 5, class: 1 }],
          answers: text.slice(1).map((t, i) => ({ name: text[i] as string, type: 5, class: 1, ttl: 1, data: { kind: 'name' as const, name: t } })),
          authorities: [],
          additionals: [],
        };
        const back = decodeMessage(encodeMessage(msg));
        const got = [back.questions[0]?.name, ...back.answers.map((a) => (a.data.kind === 'name' ? a.data.name : ''))];
        got.forEach((g, i) => assert.deepEqual(nameToLabels(g ?? '').map(lower), (names[i] as Buffer[]).map(lower), `name ${i}`));
      }),
      { numRuns: 3000 },
    );
  });

  it('property: encodeQuery makes the same bytes as encodeMessage of the same query', () => {
    const label = fc.stringMatching(/^[a-zA-Z0-9_-]{1,20}$/);
    fc.assert(
      fc.property(
        fc.array(label, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        (labels, id, type, rd, cd, dnssecOk) => {
          const q = { name: labels.join('.'), type, class: 1 };
          const viaMessage = encodeMessage({
            id,
            flags: { qr: false, opcode: 0, aa: false, tc: false, rd, ra: false, ad: false, cd, rcode: 0 },
            questions: [q],
            answers: [],
            authorities: [],
            additionals: [],
            edns: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk, options: [] },
          });
          assert.deepEqual(encodeQuery(id, q, { rd, cd, dnssecOk, udpSize: 1232 }), viaMessage);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: names round-trip through presentation form', () => {
    const label = fc.uint8Array({ minLength: 1, maxLength: 20 }).map((a) => Buffer.from(a));
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 8 }), (labels) => {
        const header = hex('0001 0000 0001 0000 0000 0000');
        const wire = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), l]), hex('00 0001 0001')]);
        const name = decodeMessage(Buffer.concat([header, wire])).questions[0]?.name ?? '';
        assert.deepEqual(nameToLabels(name), labels);
      }),
      { numRuns: 1000 },
    );
  });
});
