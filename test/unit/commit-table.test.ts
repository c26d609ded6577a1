/**
 * The one table writer and the daemon against crashes, full disks and
 * races, with the fake kernel (which never touches the host's conntrack).
 * Found by an internal review; each failed before its fix.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { rulesetFlowMark } from '../../src/compile/flow-mark.js';
import { Daemon, type PolicySource } from '../../src/daemon/daemon.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import type { Policy } from '../../src/policy/policy.js';
import { commitTable, confirmWindow, type CommitPolicy } from '../../src/state/commit-table.js';
import { rollBackPending } from '../../src/state/rollback.js';
import { StateStore } from '../../src/state/state-store.js';
import { fakeEnv, fakeHost } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-review-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const yaml = (host: string) => `mode: enforce\nrules:\n  - name: api\n    to: [${host}]\n    ports: [443/tcp]\n`;
const parse = (text: string, file: string) => parsePolicy(Buffer.from(text), file, fakeHost);
const compile = (p: Policy) => compileRuleset(p, fakeEnv(p));
const commitPolicy = (p: Policy, bytes: string): CommitPolicy => ({ policyFile: p.file, sha256: p.sha256, mode: p.mode, warnings: [], bytes: Buffer.from(bytes) });
const liveSha = (nf: FakeNetfilter) => /sha256:([0-9a-f]{64})/.exec(nf.read('sluice')?.ruleset.comment ?? '')?.[1] ?? null;

/** CLI apply, as apply.ts does it (the same confirmWindow; without the timer). */
function apply(nf: FakeNetfilter, state: StateStore, file: string, text: string, confirm?: number) {
  const p = parse(text, file);
  const deadline = confirm !== undefined ? new Date(Date.now() + confirm * 1000).toISOString() : undefined;
  return commitTable(nf, state, {
    event: 'apply',
    ruleset: compile(p).ruleset,
    policy: commitPolicy(p, text),
    pending: deadline === undefined ? 'clear' : confirmWindow(`t${++n}`, deadline),
  });
}

function source(state: StateStore, files: Map<string, string>, delay?: { ms: number }): PolicySource {
  return {
    applied: () => {
      const a = state.applied();
      if (!a) return null;
      const bytes = state.policySnapshot(a.sha256);
      if (!bytes) throw new Error(`no snapshot ${a.sha256}`);
      return { policy: parsePolicy(bytes, a.policyFile, fakeHost), applied: a };
    },
    file: (path) => {
      const text = files.get(path);
      if (text === undefined) throw new Error(`no file ${path}`);
      return { policy: parse(text, path), bytes: Buffer.from(text) };
    },
    compile: async (p) => {
      if (delay) await new Promise((r) => setTimeout(r, delay.ms));
      return compile(p);
    },
    idle: () => parse('version: 1\nmode: audit\ndefault: allow\n', '(off)'),
  };
}

const TIMER = { via: 'confirm-timer', process: 'sluice _rollback' } as const;

/** A fresh state directory and kernel with /etc/p.yaml (198.18.1.10) applied, and the files a daemon reads. */
function appliedP(): { nf: FakeNetfilter; state: StateStore; files: Map<string, string> } {
  const nf = new FakeNetfilter();
  const state = new StateStore(join(base, `s${++n}`));
  const files = new Map([['/etc/p.yaml', yaml('198.18.1.10')]]);
  apply(nf, state, '/etc/p.yaml', yaml('198.18.1.10'));
  return { nf, state, files };
}

function daemon(state: StateStore, nf: FakeNetfilter, files: Map<string, string>, startPolicy: string, delay?: { ms: number }, startPolicyGiven = false) {
  return new Daemon({ source: source(state, files, delay), startPolicy, startPolicyGiven, netfilter: nf, state, components: [], metrics: null });
}

/** The daemon's log lines (JSON on stderr when not under systemd) while fn runs. */
async function logged(fn: () => Promise<void>): Promise<{ level: string; message: string }[]> {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return lines.flatMap((l) => l.split('\n')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; message: string });
}

describe('unit: the one table writer against crashes and races', () => {
  it('a full disk stops an apply before the kernel changes', () => {
    const dir = join(base, `s${++n}`);
    const nf = new FakeNetfilter();
    const ok = new StateStore(dir);
    apply(nf, ok, '/etc/a.yaml', yaml('198.18.1.10'));
    const shaA = liveSha(nf);
    class Full extends StateStore {
      override savePolicySnapshot(): void {
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      }
    }
    const full = new Full(dir);
    assert.throws(() => apply(nf, full, '/etc/b.yaml', yaml('198.18.1.11'), 60), /ENOSPC/);
    assert.equal(liveSha(nf), shaA, 'the kernel still holds the applied policy (or the failure is undone)');
  });

  it('a crash half-way through recording off never undoes off at the next start', async () => {
    const dir = join(base, `s${++n}`);
    const nf = new FakeNetfilter();
    const state = new StateStore(dir);
    apply(nf, state, '/etc/a.yaml', yaml('198.18.1.10'));
    // Killed between its two state writes (off.json written, applied.json not yet removed).
    class Crash extends StateStore {
      override setApplied(v: Parameters<StateStore['setApplied']>[0]): void {
        if (v === null) throw new Error('killed');
        super.setApplied(v);
      }
    }
    assert.throws(() => commitTable(nf, new Crash(dir), { event: 'off', ruleset: null, policy: null }), /killed/);
    assert.equal(state.isOff(), true, 'the newer record (off) is the truth');
    assert.equal(state.applied(), null);
    const files = new Map([['/etc/sluice/policy.yaml', yaml('198.18.9.9')]]);
    const d = daemon(state, nf, files, '/etc/sluice/policy.yaml');
    await d.start();
    await d.stop();
    assert.equal(nf.read('sluice'), null, 'off stays off');
  });

  it('a crash half-way through recording an apply after off: the apply stands, the daemon starts', async () => {
    const dir = join(base, `s${++n}`);
    const nf = new FakeNetfilter();
    const state = new StateStore(dir);
    apply(nf, state, '/etc/a.yaml', yaml('198.18.1.10'));
    commitTable(nf, state, { event: 'off', ruleset: null, policy: null });
    class Crash extends StateStore {
      override setOff(v: { at: string } | null): void {
        if (v === null) throw new Error('killed');
        super.setOff(v);
      }
    }
    assert.throws(() => apply(nf, new Crash(dir), '/etc/a.yaml', yaml('198.18.1.10')), /killed/);
    nf.remove('sluice'); // reboot
    const d = daemon(state, nf, new Map(), '/etc/sluice/policy.yaml');
    let started = true;
    await d.start().catch(() => {
      started = false;
    });
    if (started) await d.stop();
    assert.ok(started && nf.read('sluice') !== null, 'the applied policy is back and the daemon runs');
  });

  it('an apply during a confirmation window: with --confirm it keeps the first rollback target; without, it ends the window', () => {
    const nf = new FakeNetfilter();
    const state = new StateStore(join(base, `s${++n}`));
    const shaOf = (text: string, file: string) => parse(text, file).sha256;
    apply(nf, state, '/etc/a.yaml', yaml('198.18.1.1'));
    apply(nf, state, '/etc/b.yaml', yaml('198.18.1.2'), 600);
    apply(nf, state, '/etc/c.yaml', yaml('198.18.1.3'), 600);
    assert.equal(liveSha(nf), shaOf(yaml('198.18.1.3'), '/etc/c.yaml'), 'C is live');
    assert.equal(rollBackPending(nf, state, null, 'test: not confirmed', TIMER), true);
    assert.equal(liveSha(nf), shaOf(yaml('198.18.1.1'), '/etc/a.yaml'), 'back to A, the last confirmed policy, not B');
    assert.equal(state.applied()?.policyFile, '/etc/a.yaml');

    apply(nf, state, '/etc/b.yaml', yaml('198.18.1.2'), 600);
    apply(nf, state, '/etc/c.yaml', yaml('198.18.1.3'));
    assert.equal(state.pending(), null, 'an apply without --confirm is final: nothing pending');
    assert.equal(rollBackPending(nf, state, null, 'test: the old timer fires', TIMER), false, 'the old timer finds nothing to roll back');
    assert.equal(liveSha(nf), shaOf(yaml('198.18.1.3'), '/etc/c.yaml'), 'C stays');
  });

  it('a rollback the kernel refuses: journaled as failed, loud in status, still pending (boot restore or the daemon try again), nothing else changed', () => {
    const nf = new FakeNetfilter();
    const state = new StateStore(join(base, `s${++n}`));
    apply(nf, state, '/etc/a.yaml', yaml('198.18.1.1'));
    apply(nf, state, '/etc/b.yaml', yaml('198.18.1.2'), 600);
    const live = liveSha(nf);
    const refuse = nf.replace.bind(nf);
    nf.replace = () => {
      throw new Error('Kernel refused adding table sluice: ENOMEM (out of memory)');
    };
    assert.throws(() => rollBackPending(nf, state, null, 'test', TIMER), (e: unknown) => e instanceof Error && /Rollback failed: .*ENOMEM/.test(e.message));
    assert.equal(liveSha(nf), live, 'the table is as it was');
    assert.equal(state.applied()?.policyFile, '/etc/b.yaml', 'the applied state is as it was');
    assert.ok(state.pending(), 'still pending: the next attempt rolls back');
    const last = state.lastJournal();
    assert.equal(last?.event, 'rollback-failed');
    assert.match(String(last?.error), /ENOMEM/);
    nf.replace = refuse;
    assert.equal(rollBackPending(nf, state, null, 'test: retried', TIMER), true, 'a later attempt succeeds');
    assert.equal(state.applied()?.policyFile, '/etc/a.yaml');
    assert.equal(state.pending(), null);
  });

  it('a rollback nobody asked for says in the journal what made it: the confirmation timer (the daemon\'s watch, or overdue at its start)', async () => {
    const { nf, state, files } = appliedP();
    const d = daemon(state, nf, files, '/etc/p.yaml');
    await d.start();
    try {
      apply(nf, state, '/etc/q.yaml', yaml('198.18.1.11'), 0.2);
      await d.sync();
      const until = Date.now() + 5_000;
      while (state.pending() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.equal(state.pending(), null, 'the daemon\'s watch rolled back');
      const last = state.lastJournal();
      assert.equal(last?.event, 'rollback');
      assert.deepEqual(last?.by, { via: 'confirm-timer', process: 'daemon' });
    } finally {
      await d.stop();
    }
    // A deadline that passed while no daemon ran: the daemon rolls back as it starts, and says so.
    apply(nf, state, '/etc/q.yaml', yaml('198.18.1.12'), 0.05);
    await new Promise((r) => setTimeout(r, 100));
    const d2 = daemon(state, nf, files, '/etc/p.yaml');
    await d2.start();
    await d2.stop();
    const rolled = state.readJournal().filter((e) => e.event === 'rollback').at(-1);
    assert.deepEqual(rolled?.by, { via: 'confirm-timer', process: 'daemon' });
    assert.match(String(rolled?.why), /after the confirmation deadline/);
    // And the timer process, through the same function.
    apply(nf, state, '/etc/q.yaml', yaml('198.18.1.13'), 600);
    assert.ok(rollBackPending(nf, state, null, 'not confirmed in time', TIMER));
    assert.deepEqual(state.lastJournal()?.by, TIMER);
  });

  it('a daemon reload during a confirmation window keeps the confirmation pending', async () => {
    const { nf, state, files } = appliedP();
    const d = daemon(state, nf, files, '/etc/p.yaml');
    await d.start();
    try {
      files.set('/etc/p.yaml', yaml('198.18.1.11'));
      apply(nf, state, '/etc/p.yaml', yaml('198.18.1.11'), 600);
      await d.sync();
      assert.ok(state.pending(), 'pending before the reload');
      await d.reload(); // SIGHUP, `systemctl reload sluice`
      assert.ok(state.pending(), 'still pending after a reload');
    } finally {
      await d.stop();
    }
  });

  it('a reload rejected at once (a broken file) does not answer the next reload: the fixed file is applied', async () => {
    const { nf, state, files } = appliedP();
    const d = daemon(state, nf, files, '/etc/p.yaml');
    await d.start();
    try {
      files.set('/etc/p.yaml', 'rules: [');
      await assert.rejects(d.reload(), /Invalid policy/);
      const shaBefore = liveSha(nf);
      files.set('/etc/p.yaml', yaml('198.18.1.11'));
      await d.reload();
      assert.notEqual(liveSha(nf), shaBefore, 'the fixed file is in force');
      assert.equal(state.applied()?.sha256, liveSha(nf));
    } finally {
      await d.stop();
    }
  });

  it('a reload that read the file before an apply of the same path never commits its old bytes over the apply', async () => {
    const { nf, state, files } = appliedP();
    const delay = { ms: 0 };
    const d = daemon(state, nf, files, '/etc/p.yaml', delay);
    await d.start();
    try {
      files.set('/etc/p.yaml', yaml('198.18.1.11'));
      delay.ms = 300;
      const reloading = assert.rejects(d.reload(), /another policy was applied meanwhile/); // read v2 now; compiles slowly
      files.set('/etc/p.yaml', yaml('198.18.1.12'));
      await new Promise((r) => setTimeout(r, 50));
      apply(nf, state, '/etc/p.yaml', yaml('198.18.1.12')); // the operator's apply of v3
      const v3 = liveSha(nf);
      await reloading;
      assert.equal(liveSha(nf), v3, 'the operator\'s apply stands');
    } finally {
      await d.stop();
    }
  });

  it('after 20 rolled-back applies the applied policy\'s snapshot is still there and the daemon starts', async () => {
    const dir = join(base, `s${++n}`);
    const nf = new FakeNetfilter();
    const state = new StateStore(dir);
    apply(nf, state, '/etc/a.yaml', yaml('198.18.1.10'));
    const shaA = state.applied()?.sha256 ?? '';
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 5)); // distinct mtimes
      apply(nf, state, `/etc/b${i}.yaml`, yaml(`198.18.4.${i + 1}`), 60);
      assert.ok(rollBackPending(nf, state, null, 'not confirmed in time', TIMER));
    }
    assert.equal(state.applied()?.sha256, shaA, 'A is applied again');
    const d = daemon(state, nf, new Map(), '/etc/sluice/policy.yaml');
    await d.start();
    await d.stop();
  });

  it('`sluice daemon POLICY` on a host that applied another policy, or was turned off, runs what is applied and says that POLICY is not', async () => {
    const { nf, state, files } = appliedP();
    files.set('/etc/other.yaml', yaml('198.18.9.9'));
    const sha = state.applied()?.sha256;
    const run = async (path: string, given: boolean) =>
      (
        await logged(async () => {
          const d = daemon(state, nf, files, path, undefined, given);
          await d.start();
          await d.stop();
        })
      ).filter((l) => l.level === 'warn' && l.message.includes('is not applied'));
    const other = await run('/etc/other.yaml', true);
    assert.equal(other.length, 1, JSON.stringify(other));
    assert.equal(other[0]?.message, '/etc/other.yaml is not applied: the daemon runs the applied policy, /etc/p.yaml (POLICY is applied only on a host that never applied one; sluice apply /etc/other.yaml applies it)');
    assert.equal(state.applied()?.sha256, sha, 'the applied policy still runs');
    assert.deepEqual(await run('/etc/p.yaml', true), [], 'the applied file itself: nothing to say');
    assert.deepEqual(await run('/etc/other.yaml', false), [], 'the default path, not named by the operator: nothing to say');
    commitTable(nf, state, { event: 'off', ruleset: null, policy: null });
    const off = await run('/etc/other.yaml', true);
    assert.deepEqual(off.map((l) => l.message), ['/etc/other.yaml is not applied: Sluice was turned off (sluice off), and a restart never undoes that; sluice apply /etc/other.yaml turns it on']);
    assert.equal(nf.read('sluice'), null, 'off stays off');
  });

  it('withEpoch and the epoch: re-applying the same policy keeps it; another takes the next', () => {
    const nf = new FakeNetfilter();
    const state = new StateStore(join(base, `s${++n}`));
    apply(nf, state, '/a.yaml', yaml('198.18.1.10'));
    const e1 = rulesetFlowMark(nf.read('sluice')?.ruleset ?? { comment: '' })?.epoch;
    apply(nf, state, '/a.yaml', yaml('198.18.1.10'));
    assert.equal(rulesetFlowMark(nf.read('sluice')?.ruleset ?? { comment: '' })?.epoch, e1);
    apply(nf, state, '/b.yaml', yaml('198.18.1.11'));
    assert.equal(rulesetFlowMark(nf.read('sluice')?.ruleset ?? { comment: '' })?.epoch, (e1 ?? 0) + 1);
  });
});

describe('unit: the daemon reloads a changed policy file, and only a change', () => {
  /** The daemon's source reading real files (the watch reads them from disk too). */
  const disk = { get: (p: string) => readFileSync(p, 'utf8') } as unknown as Map<string, string>;
  /** What the watch does when the file may have changed (an inotify event, or its poll). */
  const look = (d: Daemon) => (d as unknown as { policyFileChanged(): Promise<void> }).policyFileChanged();
  /** A real policy file applied (198.18.1.10), and a daemon (not started) on its state directory. */
  const watched = () => {
    const dir = join(base, `s${++n}`);
    const file = join(base, `watched-${n}.yaml`);
    const nf = new FakeNetfilter();
    const state = new StateStore(dir);
    writeFileSync(file, yaml('198.18.1.10'));
    apply(nf, state, file, yaml('198.18.1.10'));
    return { file, nf, state, shaA: liveSha(nf), d: daemon(state, nf, disk, file) };
  };

  it('an edit is applied; a rolled-back edit still in the file is not applied again; a start does not apply a half-edited file', async () => {
    const w0 = watched();
    const { file, nf, state, shaA } = w0;
    let d = w0.d;
    await d.start();
    try {
      await look(d);
      assert.equal(liveSha(nf), shaA, 'unchanged file: nothing');
      writeFileSync(file, yaml('198.18.1.11'));
      await look(d);
      const shaB = liveSha(nf);
      assert.notEqual(shaB, shaA, 'an edit is applied');
      assert.equal(state.applied()?.sha256, shaB);

      // apply --confirm of a third edit, never confirmed: the rollback brings B back while the file holds C.
      writeFileSync(file, yaml('198.18.1.12'));
      apply(nf, state, file, yaml('198.18.1.12'), 600);
      await d.sync();
      assert.equal(rollBackPending(nf, state, null, 'test: not confirmed', TIMER), true);
      await d.sync();
      assert.equal(liveSha(nf), shaB, 'rolled back');
      await look(d);
      assert.equal(liveSha(nf), shaB, 'the rolled-back edit in the file is not applied again');
    } finally {
      await d.stop();
    }

    // A restart finds the file half-edited (valid YAML, not applied): it waits for the next save.
    writeFileSync(file, yaml('198.18.1.13'));
    d = daemon(state, nf, disk, file);
    await d.start();
    try {
      await look(d);
      assert.equal(state.applied()?.sha256, liveSha(nf));
      assert.notEqual(liveSha(nf), parse(yaml('198.18.1.13'), file).sha256, 'not applied at start');
      writeFileSync(file, yaml('198.18.1.14'));
      await look(d);
      assert.equal(liveSha(nf), parse(yaml('198.18.1.14'), file).sha256, 'the next save is');
    } finally {
      await d.stop();
    }
  });

  it('a file others can write is not reloaded (it would set the firewall and run alert programs as root)', async () => {
    const { chmodSync } = await import('node:fs');
    const { file, nf, state, shaA, d } = watched();
    const { channels } = await import('../../src/events/channels.js');
    const alerts: { kind: string; message: string }[] = [];
    const onAlert = (m: unknown) => alerts.push(m as { kind: string; message: string });
    channels.alert.subscribe(onAlert);
    await d.start();
    try {
      writeFileSync(file, yaml('198.18.1.11'));
      chmodSync(file, 0o666);
      await look(d);
      assert.equal(liveSha(nf), shaA, 'not reloaded');
      assert.match(alerts[0]?.message ?? '', /writable by group or others \(mode 666\)/);
      chmodSync(file, 0o644);
      writeFileSync(file, yaml('198.18.1.12'));
      await look(d);
      assert.equal(liveSha(nf), parse(yaml('198.18.1.12'), file).sha256, 'reloaded once only root can write it');
    } finally {
      channels.alert.unsubscribe(onAlert);
      await d.stop();
    }
  });

  it('a broken file is rejected once, the policy in force stays, and the fixed file is applied', async () => {
    const { file, nf, state, shaA, d } = watched();
    const { channels } = await import('../../src/events/channels.js');
    const alerts: { kind: string }[] = [];
    const onAlert = (m: unknown) => alerts.push(m as { kind: string });
    channels.alert.subscribe(onAlert);
    await d.start();
    try {
      writeFileSync(file, 'rules: [');
      await look(d);
      await look(d);
      assert.deepEqual(alerts.map((a) => a.kind), ['reload-rejected'], 'one alert for one broken content');
      assert.equal(liveSha(nf), shaA);
      writeFileSync(file, yaml('198.18.1.11'));
      await look(d);
      assert.equal(liveSha(nf), parse(yaml('198.18.1.11'), file).sha256);
    } finally {
      channels.alert.unsubscribe(onAlert);
      await d.stop();
    }
  });
});
