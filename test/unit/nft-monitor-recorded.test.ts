/**
 * NftMonitor fed with notifications a kernel really sent
 * (test/fixtures/nft-notifications.json, recorded by
 * scripts/capture-nft-notifications.mjs: `nft` changing a table in a
 * network namespace): what it reports for each transaction, whose
 * transactions are its own, and what it does when the socket says
 * notifications were lost, delivers a malformed datagram, or is drained.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MalformedNetlink, NlWriter, parseMessages, type NlMsg } from '../../src/netfilter/nl-attr.js';
import { MSG, NFNL_SUBSYS_NFTABLES, NFNL_SUBSYS_ULOG, NFPROTO_INET, NFPROTO_UNSPEC } from '../../src/netfilter/nl-constants.js';
import { NftMonitor, parseNftNotification, TransactionGrouper, type NftTransaction, type NotificationSource } from '../../src/netfilter/nft-monitor.js';
import { ROOT } from '../support/fixtures.js';

interface Step {
  what: string;
  nft: string;
  nftPid: number;
  datagrams: string[];
}
const fixture = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/nft-notifications.json'), 'utf8')) as { kernel: string; steps: Step[] };
const step = (what: string): Buffer[] => {
  const s = fixture.steps.find((x) => x.what === what);
  assert.ok(s, `the fixture has the step "${what}"`);
  return s.datagrams.map((d) => Buffer.from(d, 'hex'));
};
const pidOf = (what: string) => (fixture.steps.find((x) => x.what === what) as Step).nftPid;

/** A source that delivers what the test says, as the socket would. */
class Recorded implements NotificationSource {
  deliver: ((err: (Error & { code?: string }) | null, data: Buffer | null) => void) | undefined;
  queue: (Buffer | Error)[] = [];
  reads = 0;
  closed = 0;
  watch(cb: (err: (Error & { code?: string }) | null, data: Buffer | null) => void): void {
    this.deliver = cb;
  }
  recv(): Buffer | null {
    this.reads++;
    const x = this.queue.shift();
    if (x instanceof Error) throw x;
    return x ?? null;
  }
  close(): void {
    this.closed++;
  }
  push(...data: Buffer[]): void {
    for (const d of data) this.deliver?.(null, d);
  }
}

const errno = (code: string) => Object.assign(new Error(code), { code });

function monitor(opts: { isOwn?: (pid: number) => boolean; onTransaction?: (t: NftTransaction) => void } = {}) {
  const source = new Recorded();
  const seen: NftTransaction[] = [];
  const lost: string[] = [];
  const m = new NftMonitor('sluice', NFPROTO_INET, opts.onTransaction ?? ((t) => seen.push(t)), (why) => lost.push(why), { source, ...(opts.isOwn ? { isOwn: opts.isOwn } : {}) });
  return { m, source, seen, lost };
}

describe('unit: NftMonitor on recorded kernel notifications', () => {
  it('the fixture is what a kernel sent: each step a datagram of changes, then the NEWGEN that closes the transaction', () => {
    assert.ok(fixture.steps.length >= 13);
    for (const s of fixture.steps) {
      const msgs = s.datagrams.flatMap((d) => parseMessages(Buffer.from(d, 'hex')));
      assert.equal(msgs.at(-1)?.type, (NFNL_SUBSYS_NFTABLES << 8) | MSG.NEWGEN, s.what);
    }
  });

  it('each transaction nft committed on the table, in words, with the generation, pid and name the kernel gave', () => {
    const { m, source, seen, lost } = monitor();
    const expected: [string, string[]][] = [
      ['add a table', ['added or changed table']],
      ['add a base chain', ['added or changed chain output']],
      ['add a rule', ['added or replaced rule in chain output']],
      ['add a set with timeouts', ['added or changed set r_api_d4']],
      ['add two elements', ['added elements to set r_api_d4 (2)']],
      ['delete one element', ['deleted elements from set r_api_d4']],
      ['add a named counter', ['added or changed object c_api']],
      ['add a rule and an element in one transaction', ['added or replaced rule in chain output', 'added elements to set r_api_d4']],
      ['another table', []],
      ['the same name in another family', []],
      ['flush the chain', ['deleted rule in chain output (2)']],
      ['flush the set', ['deleted elements from set r_api_d4 (2)']],
      ['delete the table', ['deleted set r_api_d4', 'deleted object c_api', 'deleted chain output', 'deleted table']],
    ];
    let generation: number | undefined;
    for (const [what, changes] of expected) {
      source.push(...step(what));
      const t = seen.splice(0);
      if (changes.length === 0) {
        assert.deepEqual(t, [], `${what}: not about inet sluice`);
        continue;
      }
      assert.equal(t.length, 1, what);
      const tx = t[0] as NftTransaction;
      assert.deepEqual({ ...tx, generation: undefined }, { changes, pid: pidOf(what), comm: 'nft', generation: undefined }, what);
      assert.ok(generation === undefined || (tx.generation ?? 0) > generation, `${what}: the generation grows`);
      generation = tx.generation;
    }
    assert.deepEqual(lost, []);
    assert.deepEqual(m.stats, { transactions: 11, overflows: 0, malformed: 0 });
  });

  it('a transaction of this process is reported as its own, unread; an empty NEWGEN after it reports nothing', () => {
    const own = pidOf('delete one element');
    const { m, source, seen } = monitor({ isOwn: (pid) => pid === own });
    source.push(...step('add two elements'), ...step('delete one element'));
    assert.deepEqual(
      seen.map((t) => ({ ...t, generation: 0 })),
      [
        { changes: ['added elements to set r_api_d4 (2)'], pid: pidOf('add two elements'), comm: 'nft', generation: 0 },
        { changes: [], own: true, pid: own, comm: 'nft', generation: 0 },
      ],
    );
    // The NEWGEN alone again (a transaction that touched nothing): nothing, own or not.
    const newgen = step('delete one element').at(-1) as Buffer;
    source.push(newgen);
    assert.equal(seen.length, 2, 'a NEWGEN with nothing before it is no transaction');
    assert.equal(m.stats.transactions, 2);
  });

  it('notifications lost (ENOBUFS): reported, counted, and the partial transaction is forgotten; other socket errors and empty reads are nothing', () => {
    const { m, source, seen, lost } = monitor();
    const [changes, newgen] = step('add a rule') as [Buffer, Buffer];
    source.push(changes);
    source.deliver?.(errno('ENOBUFS'), null);
    source.push(newgen);
    assert.equal(seen.length, 0, 'the changes before the loss are not told as that NEWGEN\'s transaction');
    assert.deepEqual(lost, ['notifications were lost (receive buffer full)']);
    assert.deepEqual(m.stats, { transactions: 0, overflows: 1, malformed: 0 });
    source.deliver?.(errno('EAGAIN'), null);
    source.deliver?.(null, null);
    assert.deepEqual(lost, ['notifications were lost (receive buffer full)'], 'not a loss');
    source.push(...step('add a rule'));
    assert.deepEqual(seen.map((t) => t.changes), [['added or replaced rule in chain output']], 'reading goes on');
    assert.equal(m.stats.overflows, 1);
  });

  it('a malformed datagram: reported, counted, and what came before it in the transaction is forgotten', () => {
    const { m, source, seen, lost } = monitor();
    const [changes, newgen] = step('add a rule') as [Buffer, Buffer];
    source.push(changes);
    // A message whose attribute claims more bytes than it has.
    const bad = Buffer.from(newgen);
    bad.writeUInt16LE(200, 20);
    source.push(bad);
    assert.deepEqual(lost, ['a malformed notification']);
    assert.deepEqual(m.stats, { transactions: 0, overflows: 0, malformed: 1 });
    source.push(newgen);
    assert.deepEqual(seen, []);
  });

  it('an error that is not about the bytes (the callback throwing) is not taken for a malformed notification', () => {
    const { m, source, lost } = monitor({
      onTransaction: () => {
        throw new TypeError('boom');
      },
    });
    assert.throws(() => source.push(...step('add a table')), /boom/);
    assert.deepEqual(lost, []);
    assert.equal(m.stats.malformed, 0);
  });

  it('drain reads what is queued now, at most `max` datagrams; a loss on the way is reported and reading goes on; another error stops it', () => {
    const { m, source, seen, lost } = monitor();
    source.queue.push(...step('add a table'), ...step('add a base chain'), ...step('add a rule'));
    m.drain(3);
    assert.equal(source.reads, 3);
    assert.deepEqual(seen.map((t) => t.changes), [['added or changed table']], 'three datagrams: one transaction and half of the next');
    m.drain();
    assert.deepEqual(seen.map((t) => t.changes), [['added or changed table'], ['added or changed chain output'], ['added or replaced rule in chain output']]);
    assert.equal(source.reads, 3 + 4, 'three more datagrams, then the read that found nothing');

    source.queue.push(step('add a set with timeouts')[0] as Buffer, errno('ENOBUFS'), ...step('add two elements'));
    m.drain();
    assert.deepEqual(lost, ['notifications were lost (receive buffer full)']);
    assert.equal(m.stats.overflows, 1);
    assert.deepEqual(seen.at(-1)?.changes, ['added elements to set r_api_d4 (2)'], 'read on after the loss; the set\'s half-transaction forgotten');
    assert.equal(seen.length, 4);

    source.queue.push(errno('EBADF'), ...step('add a named counter'));
    m.drain();
    assert.equal(source.queue.length, 2, 'stopped at the error');
    assert.equal(seen.length, 4);
    m.drain(0);
    assert.equal(source.queue.length, 2, 'drain(0) reads nothing');
    m.close();
    assert.equal(source.closed, 1);
  });
});

describe('unit: nf_tables notifications, the edges', () => {
  const T = (m: number) => (NFNL_SUBSYS_NFTABLES << 8) | m;
  function msg(type: number, family: number, attrs: (w: NlWriter) => void): NlMsg {
    const w = new NlWriter(256);
    w.beginMsg(type, 0, 1, family);
    attrs(w);
    w.endMsg();
    return parseMessages(w.finish())[0] as NlMsg;
  }

  it('a message shorter than the nfgenmsg header is refused as such', () => {
    const short: NlMsg = { type: T(MSG.DELTABLE), flags: 0, seq: 0, pid: 0, payload: Buffer.from([NFPROTO_INET, 0]) };
    assert.throws(() => parseNftNotification(short, 'sluice', NFPROTO_INET), (e: unknown) => e instanceof MalformedNetlink && /nf_tables notification shorter than its header/.test(e.message));
  });

  it('another subsystem\'s message is not part of a transaction, even of this process\'s own', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t), () => true);
    g.feed(msg((NFNL_SUBSYS_ULOG << 8) | 1, NFPROTO_INET, (w) => w.str(1, 'sluice')));
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => w.u32be(1, 3).u32be(2, 7)));
    assert.deepEqual(seen, []);
  });

  it('a NEWGEN without a generation id reports none (no key), after an own transaction nothing is carried over', () => {
    const seen: NftTransaction[] = [];
    const g = new TransactionGrouper('sluice', NFPROTO_INET, (t) => seen.push(t), (pid) => pid === 7);
    g.feed(msg(T(MSG.DELTABLE), NFPROTO_INET, (w) => w.str(1, 'sluice')));
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => w.u32be(2, 8).str(3, 'nft')));
    assert.deepEqual(seen, [{ pid: 8, comm: 'nft', changes: ['deleted table'] }]);
    assert.ok(!('generation' in (seen[0] as object)));
    g.feed(msg(T(MSG.DELTABLE), NFPROTO_INET, (w) => w.str(1, 'sluice')));
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => w.u32be(1, 9).u32be(2, 7)));
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => w.u32be(1, 10).u32be(2, 7)));
    assert.deepEqual(seen.slice(1), [{ generation: 9, pid: 7, changes: [], own: true }], 'the second own NEWGEN closed an empty transaction');
    // A partial transaction forgotten (lost messages), then this process's NEWGEN: nothing is left of it.
    g.feed(msg(T(MSG.DELTABLE), NFPROTO_INET, (w) => w.str(1, 'sluice')));
    g.reset();
    g.feed(msg(T(MSG.NEWGEN), NFPROTO_UNSPEC, (w) => w.u32be(1, 11).u32be(2, 7)));
    assert.equal(seen.length, 2, 'reset leaves no message behind');
  });
});
