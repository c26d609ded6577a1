import { resolve } from 'node:path';
import { epochBits, flowTag, nextEpoch, rulesetFlowMark, withEpoch } from '../compile/flow-mark.js';
import { TABLE_NAME, type Ruleset } from '../compile/ruleset.js';
import { sameCompiled, sameRuleset, sameStructure } from '../netfilter/compare-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import type { AppliedState, PendingConfirm, StateStore } from './state-store.js';

/** What a commit sees under the lock, before it writes. */
export interface CommitView {
  nf: Netfilter;
  applied: AppliedState | null;
  pending: PendingConfirm | null;
  /** `sluice off` (or a rollback to no table) was the last word. */
  off: boolean;
}

/** The policy a ruleset comes from, as the state directory records it. */
export interface CommitPolicy {
  policyFile: string;
  sha256: string;
  mode: 'audit' | 'enforce';
  warnings: string[];
  /** The policy's exact bytes, snapshotted so the daemon can always load what was applied. */
  bytes?: Uint8Array;
  /** The list files it read (`to_file:`), snapshotted with it: the daemon loads the lists as they were applied. */
  lists?: { path: string; bytes: Uint8Array }[];
}

/** The applied policy as a commit records it again (same policy, perhaps a ruleset compiled from new host facts, with its warnings). */
export function appliedPolicy(applied: AppliedState, warnings: string[] = applied.warnings): CommitPolicy {
  return { policyFile: applied.policyFile, sha256: applied.sha256, mode: applied.mode, warnings };
}

/**
 * Puts the applied ruleset back as it was applied (same epoch), when the
 * kernel lost it or holds something else, unless what is applied changed
 * under the lock. For the boot-time restore and a daemon that starts to
 * find its table gone.
 */
export function restoreApplied(nf: Netfilter, state: StateStore, applied: AppliedState, by: string): CommitResult {
  return commitTable(nf, state, {
    event: 'restore',
    ruleset: applied.ruleset,
    policy: appliedPolicy(applied),
    epoch: 'keep',
    pending: 'keep',
    unlessLive: true,
    recordState: false,
    precondition: (v) => (v.applied?.sha256 === applied.sha256 && !v.off && !v.pending ? null : 'the applied policy changed meanwhile'),
    journal: { by },
  });
}

export interface TableCommit {
  /** The journal's name for it: apply, off, rollback, restore, daemon-start, reload, service-cgroups... */
  event: string;
  /** The ruleset to write (compiled in any epoch: the commit chooses), or null to remove the table; or made from what is applied, under the lock (after the precondition). */
  ruleset: Ruleset | null | ((view: CommitView) => Ruleset);
  /**
   * Whether DNS-learned elements are carried over from the live table
   * (default true). False: the ruleset's dynamic sets hold exactly its own
   * elements (the tamper watchdog's restore, from the guard's own record:
   * an element someone else added is not carried).
   */
  carryDynamic?: boolean | ((view: CommitView) => boolean);
  /** The policy behind `ruleset` (or made from what is applied, under the lock); null records Sluice as off. */
  policy: CommitPolicy | null | ((view: CommitView) => CommitPolicy | null);
  /**
   * `keep`: the live epoch (same meaning, new facts: a restore, the daemon's
   * start, a service's new cgroup). `auto` (default): a new epoch unless the
   * ruleset means exactly what is applied now, so every flow admitted under
   * another meaning is judged again.
   */
  epoch?: 'keep' | 'auto';
  /** The pending confirmation afterwards: cleared (default), kept, or made from what was there before the write. */
  pending?: 'clear' | 'keep' | ((view: CommitView) => PendingConfirm);
  /** Write nothing when the kernel already holds exactly this ruleset (in the live epoch): a daemon start after a crash. */
  unlessLive?: boolean;
  /** Checked under the lock before anything is written: a reason to write nothing, or null. */
  precondition?: (view: CommitView) => string | null;
  /** How long to wait for the state lock (default 10 s); 0 tries once (ELOCKED when held): for the daemon's loop. */
  lockWaitMs?: number;
  /** False: record nothing but a journal line (a restore: the state already says this, and may be read-only). */
  recordState?: boolean;
  /** More fields for the journal line. */
  journal?: Record<string, unknown>;
}

export interface CommitResult {
  /** False when the precondition said no (see `skipped`). */
  written: boolean;
  skipped?: string;
  /** The ruleset as written (in its epoch), or null when the table was removed. */
  ruleset: Ruleset | null;
  epoch: number | null;
  /** The structure read back equals what was written (always true for a removal). */
  verified: boolean;
  /** Whether a table was there to remove (removals only). */
  removed?: boolean;
  /** Duration of the kernel transaction. */
  ms: number;
  /** What was there before. */
  before: { applied: AppliedState | null; pending: PendingConfirm | null; off: boolean };
  /** The pending confirmation recorded afterwards. */
  pending: PendingConfirm | null;
}

/**
 * The one writer of Sluice's kernel table. Everything that replaces or
 * removes it (apply, off, the rollback timer, the daemon's start and reload,
 * the service watch, boot-time restore) comes here, so each of them holds
 * the state lock, checks what is applied under it, chooses the flow epoch,
 * writes in one kernel transaction, reads back, and records the applied
 * policy, the `off` marker, the pending confirmation and a journal line, in
 * that order. A failed kernel transaction changes nothing, in the kernel or
 * in the state directory.
 */
export function commitTable(nf: Netfilter, state: StateStore, c: TableCommit): CommitResult {
  return state.withLock((): CommitResult => {
    const view: CommitView = { nf, applied: state.applied(), pending: state.pending(), off: state.isOff() };
    const before = { applied: view.applied, pending: view.pending, off: view.off };
    const skipped = c.precondition?.(view) ?? null;
    if (skipped !== null) return { written: false, skipped, ruleset: null, epoch: null, verified: false, ms: 0, before, pending: view.pending };
    const policy = typeof c.policy === 'function' ? c.policy(view) : c.policy;
    const desired = typeof c.ruleset === 'function' ? c.ruleset(view) : c.ruleset;
    // Made before the write: a rollback target is what is live now.
    const pending = typeof c.pending === 'function' ? c.pending(view) : c.pending === 'keep' ? view.pending : null;

    let ruleset: Ruleset | null = null;
    let epoch: number | null = null;
    let verified = true;
    let removed: boolean | undefined;
    const started = performance.now();
    if (desired && c.unlessLive) {
      const current = currentEpoch(nf, view.applied);
      const same = current !== null ? withEpoch(desired, current) : desired;
      const live = nf.read(TABLE_NAME);
      if (live && sameRuleset(same, live)) return { written: false, skipped: 'already live', ruleset: same, epoch: current, verified: true, ms: 0, before, pending: view.pending };
    }
    if (desired) {
      const current = currentEpoch(nf, view.applied);
      if (rulesetFlowMark(desired) === null) ruleset = desired;
      else if (current !== null && (c.epoch === 'keep' || sameMeaning(desired, current, policy, view.applied))) ruleset = withEpoch(desired, current);
      else {
        ruleset = withEpoch(desired, nextEpoch(current ?? undefined));
        // A new epoch reuses a value last used 255 epochs ago: flows still carrying it were admitted
        // by some old policy and must not pass for this one's. Forgotten before the new table is in:
        // the old table can never mark the new epoch.
        const fm = rulesetFlowMark(ruleset);
        if (fm) nf.forgetFlows(flowTag(fm.layout, fm.epoch, 0) & epochBits(fm.layout), epochBits(fm.layout));
      }
      epoch = rulesetFlowMark(ruleset)?.epoch ?? null;
      // The bytes first: a snapshot that cannot be written (a full disk) stops the commit before the
      // kernel changes. The applied policy's and a rollback target's snapshots are never pruned.
      if (policy?.bytes && c.recordState !== false) state.savePolicySnapshot(policy.sha256, policy.bytes, [view.applied?.sha256, view.pending?.previousState?.sha256].filter((x): x is string => x !== undefined), policy.lists ?? []);
      const carry = typeof c.carryDynamic === 'function' ? c.carryDynamic(view) : c.carryDynamic;
      nf.replace(ruleset, carry === false ? { carryDynamic: false } : {});
      // The kernel acknowledged every message of the transaction; read back the
      // structure (chains, rules, sets, objects) to be sure it is what was meant.
      const live = nf.read(TABLE_NAME, { elements: 'none' });
      verified = live !== null && sameStructure(ruleset, live);
    } else {
      removed = nf.remove(TABLE_NAME);
    }
    const ms = performance.now() - started;

    // A restore puts back what the state directory already says (maybe from a read-only
    // filesystem): nothing to record but the journal line, if it can be written.
    if (c.recordState === false) {
      try {
        state.journal({ event: c.event, ...(epoch !== null ? { epoch } : {}), ms: Math.round(ms), ...c.journal });
      } catch {
        // Read-only at early boot.
      }
      return { written: true, ruleset, epoch, verified, ms, before, pending: view.pending };
    }
    // The pending confirmation first: a crash right after the kernel write then leaves the
    // rollback target recorded, never an unconfirmed policy with no way back. Of applied.json and
    // off.json, the newer one is the truth (StateStore.applied), so each is written before the
    // other is removed.
    state.setPending(pending);
    if (policy && ruleset) {
      state.setApplied({
        appliedAt: new Date().toISOString(),
        // Absolute: the daemon (cwd /) reloads it; a path relative to where `apply` ran means nothing there.
        policyFile: resolve(policy.policyFile),
        sha256: policy.sha256,
        mode: policy.mode,
        ruleset,
        warnings: policy.warnings,
        ...(epoch !== null ? { epoch } : {}),
      });
      state.setOff(null);
    } else if (ruleset) {
      // A table with no policy behind it (a rollback to a table someone else's state directory applied): unmanaged.
      state.setApplied(null);
      state.setOff(null);
    } else {
      // No table is Sluice off on purpose.
      state.setOff({ at: new Date().toISOString() });
      state.setApplied(null);
    }
    state.journal({
      event: c.event,
      ...(policy ? { policy: resolve(policy.policyFile), sha256: policy.sha256, mode: policy.mode } : {}),
      ...(epoch !== null ? { epoch } : {}),
      ...(removed !== undefined ? { removed } : {}),
      ms: Math.round(ms),
      ...c.journal,
    });
    return { written: true, ruleset, epoch, verified, ...(removed !== undefined ? { removed } : {}), ms, before, pending };
  }, c.lockWaitMs);
}

/** The epoch in force: what the state directory recorded, else what the live table says. */
function currentEpoch(nf: Netfilter, applied: AppliedState | null): number | null {
  if (applied?.epoch !== undefined) return applied.epoch;
  const live = nf.read(TABLE_NAME, { elements: 'none' });
  return live ? (rulesetFlowMark(live.ruleset)?.epoch ?? null) : null;
}

/**
 * True when `ruleset`, in the applied epoch, is exactly the applied one: the
 * same meaning, so the same epoch. Another policy (its hash) or another mode
 * always means something else, and is told without comparing the rulesets;
 * the same policy can still compile differently when the host's facts
 * changed (resolvers, cgroups, leases), which the comparison in compiler
 * order catches (a false "different" only costs a new epoch).
 */
function sameMeaning(ruleset: Ruleset, epoch: number, policy: CommitPolicy | null, applied: AppliedState | null): boolean {
  if (applied === null || (policy !== null && (policy.sha256 !== applied.sha256 || policy.mode !== applied.mode))) return false;
  return sameCompiled(withEpoch(ruleset, epoch), applied.ruleset);
}

/**
 * What to restore if an unconfirmed apply times out: what is in the kernel
 * now, read back exactly, when Sluice can rewrite all of it; otherwise the
 * last policy Sluice applied.
 */
function rollbackTarget(nf: Netfilter, applied: AppliedState | null): { ruleset: Ruleset | null; note?: string } {
  const live = nf.read(TABLE_NAME);
  // The table is gone (another tool flushed the ruleset) but a policy is applied: that policy is
  // what a rollback restores, never "off", which only `sluice off` records.
  if (live === null) return applied ? { ruleset: applied.ruleset, note: 'the table is missing; a rollback restores the last applied policy' } : { ruleset: null };
  if (live.anomalies.length === 0) return { ruleset: live.ruleset };
  return {
    ruleset: applied?.ruleset ?? null,
    note: `the live table has parts Sluice did not write (${live.anomalies[0]}); a rollback restores the last applied policy instead`,
  };
}

/**
 * The pending confirmation `apply --confirm` records: its token and
 * deadline, and what a rollback restores. An apply during a confirmation
 * window keeps that window's rollback target (the last confirmed state),
 * never the unconfirmed policy it replaces.
 */
export function confirmWindow(token: string, deadline: string, note?: (text: string) => void): (view: CommitView) => PendingConfirm {
  return (view) => {
    if (view.pending) return { token, deadline, previous: view.pending.previous, previousState: view.pending.previousState };
    const target = rollbackTarget(view.nf, view.applied);
    if (target.note) note?.(target.note);
    return { token, deadline, previous: target.ruleset, previousState: view.applied };
  };
}
