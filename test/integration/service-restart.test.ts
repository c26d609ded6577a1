/**
 * Integration: a restarted service gets a new cgroup (a new id); the daemon
 * notices and re-applies, so the service keeps its rule.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { HOSTS, ROOT, World } from '../world/world.js';

describe('integration: service restart', () => {
  let w: World;
  let daemon: ChildProcess;
  let dir: string;
  const target = `tcp:${HOSTS.api4}:443`;

  before(async () => {
    w = await World.create();
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required');
    const unit = `restart-${process.pid}.service`;
    dir = w.makeCgroup(root, `${w.id}.slice/${unit}`);
    const p = w.policy(`mode: enforce\nrules:\n  - name: svc\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n    services: [${unit}]\n`);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', p, '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  });
  after(async () => {
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  it('the service connects before and after a restart that gives it a new cgroup id', async () => {
    assert.equal((await w.reach([target], { cgroup: dir }))[target], true, 'before the restart');
    assert.equal((await w.reach([target], { timeoutMs: 500 }))[target], false, 'a process outside the service is refused');
    rmdirSync(dir);
    mkdirSync(dir);
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) ok = (await w.reach([target], { cgroup: dir, timeoutMs: 300 }))[target] === true;
    assert.ok(ok, 'the restarted service connects again');
    const st = await w.sluiceJson<{ state: string }>(['status']);
    assert.equal(st.json.state, 'live', 'the state directory holds the re-applied ruleset');
    assert.equal((await w.reach([target], { timeoutMs: 500 }))[target], false, 'and others are still refused');
  });
});
