/**
 * nf_tables change notifications as the tamper watchdog reads them: which
 * messages are about Sluice's table, how they group into transactions, what
 * a NEWGEN says about the committing process, and that any bytes the socket
 * delivers either parse or are refused as malformed (never another error).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { NlWriter, MalformedNetlink, parseMessages, type NlMsg } from '../../src/netfilter/nl-attr.js';
import { MSG, NFNL_SUBSYS_NFTABLES, NFNL_SUBSYS_ULOG, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_UNSPEC, NLA_F_NESTED } from '../../src/netfilter/nl-constants.js';
import { parseNftNotification, TransactionGrouper, type NftTransaction } from '../../src/netfilter/nft-monitor.js';
import { runs } from './support/arbitraries.js';

const T = (m: number) => (NFNL_SUBSYS_NFTABLES << 8) | m;

function msg(type: number, family: number, attrs: (w: NlWriter) => void): NlMsg {
  const w = new NlWriter(256);
  w.beginMsg(type, 0, 1, family);
  attrs(w);
  w.endMsg();
  const m = parseMessages(w.finish())[0];
  assert.ok(m);
  return m;
}

const table = (type: number, name = 'sluice', family = NFPROTO_INET) => msg(T(type), family, (w) => w.str(1, name));
const chain = (type: number, name: string) => msg(T(type), NFPROTO_INET, (w) => w.str(1, 'sluice').str(3, name));
const rule = (type: number, chainName: string) => msg(T(type), NFPROTO_INET, (w) => w.str(1, 'sluice').str(2, chainName));
const elems = (type: number, set: string, n: number) =>
  msg(T(type), NFPROTO_INET, (w) =>
    w
      .str(1, 'sluice')
      .str(2, set)
      .nest(3, () => {
        for (let i = 0; i < n; i++) w.nest(1, () => w.u32be(1, i));
      }),
  );
const gen = (pid?: number, comm?: string) =>
  msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => {
    w.u32be(1, 77);
    if (pid !== undefined) w.u32be(2, pid);
    if (comm !== undefined) w.str(3, comm);
  });

describe('unit: nf_tables notifications', () => {
  it('names each kind of change to the table, and nothing about other tables, families or subsystems', () => {
    assert.deepEqual(parseNftNotification(table(MSG.DELTABLE), 'sluice', NFPROTO_INET), { change: { what: 'deleted table', count: 1 } });
    assert.deepEqual(parseNftNotification(chain(MSG.NEWCHAIN, 'output'), 'sluice', NFPROTO_INET), { change: { what: 'added or changed chain output', count: 1 } });
    assert.deepEqual(parseNftNotification(rule(MSG.DELRULE, 'dns_redirect'), 'sluice', NFPROTO_INET), { change: { what: 'deleted rule in chain dns_redirect', count: 1 } });
    assert.deepEqual(parseNftNotification(elems(MSG.NEWSETELEM, 'r_api_d4', 3), 'sluice', NFPROTO_INET), { change: { what: 'added elements to set r_api_d4', count: 3 } });
    assert.deepEqual(parseNftNotification(elems(MSG.DELSETELEM, 'r_api_d4', 1), 'sluice', NFPROTO_INET), { change: { what: 'deleted elements from set r_api_d4', count: 1 } });
    assert.deepEqual(parseNftNotification(msg(T(MSG.DELSET), NFPROTO_INET, (w) => w.str(1, 'sluice').str(2, 'r_lan_4')), 'sluice', NFPROTO_INET), { change: { what: 'deleted set r_lan_4', count: 1 } });
    assert.deepEqual(parseNftNotification(msg(T(MSG.DELOBJ), NFPROTO_INET, (w) => w.str(1, 'sluice').str(2, 'r_api')), 'sluice', NFPROTO_INET), { change: { what: 'deleted object r_api', count: 1 } });
    assert.equal(parseNftNotification(table(MSG.DELTABLE, 'filter'), 'sluice', NFPROTO_INET), null, 'another table');
    assert.equal(parseNftNotification(table(MSG.DELTABLE, 'sluice', NFPROTO_IPV4), 'sluice', NFPROTO_INET), null, 'ip sluice is not inet sluice');
    assert.equal(parseNftNotification(msg((NFNL_SUBSYS_ULOG << 8) | 0, NFPROTO_INET, (w) => w.str(1, 'sluice')), 'sluice', NFPROTO_INET), null, 'another subsystem');
    assert.equal(parseNftNotification(table(MSG.GETTABLE), 'sluice', NFPROTO_INET), null, 'not a change');
  });

  it('every kind of change in words; attributes in any order; a missing name is "?"; a header-only message is no change, a shorter one malformed', () => {
    const w = (type: number) => parseNftNotification(table(type), 'sluice', NFPROTO_INET);
    assert.deepEqual(w(MSG.NEWTABLE), { change: { what: 'added or changed table', count: 1 } });
    assert.deepEqual(parseNftNotification(chain(MSG.DELCHAIN, 'output'), 'sluice', NFPROTO_INET), { change: { what: 'deleted chain output', count: 1 } });
    assert.deepEqual(parseNftNotification(msg(T(MSG.NEWSET), NFPROTO_INET, (x) => x.str(1, 'sluice').str(2, 's')), 'sluice', NFPROTO_INET), { change: { what: 'added or changed set s', count: 1 } });
    assert.deepEqual(parseNftNotification(msg(T(MSG.NEWOBJ), NFPROTO_INET, (x) => x.str(1, 'sluice').str(2, 'c')), 'sluice', NFPROTO_INET), { change: { what: 'added or changed object c', count: 1 } });
    // The chain's name before the table's: the table is found by its attribute type, not its place.
    assert.deepEqual(parseNftNotification(msg(T(MSG.DELCHAIN), NFPROTO_INET, (x) => x.str(3, 'output').str(1, 'sluice')), 'sluice', NFPROTO_INET), { change: { what: 'deleted chain output', count: 1 } });
    assert.deepEqual(parseNftNotification(msg(T(MSG.DELRULE), NFPROTO_INET, (x) => x.str(1, 'sluice')), 'sluice', NFPROTO_INET), { change: { what: 'deleted rule in chain ?', count: 1 } });
    assert.equal(parseNftNotification(msg(T(MSG.DELRULE), NFPROTO_INET, (x) => x.str(2, 'output')), 'sluice', NFPROTO_INET), null, 'no table name: not about this table');
    const headerOnly: NlMsg = { type: T(MSG.DELTABLE), flags: 0, seq: 0, pid: 0, payload: Buffer.from([NFPROTO_INET, 0, 0, 0]) };
    assert.equal(parseNftNotification(headerOnly, 'sluice', NFPROTO_INET), null);
    assert.throws(() => parseNftNotification({ ...headerOnly, payload: Buffer.from([NFPROTO_INET, 0, 0]) }, 'sluice', NFPROTO_INET), MalformedNetlink);
    assert.deepEqual(parseNftNotification(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (x) => x.u32be(2, 9)), 'sluice', NFPROTO_INET), { gen: { pid: 9 } }, 'no generation id: none reported');
  });

  it('a NEWGEN with nothing before it reports nothing; a transaction without a pid is reported without one', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t), () => true);
    g.feed(gen(1, 'node'));
    assert.deepEqual(seen, [], 'an empty transaction (own or not) is nothing');
    g.feed(table(MSG.DELTABLE));
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (x) => x.u32be(1, 5)));
    assert.deepEqual(seen, [{ generation: 5, changes: ['deleted table'] }], 'no pid: not known to be its own, read');
  });

  it('a NEWGEN names the committing task; a name the committer chose is made printable and bounded', () => {
    assert.deepEqual(parseNftNotification(gen(4242, 'nft'), 'sluice', NFPROTO_INET), { gen: { id: 77, pid: 4242, comm: 'nft' } });
    assert.deepEqual(parseNftNotification(gen(), 'sluice', NFPROTO_INET), { gen: { id: 77 } }, 'an older kernel says only the generation');
    const hostile = parseNftNotification(gen(1, 'a b\u001b[31m\n'.padEnd(100, 'x')), 'sluice', NFPROTO_INET);
    assert.ok(hostile && 'gen' in hostile);
    assert.match(hostile.gen.comm ?? '', /^[\x21-\x7e]{1,64}$/);
    assert.equal(hostile.gen.comm?.slice(0, 6), 'a?b?[3');
  });

  it('groups a transaction\'s changes until its NEWGEN, with counts; transactions that did not touch the table are not reported', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t));
    g.feed(table(MSG.NEWTABLE, 'other'));
    g.feed(gen(10, 'firewalld'));
    assert.equal(seen.length, 0);
    g.feed(rule(MSG.DELRULE, 'output'));
    g.feed(rule(MSG.DELRULE, 'output'));
    g.feed(elems(MSG.NEWSETELEM, 's', 2));
    g.feed(elems(MSG.NEWSETELEM, 's', 5));
    g.feed(gen(11, 'nft'));
    assert.deepEqual(seen, [{ generation: 77, pid: 11, comm: 'nft', changes: ['deleted rule in chain output (2)', 'added elements to set s (7)'] }]);
    // A partial transaction whose end was lost is forgotten, not merged into the next one.
    g.feed(table(MSG.DELTABLE));
    g.reset();
    g.feed(rule(MSG.NEWRULE, 'output'));
    g.feed(gen(12, 'nft'));
    assert.deepEqual(seen[1]?.changes, ['added or replaced rule in chain output']);
  });

  it('this process\'s own transactions are reported as its own without their messages being read; another\'s are read', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t), (pid) => pid === 7);
    const broken: NlMsg = { type: T(MSG.NEWSETELEM), flags: 0, seq: 0, pid: 0, payload: Buffer.from([1, 0, 0, 0, 200, 0, 1, 0]) };
    g.feed(broken);
    g.feed(gen(7, 'node'));
    assert.deepEqual(seen, [{ generation: 77, pid: 7, comm: 'node', changes: [], own: true }], 'not read: a malformed message in it is not an error');
    g.feed(broken);
    assert.throws(() => g.feed(gen(8, 'nft')), MalformedNetlink, 'another process\'s transaction is read');
  });

  it('a transaction too large to hold is reported with the count of messages not read', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t));
    for (let i = 0; i < 4_100; i++) g.feed(table(MSG.NEWTABLE, 'other'));
    g.feed(gen(9, 'nft'));
    assert.deepEqual(seen[0]?.changes, ['notifications not read (too many in one transaction) (4)']);
  });

  it('a flush of many chains is a bounded list: beyond 32 kinds of change, one "other changes" line with their count', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t));
    for (let i = 0; i < 40; i++) g.feed(rule(MSG.DELRULE, `c${i}`));
    g.feed(gen(1, 'nft'));
    assert.equal(seen[0]?.changes.length, 33);
    assert.equal(seen[0]?.changes.at(-1), 'other changes (8)');
  });

  it('fuzz: any message body either parses or is refused as malformed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x0fff }), fc.uint8Array({ maxLength: 200 }), (type, body) => {
        const m: NlMsg = { type, flags: 0, seq: 0, pid: 0, payload: Buffer.from(body) };
        try {
          parseNftNotification(m, 'sluice', NFPROTO_INET);
        } catch (e) {
          if (!(e instanceof MalformedNetlink)) throw e;
        }
      }),
      runs(2000),
    );
    // Structured: valid attribute runs with random types and contents, nested or not.
    const attr = fc.record({ type: fc.integer({ min: 0, max: 8 }), nested: fc.boolean(), data: fc.uint8Array({ maxLength: 24 }) });
    fc.assert(
      fc.property(fc.constantFrom(...Object.values(MSG)), fc.constantFrom(NFPROTO_INET, NFPROTO_IPV4, NFPROTO_UNSPEC), fc.array(attr, { maxLength: 6 }), (type, family, attrs) => {
        const m = msg(T(type), family, (w) => {
          for (const a of attrs) w.bytes(a.type | (a.nested ? NLA_F_NESTED : 0), Buffer.from(a.data));
        });
        const g = new TransactionGrouper('sluice', NFPROTO_INET, () => undefined);
        try {
          g.feed(m);
        } catch (e) {
          if (!(e instanceof MalformedNetlink)) throw e;
        }
      }),
      runs(2000),
    );
  });
});
