/** The event loop's side of DNS query attribution: batching, and what happens when the worker fails. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AttributionClient } from '../../src/dns/attribution-client.js';

const script = new URL('./support/fake-attribution-worker.js', import.meta.url);
const client = (port: number) => ({ address: '127.0.0.1', port, transport: 'udp' as const });

describe('unit: AttributionClient', () => {
  // The client's worker and timers are unref'd (they must not keep the daemon alive on the way
  // out); this keeps the test process alive while a test waits on them.
  let keepAlive: NodeJS.Timeout;
  before(() => {
    keepAlive = setInterval(() => undefined, 1000);
  });
  after(() => clearInterval(keepAlive));

  it('requests made together go over as one batch, and each gets its own answer', async () => {
    const c = new AttributionClient({ script, procRoot: 'echo' });
    try {
      const [a, b, d] = await Promise.all([c.identify([client(1)]), c.identify([client(2), client(3)]), c.identify([client(5)])]);
      assert.deepEqual(a.map((x) => x?.pid), [1]);
      assert.deepEqual(b.map((x) => x?.pid), [undefined, 3]);
      assert.deepEqual(d.map((x) => x?.pid), [5]);
      assert.equal(c.stats.lookups, 4, 'one message carried all four clients');
      assert.equal(c.stats.unanswered, 0);
    } finally {
      await c.close();
    }
  });

  it('a worker that hangs is replaced: its batch fails after the timeout, counted, and nothing waits on it again', async () => {
    const c = new AttributionClient({ script, procRoot: 'hang' });
    try {
      const t0 = Date.now();
      const got = await c.identify([client(1), client(3)]);
      const waited = Date.now() - t0;
      assert.deepEqual(got, [undefined, undefined]);
      assert.ok(waited >= 1900 && waited < 5000, `answered after ${waited} ms`);
      assert.equal(c.stats.unanswered, 2);
      assert.equal(c.stats.workerRestarts, 1);
      // Within the restart pause, lookups fail at once instead of queuing behind the hung worker.
      const t1 = Date.now();
      assert.deepEqual(await c.identify([client(5)]), [undefined]);
      assert.ok(Date.now() - t1 < 500);
      assert.equal(c.stats.unanswered, 3);
    } finally {
      await c.close();
    }
  });

  it('a worker that crashes fails its batch at once, and a worker that cannot start never throws', async () => {
    const crash = new AttributionClient({ script, procRoot: 'crash' });
    try {
      const t0 = Date.now();
      assert.deepEqual(await crash.identify([client(1)]), [undefined]);
      assert.ok(Date.now() - t0 < 1900, 'not left to the timeout');
      assert.equal(crash.stats.workerRestarts, 1);
    } finally {
      await crash.close();
    }
    const missing = new AttributionClient({ script: new URL('./support/no-such-worker.js', import.meta.url) });
    try {
      assert.deepEqual(await missing.identify([client(1)]), [undefined]);
      assert.equal(missing.stats.unanswered, 1);
    } finally {
      await missing.close();
    }
  });

  it('identifyOne: one client batched with the others; undefined at once (no promise) when the per-second budget is spent', async () => {
    const c = new AttributionClient({ script, procRoot: 'echo', perSecond: 2 });
    try {
      const one = c.identifyOne(client(1));
      const [rest] = await Promise.all([c.identify([client(3)]), one]);
      assert.equal((await one)?.pid, 1);
      assert.deepEqual(rest.map((x) => x?.pid), [3]);
      assert.equal(c.identifyOne(client(5)), undefined, 'the budget of 2 a second is spent');
      assert.equal(c.stats.overBudget, 1);
    } finally {
      await c.close();
    }
  });

  it('after close, lookups answer at once with no process', async () => {
    const c = new AttributionClient({ script, procRoot: 'echo' });
    await c.close();
    assert.deepEqual(await c.identify([client(1)]), [undefined]);
  });
});
