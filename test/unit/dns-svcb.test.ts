/** SVCB and HTTPS records (RFC 9460): strict decoding of hostile rdata, and address hints filtered like A/AAAA answers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { filterAnswer } from '../../src/dns/answer-filter.js';
import { decodeMessage, DnsFormatError, encodeMessage, SVC_KEY, TYPE, type Message, type RR, type SvcParam } from '../../src/dns/dns-message.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { formatAddr, parseAddr } from '../../src/net/ip.js';
import { compileFrom } from '../support/fixtures.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const v4 = (...a: string[]) => Buffer.concat(a.map((x) => Buffer.from(x.split('.').map(Number))));
const v6 = (...a: string[]) =>
  Buffer.concat(
    a.map((x) => {
      const p = parseAddr(x);
      assert.ok(p && p.family === 6);
      const b = Buffer.alloc(16);
      b.writeBigUInt64BE(p.value >> 64n, 0);
      b.writeBigUInt64BE(p.value & 0xffffffffffffffffn, 8);
      return b;
    }),
  );

function response(answers: RR[], qtype: number = TYPE.HTTPS, qname = 'svc.example.com'): Message {
  return {
    id: 7,
    flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
    questions: [{ name: qname, type: qtype, class: 1 }],
    answers,
    authorities: [],
    additionals: [],
  };
}

const https = (params: SvcParam[], opts: { priority?: number; target?: string; name?: string; type?: number } = {}): RR => ({
  name: opts.name ?? 'svc.example.com',
  type: opts.type ?? TYPE.HTTPS,
  class: 1,
  ttl: 300,
  data: { kind: 'svcb', priority: opts.priority ?? 1, target: opts.target ?? '.', params },
});

/** An HTTPS answer on the wire with the given rdata, to feed the decoder what a hostile upstream could send. */
function withRdata(rdata: Buffer): Buffer {
  const header = hex('0007 8180 0001 0001 0000 0000');
  const q = Buffer.concat([hex('03 737663 07 6578616d706c65 03 636f6d 00'), hex('0041 0001')]);
  const rr = Buffer.concat([hex('c00c 0041 0001 0000012c'), Buffer.from([rdata.length >> 8, rdata.length & 0xff]), rdata]);
  return Buffer.concat([header, q, rr]);
}

describe('unit: SVCB/HTTPS codec', () => {
  it('decodes and re-encodes priority, an uncompressed target and params in key order', () => {
    const rr = https([
      { key: 1, value: hex('02 6832') }, // alpn=h2
      { key: SVC_KEY.IPV4HINT, value: v4('198.18.1.10', '198.18.1.11') },
      { key: SVC_KEY.IPV6HINT, value: v6('2001:db8:1::10') },
    ], { target: 'edge.example.net' });
    const m = decodeMessage(encodeMessage(response([rr])));
    assert.deepEqual(m.answers[0]?.data, rr.data);
    // The target is written in full even though a suffix of it appeared before (no compression).
    const wire = encodeMessage(response([rr], TYPE.HTTPS, 'example.net'));
    assert.ok(wire.includes(Buffer.from('\u0004edge\u0007example\u0003net\u0000', 'latin1')), 'TargetName not compressed');
    assert.deepEqual(decodeMessage(encodeMessage(response([{ ...rr, type: TYPE.SVCB }], TYPE.SVCB))).answers[0]?.data, rr.data, 'SVCB (64) the same');
  });

  it('refuses malformed rdata: keys out of order or repeated, hints of broken length, a compressed target, bad mandatory lists, key 65535', () => {
    const bad: [string, Buffer][] = [
      ['keys out of order', hex('0001 00 0006 0010 20010db8000100000000000000000010 0004 0004 c6120a01')],
      ['a key twice', hex('0001 00 0004 0004 c6120a01 0004 0004 c6120a02')],
      ['ipv4hint of 5 bytes', hex('0001 00 0004 0005 c6120a0101')],
      ['empty ipv4hint', hex('0001 00 0004 0000')],
      ['ipv6hint of 15 bytes', hex('0001 00 0006 000f 20010db80001000000000000000000')],
      ['a compressed target', hex('0001 c00c 0004 0004 c6120a01')],
      ['mandatory naming itself', hex('0001 00 0000 0002 0000')],
      ['mandatory unsorted', hex('0001 00 0000 0004 0004 0001 0001 0002 6832 0004 0004 c6120a01')],
      ['key 65535', hex('0001 00 ffff 0000')],
      ['a param past the rdata', hex('0001 00 0004 0008 c6120a01')],
      ['a truncated target', hex('0001 03 6162')],
    ];
    for (const [why, rdata] of bad) assert.throws(() => decodeMessage(withRdata(rdata)), DnsFormatError, why);
    assert.equal(decodeMessage(withRdata(hex('0001 00 0004 0004 c6120a01'))).answers[0]?.data.kind, 'svcb', 'the well-formed one passes');
  });

  it('property (fuzz): any rdata decodes to an SVCB record that re-encodes to the same bytes, or fails with DnsFormatError', () => {
    const param = fc.record({ key: fc.integer({ min: 0, max: 65535 }), value: fc.uint8Array({ maxLength: 40 }) });
    const structured = fc
      .tuple(fc.integer({ min: 0, max: 65535 }), fc.array(param, { maxLength: 6 }))
      .map(([priority, params]) => Buffer.concat([Buffer.from([priority >> 8, priority & 0xff, 0]), ...params.map((p) => Buffer.concat([Buffer.from([p.key >> 8, p.key & 0xff, p.value.length >> 8, p.value.length & 0xff]), Buffer.from(p.value)]))]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)), structured), (rdata) => {
        let m: Message;
        try {
          m = decodeMessage(withRdata(rdata));
        } catch (err) {
          assert.ok(err instanceof DnsFormatError, `only DnsFormatError: ${String(err)}`);
          return;
        }
        const d = m.answers[0]?.data;
        assert.equal(d?.kind, 'svcb');
        if (d?.kind !== 'svcb') return;
        for (let i = 1; i < d.params.length; i++) assert.ok((d.params[i] as SvcParam).key > (d.params[i - 1] as SvcParam).key);
        // Re-encoded, the record's rdata is byte for byte what came in.
        const again = encodeMessage(m);
        assert.ok(again.includes(rdata), 'lossless');
        assert.deepEqual(decodeMessage(again).answers[0]?.data, d);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('unit: SVCB/HTTPS address hints go through the rebinding filter', () => {
  const { policy } = compileFrom(`mode: enforce\nrules:\n  - name: web\n    to: [svc.example.com]\n  - name: lan\n    to: [10.1.0.0/16]\n`);
  const host = ['198.18.0.2', '2001:db8::2'].map((a) => parseAddr(a)).filter((a) => a !== null);
  const rebinding = new RebindingFilter(policy, host);
  const hints = (rr: RR | undefined, key: number) => {
    const d = rr?.data;
    if (d?.kind !== 'svcb') return undefined;
    const p = d.params.find((x) => x.key === key);
    if (!p) return undefined;
    const size = key === SVC_KEY.IPV4HINT ? 4 : 16;
    const out: string[] = [];
    for (let i = 0; i < p.value.length; i += size) {
      out.push(size === 4 ? formatAddr(4, BigInt(p.value.readUInt32BE(i))) : formatAddr(6, (p.value.readBigUInt64BE(i) << 64n) | p.value.readBigUInt64BE(i + 8)));
    }
    return out;
  };

  it('hint values in loopback, metadata, the host itself and private ranges are dropped; public ones and listed ranges pass and are opened', () => {
    const rr = https([
      { key: 1, value: hex('02 6832') },
      { key: SVC_KEY.IPV4HINT, value: v4('127.0.0.1', '169.254.169.254', '198.18.0.2', '10.0.0.1', '10.1.2.3', '198.18.1.10') },
      { key: SVC_KEY.IPV6HINT, value: v6('::1', 'fd00::1', '2001:db8::2', '2001:db8:1::10') },
    ]);
    const f = filterAnswer('svc.example.com', TYPE.HTTPS, response([rr]), rebinding, { ttlMax: 3600 });
    assert.deepEqual(hints(f.answers[0], SVC_KEY.IPV4HINT), ['10.1.2.3', '198.18.1.10'], '10.1.0.0/16 is listed by a rule');
    assert.deepEqual(hints(f.answers[0], SVC_KEY.IPV6HINT), ['2001:db8:1::10']);
    assert.deepEqual(
      f.addresses.map((a) => formatAddr(a.family, a.addr)),
      ['10.1.2.3', '198.18.1.10', '2001:db8:1::10'],
      'the passing hints are opened like A/AAAA answers',
    );
    assert.deepEqual(f.dropped.map((d) => d.address), ['127.0.0.1', '169.254.169.254', '198.18.0.2', '10.0.0.1', '::1', 'fd00::1', '2001:db8::2']);
    assert.match(f.dropped.find((d) => d.address === '198.18.0.2')?.why ?? '', /this host's own address/);
    // Rewritten on the wire correctly: what the client decodes is the filtered record, alpn untouched.
    const out = decodeMessage(encodeMessage(response(f.answers)));
    assert.deepEqual(out.answers[0]?.data, f.answers[0]?.data);
    assert.deepEqual((out.answers[0]?.data as { params: SvcParam[] }).params[0], { key: 1, value: hex('02 6832') });
  });

  it('a hint left empty is removed; a record whose mandatory list names it is dropped whole; AliasMode records lose their hints and open nothing', () => {
    const onlyBad = https([{ key: SVC_KEY.IPV4HINT, value: v4('127.0.0.1') }, { key: SVC_KEY.IPV6HINT, value: v6('2001:db8:1::10') }]);
    const f = filterAnswer('svc.example.com', TYPE.HTTPS, response([onlyBad]), rebinding, { ttlMax: 3600 });
    assert.equal(hints(f.answers[0], SVC_KEY.IPV4HINT), undefined, 'the emptied ipv4hint is gone');
    assert.deepEqual(hints(f.answers[0], SVC_KEY.IPV6HINT), ['2001:db8:1::10']);
    const mandatory = https([{ key: SVC_KEY.MANDATORY, value: hex('0004') }, { key: SVC_KEY.IPV4HINT, value: v4('127.0.0.1') }]);
    const fm = filterAnswer('svc.example.com', TYPE.HTTPS, response([mandatory]), rebinding, { ttlMax: 3600 });
    assert.equal(fm.answers.length, 0, 'a record that cannot work without the hint is not passed on');
    assert.equal(fm.addresses.length, 0);
    const alias = https([{ key: SVC_KEY.IPV4HINT, value: v4('198.18.1.10') }], { priority: 0, target: 'pool.example.net' });
    const fa = filterAnswer('svc.example.com', TYPE.HTTPS, response([alias]), rebinding, { ttlMax: 3600 });
    assert.equal(hints(fa.answers[0], SVC_KEY.IPV4HINT), undefined);
    assert.equal(fa.addresses.length, 0);
    assert.deepEqual(fa.targets, ['pool.example.net'], 'the target name is reported for the chain check');
  });

  it('the per-answer limit applies to hints too, and to A records', () => {
    const many = Array.from({ length: 10 }, (_, i) => `198.18.1.${i + 1}`);
    const f = filterAnswer('svc.example.com', TYPE.HTTPS, response([https([{ key: SVC_KEY.IPV4HINT, value: v4(...many) }])]), rebinding, { ttlMax: 3600, maxAddresses: 4 });
    assert.equal(f.addresses.length, 4);
    assert.equal(f.overLimit, 6);
    assert.deepEqual(hints(f.answers[0], SVC_KEY.IPV4HINT), many.slice(0, 4), 'the client gets only what was opened');
    const a = (addr: string): RR => ({ name: 'svc.example.com', type: TYPE.A, class: 1, ttl: 60, data: { kind: 'a', addr: parseAddr(addr)?.value ?? 0n } });
    const fa = filterAnswer('svc.example.com', TYPE.A, response(many.map(a), TYPE.A), rebinding, { ttlMax: 3600, maxAddresses: 3 });
    assert.equal(fa.answers.length, 3);
    assert.equal(fa.overLimit, 7);
  });

  it('a record whose hints all pass goes on as it came; a mandatory hint that passes keeps its record; opened hints live at most ttl_max', () => {
    const good = { ...https([{ key: SVC_KEY.MANDATORY, value: hex('0004') }, { key: SVC_KEY.IPV4HINT, value: v4('198.18.1.10', '198.18.1.11') }]), ttl: 999_999 };
    const f = filterAnswer('svc.example.com', TYPE.HTTPS, response([good]), rebinding, { ttlMax: 3600 });
    assert.equal(f.answers.length, 1, 'mandatory names a hint that was not removed');
    assert.equal(f.answers[0]?.data, good.data, 'nothing removed: the record is not rebuilt');
    assert.equal(f.answers[0]?.ttl, 3600);
    assert.deepEqual(
      f.addresses.map((a) => [formatAddr(a.family, a.addr), a.ttl]),
      [
        ['198.18.1.10', 3600],
        ['198.18.1.11', 3600],
      ],
    );
    // Half of a hint removed: the other half stays, the record is rebuilt.
    const half = https([{ key: SVC_KEY.IPV4HINT, value: v4('127.0.0.1', '198.18.1.12') }]);
    const fh = filterAnswer('svc.example.com', TYPE.HTTPS, response([half]), rebinding, { ttlMax: 3600 });
    assert.deepEqual(hints(fh.answers[0], SVC_KEY.IPV4HINT), ['198.18.1.12']);
  });

  it('target names: "." (the owner itself) is not one; a name given by two records is reported once', () => {
    const self = filterAnswer('svc.example.com', TYPE.HTTPS, response([https([], { target: '.' })]), rebinding, { ttlMax: 3600 });
    assert.deepEqual(self.targets, []);
    const twice = filterAnswer('svc.example.com', TYPE.HTTPS, response([https([], { target: 'Pool.example.net' }), https([], { priority: 2, target: 'pool.example.net.' })]), rebinding, { ttlMax: 3600 });
    assert.deepEqual(twice.targets, ['pool.example.net']);
  });

  it('negative answers keep only an IN-class SOA; a CNAME chain is followed for 16 hops and not one more', () => {
    const soa = (cls: number): RR => ({ name: 'example.com', type: TYPE.SOA, class: cls, ttl: 99_999, data: { kind: 'raw', data: hex('00') } } as unknown as RR);
    const neg: Message = { ...response([]), authorities: [soa(1), soa(3), { ...soa(1), type: TYPE.NS }] };
    const fn = filterAnswer('svc.example.com', TYPE.A, neg, rebinding, { ttlMax: 3600 });
    assert.deepEqual(fn.authorities.map((r) => [r.type, r.class, r.ttl]), [[TYPE.SOA, 1, 3600]]);
    const chain = (hops: number): RR[] => [
      ...Array.from({ length: hops }, (_, i): RR => ({ name: `c${i}.example.com`, type: TYPE.CNAME, class: 1, ttl: 60, data: { kind: 'name', name: `c${i + 1}.example.com` } })),
      { name: `c${hops}.example.com`, type: TYPE.A, class: 1, ttl: 60, data: { kind: 'a', addr: parseAddr('198.18.1.20')?.value ?? 0n } },
    ];
    const at16 = filterAnswer('c0.example.com', TYPE.A, response(chain(16), TYPE.A), rebinding, { ttlMax: 3600 });
    assert.equal(at16.addresses.length, 1, '16 CNAMEs, then the address');
    const at17 = filterAnswer('c0.example.com', TYPE.A, response(chain(17), TYPE.A), rebinding, { ttlMax: 3600 });
    assert.equal(at17.addresses.length, 0, 'a 17th CNAME ends the walk before the address');
  });

  it('the host address list is replaced as interfaces change', () => {
    const r = new RebindingFilter(policy, host);
    assert.match(r.check(4, parseAddr('198.18.0.2')?.value ?? 0n) ?? '', /own address/);
    r.setLocalAddresses([]);
    assert.equal(r.check(4, parseAddr('198.18.0.2')?.value ?? 0n), null);
  });
});
