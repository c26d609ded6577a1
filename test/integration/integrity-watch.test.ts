/**
 * Integration: the integrity watch against the real kernel and files. The
 * daemon runs in the client namespace with the DNS guard on; the test does
 * what an attacker (or a careless administrator) would: makes the policy file
 * writable by everyone, lowers net.ipv4.ip_unprivileged_port_start in that
 * namespace (never the host's), and, as uid 65534, binds the guard's port on
 * another address of the namespace. Each is a `tamper` alert within 3
 * seconds, and each clears with a log line once undone.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { collectJsonLines, ROOT, stopChild, World } from '../world/world.js';

const PORT = 153;
const policyText = `mode: enforce
dns:
  guard: true
  port: ${PORT}
  upstreams: [198.18.0.53]
rules:
  - name: lan
    to: [198.18.4.0/24]
`;
const SYSCTL = 'net.ipv4.ip_unprivileged_port_start';

interface LogLine {
  level?: string;
  message: string;
  alert?: string;
  what?: string;
  holder?: string | null;
  uid?: number;
  value?: number;
}

describe('integration: the integrity watch', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let squatter: ChildProcess | undefined;
  let file = '';
  const logs: LogLine[] = [];
  const alertsOf = (what: string) => logs.filter((l) => l.alert === 'tamper' && l.what === what);
  const cleared = (re: RegExp) => logs.some((l) => l.message.startsWith('integrity watch: cleared: ') && re.test(l.message));
  /** Polls until `ok` holds; the milliseconds it took. */
  const until = async (ok: () => boolean, limitMs = 3_000): Promise<number> => {
    const t0 = performance.now();
    while (!ok()) {
      if (performance.now() - t0 > limitMs) throw new Error(`not within ${limitMs} ms: ${JSON.stringify(logs.slice(-6))}`);
      await sleep(20);
    }
    return performance.now() - t0;
  };
  const sysctl = (value: number) => w.exec(['ip', 'netns', 'exec', w.client, 'sysctl', '-w', `${SYSCTL}=${value}`], { ns: w.client });

  before(async () => {
    w = await World.create();
    file = w.policy(policyText, 'integrity.yaml');
    const applied = await w.sluice(['apply', file]);
    assert.equal(applied.code, 0, applied.stderr);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running', onSpawn: (c) => collectJsonLines(c.stderr, logs) });
  });
  after(async () => {
    try {
      chmodSync(file, 0o644);
    } catch {
      // The world is going anyway.
    }
    await stopChild(squatter);
    // Per network namespace: this only puts back the world's value (the namespace is deleted next anyway).
    if (w) await sysctl(1024).catch(() => undefined);
    await stopChild(daemon);
    await w?.destroy();
  });

  it('a host as it should be: no finding', async () => {
    await sleep(2_500);
    assert.deepEqual(logs.filter((l) => l.alert === 'tamper'), []);
    const status = (await w.control('status')) as { components: Record<string, { checks: number; active: unknown[] }> };
    const iw = status.components['integrity-watch'];
    assert.ok(iw && iw.checks >= 1, JSON.stringify(status.components));
    assert.deepEqual(iw.active, []);
  });

  it('the policy file made writable by others: an alert within 3 s, cleared when put back', async () => {
    chmodSync(file, 0o646);
    const ms = await until(() => alertsOf('policy-file').length > 0);
    const a = alertsOf('policy-file')[0] as LogLine;
    assert.equal(a.level, 'error', 'critical');
    assert.match(a.message, new RegExp(`^The applied policy file ${file.replace(/[.]/g, '\\.')} is writable by others \\(mode 0646\\)\\. Make the file`));
    assert.ok(ms < 3_000);
    chmodSync(file, 0o644);
    await until(() => cleared(/The applied policy file/));
    assert.equal(alertsOf('policy-file').length, 1, 'reported once');
  });

  it(`${SYSCTL} lowered in the daemon's namespace: an alert saying to raise it; and a socket of uid 65534 on the guard's port: an alert naming it`, async () => {
    const r = await sysctl(100);
    assert.equal(r.code, 0, r.stderr);
    await until(() => alertsOf('sysctl').length > 0);
    const a = alertsOf('sysctl')[0] as LogLine;
    assert.match(a.message, new RegExp(`^net\\.ipv4\\.ip_unprivileged_port_start was lowered to 100, at or below the DNS guard's port ${PORT}: .*Raise it above ${PORT}`));
    assert.equal(a.value, 100);
    const status = (await w.control('status')) as { components: Record<string, { active: { what: string }[] }> };
    assert.ok(status.components['integrity-watch']?.active.some((f) => f.what === 'sysctl'));

    // Now that the port is no longer privileged here, an unprivileged user binds it beside the guard's loopback sockets.
    squatter = w.spawnIn(w.client, [process.execPath, '-e', `const s = require('node:dgram').createSocket('udp4'); s.bind(${PORT}, '198.18.0.2', () => console.log('ready')); setInterval(() => {}, 1000);`], { uid: 65534 });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      squatter?.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      squatter?.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      squatter?.on('exit', (code) => reject(new Error(`the squatter exited (${code}): ${err}`)));
    });
    await until(() => alertsOf('guard-socket').length > 0);
    const s = alertsOf('guard-socket')[0] as LogLine;
    assert.match(s.message, new RegExp(`^Another process's socket is bound to the DNS guard's port ${PORT}: UDP 198\\.18\\.0\\.2:${PORT}, uid 65534, inode \\d+, held by node \\(pid ${squatter.pid ?? 0}\\)`));
    assert.equal(s.uid, 65534);

    await stopChild(squatter);
    squatter = undefined;
    await until(() => cleared(/Another process's socket/));
    assert.equal((await sysctl(1024)).code, 0);
    await until(() => cleared(/ip_unprivileged_port_start/));
    assert.equal(alertsOf('sysctl').length, 1, 'reported once');
    assert.equal(logs.filter((l) => l.alert === 'tamper' && l.what === undefined).length, 0, 'nothing for the tamper watchdog: the table was not touched');
  });
});
