/**
 * Integration: an owned table (policy `owned_table: true`, table flags
 * owner and persist, Linux 6.9+) against the real kernel. While the daemon
 * holds it, another root process can neither delete it, nor add to it, nor
 * flush it away; Sluice's own command line still applies and removes it
 * (the daemon lets go and takes it back); when the daemon dies the table
 * stays (persist: never owner alone, which would take the table with the
 * daemon and leave the host open), and the next daemon takes it back.
 * Without `owned_table` the table has no flags, as before.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { collectJsonLines, ROOT, stopChild, World } from '../world/world.js';

const policyText = (owned: boolean, extra = '') => `mode: enforce
${owned ? 'owned_table: true\n' : ''}dns:
  guard: false
rules:
  - name: lan
    to: [198.18.2.0/24${extra}]
`;

interface Held {
  present: boolean;
  owned?: boolean;
  owner?: number | null;
  anomalies?: string[];
}

describe('integration: the owned table (flags owner, persist)', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let logs: { message: string; alert?: string }[] = [];

  /** The table's ownership as the kernel reports it, read by a process of its own. */
  const held = async (): Promise<Held> => {
    const code = `import(${JSON.stringify(join(ROOT, 'dist/src/netfilter/kernel-netfilter.js'))}).then((m) => {
      const nf = new m.KernelNetfilter({ timeoutUpdates: true });
      const t = nf.read('sluice', { elements: 'none' });
      console.log(JSON.stringify(t ? { present: true, owned: t.ruleset.owned === true, owner: t.owner ?? null, anomalies: t.anomalies } : { present: false }));
      nf.close();
    })`;
    const r = await w.exec([process.execPath, '-e', code]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Held;
  };
  const until = async (ok: () => Promise<boolean>, limitMs = 3_000): Promise<void> => {
    const t0 = performance.now();
    while (!(await ok())) {
      if (performance.now() - t0 > limitMs) throw new Error(`not within ${limitMs} ms`);
      await sleep(20);
    }
  };
  const startDaemon = async () => {
    logs = [];
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], {
      env: w.env(),
      readyText: 'running',
      onSpawn: (child) => collectJsonLines(child.stderr, logs),
    });
  };
  /** The table as nft prints it, elements included, without its first lines (the table's flags and the owner's name: what ownership changes). */
  const shape = async () =>
    (await w.exec(['nft', '-s', 'list', 'table', 'inet', 'sluice'])).stdout
      .split('\n')
      .filter((l, i) => i > 0 && !/^\tflags /.test(l))
      .join('\n');

  before(async () => {
    w = await World.create();
  });
  after(async () => {
    await stopChild(daemon);
    await w?.destroy();
  });

  it('applied by the command line: persistent and unowned; the daemon takes it at start', async () => {
    const applied = await w.sluice(['apply', w.policy(policyText(true), 'owned.yaml')]);
    assert.equal(applied.code, 0, applied.stderr);
    const before = await held();
    assert.deepEqual(before, { present: true, owned: true, owner: null, anomalies: [] });
    await startDaemon();
    const after = await held();
    assert.equal(after.owned, true);
    assert.equal(typeof after.owner, 'number', `the daemon holds it: ${JSON.stringify(after)}`);
    assert.ok(logs.some((l) => /holds table inet sluice/.test(l.message)), 'the daemon says it holds the table');
    const st = await w.sluice(['status', '--json']);
    assert.deepEqual((JSON.parse(st.stdout) as { owned: unknown }).owned, { owner: after.owner }, 'status names the holder');
  });

  it('another root process can neither delete it, nor add a rule, nor flush it away', async () => {
    const table = await shape();
    const del = await w.exec(['nft', 'delete', 'table', 'inet', 'sluice']);
    assert.notEqual(del.code, 0, 'nft delete table is refused');
    assert.match(del.stderr, /Operation not permitted/);
    const add = await w.exec(['nft', 'insert', 'rule', 'inet', 'sluice', 'output', 'accept']);
    assert.notEqual(add.code, 0, 'an accept rule cannot be inserted');
    const flush = await w.exec(['nft', 'flush', 'ruleset']);
    assert.equal(flush.code, 0, `flush ruleset itself succeeds (it passes owned tables by): ${flush.stderr}`);
    assert.equal(await shape(), table, 'the table is untouched');
    const reach = await w.reach(['tcp:198.18.2.20:443', 'tcp:198.18.3.30:443'], { timeoutMs: 800 });
    assert.deepEqual(reach, { 'tcp:198.18.2.20:443': true, 'tcp:198.18.3.30:443': false }, 'and it still filters');
  });

  it('`sluice apply` and `sluice off` still work while the daemon holds it, and the daemon takes it back', async () => {
    const r = await w.sluice(['apply', w.policy(policyText(true, ', 198.18.3.0/24'), 'owned2.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await shape(), /198\.18\.2\.0\/23/, 'the new policy is in (its two /24s merged into one interval)');
    await until(async () => typeof (await held()).owner === 'number');
    assert.ok(logs.some((l) => /let go of table inet sluice/.test(l.message)), 'the daemon let go for the write');
    assert.equal(logs.filter((l) => l.alert === 'tamper').length, 0, `the handover is not tampering: ${JSON.stringify(logs.filter((l) => l.alert))}`);

    const off = await w.sluice(['off']);
    assert.equal(off.code, 0, off.stderr);
    assert.equal((await held()).present, false);
    const again = await w.sluice(['apply', w.policy(policyText(true), 'owned.yaml')]);
    assert.equal(again.code, 0, again.stderr);
    await until(async () => typeof (await held()).owner === 'number');
  });

  it('the daemon killed: the table stays (persist), unowned, still filtering; the next daemon takes it back', async () => {
    const table = await shape();
    daemon?.kill('SIGKILL');
    await stopChild(daemon);
    daemon = undefined;
    await until(async () => (await held()).owner === null);
    assert.equal(await shape(), table, 'the table outlived its owner');
    const reach = await w.reach(['tcp:198.18.2.20:443', 'tcp:198.18.3.30:443'], { timeoutMs: 800 });
    assert.deepEqual(reach, { 'tcp:198.18.2.20:443': true, 'tcp:198.18.3.30:443': false });
    const st = await w.sluice(['status']);
    assert.match(st.stdout, /Table: persistent \(flags persist\) and held by no process/);
    await startDaemon();
    await until(async () => typeof (await held()).owner === 'number');
  });

  it('a command-line write with no daemon to let go is refused with the reason, and changes nothing', async () => {
    // A stand-in owner: a process that holds the table and never answers on the control socket.
    const code = `import(${JSON.stringify(join(ROOT, 'dist/src/netfilter/kernel-netfilter.js'))}).then((m) => {
      const nf = new m.KernelNetfilter({ timeoutUpdates: true, owner: true });
      console.log(nf.hold('sluice'));
      setInterval(() => {}, 1000);
    })`;
    await stopChild(daemon);
    daemon = undefined;
    const holder = await w.spawnReady(w.client, [process.execPath, '-e', code], { readyText: 'taken' });
    try {
      const table = await shape();
      const r = await w.sluice(['apply', w.policy(policyText(true, ', 198.18.1.0/24'), 'owned3.yaml')]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /owned \(flags owner\) by another process's netlink socket/);
      assert.equal(await shape(), table);
    } finally {
      await stopChild(holder);
    }
    await startDaemon();
    await until(async () => typeof (await held()).owner === 'number');
  });

  it('without owned_table the table has no flags: the daemon holds nothing', async () => {
    const r = await w.sluice(['apply', w.policy(policyText(false), 'plain.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    await sleep(200);
    assert.deepEqual(await held(), { present: true, owned: false, owner: null, anomalies: [] });
    assert.doesNotMatch((await w.exec(['nft', 'list', 'table', 'inet', 'sluice'])).stdout, /^\tflags /m);
  });

  it('a table owned without persist (it would go with its owner) is read as an anomaly, and leaves with its owner', async () => {
    await stopChild(daemon);
    daemon = undefined;
    assert.equal((await w.sluice(['off'])).code, 0);
    const code = `Promise.all([import(${JSON.stringify(join(ROOT, 'dist/src/netfilter/kernel-netfilter.js'))}), import(${JSON.stringify(join(ROOT, 'dist/src/netfilter/nft-encode.js'))})]).then(([m, e]) => {
      const a = new m.KernelNetfilter({ timeoutUpdates: true });
      a.commit(new e.BatchBuilder().addTable('sluice', 'owner only', 2));
      const b = new m.KernelNetfilter({ timeoutUpdates: true });
      console.log(JSON.stringify(b.read('sluice', { elements: 'none' }).anomalies));
      a.close();
      console.log(JSON.stringify(b.read('sluice', { elements: 'none' })));
    })`;
    const r = await w.exec([process.execPath, '-e', code]);
    assert.equal(r.code, 0, r.stderr);
    const [anomalies, after] = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(anomalies ?? ''), ['the table is owned without persist (it would go with its owner)']);
    assert.equal(after, 'null', 'the kernel deleted it with its owner: why Sluice never writes owner alone');
  });
});
