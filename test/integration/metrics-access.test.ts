/**
 * Integration: who may read the daemon's metrics, written as the attacks.
 * Metrics say what every rule matched and which users were blocked, so a
 * local user must not read them: by default they are served only on a
 * root-only Unix socket; TCP only when configured, and then only with a
 * bearer token. And however many idle connections a user holds open, a
 * legitimate scrape still works and the DNS guard (same process) still
 * answers.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { metricValue, NODE, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';
import type { HttpOutcome } from '../support/dashboard-http.js';

const SUPPORT = join(ROOT, 'dist/test/support');
const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const PORT = 9329;
const AS_NOBODY = ['setpriv', '--reuid', '65534', '--regid', '65534', '--clear-groups', '--'];

const POLICY = `
mode: enforce
dns:
  upstreams: [${HOSTS.dns4}]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp]
`;

type Got = HttpOutcome;

describe('integration: metrics access', () => {
  let w: World;
  let daemon: ChildProcess;
  let token: string;

  before(async () => {
    w = await World.create({ dns: true });
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', w.policy(POLICY), '--metrics', `127.0.0.1:${PORT}`], { env: w.env(), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
    const tokenFile = join(w.stateDir, 'metrics.token');
    token = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '';
    // The state directory is root's alone; open the path to it, so that the
    // socket's and the token file's own modes are all that stand in the way.
    chmodSync(w.tmp, 0o711);
    chmodSync(w.stateDir, 0o711);
  });
  after(async () => {
    await w?.destroy();
  });

  const get = async (args: string[], opts: { nobody?: boolean } = {}): Promise<Got> => {
    const r = await w.exec([...(opts.nobody ? AS_NOBODY : []), NODE, join(SUPPORT, 'http-get.js'), ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim()) as Got;
  };
  const dnsAnswered = async (): Promise<boolean> => {
    const r = await w.exec([NODE, DNSQ, '--server', HOSTS.dns4, '--name', 'api.sluice.test', '--timeout', '2000']);
    const a = JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as { rcode?: number; answers?: string[] };
    return a.rcode === 0 && (a.answers?.length ?? 0) > 0;
  };

  it('uid 65534 cannot read metrics over the Unix socket (mode 0600); root can', async () => {
    const sock = join(w.stateDir, 'metrics.sock');
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.deepEqual(await get(['unix', sock], { nobody: true }), { error: 'EACCES' });
    const root = await get(['unix', sock]);
    assert.equal(root.status, 200);
    assert.match(root.body ?? '', /sluice_rule_packets_total\{action="allow",mode="enforce",rule="api"\} \d+/);
    // The main thread's health: its loop delay (the loop that answers DNS) and GC pauses.
    assert.match(root.body ?? '', /^sluice_event_loop_delay_seconds\{quantile="0\.99"\} [0-9.e-]+$/m);
    assert.match(root.body ?? '', /^# TYPE sluice_gc_pause_seconds_total counter$/m);
    // The same on the control socket, for tools that poll it under load (bench:dns).
    const health = (await w.control('health')) as { windowSeconds: number; loopDelay: { p99: number }; gc: Record<string, { count: number }> };
    assert.equal(health.windowSeconds, 60);
    assert.equal(typeof health.loopDelay.p99, 'number');
    assert.equal(typeof health.gc, 'object');
  });

  it('over TCP, uid 65534 gets 401 without the token or with a wrong one, and cannot read the token file', async () => {
    for (const t of [[], ['wrong-token-0123456789'], [`${token}x`]]) {
      const r = await get(['tcp', '127.0.0.1', String(PORT), ...t], { nobody: true });
      assert.equal(r.status, 401, JSON.stringify(t));
      assert.ok(!(r.body ?? '').includes('sluice_'), 'nothing of the metrics leaks');
    }
    assert.equal(statSync(join(w.stateDir, 'metrics.token')).mode & 0o777, 0o600);
    const cat = await w.exec([...AS_NOBODY, 'cat', join(w.stateDir, 'metrics.token')]);
    assert.notEqual(cat.code, 0);
    assert.match(cat.stderr, /Permission denied/);
    const root = await get(['tcp', '127.0.0.1', String(PORT), token]);
    assert.equal(root.status, 200);
    assert.match(root.body ?? '', /sluice_rule_packets_total/);
  });

  it('1,000 idle connections from uid 65534 stop neither a legitimate scrape nor DNS answers', async () => {
    assert.ok(await dnsAnswered(), 'the guard answers before the attack');
    const attacker = w.spawnIn(w.client, [...AS_NOBODY, NODE, join(SUPPORT, 'hold-connections.js'), '127.0.0.1', String(PORT), '1000', '8']);
    let out = '';
    attacker.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the attacker to open its connections', async () => (out.includes('"ready"') ? true : undefined));
    // Let the first wave land and the reconnects start.
    await new Promise((r) => setTimeout(r, 1_500));
    const results: { scrape: Got; dns: boolean }[] = [];
    for (let i = 0; i < 5; i++) {
      results.push({ scrape: await get(['tcp', '127.0.0.1', String(PORT), token]), dns: await dnsAnswered() });
      await new Promise((r) => setTimeout(r, 500));
    }
    const unix = await get(['unix', join(w.stateDir, 'metrics.sock')]);
    await waitFor('the attacker to finish', async () => (out.includes('"connects"') ? true : undefined), 20_000);
    const summary = JSON.parse(out.trim().split('\n').at(-1) as string) as { connects: number; closedByServer: number; openAtEnd: number };
    assert.ok(summary.connects >= 1000, `the attacker kept connecting: ${JSON.stringify(summary)}`);
    // 8 per uid are admitted; a few more may be connected-but-not-yet-closed when it counts.
    assert.ok(summary.openAtEnd < 100, `the attacker held about its share of connections, not the 1,000 it tried: ${JSON.stringify(summary)}`);
    for (const [i, r] of results.entries()) {
      assert.equal(r.scrape.status, 200, `scrape ${i} during the attack: ${JSON.stringify(r.scrape).slice(0, 200)}`);
      assert.ok(r.dns, `DNS answer ${i} during the attack`);
    }
    assert.equal(unix.status, 200);
    const refused = metricValue(unix.body ?? '', 'sluice_metrics_connections_refused_total', '{reason="peer"}');
    assert.ok(refused >= 900, `the attacker's connections beyond its share were refused: ${refused}`);
    assert.ok(daemon.exitCode === null, 'the daemon is alive');
  });
});
