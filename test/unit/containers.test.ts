/**
 * Unit: the container a cgroup path names, for each runtime's layout, and
 * what is not one (a look-alike in a user's delegated subtree is flagged, a
 * near miss is nothing).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { containerLabel, containerOf } from '../../src/system/containers.js';

const ID = 'a3f1c0de'.repeat(8);
const ID2 = '0123456789abcdef'.repeat(4);

describe('unit: containers', () => {
  it('names each runtime\'s cgroups', () => {
    const cases: [string, ReturnType<typeof containerOf>][] = [
      [`/system.slice/docker-${ID}.scope`, { runtime: 'docker', id: ID }],
      [`/docker/${ID}`, { runtime: 'docker', id: ID }],
      [`/machine.slice/libpod-${ID}.scope`, { runtime: 'podman', id: ID }],
      [`/machine.slice/libpod-${ID}.scope/container`, { runtime: 'podman', id: ID }],
      [`/libpod_parent/libpod-${ID}`, { runtime: 'podman', id: ID }],
      [`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_5678_90ef_1234_567890abcdef.slice/cri-containerd-${ID}.scope`, { runtime: 'containerd', id: ID }],
      [`/kubepods/burstable/pod1234abcd-5678-90ef-1234-567890abcdef/${ID}`, { runtime: 'containerd', id: ID }],
      [`/kubepods/pod1234abcd-5678-90ef-1234-567890abcdef/${ID}`, { runtime: 'containerd', id: ID }],
      [`/system.slice/nerdctl-${ID}.scope`, { runtime: 'containerd', id: ID }],
      [`/default/${ID}`, { runtime: 'containerd', id: ID }],
      [`/kubepods.slice/kubepods-pod1.slice/crio-${ID}.scope`, { runtime: 'cri-o', id: ID }],
      ['/machine.slice/systemd-nspawn@web1.service/payload', { runtime: 'nspawn', id: 'web1' }],
      ['/machine.slice/machine-build\\x2dbox.scope', { runtime: 'machine', id: 'build-box' }],
    ];
    for (const [path, want] of cases) assert.deepEqual(containerOf(path), want, path);
  });

  it('the outermost container is the one on this host', () => {
    assert.deepEqual(containerOf(`/system.slice/docker-${ID}.scope/docker/${ID2}`), { runtime: 'docker', id: ID });
  });

  it('a container in a user\'s delegated subtree (rootless Podman, or a look-alike) is flagged as named by that user', () => {
    const rootless = `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope/container`;
    assert.deepEqual(containerOf(rootless), { runtime: 'podman', id: ID, delegated: true });
    const lookalike = `/user.slice/user-1000.slice/user@1000.service/app.slice/docker-${ID}.scope`;
    assert.deepEqual(containerOf(lookalike), { runtime: 'docker', id: ID, delegated: true });
    assert.equal(containerLabel(containerOf(lookalike)!), `docker:${ID.slice(0, 12)}(user)`);
  });

  it('near misses are not containers', () => {
    for (const path of [
      undefined,
      '',
      '/',
      '/system.slice/docker.service',
      '/system.slice/containerd.service',
      `/system.slice/docker-${ID.slice(1)}.scope`,
      `/system.slice/docker-${ID.toUpperCase()}.scope`,
      `/system.slice/docker-${ID}.scope.bak`,
      `/machine.slice/libpod-conmon-${ID}.scope`,
      `/system.slice/${ID}`,
      `/pod1234abcd-5678-90ef-1234-567890abcdef/${ID}`,
      '/system.slice/machine-web.scope',
      '/machine.slice/machine-../etc.scope',
      '/machine.slice/machine-.scope',
      `/x/${'a/'.repeat(3000)}`,
    ]) {
      assert.equal(containerOf(path), undefined, String(path));
    }
  });

  it('labels show the runtime and a short id, and a machine by name', () => {
    assert.equal(containerLabel({ runtime: 'docker', id: ID }), `docker:${ID.slice(0, 12)}`);
    assert.equal(containerLabel({ runtime: 'nspawn', id: 'web1' }), 'nspawn:web1');
  });

  it('any path: an answer, if any, is one of the path\'s own segments (or its unescaped machine name)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom('docker', 'machine.slice', 'kubepods', 'user@1000.service', `docker-${ID}.scope`, ID, 'machine-x.scope', 'default'), fc.string({ maxLength: 70 })), { maxLength: 8 }), (segs) => {
        const path = `/${segs.join('/')}`;
        const c = containerOf(path);
        if (!c) return;
        assert.ok(path.includes(c.id) || c.runtime === 'machine' || c.runtime === 'nspawn', path);
        const userSubtree = segs.some((s) => /^user@\d+\.service$/.test(s));
        if (!userSubtree) assert.equal(c.delegated, undefined, path);
        if (c.delegated) assert.ok(userSubtree, path);
      }),
    );
  });
});
