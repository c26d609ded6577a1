/**
 * The tamper watchdog's loop on a fake clock: when it checks (a burst of
 * notifications once, 5 ms after; the poll; 50 ms after a held state lock;
 * a second after a restore the kernel refused; at most 200 ms behind a busy
 * DNS guard, and its elements a second later), what each check reads (the
 * shape, or the elements too), and what it says when it cannot check.
 * Every timing is asserted to the millisecond, without sleeping.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Ruleset, SetDef, SetElem } from '../../src/compile/ruleset.js';
import { findTampering, restoreRuleset, TamperWatch, type LearnedSource, type MonitorFactory } from '../../src/daemon/tamper-watch.js';
import type { LearnedEntry } from '../../src/dns/learned-state.js';
import { SluiceError } from '../../src/errors.js';
import { channels, type AlertEvent } from '../../src/events/channels.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import type { ReadOptions } from '../../src/netfilter/netfilter.js';
import type { NftTransaction } from '../../src/netfilter/nft-monitor.js';
import type { Runtime } from '../../src/runtime/component.js';
import { Registry } from '../../src/runtime/metrics.js';
import { StateStore } from '../../src/state/state-store.js';
import { FakeClock } from '../support/fake-clock.js';
import { compileFrom } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-tamper-clock-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const YAML = (tamper: string, owned = false) =>
  `mode: enforce\ntamper: ${tamper}\n${owned ? 'owned_table: true\n' : ''}dns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: api\n    to: [api.example.com]\n    ports: [443/tcp]\n  - name: lan\n    to: [198.18.1.0/24, 198.18.2.7]\n`;
const IP1 = 0xc6120901; // 198.18.9.1
const FOREIGN = 0xc6120999; // 198.18.9.153
const addr = (a: number, timeoutMs?: number): SetElem => ({ t: 'addr', family: 4, start: BigInt(a), end: BigInt(a), ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
const clone = (rs: Ruleset): Ruleset => structuredClone(rs);

function dnsSet(rs: Ruleset): SetDef {
  const s = rs.sets.find((x) => x.dynamic && !x.meter && x.key === 'ipv4_addr');
  assert.ok(s, 'the policy has a DNS-filled IPv4 set');
  return s;
}

interface Options {
  tamper?: 'restore' | 'alert';
  /** The guard's record; 'none' leaves the option out (the default: no record). */
  learned?: LearnedSource | 'none';
  /** 'default' leaves the option out (5 s). */
  pollMs?: number | 'default';
  /** What the notification factory gives: a monitor with drain, one without, or an error. */
  monitor?: 'drain' | 'no-drain' | 'fails';
  /** 'default' leaves isOwn out (this process's threads). */
  isOwn?: 'default';
  owned?: boolean;
}

function setup(o: Options = {}) {
  const clock = new FakeClock();
  const compiled = compileFrom(YAML(o.tamper ?? 'restore', o.owned), `c${++n}.yaml`);
  const { policy } = compiled;
  const state = new StateStore(join(base, `s${n}`));
  const nf = new FakeNetfilter();
  nf.replace(compiled.ruleset);
  state.setApplied({ appliedAt: 'then', policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, ruleset: compiled.ruleset, warnings: [] });

  // The kernel and the state lock, as the tests need them to behave.
  const ctl = { locked: false, readError: null as Error | null, replaceError: null as Error | null, replaceMs: 0 };
  const reads: string[] = [];
  const realRead = nf.read.bind(nf);
  nf.read = (table: string, opts: ReadOptions = {}) => {
    reads.push(opts.elements ?? 'static');
    if (ctl.readError) throw ctl.readError;
    return realRead(table, opts);
  };
  let replaces = 0;
  const realReplace = nf.replace.bind(nf);
  nf.replace = (rs: Ruleset, opts?: { carryDynamic?: boolean }) => {
    replaces++;
    if (ctl.replaceError) throw ctl.replaceError;
    // A kernel transaction that takes this long (a spin: the duration is what is measured).
    const until = performance.now() + ctl.replaceMs;
    while (performance.now() < until);
    realReplace(rs, opts);
  };
  const realWithLock = state.withLock.bind(state);
  state.withLock = <T>(fn: () => T, waitMs?: number): T => {
    if (ctl.locked) throw new SluiceError('ELOCKED', 'Another sluice command holds the lock: pid 4321');
    return realWithLock(fn, waitMs);
  };

  let emit: ((t: NftTransaction) => void) | undefined;
  let lose: ((why: string) => void) | undefined;
  const queued: NftTransaction[] = [];
  const mon = { opened: 0, closed: 0, drained: 0 };
  const monitor: MonitorFactory = (onTx, onLost) => {
    if (o.monitor === 'fails') throw new Error('no CAP_NET_ADMIN');
    mon.opened++;
    emit = onTx;
    lose = onLost;
    const close = () => void mon.closed++;
    if (o.monitor === 'no-drain') return { close };
    return {
      close,
      drain: () => {
        mon.drained++;
        queued.splice(0).forEach(onTx);
      },
    };
  };
  const alerts: AlertEvent[] = [];
  const onAlert = (m: unknown) => alerts.push(m as AlertEvent);
  channels.alert.subscribe(onAlert);
  const logs: string[] = [];
  const watch = new TamperWatch({
    monitor,
    clock,
    ...(o.learned === 'none' ? {} : { learned: o.learned ?? (() => []) }),
    ...(o.pollMs === 'default' ? {} : { pollMs: o.pollMs ?? 3_600_000 }),
    ...(o.isOwn === 'default' ? {} : { isOwn: (pid: number) => pid === 1 }),
  });
  const rt = { policy, compiled, netfilter: nf, state, metrics: new Registry(), log: (level: string, msg: string) => logs.push(`${level}: ${msg}`) } as unknown as Runtime;
  const t0 = clock.now();
  return {
    clock,
    nf,
    state,
    watch,
    rt,
    alerts,
    logs,
    ctl,
    mon,
    reads,
    ruleset: compiled.ruleset,
    set: dnsSet(compiled.ruleset),
    /** Milliseconds since the test began. */
    elapsed: () => clock.now() - t0,
    /** Element reads ('all') so far. */
    fullReads: () => reads.filter((r) => r === 'all').length,
    replaces: () => replaces,
    /** Starts, and lets the first check (5 ms later) run. */
    start: async () => {
      await watch.start(rt);
      clock.advance(5);
    },
    emit: (t: NftTransaction) => emit?.(t),
    queue: (t: NftTransaction) => queued.push(t),
    lose: () => lose?.('lost'),
    /** Moves the fake time on. */
    at: (ms: number) => clock.advance(ms),
    dnsElements: () => dnsSet(realRead('sluice', { elements: 'all' })?.ruleset as Ruleset).elements.map((e) => (e as { start: bigint }).start),
    stop: async () => {
      channels.alert.unsubscribe(onAlert);
      await watch.stop();
    },
  };
}

describe('unit: the tamper watchdog\'s timing (fake clock)', () => {
  it('a burst of notifications is checked once, 5 ms after the first', async () => {
    const t = setup();
    await t.start();
    const checks = t.watch.stats.checks;
    t.nf.remove('sluice');
    t.emit({ pid: 4242, comm: 'nft', changes: ['deleted table'] });
    t.at(2);
    t.emit({ pid: 4242, comm: 'nft', changes: ['deleted table'] });
    t.emit({ pid: 4243, comm: 'nft', changes: ['deleted rule in chain output'] });
    t.at(2);
    assert.equal(t.watch.stats.checks, checks, 'not yet at 4 ms');
    t.at(1);
    assert.equal(t.watch.stats.checks, checks + 1, 'at 5 ms');
    assert.ok(t.nf.read('sluice'), 'restored');
    t.at(1_000);
    assert.equal(t.watch.stats.checks, checks + 1, 'one check for the burst');
    assert.equal(t.alerts.length, 1);
    assert.deepEqual(t.alerts[0]?.detail?.by, ['nft (pid 4242)', 'nft (pid 4243)']);
    await t.stop();
  });

  it('the poll checks every pollMs (5 s by default), with or without notifications', async () => {
    const d = setup({ pollMs: 'default' });
    await d.start();
    d.nf.remove('sluice');
    d.at(4_994);
    assert.equal(d.nf.read('sluice'), null, 'not before 5 s');
    d.at(1);
    assert.ok(d.nf.read('sluice'), 'the poll at 5 s put it back');
    assert.match(d.alerts[0]?.message ?? '', /changed by a change the notifications did not show \(found by the periodic check\): the table was deleted; restored in \d+ ms$/);
    await d.stop();

    const t = setup({ pollMs: 60_000 });
    await t.start();
    t.nf.remove('sluice');
    t.at(59_994);
    assert.equal(t.nf.read('sluice'), null, 'a pollMs of 60 s is 60 s');
    t.at(1);
    assert.ok(t.nf.read('sluice'));
    await t.stop();
  });

  it('stop closes the notifications and leaves no timer behind; a check before start or after stop does nothing', async () => {
    const t = setup();
    await t.watch.check();
    assert.equal(t.watch.stats.checks, 0, 'not started');
    await t.start();
    assert.equal(t.watch.name, 'tamper-watch');
    t.emit({ pid: 9, changes: ['deleted table'] });
    assert.equal(t.clock.pending, 2, 'the poll and the debounce');
    await t.stop();
    assert.equal(t.mon.closed, 1);
    assert.equal(t.clock.pending, 0, 'no timer left running');
    assert.equal((t.watch.status() as { watching: boolean }).watching, false);
    const checks = t.watch.stats.checks;
    await t.watch.check();
    assert.equal(t.watch.stats.checks, checks);
  });

  it('without notifications it polls, says so once in the log, and status says it is not watching', async () => {
    const t = setup({ monitor: 'fails', pollMs: 60_000 });
    await t.start();
    assert.deepEqual(t.logs, ['warn: tamper watchdog: cannot subscribe to nf_tables notifications (no CAP_NET_ADMIN); checking every 60 s only']);
    assert.equal((t.watch.status() as { watching: boolean }).watching, false);
    t.nf.remove('sluice');
    t.at(60_000);
    assert.ok(t.nf.read('sluice'), 'restored by the poll');
    assert.equal(t.watch.stats.restored, 1);
    assert.equal(t.watch.stats.restoreFailures, 0);
    await t.stop();
  });

  it('a monitor that cannot drain is only read by the event loop: checks go on', async () => {
    const t = setup({ monitor: 'no-drain' });
    await t.start();
    t.nf.remove('sluice');
    t.emit({ pid: 7, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    assert.ok(t.nf.read('sluice'));
    assert.match(t.alerts[0]?.message ?? '', /changed by nft \(pid 7\)/);
    await t.stop();
  });

  it('a transaction committed but not yet delivered is read at the check (drain): a change made and undone is still told', async () => {
    const t = setup();
    await t.start();
    await t.watch.check();
    t.queue({ pid: 4250, comm: 'nft', changes: ['deleted rule in chain output', 'added or replaced rule in chain output'] });
    await t.watch.check();
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.severity, 'warning');
    assert.match(t.alerts[0]?.message ?? '', /^Sluice's table was changed by nft \(pid 4250\): changed and changed back before the watchdog looked: deleted rule in chain output; added or replaced rule in chain output; nothing left to restore$/);
    await t.stop();
  });

  it('this process\'s transactions (marked own, or by a pid of its own) start no check; others do', async () => {
    const t = setup();
    await t.start();
    const checks = t.watch.stats.checks;
    t.emit({ pid: 4242, comm: 'node', changes: [], own: true });
    t.emit({ pid: 1, comm: 'node', changes: ['deleted table'] });
    t.at(100);
    assert.equal(t.watch.stats.checks, checks);
    assert.equal(t.watch.stats.ownTransactions, 2);
    assert.equal(t.watch.stats.foreignTransactions, 0);
    t.emit({ changes: ['deleted rule in chain output'] });
    t.at(5);
    assert.equal(t.watch.stats.checks, checks + 1);
    assert.equal(t.watch.stats.foreignTransactions, 1);
    await t.stop();
  });

  it('by default its own are the main thread and this process\'s other threads; any other pid is foreign', async () => {
    const t = setup({ isOwn: 'default' });
    await t.start();
    const thread = readdirSync('/proc/self/task').map(Number).find((x) => x !== process.pid);
    assert.ok(thread, 'node has threads besides the main one');
    t.emit({ pid: process.pid, changes: ['deleted table'] });
    t.emit({ pid: thread, changes: ['deleted table'] });
    assert.equal(t.watch.stats.ownTransactions, 2);
    t.emit({ pid: 999_999_999, changes: ['deleted table'] });
    assert.equal(t.watch.stats.foreignTransactions, 1);
    await t.stop();
  });

  it('a transaction without a pid is told as one the kernel did not name; at most 100 waiting transactions are kept', async () => {
    const t = setup({ tamper: 'alert' });
    await t.start();
    t.nf.remove('sluice');
    t.emit({ changes: ['deleted table'] });
    t.at(5);
    assert.match(t.alerts[0]?.message ?? '', /^Sluice's table was changed by a process the kernel did not name: the table was deleted; left as it is \(tamper: alert\)$/);
    for (let i = 0; i < 150; i++) t.emit({ pid: 1_000 + i, comm: 'x', changes: ['deleted table'] });
    t.at(5);
    assert.equal(t.alerts.length, 2);
    assert.equal((t.alerts[1]?.detail?.by as string[]).length, 100);
    assert.equal((t.alerts[1]?.detail?.by as string[]).at(-1), 'x (pid 1099)');
    await t.stop();
  });

  it('what a check reads: the shape for a rule\'s change, the elements too for a set\'s change, an unknown one, at start, after lost notifications and a reload; never elements of a table whose shape changed', async () => {
    const t = setup();
    await t.start();
    assert.equal(t.fullReads(), 1, 'the start reads the elements');
    const tx = (changes: string[]) => {
      t.emit({ pid: 50, comm: 'nft', changes });
      t.at(5);
    };
    tx(['deleted rule in chain output']);
    assert.equal(t.fullReads(), 1, 'a rule: the shape');
    tx([`added elements to set ${t.set.name}`]);
    assert.equal(t.fullReads(), 2, 'a set: the elements');
    tx(['deleted rule in chain output']);
    assert.equal(t.fullReads(), 2, 'the shape only again: the set\'s check did not leave every later check reading elements');
    tx([]);
    assert.equal(t.fullReads(), 3, 'what it did is not known');
    tx(['added or replaced rule in chain output', `deleted elements from set ${t.set.name}`]);
    assert.equal(t.fullReads(), 4, 'one of its changes is a set\'s');
    tx(['notifications not read (too many in one transaction) (3)']);
    tx(['other changes (40)']);
    assert.equal(t.fullReads(), 6);
    t.lose();
    t.at(5);
    assert.equal(t.fullReads(), 7, 'lost notifications');
    await t.watch.reload(t.rt);
    t.at(5);
    assert.equal(t.fullReads(), 8, 'a reload');
    assert.ok(t.reads.every((r) => r === 'none' || r === 'all'), `the shape is read without elements: ${[...new Set(t.reads)].join(', ')}`);
    t.nf.remove('sluice');
    tx([`added elements to set ${t.set.name}`]);
    assert.equal(t.fullReads(), 8, 'the shape is gone: no elements read');
    assert.ok(t.nf.read('sluice'));
    await t.stop();
  });

  it('the elements found wrong at start, after lost notifications and after a reload are put back', async () => {
    const t = setup();
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(FOREIGN, 3_600_000)] }]);
    await t.start();
    assert.deepEqual(t.dnsElements(), [], 'at start');
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(FOREIGN, 3_600_000)] }]);
    t.lose();
    t.at(5);
    assert.deepEqual(t.dnsElements(), [], 'after lost notifications');
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(FOREIGN, 3_600_000)] }]);
    await t.watch.reload(t.rt);
    t.at(5);
    assert.deepEqual(t.dnsElements(), [], 'after a reload');
    assert.equal(t.watch.stats.restored, 3);
    await t.stop();
  });

  it('a held state lock: tried again every 50 ms, counted; past 3 s a waiting change is reported once, then restored when the lock is free', async () => {
    const t = setup();
    await t.start();
    t.ctl.locked = true;
    t.nf.remove('sluice');
    t.emit({ pid: 4245, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    const first = t.elapsed();
    assert.equal(t.watch.stats.lockBusy, 1);
    t.at(49);
    assert.equal(t.watch.stats.lockBusy, 1);
    t.at(1);
    assert.equal(t.watch.stats.lockBusy, 2, 'again 50 ms later');
    t.at(3_000 - 50 - 1);
    assert.equal(t.alerts.length, 0, 'not yet: an apply may hold the lock that long');
    t.at(1);
    assert.equal(t.elapsed() - first, 3_000);
    assert.equal(t.alerts.length, 1, 'at 3 s');
    assert.equal(t.alerts[0]?.message, 'Sluice\'s table was changed by nft (pid 4245): the watchdog has not been able to check the table for 3 s: the state lock is held (an apply in progress, or a process holding it on purpose); it is checked (and restored) as soon as the check can run');
    assert.equal(t.alerts[0]?.severity, 'critical');
    assert.equal(t.alerts[0]?.detail?.stalled, true);
    t.at(10_000);
    assert.equal(t.alerts.length, 1, 'once per stall');
    assert.equal(t.nf.read('sluice'), null, 'not restored without the lock');
    t.ctl.locked = false;
    t.at(50);
    assert.ok(t.nf.read('sluice'), 'restored once the lock is free');
    assert.equal(t.alerts.length, 2);
    assert.match(t.alerts[1]?.message ?? '', /changed by nft \(pid 4245\): the table was deleted; restored/);
    assert.equal(t.watch.stats.restoreFailures, 0);
    await t.stop();
  });

  it('a held lock with nothing waiting is not news; lost notifications waiting are', async () => {
    const t = setup();
    t.ctl.locked = true;
    await t.start();
    t.at(10_000);
    assert.equal(t.alerts.length, 0, 'the lock held from the start, nothing waiting');
    assert.ok(t.watch.stats.lockBusy > 100);
    t.lose();
    t.at(3_100);
    assert.equal(t.alerts.length, 1);
    assert.match(t.alerts[0]?.message ?? '', /^Sluice's table was changed by a change the notifications did not show \(found by the periodic check\): the watchdog has not been able to check the table for 3 s: the state lock is held/);
    await t.stop();
  });

  it('the first stall after start is reported (nothing was reported before it)', async () => {
    const t = setup();
    t.ctl.locked = true;
    await t.start();
    t.emit({ pid: 61, comm: 'nft', changes: ['deleted table'] });
    t.at(3_100);
    assert.equal(t.alerts.length, 1);
    await t.stop();
  });

  it('a check that cannot read the table: tried again in 50 ms with the elements, never counted as a held lock or a failed restore; reported past 3 s', async () => {
    const t = setup();
    await t.start();
    const fullReads = t.fullReads();
    t.ctl.readError = new Error('the ruleset changed during the dump');
    t.emit({ pid: 62, comm: 'nft', changes: ['deleted rule in chain output'] });
    t.at(5);
    assert.equal(t.watch.stats.lockBusy, 0);
    assert.equal(t.watch.stats.restoreFailures, 0);
    assert.equal(t.alerts.length, 0);
    t.at(3_050);
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.message, 'Sluice\'s table was changed by nft (pid 62): the watchdog has not been able to check the table for 3 s: reading the table failed: the ruleset changed during the dump; it is checked (and restored) as soon as the check can run');
    t.ctl.readError = null;
    t.at(50);
    assert.equal(t.fullReads(), fullReads + 1, 'a failed read may have missed anything: the next check reads the elements');
    assert.equal(t.watch.stats.restoreFailures, 0);
    await t.stop();
  });

  it('a shape-only check the lock held off stays shape-only', async () => {
    const t = setup();
    await t.start();
    const fullReads = t.fullReads();
    t.ctl.locked = true;
    t.emit({ pid: 63, comm: 'nft', changes: ['deleted rule in chain output'] });
    t.at(5);
    t.ctl.locked = false;
    t.at(50);
    assert.equal(t.watch.stats.lockBusy, 1);
    assert.equal(t.fullReads(), fullReads);
    await t.stop();
  });

  it('a restore the kernel refuses: reported once, counted, journaled, tried again every second until it holds', async () => {
    const t = setup();
    await t.start();
    t.ctl.replaceError = new Error('Kernel refused the table: ENOMEM');
    const replaces = t.replaces();
    t.nf.remove('sluice');
    t.emit({ pid: 70, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    assert.equal(t.replaces(), replaces + 1);
    assert.equal(t.watch.stats.restoreFailures, 1);
    assert.equal(t.alerts.length, 1);
    const a = t.alerts[0] as AlertEvent;
    assert.equal(a.message, 'Sluice\'s table was changed by nft (pid 70): the table was deleted; restoring it failed: Kernel refused the table: ENOMEM');
    assert.equal(a.detail?.restored, false);
    assert.equal(a.detail?.error, 'Kernel refused the table: ENOMEM');
    const j = t.state.lastJournal();
    assert.deepEqual({ event: j?.event, by: j?.by, changes: j?.changes, restored: j?.restored, error: j?.error }, { event: 'tamper', by: ['nft (pid 70)'], changes: ['the table was deleted'], restored: false, error: 'Kernel refused the table: ENOMEM' });
    t.at(999);
    assert.equal(t.replaces(), replaces + 1, 'not before a second');
    t.at(1);
    assert.equal(t.replaces(), replaces + 2, 'a second later');
    assert.equal(t.watch.stats.restoreFailures, 2);
    assert.equal(t.alerts.length, 1, 'the same failure is not reported again');
    t.ctl.replaceError = null;
    t.at(1_000);
    assert.ok(t.nf.read('sluice'));
    assert.equal(t.watch.stats.restored, 1);
    assert.equal(t.alerts.length, 2);
    assert.match(t.alerts[1]?.message ?? '', /changed by nft \(pid 70\): the table was deleted; restored in \d+ ms$/);
    await t.stop();
  });

  it('the restore\'s duration: the alert\'s milliseconds, and lastRestoreMs to a tenth', async () => {
    const t = setup();
    await t.start();
    t.ctl.replaceMs = 3;
    t.nf.remove('sluice');
    t.emit({ pid: 71, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    const ms = t.alerts[0]?.detail?.ms as number;
    assert.ok(ms >= 3, `${ms}`);
    assert.match(t.alerts[0]?.message ?? '', new RegExp(`restored in ${Math.round(ms)} ms$`));
    assert.equal(t.watch.stats.lastRestoreMs, Math.round(ms * 10) / 10);
    await t.stop();
  });

  it('a restore writes the table only: applied.json is left as it was', async () => {
    const t = setup();
    await t.start();
    const before = t.state.applied();
    t.nf.remove('sluice');
    t.emit({ pid: 72, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    assert.ok(t.nf.read('sluice'));
    assert.equal(t.state.applied()?.appliedAt, 'then');
    assert.deepEqual(t.state.applied(), before);
    await t.stop();
  });

  it('a check asked for during a check runs after it, not inside it', async () => {
    const t = setup();
    await t.start();
    const order: string[] = [];
    let first = true;
    const tamperAgain = (m: unknown) => {
      if (!first) return;
      first = false;
      // Another process deletes the table again while the first alert is being told, and a check is asked for.
      t.nf.remove('sluice');
      void t.watch.check();
      order.push(`asked after: ${(m as AlertEvent).message.slice(0, 40)}`);
    };
    const record = (m: unknown) => order.push((m as AlertEvent).message);
    channels.alert.unsubscribe(tamperAgain);
    channels.alert.subscribe(tamperAgain);
    channels.alert.subscribe(record);
    try {
      const checks = t.watch.stats.checks;
      t.nf.remove('sluice');
      t.emit({ pid: 80, comm: 'nft', changes: ['deleted table'] });
      t.at(5);
      assert.equal(t.watch.stats.checks, checks + 2);
      assert.equal(order.length, 3);
      assert.match(order[1] ?? '', /changed by nft \(pid 80\)/, 'the first check\'s alert is told to every subscriber before the second check');
      assert.match(order[2] ?? '', /a change the notifications did not show/);
      assert.ok(t.nf.read('sluice'));
    } finally {
      channels.alert.unsubscribe(tamperAgain);
      channels.alert.unsubscribe(record);
    }
    await t.stop();
  });
});

describe('unit: the tamper watchdog behind a busy DNS guard (fake clock)', () => {
  it('while the guard has writes queued the check waits; the first millisecond it is free, it checks with the elements', async () => {
    let busy = true;
    const t = setup({ learned: () => (busy ? 'busy' : []) });
    await t.start();
    t.at(40);
    assert.equal(t.watch.stats.checks, 0, 'no check while the guard is busy');
    busy = false;
    t.at(1);
    assert.equal(t.watch.stats.checks, 1);
    assert.equal(t.fullReads(), 1, 'the guard\'s record at hand: elements read');
    t.at(5_000);
    assert.equal(t.watch.stats.checks, 1, 'no retry: nothing was left unchecked');
    await t.stop();
  });

  it('a guard kept busy holds the check off 200 ms to the millisecond; the shape is checked without its record, the elements a second later once it is free', async () => {
    let busy = true;
    const t = setup({ learned: () => (busy ? 'busy' : []) });
    await t.watch.start(t.rt);
    t.nf.remove('sluice');
    t.at(5 + 199);
    assert.equal(t.watch.stats.checks, 0, '199 ms behind the guard');
    t.at(1);
    assert.equal(t.watch.stats.checks, 1, 'at 200 ms');
    assert.ok(t.nf.read('sluice'), 'the shape restored although the guard never stopped being busy');
    assert.equal(t.fullReads(), 0, 'no elements without the guard\'s record');
    // Someone adds an element to a DNS-filled set meanwhile; the guard is free at 500 ms.
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(FOREIGN, 3_600_000)] }]);
    t.at(300);
    busy = false;
    t.at(1_000 - 300 - 1);
    assert.equal(t.fullReads(), 0, 'the elements wait a second after the shape\'s check');
    assert.deepEqual(t.dnsElements(), [BigInt(FOREIGN)]);
    t.at(1);
    assert.equal(t.fullReads(), 1, 'a second after');
    assert.deepEqual(t.dnsElements(), []);
    assert.match(t.alerts.at(-1)?.message ?? '', /holds 1 element the DNS guard did not open/);
    await t.stop();
  });

  it('a guard busy for good: the shape every 1.2 s, never the elements', async () => {
    const t = setup({ learned: () => 'busy' });
    await t.watch.start(t.rt);
    t.at(5 + 200);
    assert.equal(t.watch.stats.checks, 1);
    t.at(1_000 + 200 - 1);
    assert.equal(t.watch.stats.checks, 1);
    t.at(1);
    assert.equal(t.watch.stats.checks, 2);
    t.at(12_000);
    assert.equal(t.watch.stats.checks, 12);
    assert.equal(t.fullReads(), 0);
    await t.stop();
  });

  it('checks asked for while the guard is busy wait with the one already waiting: one check when it is free', async () => {
    let busy = true;
    const t = setup({ learned: () => (busy ? 'busy' : []) });
    await t.start();
    await t.watch.check();
    await t.watch.check();
    t.at(10);
    busy = false;
    t.at(10);
    assert.equal(t.watch.stats.checks, 1);
    await t.stop();
  });

  it('a guard that keeps no record (null): elements are still read, static ones compared, DNS-filled ones carried through a restore', async () => {
    const t = setup({ learned: () => null });
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(IP1, 60_000)] }]);
    await t.start();
    const stat = t.ruleset.sets.find((s) => !s.dynamic && s.key === 'ipv4_addr') as SetDef;
    t.nf.addElements('sluice', [{ set: stat, elems: [addr(FOREIGN)] }]);
    t.lose();
    t.at(5);
    assert.equal(t.watch.stats.restored, 1, 'the static element is found');
    assert.match(t.alerts[0]?.message ?? '', /added: /);
    assert.deepEqual(t.dnsElements(), [BigInt(IP1)], 'the DNS-learned element is carried');
    await t.stop();
  });

  it('the guard\'s record is about the policy the daemon runs: another applied policy\'s DNS-filled sets are not judged by it', async () => {
    const t = setup({ learned: () => [] });
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(IP1, 60_000)] }]);
    // `sluice apply` of another policy, before the daemon reloaded: the record is not about it.
    const applied = t.state.applied();
    assert.ok(applied);
    t.state.setApplied({ ...applied, sha256: 'f'.repeat(64) });
    await t.start();
    assert.equal(t.fullReads(), 1);
    assert.equal(t.alerts.length, 0, 'an element the record does not name is not foreign to a policy the record is not about');
    assert.deepEqual(t.dnsElements(), [BigInt(IP1)]);
    await t.stop();
  });

  it("the guard's record is copied only for checks that compare elements (or restore): shape-only checks make no copy", async () => {
    let copies = 0;
    const t = setup({
      learned: () => () => {
        copies++;
        return [];
      },
    });
    await t.start();
    assert.equal(t.fullReads(), 1, 'the first check reads every element');
    assert.equal(copies, 1);
    const checks = t.watch.stats.checks;
    await t.watch.check();
    t.at(10);
    await t.watch.check();
    t.at(10);
    assert.ok(t.watch.stats.checks > checks, 'checks ran');
    assert.equal(t.fullReads(), 1);
    assert.equal(copies, 1, 'no copy for a check of the shape');
    t.lose();
    t.at(5);
    assert.equal(t.fullReads(), 2);
    assert.equal(copies, 2, 'a check of the elements takes it');
    await t.stop();
  });

  it('without a learned source at all the same holds', async () => {
    const t = setup({ learned: 'none' });
    t.nf.addElements('sluice', [{ set: t.set, elems: [addr(IP1, 60_000)] }]);
    await t.start();
    const chain = t.ruleset.chains.find((c) => c.rules.length > 0);
    assert.ok(chain);
    const broken = clone(t.nf.read('sluice', { elements: 'all' })?.ruleset as Ruleset);
    (broken.chains.find((c) => c.name === chain.name) as typeof chain).rules.splice(0, 1);
    t.nf.replace(broken);
    t.lose();
    t.at(5);
    assert.equal(t.watch.stats.restored, 1);
    assert.deepEqual(t.dnsElements(), [BigInt(IP1)]);
    await t.stop();
  });
});

describe('unit: what the tamper watchdog says (fake clock)', () => {
  it('tamper: alert: a change the poll finds is reported, with restored false; the same change again only with a new transaction', async () => {
    const t = setup({ tamper: 'alert', pollMs: 1_000 });
    await t.start();
    t.nf.remove('sluice');
    t.at(1_000);
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.message, 'Sluice\'s table was changed by a change the notifications did not show (found by the periodic check): the table was deleted; left as it is (tamper: alert)');
    assert.deepEqual(t.alerts[0]?.detail, { by: [], committed: [], changes: ['the table was deleted'], restored: false });
    assert.equal((t.watch.status() as { last: { restored: boolean } }).last.restored, false);
    // The poll ran at 1,000 ms (the first check at 5): the alert and status carry the clock's time of it.
    assert.equal(t.alerts[0]?.time, t.clock.now() - 5);
    assert.equal((t.watch.status() as { last: { at: string } }).last.at, new Date(t.clock.now() - 5).toISOString());
    t.at(5_000);
    assert.equal(t.alerts.length, 1, 'the polls find it again: not news');
    t.emit({ pid: 2, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    assert.equal(t.alerts.length, 2, 'a new transaction on it is');
    assert.match(t.alerts[1]?.message ?? '', /changed by nft \(pid 2\)/);
    await t.stop();
  });

  it('tamper: alert: a reload reports a change still there again', async () => {
    const t = setup({ tamper: 'alert' });
    await t.start();
    t.nf.remove('sluice');
    t.emit({ pid: 3, comm: 'nft', changes: ['deleted table'] });
    t.at(5);
    await t.watch.check();
    assert.equal(t.alerts.length, 1);
    await t.watch.reload(t.rt);
    t.at(5);
    assert.equal(t.alerts.length, 2);
    await t.stop();
  });

  it('exactly three findings are all told, with no "more"', async () => {
    const t = setup({ tamper: 'alert' });
    await t.start();
    const broken = clone(t.ruleset);
    let left = 3;
    for (const c of broken.chains) {
      while (left > 0 && c.rules.length > 0) {
        c.rules.pop();
        left--;
      }
    }
    t.nf.replace(broken);
    t.emit({ pid: 9, comm: 'nft', changes: ['deleted rule in chain output'] });
    t.at(5);
    const changes = t.alerts[0]?.detail?.changes as string[];
    assert.equal(changes.length, 3, changes.join('\n'));
    assert.equal(t.alerts[0]?.message, `Sluice's table was changed by nft (pid 9): ${changes.join('; ')}; left as it is (tamper: alert)`);
    await t.stop();
  });

  it('changed and changed back: only transactions that said what they did count, at most 8 changes named; never while Sluice is off', async () => {
    const t = setup();
    await t.start();
    t.emit({ pid: 5, comm: 'nft', changes: [] });
    t.at(5);
    assert.equal(t.alerts.length, 0, 'a transaction with no changes named is not a change made and undone');
    const ten = Array.from({ length: 10 }, (_, i) => `deleted rule in chain c${i}`);
    t.emit({ pid: 6, comm: 'nft', changes: ten });
    t.at(5);
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.message, `Sluice's table was changed by nft (pid 6): changed and changed back before the watchdog looked: ${ten.slice(0, 8).join('; ')}; nothing left to restore`);
    assert.deepEqual(t.alerts[0]?.detail?.committed, ten);

    t.state.setApplied(null);
    t.state.setOff({ at: 'now' });
    await t.watch.check();
    t.emit({ pid: 7, comm: 'nft', changes: ['deleted rule in chain output'] });
    t.at(5);
    assert.equal(t.alerts.length, 1, 'off: not Sluice\'s table');
    await t.stop();
  });

  it('Sluice off, or nothing ever applied: no check fails, nothing is reported or restored', async () => {
    for (const how of ['off', 'never applied']) {
      const t = setup();
      await t.start();
      t.state.setApplied(null);
      if (how === 'off') t.state.setOff({ at: 'now' });
      t.nf.remove('sluice');
      t.emit({ pid: 8, comm: 'nft', changes: ['deleted table'] });
      t.at(5_000);
      assert.equal(t.alerts.length, 0, how);
      assert.equal(t.nf.read('sluice'), null, how);
      assert.equal(t.watch.stats.checks, 2, `${how}: the start and the notification, no retries`);
      await t.stop();
    }
  });

  it('an owned table held by another socket is found by the shape check', async () => {
    const t = setup({ tamper: 'alert', owned: true });
    const nf = t.nf as FakeNetfilter & { holds(): boolean; portId(): number };
    nf.holds = () => true;
    nf.portId = () => 77;
    const read = nf.read.bind(nf);
    nf.read = (table: string, opts?: ReadOptions) => {
      const live = read(table, opts);
      return live ? { ...live, owner: 88 } : live;
    };
    await t.start();
    assert.equal(t.alerts.length, 1);
    assert.match(t.alerts[0]?.message ?? '', /the table is held by another process's netlink socket \(port 88\)/);
    await t.stop();
  });

  it('the four counters are described and typed in /metrics', async () => {
    const t = setup();
    await t.start();
    const text = t.rt.metrics.render();
    for (const [name, help] of [
      ['sluice_tamper_detected_total', "Changes to Sluice's table made by another process and found by the tamper watchdog"],
      ['sluice_tamper_restored_total', 'Times the tamper watchdog put the applied ruleset back'],
      ['sluice_tamper_restore_failures_total', 'Restores the kernel refused (retried every second)'],
      ['sluice_tamper_notifications_lost_total', 'Times nf_tables notifications were lost (the whole table is then checked)'],
    ]) {
      assert.ok(text.includes(`# HELP ${name} ${help}\n`), name);
      assert.ok(text.includes(`# TYPE ${name} counter\n`), name);
    }
    await t.stop();
  });
});

describe('unit: findTampering and restoreRuleset at their edges', () => {
  const { ruleset } = compileFrom(YAML('restore'), 'edges.yaml');
  const now = 1_000_000;
  const liveOf = (rs: Ruleset, anomalies: string[] = []) => ({ ruleset: rs, anomalies });
  const set = dnsSet(ruleset).name;
  const learned: LearnedEntry[] = [{ set, family: 4, addr: BigInt(IP1), expiresAt: now + 60_000 }];

  it('anomalies: twelve told at most', () => {
    const many = Array.from({ length: 13 }, (_, i) => `anomaly ${i}`);
    const f = findTampering(ruleset, liveOf(clone(ruleset), many), { elements: false, learned: null, now });
    assert.deepEqual(f, many.slice(0, 12).map((a) => `not written by Sluice: ${a}`));
  });

  it('a table that differs where its rendering does not show: said in general words', () => {
    const applied = { ...clone(ruleset), comment: undefined } as unknown as Ruleset;
    const live = { ...clone(ruleset), comment: '' };
    assert.deepEqual(findTampering(applied, liveOf(live), { elements: false, learned: null, now }), ['the table differs from the applied ruleset']);
  });

  it('exactly twelve changed lines: all told, with no "more"', () => {
    const live = clone(ruleset);
    let left = 12;
    for (const c of live.chains) {
      while (left > 0 && c.rules.length > 0) {
        c.rules.pop();
        left--;
      }
    }
    assert.equal(left, 0);
    const f = findTampering(ruleset, liveOf(live), { elements: false, learned: null, now });
    assert.equal(f.length, 12, f.join('\n'));
    assert.ok(f.every((l) => l.startsWith('removed: ')));
  });

  it('a static set with many elements added: eight of them shown, the rest counted in the rendering', () => {
    const live = clone(ruleset);
    const stat = live.sets.find((s) => !s.dynamic && s.key === 'ipv4_addr') as SetDef;
    for (let i = 0; i < 20; i++) stat.elements.push(addr(FOREIGN - 100 + i));
    const f = findTampering(ruleset, liveOf(live), { elements: true, learned: null, now });
    assert.ok(f.includes('added: # ... 12 more'), f.join('\n'));
    assert.ok(f.includes('added: 198.18.9.60,'), f.join('\n'));
    assert.ok(!f.some((l) => l.includes('198.18.9.61')), 'the ninth is not shown');
  });

  it('meters are never compared with the guard\'s record; static sets are not DNS-filled', () => {
    const withMeter = clone(ruleset);
    withMeter.sets.push({ name: 'm_rate_4', key: 'ipv4_addr', interval: false, timeout: true, dynamic: true, meter: true, elements: [] });
    const live = clone(withMeter);
    dnsSet(live).elements = [addr(IP1, 60_000)];
    (live.sets.at(-1) as SetDef).elements = [addr(FOREIGN, 60_000)];
    assert.deepEqual(findTampering(withMeter, liveOf(live), { elements: true, learned, now }), []);
  });

  it('a DNS-filled set that reads back without timeouts is reported; one that is gone is told once, by the shape', () => {
    const live = clone(ruleset);
    const s = dnsSet(live);
    s.dynamic = false;
    assert.deepEqual(findTampering(ruleset, liveOf(live), { elements: true, learned, now }), [
      `set ${set} reads back as a set without timeouts, not one the DNS guard fills: what it holds cannot be checked against what the guard opened`,
    ]);
    const gone = clone(ruleset);
    gone.sets = gone.sets.filter((x) => x.name !== set);
    const f = findTampering(ruleset, liveOf(gone), { elements: true, learned, now });
    assert.ok(f.length > 0 && f.every((l) => l.startsWith('removed: ')), f.join('\n'));
  });

  it('exactly eight lost addresses are all listed', () => {
    const live = clone(ruleset);
    dnsSet(live).elements = [];
    const eight: LearnedEntry[] = Array.from({ length: 8 }, (_, i) => ({ set, family: 4, addr: BigInt(IP1 + i), expiresAt: now + 60_000 }));
    const f = findTampering(ruleset, liveOf(live), { elements: true, learned: eight, now });
    assert.equal(f.length, 1);
    assert.ok(!(f[0] ?? '').endsWith('...'), f[0]);
    assert.match(f[0] ?? '', /lost 8 addresses the DNS guard opened: .*198\.18\.9\.8$/);
  });

  it('restoreRuleset keeps an element with exactly a second left', () => {
    const r = restoreRuleset(ruleset, [{ set, family: 4, addr: BigInt(IP1), expiresAt: now + 1_000 }], now);
    assert.deepEqual(dnsSet(r).elements, [addr(IP1, 1_000)]);
  });
});
