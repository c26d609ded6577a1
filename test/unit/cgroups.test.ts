/** Finding the cgroup v2 mount on unified, hybrid and unusual hosts. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findCgroup2Root, findUnitCgroups, walkDirs } from '../../src/system/cgroups.js';

const line = (id: number, mount: string, fstype: string) => `${id} 1 0:${id} / ${mount} rw,nosuid shared:${id} - ${fstype} ${fstype} rw`;

describe('unit: cgroup v2 mount detection', () => {
  it('unified layout: /sys/fs/cgroup', () => {
    assert.equal(findCgroup2Root([line(30, '/sys/fs/cgroup', 'cgroup2')].join('\n')), '/sys/fs/cgroup');
  });

  it('hybrid layout: v1 controllers at /sys/fs/cgroup/*, cgroup2 at /sys/fs/cgroup/unified', () => {
    const text = [
      line(30, '/sys/fs/cgroup', 'tmpfs'),
      line(31, '/sys/fs/cgroup/unified', 'cgroup2'),
      line(32, '/sys/fs/cgroup/systemd', 'cgroup'),
      line(33, '/sys/fs/cgroup/memory', 'cgroup'),
    ].join('\n');
    assert.equal(findCgroup2Root(text), '/sys/fs/cgroup/unified');
  });

  it('prefers the standard places over others, and unescapes mountinfo octal escapes', () => {
    assert.equal(findCgroup2Root([line(40, '/mnt/cg\\040two', 'cgroup2'), line(41, '/sys/fs/cgroup', 'cgroup2')].join('\n')), '/sys/fs/cgroup');
    assert.equal(findCgroup2Root(line(40, '/mnt/cg\\040two', 'cgroup2')), '/mnt/cg two');
  });

  it('no cgroup2 mount: null (service rules then match nothing, with a warning)', () => {
    assert.equal(findCgroup2Root([line(30, '/sys/fs/cgroup/memory', 'cgroup')].join('\n')), null);
    assert.equal(findCgroup2Root('garbage without separators\n\n'), null);
  });
});

describe('unit: walking a cgroup tree', () => {
  // A tree shaped like systemd's, in a temporary directory (a cgroup is a directory with cgroup.procs).
  const root = mkdtempSync(join(tmpdir(), 'sluice-cgtree-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const cg = (rel: string) => {
    mkdirSync(join(root, rel), { recursive: true });
    writeFileSync(join(root, rel, 'cgroup.procs'), '');
  };
  cg('system.slice/nginx.service');
  cg('system.slice/nginx.service/worker'); // inside a match: not looked at
  cg('machine.slice/ctr.scope/system.slice/nginx.service'); // the same unit name in a container
  cg('system.slice/sshd.service');
  mkdirSync(join(root, 'system.slice/not-a-cgroup.service'), { recursive: true }); // no cgroup.procs

  it('finds every cgroup named after the unit, at any depth, without descending into one', () => {
    const found = findUnitCgroups(root, 'nginx.service').map((c) => [c.path, c.level]);
    assert.deepEqual(found.sort(), [
      ['/machine.slice/ctr.scope/system.slice/nginx.service', 4],
      ['/system.slice/nginx.service', 2],
    ]);
    assert.deepEqual(findUnitCgroups(root, 'not-a-cgroup.service'), []);
  });

  it('visits breadth-first from the root and keeps within its bounds', () => {
    const all: string[] = [];
    walkDirs(root, (rel) => (all.push(rel), true));
    assert.equal(all[0], '/');
    assert.ok(all.indexOf('/system.slice') < all.indexOf('/system.slice/nginx.service'));
    assert.ok(all.includes('/machine.slice/ctr.scope/system.slice/nginx.service'));
    const some: string[] = [];
    // The root lists its 2 children (2 seen); the first child visited lists a third: over the bound, stop.
    walkDirs(root, (rel) => (some.push(rel), true), { maxDirs: 2, maxDepth: 12 });
    assert.equal(some.length, 2);
    assert.equal(some[0], '/');
    assert.ok(some[1] === '/system.slice' || some[1] === '/machine.slice');
    const shallow: string[] = [];
    walkDirs(root, (rel) => (shallow.push(rel), true), { maxDirs: 100, maxDepth: 1 });
    assert.ok(shallow.every((r) => r.split('/').filter(Boolean).length <= 1));
  });
});
