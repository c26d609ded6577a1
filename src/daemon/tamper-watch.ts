import { existsSync } from 'node:fs';
import { TABLE_NAME, type Ruleset, type SetElem } from '../compile/ruleset.js';
import type { LearnedEntry } from '../dns/learned-state.js';
import { publishAlert } from '../events/channels.js';
import { formatAddr } from '../net/ip.js';
import { diffRulesets, sameRuleset, sameStructure, withoutElements } from '../netfilter/compare-ruleset.js';
import type { LiveTable } from '../netfilter/netfilter.js';
import { NftMonitor, type NftTransaction } from '../netfilter/nft-monitor.js';
import { openNftNotifications } from '../netfilter/nft-notify-socket.js';
import { NFPROTO_INET } from '../netfilter/nl-constants.js';
import { realClock, type Clock } from '../runtime/clock.js';
import type { Component, Runtime } from '../runtime/component.js';
import { appliedPolicy, commitTable, type CommitResult } from '../state/commit-table.js';

/** A burst of notifications (one `nft -f` file, a flush) is looked at once. */
const DEBOUNCE_MS = 5;
/** The backstop when notifications say nothing: the table's shape, every few seconds (no elements: cheap at any size). */
const POLL_MS = 5_000;
/** An apply or the service watch holds the state lock: look again shortly. */
const LOCK_RETRY_MS = 50;
/** After a restore the kernel refused, before the next try. */
const FAIL_RETRY_MS = 1_000;
/**
 * An element's kernel expiry may run this far past the guard's record of
 * it (the guard computes the expiry just before the kernel commits); beyond
 * it someone extended the element.
 */
const EXPIRY_SLACK_MS = 5_000;
/** Learned elements this close to their expiry may be gone from the kernel already: their absence is not a removal. */
const MISSING_MARGIN_MS = 2_000;
/** The guard's writes may hold a check off this long at most. */
const BUSY_MAX_MS = 200;
/** After a check the busy guard cut short, the elements' check waits this long. */
const BUSY_RETRY_MS = 1_000;
/** A change that waits this long for a check that cannot run is reported as such. */
const STALL_MS = 3_000;
/** Lines of a finding's detail kept (the diff of a flushed chain can be long). */
const MAX_LINES = 12;

/**
 * What the daemon opened through DNS: the guard's own record (or what makes
 * it, called only when a check needs the entries), null when it keeps none,
 * `busy` while its writes are queued.
 */
export type LearnedSource = () => readonly LearnedEntry[] | (() => readonly LearnedEntry[]) | null | 'busy';

/** Opens the change notifications; replaceable in tests (the kernel's need CAP_NET_ADMIN). */
/** `drain`: read what the kernel has queued now (so a check knows who committed what it finds). */
export type MonitorFactory = (onTransaction: (t: NftTransaction) => void, onLost: (why: string) => void) => { close(): void; drain?(): void };

export interface TamperWatchOptions {
  learned?: LearnedSource;
  monitor?: MonitorFactory;
  pollMs?: number;
  /** Whether a committing task (a thread id) is this process. */
  isOwn?: (pid: number) => boolean;
  /** Time and timers (the real ones by default; a fake in tests). */
  clock?: Clock;
}

const addrKey = (set: string, family: number, addr: bigint) => `${set}|${family}|${addr}`;

/**
 * How the live table differs from the applied ruleset, in words (empty when
 * it does not). `elements`: the live table was read with its elements (a
 * read without them checks the shape only). `learned`: the guard's record
 * of what it opened; every element of a DNS-filled set must be one it
 * opened, for no longer than it opened it, and everything it opened that is
 * not about to expire must be there (a deny rule's learned addresses are
 * what keeps that name blocked).
 */
export function findTampering(applied: Ruleset, live: LiveTable | null, opts: { elements: boolean; learned: readonly LearnedEntry[] | null; now?: number }): string[] {
  if (live === null) return ['the table was deleted'];
  const now = opts.now ?? Date.now();
  const out: string[] = [];
  for (const a of live.anomalies.slice(0, MAX_LINES)) out.push(`not written by Sluice: ${a}`);
  const same = opts.elements ? sameRuleset(applied, live) : sameStructure(applied, live);
  if (!same) {
    // A shape-only read has no elements: compare shapes, or every element would read as removed.
    const shapeOf = (rs: Ruleset): Ruleset => (opts.elements ? rs : withoutElements(rs));
    const diff = diffRulesets(shapeOf(applied), shapeOf(live.ruleset), { maxElements: 8 }).filter((l) => l.startsWith('+') || l.startsWith('-'));
    if (diff.length === 0 && live.anomalies.length === 0) out.push('the table differs from the applied ruleset');
    for (const l of diff.slice(0, MAX_LINES)) out.push(`${l.startsWith('+') ? 'added' : 'removed'}: ${l.slice(1).trim()}`);
    if (diff.length > MAX_LINES) out.push(`and ${diff.length - MAX_LINES} more changed lines`);
  }
  if (!opts.elements || opts.learned === null) return out;
  const learned = new Map<string, LearnedEntry>();
  for (const e of opts.learned) learned.set(addrKey(e.set, e.family, e.addr), e);
  const liveSets = new Map(live.ruleset.sets.map((s) => [s.name, s]));
  for (const want of applied.sets) {
    if (!want.dynamic || want.meter) continue;
    const got = liveSets.get(want.name);
    // Missing: the shape's difference says so.
    if (!got) continue;
    if (!got.dynamic) {
      out.push(`set ${want.name} reads back as a set without timeouts, not one the DNS guard fills: what it holds cannot be checked against what the guard opened`);
      continue;
    }
    const foreign: string[] = [];
    const present = new Set<string>();
    for (const e of got.elements) {
      if (e.t !== 'addr') {
        foreign.push('a non-address element');
        continue;
      }
      const key = addrKey(want.name, e.family, e.start);
      present.add(key);
      const mine = learned.get(key);
      const remaining = e.expiresMs ?? e.timeoutMs;
      const ok = mine !== undefined && e.start === e.end && remaining !== undefined && now + remaining <= mine.expiresAt + EXPIRY_SLACK_MS;
      if (!ok) foreign.push(e.start === e.end ? formatAddr(e.family, e.start) : `${formatAddr(e.family, e.start)}-${formatAddr(e.family, e.end)}`);
    }
    if (foreign.length > 0) out.push(`set ${want.name} holds ${foreign.length} element${foreign.length === 1 ? '' : 's'} the DNS guard did not open (or not for that long): ${foreign.slice(0, 8).join(', ')}${foreign.length > 8 ? ', ...' : ''}`);
    const missing = opts.learned.filter((e) => e.set === want.name && e.expiresAt > now + MISSING_MARGIN_MS && !present.has(addrKey(e.set, e.family, e.addr)));
    if (missing.length > 0) out.push(`set ${want.name} lost ${missing.length} address${missing.length === 1 ? '' : 'es'} the DNS guard opened: ${missing.slice(0, 8).map((e) => formatAddr(e.family, e.addr)).join(', ')}${missing.length > 8 ? ', ...' : ''}`);
  }
  return out;
}

/**
 * An owned table (policy `owned_table`) must be held by the daemon's socket
 * while it holds owned tables (not while it let go of them for a write by
 * the command line): null when it is, else what is wrong.
 */
export function ownership(applied: Ruleset, live: LiveTable | null, nf: { holds?(): boolean; portId?(): number }): string | null {
  if (!applied.owned || !live || !live.ruleset.owned || !nf.holds?.() || !nf.portId) return null;
  if (live.owner === undefined) return 'the table is no longer held by the daemon (its owner flag is gone)';
  if (live.owner !== nf.portId()) return `the table is held by another process's netlink socket (port ${live.owner}), so only that process can change it`;
  return null;
}

/**
 * The applied ruleset with its DNS-filled sets holding exactly what the
 * guard opened, each element for what is left of its life (meters start
 * empty, as on every replacement).
 */
export function restoreRuleset(applied: Ruleset, learned: readonly LearnedEntry[], now = Date.now()): Ruleset {
  const bySet = new Map<string, SetElem[]>();
  for (const e of learned) {
    const left = e.expiresAt - now;
    if (left < 1_000) continue;
    const list = bySet.get(e.set) ?? [];
    list.push({ t: 'addr', family: e.family, start: e.addr, end: e.addr, timeoutMs: Math.round(left) });
    bySet.set(e.set, list);
  }
  return { ...applied, sets: applied.sets.map((s) => (s.dynamic ? { ...s, elements: s.meter ? [] : (bySet.get(s.name) ?? []) } : s)) };
}

/**
 * Whether a committing task (the kernel names a thread) is a thread of this
 * process: the main thread's id is the pid (the guard writes from it); any
 * other is looked up each time, never cached (a thread that ended frees its
 * id for any process to get).
 */
function ownTask(pid: number): boolean {
  return pid === process.pid || existsSync(`/proc/self/task/${pid}`);
}

const who = (t: NftTransaction) => (t.pid !== undefined ? `${t.comm ?? '?'} (pid ${t.pid})` : 'a process the kernel did not name');

/**
 * The tamper watchdog. The kernel tells it of every committed change to
 * Sluice's table (nf_tables notifications, with the committing process);
 * changes this process made (the DNS guard's elements, its own commits) are
 * its own. Anything else, and every few seconds the table's shape as a
 * backstop, is checked against what the state directory says is applied
 * (under the state lock, so an apply or `sluice off` in progress is never
 * taken for tampering) and against what the DNS guard opened. A difference
 * is put back in one transaction through the one table writer (`tamper:
 * restore`, the default) or only reported (`tamper: alert`), with a
 * `tamper` alert naming what changed and who committed it.
 */
export class TamperWatch implements Component {
  readonly name = 'tamper-watch';
  private rt: Runtime | undefined;
  private monitor: ReturnType<MonitorFactory> | undefined;
  private timer: unknown;
  private poll: unknown;
  private checking = false;
  private again = false;
  /** Foreign transactions not yet looked at, and whether notifications were lost (then elements are read too). */
  private foreign: NftTransaction[] = [];
  private full = false;
  /** `tamper: alert`: what was last reported, so an unrepaired table is not reported again on every poll. */
  private reported = '';
  /** `elementReads`: checks that read every element of the table (a set was touched, notifications were lost, a start or reload), the costly kind. */
  readonly stats = { checks: 0, elementReads: 0, ownTransactions: 0, foreignTransactions: 0, detected: 0, restored: 0, restoreFailures: 0, lockBusy: 0, lastRestoreMs: 0, lost: 0 };
  private lastFinding: { at: string; by: string[]; changes: string[]; restored: boolean } | null = null;
  /** Since when the guard has been busy (its writes queued) at each try, and since when a change waits for a check. */
  private busySince: number | undefined;
  private pendingSince: number | undefined;
  private stallReported = false;
  /** Notifications were lost and no check has completed since. */
  private lostPending = false;
  /** What Sluice's state said at the last completed check (applied, off, pending). */
  private stateKey: string | undefined;

  private readonly learned: LearnedSource;
  private readonly openMonitor: MonitorFactory;
  private readonly pollMs: number;
  private readonly isOwn: (pid: number) => boolean;
  private readonly clock: Clock;

  constructor(opts: TamperWatchOptions = {}) {
    this.learned = opts.learned ?? (() => null);
    this.isOwn = opts.isOwn ?? ownTask;
    this.openMonitor = opts.monitor ?? ((onTx, onLost) => new NftMonitor(TABLE_NAME, NFPROTO_INET, onTx, onLost, { isOwn: this.isOwn, source: openNftNotifications() }));
    this.pollMs = opts.pollMs ?? POLL_MS;
    this.clock = opts.clock ?? realClock;
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.registerMetrics(rt);
    try {
      this.monitor = this.openMonitor(
        (t) => this.onTransaction(t),
        () => {
          this.stats.lost++;
          this.full = true;
          this.lostPending = true;
          this.schedule();
        },
      );
    } catch (err) {
      rt.log('warn', `tamper watchdog: cannot subscribe to nf_tables notifications (${(err as Error).message}); checking every ${this.pollMs / 1000} s only`);
    }
    this.poll = this.clock.setInterval(() => void this.check(), this.pollMs);
    this.full = true;
    this.schedule();
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.reported = '';
    this.full = true;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.rt = undefined;
    this.monitor?.close();
    this.monitor = undefined;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.poll) this.clock.clearInterval(this.poll);
  }

  status(): Record<string, unknown> {
    return { ...this.stats, watching: this.monitor !== undefined, last: this.lastFinding };
  }

  private onTransaction(t: NftTransaction): void {
    if (t.own === true || (t.pid !== undefined && this.isOwn(t.pid))) {
      this.stats.ownTransactions++;
      return;
    }
    this.stats.foreignTransactions++;
    if (this.foreign.length < 100) this.foreign.push(t);
    // Elements are read only when the transaction touched sets (or what it did is not known).
    if (t.changes.length === 0 || t.changes.some((c) => / set |not read|other changes/.test(c))) this.full = true;
    this.schedule();
  }

  private schedule(delayMs = DEBOUNCE_MS): void {
    if (this.timer) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, delayMs);
  }

  /** Checks now (synchronously: the kernel and the state directory are read and written in one go); the promise is for callers that await. */
  check(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return Promise.resolve();
    }
    this.checking = true;
    try {
      do {
        this.again = false;
        this.checkOnce();
      } while (this.again);
    } finally {
      this.checking = false;
    }
    return Promise.resolve();
  }

  private checkOnce(): void {
    const rt = this.rt;
    if (!rt) return;
    const now = this.clock.now();
    let learned = this.learned();
    if (learned === 'busy') {
      // The guard's queued transaction (or its rebuild) comes first; but a guard kept busy on
      // purpose must not hold the check off: past BUSY_MAX_MS the shape is checked without the
      // guard's record, and the elements again once it is free.
      this.busySince ??= now;
      if (now - this.busySince < BUSY_MAX_MS) {
        if (this.timer) return;
        this.timer = this.clock.setTimeout(() => {
          this.clock.setImmediate(() => {
            this.timer = undefined;
            void this.check();
          });
        }, 0);
        return;
      }
      learned = null;
    }
    const guardBusy = this.busySince !== undefined && learned === null;
    this.busySince = undefined;
    // The record itself (tens of thousands of entries, copied) only when a check compares elements
    // or restores: most checks read the shape alone, and the copy would be garbage on the loop that answers DNS.
    let record: readonly LearnedEntry[] | null = null;
    const recordOf = (): readonly LearnedEntry[] => (record ??= typeof learned === 'function' ? learned() : (learned as readonly LearnedEntry[]));
    this.stats.checks++;
    // Transactions committed before this check but not delivered yet by the event loop: a change
    // found below is then told with the process that committed it, not as a poll's finding.
    this.monitor?.drain?.();
    const transactions = this.foreign;
    const full = this.full;
    this.foreign = [];
    this.full = false;
    const action = rt.policy.tamper;
    // The guard's record is about the sets of the policy the daemon runs on: only that policy's.
    const sha = rt.policy.sha256;
    let findings: string[] = [];
    let mirror: (() => readonly LearnedEntry[]) | null = null;
    let stateKey: string | undefined;
    const journal: Record<string, unknown> = {};
    let result: CommitResult;
    try {
      result = commitTable(rt.netfilter, rt.state, {
        event: 'tamper-restore',
        lockWaitMs: 0,
        epoch: 'keep',
        pending: 'keep',
        recordState: false,
        journal,
        precondition: (v) => {
          // The journal's last line too: `sluice restore` writes the table without changing applied.json.
          const last = rt.state.lastJournal();
          stateKey = `${v.applied?.sha256}|${v.applied?.appliedAt}|${v.off}|${v.pending?.token}|${String(last?.at)}|${String(last?.event)}`;
          // Off, or nothing applied: the table is not Sluice's to keep.
          if (!v.applied || v.off) return 'not applied';
          // Elements are compared only with the guard's record at hand (it was busy: the shape alone, now).
          mirror = v.applied.sha256 === sha && learned !== null ? recordOf : null;
          findings = this.findings(v.applied.ruleset, v.nf, full && !guardBusy, mirror);
          if (findings.length === 0) return 'intact';
          // Committed between the drain above and the read: known now, and told.
          this.monitor?.drain?.();
          transactions.push(...this.foreign.splice(0));
          Object.assign(journal, { by: transactions.map(who), changes: findings });
          return action === 'restore' ? null : 'alert only';
        },
        ruleset: (v) => (mirror && v.applied ? restoreRuleset(v.applied.ruleset, mirror(), this.clock.now()) : (v.applied as NonNullable<typeof v.applied>).ruleset),
        // Without the guard's record, the live DNS-learned elements are carried as any replacement does.
        carryDynamic: () => mirror === null,
        policy: (v) => (v.applied ? appliedPolicy(v.applied) : null),
      });
    } catch (err) {
      const locked = (err as { code?: string }).code === 'ELOCKED';
      this.foreign.unshift(...transactions);
      this.full ||= full || !locked;
      if (locked) this.stats.lockBusy++;
      // Nothing found yet: the lock is held, or the read itself failed (the ruleset changing under it). Look again.
      if (locked || findings.length === 0) {
        this.schedule(LOCK_RETRY_MS);
        this.stalled(rt, now, transactions, locked ? 'the state lock is held (an apply in progress, or a process holding it on purpose)' : `reading the table failed: ${(err as Error).message}`);
        return;
      }
      this.stats.restoreFailures++;
      this.schedule(FAIL_RETRY_MS);
      // Retried every second; reported once per distinct change.
      const key = `failed\n${findings.join('\n')}`;
      if (key !== this.reported) this.report(rt, transactions, findings, { restored: false, error: (err as Error).message });
      this.reported = key;
      return;
    }
    // A check completed: whatever was pending is looked at.
    this.pendingSince = undefined;
    this.stallReported = false;
    this.lostPending = false;
    if (guardBusy && full) {
      // Only the shape was checked: the elements once the guard is free (at the earliest in a second, so a
      // guard kept busy on purpose does not turn this into a loop of checks).
      this.full = true;
      this.schedule(BUSY_RETRY_MS);
    }
    const previousKey = this.stateKey;
    this.stateKey = stateKey;
    if (result.skipped === 'intact' || result.skipped === 'not applied') {
      this.reported = '';
      // Changed by another process and changed back before this look, while nothing of Sluice's
      // state moved (an apply, off or rollback would have): a change nobody restored, but that was there.
      const touched = transactions.filter((t) => t.changes.length > 0);
      if (result.skipped === 'intact' && touched.length > 0 && previousKey !== undefined && previousKey === stateKey) {
        this.report(rt, touched, [`changed and changed back before the watchdog looked: ${[...new Set(touched.flatMap((t) => t.changes))].slice(0, 8).join('; ')}`], { restored: false, transient: true });
      }
      return;
    }
    if (!result.written) {
      // tamper: alert. Reported once per distinct change (the poll finds it again every few seconds).
      const key = findings.join('\n');
      if (key === this.reported && transactions.length === 0) return;
      this.reported = key;
      this.report(rt, transactions, findings, { restored: false });
      return;
    }
    this.stats.restored++;
    this.stats.lastRestoreMs = Math.round(result.ms * 10) / 10;
    this.reported = '';
    this.report(rt, transactions, findings, { restored: true, verified: result.verified, ms: result.ms });
  }

  /** The shape first (cheap at any size); elements next, when a set was touched or notifications were lost. */
  private findings(applied: Ruleset, nf: Runtime['netfilter'], full: boolean, mirror: (() => readonly LearnedEntry[]) | null): string[] {
    const live = nf.read(TABLE_NAME, { elements: 'none' });
    const shape = findTampering(applied, live, { elements: false, learned: null });
    const held = ownership(applied, live, nf);
    if (held !== null) shape.push(held);
    if (shape.length > 0 || !full) return shape;
    this.stats.elementReads++;
    return findTampering(applied, nf.read(TABLE_NAME, { elements: 'all' }), { elements: true, learned: mirror && mirror(), now: this.clock.now() });
  }

  /**
   * A change waits for a check that cannot run (the lock held, reads failing):
   * past STALL_MS it is reported, so that holding the state lock or churning
   * the ruleset cannot silence the watchdog. Only when something is waiting
   * (another process's transaction, or lost notifications): the poll finding
   * the lock held (a long apply) is not news. Once per stall.
   */
  private stalled(rt: Runtime, now: number, transactions: NftTransaction[], why: string): void {
    if (transactions.length === 0 && this.foreign.length === 0 && !this.lostPending) {
      this.pendingSince = undefined;
      return;
    }
    this.pendingSince ??= now;
    if (this.stallReported || now - this.pendingSince < STALL_MS) return;
    this.stallReported = true;
    const waiting = transactions.length > 0 ? transactions : this.foreign;
    this.report(rt, waiting, [`the watchdog has not been able to check the table for ${Math.round((now - this.pendingSince) / 1000)} s: ${why}`], { restored: false, stalled: true });
  }

  private report(rt: Runtime, transactions: NftTransaction[], findings: string[], outcome: { restored: boolean; verified?: boolean; ms?: number; error?: string; transient?: boolean; stalled?: boolean }): void {
    this.stats.detected++;
    const by = [...new Set(transactions.map(who))];
    const committed = [...new Set(transactions.flatMap((t) => t.changes))];
    const byText = by.length > 0 ? by.join(', ') : 'a change the notifications did not show (found by the periodic check)';
    const what = findings.slice(0, 3).join('; ') + (findings.length > 3 ? `; and ${findings.length - 3} more` : '');
    const action = outcome.error
      ? `restoring it failed: ${outcome.error}`
      : outcome.restored
        ? `restored in ${Math.round(outcome.ms ?? 0)} ms`
        : outcome.transient
          ? 'nothing left to restore'
          : outcome.stalled
            ? 'it is checked (and restored) as soon as the check can run'
            : 'left as it is (tamper: alert)';
    const message = `Sluice's table was changed by ${byText}: ${what}; ${action}`;
    this.lastFinding = { at: new Date(this.clock.now()).toISOString(), by, changes: findings, restored: outcome.restored };
    if (!outcome.restored) {
      try {
        rt.state.journal({ event: 'tamper', by, changes: findings, restored: false, ...(outcome.error ? { error: outcome.error } : {}) });
      } catch {
        // A read-only or full state directory: the log line and the alert still say it.
      }
    }
    publishAlert({ time: this.clock.now(), kind: 'tamper', severity: outcome.transient ? 'warning' : 'critical', message, detail: { by, committed, changes: findings, ...outcome } });
  }

  private registerMetrics(rt: Runtime): void {
    rt.metrics.collect(() => [
      {
        name: 'sluice_tamper_detected_total',
        help: 'Changes to Sluice\'s table made by another process and found by the tamper watchdog',
        type: 'counter',
        samples: [{ labels: {}, value: this.stats.detected }],
      },
      { name: 'sluice_tamper_restored_total', help: 'Times the tamper watchdog put the applied ruleset back', type: 'counter', samples: [{ labels: {}, value: this.stats.restored }] },
      { name: 'sluice_tamper_restore_failures_total', help: 'Restores the kernel refused (retried every second)', type: 'counter', samples: [{ labels: {}, value: this.stats.restoreFailures }] },
      { name: 'sluice_tamper_notifications_lost_total', help: 'Times nf_tables notifications were lost (the whole table is then checked)', type: 'counter', samples: [{ labels: {}, value: this.stats.lost }] },
    ]);
  }
}
