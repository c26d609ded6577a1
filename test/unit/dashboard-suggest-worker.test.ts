/**
 * Unit: the dashboard's Suggestions are computed off the dashboard's thread.
 * The real dashboard thread is started here (as the daemon starts it, on a
 * loopback port, with no kernel table) over a real SQLite store large
 * enough that a suggestion takes a while: while it computes, /api/status
 * answers (and says a suggestion is being computed), and the suggestion
 * still arrives afterwards. A second window asked meanwhile is a 503 with
 * Retry-After; a worker over its time or its heap is ended and the request
 * answered 503. Nothing here measures time: the checks are on the order of
 * answers, and the budgets are ones no suggestion can meet.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { RecordedEvent } from '../../src/events/event-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { eventStorePath } from '../../src/events/store-component.js';
import { newToken } from '../../src/daemon/dashboard-auth.js';
import { DASHBOARD_LIMITS, type DashboardThreadConfig } from '../../src/daemon/dashboard-component.js';

const DAY = 86_400_000;
const EVENTS = 200_000;
const dirs: string[] = [];
const threads: Worker[] = [];

after(async () => {
  for (const w of threads) {
    w.postMessage({ t: 'stop' });
    await w.terminate();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A state directory whose store holds EVENTS would-block events in ~40,000 flows over the last five days. */
function bigState(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-suggest-worker-'));
  dirs.push(dir);
  const store = new SqliteStore(eventStorePath(dir));
  const now = Date.now();
  const batch: RecordedEvent[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const f = i % 40_000;
    batch.push({ time: now - 5 * DAY + Math.floor((i / EVENTS) * 5 * DAY), verdict: 'would-block', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: `198.18.${1 + (f % 250)}.${1 + Math.floor(f / 250)}`, sport: 40000, dport: 443 + (f % 7), uid: 1000 + (f % 3), user: `u${f % 3}` });
    if (batch.length === 10_000) store.append(batch.splice(0));
  }
  store.append(batch);
  store.close();
  return dir;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts the dashboard's thread on `stateDir`; its base URL and token. */
async function startThread(stateDir: string, suggest?: DashboardThreadConfig['suggest']): Promise<{ base: string; token: string }> {
  const port = await freePort();
  const token = newToken();
  const cfg: DashboardThreadConfig = { listen: { host: '127.0.0.1', port }, token, stateDir, table: null, limits: DASHBOARD_LIMITS, policy: null, ...(suggest ? { suggest } : {}) };
  const w = new Worker(new URL('../../src/daemon/dashboard-thread.js', import.meta.url), { workerData: cfg });
  threads.push(w);
  await new Promise<void>((resolve, reject) => {
    w.on('message', (m: { t: string; message?: string }) => {
      if (m.t === 'listening') resolve();
      else if (m.t === 'failed') reject(new Error(m.message));
    });
    w.once('error', reject);
  });
  return { base: `http://127.0.0.1:${port}`, token };
}

const get = (t: { base: string; token: string }, path: string) => fetch(`${t.base}${path}`, { headers: { authorization: `Bearer ${t.token}` } });

describe('unit: a read-only connection to the event store', () => {
  it('reads what is there, refuses a missing store and any write, and changes nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-store-ro-'));
    dirs.push(dir);
    assert.throws(() => new SqliteStore(eventStorePath(dir), { readonly: true }));
    const w = new SqliteStore(eventStorePath(dir));
    w.append([{ time: 1_000, verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.1', dport: 443 }]);
    const ro = new SqliteStore(eventStorePath(dir), { readonly: true });
    assert.equal(ro.query({ limit: 10 }).length, 1);
    assert.throws(() => ro.append([{ time: 2_000, verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.2', dport: 443 }]), /readonly/i);
    ro.close();
    assert.equal(w.query({ limit: 10 }).length, 1);
    w.close();
  });
});

describe('unit: /api/suggest runs in a worker of its own', () => {
  let stateDir = '';
  before(() => {
    stateDir = bigState();
  });

  it('while a suggestion over a large store computes, /api/status answers (saying so), and the suggestion arrives after', async () => {
    const t = await startThread(stateDir);
    const order: string[] = [];
    const suggest = get(t, '/api/suggest?since=6d').then(async (r) => {
      order.push('suggest');
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    });
    // Ask for the status until it says the suggestion is being computed; on a thread that computes
    // it in line, no status is answered before the suggestion is, and it never says so.
    let seen = false;
    while (!seen && !order.includes('suggest')) {
      const r = await get(t, '/api/status');
      assert.equal(r.status, 200);
      const s = (await r.json()) as { suggesting?: { startedAt: string } | null };
      if (s.suggesting) {
        seen = true;
        order.push('status while suggesting');
        // Another window meanwhile: come back later, not a second scan.
        const other = await get(t, '/api/suggest?since=1d');
        order.push(`other ${other.status}`);
        assert.equal(other.status, 503);
        assert.match(other.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
        // The same window shares the computation.
        const same = get(t, '/api/suggest?since=6d');
        const [a, b] = await Promise.all([suggest, same.then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }))]);
        assert.equal(a.status, 200);
        assert.equal(b.status, 200);
        assert.equal(b.body.events, a.body.events);
      }
    }
    const s = await suggest;
    assert.deepEqual(order.slice(0, 2), ['status while suggesting', 'other 503'], order.join(', '));
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal(s.body.store, true);
    assert.equal(s.body.events, EVENTS);
    const after = (await (await get(t, '/api/status')).json()) as { suggesting?: unknown };
    assert.equal(after.suggesting, null);
    // Asked again within the reuse window: the same figures, not a second scan.
    const again = (await (await get(t, '/api/suggest?since=6d')).json()) as Record<string, unknown>;
    assert.equal(again.reused, true);
  });

  it('a worker over its time is ended and the request answered 503 with Retry-After; the next one may run', async () => {
    const t = await startThread(stateDir, { timeoutMs: 1 });
    const r = await get(t, '/api/suggest?since=6d');
    assert.equal(r.status, 503);
    assert.match(r.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    assert.match(((await r.json()) as { error: string }).error, /took longer than/);
    const s = (await (await get(t, '/api/status')).json()) as { suggesting?: unknown };
    assert.equal(s.suggesting, null);
  });

  it('a worker over its heap is ended and the request answered 503', async () => {
    const t = await startThread(stateDir, { maxHeapMb: 2 });
    const r = await get(t, '/api/suggest?since=6d');
    assert.equal(r.status, 503, await r.clone().text());
    assert.match(r.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    assert.match(((await r.json()) as { error: string }).error, /MiB/);
  });
});
