/**
 * The netlink encoder and decoder are inverses: every golden ruleset, encoded
 * into a batch and decoded from that batch's own messages (NEW* requests use
 * the same attributes as dump replies), comes back canonically equal. The
 * kernel round trip of the same thing is in the integration tier.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ChainDef, Ruleset, SetDef } from '../../src/compile/ruleset.js';
import { canonical } from '../../src/netfilter/compare-ruleset.js';
import { attrMap, attrStr, NlWriter, parseMessages } from '../../src/netfilter/nl-attr.js';
import { DATA, LIST_ELEM, MSG, NFNL_SUBSYS_NFTABLES, NLM_F_ACK, SET, SET_DESC, SET_ELEM, SET_ELEM_F_CATCHALL, SET_ELEM_LIST, SET_F } from '../../src/netfilter/nl-constants.js';
import { decodeChain, decodeElemMessages, decodeObj, decodeRule, decodeSet, decodeTable, elementsToIR } from '../../src/netfilter/nft-decode.js';
import { BatchBuilder, encodeReplace, KEY_INFO, rawElements } from '../../src/netfilter/nft-encode.js';
import { compileFrom, GOLDEN_DIR, readGolden } from '../support/fixtures.js';

const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));

/** Rebuilds a ruleset from the messages of a replace batch. */
function decodeBatch(buf: Buffer): { ruleset: Ruleset; anomalies: string[] } {
  const msgs = parseMessages(buf);
  const anomalies: string[] = [];
  const rs: Ruleset = { table: '', comment: '', sets: [], counters: [], limits: [], chains: [] };
  const sets = new Map<string, SetDef>();
  const chains = new Map<string, ChainDef>();
  const elemMsgs = new Map<string, typeof msgs>();
  for (const m of msgs) {
    if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES) continue;
    switch (m.type & 0xff) {
      case MSG.NEWTABLE: {
        const t = decodeTable(m);
        rs.table = t.name;
        rs.comment = t.comment;
        break;
      }
      case MSG.NEWOBJ: {
        const o = decodeObj(m);
        if (o.counter) rs.counters.push(o.comment !== undefined ? { name: o.name, comment: o.comment } : { name: o.name });
        if (o.limit) rs.limits.push({ name: o.name, rate: o.limit.rate, burst: o.limit.burst });
        break;
      }
      case MSG.NEWSET: {
        const d = decodeSet(m);
        if (d.anomaly) anomalies.push(d.anomaly);
        sets.set(d.set.name, d.set);
        rs.sets.push(d.set);
        break;
      }
      case MSG.NEWSETELEM: {
        const name = attrStr(attrMap(m.payload, 4).get(SET_ELEM_LIST.SET)) ?? '';
        elemMsgs.set(name, [...(elemMsgs.get(name) ?? []), m]);
        break;
      }
      case MSG.NEWCHAIN: {
        const d = decodeChain(m);
        chains.set(d.chain.name, d.chain);
        rs.chains.push(d.chain);
        break;
      }
      case MSG.NEWRULE: {
        const d = decodeRule(m);
        chains.get(d.chain)?.rules.push(d.rule);
        break;
      }
    }
  }
  for (const [name, list] of elemMsgs) {
    const set = sets.get(name);
    if (set) set.elements = elementsToIR(set, decodeElemMessages(list), anomalies);
  }
  return { ruleset: rs, anomalies };
}

const cases = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.yaml'));

describe('unit: netlink encode/decode round trip', () => {
  for (const file of cases) {
    it(`${file}: decode(encode(ruleset)) is the same ruleset`, () => {
      const { ruleset } = compileFrom(readGolden(file), file);
      const batch = encodeReplace(ruleset).finish();
      const back = decodeBatch(batch);
      assert.deepEqual(back.anomalies, []);
      assert.equal(json(canonical(back.ruleset)), json(canonical(ruleset)));
    });
  }

  it('every message of a batch asks for an acknowledgement, except the batch delimiters', () => {
    const { ruleset } = compileFrom(readGolden('01-ufw-recipe.yaml'));
    const msgs = parseMessages(encodeReplace(ruleset).finish());
    assert.equal(msgs[0]?.type, 16, 'starts with NFNL_MSG_BATCH_BEGIN');
    assert.equal(msgs[msgs.length - 1]?.type, 17, 'ends with NFNL_MSG_BATCH_END');
    for (const m of msgs.slice(1, -1)) assert.ok(m.flags & NLM_F_ACK, `message type ${m.type} requests an ack`);
  });

  it('a replace batch starts by creating then deleting the table, so the delete never fails and the swap is atomic', () => {
    const { ruleset } = compileFrom(readGolden('01-ufw-recipe.yaml'));
    const types = parseMessages(encodeReplace(ruleset).finish()).map((m) => m.type & 0xff);
    assert.deepEqual(types.slice(1, 4), [MSG.NEWTABLE, MSG.DELTABLE, MSG.NEWTABLE]);
  });

  it('large sets are split into element messages that fit netlink 16-bit attribute lengths', () => {
    const addrs = Array.from({ length: 20_000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    const { ruleset } = compileFrom(`mode: enforce\nrules:\n  - name: big\n    to: [${addrs.join(', ')}]\n`);
    const msgs = parseMessages(encodeReplace(ruleset).finish());
    const elemMsgs = msgs.filter((m) => (m.type & 0xff) === MSG.NEWSETELEM);
    assert.ok(elemMsgs.length > 1, 'more than one element message');
    for (const m of elemMsgs) assert.ok(m.payload.length < 65_536, `message payload ${m.payload.length} fits`);
    const back = decodeBatch(encodeReplace(ruleset).finish());
    const big = back.ruleset.sets.find((s) => s.name === 'r_big_a4');
    assert.equal(big?.elements.length, 20_000);
  });

  it("address hash sets are written in place with the general element writer's exact bytes, chunked the same way", () => {
    // v4 and v6, past several 60,000-byte chunks, with the ends of each address space.
    const v4 = Array.from({ length: 9_000 }, (_, i) => BigInt((i * 2654435761) >>> 0)).concat([0n, 0xffffffffn]);
    const v6 = Array.from({ length: 5_000 }, (_, i) => (BigInt(i) << 100n) | (BigInt(i * 7919) << 33n) | BigInt(i)).concat([0n, (1n << 128n) - 1n, 1n << 64n, (1n << 64n) - 1n]);
    for (const [family, values] of [[4, v4], [6, v6]] as const) {
      const set = { name: `s${family}`, key: family === 4 ? ('ipv4_addr' as const) : ('ipv6_addr' as const), interval: false };
      const b = new BatchBuilder(1).elements('add', 't', set, values.map((v) => ({ t: 'addr', family, start: v, end: v })));
      const msgs = parseMessages(b.w.finish()).filter((m) => (m.type & 0xff) === MSG.NEWSETELEM);
      assert.ok(msgs.length > 1, 'more than one message');
      const written: Buffer[] = [];
      for (const m of msgs) {
        assert.ok(m.payload.length < 65_536);
        const list = attrMap(m.payload, 4).get(SET_ELEM_LIST.ELEMENTS);
        assert.ok(list, 'an element list');
        written.push(list);
      }
      // The general writer (what every other set goes through), element by element.
      const w = new NlWriter();
      for (const r of rawElements(set, values.map((v) => ({ t: 'addr', family, start: v, end: v })))) {
        w.nest(LIST_ELEM, () => w.nest(SET_ELEM.KEY, () => w.bytes(DATA.VALUE, r.key)));
      }
      assert.ok(Buffer.concat(written).equals(w.finish()), `IPv${family}: the same bytes`);
      assert.deepEqual(elementsToIR({ ...set, timeout: false, dynamic: false, elements: [] }, decodeElemMessages(msgs), []).map((e) => (e.t === 'addr' ? e.start : -1n)), values);
    }
  });

  it('the in-place writer refuses what the general one would: a range, the other family, an address out of range', () => {
    const set = { name: 's', key: 'ipv4_addr' as const, interval: false };
    assert.throws(() => new BatchBuilder(1).elements('add', 't', set, [{ t: 'addr', family: 4, start: 1n, end: 2n }]), /single addresses only/);
    assert.throws(() => new BatchBuilder(1).elements('add', 't', set, [{ t: 'addr', family: 6, start: 1n, end: 1n }]), /family does not match/);
    assert.throws(() => new BatchBuilder(1).elements('add', 't', set, [{ t: 'addr', family: 4, start: 1n << 32n, end: 1n << 32n }]), /out of range/);
  });

  it('a port set of single ports is a hash set: no CONCAT flag, no field layout, one key an element; it refuses a range; decoding tells the two kinds apart', () => {
    const elems = [{ t: 'protoport' as const, proto: 6, from: 443, to: 443 }, { t: 'protoport' as const, proto: 17, from: 53, to: 53 }];
    const hash = { name: 'pp', key: 'inet_proto . inet_service' as const, interval: false, timeout: false, dynamic: false, elements: elems };
    const raw = rawElements(hash, elems);
    assert.deepEqual(raw.map((r) => [r.key.toString('hex'), r.keyEnd?.toString('hex') ?? null]), [['06000000' + '01bb0000', null], ['11000000' + '00350000', null]]);
    assert.throws(() => rawElements(hash, [{ t: 'protoport', proto: 6, from: 1, to: 2 }]), /single ports only/);
    const setMsg = (def: SetDef) => parseMessages(new BatchBuilder(1).addSet('t', { ...def, elements: [] }).finish()).find((m) => (m.type & 0xff) === MSG.NEWSET);
    const hashSet = decodeSet(setMsg(hash) as NonNullable<ReturnType<typeof setMsg>>);
    assert.equal(hashSet.set.interval, false);
    assert.equal(hashSet.anomaly, undefined);
    const flagsOf = (def: SetDef) => attrMap((setMsg(def) as NonNullable<ReturnType<typeof setMsg>>).payload, 4).get(SET.FLAGS)?.readUInt32BE(0);
    const descOf = (def: SetDef) => attrMap((setMsg(def) as NonNullable<ReturnType<typeof setMsg>>).payload, 4).get(SET.DESC);
    assert.equal(flagsOf(hash), 0, 'no CONCAT: the kernel refuses a field layout without it, and a hash set needs neither');
    const hashDesc = descOf(hash);
    assert.ok(hashDesc === undefined || !attrMap(hashDesc).has(SET_DESC.CONCAT));
    const ranged = { ...hash, interval: true };
    assert.equal(flagsOf(ranged), SET_F.INTERVAL | SET_F.CONCAT);
    assert.ok(attrMap(descOf(ranged) as Buffer).has(SET_DESC.CONCAT));
    // Decoding: a hash element is one port; an end on it, or none on an interval element, is malformed.
    const anomalies: string[] = [];
    const one = (key: string, keyEnd?: string) => ({ key: Buffer.from(key, 'hex'), ...(keyEnd ? { keyEnd: Buffer.from(keyEnd, 'hex') } : {}), end: false });
    assert.deepEqual(elementsToIR(hash, [one('0600000001bb0000')], anomalies), [{ t: 'protoport', proto: 6, from: 443, to: 443 }]);
    assert.deepEqual(anomalies, []);
    assert.deepEqual(elementsToIR(hash, [one('0600000001bb0000', '0600000001bc0000')], anomalies), []);
    assert.deepEqual(elementsToIR(ranged, [one('0600000001bb0000')], anomalies), []);
    assert.deepEqual(anomalies, ['set pp: malformed element', 'set pp: malformed element']);
  });

  it("what a tamperer could leave in a set and nft would print as Sluice's is reported: a catch-all element, a port element with bytes outside its fields, a port set with another field layout", () => {
    const list = (write: (w: NlWriter) => void) => {
      const w = new NlWriter();
      w.nest(SET_ELEM_LIST.ELEMENTS, () => write(w));
      return { type: 0, flags: 0, seq: 0, pid: 0, payload: Buffer.concat([Buffer.alloc(4), w.finish()]) };
    };
    const key = (w: NlWriter, hex: string) => w.nest(SET_ELEM.KEY, () => w.bytes(DATA.VALUE, Buffer.from(hex, 'hex')));
    const ports = { name: 'pp', key: 'inet_proto . inet_service' as const, interval: false, timeout: false, dynamic: false, elements: [] };
    const hosts = { name: 'h4', key: 'ipv4_addr' as const, interval: false, timeout: false, dynamic: false, elements: [] };
    // A catch-all element (no key; `nft add element ... { * }`), in any kind of set, beside a regular one.
    for (const [set, regular] of [[ports, '0600000001bb0000'], [hosts, 'c6120101']] as const) {
      const anomalies: string[] = [];
      const msg = list((w) => {
        w.nest(LIST_ELEM, () => key(w, regular));
        w.nest(LIST_ELEM, () => w.u32be(SET_ELEM.FLAGS, SET_ELEM_F_CATCHALL));
      });
      assert.equal(elementsToIR(set, decodeElemMessages([msg]), anomalies).length, 1, 'the regular element is read');
      assert.deepEqual(anomalies, [`set ${set.name}: a catch-all element (it matches every key)`]);
      const noKey: string[] = [];
      elementsToIR(set, decodeElemMessages([list((w) => w.nest(LIST_ELEM, () => w.u32be(SET_ELEM.FLAGS, 0)))]), noKey);
      assert.equal(noKey.length, 1, 'an element without a key is reported too');
    }
    // tcp . 443 with bytes 6-7 set: nft shows tcp . 443, the hash lookup matches no packet.
    for (const hex of ['0600000001bbffff', '0601000001bb0000']) {
      const anomalies: string[] = [];
      assert.deepEqual(elementsToIR(ports, decodeElemMessages([list((w) => w.nest(LIST_ELEM, () => key(w, hex)))]), anomalies), []);
      assert.deepEqual(anomalies, ['set pp: malformed element'], hex);
    }
    // An interval port set whose fields are [1, 1]: its lookups would compare a port's high byte only.
    const setMsg = (def: SetDef) => parseMessages(new BatchBuilder(1).addSet('t', { ...def, elements: [] }).finish()).find((m) => (m.type & 0xff) === MSG.NEWSET) as NonNullable<ReturnType<typeof parseMessages>[number]>;
    const ranged = { ...ports, interval: true };
    assert.equal(decodeSet(setMsg(ranged)).anomaly, undefined, 'the layout Sluice writes');
    assert.equal(decodeSet(setMsg(ports)).anomaly, undefined, 'a hash set: no layout');
    assert.deepEqual(KEY_INFO['inet_proto . inet_service'].fields, [1, 2]);
    const msg = setMsg(ranged);
    // The second field's length attribute (len 8, type NFTA_SET_FIELD_LEN, 2 big-endian) made 1.
    const fieldTwo = Buffer.from('0800010000000002', 'hex');
    const at = msg.payload.indexOf(fieldTwo);
    assert.ok(at > 0, 'the field layout is in the message');
    msg.payload[at + 7] = 1;
    assert.equal(decodeSet(msg).anomaly, 'set pp has a field layout Sluice does not write ([1, 1])');
    // And a hash set given one (the kernel takes it with the CONCAT flag).
    const hashMsg = setMsg(ports);
    assert.equal(hashMsg.payload.indexOf(fieldTwo), -1);
  });

  it('interval elements: start plus one-past-end, and a leading end at zero as nft writes them', () => {
    const raw = rawElements({ key: 'ipv4_addr', interval: true }, [{ t: 'addr', family: 4, start: 0xc6120000n, end: 0xc61200ffn }]);
    assert.deepEqual(
      raw.map((r) => [r.key.toString('hex'), r.flags ?? 0]),
      [
        ['00000000', 1],
        ['c6120000', 0],
        ['c6120100', 1],
      ],
    );
    const wild = rawElements({ key: 'ifname', interval: true }, [{ t: 'ifname', name: 'tun', wildcard: true }]);
    assert.equal(wild[1]?.key.toString('latin1').replace(/\0+$/, ''), 'tun');
    assert.equal(wild[2]?.key.toString('latin1').replace(/\0+$/, ''), 'tuo', 'a wildcard ends just past its prefix');
  });
});
