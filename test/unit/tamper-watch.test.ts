/**
 * The tamper watchdog: what counts as a change (the table's shape, its
 * static elements, and every element of a DNS-filled set against what the
 * guard opened), what is restored (the applied ruleset, the guard's
 * elements, nothing someone else added), and whose changes it ignores (its
 * own process's, and anything while Sluice is off).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../support/monitor-helpers.js';
import { after, describe, it } from 'node:test';
import type { Ruleset, SetDef, SetElem } from '../../src/compile/ruleset.js';
import { findTampering, restoreRuleset, TamperWatch, type MonitorFactory } from '../../src/daemon/tamper-watch.js';
import type { LearnedEntry } from '../../src/dns/learned-state.js';
import { channels, type AlertEvent } from '../../src/events/channels.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import type { NftTransaction } from '../../src/netfilter/nft-monitor.js';
import type { Runtime } from '../../src/runtime/component.js';
import { Registry } from '../../src/runtime/metrics.js';
import { StateStore } from '../../src/state/state-store.js';
import { compileFrom } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-tamper-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

const YAML = (tamper = 'restore') =>
  `mode: enforce\ntamper: ${tamper}\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: api\n    to: [api.example.com]\n    ports: [443/tcp]\n  - name: lan\n    to: [198.18.1.0/24, 198.18.2.7]\n`;

const clone = (rs: Ruleset): Ruleset => structuredClone(rs);
const addr = (a: number, timeoutMs?: number, expiresMs?: number): SetElem => ({ t: 'addr', family: 4, start: BigInt(a), end: BigInt(a), ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(expiresMs !== undefined ? { expiresMs } : {}) });
const IP1 = 0xc6120901; // 198.18.9.1
const IP2 = 0xc6120902;
const FOREIGN = 0xc6120999;

function dnsSet(rs: Ruleset): SetDef {
  const s = rs.sets.find((x) => x.dynamic && !x.meter && x.key === 'ipv4_addr');
  assert.ok(s, 'the policy has a DNS-filled IPv4 set');
  return s;
}

describe('unit: findTampering tells what changed', () => {
  const { ruleset } = compileFrom(YAML(), 'p.yaml');
  const now = 1_000_000;
  const learned = (set: string): LearnedEntry[] => [{ set, family: 4, addr: BigInt(IP1), expiresAt: now + 60_000 }];
  const liveOf = (rs: Ruleset) => ({ ruleset: rs, anomalies: [] });

  it('the table as applied, with exactly the guard elements, is intact', () => {
    const live = clone(ruleset);
    dnsSet(live).elements = [addr(IP1, 60_000, 59_000)];
    assert.deepEqual(findTampering(ruleset, liveOf(live), { elements: true, learned: learned(dnsSet(live).name), now }), []);
  });

  it('a deleted table, a deleted rule, a changed chain policy and a static element are each found', () => {
    assert.deepEqual(findTampering(ruleset, null, { elements: true, learned: null, now }), ['the table was deleted']);
    const noRule = clone(ruleset);
    const chain = noRule.chains.find((c) => c.rules.length > 1);
    assert.ok(chain);
    chain.rules.splice(0, 1);
    // As a shape-only read gives it: no elements in any set.
    const shapeOnly = { ...noRule, sets: noRule.sets.map((s) => ({ ...s, elements: [] })) };
    const f1 = findTampering(ruleset, liveOf(shapeOnly), { elements: false, learned: null, now });
    assert.equal(f1.length, 1, `only the rule, not the elements a shape-only read leaves out: ${f1.join('\n')}`);
    assert.match(f1[0] ?? '', /^removed: /);

    const policy = clone(ruleset);
    const baseChain = policy.chains.find((c) => c.base);
    assert.ok(baseChain?.base);
    baseChain.base = { ...baseChain.base, policy: baseChain.base.policy === 'accept' ? 'drop' : 'accept' };
    assert.ok(findTampering(ruleset, liveOf(policy), { elements: false, learned: null, now }).length > 0, 'a base chain policy changed');

    const extra = clone(ruleset);
    const stat = extra.sets.find((s) => !s.dynamic && s.key === 'ipv4_addr');
    assert.ok(stat);
    stat.elements.push({ t: 'addr', family: 4, start: BigInt(FOREIGN), end: BigInt(FOREIGN) });
    assert.ok(findTampering(ruleset, liveOf(extra), { elements: true, learned: null, now }).length > 0, 'a static element added');
    assert.deepEqual(findTampering(ruleset, liveOf(extra), { elements: false, learned: null, now }), [], 'a shape-only check does not read elements');
  });

  it('in a DNS-filled set: an element the guard never opened, or one held longer than it opened it, or one the guard opened that is gone', () => {
    const set = dnsSet(ruleset).name;
    const foreign = clone(ruleset);
    dnsSet(foreign).elements = [addr(IP1, 60_000, 59_000), addr(FOREIGN, 60_000, 59_000)];
    const f1 = findTampering(ruleset, liveOf(foreign), { elements: true, learned: learned(set), now });
    assert.equal(f1.length, 1);
    assert.match(f1[0] ?? '', /holds 1 element the DNS guard did not open.*198\.18\.9\.153/);

    const extended = clone(ruleset);
    dnsSet(extended).elements = [addr(IP1, 86_400_000, 86_000_000)];
    assert.match(findTampering(ruleset, liveOf(extended), { elements: true, learned: learned(set), now }).join('\n'), /did not open \(or not for that long\): 198\.18\.9\.1/);

    const forever = clone(ruleset);
    dnsSet(forever).elements = [addr(IP1)];
    assert.equal(findTampering(ruleset, liveOf(forever), { elements: true, learned: learned(set), now }).length, 1, 'an element without a timeout never expires: not the guard');

    const lost = clone(ruleset);
    dnsSet(lost).elements = [];
    assert.match(findTampering(ruleset, liveOf(lost), { elements: true, learned: learned(set), now }).join('\n'), /lost 1 address the DNS guard opened: 198\.18\.9\.1/);
    // About to expire: the kernel may have collected it already.
    const expiring: LearnedEntry[] = [{ set, family: 4, addr: BigInt(IP1), expiresAt: now + 1_000 }];
    assert.deepEqual(findTampering(ruleset, liveOf(lost), { elements: true, learned: expiring, now }), []);
    // The kernel commits a moment after the guard computes the expiry: a little later is the guard's.
    const late = clone(ruleset);
    dnsSet(late).elements = [addr(IP1, 60_000, 62_000)];
    assert.deepEqual(findTampering(ruleset, liveOf(late), { elements: true, learned: learned(set), now }), []);
    // Without the guard's record nothing is said about DNS-filled sets.
    assert.deepEqual(findTampering(ruleset, liveOf(foreign), { elements: true, learned: null, now }), []);
  });

  it('the words: counts in the singular and plural, lists cut at 8, ranges, non-address elements, expiry at the slack\'s edge', () => {
    const set = dnsSet(ruleset).name;
    const many = (k: number, from: number) => Array.from({ length: k }, (_, i) => addr(from + i, 60_000, 59_000));
    const ip = (a: number) => `198.18.${(a >> 8) & 255}.${a & 255}`;
    const two = clone(ruleset);
    dnsSet(two).elements = many(2, FOREIGN);
    assert.deepEqual(findTampering(ruleset, liveOf(two), { elements: true, learned: [], now }), [`set ${set} holds 2 elements the DNS guard did not open (or not for that long): ${ip(FOREIGN)}, ${ip(FOREIGN + 1)}`]);
    const nine = clone(ruleset);
    dnsSet(nine).elements = many(9, FOREIGN);
    assert.deepEqual(findTampering(ruleset, liveOf(nine), { elements: true, learned: [], now }), [
      `set ${set} holds 9 elements the DNS guard did not open (or not for that long): ${Array.from({ length: 8 }, (_, i) => ip(FOREIGN + i)).join(', ')}, ...`,
    ]);
    const eight = clone(ruleset);
    dnsSet(eight).elements = many(8, FOREIGN);
    assert.ok(!(findTampering(ruleset, liveOf(eight), { elements: true, learned: [], now })[0] ?? '').endsWith('...'), 'eight listed in full');
    const ranged = clone(ruleset);
    dnsSet(ranged).elements = [{ t: 'addr', family: 4, start: BigInt(IP1), end: BigInt(IP2), timeoutMs: 60_000, expiresMs: 59_000 }];
    assert.deepEqual(findTampering(ruleset, liveOf(ranged), { elements: true, learned: learned(set), now }), [
      `set ${set} holds 1 element the DNS guard did not open (or not for that long): ${ip(IP1)}-${ip(IP2)}`,
    ], 'a range is never the guard\'s, even one starting at an address it opened (which then also counts as present)');
    const odd = clone(ruleset);
    dnsSet(odd).elements = [{ t: 'range', from: 1, to: 2 } as unknown as SetElem];
    assert.deepEqual(findTampering(ruleset, liveOf(odd), { elements: true, learned: [], now }), [`set ${set} holds 1 element the DNS guard did not open (or not for that long): a non-address element`]);
    // Expiry: up to 5 s past what the guard opened is the kernel's commit delay; beyond is someone's extension.
    const at = (expiresMs: number) => {
      const live = clone(ruleset);
      dnsSet(live).elements = [addr(IP1, 60_000, expiresMs)];
      return findTampering(ruleset, liveOf(live), { elements: true, learned: learned(set), now }).length;
    };
    assert.equal(at(65_000), 0);
    assert.equal(at(65_001), 1);
    const noExpiry = clone(ruleset);
    dnsSet(noExpiry).elements = [addr(IP1, 64_000)];
    assert.equal(findTampering(ruleset, liveOf(noExpiry), { elements: true, learned: learned(set), now }).length, 0, 'without the time left, its timeout counts');
    // Lost: singular and plural, cut at 8, and the margin (expiring within 2 s is not missed).
    const empty = clone(ruleset);
    dnsSet(empty).elements = [];
    const opened = (k: number, expiresIn = 60_000): LearnedEntry[] => Array.from({ length: k }, (_, i) => ({ set, family: 4, addr: BigInt(IP1 + i), expiresAt: now + expiresIn }));
    assert.deepEqual(findTampering(ruleset, liveOf(empty), { elements: true, learned: opened(2), now }), [`set ${set} lost 2 addresses the DNS guard opened: ${ip(IP1)}, ${ip(IP1 + 1)}`]);
    assert.deepEqual(findTampering(ruleset, liveOf(empty), { elements: true, learned: opened(9), now }), [
      `set ${set} lost 9 addresses the DNS guard opened: ${Array.from({ length: 8 }, (_, i) => ip(IP1 + i)).join(', ')}, ...`,
    ]);
    assert.equal(findTampering(ruleset, liveOf(empty), { elements: true, learned: opened(1, 2_001), now }).length, 1);
    assert.equal(findTampering(ruleset, liveOf(empty), { elements: true, learned: opened(1, 2_000), now }).length, 0);
    // Entries of other sets are not this set's.
    assert.deepEqual(findTampering(ruleset, liveOf(empty), { elements: true, learned: [{ set: 'r_other_d4', family: 4, addr: BigInt(IP1), expiresAt: now + 60_000 }], now }), []);
  });

  it('the words for the table\'s shape: what was added and removed, the rest counted, anomalies first', () => {
    const noRules = clone(ruleset);
    let removed = 0;
    for (const c of noRules.chains) {
      removed += c.rules.length;
      c.rules = [];
    }
    assert.ok(removed > 12, `enough rules to pass the cut (${removed})`);
    const f = findTampering(ruleset, liveOf(noRules), { elements: false, learned: null, now });
    assert.equal(f.length, 13);
    assert.ok(f.slice(0, 12).every((l) => l.startsWith('removed: ') && !l.startsWith('removed: -')), f.join('\n'));
    assert.match(f[12] ?? '', /^and \d+ more changed lines$/);
    assert.equal(Number(/and (\d+)/.exec(f[12] ?? '')?.[1]) + 12, removed);
    const added = clone(ruleset);
    const chain = added.chains.find((c) => c.rules.length > 0);
    assert.ok(chain);
    chain.rules.push(structuredClone(chain.rules[0] as (typeof chain.rules)[number]));
    const fa = findTampering(ruleset, liveOf(added), { elements: false, learned: null, now });
    assert.equal(fa.length, 1, fa.join('\n'));
    assert.match(fa[0] ?? '', /^added: \S/);
    const anomalous = { ruleset: clone(ruleset), anomalies: ['a rule with an expression Sluice does not write'] };
    assert.deepEqual(findTampering(ruleset, anomalous, { elements: false, learned: null, now }), ['not written by Sluice: a rule with an expression Sluice does not write']);
  });

  it('restoreRuleset: the applied ruleset, DNS-filled sets holding what the guard opened for what is left of it', () => {
    const set = dnsSet(ruleset).name;
    const entries: LearnedEntry[] = [
      { set, family: 4, addr: BigInt(IP1), expiresAt: now + 30_000 },
      { set, family: 4, addr: BigInt(IP2), expiresAt: now + 500 },
    ];
    const r = restoreRuleset(ruleset, entries, now);
    assert.deepEqual(dnsSet(r).elements, [addr(IP1, 30_000)], 'an element in its last second is left out');
    const { sets: _a, ...restR } = r;
    const { sets: _b, ...restA } = ruleset;
    assert.deepEqual(restR, restA);
    for (const s of r.sets.filter((x) => !x.dynamic)) assert.deepEqual(s, ruleset.sets.find((x) => x.name === s.name));
  });
});

describe('unit: the tamper watchdog component', () => {
  function setup(tamper: 'restore' | 'alert', learned: () => LearnedEntry[] | null | 'busy' = () => []) {
    const compiled = compileFrom(YAML(tamper), `p${++n}.yaml`);
    const { policy } = compiled;
    const state = new StateStore(join(base, `s${n}`));
    const nf = new FakeNetfilter();
    nf.replace(compiled.ruleset);
    state.setApplied({ appliedAt: 'then', policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, ruleset: compiled.ruleset, warnings: [] });
    let emit: ((t: NftTransaction) => void) | undefined;
    let lose: ((why: string) => void) | undefined;
    /** Notifications the kernel queued that the event loop has not delivered yet (drain reads them). */
    const queued: NftTransaction[] = [];
    const monitor: MonitorFactory = (onTx, onLost) => {
      emit = onTx;
      lose = onLost;
      return { close: () => undefined, drain: () => queued.splice(0).forEach(onTx) };
    };
    const alerts: AlertEvent[] = [];
    const onAlert = (m: unknown) => alerts.push(m as AlertEvent);
    channels.alert.subscribe(onAlert);
    const watch = new TamperWatch({ monitor, learned, pollMs: 3_600_000, isOwn: (pid) => pid === 1 });
    const rt = { policy, compiled, netfilter: nf, state, metrics: new Registry(), log: () => undefined } as unknown as Runtime;
    return {
      nf,
      state,
      watch,
      rt,
      alerts,
      ruleset: compiled.ruleset,
      start: () => watch.start(rt),
      emit: (t: NftTransaction) => emit?.(t),
      queue: (t: NftTransaction) => queued.push(t),
      lose: () => lose?.('lost'),
      settle: async () => {
        await sleep(30);
        await watch.check();
      },
      stop: async () => {
        channels.alert.unsubscribe(onAlert);
        await watch.stop();
      },
    };
  }

  it('a table another process deleted is put back, and the alert names that process and the change', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    assert.equal(t.alerts.length, 0, 'nothing to report at start');
    t.nf.remove('sluice');
    t.emit({ pid: 4242, comm: 'nft', changes: ['deleted table'] });
    await t.settle();
    const live = t.nf.read('sluice');
    assert.ok(live, 'restored');
    assert.deepEqual(findTampering(t.ruleset, live, { elements: true, learned: [] }), []);
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.kind, 'tamper');
    assert.match(t.alerts[0]?.message ?? '', /changed by nft \(pid 4242\): the table was deleted; restored in \d+ ms/);
    assert.equal(t.state.lastJournal()?.event, 'tamper-restore');
    assert.deepEqual(t.state.lastJournal()?.changes, ['the table was deleted']);
    assert.equal(t.watch.stats.restored, 1);
    await t.stop();
  });

  it('what it says: the alert\'s message, severity and detail, the journal, status and the four counters in /metrics', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(t.rt.metrics.render())?.[1]);
    assert.deepEqual(['detected', 'restored', 'restore_failures', 'notifications_lost'].map((k) => metric(`sluice_tamper_${k}_total`)), [0, 0, 0, 0]);
    assert.match(t.rt.metrics.render(), /# HELP sluice_tamper_detected_total Changes to Sluice's table made by another process and found by the tamper watchdog/);
    assert.deepEqual(t.watch.status(), { ...t.watch.stats, watching: true, last: null });
    t.nf.remove('sluice');
    t.emit({ pid: 4242, comm: 'nft', changes: ['deleted table'] });
    t.emit({ pid: 4242, comm: 'nft', changes: ['deleted table'] });
    t.emit({ pid: 77, changes: ['deleted rule in chain output'] });
    await t.settle();
    assert.equal(t.alerts.length, 1);
    const a = t.alerts[0] as AlertEvent;
    assert.equal(a.severity, 'critical');
    assert.match(a.message, /^Sluice's table was changed by nft \(pid 4242\), \? \(pid 77\): the table was deleted; restored in \d+ ms$/);
    assert.deepEqual(a.detail?.by, ['nft (pid 4242)', '? (pid 77)'], 'each process once');
    assert.deepEqual(a.detail?.committed, ['deleted table', 'deleted rule in chain output']);
    assert.deepEqual(a.detail?.changes, ['the table was deleted']);
    assert.equal(a.detail?.restored, true);
    assert.deepEqual(['detected', 'restored', 'restore_failures', 'notifications_lost'].map((k) => metric(`sluice_tamper_${k}_total`)), [1, 1, 0, 0]);
    const st = t.watch.status() as { watching: boolean; last: { by: string[]; changes: string[]; restored: boolean; at: string }; detected: number; foreignTransactions: number };
    assert.equal(st.watching, true);
    assert.deepEqual({ by: st.last.by, changes: st.last.changes, restored: st.last.restored }, { by: ['nft (pid 4242)', '? (pid 77)'], changes: ['the table was deleted'], restored: true });
    assert.ok(Date.parse(st.last.at) > 0);
    assert.equal(st.detected, 1);
    assert.equal(st.foreignTransactions, 3);
    t.lose();
    await t.settle();
    assert.equal(metric('sluice_tamper_notifications_lost_total'), 1);
    assert.equal(t.alerts.length, 1, 'intact after the restore: a loss alone is not news');
    await t.stop();
  });

  it('more than three findings: the first three, and how many more', async () => {
    const t = setup('alert');
    await t.start();
    await t.settle();
    const live = t.nf.read('sluice');
    assert.ok(live);
    const broken = clone(live.ruleset);
    for (const c of broken.chains) c.rules = [];
    t.nf.replace(broken);
    t.emit({ pid: 9, comm: 'nft', changes: ['deleted rule in chain output'] });
    await t.settle();
    const m = /: (removed: [^;]+); (removed: [^;]+); (removed: [^;]+); and (\d+) more; left as it is \(tamper: alert\)$/.exec(t.alerts[0]?.message ?? '');
    assert.ok(m, t.alerts[0]?.message);
    assert.equal(Number(m[4]), (t.state.lastJournal()?.changes as string[]).length - 3);
    assert.equal(t.state.lastJournal()?.event, 'tamper');
    assert.equal(t.state.lastJournal()?.restored, false);
    await t.stop();
  });

  it('a change the poll finds before its notification was delivered is still told with the process that committed it', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    t.nf.remove('sluice');
    t.queue({ pid: 4243, comm: 'nft', changes: ['deleted table'] });
    await t.watch.check();
    assert.equal(t.alerts.length, 1);
    assert.match(t.alerts[0]?.message ?? '', /changed by nft \(pid 4243\): the table was deleted/);
    await t.stop();
  });

  it('its own process\'s transactions are not looked at; lost notifications make it look', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    const replaces = t.nf.calls.replace;
    t.nf.remove('sluice');
    t.emit({ pid: 1, comm: 'node', changes: ['deleted table'] });
    await sleep(30);
    assert.equal(t.nf.read('sluice'), null, 'an own transaction starts no check');
    assert.equal(t.watch.stats.ownTransactions, 1);
    t.lose();
    await t.settle();
    assert.ok(t.nf.read('sluice'), 'restored after notifications were lost');
    assert.equal(t.nf.calls.replace, replaces + 1);
    assert.match(t.alerts[0]?.message ?? '', /a change the notifications did not show/);
    await t.stop();
  });

  it('a foreign element in a DNS-filled set is removed; what the guard opened stays, with its time left', async () => {
    let set = '';
    const now = Date.now();
    const t = setup('restore', () => [{ set, family: 4, addr: BigInt(IP1), expiresAt: now + 120_000 }]);
    set = dnsSet(t.ruleset).name;
    t.nf.addElements('sluice', [{ set: dnsSet(t.ruleset), elems: [addr(IP1, 120_000)] }]);
    await t.start();
    await t.settle();
    assert.equal(t.alerts.length, 0);
    t.nf.addElements('sluice', [{ set: dnsSet(t.ruleset), elems: [addr(FOREIGN, 3_600_000)] }]);
    t.emit({ pid: 777, comm: 'nft', changes: [`added element to set ${set}`] });
    await t.settle();
    const live = dnsSet(t.nf.read('sluice', { elements: 'all' })?.ruleset as Ruleset).elements;
    assert.deepEqual(live.map((e) => (e as { start: bigint }).start), [BigInt(IP1)]);
    const left = (live[0] as { timeoutMs: number }).timeoutMs;
    assert.ok(left > 100_000 && left <= 120_000, `time left ${left}`);
    assert.match(t.alerts[0]?.message ?? '', /did not open/);
    await t.stop();
  });

  it('tamper: alert reports once and leaves the table as it is', async () => {
    const t = setup('alert');
    await t.start();
    await t.settle();
    t.nf.remove('sluice');
    t.emit({ pid: 99, comm: 'iptables-nft', changes: ['deleted table'] });
    await t.settle();
    assert.equal(t.nf.read('sluice'), null);
    assert.equal(t.alerts.length, 1);
    assert.match(t.alerts[0]?.message ?? '', /left as it is \(tamper: alert\)/);
    await t.watch.check();
    assert.equal(t.alerts.length, 1, 'the same change is not reported again by the next check');
    assert.equal(t.state.lastJournal()?.event, 'tamper');
    await t.stop();
  });

  it('nothing is restored while Sluice is off', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    t.state.setApplied(null);
    t.state.setOff({ at: 'now' });
    t.nf.remove('sluice');
    t.emit({ pid: 5, comm: 'sluice', changes: ['deleted table'] });
    await t.settle();
    assert.equal(t.nf.read('sluice'), null);
    assert.equal(t.alerts.length, 0);
    await t.stop();
  });

  it('a change made and undone before the check is still reported; an apply (Sluice\'s state moving) is not', async () => {
    const t = setup('restore');
    await t.start();
    await t.settle();
    t.emit({ pid: 4243, comm: 'nft', changes: ['added or replaced rule in chain output', 'deleted rule in chain output'] });
    await t.settle();
    assert.equal(t.alerts.length, 1);
    assert.equal(t.alerts[0]?.severity, 'warning');
    assert.match(t.alerts[0]?.message ?? '', /changed and changed back before the watchdog looked: added or replaced rule in chain output; deleted rule in chain output; nothing left to restore/);
    // An apply by the CLI: a foreign transaction, and applied.json changes with it.
    const applied = t.state.applied();
    assert.ok(applied);
    t.state.setApplied({ ...applied, appliedAt: 'later' });
    t.emit({ pid: 4244, comm: 'sluice', changes: ['added or changed table'] });
    await t.settle();
    assert.equal(t.alerts.length, 1, 'not tampering');
    await t.stop();
  });

  // The timings (50 ms retries, the alert at 3 s, the guard's 200 ms) are pinned on a fake clock in
  // tamper-watch-schedule.test.ts; this one is about the real lock, held by another process.
  it('a state lock another process really holds keeps the check off (nothing restored under an apply); freed, the change is restored', async () => {
    const { spawn } = await import('node:child_process');
    const t = setup('restore');
    await t.start();
    await t.settle();
    const store = new URL('../../src/state/state-store.js', import.meta.url).href;
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(store)}).then((m) => new m.StateStore(${JSON.stringify(t.state.dir)}).withLock(() => { console.log('held'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000); }))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      const busyBefore = t.watch.stats.lockBusy;
      t.nf.remove('sluice');
      t.emit({ pid: 4245, comm: 'nft', changes: ['deleted table'] });
      await waitFor('the check to find the lock held twice', async () => (t.watch.stats.lockBusy >= busyBefore + 2 ? true : undefined));
      assert.equal(t.nf.read('sluice'), null, 'not restored without the lock');
      assert.equal(t.watch.stats.restoreFailures, 0, 'a held lock is not a failed restore');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    await waitFor('the restore once the lock is free', async () => (t.nf.read('sluice') ? true : undefined));
    assert.match(t.alerts.at(-1)?.message ?? '', /changed by nft \(pid 4245\): the table was deleted; restored/);
    await t.stop();
  });
});
