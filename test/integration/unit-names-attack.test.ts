/**
 * Integration, as the attack: uid 65534 controls a delegated subtree
 * (user@65534.service, handed over by chown as systemd does), makes a cgroup
 * named like a real service inside it, moves its own process there and
 * sends. The kernel refuses it (the service rule is for the real, root-owned
 * cgroup only); what Sluice then tells the operator must not say the service
 * did it: neither the stored event (`sluice log`) nor `sluice connections`
 * may name the service for the look-alike's traffic. The real service's
 * traffic is still named. This host has no systemd, so these are the rules
 * without it (the systemd rules are unit-tested with an injected systemctl).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { attempter, eventsFrom, NODE } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;
const DELEGATED_USER = join(ROOT, 'dist/test/support/delegated-user.js');
const SUPPORT = join(ROOT, 'dist/test/support');

interface ConnectionJson {
  localPort: number;
  uid: number;
  rule?: string;
  process?: { pid: number; unit?: string; cgroup?: string };
}

describe('integration: a look-alike service cgroup in a delegated subtree is never named as the service', () => {
  let w: World;
  let root: string;
  let unit: string;
  let real: string;
  let delegated: string;
  let fake: string;
  let daemon: ChildProcess | undefined;
  const started: { pid: number; child: ChildProcess }[] = [];

  before(async () => {
    w = await World.create();
    const r = findCgroup2Root();
    assert.ok(r, 'a cgroup2 mount is required');
    root = r;
    const slice = `${w.id}.slice`;
    unit = `web-${process.pid}.service`;
    // The real service: root's cgroup, as an init system would make it.
    real = w.makeCgroup(root, `${slice}/${unit}`);
    // uid 65534's user manager: the directory and the files that govern it are chowned to it.
    delegated = w.makeCgroup(root, `${slice}/user@${NOBODY}.service`);
    for (const p of [delegated, ...['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'].map((f) => join(delegated, f))]) {
      if (existsSync(p)) chownSync(p, NOBODY, NOBODY);
    }
    // The attack's first half, by uid 65534 itself: a cgroup named like the service, in its own subtree.
    fake = join(delegated, 'app.slice', unit);
    const made = await w.exec(['setpriv', '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', 'mkdir', '-p', fake]);
    assert.equal(made.code, 0, `uid ${NOBODY} creates cgroups in its delegated subtree: ${made.stderr}`);
    w.makeCgroup(root, fake.slice(root.length + 1));

    await w.spawnReady(w.world, [NODE, join(SUPPORT, 'hold-server.js'), '9100']);
    const policy = w.policy(
      `mode: enforce
log:
  rate: 5000
  burst: 20000
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: svc
    to: [${HOSTS.api4}]
    ports: [443/tcp]
    services: [${unit}]
  - name: hold
    to: [${HOSTS.api4}]
    ports: [9100/tcp]
`,
    );
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    daemon.stderr?.resume();
  });
  after(async () => {
    for (const a of started) {
      try {
        process.kill(a.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  /** An attempt helper run by uid 65534 from inside its delegated subtree, which then moves itself into the look-alike. */
  async function attackerIn(args: string[]): Promise<Awaited<ReturnType<typeof attempter>>> {
    const a = await attempter(w, args, { via: [NODE, DELEGATED_USER, delegated, String(NOBODY), '--'] });
    started.push(a);
    // The second half, again as uid 65534: it owns both ends of the move, so the kernel lets it.
    const moved = await w.exec(['setpriv', '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', 'tee', join(fake, 'cgroup.procs')], { input: String(a.pid) });
    assert.equal(moved.code, 0, `uid ${NOBODY} moves its process into the look-alike: ${moved.stderr}`);
    return a;
  }

  /**
   * An attempt helper of root's, put in the real service's cgroup once it has run for a while: the
   * collector's process table re-reads a process on its own only in its first 2 s, so the table
   * still has it where it started, and only the cgroup in the packet's mark says where it is now
   * (this was a flake in CI whenever starting the helper took longer than 2 s).
   */
  async function serviceProcess(args: string[]): Promise<Awaited<ReturnType<typeof attempter>>> {
    const a = await attempter(w, args);
    started.push(a);
    await new Promise((r) => setTimeout(r, 2500));
    await w.exec(['tee', join(real, 'cgroup.procs')], { input: String(a.pid) });
    return a;
  }

  const rel = (dir: string) => dir.slice(root.length);

  it("the look-alike's blocked connect is stored and shown without the service's name; the real service's is named", async () => {
    const a = await attackerIn(['tcp', HOSTS.api4, '443', '31201']);
    assert.deepEqual(await a.go(), { ok: false, error: 'ECONNREFUSED' }, 'the service rule does not let the look-alike through');
    const [e] = await eventsFrom(w, 31201);
    assert.ok(e, 'the blocked attempt is stored');
    assert.equal(e.verdict, 'blocked');
    assert.equal(e.rule, '#default');
    assert.equal(e.uid, NOBODY);
    assert.equal(e.process?.pid, a.pid, 'the sender is named');
    assert.equal(e.process?.cgroup, rel(fake), 'with the cgroup it was in, as the kernel reports it');
    assert.equal(e.process?.unit, undefined, `not as ${unit}: that name is uid ${NOBODY}'s choice`);
    const text = await w.sluice(['log', '--limit', '100000']);
    const line = text.stdout.split('\n').find((l) => l.includes(':31201 ->'));
    assert.ok(line, text.stdout);
    assert.doesNotMatch(line, /unit=/, 'the log line names no unit');

    const s = await serviceProcess(['tcp', HOSTS.other4, '443', '31202']);
    assert.deepEqual(await s.go(), { ok: false, error: 'ECONNREFUSED' });
    const [f] = await eventsFrom(w, 31202);
    assert.equal(f?.process?.pid, s.pid);
    assert.equal(f?.process?.cgroup, rel(real));
    assert.equal(f?.process?.unit, unit, 'the real, root-owned service is named');
    const text2 = await w.sluice(['log', '--limit', '100000']);
    assert.match(text2.stdout.split('\n').find((l) => l.includes(':31202 ->')) ?? '', new RegExp(`unit=${unit.replace('.', '\\.')}`));
  });

  it("`sluice connections` does not name the service for the look-alike's connection; it does for the real one", async () => {
    const a = await attackerIn(['hold', HOSTS.api4, '9100', '31203']);
    assert.equal((await a.go()).ok, true, 'allowed to anyone by the hold rule');
    const s = await serviceProcess(['hold', HOSTS.api4, '9100', '31204']);
    assert.equal((await s.go()).ok, true);
    const r = await w.sluiceJson<{ connections: ConnectionJson[] }>(['connections']);
    assert.equal(r.code, 0, r.stderr);
    const mine = r.json.connections.find((c) => c.localPort === 31203);
    assert.ok(mine, JSON.stringify(r.json.connections));
    assert.equal(mine.uid, NOBODY);
    assert.equal(mine.process?.pid, a.pid);
    assert.equal(mine.process?.cgroup, rel(fake));
    assert.equal(mine.process?.unit, undefined, `not as ${unit}`);
    assert.equal(mine.rule, 'hold');
    const theirs = r.json.connections.find((c) => c.localPort === 31204);
    assert.equal(theirs?.process?.pid, s.pid);
    assert.equal(theirs?.process?.unit, unit, 'the real service is named');
    const text = await w.sluice(['connections']);
    assert.match(text.stdout, new RegExp(`node\\s+${a.pid}\\s+nobody\\s+-\\s+tcp\\s+198\\.18\\.0\\.2:31203`), 'SERVICE is empty for the look-alike');
    assert.match(text.stdout, new RegExp(`node\\s+${s.pid}\\s+root\\s+${unit.replace('.', '\\.')}\\s+tcp\\s+198\\.18\\.0\\.2:31204`));
  });

  it("the collector judged both cgroups off its loop and left nothing waiting", async () => {
    const st = (await w.control('collector.status')) as { waiting: number; units: { resolutions: number; hits: number; unresolved: number } };
    assert.equal(st.waiting, 0, 'nothing is left waiting');
    assert.ok(st.units.resolutions >= 2, `the look-alike and the real service were each judged: ${JSON.stringify(st.units)}`);
    assert.equal(st.units.unresolved, 0, 'every judgment came in time');
  });
});
