/**
 * Integration: the daemon does its whole job with exactly the capability
 * bounding set its unit grants (CapabilityBoundingSet= in
 * packaging/sluice.service, read from the file so the two cannot drift) and
 * no new privileges: it applies its policy, the DNS guard binds its
 * privileged port and opens an allowed name's addresses, and a blocked
 * attempt of another user is attributed to its process. Run under setpriv,
 * the way systemd would start it, in the namespace world.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { attempter, eventsFrom, finish, NODE } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, stopChild, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const NOBODY = 65534;

/** The unit's bounding set, as setpriv writes it: -all,+net_admin,... */
function unitCapabilities(): { setpriv: string; names: string[] } {
  const unit = readFileSync(join(ROOT, 'packaging/sluice.service'), 'utf8');
  const line = unit.split('\n').find((l) => l.startsWith('CapabilityBoundingSet='));
  assert.ok(line, 'the unit has a CapabilityBoundingSet');
  const names = line.slice('CapabilityBoundingSet='.length).trim().split(/\s+/);
  return { names, setpriv: `-all,${names.map((n) => `+${n.replace(/^CAP_/, '').toLowerCase()}`).join(',')}` };
}

describe('integration: the daemon under its unit\'s capability bounding set', () => {
  let w: World;
  let daemon: ChildProcess | undefined;

  before(async () => {
    w = await World.create({ dns: true });
    const policy = w.policy(`mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n`, 'caps.yaml');
    const r = await w.sluice(['apply', policy]);
    assert.equal(r.code, 0, r.stderr);
    const caps = unitCapabilities();
    daemon = await w.spawnReady(w.client, ['setpriv', '--bounding-set', caps.setpriv, '--no-new-privs', '--', process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  });
  after(async () => {
    await stopChild(daemon);
    await w?.destroy();
  });

  it('runs with no capability beyond the set: CAP_SYS_ADMIN and CAP_SYS_MODULE are gone', () => {
    const pid = Number(readFileSync(join(w.stateDir, 'daemon.pid'), 'utf8').trim());
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const eff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(status)?.[1] ?? '0'}`);
    const bit = (n: number) => (eff >> BigInt(n)) & 1n;
    assert.equal(bit(21), 0n, 'no CAP_SYS_ADMIN');
    assert.equal(bit(16), 0n, 'no CAP_SYS_MODULE');
    assert.equal(bit(12), 1n, 'CAP_NET_ADMIN');
    assert.match(status, /NoNewPrivs:\s*1/);
  });

  it('the DNS guard answers an allowed name and opens its address; a connect to it passes', async () => {
    const r = await w.exec([process.execPath, DNSQ, '--name', 'api.sluice.test', '--connect', '443']);
    const a = JSON.parse(r.stdout.trim().split('\n')[0] as string) as { answers?: string[]; connect?: string };
    assert.deepEqual(a.answers, [HOSTS.api4]);
    assert.equal(a.connect, 'ok');
  });

  it('the attribution probes load with CAP_BPF and CAP_PERFMON (no CAP_SYS_ADMIN)', async () => {
    const st = (await w.control('collector.status')) as { probes: { loaded: boolean; reason?: string } };
    assert.equal(st.probes.loaded, true, `probes: ${st.probes.reason}`);
  });

  it('a blocked connect by another user is attributed to its process and executable (that user\'s /proc/PID/fd and exe)', async () => {
    const a = await attempter(w, ['tcp', HOSTS.api4b, '443', '31207'], { uid: NOBODY });
    try {
      assert.equal((await a.go()).ok, false);
      const evs = await eventsFrom(w, 31207);
      assert.equal(evs.length, 1, JSON.stringify(evs));
      assert.equal(evs[0]?.process?.pid, a.pid, JSON.stringify(evs[0]));
      assert.equal(evs[0]?.process?.exe, NODE, 'its executable: /proc/PID/exe of another user needs CAP_SYS_PTRACE');
      assert.equal(evs[0]?.uid, NOBODY);
    } finally {
      await finish(a);
    }
  });
});
