/**
 * The service watch writes the kernel table only for the policy that is
 * applied (applied.json, read under the state lock right before writing):
 * never after `sluice off`, never over another policy the CLI applied, and
 * never from a resolution that is incomplete or about a policy since replaced.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { serviceKey, type CompileResult, type ResolvedCgroup } from '../../src/compile/compile-ruleset.js';
import type { Runtime } from '../../src/runtime/component.js';
import { ServiceWatch } from '../../src/daemon/service-watch.js';
import { writeServiceRuleset } from '../../src/daemon/write-service-ruleset.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import type { Policy } from '../../src/policy/policy.js';
import type { ServiceResolution } from '../../src/system/resolve-services.js';
import { compileResolved } from '../../src/system/compile-env.js';
import { StateStore } from '../../src/state/state-store.js';
import { policyFrom, ROOT } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-watch-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const yamlA = 'mode: enforce\nrules:\n  - name: svc\n    to: [198.18.1.10]\n    ports: [443/tcp]\n    services: [web.service]\n';
const yamlB = 'mode: enforce\nrules:\n  - name: svc-b\n    to: [198.18.1.11]\n    ports: [443/tcp]\n    services: [web.service]\n';

function resolution(policy: Policy, id: bigint | null, complete = true): ServiceResolution {
  const cgroups = new Map<string, ResolvedCgroup[]>();
  for (const s of policy.rules.flatMap((r) => r.services)) cgroups.set(serviceKey(s), id === null ? [] : [{ id, level: 2, path: '/system.slice/web.service' }]);
  return { cgroups, notes: complete ? [] : ['systemd did not say where web.service runs (timed out)'], complete };
}

/** A state directory with `policy` applied (compiled with cgroup `id`) and the same table in the fake kernel. */
function world(policy: Policy, id: bigint): { state: StateStore; nf: FakeNetfilter; compiled: CompileResult } {
  const state = new StateStore(join(base, `s${++n}`));
  const nf = new FakeNetfilter();
  const compiled = compileResolved(policy, resolution(policy, id));
  nf.replace(compiled.ruleset);
  state.setApplied({ appliedAt: 'then', policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, ruleset: compiled.ruleset, warnings: [] });
  return { state, nf, compiled };
}

function runtime(policy: Policy, w: { state: StateStore; nf: FakeNetfilter; compiled: CompileResult }): Runtime {
  return { policy, compiled: w.compiled, netfilter: w.nf, state: w.state, log: () => undefined } as unknown as Runtime;
}

const cgroupIds = (nf: FakeNetfilter) => (nf.read('sluice')?.ruleset.sets ?? []).filter((s) => s.key === 'cgroupv2').flatMap((s) => s.elements.map((e) => (e as { value: bigint }).value));

describe('unit: the service watch writes only the applied policy', () => {
  const a = policyFrom(yamlA, 'a.yaml');
  const b = policyFrom(yamlB, 'b.yaml');

  it('writeServiceRuleset: written for the applied policy (table, state and journal); refused when nothing or another policy is applied', () => {
    const w = world(a, 100n);
    const next = compileResolved(a, resolution(a, 101n));
    assert.equal(writeServiceRuleset(w.state, w.nf, a.sha256, next), 'written');
    assert.deepEqual(cgroupIds(w.nf), [101n]);
    assert.deepEqual(w.state.applied()?.ruleset, next.ruleset);
    assert.equal(w.state.lastJournal()?.event, 'service-cgroups-changed');

    const replaces = w.nf.calls.replace;
    assert.equal(writeServiceRuleset(w.state, w.nf, b.sha256, compileResolved(b, resolution(b, 102n))), 'not-applied', 'another policy is applied');
    w.state.setApplied(null);
    w.nf.remove('sluice');
    assert.equal(writeServiceRuleset(w.state, w.nf, a.sha256, compileResolved(a, resolution(a, 103n))), 'not-applied', 'nothing is applied (off)');
    assert.equal(w.nf.calls.replace, replaces, 'the kernel was not written');
    assert.equal(w.nf.read('sluice'), null);
  });

  it('writeServiceRuleset: a lock held by a live process fails fast (ELOCKED) instead of holding up the event loop', async () => {
    const w = world(a, 100n);
    // Another process holds the state lock (an apply in progress).
    const store = new URL('../../src/state/state-store.js', import.meta.url).href;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(store)}).then((m) => new m.StateStore(${JSON.stringify(w.state.dir)}).withLock(() => { console.log('held'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000); }))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      const started = performance.now();
      assert.throws(() => writeServiceRuleset(w.state, w.nf, a.sha256, compileResolved(a, resolution(a, 101n))), (err: { code?: string }) => err.code === 'ELOCKED');
      // The holder keeps the lock 30 s: giving up in well under that is the try-lock (a blocking lock would wait
      // it out). Not 20 ms: a busy machine's scheduler alone took longer than that, and the test failed on it.
      assert.ok(performance.now() - started < 2000, `gave up within ${(performance.now() - started).toFixed(1)} ms (a try-lock: the loop never sleeps on it)`);
      assert.deepEqual(cgroupIds(w.nf), [100n]);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('after `off`, a restart (new cgroup id) leaves the kernel alone', async () => {
    const w = world(a, 100n);
    let id = 100n;
    const watch = new ServiceWatch({ resolve: async (p) => resolution(p, id), root: () => null });
    await watch.start(runtime(a, w));
    await watch.check();
    w.state.setApplied(null);
    w.nf.remove('sluice');
    id = 200n;
    await watch.check();
    assert.equal(w.nf.read('sluice'), null, 'the table stays absent');
    assert.equal(watch.stats.notApplied, 1);
    assert.equal(watch.stats.reapplies, 0);
    await watch.stop();
  });

  it('with another policy applied (not yet adopted), a restart does not write the older one; once adopted, it writes the new one', async () => {
    const w = world(a, 100n);
    let id = 100n;
    const watch = new ServiceWatch({ resolve: async (p) => resolution(p, id), root: () => null });
    const rt = runtime(a, w);
    await watch.start(rt);
    await watch.check();
    // `sluice apply b.yaml`: the CLI writes B (with the id of the time) and its state.
    const bCompiled = compileResolved(b, resolution(b, 100n));
    w.nf.replace(bCompiled.ruleset);
    w.state.setApplied({ appliedAt: 'now', policyFile: b.file, sha256: b.sha256, mode: b.mode, ruleset: bCompiled.ruleset, warnings: [] });
    id = 200n;
    await watch.check();
    assert.deepEqual(w.nf.read('sluice')?.ruleset, w.state.applied()?.ruleset, 'the kernel still holds B, as applied');
    assert.equal(watch.stats.reapplies, 0);
    // The daemon adopts B (sync): the watch now writes B with the new id.
    rt.policy = b;
    rt.compiled = bCompiled;
    await watch.reload(rt);
    await watch.check();
    assert.equal(watch.stats.reapplies, 1);
    assert.deepEqual(cgroupIds(w.nf), [200n]);
    assert.equal(w.state.applied()?.sha256, b.sha256);
    assert.deepEqual(w.nf.read('sluice')?.ruleset, w.state.applied()?.ruleset);
    await watch.stop();
  });

  it('an incomplete resolution (systemd did not answer) changes nothing: the service keeps its rule', async () => {
    const w = world(a, 100n);
    const watch = new ServiceWatch({ resolve: async (p) => resolution(p, null, false), root: () => null });
    await watch.start(runtime(a, w));
    await watch.check();
    assert.deepEqual(cgroupIds(w.nf), [100n]);
    assert.equal(watch.stats.failures, 1);
    await watch.stop();
  });

  it('a resolution that finishes after the policy changed is dropped', async () => {
    const w = world(a, 100n);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const watch = new ServiceWatch({
      resolve: async (p) => {
        await gate;
        return resolution(p, 300n);
      },
      root: () => null,
    });
    const rt = runtime(a, w);
    await watch.start(rt);
    const pending = watch.check();
    rt.policy = b; // adopted meanwhile
    release();
    await pending;
    assert.deepEqual(cgroupIds(w.nf), [100n], 'nothing written from the stale result');
    await watch.stop();
  });
});

describe('unit: the daemon resolves services off the event loop', () => {
  it('the daemon component and the daemon load use the asynchronous resolution (no spawnSync, no synchronous walk)', () => {
    const root = join(ROOT, 'src');
    const watchSrc = readFileSync(join(root, 'daemon/service-watch.ts'), 'utf8');
    assert.doesNotMatch(watchSrc, /resolveServices\(|spawnSync|walkDirs|compileForHost\(/);
    const daemonCmd = readFileSync(join(root, 'cli/commands/daemon.ts'), 'utf8');
    assert.match(daemonCmd, /compile: \(policy\) => ctx\.compileAsync\(policy\)/);
    assert.doesNotMatch(daemonCmd, /ctx\.compile\(/);
  });
});
