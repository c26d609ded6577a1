import { parseTableComment } from '../../compile/kernel-names.js';
import { TABLE_NAME } from '../../compile/ruleset.js';
import { scopedModes } from '../../compile/scoped-modes.js';
import { diffRulesets, sameRuleset } from '../../netfilter/compare-ruleset.js';
import { processAlive } from '../../state/state-store.js';
import { EXIT, type Context } from '../context.js';

/** `sluice status [--json]`: mode, policy hash, live or drifted, counters per rule. */
export function status(ctx: Context): number {
  const nf = ctx.netfilter();
  const applied = ctx.state.applied();
  const pending = ctx.state.pending();
  const live = nf.read(TABLE_NAME);
  const counters = nf.counters(TABLE_NAME);

  let state: 'off' | 'live' | 'drifted' | 'missing' | 'unmanaged';
  if (!live) state = applied ? 'missing' : 'off';
  else if (!applied) state = 'unmanaged';
  else state = sameRuleset(applied.ruleset, live) ? 'live' : 'drifted';

  // The table's own comment says what is loaded even if the state directory was lost.
  const comment = live ? parseTableComment(live.ruleset.comment) : null;
  const liveMode = comment?.mode ?? null;
  const liveSha = comment?.sha256 ?? null;

  const rules = (applied?.ruleset.counters ?? live?.ruleset.counters ?? []).map((c) => {
    const v = counters.get(c.name);
    return { counter: c.name, description: c.comment ?? c.name, packets: v?.packets ?? null, bytes: v?.bytes ?? null };
  });
  const overdue = pending ? Date.parse(pending.deadline) < Date.now() : false;
  const timerAlive = pending?.timerPid ? processAlive(pending.timerPid) : false;
  const drift = state === 'drifted' && live && applied ? diffRulesets(applied.ruleset, live.ruleset, { maxElements: 20 }) : [];
  // The daemon's own last word about itself: a start that failed must be as visible as a missing table.
  const ds = ctx.state.daemonState();
  const daemonAlive = ds ? processAlive(ds.pid) && ds.state !== 'stopped' && ds.state !== 'failed' : false;
  const daemon = ds ? { state: (ds.state === 'running' || ds.state === 'starting') && !daemonAlive ? 'dead' : ds.state, pid: ds.pid, at: ds.at, ...(ds.error ? { error: ds.error } : {}) } : null;
  const off = state === 'off' && ctx.state.isOff();

  const describe: Record<typeof state, string> = {
    off: 'off (no Sluice table; outbound is not filtered by Sluice)',
    live: 'live (the kernel holds exactly the applied policy)',
    drifted: 'DRIFTED (the kernel table differs from the applied policy)',
    missing: 'MISSING (a policy was applied but its table is gone)',
    unmanaged: 'loaded, but this state directory did not apply it',
  };
  ctx.say(`Sluice: ${describe[state]}${off ? ' since `sluice off`' : ''}`);
  if (daemon?.state === 'failed') ctx.say(`Daemon: FAILED TO START at ${daemon.at}: ${daemon.error ?? 'unknown error'} (the ruleset in the kernel stays in force)`);
  else if (daemon?.state === 'dead') ctx.say(`Daemon: NOT RUNNING (pid ${daemon.pid} is gone since ${daemon.at}; it did not stop cleanly)`);
  else if (daemon) ctx.say(`Daemon: ${daemon.state}${daemon.state === 'running' || daemon.state === 'starting' ? ` (pid ${daemon.pid})` : ''} since ${daemon.at}`);
  // Gradual enforcement, as the kernel holds it: scopes and deny rules with a mode other than the policy's.
  const scoped = live ? scopedModes(live.ruleset) : null;
  const hasScoped = scoped !== null && (scoped.scopes.length > 0 || scoped.rules.length > 0);
  if (live) ctx.say(`Mode: ${liveMode ?? 'unknown'}${liveMode === 'audit' ? ` (${hasScoped ? 'except the scopes below, ' : ''}nothing blocked; would-block traffic is logged)` : hasScoped ? ' (except the scopes below)' : ''}`);
  for (const sc of scoped?.scopes ?? []) {
    const members = sc.users.length > 0 ? `uid ${sc.users.join(', ')}` : `${sc.cgroups} service cgroup${sc.cgroups === 1 ? '' : 's'}`;
    ctx.say(`  scope ${sc.name}: ${sc.mode} (${members})`);
  }
  for (const r of scoped?.rules ?? []) ctx.say(`  deny rule ${r.rule}: ${r.mode} (its own mode)`);
  // An owned table (policy owned_table): who can change it now.
  const owned = live?.ruleset.owned ? { owner: live.owner ?? null } : null;
  if (owned) {
    ctx.say(
      owned.owner !== null
        ? `Table: owned (flags owner, persist) by netlink port ${owned.owner}: only that socket (the daemon's, while it runs) can change or delete it`
        : 'Table: persistent (flags persist) and held by no process: the daemon takes it when it runs',
    );
  }
  if (applied) ctx.say(`Policy: ${applied.policyFile} sha256 ${applied.sha256.slice(0, 16)} applied ${applied.appliedAt}`);
  else if (liveSha) ctx.say(`Policy: sha256 ${liveSha.slice(0, 16)} (from the table comment)`);
  if (pending) {
    ctx.say(
      overdue
        ? `Pending confirmation: deadline ${pending.deadline} passed${timerAlive ? '; rollback running' : ' and the rollback timer is not running: run `sluice confirm` to keep, or apply the previous policy'}`
        : `Pending confirmation: run \`sluice confirm\` before ${pending.deadline} or it rolls back`,
    );
  }
  // A rollback is the one change the user did not ask for at the moment it happened: say so.
  const last = ctx.state.lastJournal();
  const rolledBack = last?.event === 'rollback' && typeof last.at === 'string' ? { at: last.at, restored: String(last.restored ?? '') } : null;
  const rollbackFailed = last?.event === 'rollback-failed' && typeof last.at === 'string' ? { at: last.at, error: String(last.error ?? '') } : null;
  if (rollbackFailed) ctx.say(`Last change: the ROLLBACK FAILED at ${rollbackFailed.at}: ${rollbackFailed.error}`);
  if (rolledBack) {
    const what = /^[0-9a-f]{64}$/.test(rolledBack.restored) ? `the policy with sha256 ${rolledBack.restored.slice(0, 16)}` : rolledBack.restored;
    ctx.say(`Last change: rolled back at ${rolledBack.at}: the apply was not confirmed in time (restored: ${what})`);
  }
  if (drift.length > 0) {
    ctx.say('Drift (- applied, + live):');
    for (const l of drift.slice(0, 60)) ctx.say(`  ${l}`);
    if (drift.length > 60) ctx.say(`  ... ${drift.length - 60} more lines`);
  }
  for (const a of live?.anomalies ?? []) ctx.say(`Foreign object in the table: ${a}`);
  if (live && rules.length > 0) {
    ctx.say('');
    ctx.say('Counter                 Packets        Bytes  Meaning');
    for (const r of rules) {
      ctx.say(`${r.counter.padEnd(22)} ${String(r.packets ?? '-').padStart(8)} ${String(r.bytes ?? '-').padStart(12)}  ${r.description}`);
    }
    ctx.say('(Rule counters count packets of new flows, before their first reply.)');
  }
  ctx.result({
    state,
    mode: liveMode,
    scopes: scoped?.scopes ?? [],
    ruleModes: scoped?.rules ?? [],
    policy: applied ? { file: applied.policyFile, sha256: applied.sha256, appliedAt: applied.appliedAt } : liveSha ? { sha256: liveSha } : null,
    pending: pending ? { deadline: pending.deadline, overdue, timerAlive } : null,
    rolledBack,
    rollbackFailed,
    counters: rules,
    drift,
    anomalies: live?.anomalies ?? [],
    owned,
    epoch: applied?.epoch ?? null,
    daemon,
  });
  if (daemon?.state === 'failed' || daemon?.state === 'dead') return EXIT.notLive;
  // Past its deadline, a pending confirmation means the kernel holds a policy nobody kept (documented: exit 3).
  if (overdue) return EXIT.notLive;
  return state === 'live' || state === 'off' ? EXIT.ok : EXIT.notLive;
}
