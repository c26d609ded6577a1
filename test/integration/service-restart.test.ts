/**
 * Integration: a restarted service gets a new cgroup (a new id); the daemon
 * notices and re-applies, so the service keeps its rule. And, as the attack:
 * the daemon's watch never brings back a table after `sluice off`, and never
 * writes a policy other than the one applied (one applied behind its back
 * with no `sync`, or before it adopted it).
 */
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

interface WatchStats {
  checks: number;
  reapplies: number;
  notApplied: number;
}

describe('integration: service restart', () => {
  let w: World;
  let daemon: ChildProcess;
  let dir: string;
  let first: string;
  let second: string;
  const target = `tcp:${HOSTS.api4}:443`;
  const other = `tcp:${HOSTS.api4b}:443`;

  const restart = () => {
    rmdirSync(dir);
    mkdirSync(dir);
  };
  const watchStats = async () => ((await w.control('status')) as { components: Record<string, WatchStats> }).components['service-watch'] as WatchStats;
  const tableLoaded = async () => (await w.nft(['list', 'tables'])).includes('inet sluice');
  const sha = async (p: string) => (await w.sluiceJson<{ sha256: string }>(['check', p])).json.sha256;

  before(async () => {
    w = await World.create();
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required');
    const unit = `restart-${process.pid}.service`;
    dir = w.makeCgroup(root, `${w.id}.slice/${unit}`);
    first = w.policy(`mode: enforce\nrules:\n  - name: svc\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n    services: [${unit}]\n`);
    second = w.policy(`mode: enforce\nrules:\n  - name: svc-moved\n    to: [${HOSTS.api4b}]\n    ports: [443/tcp]\n    services: [${unit}]\n`, 'other.yaml');
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', first, '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  });
  after(async () => {
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  it('the service connects before and after a restart that gives it a new cgroup id', async () => {
    assert.equal((await w.reach([target], { cgroup: dir }))[target], true, 'before the restart');
    assert.equal((await w.reach([target], { timeoutMs: 500 }))[target], false, 'a process outside the service is refused');
    restart();
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) ok = (await w.reach([target], { cgroup: dir, timeoutMs: 300 }))[target] === true;
    assert.ok(ok, 'the restarted service connects again');
    const st = await w.sluiceJson<{ state: string }>(['status']);
    assert.equal(st.json.state, 'live', 'the state directory holds the re-applied ruleset');
    assert.equal((await w.reach([target], { timeoutMs: 500 }))[target], false, 'and others are still refused');
  });

  it('after `sluice off`, a service restart does not bring the table back', async () => {
    const off = await w.sluice(['off']);
    assert.equal(off.code, 0, off.stderr);
    assert.equal(await tableLoaded(), false);
    const before = await watchStats();
    restart();
    // Through the watch's reaction to the new cgroup (inotify, 50 ms) and one poll (5 s).
    for (let t = 0; t < 5_500; t += 250) {
      assert.equal(await tableLoaded(), false, `the table stays absent (${t} ms after the restart)`);
      await sleep(250);
    }
    const after = (await watchStats()) as WatchStats & { watching: number };
    // The daemon adopted `off` (its sync): the watch runs on no policy, so it watches nothing and
    // writes nothing. (Had the sync not reached it, the one table writer would still refuse: see
    // the next test.)
    assert.equal(after.watching, 0, 'the watch is disarmed');
    assert.equal(after.reapplies, before.reapplies);
    assert.equal((await w.sluiceJson<{ state: string }>(['status'])).json.state, 'off');
  });

  it("a policy applied behind the daemon's back (no sync reached it) is never replaced by the daemon's older one", async () => {
    // The daemon adopts the first policy again, then misses the apply of the second.
    assert.equal((await w.sluice(['apply', first])).code, 0);
    assert.equal((await w.sluiceJson<{ state: string }>(['status'])).json.state, 'live');
    const sock = join(w.stateDir, 'control.sock');
    renameSync(sock, `${sock}.hidden`);
    try {
      const applied = await w.sluice(['apply', second]);
      assert.equal(applied.code, 0, applied.stderr);
    } finally {
      renameSync(`${sock}.hidden`, sock);
    }
    const before = await watchStats();
    restart();
    await waitFor('the watch to look at the restarted service', async () => ((await watchStats()).checks > before.checks ? true : undefined), 20_000);
    const after = await watchStats();
    const st = await w.sluiceJson<{ state: string; policy: { sha256: string } }>(['status']);
    assert.equal(st.json.state, 'live', 'the kernel still holds exactly the applied policy');
    assert.equal(st.json.policy.sha256, await sha(second), 'which is the second');
    assert.equal((await w.reach([target], { cgroup: dir, timeoutMs: 500 }))[target], false, "the first policy's destination stays closed");
    assert.equal(after.reapplies, before.reapplies, 'nothing was written');
  });

  it('once the daemon adopts the new policy (sync), a restart re-applies the new policy, not the old one', async () => {
    const adopted = (await w.control('sync')) as { adopted: boolean; sha256: string };
    assert.equal(adopted.adopted, true);
    assert.equal(adopted.sha256, await sha(second));
    restart();
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) ok = (await w.reach([other], { cgroup: dir, timeoutMs: 300 }))[other] === true;
    assert.ok(ok, 'the restarted service reaches what the second policy allows');
    assert.equal((await w.reach([target], { cgroup: dir, timeoutMs: 500 }))[target], false, 'not what the first allowed');
    const st = await w.sluiceJson<{ state: string; policy: { sha256: string } }>(['status']);
    assert.equal(st.json.state, 'live');
    assert.equal(st.json.policy.sha256, await sha(second));
  });
});
