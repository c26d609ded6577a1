/**
 * Integration: alerts from the real daemon. A webhook served by a test HTTP
 * server on the client namespace's loopback gets one summary, with the
 * count, for a storm of blocked datagrams, signed with the secret; while the
 * server is down alerts wait in the outbox, and after a daemon restart with
 * the server back they arrive; `sluice alerts test` fails while a sink is
 * down and passes once it is up; a tamper alert goes out at once; a daemon
 * killed is reported by the next one, and a daemon systemd gave up on by
 * `sluice alerts daemon-failed` (what its OnFailure= unit runs).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { HOSTS, ROOT, stopChild, World } from '../world/world.js';

const PORT = 18_631;
const SECRET = 'integration-secret';

/** A webhook receiver: prints each request as one JSON line {headers, body}; `ready` once listening. */
const RECEIVER = `
const http = require('node:http');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    process.stdout.write(JSON.stringify({ headers: req.headers, body }) + '\\n');
    res.end('ok');
  });
}).listen(${PORT}, '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

interface Received {
  headers: Record<string, string>;
  body: string;
}
interface Sent {
  trigger: string;
  count: number;
  destination?: string;
  who?: string;
  text: string;
  test?: boolean;
}

describe('integration: alerts', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let receiver: ChildProcess | undefined;
  const received: Received[] = [];
  let keyFile = '';

  const startReceiver = async () => {
    receiver = await w.spawnReady(w.client, [process.execPath, '-e', RECEIVER]);
    let buf = '';
    receiver.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('{')) received.push(JSON.parse(line) as Received);
      }
    });
  };
  const startDaemon = async () => {
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  };
  const sent = () => received.map((r) => (JSON.parse(r.body) as { sluice: Sent }).sluice);
  const until = async (ok: () => boolean, ms: number) => {
    const end = Date.now() + ms;
    while (!ok() && Date.now() < end) await sleep(100);
    return ok();
  };
  /** Blocked datagrams from one process: the policy allows nothing to 198.18.1.11. */
  const blast = (count: number, port: number) =>
    w.exec([process.execPath, '-e', `const s = require('node:dgram').createSocket('udp4'); let i = 0; const go = () => { if (i++ >= ${count}) return s.close(); s.send('x', ${port}, '${HOSTS.api4b}', go); }; go();`]);

  before(async () => {
    w = await World.create({ servers: false });
    keyFile = join(w.stateDir, '..', 'webhook.key');
    writeFileSync(keyFile, `${SECRET}\n`, { mode: 0o600 });
    const policy = w.policy(
      `mode: enforce\nlog: {rate: 100000, burst: 100000, user_rate: 100000, user_burst: 100000}\nrules:\n  - name: lan\n    to: [198.18.4.0/24]\nalerts:\n  - name: ops\n    sink: {webhook: "http://127.0.0.1:${PORT}/hook", secret_file: ${keyFile}}\n    on: [blocked, tamper, daemon-failed]\n    window: 3s\n`,
      'alerts.yaml',
    );
    const r = await w.sluice(['apply', policy]);
    assert.equal(r.code, 0, r.stderr);
    await startReceiver();
    await startDaemon();
  });
  after(async () => {
    await stopChild(daemon);
    await stopChild(receiver);
    await w?.destroy();
  });

  it('a storm of blocked datagrams is one signed webhook message whose count is every blocked event stored', async () => {
    const r = await blast(10_000, 9);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await until(() => sent().some((m) => m.trigger === 'blocked' && m.destination === HOSTS.api4b), 10_000), 'the summary arrived');
    await sleep(3_500);
    const msgs = sent().filter((m) => m.trigger === 'blocked' && m.destination === HOSTS.api4b);
    const stored = await w.sluiceJson<{ events: { dst: string; dport?: number }[] }>(['log', '--verdict', 'blocked', '--limit', '100000', '--since', '1h']);
    const storedCount = stored.json.events.filter((e) => e.dst === HOSTS.api4b && e.dport === 9).length;
    assert.ok(storedCount >= 9_000, `the kernel logged the storm (${storedCount} stored)`);
    assert.equal(
      msgs.reduce((s, m) => s + m.count, 0),
      storedCount,
      'the counts add up to every blocked event stored',
    );
    // One message per key (who: the program when attribution named it) and window; a storm may straddle two windows.
    const perWho = new Map<string, number>();
    for (const m of msgs) perWho.set(m.who ?? '', (perWho.get(m.who ?? '') ?? 0) + 1);
    for (const [who, k] of perWho) assert.ok(k <= 2, `${k} messages for ${who || 'an unattributed sender'}`);
    const req = received.find((x) => x.body.includes(`"destination":"${HOSTS.api4b}"`));
    assert.ok(req);
    const ts = req.headers['x-sluice-timestamp'] ?? '';
    assert.equal(req.headers['x-sluice-signature'], `sha256=${createHmac('sha256', SECRET).update(`${ts}.${req.body}`).digest('hex')}`);
    assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 60);
  });

  it('a sink that is down gets what was queued after it is back, across a daemon restart; alerts test says which sink failed', async () => {
    await stopChild(receiver);
    const before = sent().length;
    await blast(3, 10);
    await sleep(4_000);
    const test = await w.sluice(['alerts', 'test']);
    assert.equal(test.code, 1, 'alerts test fails while the webhook is down');
    assert.match(test.stdout, /ops \(webhook http:\/\/127\.0\.0\.1:18631 \(signed\)\): FAILED/);
    const st = await w.sluiceJson<{ routes: { name: string; queued: number; retried: number }[] }>(['alerts', 'status']);
    const ops = st.json.routes.find((x) => x.name === 'ops');
    assert.ok((ops?.queued ?? 0) >= 1, `queued while down: ${JSON.stringify(ops)}`);
    assert.ok((ops?.retried ?? 0) >= 1);
    await stopChild(daemon);
    await startReceiver();
    await startDaemon();
    const late = () => sent().slice(before).filter((m) => m.trigger === 'blocked' && m.destination === HOSTS.api4b).reduce((sum, m) => sum + m.count, 0);
    assert.ok(await until(() => late() === 3, 15_000), `the queued alert arrived after the restart (${late()} of 3 counted)`);
    const ok = await w.sluice(['alerts', 'test']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.ok(await until(() => sent().some((m) => m.test === true), 2_000));
    const after = await w.sluiceJson<{ routes: { name: string; queued: number; delivered: number }[] }>(['alerts', 'status']);
    assert.equal(after.json.routes.find((x) => x.name === 'ops')?.queued, 0);
  });

  it('a tamper alert goes out at once, not at the end of the window', async () => {
    const before = sent().length;
    const t0 = Date.now();
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    assert.ok(await until(() => sent().slice(before).some((m) => m.trigger === 'tamper'), 2_500), 'within the window');
    assert.ok(Date.now() - t0 < 2_900);
  });

  it('daemon-failed: a daemon killed is reported by the next one; one systemd gave up on, by `sluice alerts daemon-failed`', async () => {
    const before = sent().length;
    daemon?.kill('SIGKILL');
    await stopChild(daemon);
    await startDaemon();
    assert.ok(await until(() => sent().slice(before).some((m) => m.trigger === 'daemon-failed'), 5_000), 'the next daemon said the last one did not stop cleanly');
    assert.match(sent().slice(before).find((m) => m.trigger === 'daemon-failed')?.text ?? '', /ended without stopping cleanly/);

    await stopChild(daemon);
    daemon = undefined;
    const mid = sent().length;
    const r = await w.sluice(['alerts', 'daemon-failed'], { env: { MONITOR_SERVICE_RESULT: 'start-limit-hit', MONITOR_EXIT_CODE: 'exited', MONITOR_EXIT_STATUS: '1' } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ops \(webhook .*\): delivered/);
    const m = sent().slice(mid).find((x) => x.trigger === 'daemon-failed');
    assert.ok(m, 'sent from the command itself: no daemon is left to send it');
    assert.match(m.text, /failed and systemd stopped restarting it \(result start-limit-hit, exited 1\)/);
    const st = await w.sluiceJson<{ routes: { name: string; queued: number }[] }>(['alerts', 'status']);
    assert.equal(st.json.routes.find((x) => x.name === 'ops')?.queued, 0, 'delivered, so not queued for the next daemon');
    await startDaemon();
    await sleep(1_500);
    assert.equal(sent().slice(mid).filter((x) => x.trigger === 'daemon-failed').length, 1, 'a clean stop is not a failure, and nothing was sent twice');
  });
});

describe('integration: syslog alerts, parsed by rsyslog', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let rsyslog: ChildProcess | undefined;
  let out = '';

  before(async () => {
    w = await World.create({ servers: false });
    const dir = join(w.stateDir, '..', 'rsyslog');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    out = join(dir, 'received.log');
    // Only network inputs (no /dev/log), its own pid file and work directory: nothing of the host's syslog is touched.
    const conf = join(dir, 'rsyslog.conf');
    writeFileSync(
      conf,
      `global(workDirectory="${dir}")
module(load="imudp")
input(type="imudp" address="${HOSTS.gw4}" port="514")
module(load="imtcp")
input(type="imtcp" address="${HOSTS.gw4}" port="514")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="${dir}/log")
template(name="fields" type="string" string="%protocol-version%|%app-name%|%msgid%|%syslogfacility-text%|%syslogseverity-text%|%structured-data%|%msg%\\n")
*.* action(type="omfile" file="${out}" template="fields")
`,
    );
    rsyslog = w.spawnIn(w.world, ['rsyslogd', '-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')]);
    const policy = w.policy(
      `mode: enforce\nrules:\n  - name: syslog\n    to: [${HOSTS.gw4}]\n    ports: [514]\nalerts:\n  - {name: siem-udp, sink: {syslog: "udp://${HOSTS.gw4}"}, on: [tamper]}\n  - {name: siem-tcp, sink: {syslog: "tcp://${HOSTS.gw4}:514"}, on: [tamper]}\n  - {name: siem-local, sink: {syslog: "unix://${dir}/log"}, on: [tamper]}\n`,
      'syslog.yaml',
    );
    const r = await w.sluice(['apply', policy]);
    assert.equal(r.code, 0, r.stderr);
    await sleep(500);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  });
  after(async () => {
    for (const p of [daemon, rsyslog]) await stopChild(p);
    await w?.destroy();
  });

  it('a tamper alert over UDP and over TCP is RFC 5424 that rsyslog parses into its fields; over the local socket, what syslog(3) sends there', async () => {
    const { existsSync, readFileSync } = await import('node:fs');
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    const lines = () => (existsSync(out) ? readFileSync(out, 'utf8').trim().split('\n').filter(Boolean) : []);
    for (let i = 0; i < 50 && lines().length < 3; i++) await sleep(100);
    const all = lines();
    assert.equal(all.length, 3, `one message per route: ${all.join('\n')}`);
    const local = all.filter((l) => l.startsWith('0|'));
    assert.equal(local.length, 1, `one over the local socket, in the BSD form: ${all.join('\n')}`);
    const [, lapp, , lfacility, lseverity, , lmsg] = (local[0] ?? '').split('|');
    assert.equal(lapp, 'sluice');
    assert.equal(lfacility, 'daemon');
    assert.equal(lseverity, 'crit');
    assert.match(lmsg ?? '', /^ ?\[sluice tamper\] Sluice's table was changed by nft \(pid \d+\): the table was deleted; .*\(route siem-local, tamper, count 1\)$/);
    const got = all.filter((l) => !l.startsWith('0|'));
    for (const line of got) {
      const [version, app, msgid, facility, severity, sd, msg] = line.split('|');
      assert.equal(version, '1', 'RFC 5424 (version 1), not the old BSD format');
      assert.equal(app, 'sluice');
      assert.equal(msgid, 'tamper');
      assert.equal(facility, 'daemon');
      assert.equal(severity, 'crit');
      assert.match(sd ?? '', /^\[sluice@32473 route="siem-(udp|tcp)" trigger="tamper" count="1" first="[^"]+" last="[^"]+"\]$/);
      assert.match(msg ?? '', /^\[sluice tamper\] Sluice's table was changed by nft \(pid \d+\): the table was deleted; restored in \d+ ms/);
    }
    assert.deepEqual(got.map((l) => /route="(siem-\w+)"/.exec(l)?.[1]).sort(), ['siem-tcp', 'siem-udp']);
  });
});
