/**
 * Integration: a blocked TCP connect refused with a reset leaves no socket to
 * look up, and when several processes share the sender's uid the uid alone
 * cannot say who sent it. In enforce mode the block chain stamps the sender's
 * cgroup id into the packet mark, and the collector uses it. This is the
 * fallback path (no attribution probes: SLUICE_EBPF=off); with them the
 * kernel's record of the connect names the sender (kernel-attribution.test).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { attempter, eventsFrom, finish, NODE } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

describe('integration: attribution through the sender cgroup in the mark', () => {
  let w: World;
  let daemon: ChildProcess;
  const decoys: ChildProcess[] = [];

  before(async () => {
    w = await World.create();
    const p = w.policy(`mode: enforce\nrules:\n  - name: dns\n    to: [${HOSTS.dns4}]\n    ports: [53]\n`);
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', p, '--metrics', 'off'], { env: w.env({ SLUICE_EBPF: 'off' }), readyText: 'running' });
    // Other root processes in the namespace: the sender's uid alone is ambiguous.
    for (let i = 0; i < 2; i++) decoys.push(w.spawnIn(w.client, [NODE, '-e', 'setInterval(() => {}, 1000)']));
  });
  after(async () => {
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  it('a root process in its own service cgroup is named; the same attempt outside one is left ambiguous', async () => {
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required');
    const rel = `${w.id}.slice/sender.service`;
    const dir = w.makeCgroup(root, rel);

    const inService = await attempter(w, ['tcp', HOSTS.other4, '443', '31101']);
    writeFileSync(join(dir, 'cgroup.procs'), String(inService.pid));
    assert.equal((await inService.go()).error, 'ECONNREFUSED', 'refused with a reset: its socket is gone at once');
    const [e] = await eventsFrom(w, 31101);
    assert.equal(e?.verdict, 'blocked');
    assert.equal(e?.uid, 0);
    assert.equal(e?.process?.pid, inService.pid, 'the sender, found through its cgroup');
    assert.equal(e?.attribution, 'cgroup');
    assert.equal(e?.process?.unit, 'sender.service');
    await finish(inService);

    const outside = await attempter(w, ['tcp', HOSTS.other4, '443', '31102']);
    assert.equal((await outside.go()).error, 'ECONNREFUSED');
    const [f] = await eventsFrom(w, 31102);
    assert.equal(f?.process, undefined, 'no cgroup to go on and several root processes: no guess');
    await finish(outside);
  });
});
