/**
 * Finding the cgroup v2 mount, and resolving services to cgroups: the rules
 * with and without systemd, as attacks from a user who controls a delegated
 * subtree. One set of rules, two drivers (the CLI's synchronous one, the
 * daemon's asynchronous one): every case runs through both.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePolicy } from '../../src/policy/load-policy.js';
import type { Policy } from '../../src/policy/policy.js';
import { asyncSystemHost, parseSystemctlShow, runCommandAsync, systemctlShowArgv, systemHost, type CommandResult } from '../../src/system/cgroup-host.js';
import { findCgroup2Root, walkDirs } from '../../src/system/cgroups.js';
import {
  cgroupService,
  cgroupServiceAsync,
  cgroupServices,
  delegatedBecause,
  resolveServices,
  resolveServicesAsync,
  type AsyncCgroupHost,
  type CgroupHost,
  type ControlGroups,
  type DirFacts,
  type ServiceResolution,
} from '../../src/system/resolve-services.js';
import { compileResolved } from '../../src/system/compile-env.js';
import { fakeHost } from '../support/fixtures.js';

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

describe('unit: walking a cgroup tree (for the monitor index)', () => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-cgtree-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const cg = (rel: string) => {
    mkdirSync(join(root, rel), { recursive: true });
    writeFileSync(join(root, rel, 'cgroup.procs'), '');
  };
  cg('system.slice/nginx.service');
  cg('machine.slice/ctr.scope/system.slice/nginx.service');

  it('visits breadth-first from the root, with each directory\'s inode, and keeps within its bounds', async () => {
    const all: string[] = [];
    const inos = new Map<string, bigint>();
    await walkDirs(root, (rel, ino) => (all.push(rel), inos.set(rel, ino), true));
    assert.equal(all[0], '/');
    assert.ok(all.indexOf('/system.slice') < all.indexOf('/system.slice/nginx.service'));
    assert.ok(all.includes('/machine.slice/ctr.scope/system.slice/nginx.service'));
    assert.equal(inos.get('/system.slice/nginx.service'), statSync(join(root, 'system.slice/nginx.service'), { bigint: true }).ino, 'the inode is the cgroup id');
    const some: string[] = [];
    // The root lists its 2 children (2 seen); the first child visited lists a third: over the bound, stop.
    await walkDirs(root, (rel) => (some.push(rel), true), { maxDirs: 2, maxDepth: 12 });
    assert.equal(some.length, 2);
    assert.equal(some[0], '/');
    const shallow: string[] = [];
    await walkDirs(root, (rel) => (shallow.push(rel), true), { maxDirs: 100, maxDepth: 1 });
    assert.ok(shallow.every((r) => r.split('/').filter(Boolean).length <= 1));
    const pruned: string[] = [];
    await walkDirs(root, (rel) => (pruned.push(rel), rel !== '/machine.slice'));
    assert.ok(pruned.includes('/machine.slice') && !pruned.some((r) => r.startsWith('/machine.slice/')), 'a visit returning false keeps the walk out');
  });

  it('the walk never holds the event loop: other callbacks run between its directories', async () => {
    // 2,000 directories; a synchronous walk would let nothing else run until it is done.
    const big = mkdtempSync(join(tmpdir(), 'sluice-cgwide-'));
    try {
      for (let i = 0; i < 40; i++) for (let j = 0; j < 50; j++) mkdirSync(join(big, `s${i}.slice`, `u${j}.service`), { recursive: true });
      let turns = 0;
      let running = true;
      const spin = () => {
        turns++;
        if (running) setImmediate(spin);
      };
      setImmediate(spin);
      let visited = 0;
      let turnsAtFirstVisit = -1;
      let turnsAtLastVisit = -1;
      await walkDirs(big, () => {
        if (visited++ === 0) turnsAtFirstVisit = turns;
        turnsAtLastVisit = turns;
        return true;
      });
      running = false;
      assert.equal(visited, 1 + 40 + 2000);
      assert.ok(turnsAtLastVisit - turnsAtFirstVisit >= 100, `the loop turned ${turnsAtLastVisit - turnsAtFirstVisit} times during the walk`);
    } finally {
      rmSync(big, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------
// Resolution, against a fake host: a cgroup tree with owners and modes, and a
// systemctl whose answers the test chooses.
// ---------------------------------------------------------------------------

const ROOT_DIR = '/cg';

/** A cgroup in the fake tree: owner of the directory and of its control files (delegation chowns them). */
interface FakeCgroup {
  uid?: number;
  mode?: number;
  procsUid?: number;
  procsMode?: number;
  threadsUid?: number;
  subtreeUid?: number;
  /** A plain directory, not a cgroup (no cgroup.procs). */
  plain?: boolean;
}

class FakeTree {
  readonly nodes = new Map<string, FakeCgroup>([['/', {}]]);
  private ids = new Map<string, bigint>();
  inspected: string[] = [];

  add(rel: string, c: FakeCgroup = {}): this {
    const parts = rel.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const p = `/${parts.slice(0, i).join('/')}`;
      if (!this.nodes.has(p)) this.nodes.set(p, {});
    }
    this.nodes.set(`/${parts.join('/')}`, c);
    return this;
  }

  /** Stops a service: its cgroup goes. */
  remove(rel: string): void {
    for (const k of [...this.nodes.keys()]) if (k === rel || k.startsWith(`${rel}/`)) this.nodes.delete(k);
  }

  id(rel: string): bigint {
    let id = this.ids.get(rel);
    if (id === undefined) {
      id = BigInt(1000 + this.ids.size);
      this.ids.set(rel, id);
    }
    return id;
  }

  inspect(abs: string, children: boolean): DirFacts | null {
    this.inspected.push(abs);
    assert.ok(abs === ROOT_DIR || abs === `${ROOT_DIR}/` || abs.startsWith(`${ROOT_DIR}/`), `only the cgroup root is read: ${abs}`);
    const rel = abs.slice(ROOT_DIR.length).replace(/\/$/, '') || '/';
    const n = this.nodes.get(rel);
    if (!n) return null;
    const own = (uid: number | undefined, mode: number) => ({ uid: uid ?? n.uid ?? 0, mode });
    const facts: DirFacts = {
      ino: this.id(rel),
      dir: own(n.uid, n.mode ?? 0o755),
      procs: n.plain ? null : { uid: n.procsUid ?? n.uid ?? 0, mode: n.procsMode ?? 0o644 },
      threads: n.plain ? null : own(n.threadsUid ?? n.procsUid, 0o644),
      subtreeControl: n.plain ? null : own(n.subtreeUid ?? n.procsUid, 0o644),
    };
    if (children) {
      const prefix = rel === '/' ? '/' : `${rel}/`;
      facts.children = [...this.nodes.keys()].filter((k) => k !== rel && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
    }
    return facts;
  }
}

/** A systemd that answers from a table (unit -> ControlGroup, '' when inactive), through the real parser. */
function fakeSystemctl(table: Record<string, string>, calls: string[][]): (argv: string[]) => CommandResult {
  return (argv) => {
    calls.push(argv);
    const units = argv.slice(argv.indexOf('--') + 1);
    const blocks = units.map((u) => `Names=${u}\nControlGroup=${table[u] ?? ''}\n`);
    return { status: 0, stdout: blocks.join('\n'), stderr: '' };
  };
}

interface FakeHostOpts {
  systemd: boolean;
  run?: (argv: string[]) => CommandResult;
}

function hosts(tree: FakeTree, o: FakeHostOpts): { sync: CgroupHost; async: AsyncCgroupHost } {
  const run = o.run ?? (() => assert.fail('systemctl must not run without systemd'));
  const sync = systemHost({ run, systemdRunning: () => o.systemd });
  const async = asyncSystemHost({ run: async (argv) => run(argv), systemdRunning: async () => o.systemd });
  return {
    sync: { ...sync, inspect: (d, c) => tree.inspect(d, c) },
    async: { ...async, inspect: async (d, c) => tree.inspect(d, c) },
  };
}

function policyWith(services: string[]): Policy {
  const yaml = `mode: enforce\nrules:\n  - name: svc\n    to: [198.18.1.10]\n    ports: [443/tcp]\n    services: [${services.map((s) => JSON.stringify(s)).join(', ')}]\n`;
  return parsePolicy(Buffer.from(yaml), 'test.yaml', fakeHost);
}

/** Resolves through both drivers, checks they agree, returns the result. */
async function resolveBoth(tree: FakeTree, services: string[], o: FakeHostOpts): Promise<ServiceResolution> {
  const policy = policyWith(services);
  const h = hosts(tree, o);
  const a = resolveServices(policy, { root: ROOT_DIR, host: h.sync });
  const b = await resolveServicesAsync(policy, { root: ROOT_DIR, host: h.async });
  assert.deepEqual(b, a, 'the CLI and the daemon resolve alike');
  return a;
}

const paths = (r: ServiceResolution, key: string) => (r.cgroups.get(key) ?? []).map((c) => c.path).sort();

describe('unit: services without systemd: only cgroups root alone controls', () => {
  it("a look-alike inside a user manager's subtree is never found; the root-owned service is", async () => {
    const tree = new FakeTree()
      .add('/system.slice/nginx.service')
      .add('/user.slice/user-65534.slice/user@65534.service', { uid: 65534 })
      .add('/user.slice/user-65534.slice/user@65534.service/app.slice/nginx.service', { uid: 65534 });
    const r = await resolveBoth(tree, ['nginx.service'], { systemd: false });
    assert.deepEqual(paths(r, 'unit:nginx.service'), ['/system.slice/nginx.service']);
    assert.equal(r.complete, true);
    assert.ok(!tree.inspected.some((d) => d.includes('user@65534.service/')), 'the delegated subtree is not even read');
    assert.ok(!tree.inspected.some((d) => d.includes('/user.slice/')), 'nor user.slice');
  });

  it('with the service stopped, the look-alike still matches nothing (the original attack)', async () => {
    const tree = new FakeTree().add('/home.slice/tenant', { uid: 65534 }).add('/home.slice/tenant/nginx.service', { uid: 65534 });
    const r = await resolveBoth(tree, ['nginx.service'], { systemd: false });
    assert.deepEqual(paths(r, 'unit:nginx.service'), []);
    const compiled = compileResolved(policyWith(['nginx.service']), r);
    assert.ok(compiled.warnings.some((w) => /nginx.service has no cgroup now/.test(w)));
    assert.ok(!compiled.ruleset.sets.some((s) => s.key === 'cgroupv2'), 'no cgroup set: the rule matches nothing');
  });

  it('delegation by ownership of any part is enough: the directory, cgroup.procs, cgroup.threads, cgroup.subtree_control', async () => {
    for (const [what, c] of [
      ['directory', { uid: 1000, procsUid: 0 }],
      ['cgroup.procs', { procsUid: 1000, threadsUid: 0, subtreeUid: 0 }],
      ['cgroup.threads', { threadsUid: 1000 }],
      ['cgroup.subtree_control', { subtreeUid: 1000 }],
      ['group-writable directory', { mode: 0o775 }],
      ['world-writable cgroup.procs', { procsMode: 0o666 }],
    ] as [string, FakeCgroup][]) {
      // The delegated part is an ancestor: the look-alike below it is root's in every other way.
      const tree = new FakeTree().add('/system.slice/nginx.service').add('/opt.slice', c).add('/opt.slice/nginx.service');
      const r = await resolveBoth(tree, ['nginx.service'], { systemd: false });
      assert.deepEqual(paths(r, 'unit:nginx.service'), ['/system.slice/nginx.service'], `${what} delegated: the subtree is not searched`);
      // And the look-alike's own directory delegated.
      const tree2 = new FakeTree().add('/opt.slice/nginx.service', c);
      assert.deepEqual(paths(await resolveBoth(tree2, ['nginx.service'], { systemd: false }), 'unit:nginx.service'), [], `${what} of the look-alike itself`);
    }
  });

  it('user@*.service is refused by name even when root-owned, and user.slice is not searched', async () => {
    const tree = new FakeTree().add('/x.slice/user@0.service/app.slice/cron.service').add('/user.slice/cron.service');
    assert.deepEqual(paths(await resolveBoth(tree, ['cron.service'], { systemd: false }), 'unit:cron.service'), []);
  });

  it("root-owned cgroups at any depth still count (a rootful container's tree); a plain directory does not", async () => {
    const tree = new FakeTree().add('/machine.slice/ctr.scope/system.slice/nginx.service').add('/system.slice/nginx.service').add('/srv/nginx.service', { plain: true });
    const r = await resolveBoth(tree, ['nginx.service'], { systemd: false });
    assert.deepEqual(paths(r, 'unit:nginx.service'), ['/machine.slice/ctr.scope/system.slice/nginx.service', '/system.slice/nginx.service']);
    assert.deepEqual(
      r.cgroups.get('unit:nginx.service')?.map((c) => c.level).sort(),
      [2, 4],
    );
  });

  it('a delegated root (Sluice inside a container whose cgroup tree someone else owns) matches nothing', async () => {
    const tree = new FakeTree().add('/system.slice/nginx.service');
    tree.nodes.set('/', { uid: 100000 });
    assert.deepEqual(paths(await resolveBoth(tree, ['nginx.service'], { systemd: false }), 'unit:nginx.service'), []);
  });
});

describe('unit: explicit cgroup paths', () => {
  it('a root-owned path is taken as given', async () => {
    const tree = new FakeTree().add('/machine.slice/vm.scope');
    const r = await resolveBoth(tree, ['/machine.slice/vm.scope'], { systemd: false });
    assert.deepEqual(r.cgroups.get('cgroup:/machine.slice/vm.scope'), [{ id: tree.id('/machine.slice/vm.scope'), level: 2, path: '/machine.slice/vm.scope' }]);
    assert.deepEqual(r.notes, []);
  });

  it('a path inside a delegated subtree is refused with the reason, with or without systemd', async () => {
    const tree = new FakeTree().add('/user.slice/user-1000.slice/user@1000.service', { uid: 1000 }).add('/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service', { uid: 1000 });
    for (const systemd of [false, true]) {
      const r = await resolveBoth(tree, ['/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service'], { systemd, run: fakeSystemctl({}, []) });
      assert.deepEqual(r.cgroups.get('cgroup:/user.slice/user-1000.slice/user@1000.service/app.slice/sync.service'), []);
      assert.equal(r.notes.length, 1);
      assert.match(r.notes[0] ?? '', /refused: \/user\.slice\/user-1000\.slice\/user@1000\.service is delegated .*users:/);
    }
    const byOwner = new FakeTree().add('/srv.slice/tenant', { procsUid: 1000 }).add('/srv.slice/tenant/job.scope', { uid: 1000 });
    const r = await resolveBoth(byOwner, ['/srv.slice/tenant/job.scope'], { systemd: false });
    assert.deepEqual(r.cgroups.get('cgroup:/srv.slice/tenant/job.scope'), []);
    assert.match(r.notes[0] ?? '', /\/srv\.slice\/tenant is delegated \(its cgroup\.procs is owned by uid 1000\)/);
  });

  it('a path that does not exist (yet) matches nothing, without a note', async () => {
    const r = await resolveBoth(new FakeTree(), ['/machine.slice/vm.scope'], { systemd: false });
    assert.deepEqual(r.cgroups.get('cgroup:/machine.slice/vm.scope'), []);
    assert.deepEqual(r.notes, []);
  });
});

describe('unit: services with systemd: only systemd\'s answer counts', () => {
  it("asks systemctl once, by argv, and takes its path; root-owned look-alikes elsewhere do not count", async () => {
    const tree = new FakeTree().add('/system.slice/nginx.service').add('/system.slice/nginx.service/worker').add('/other.slice/nginx.service').add('/system.slice/app.service');
    const calls: string[][] = [];
    const r = await resolveBoth(tree, ['nginx.service', 'app.service'], { systemd: true, run: fakeSystemctl({ 'nginx.service': '/system.slice/nginx.service', 'app.service': '/system.slice/app.service' }, calls) });
    assert.deepEqual(paths(r, 'unit:nginx.service'), ['/system.slice/nginx.service']);
    assert.deepEqual(paths(r, 'unit:app.service'), ['/system.slice/app.service']);
    assert.equal(r.complete, true);
    assert.equal(calls.length, 2, 'one systemctl per resolution (sync and async driver)');
    assert.deepEqual(calls[0], ['systemctl', 'show', '--no-pager', '--property=Names,ControlGroup', '--', 'nginx.service', 'app.service']);
    assert.ok(!tree.inspected.includes(`${ROOT_DIR}/other.slice`), 'no search of the tree');
  });

  it('an inactive unit (between timer runs) matches nothing, even with a root-owned directory of its name', async () => {
    const tree = new FakeTree().add('/system.slice/backup.service').add('/user.slice/user-1000.slice/user@1000.service/backup.service', { uid: 1000 });
    const r = await resolveBoth(tree, ['backup.service'], { systemd: true, run: fakeSystemctl({ 'backup.service': '' }, []) });
    assert.deepEqual(paths(r, 'unit:backup.service'), []);
    assert.equal(r.complete, true);
  });

  it('systemd\'s answer is used as given, even for a unit with Delegate=yes whose cgroup is owned by its User=', async () => {
    const tree = new FakeTree().add('/system.slice/runner.service', { uid: 998 });
    const r = await resolveBoth(tree, ['runner.service'], { systemd: true, run: fakeSystemctl({ 'runner.service': '/system.slice/runner.service' }, []) });
    assert.deepEqual(paths(r, 'unit:runner.service'), ['/system.slice/runner.service']);
  });

  it('systemctl failing, timing out or leaving a unit out: nothing matches, and the result says it is incomplete', async () => {
    const tree = new FakeTree().add('/system.slice/nginx.service');
    const failures: CommandResult[] = [
      { status: 1, stdout: '', stderr: 'Failed to connect to bus: No such file or directory\n' },
      { status: null, stdout: '', stderr: '', error: 'spawnSync systemctl ETIMEDOUT' },
      { status: 0, stdout: 'Names=other.service\nControlGroup=/system.slice/other.service\n', stderr: '' },
    ];
    for (const f of failures) {
      const r = await resolveBoth(tree, ['nginx.service'], { systemd: true, run: () => f });
      assert.deepEqual(paths(r, 'unit:nginx.service'), []);
      assert.equal(r.complete, false);
      assert.match(r.notes[0] ?? '', /systemd did not say where nginx\.service runs?/);
    }
  });

  it('a malformed path from systemctl is not used', async () => {
    const tree = new FakeTree().add('/system.slice/nginx.service');
    for (const bad of ['system.slice/nginx.service', '/system.slice/../x', '/a b']) {
      const r = await resolveBoth(tree, ['nginx.service'], { systemd: true, run: () => ({ status: 0, stdout: `Names=nginx.service\nControlGroup=${bad}\n`, stderr: '' }) });
      assert.deepEqual(paths(r, 'unit:nginx.service'), [], bad);
      assert.match(r.notes[0] ?? '', /does not accept/);
    }
  });

  it("the daemon's command runner leaves the event loop free, and kills a command that hangs or floods", async () => {
    let ticks = 0;
    const tick = setInterval(() => ticks++, 20);
    const started = Date.now();
    const slow = await runCommandAsync(['sleep', '0.4'], { timeoutMs: 5_000, maxOutput: 1000 });
    clearInterval(tick);
    assert.equal(slow.status, 0);
    assert.ok(ticks >= 5, `timers ran while the command ran (${ticks} ticks in ${Date.now() - started} ms)`);
    const hung = await runCommandAsync(['sleep', '30'], { timeoutMs: 200, maxOutput: 1000 });
    assert.equal(hung.error, 'timed out after 200 ms');
    assert.ok(Date.now() - started < 10_000);
    const flood = await runCommandAsync(['yes'], { timeoutMs: 5_000, maxOutput: 10_000 });
    assert.equal(flood.error, 'too much output');
    const missing = await runCommandAsync(['/nonexistent/systemctl'], { timeoutMs: 1_000, maxOutput: 1000 });
    assert.match(missing.error ?? '', /ENOENT/);
    assert.deepEqual(
      await asyncSystemHost({ systemdRunning: async () => true, run: async () => hung }).controlGroups(['a.service']),
      { ok: false, error: 'timed out after 200 ms' },
      'a timeout becomes an incomplete answer',
    );
  });
});

// ---------------------------------------------------------------------------
// The same rules, read backwards: which unit an event or a connection names.
// ---------------------------------------------------------------------------

/** Names a cgroup's unit through both drivers, checks they agree, returns the unit. */
async function nameBoth(tree: FakeTree, path: string, o: FakeHostOpts): Promise<string | null> {
  const h = hosts(tree, o);
  const a = cgroupService(path, { root: ROOT_DIR, host: h.sync });
  const b = await cgroupServiceAsync(path, { root: ROOT_DIR, host: h.async });
  assert.deepEqual(b, a, 'the CLI and the daemon name alike');
  return a.unit;
}

const LOOKALIKE = '/user.slice/user-65534.slice/user@65534.service/app.slice/nginx.service';

describe('unit: naming the unit of a cgroup without systemd: only what root alone controls', () => {
  it("a look-alike in a user manager's subtree names nothing, and nothing below the manager is read; the real service is named", async () => {
    const tree = new FakeTree()
      .add('/system.slice/nginx.service')
      .add('/user.slice/user-65534.slice/user@65534.service', { uid: 65534 })
      .add(LOOKALIKE, { uid: 65534 });
    assert.equal(await nameBoth(tree, LOOKALIKE, { systemd: false }), null);
    assert.ok(!tree.inspected.some((d) => d.includes('user@65534.service/')), 'the delegated subtree is not read');
    assert.equal(await nameBoth(tree, '/system.slice/nginx.service', { systemd: false }), 'nginx.service');
  });

  it('the same look-alike under a user manager root owns (user@*.service by name), or under user.slice, names nothing', async () => {
    const tree = new FakeTree().add('/x.slice/user@0.service/app.slice/cron.service').add('/user.slice/cron.service').add('/user.slice/user-1000.slice/session-3.scope');
    assert.equal(await nameBoth(tree, '/x.slice/user@0.service/app.slice/cron.service', { systemd: false }), null);
    assert.equal(await nameBoth(tree, '/user.slice/cron.service', { systemd: false }), null);
    assert.equal(await nameBoth(tree, '/user.slice/user-1000.slice/session-3.scope', { systemd: false }), null, 'user.slice is not searched for units');
  });

  it('delegation of any part of any ancestor, or of the cgroup itself, is enough to name nothing', async () => {
    for (const [what, c] of [
      ['directory', { uid: 1000, procsUid: 0 }],
      ['cgroup.procs', { procsUid: 1000, threadsUid: 0, subtreeUid: 0 }],
      ['cgroup.threads', { threadsUid: 1000 }],
      ['cgroup.subtree_control', { subtreeUid: 1000 }],
      ['group-writable directory', { mode: 0o775 }],
      ['world-writable cgroup.procs', { procsMode: 0o666 }],
    ] as [string, FakeCgroup][]) {
      const tree = new FakeTree().add('/opt.slice', c).add('/opt.slice/nginx.service');
      assert.equal(await nameBoth(tree, '/opt.slice/nginx.service', { systemd: false }), null, `${what} of an ancestor`);
      const tree2 = new FakeTree().add('/opt.slice/nginx.service', c);
      assert.equal(await nameBoth(tree2, '/opt.slice/nginx.service', { systemd: false }), null, `${what} of the cgroup itself`);
    }
  });

  it("what is below a service's own cgroup is the service's, delegated or not; the innermost service wins, then a scope", async () => {
    const tree = new FakeTree()
      .add('/system.slice/runner.service')
      .add('/system.slice/runner.service/payload', { uid: 998 })
      .add('/system.slice/runner.service/payload/x.service', { uid: 998 })
      .add('/system.slice/app.service/worker.service')
      .add('/machine.slice/ctr.scope/system.slice/nginx.service')
      .add('/machine.slice/vm.scope/inner');
    assert.equal(await nameBoth(tree, '/system.slice/runner.service/payload', { systemd: false }), 'runner.service');
    assert.equal(await nameBoth(tree, '/system.slice/runner.service/payload/x.service', { systemd: false }), 'runner.service', 'a name the delegated user chose below it is not believed');
    assert.equal(await nameBoth(tree, '/system.slice/app.service/worker.service', { systemd: false }), 'worker.service');
    assert.equal(await nameBoth(tree, '/machine.slice/ctr.scope/system.slice/nginx.service', { systemd: false }), 'nginx.service');
    assert.equal(await nameBoth(tree, '/machine.slice/vm.scope/inner', { systemd: false }), 'vm.scope');
  });

  it('several paths at once read each directory once', async () => {
    const tree = new FakeTree().add('/system.slice/a.service').add('/system.slice/b.service').add('/system.slice/c.service/sub');
    const h = hosts(tree, { systemd: false });
    const r = cgroupServices(['/system.slice/a.service', '/system.slice/b.service', '/system.slice/c.service/sub'], { root: ROOT_DIR, host: h.sync });
    assert.deepEqual([...r.values()].map((x) => x.unit), ['a.service', 'b.service', 'c.service']);
    assert.equal(tree.inspected.length, new Set(tree.inspected).size, `no directory read twice: ${tree.inspected.join(' ')}`);
  });

  it('no unit-like name: nothing is read; a delegated root, a gone cgroup, a path too deep or unusable: nothing is named', async () => {
    const tree = new FakeTree().add('/system.slice/plain').add('/a/b/c/d/e/f/g/h/i/j/k/l/deep.service').add('/system.slice/ok.service/odd name');
    assert.equal(await nameBoth(tree, '/system.slice/plain', { systemd: false }), null);
    assert.equal(await nameBoth(tree, '/', { systemd: false }), null);
    assert.deepEqual(tree.inspected, [], 'no unit-like name: no question asked');
    assert.equal(await nameBoth(tree, '/system.slice/gone.service', { systemd: false }), null);
    assert.equal(await nameBoth(tree, '/a/b/c/d/e/f/g/h/i/j/k/l/deep.service', { systemd: false }), null, 'deeper than the search goes');
    assert.equal(await nameBoth(tree, '/system.slice/ok.service/odd name', { systemd: false }), 'ok.service', 'an odd name below a unit does not hide it');
    for (const bad of ['system.slice/ok.service', '/system.slice/../system.slice/ok.service', `/${'x'.repeat(5000)}.service`]) assert.equal(await nameBoth(tree, bad, { systemd: false }), null, bad);
    const owned = new FakeTree().add('/system.slice/nginx.service');
    owned.nodes.set('/', { uid: 100000 });
    assert.equal(await nameBoth(owned, '/system.slice/nginx.service', { systemd: false }), null, 'a root someone else owns');
  });
});

describe('unit: naming the unit of a cgroup with systemd: only where systemd runs that unit', () => {
  const table = {
    'nginx.service': '/system.slice/nginx.service',
    'user@65534.service': '/user.slice/user-65534.slice/user@65534.service',
    'session-3.scope': '/user.slice/user-1000.slice/session-3.scope',
    'runner.service': '/system.slice/runner.service',
  };

  it("a look-alike under a user manager is named after the manager (the system's unit it runs in), never after the service it mimics", async () => {
    const calls: string[][] = [];
    const tree = new FakeTree().add(LOOKALIKE, { uid: 65534 });
    assert.equal(await nameBoth(tree, LOOKALIKE, { systemd: true, run: fakeSystemctl(table, calls) }), 'user@65534.service');
    assert.deepEqual(calls[0]?.slice(-3), ['--', 'user@65534.service', 'nginx.service'], 'one systemctl call, argv, every unit-like name in it');
    assert.deepEqual(tree.inspected, [], 'systemd is asked, not the tree');
  });

  it('the real unit, its sub-cgroups and a session scope are named; a directory systemd does not put the unit in is not', async () => {
    const tree = new FakeTree();
    const o = { systemd: true, run: fakeSystemctl(table, []) };
    assert.equal(await nameBoth(tree, '/system.slice/nginx.service', o), 'nginx.service');
    assert.equal(await nameBoth(tree, '/system.slice/runner.service/payload/x.service', o), 'runner.service', 'Delegate=yes: what is below is the unit\'s, whatever it is called');
    assert.equal(await nameBoth(tree, '/user.slice/user-1000.slice/session-3.scope', o), 'session-3.scope');
    assert.equal(await nameBoth(tree, '/other.slice/nginx.service', o), null, 'root-owned but not where systemd runs nginx');
    assert.equal(await nameBoth(tree, '/system.slice/stopped.service', o), null, 'a unit systemd runs no cgroup for');
  });

  it('systemctl failing: nothing named, and the answer says it is incomplete', async () => {
    const h = hosts(new FakeTree(), { systemd: true, run: () => ({ status: 1, stdout: '', stderr: 'Failed to connect to bus\n' }) });
    assert.deepEqual(cgroupService('/system.slice/nginx.service', { root: ROOT_DIR, host: h.sync }), { unit: null, complete: false });
    assert.deepEqual(await cgroupServiceAsync('/system.slice/nginx.service', { root: ROOT_DIR, host: h.async }), { unit: null, complete: false });
  });

  it('several paths at once (the CLI): one systemctl call; a path whose names make systemctl fail is asked alone and blinds no other', async () => {
    const calls: string[][] = [];
    const picky = (argv: string[]): CommandResult => {
      calls.push(argv);
      if (argv.some((a) => a.includes('@@'))) return { status: 1, stdout: '', stderr: 'Unit name is not valid\n' };
      return fakeSystemctl(table, [])(argv);
    };
    const h = hosts(new FakeTree(), { systemd: true, run: picky });
    const hostile = '/user.slice/user-65534.slice/user@65534.service/x@@y.service';
    const r = cgroupServices(['/system.slice/nginx.service', '/user.slice/user-1000.slice/session-3.scope', hostile, '/system.slice/nginx.service'], { root: ROOT_DIR, host: h.sync });
    assert.deepEqual(r.get('/system.slice/nginx.service'), { unit: 'nginx.service', complete: true });
    assert.deepEqual(r.get('/user.slice/user-1000.slice/session-3.scope'), { unit: 'session-3.scope', complete: true });
    assert.deepEqual(r.get(hostile), { unit: null, complete: false }, 'only the path with the odd name goes without');
    assert.equal(calls.length, 1 + 3, 'one call for all; after it failed, one per path');
    const fine = [] as string[][];
    const h2 = hosts(new FakeTree(), { systemd: true, run: fakeSystemctl(table, fine) });
    cgroupServices(['/system.slice/nginx.service', LOOKALIKE, '/system.slice/runner.service/x'], { root: ROOT_DIR, host: h2.sync });
    assert.equal(fine.length, 1, 'one systemctl call for every path');
  });

  it('a user cannot push the real unit out of the question with many invented names below it', async () => {
    const calls: string[][] = [];
    const invented = Array.from({ length: 40 }, (_x, i) => `f${i}.service`).join('/');
    const path = `/user.slice/user-65534.slice/user@65534.service/${invented}`;
    assert.equal(await nameBoth(new FakeTree(), path, { systemd: true, run: fakeSystemctl(table, calls) }), 'user@65534.service');
    assert.ok((calls[0]?.length ?? 0) <= 5 + 16, 'a bounded number of names asked');
  });
});

describe('unit: naming agrees with what service rules match', () => {
  const NAMES = ['a.slice', 'user.slice', 'user@7.service', 'nginx.service', 'app.service', 'x.scope', 'w'];
  const node = fc.record({ uid: fc.constantFrom(0, 0, 0, 1000), mode: fc.constantFrom(0o755, 0o755, 0o775) });
  const trees = fc.array(fc.tuple(fc.array(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 5 }), node), { minLength: 1, maxLength: 12 });

  it('property (no systemd): a cgroup named after a unit lies in a cgroup a `services: [unit]` rule resolves to; every cgroup such a rule resolves to is named after it', async () => {
    await fc.assert(
      fc.asyncProperty(trees, async (spec) => {
        const tree = new FakeTree();
        for (const [parts, c] of spec) tree.add(`/${parts.join('/')}`, c);
        const all = [...tree.nodes.keys()];
        for (const path of all) {
          const unit = await nameBoth(tree, path, { systemd: false });
          if (unit === null) continue;
          const r = await resolveBoth(tree, [unit], { systemd: false });
          const mine = paths(r, `unit:${unit}`).filter((p) => path === p || path.startsWith(`${p}/`));
          assert.ok(mine.length > 0, `${path} is named ${unit}, which resolves to ${JSON.stringify(paths(r, `unit:${unit}`))}`);
        }
        for (const unit of ['nginx.service', 'app.service', 'user@7.service']) {
          const r = await resolveBoth(tree, [unit], { systemd: false });
          for (const p of paths(r, `unit:${unit}`)) {
            assert.equal(await nameBoth(tree, p, { systemd: false }), unit, `${p} resolves for ${unit}`);
          }
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('unit: reading systemctl show', () => {
  it('matches blocks to units by Names (aliases included), in any order, empty ControlGroup meaning none', () => {
    const text = 'ControlGroup=/system.slice/ssh.service\nNames=ssh.service sshd.service\n\nNames=cron.service\nControlGroup=\n';
    const r = parseSystemctlShow(text, ['cron.service', 'sshd.service']) as Extract<ControlGroups, { ok: true }>;
    assert.equal(r.ok, true);
    assert.equal(r.groups.get('sshd.service'), '/system.slice/ssh.service');
    assert.equal(r.groups.get('cron.service'), null);
  });

  it('argv for systemctl ends options before the unit names', () => {
    assert.deepEqual(systemctlShowArgv(['-x.service']).slice(-2), ['--', '-x.service']);
  });
});

describe('unit: delegation rule and the real host reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cgown-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('delegatedBecause names the first part someone else controls', () => {
    const own = { uid: 0, mode: 0o644 };
    const base: DirFacts = { ino: 1n, dir: { uid: 0, mode: 0o755 }, procs: own, threads: own, subtreeControl: own };
    assert.equal(delegatedBecause('system.slice', base), null);
    assert.match(delegatedBecause('x', { ...base, dir: { uid: 5, mode: 0o755 } }) ?? '', /directory is owned by uid 5/);
    assert.match(delegatedBecause('x', { ...base, procs: { uid: 0, mode: 0o646 } }) ?? '', /cgroup\.procs is writable by group or others \(mode 646\)/);
    assert.match(delegatedBecause('user@0.service', base) ?? '', /user manager/);
  });

  it('the host reader reports the owner and mode of the directory and its control files, and its children', () => {
    mkdirSync(join(dir, 'child'));
    for (const f of ['cgroup.procs', 'cgroup.subtree_control']) writeFileSync(join(dir, f), '');
    chmodSync(join(dir, 'cgroup.procs'), 0o664);
    const uid = process.getuid?.() ?? 0;
    const f = systemHost().inspect(dir, true);
    assert.ok(f);
    assert.equal(f.dir.uid, uid);
    assert.deepEqual(f.procs, { uid, mode: 0o664 });
    assert.equal(f.threads, null, 'absent');
    assert.deepEqual(f.children, ['child']);
    assert.equal(systemHost().inspect(join(dir, 'cgroup.procs'), false), null, 'a file is not a directory');
    assert.equal(systemHost().inspect(join(dir, 'missing'), false), null);
  });

  it('the asynchronous reader reads the same', async () => {
    assert.deepEqual(await asyncSystemHost().inspect(dir, true), systemHost().inspect(dir, true));
  });
});
