/**
 * The collector's hot path, without the kernel: which unit an event names
 * (ServiceNames: the service rules, remembered per cgroup path, worked out off
 * the event loop), the cgroup index rebuilt without blocking, and the
 * attributor waiting for both so its answer is the one a blocking lookup
 * would give. A temporary directory stands in for the cgroup2 mount (real
 * inodes), a fake /proc for the processes; ownership is given by the test
 * (delegation is chown, which an unprivileged test cannot do).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Attributor, type FlowFacts } from '../../src/monitor/attribution.js';
import { CgroupIndex } from '../../src/monitor/cgroup-index.js';
import { ProcessTable } from '../../src/monitor/process-table.js';
import { ServiceNames } from '../../src/monitor/service-names.js';
import { asyncSystemHost } from '../../src/system/cgroup-host.js';
import type { AsyncCgroupHost, DirFacts } from '../../src/system/resolve-services.js';

const LOOKALIKE = '/user.slice/user-65534.slice/user@65534.service/app.slice/nginx.service';
const REAL = '/system.slice/nginx.service';

/** A cgroup tree on disk: real directories and inodes. */
function cgroupTree(): { root: string; add: (rel: string) => string } {
  const root = mkdtempSync(join(tmpdir(), 'sluice-cgnames-'));
  const add = (rel: string) => {
    const dir = join(root, rel);
    mkdirSync(dir, { recursive: true });
    // Every directory on the way is a cgroup: it has cgroup.procs.
    for (let d = dir; d.length >= root.length; d = join(d, '..')) writeFileSync(join(d, 'cgroup.procs'), '');
    return dir;
  };
  return { root, add };
}

/** The real reader of the tree, with owners chosen by the test: `owned` maps a path (relative) to its owner uid. */
function hostFor(root: string, owned: Map<string, number>, calls: { read: string[] } = { read: [] }): AsyncCgroupHost {
  const real = asyncSystemHost({ systemdRunning: async () => false, run: async () => assert.fail('systemctl must not run without systemd') });
  return {
    ...real,
    inspect: async (dir, children) => {
      const rel = dir.slice(root.length).replace(/\/$/, '') || '/';
      calls.read.push(rel);
      const f = await real.inspect(dir, children);
      if (!f) return null;
      const uid = owned.get(rel) ?? 0;
      const own = (o: DirFacts['procs']) => (o ? { uid, mode: 0o644 } : null);
      return { ...f, dir: { uid, mode: 0o755 }, procs: own(f.procs), threads: { uid, mode: 0o644 }, subtreeControl: { uid, mode: 0o644 } };
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('unit: ServiceNames (the unit an event names, remembered per cgroup)', () => {
  const t = cgroupTree();
  after(() => rmSync(t.root, { recursive: true, force: true }));
  t.add(REAL);
  t.add(LOOKALIKE);
  const owned = new Map([['/user.slice/user-65534.slice/user@65534.service', 65534], [LOOKALIKE, 65534]]);

  it('a cgroup seen for the first time is judged off the loop (a promise), then answered from memory', async () => {
    const names = new ServiceNames({ root: t.root, host: hostFor(t.root, owned) });
    const first = names.lookup(REAL);
    assert.ok(first instanceof Promise, 'not known yet: a promise, no synchronous walk');
    assert.equal(await first, 'nginx.service');
    assert.equal(names.lookup(REAL), 'nginx.service', 'then known');
    const fake = names.lookup(LOOKALIKE);
    assert.ok(fake instanceof Promise);
    assert.equal(await fake, null, "a look-alike in a user's subtree is not the service");
    assert.equal(names.lookup(LOOKALIKE), null);
    assert.deepEqual({ resolutions: names.stats.resolutions, hits: names.stats.hits }, { resolutions: 2, hits: 2 });
  });

  it("concurrent lookups of one cgroup share one judgment, and nothing below a delegated directory but the cgroup's own id is read", async () => {
    const calls = { read: [] as string[] };
    const names = new ServiceNames({ root: t.root, host: hostFor(t.root, owned, calls) });
    const all = await Promise.all([names.lookup(LOOKALIKE), names.lookup(LOOKALIKE), names.lookup(LOOKALIKE)]);
    assert.deepEqual(all, [null, null, null]);
    assert.equal(names.stats.resolutions, 1);
    const made: string[] = [];
    for (let i = 0; i < 20; i++) made.push(`/user.slice/user-65534.slice/user@65534.service/app.slice/s${i}.service`);
    for (const p of made) t.add(p);
    for (const p of made) assert.equal(await names.lookup(p), null);
    const below = calls.read.filter((r) => r.startsWith('/user.slice/user-65534.slice/user@65534.service/'));
    assert.deepEqual(below.sort(), [LOOKALIKE, ...made].sort(), 'only each cgroup itself (its id), never the directories the user made on the way');
  });

  it('a cgroup that goes and is replaced at the same path is judged again (checked once per batch)', async () => {
    const u = cgroupTree();
    try {
      const dir = u.add('/system.slice/svc.service');
      const mine = new Map<string, number>();
      const names = new ServiceNames({ root: u.root, host: hostFor(u.root, mine) });
      assert.equal(await names.lookup('/system.slice/svc.service'), 'svc.service');
      // The service stops; a new cgroup appears at the path, this time owned by someone else.
      renameSync(dir, join(u.root, 'system.slice/old'));
      u.add('/system.slice/svc.service');
      mine.set('/system.slice/svc.service', 1000);
      names.beginBatch();
      const again = names.lookup('/system.slice/svc.service');
      assert.ok(again instanceof Promise, 'the old answer is not used for the new cgroup');
      assert.equal(await again, null);
      assert.equal(names.stats.gone, 1);
      // Gone altogether: not remembered.
      rmSync(join(u.root, 'system.slice/svc.service'), { recursive: true });
      names.beginBatch();
      assert.ok(names.lookup('/system.slice/svc.service') instanceof Promise);
    } finally {
      rmSync(u.root, { recursive: true, force: true });
    }
  });

  it('a path with nothing to judge, or outside the mount (another cgroup namespace), is answered at once without reading anything', () => {
    const calls = { read: [] as string[] };
    const names = new ServiceNames({ root: t.root, host: hostFor(t.root, owned, calls) });
    for (const p of ['/', '/system.slice', '/user.slice/user-1000.slice', '/../../system.slice/nginx.service', '/a b/x.service']) {
      assert.equal(names.lookup(p), null, p);
      assert.equal(names.lookup(p), null, p);
    }
    assert.deepEqual(calls.read, []);
    assert.equal(names.stats.resolutions, 0);
  });

  it('answers expire, memory is bounded, and a wait that does not end names nothing', async () => {
    const brief = new ServiceNames({ root: t.root, host: hostFor(t.root, owned), ttlMs: 20 });
    assert.equal(await brief.lookup(REAL), 'nginx.service');
    await sleep(40);
    assert.ok(brief.lookup(REAL) instanceof Promise, 'expired: judged again');

    const small = new ServiceNames({ root: t.root, host: hostFor(t.root, owned), maxEntries: 3 });
    for (let i = 0; i < 8; i++) await small.lookup(`/user.slice/user-65534.slice/user@65534.service/app.slice/s${i}.service`);
    assert.ok(small.size <= 3, `${small.size} entries`);

    const stuck: AsyncCgroupHost = { ...hostFor(t.root, owned), inspect: () => new Promise(() => undefined) };
    const slow = new ServiceNames({ root: t.root, host: stuck, waitMs: 30 });
    assert.equal(await slow.lookup(REAL), null);
    assert.equal(slow.stats.unresolved, 1);

    assert.equal(new ServiceNames({ root: null }).lookup(REAL), null, 'no cgroup2 mount: no unit, nothing to wait for');
  });
});

describe('unit: CgroupIndex rebuilds without blocking', () => {
  it('a miss starts one asynchronous rebuild (at most every 3 s) and answers after it', async () => {
    const t = cgroupTree();
    try {
      const dir = t.add('/system.slice/a.service');
      const id = statSync(dir, { bigint: true }).ino;
      const idx = new CgroupIndex(t.root);
      assert.equal(idx.path(id, 10_000), undefined, 'a miss answers at once');
      const rebuild = idx.rebuilding();
      assert.ok(rebuild, 'and starts a rebuild');
      assert.equal(idx.rebuild(10_001), rebuild, 'one at a time');
      await rebuild;
      assert.equal(idx.path(id, 10_002), '/system.slice/a.service');
      assert.equal(idx.pathByLow32(Number(id & 0xffffffffn), 10_003), '/system.slice/a.service');
      const later = statSync(t.add('/system.slice/b.service'), { bigint: true }).ino;
      assert.equal(idx.path(later, 11_000), undefined);
      assert.equal(idx.rebuilding(), null, 'within 3 s of the last: no new walk');
      assert.equal(idx.path(later, 13_500), undefined);
      await idx.rebuilding();
      assert.equal(idx.path(later, 13_600), '/system.slice/b.service');
      assert.equal(idx.walks, 2);
    } finally {
      rmSync(t.root, { recursive: true, force: true });
    }
  });
});

/** A /proc with the given processes, enough for ProcessTable. */
function fakeProc(procs: { pid: number; uid: number; cgroup: string }[]): string {
  const root = mkdtempSync(join(tmpdir(), 'sluice-proc-'));
  const netns = (dir: string) => {
    mkdirSync(join(dir, 'ns'), { recursive: true });
    symlinkSync('net:[4026531999]', join(dir, 'ns/net'));
  };
  netns(join(root, 'self'));
  for (const p of procs) {
    const dir = join(root, String(p.pid));
    mkdirSync(dir);
    netns(dir);
    writeFileSync(join(dir, 'stat'), `${p.pid} (node) S 1 ${p.pid} ${p.pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 ${1000 + p.pid} 0 0`);
    writeFileSync(join(dir, 'status'), `Name:\tnode\nUid:\t${p.uid}\t${p.uid}\t${p.uid}\t${p.uid}\nGid:\t${p.uid}\t${p.uid}\t${p.uid}\t${p.uid}\n`);
    writeFileSync(join(dir, 'cgroup'), `0::${p.cgroup}\n`);
    writeFileSync(join(dir, 'cmdline'), 'node\0app.js\0');
    symlinkSync('/usr/bin/node', join(dir, 'exe'));
  }
  return root;
}

function facts(uid: number, extra: Partial<FlowFacts> = {}): FlowFacts {
  return { time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: 0xc6120002n, dst: 0xc612010an, sport: 40000, dport: 443, uid, ...extra };
}

describe('unit: the attributor names a unit only as the service rules do, waiting off the loop when it must', () => {
  const t = cgroupTree();
  t.add(REAL);
  t.add(LOOKALIKE);
  const owned = new Map([['/user.slice/user-65534.slice/user@65534.service', 65534], [LOOKALIKE, 65534]]);
  const proc = fakeProc([
    { pid: 4100, uid: 65534, cgroup: LOOKALIKE },
    { pid: 4200, uid: 33, cgroup: REAL },
  ]);
  after(() => {
    rmSync(t.root, { recursive: true, force: true });
    rmSync(proc, { recursive: true, force: true });
  });
  const attributor = (names = new ServiceNames({ root: t.root, host: hostFor(t.root, owned) })) =>
    new Attributor({ procs: new ProcessTable({ procRoot: proc, exclude: [] }), services: names, socketMayExist: () => false });

  it("uid 65534's process in its look-alike nginx.service: the event has the process and its cgroup, not nginx's name", async () => {
    const a = attributor();
    a.beginBatch();
    const pending = a.attributeOrWait(facts(65534));
    assert.ok(pending instanceof Promise, 'the cgroup is judged before the event goes out');
    const e = await pending;
    assert.equal(e.process?.pid, 4100);
    assert.equal(e.attribution, 'user');
    assert.equal(e.process?.cgroup, LOOKALIKE);
    assert.equal(e.process?.unit, undefined);
    assert.ok(!('unit' in (e.process ?? {})), 'no unit field at all');
  });

  it("the real, root-owned service's process is named, and the next event needs no wait", async () => {
    const a = attributor();
    a.beginBatch();
    const e = await a.attributeOrWait(facts(33));
    assert.equal(e.process?.pid, 4200);
    assert.equal(e.process?.unit, 'nginx.service');
    const next = a.attributeOrWait(facts(33));
    assert.ok(!(next instanceof Promise), 'known now');
    assert.equal(next.process?.unit, 'nginx.service');
    assert.equal(a.stats.user, 2, 'each event counted once, waited for or not');
  });

  it('attribute() never waits: a cgroup not judged yet names no unit (never a guess from its spelling)', async () => {
    const names = new ServiceNames({ root: t.root, host: hostFor(t.root, owned) });
    const a = attributor(names);
    a.beginBatch();
    const now = a.attribute(facts(33));
    assert.equal(now.process?.pid, 4200);
    assert.equal(now.process?.unit, undefined, 'not known yet');
    await sleep(50);
    a.beginBatch();
    assert.equal(a.attribute(facts(33)).process?.unit, 'nginx.service', 'judged meanwhile, off the loop');
  });

  it("the sender's cgroup from the mark: waiting for the index's rebuild gives the answer a blocking walk gave", async () => {
    const u = cgroupTree();
    const p2 = fakeProc([
      { pid: 5100, uid: 0, cgroup: '/system.slice/one.service' },
      { pid: 5200, uid: 0, cgroup: '/system.slice/two.service' },
    ]);
    try {
      const one = statSync(u.add('/system.slice/one.service'), { bigint: true }).ino;
      u.add('/system.slice/two.service');
      const make = () =>
        new Attributor({
          procs: new ProcessTable({ procRoot: p2, exclude: [] }),
          cgroups: new CgroupIndex(u.root),
          services: new ServiceNames({ root: u.root, host: hostFor(u.root, new Map()) }),
          socketMayExist: () => false,
        });
      const f = facts(0, { cgroupLow32: Number(one & 0xffffffffn) });
      const waiting = make();
      waiting.beginBatch();
      const e = await waiting.attributeOrWait(f);
      assert.equal(e.process?.pid, 5100, 'two root processes, told apart by the cgroup in the mark');
      assert.equal(e.attribution, 'cgroup');
      assert.equal(e.process?.unit, 'one.service');
      const hurried = make();
      hurried.beginBatch();
      assert.equal(hurried.attribute(f).process, undefined, 'without waiting, the empty index could not tell them apart');
    } finally {
      rmSync(u.root, { recursive: true, force: true });
      rmSync(p2, { recursive: true, force: true });
    }
  });
});

describe('unit: the cgroup in the mark against processes that moved since the table read them', () => {
  /** Three root processes listed long ago (settled: the table no longer re-reads them), then moved as the test says. */
  function world(moves: Record<number, string>) {
    const u = cgroupTree();
    const ids = new Map<string, number>();
    for (const rel of ['/system.slice/one.service', '/system.slice/two.service', '/other.slice']) ids.set(rel, Number(statSync(u.add(rel), { bigint: true }).ino & 0xffffffffn));
    const proc = fakeProc([
      { pid: 5100, uid: 0, cgroup: '/system.slice/two.service' },
      { pid: 5200, uid: 0, cgroup: '/system.slice/one.service' },
      { pid: 5300, uid: 0, cgroup: '/other.slice' },
    ]);
    const procs = new ProcessTable({ procRoot: proc, exclude: [] });
    const listed = Date.now() - 60_000;
    procs.refresh(listed);
    for (const [pid, cgroup] of Object.entries(moves)) writeFileSync(join(proc, pid, 'cgroup'), `0::${cgroup}\n`);
    const a = new Attributor({ procs, cgroups: new CgroupIndex(u.root), services: new ServiceNames({ root: u.root, host: hostFor(u.root, new Map()) }), socketMayExist: () => false });
    const low32 = (rel: string) => ids.get(rel) as number;
    return { a, procs, low32, done: () => [u.root, proc].forEach((d) => rmSync(d, { recursive: true, force: true })) };
  }

  it('a process moved into the marked cgroup after it was listed is the sender, not unattributed', async () => {
    const w = world({ 5100: '/system.slice/one.service', 5200: '/system.slice/two.service' });
    try {
      assert.equal(w.procs.get(5100)?.cgroup, '/system.slice/two.service', 'the table still holds where 5100 was');
      w.a.beginBatch();
      const e = await w.a.attributeOrWait(facts(0, { cgroupLow32: w.low32('/system.slice/one.service') }));
      assert.equal(e.process?.pid, 5100, 'the one process in one.service when the packet left');
      assert.equal(e.process?.cgroup, '/system.slice/one.service');
      assert.equal(e.attribution, 'cgroup');
    } finally {
      w.done();
    }
  });

  it('a process moved out of the marked cgroup is not named for it, even when the table says it is the only one there', async () => {
    const w = world({ 5200: '/other.slice' });
    try {
      w.a.beginBatch();
      const e = await w.a.attributeOrWait(facts(0, { cgroupLow32: w.low32('/system.slice/one.service') }));
      assert.equal(e.process, undefined, 'nobody is in one.service now: no process is named rather than the one that left');
      w.a.beginBatch();
      const other = await w.a.attributeOrWait(facts(0, { cgroupLow32: w.low32('/other.slice') }));
      assert.equal(other.process, undefined, 'two processes are in /other.slice now: ambiguous, nothing guessed');
    } finally {
      w.done();
    }
  });
});
