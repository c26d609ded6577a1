/**
 * The alert outbox at its edges: the bounds it gives up at (attempts, age,
 * queue length, the seen table), rows it cannot read, the counters and the
 * head of the queue, each at the boundary where the decision changes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { backoffMs, MAX_AGE_MS, MAX_ATTEMPTS, MAX_QUEUED, Outbox, type OutboxRow } from '../../src/alerts/outbox.js';
import type { AlertMessage } from '../../src/alerts/rollup.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-outbox-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = () => join(dir, `o${++n}.db`);
const msg = (text: string, route = 'ops'): AlertMessage => ({ route, trigger: 'blocked', severity: 'warning', count: 1, first: 'a', last: 'b', message: text, text });
const must = (r: OutboxRow | null): OutboxRow => {
  assert.ok(r, 'a row is due');
  return r;
};

describe('unit: the outbox at its bounds', () => {
  it('a row is due from its next_at on, not a millisecond before', () => {
    const o = new Outbox(file());
    o.enqueue('ops', msg('one'), 5_000);
    assert.equal(o.next('ops', 4_999), null);
    assert.equal(must(o.next('ops', 5_000)).message.text, 'one');
    o.close();
  });

  it('given up on the attempt that reaches MAX_ATTEMPTS, retried on the one before; the error kept to 500 characters; given_up_at recorded', () => {
    const path = file();
    const o = new Outbox(path);
    o.enqueue('ops', msg('x'), 0);
    const row = must(o.next('ops', 0));
    assert.equal(o.failedAttempt({ ...row, attempts: MAX_ATTEMPTS - 2 }, 'e'.repeat(600), 10), false, 'attempt MAX-1 is retried');
    const again = must(o.next('ops', Number.MAX_SAFE_INTEGER));
    assert.equal(again.attempts, MAX_ATTEMPTS - 1);
    assert.equal(again.nextAt, 10 + backoffMs(MAX_ATTEMPTS - 1));
    assert.equal(again.lastError, 'e'.repeat(500));
    assert.equal(o.counters('ops').lastError, 'e'.repeat(500), "the head's last error");
    assert.equal(o.counters('ops').retried, 1);
    const before = Date.now();
    assert.equal(o.failedAttempt(again, 'refused', 20), true, 'attempt MAX is given up');
    assert.equal(o.next('ops', Number.MAX_SAFE_INTEGER), null);
    assert.deepEqual({ failed: o.counters('ops').failed, queued: o.counters('ops').queued, retried: o.counters('ops').retried }, { failed: 1, queued: 0, retried: 1 });
    o.close();
    const db = new Database(path, { readonly: true });
    const at = (db.prepare("SELECT value FROM counters WHERE route = 'ops' AND name = 'given_up_at'").get() as { value: number } | undefined)?.value;
    db.close();
    assert.ok(at !== undefined && at >= before && at <= Date.now(), `given_up_at is when it was given up (${at})`);
  });

  it('given up once MAX_AGE_MS have passed since it was stored, retried a millisecond before', () => {
    const o = new Outbox(file());
    o.enqueue('ops', msg('x'), 1_000);
    const row = must(o.next('ops', 1_000));
    assert.equal(o.failedAttempt(row, 'down', 1_000 + MAX_AGE_MS - 1), false);
    const again = must(o.next('ops', Number.MAX_SAFE_INTEGER));
    assert.equal(o.failedAttempt(again, 'down', 1_000 + MAX_AGE_MS), true);
    assert.equal(o.counters('ops').failed, 1);
    o.close();
  });

  it('a route holds MAX_QUEUED alerts: the next one gives up the oldest, counted, and the count stays right across a reopen', () => {
    const path = file();
    let o = new Outbox(path);
    o.enqueueMany(Array.from({ length: MAX_QUEUED }, (_, i) => msg(`m${i}`)), 0);
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: MAX_QUEUED, failed: 0 }, 'exactly MAX_QUEUED are all kept');
    o.enqueueMany([msg('last'), msg('other', 'sec')], 0);
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: MAX_QUEUED, failed: 1 });
    assert.equal(must(o.next('ops', 0)).message.text, 'm1', 'the oldest went');
    assert.deepEqual({ queued: o.counters('sec').queued, failed: o.counters('sec').failed }, { queued: 1, failed: 0 }, 'another route is not touched');
    o.close();
    o = new Outbox(path);
    assert.equal(o.counters('ops').queued, MAX_QUEUED, 'counted again after a reopen');
    o.enqueue('ops', msg('one more'), 0);
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: MAX_QUEUED, failed: 2 });
    assert.equal(must(o.next('ops', 0)).message.text, 'm2');
    o.close();
  });

  it('rows it cannot read (not JSON, or JSON that is no alert object) are given up, counted, and the next readable one is returned, however many there are', () => {
    const path = file();
    let o = new Outbox(path);
    o.enqueue('ops', msg('first'), 0);
    o.close();
    const db = new Database(path);
    const bad = db.prepare("INSERT INTO outbox (route, body, created, next_at) VALUES ('ops', ?, 0, 0)");
    db.transaction(() => {
      const kinds = ['not json', '{"cut', 'null', '123', '"text"', '[1,2]'];
      for (let i = 0; i < 30_000; i++) bad.run(kinds[i % kinds.length]);
    })();
    db.prepare("INSERT INTO outbox (route, body, created, next_at) VALUES ('ops', ?, 0, 0)").run(JSON.stringify(msg('after')));
    db.prepare("UPDATE outbox SET body = '{' WHERE id = 1").run();
    db.close();
    o = new Outbox(path);
    assert.equal(must(o.next('ops', 0)).message.text, 'after');
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: 1, failed: 30_001 });
    o.close();
  });

  it('delivering or giving up a row of a route not counted yet in this process counts it first (the count never goes below the rows left)', () => {
    const path = file();
    let o = new Outbox(path);
    o.enqueueMany([msg('a'), msg('b'), msg('c')], 0);
    o.close();
    o = new Outbox(path);
    o.delivered(must(o.next('ops', 0)).id, 'ops');
    assert.equal(o.counters('ops').queued, 2);
    o.delivered(999_999, 'ops');
    assert.equal(o.counters('ops').queued, 2, 'a row already gone changes no count');
    o.close();
  });

  it("counters: the head's age and error, zeroes for a route never seen; routes() lists routes with rows or counters, sorted", () => {
    const o = new Outbox(file());
    assert.deepEqual(o.counters('none'), { delivered: 0, retried: 0, failed: 0, queued: 0, oldestQueued: null, lastError: null });
    o.enqueue('zeta', msg('z', 'zeta'), Date.UTC(2026, 0, 2, 3, 4, 5));
    o.enqueue('alpha', msg('a', 'alpha'), 0);
    o.delivered(must(o.next('alpha', 0)).id, 'alpha');
    assert.equal(o.counters('zeta').oldestQueued, '2026-01-02T03:04:05.000Z');
    assert.deepEqual(o.routes(), ['alpha', 'zeta']);
    assert.equal(o.nextDue('alpha'), null);
    assert.equal(o.nextDue('zeta'), Date.UTC(2026, 0, 2, 3, 4, 5));
    assert.equal(o.dropRoute('alpha'), 0);
    assert.equal(o.counters('alpha').failed, 0, 'dropping an empty route gives nothing up');
    o.close();
  });

  it('backoff at its ends: a first failure waits 1 s, and the exponent is capped before it overflows', () => {
    assert.equal(backoffMs(0), 1000);
    assert.equal(backoffMs(-5), 1000);
    assert.equal(backoffMs(21), 300_000);
    assert.equal(backoffMs(1e9), 300_000);
  });
});

describe('unit: what new-destination remembers', () => {
  it('since: the first call records it and later ones keep it; pairs: the newest `limit`, oldest first', () => {
    const o = new Outbox(file());
    assert.deepEqual(o.seen(10, 1_000), { since: 1_000, pairs: [] });
    o.addSeen([1, 2, 3].map((i) => ({ who: 'w', destination: `d${i}`, first: 100 * i })));
    assert.deepEqual(o.seen(2, 5_000), {
      since: 1_000,
      pairs: [
        { who: 'w', destination: 'd2' },
        { who: 'w', destination: 'd3' },
      ],
    });
    o.close();
  });

  it('at most `max` pairs: exactly max kept, one more pushes out the oldest by first sight; a pair seen again adds nothing', () => {
    const path = file();
    let o = new Outbox(path);
    o.addSeen([1, 2, 3].map((i) => ({ who: 'w', destination: `d${i}`, first: i })), 3);
    assert.equal(o.seen(10).pairs.length, 3);
    o.addSeen([{ who: 'w', destination: 'd1', first: 50 }], 3);
    assert.deepEqual(o.seen(10).pairs.map((p) => p.destination), ['d1', 'd2', 'd3'], 'd1 again: no new row, nothing pushed out');
    o.addSeen([], 3);
    o.close();
    o = new Outbox(path);
    o.addSeen([{ who: 'w', destination: 'd4', first: 4 }], 3);
    assert.deepEqual(o.seen(10).pairs.map((p) => p.destination), ['d2', 'd3', 'd4'], 'counted afresh after a reopen');
    o.close();
  });
  it('a file that is not a database is refused at open, not at the first alert', () => {
    const path = file();
    writeFileSync(path, 'this is not an SQLite database, and it is long enough to have a header: '.repeat(20));
    assert.throws(() => new Outbox(path), /not a database|file is not a database/i);
  });

  it('ids: one per alert stored, in order, the row next() returns; nothing stored for none', () => {
    const o = new Outbox(file());
    assert.deepEqual(o.enqueueMany([], 0), []);
    const ids = o.enqueueMany([msg('a'), msg('b', 'dev'), msg('c')], 0);
    assert.equal(ids.length, 3);
    assert.ok(ids.every((id) => Number.isInteger(id)) && (ids[0] as number) < (ids[1] as number) && (ids[1] as number) < (ids[2] as number), JSON.stringify(ids));
    assert.equal(must(o.next('ops', 0)).id, ids[0]);
    assert.equal(must(o.next('dev', 0)).id, ids[1]);
    const one = o.enqueue('ops', msg('d'), 0);
    assert.ok(Number.isInteger(one) && one > (ids[2] as number));
    o.close();
  });

  it('asking about a route with nothing queued, or dropping it, leaves no trace: routes() does not list it', () => {
    const o = new Outbox(file());
    o.enqueue('ops', msg('a'), 0);
    assert.equal(o.next('ghost', 0), null);
    assert.equal(o.dropRoute('ghost'), 0);
    assert.equal(must(o.next('ops', 0)).message.text, 'a');
    assert.deepEqual(o.routes(), ['ops']);
    assert.deepEqual(o.counters('ops').failed, 0, 'a readable row is no failure');
    o.close();
  });

  it('a failure while giving up unreadable rows rolls all of it back and throws; the count is taken again from the table', () => {
    const path = file();
    const o = new Outbox(path);
    o.enqueueMany([msg('a'), msg('b'), msg('c')], 0);
    assert.equal(o.counters('ops').queued, 3);
    // Two unreadable heads; deleting the second fails (a trigger another connection put there).
    const db = new Database(path);
    db.prepare("UPDATE outbox SET body = 'not json' WHERE id IN (1, 2)").run();
    db.exec("CREATE TRIGGER refuse BEFORE DELETE ON outbox WHEN OLD.id = 2 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
    db.close();
    assert.throws(() => o.next('ops', 0), /refused by the test/);
    // Rolled back: the first row is back, nothing counted as failed, and the count says 3 rows again.
    assert.deepEqual({ queued: o.counters('ops').queued, failed: o.counters('ops').failed }, { queued: 3, failed: 0 });
    o.close();
  });

  it('after close, the outbox refuses to work (the file is released)', () => {
    const o = new Outbox(file());
    o.close();
    assert.throws(() => o.enqueue('ops', msg('late'), 0), /not open|closed/i);
  });
});
