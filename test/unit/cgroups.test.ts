/** Finding the cgroup v2 mount on unified, hybrid and unusual hosts. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findCgroup2Root } from '../../src/system/cgroups.js';

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
