/**
 * Metrics: the exposition text, the kernel counters' labels, and the server
 * (a worker thread) as a hostile local user meets it: the root-only Unix
 * socket, the bearer token over TCP, connection caps and timeouts, request
 * limits. Kernel counters are left out here (table null); the integration
 * tier reads them from a real table.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MetricsServer, metricsToken, parseMetricsListen } from '../../src/daemon/metrics-server.js';
import { Registry, renderExposition } from '../../src/runtime/metrics.js';
import { SluiceError } from '../../src/errors.js';
import { kernelCounterFamilies } from '../../src/daemon/kernel-counter-metrics.js';

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function get(target: { socketPath: string } | { port: number }, opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const where = 'socketPath' in target ? { socketPath: target.socketPath } : { host: '127.0.0.1', port: target.port };
    const req = request({ ...where, path: opts.path ?? '/metrics', method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Resolves when the server closes the connection (or the timeout passes: false). */
function closedWithin(sock: Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    sock.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

describe('unit: metrics exposition', () => {
  it('families of one name are merged: one HELP and TYPE per name (Prometheus refuses a name declared twice)', () => {
    const text = renderExposition([
      { name: 'sluice_events_dropped_total', help: 'Dropped', type: 'counter', samples: [{ labels: { stage: 'collector' }, value: 1 }] },
      { name: 'sluice_x', help: 'line\none \\ two', type: 'gauge', samples: [{ labels: { a: 'q"\\\n' }, value: Number.NaN }] },
      { name: 'sluice_events_dropped_total', help: 'Dropped again', type: 'counter', samples: [{ labels: { stage: 'store' }, value: 2 }] },
      { name: 'bad name', help: 'x', type: 'gauge', samples: [{ labels: {}, value: 1 }] },
    ]);
    assert.equal(text.match(/# TYPE sluice_events_dropped_total /g)?.length, 1);
    assert.match(text, /sluice_events_dropped_total\{stage="collector"\} 1\nsluice_events_dropped_total\{stage="store"\} 2\n/);
    assert.match(text, /# HELP sluice_x line\\none \\\\ two\n/);
    assert.match(text, /sluice_x\{a="q\\"\\\\\\n"\} 0\n/);
    assert.ok(!text.includes('bad name'));
  });

  it('a collector that throws leaves its metrics out, not the scrape', () => {
    const r = new Registry();
    r.counter('sluice_ok_total', 'ok').inc();
    r.collect(() => {
      throw new Error('boom');
    });
    const text = r.render();
    assert.match(text, /sluice_ok_total 1\n/);
    assert.match(text, /sluice_metrics_collector_errors_total 1\n/);
  });

  it('kernel counters become per-rule samples by their parsed names; unknown names are left out', () => {
    const counters = new Map([
      ['r_web', { packets: 3n, bytes: 180n }],
      ['default', { packets: 5n, bytes: 300n }],
      ['r_gone', { packets: 1n, bytes: 60n }],
      ['suppressed_block', { packets: 7n, bytes: 0n }],
      ['suppressed_user_block', { packets: 11n, bytes: 0n }],
      ['mystery', { packets: 9n, bytes: 9n }],
    ]);
    const fams = kernelCounterFamilies(counters, { mode: 'enforce', defaultAction: 'deny', actions: { web: 'allow' } });
    const text = renderExposition(fams);
    assert.match(text, /sluice_rule_packets_total\{action="allow",mode="enforce",rule="web"\} 3\n/);
    assert.match(text, /sluice_rule_packets_total\{action="deny",mode="enforce",rule="#default"\} 5\n/);
    assert.match(text, /sluice_log_suppressed_total\{budget="shared",kind="block"\} 7\n/);
    assert.match(text, /sluice_log_suppressed_total\{budget="user",kind="block"\} 11\n/);
    assert.ok(!text.includes('gone') && !text.includes('mystery'));
  });
});

describe('unit: metrics settings', () => {
  it('--metrics: unix by default, off, or HOST:PORT on loopback only', () => {
    assert.deepEqual(parseMetricsListen(undefined), { unix: true, tcp: null });
    assert.deepEqual(parseMetricsListen('unix'), { unix: true, tcp: null });
    assert.equal(parseMetricsListen('off'), null);
    assert.deepEqual(parseMetricsListen('127.0.0.1:9329'), { unix: true, tcp: { host: '127.0.0.1', port: 9329 } });
    assert.deepEqual(parseMetricsListen('[::1]:9329'), { unix: true, tcp: { host: '::1', port: 9329 } });
    for (const bad of ['0.0.0.0:9329', '198.18.0.2:9329', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', 'localhost:x', '']) {
      assert.throws(() => parseMetricsListen(bad), SluiceError, bad);
    }
  });

  it('the token: generated once into a 0600 file and reused; a given file must be its owner\'s alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-token-'));
    try {
      const t1 = metricsToken(dir);
      assert.match(t1, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(statSync(join(dir, 'metrics.token')).mode & 0o777, 0o600);
      assert.equal(metricsToken(dir), t1, 'the same token on the next start');
      const given = join(dir, 'given');
      writeFileSync(given, 'a-long-enough-token-value\n', { mode: 0o644 });
      assert.throws(() => metricsToken(dir, given), /readable by .* only.*mode 0644/);
      chmodSync(given, 0o600);
      assert.equal(metricsToken(dir, given), 'a-long-enough-token-value');
      writeFileSync(given, 'short');
      assert.throws(() => metricsToken(dir, given), /16 to 512 printable/);
      assert.throws(() => metricsToken(dir, join(dir, 'missing')), /Cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('unit: the metrics server (worker thread)', () => {
  let dir: string;
  let server: MetricsServer;
  let registry: Registry;
  let tcpPort: number;
  let unixPath: string;
  const TOKEN = 'test-token-0123456789abcdef';
  let collections = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-'));
    registry = new Registry();
    registry.counter('sluice_test_total', 'A test counter').inc({}, 41);
    registry.collect(() => {
      collections++;
      return [{ name: 'sluice_collections', help: 'How often the event loop collected', type: 'gauge', samples: [{ labels: {}, value: collections }] }];
    });
    server = new MetricsServer({
      registry,
      unixPath: join(dir, 'metrics.sock'),
      tcp: { host: '127.0.0.1', port: 0, token: TOKEN },
      table: null,
      context: () => null,
      limits: { perPeer: 4, total: 64, idleMs: 300, lifetimeMs: 1_500, maxHeaderBytes: 2_048 },
      snapshotMinMs: 1_000,
    });
    const where = await server.start();
    assert.ok(where.tcp && where.unix);
    tcpPort = where.tcp.port;
    unixPath = where.unix;
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the Unix socket is root-only (mode 0600) and needs no token', async () => {
    assert.equal(statSync(unixPath).mode & 0o777, 0o600);
    const r = await get({ socketPath: unixPath });
    assert.equal(r.status, 200);
    assert.match(r.body, /sluice_test_total 41\n/);
    assert.match(String(r.headers['content-type']), /text\/plain; version=0\.0\.4/);
  });

  it('TCP without the token, or with a wrong one, gets 401 and nothing else (not even which paths exist)', async () => {
    const wrong: Record<string, string>[] = [{}, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Bearer ${TOKEN.slice(1)}` }, { authorization: `Basic ${TOKEN}` }, { authorization: TOKEN }, { authorization: 'Bearer ' }];
    for (const headers of wrong) {
      for (const path of ['/metrics', '/nothing']) {
        const r = await get({ port: tcpPort }, { path, headers });
        assert.equal(r.status, 401, `${JSON.stringify(headers)} ${path}`);
        assert.equal(r.headers['www-authenticate'], 'Bearer realm="sluice"');
        assert.ok(!r.body.includes('sluice_'));
      }
    }
    const ok = await get({ port: tcpPort }, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /sluice_test_total 41\n/);
  });

  it('only GET /metrics, without a body, and a bounded request head', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    assert.equal((await get({ port: tcpPort }, { path: '/', headers: auth })).status, 404);
    assert.equal((await get({ port: tcpPort }, { method: 'POST', headers: auth })).status, 405);
    assert.equal((await get({ port: tcpPort }, { method: 'GET', headers: { ...auth, 'content-length': '5' }, body: 'hello' })).status, 413);
    const head = await get({ port: tcpPort }, { method: 'HEAD', headers: auth });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    // A head over the limit never reaches a handler: the connection is closed.
    await assert.rejects(get({ port: tcpPort }, { headers: { ...auth, 'x-fill': 'a'.repeat(4_000) } }));
  });

  it('idle connections are closed, and one peer cannot hold more than its share while another scrapes', async () => {
    // The same uid as the scraper here (one test process): the cap is per peer uid.
    const idle: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = connect(tcpPort, '127.0.0.1');
      s.on('error', () => undefined);
      idle.push(s);
    }
    const closes = idle.map((s) => closedWithin(s, 3_000));
    const closed = await Promise.all(closes);
    assert.ok(closed.every(Boolean), 'over the cap: closed at once; within it: closed when idle');
    // After the idle ones are gone, a scrape works again.
    const ok = await get({ port: tcpPort }, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /sluice_metrics_connections_refused_total\{reason="peer"\} 1[0-9]\n/);
    // A slow sender is cut at the lifetime, however it trickles.
    const slow = connect(tcpPort, '127.0.0.1');
    slow.on('error', () => undefined);
    const trickle = setInterval(() => slow.write('X'), 100);
    const cut = await closedWithin(slow, 3_000);
    clearInterval(trickle);
    assert.ok(cut, 'a connection that trickles bytes is closed at its lifetime');
  });

  it('concurrent scrapes share one snapshot of the event loop\'s values', async () => {
    await new Promise((r) => setTimeout(r, 1_100));
    const before = collections;
    const replies = await Promise.all(Array.from({ length: 10 }, () => get({ socketPath: unixPath })));
    assert.ok(replies.every((r) => r.status === 200));
    assert.equal(collections - before, 1, 'ten scrapes, one collection on the event loop');
    assert.equal(server.stats.snapshots, collections);
  });

  it('stop removes the socket', async () => {
    const s2 = new MetricsServer({ registry, unixPath: join(dir, 'm2.sock'), tcp: null, table: null, context: () => null });
    await s2.start();
    assert.equal((await get({ socketPath: join(dir, 'm2.sock') })).status, 200);
    await s2.stop();
    assert.throws(() => readFileSync(join(dir, 'm2.sock')), /ENOENT/);
  });
});
