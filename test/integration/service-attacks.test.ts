/**
 * Integration, as the attack: an unprivileged user who controls a delegated
 * cgroup subtree (systemd hands user@UID.service to its user by chown, and
 * anything may be delegated the same way) makes a cgroup named like a
 * service, moves itself in, and tries to reach what only that service may
 * reach. This host has no systemd, so these are the rules without systemd:
 * only cgroups that root alone controls can be a service; the systemd rules
 * are unit-tested with an injected systemctl (test/unit/cgroups.test.ts).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { NODE, sleep } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;
const DELEGATED_USER = join(ROOT, 'dist/test/support/delegated-user.js');
const PROBE = join(ROOT, 'dist/test/world/probe.js');
const target = `tcp:${HOSTS.api4}:443`;

describe('integration: service rules against look-alike cgroups in delegated subtrees', () => {
  let w: World;
  let root: string;
  let slice: string;
  let daemon: ChildProcess | undefined;

  before(async () => {
    w = await World.create();
    const r = findCgroup2Root();
    assert.ok(r, 'a cgroup2 mount is required');
    root = r;
    slice = `${w.id}.slice`;
  });
  after(async () => {
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  /** A cgroup handed to `uid` the way systemd delegates: the directory and the files that govern it are chowned. */
  function delegate(rel: string, uid: number): string {
    const dir = w.makeCgroup(root, rel);
    for (const p of [dir, ...['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'].map((f) => join(dir, f))]) {
      if (existsSync(p)) chownSync(p, uid, uid);
    }
    return dir;
  }

  /**
   * The attack's first half, done by uid 65534 itself: create `lookalikeRel` inside its
   * delegated subtree. Returns the look-alike's directory.
   */
  async function lookalike(delegated: string, lookalikeRel: string): Promise<string> {
    const dir = join(delegated, lookalikeRel);
    const made = await w.exec(['setpriv', '--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', '--', 'mkdir', '-p', dir]);
    assert.equal(made.code, 0, `uid ${NOBODY} creates cgroups in its delegated subtree: ${made.stderr}`);
    // Registered for removal on teardown (after the attacker's processes are gone).
    w.makeCgroup(root, dir.slice(root.length + 1));
    return dir;
  }

  /**
   * The second half: a process of uid 65534, started inside its delegated subtree, moves
   * itself into the look-alike (allowed: it owns both ends of the move) and connects.
   */
  async function attackFrom(delegated: string, dir: string): Promise<boolean> {
    const r = await w.exec([NODE, DELEGATED_USER, delegated, String(NOBODY), '--', NODE, PROBE, '--cgroup', dir, '--timeout', '800', target]);
    assert.equal(r.code, 0, `the attacker joined its look-alike cgroup and tried: ${r.stderr}`);
    const results = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { target: string; ok: boolean });
    assert.equal(results.length, 1);
    return results[0]?.ok === true;
  }

  const servicePolicy = (services: string, name: string) => w.policy(`mode: enforce\nrules:\n  - name: svc\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n    services: [${services}]\n`, name);

  it("a look-alike in a user manager's subtree (user@65534.service) gets nothing; the real, root-owned service connects", async () => {
    const unit = `web-${process.pid}.service`;
    const real = w.makeCgroup(root, `${slice}/${unit}`);
    const user = delegate(`${slice}/user@${NOBODY}.service`, NOBODY);
    const fake = await lookalike(user, `app.slice/${unit}`);
    assert.equal(await attackFrom(user, fake), true, 'with no table, the attacker connects: the attack works as a test');
    const applied = await w.sluice(['apply', servicePolicy(unit, 'a.yaml')]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.equal(await attackFrom(user, fake), false, 'the look-alike does not get the service\'s egress');
    assert.equal((await w.reach([target], { cgroup: real }))[target], true, 'the real service connects');
    assert.equal((await w.reach([target], { timeoutMs: 500 }))[target], false, 'a process outside any service is refused');
  });

  it('a look-alike in a subtree delegated by ownership alone (neutral name) gets nothing while the service is stopped, nor after it starts', async () => {
    const unit = `timer-job-${process.pid}.service`;
    const tenant = delegate(`${slice}/tenant.slice`, NOBODY);
    const fake = await lookalike(tenant, unit);
    const p = servicePolicy(unit, 'b.yaml');
    const applied = await w.sluice(['apply', p]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.match(applied.stdout, new RegExp(`service ${unit} has no cgroup now`), 'the stopped service has no cgroup: the look-alike is not taken for it');
    assert.equal(await attackFrom(tenant, fake), false, 'the look-alike does not get the stopped service\'s egress');
    // The service starts (a root-owned cgroup); the next apply finds it, and only it.
    const real = w.makeCgroup(root, `${slice}/${unit}`);
    assert.equal((await w.sluice(['apply', p])).code, 0);
    assert.equal((await w.reach([target], { cgroup: real }))[target], true, 'the real service connects');
    assert.equal(await attackFrom(tenant, fake), false, 'the look-alike still does not');
  });

  it('an explicit cgroup path inside a delegated subtree is refused, with a warning that says why', async () => {
    const unit = `explicit-${process.pid}.service`;
    const user = delegate(`${slice}/user@${NOBODY}.service`, NOBODY);
    const fake = await lookalike(user, `app.slice/${unit}`);
    const path = fake.slice(root.length);
    const applied = await w.sluice(['apply', servicePolicy(path, 'c.yaml')]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.match(applied.stdout, /delegated/, 'the warning names the reason');
    assert.equal(await attackFrom(user, fake), false, 'the path does not open anything to its owner');
  });

  it("the daemon's service watch keeps the look-alike out too, and lets the real service in when it starts", async () => {
    const unit = `late-${process.pid}.service`;
    const tenant = delegate(`${slice}/tenant2.slice`, NOBODY);
    const fake = await lookalike(tenant, `app.slice/${unit}`);
    // The daemon runs on what is applied (its argument counts only on a state directory's first start).
    assert.equal((await w.sluice(['apply', servicePolicy(unit, 'd.yaml')])).code, 0);
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    assert.equal(await attackFrom(tenant, fake), false, 'at daemon start');
    // Through at least one poll of the watch (every 5 s), whatever it does with the tree.
    await sleep(5_500);
    assert.equal(await attackFrom(tenant, fake), false, 'after the watch has looked again');
    const real = w.makeCgroup(root, `${slice}/${unit}`);
    let ok = false;
    // A deadline, not a count: a refused connect returns at once, and the watch polls every 5 s (later on a loaded machine).
    for (const end = Date.now() + 20_000; !ok && Date.now() < end; ) ok = (await w.reach([target], { cgroup: real, timeoutMs: 300 }))[target] === true;
    assert.ok(ok, 'the service, started after the daemon, is picked up by the watch');
    assert.equal(await attackFrom(tenant, fake), false, 'and the look-alike is still refused');
    const status = (await w.control('status')) as { components: Record<string, { checks: number }> };
    assert.ok((status.components['service-watch']?.checks ?? 0) >= 2, 'the watch ran');
  });
});
