/**
 * Integration: the apply lifecycle against what happens to real hosts: a
 * reload during a confirmation window, another tool flushing the ruleset, a
 * read-only root at early boot, DNS flows older than the redirect. Found by
 * an internal review; each failed before its fix.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { rmSync } from 'node:fs';
import { HOSTS, ROOT, World } from '../world/world.js';

const FLOW = join(ROOT, 'dist/test/world/flow.js');
const ENFORCE_DNS = `mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: lan\n    to: [198.18.1.0/24]\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n`;
const echoes = (s: string) => s.split('\n').filter((l) => l.startsWith('echo ')).length;

const A = `mode: enforce\nrules:\n  - name: api\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n`;
const B = `mode: enforce\nrules:\n  - name: api\n    to: [${HOSTS.api4b}]\n    ports: [443/tcp]\n`;

describe('integration: lifecycle against real hosts', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  const sha = async () => /policy=sha256:([0-9a-f]{8})/.exec((await w.exec(['nft', '-s', '-t', 'list', 'table', 'inet', 'sluice'])).stdout)?.[1] ?? null;
  const stopDaemon = async () => {
    if (!daemon || daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((r) => daemon?.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
    daemon = undefined;
  };
  before(async () => {
    w = await World.create({ servers: false });
  });
  after(async () => {
    await stopDaemon();
    await w?.destroy();
  });
  beforeEach(async () => {
    await w.sluice(['off']);
    rmSync(w.stateDir, { recursive: true, force: true });
  });
  afterEach(stopDaemon);

  it('SIGHUP during a confirmation window is not a confirmation: the apply still rolls back', async () => {
    const a = w.policy(A, 'a.yaml');
    const b = w.policy(B, 'b.yaml');
    assert.equal((await w.sluice(['apply', a])).code, 0);
    const shaA = await sha();
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    assert.equal((await w.sluice(['apply', b, '--confirm', '3'])).code, 0);
    const shaB = await sha();
    daemon.kill('SIGHUP'); // e.g. `systemctl reload sluice` by a config-management run
    await sleep(6000);
    const st = await w.sluiceJson<{ pending: unknown }>(['status']);
    assert.equal(await sha(), shaA, 'rolled back at the deadline');
  });

  it('apply --confirm while another tool flushed the ruleset, not confirmed: the last applied policy comes back, not "off"', async () => {
    const a = w.policy(A, 'a.yaml');
    const b = w.policy(B, 'b.yaml');
    assert.equal((await w.sluice(['apply', a])).code, 0);
    await w.nft(['flush', 'ruleset']); // what `systemctl restart nftables` does (flush ruleset in /etc/nftables.conf)
    assert.equal((await w.sluice(['apply', b, '--confirm', '1'])).code, 0);
    await sleep(2500);
    const st = await w.sluiceJson<{ state: string }>(['status']);
    const r = await w.sluiceJson<{ restored: boolean; reason?: string }>(['restore']);
    assert.notEqual(st.json.state, 'off', 'the last confirmed policy (A) is not turned into "off"');
    assert.equal(r.json.restored, false, 'nothing left to restore: it is live');
  });

  it('sluice restore from a read-only state directory (root still read-only at early boot) still restores', async () => {
    const a = w.policy(A, 'a.yaml');
    assert.equal((await w.sluice(['apply', a])).code, 0);
    const shaA = await sha();
    await w.nft(['delete', 'table', 'inet', 'sluice']); // reboot
    const dir = w.stateDir;
    // A private mount namespace in which the state directory is read-only, as / is before systemd-remount-fs.
    // In a private mount namespace: bind the directory read-only over itself, then run `sluice restore` (argv only).
    const inner = `const { execFileSync } = require('node:child_process'); const [dir, sluice] = process.argv.slice(1);
      execFileSync('mount', ['--bind', dir, dir]); execFileSync('mount', ['-o', 'remount,bind,ro', dir]);
      try { process.stdout.write(execFileSync(process.execPath, [sluice, 'restore'], { encoding: 'utf8' })); } catch (e) { process.stderr.write(String(e.stderr)); process.exit(e.status ?? 1); }`;
    const r = await w.exec(['unshare', '-m', '--propagation', 'private', process.execPath, '-e', inner, dir, join(ROOT, 'bin/sluice')], { env: w.env() });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha(), shaA, 'the applied ruleset is back');
  });

  describe('with a DNS server', () => {
    let d: World;
    before(async () => {
      d = await World.create({ dns: true });
    });
    after(async () => {
      await d?.destroy();
    });
  it('a DNS flow begun in audit mode stops reaching its server at the switch to enforce (it would skip the guard)', async () => {
    assert.equal((await d.sluice(['apply', d.policy(ENFORCE_DNS.replace('mode: enforce', 'mode: audit'), 'audit.yaml')])).code, 0);
    const old: ChildProcess = d.spawnIn(d.client, [process.execPath, FLOW, 'udp', HOSTS.api4, '53', '--count', '30', '--interval', '100'], { uid: 65534 });
    let oldOut = '';
    old.stdout?.on('data', (d: Buffer) => (oldOut += d.toString()));
    await sleep(800);
    assert.equal((await d.sluice(['apply', d.policy(ENFORCE_DNS, 'enforce.yaml')])).code, 0);
    const at = echoes(oldOut);
    // A new flow to the same server after the switch is redirected to the guard (no daemon: no answer).
    const fresh = await d.exec([process.execPath, FLOW, 'udp', HOSTS.api4, '53', '--count', '5', '--interval', '100'], { uid: 65534 });
    await new Promise((r) => old.once('exit', r));
    assert.equal(echoes(fresh.stdout), 0, 'a new flow to port 53 never reaches the server');
    assert.ok(echoes(oldOut) <= at + 1, `nor does the old one after the switch (${at} before, ${echoes(oldOut)} in all)`);
  });
  });
});
