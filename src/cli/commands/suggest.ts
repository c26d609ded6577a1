import { readFileSync } from 'node:fs';
import { controlCall } from '../../runtime/control-server.js';
import { SluiceError, UsageError } from '../../errors.js';
import { eventStorePath } from '../../events/store-component.js';
import { parseSince } from '../../events/time-window.js';
import { checkPolicy, type CheckReport } from '../../learn/check-policy.js';
import { safeText, type Observations } from '../../learn/observations.js';
import { SHARED_ZONES } from '../../learn/public-suffix.js';
import { DEFAULT_STABLE_DAYS, type PromotionReport } from '../../learn/promote.js';
import { promotionText, stamp, type Suggestion } from '../../learn/suggest-policy.js';
import { checkedSuggestion, scanWindow, type ScanResult } from '../../learn/suggest-report.js';
import type { SqliteStore } from '../../events/sqlite-store.js';
import { parsePolicy } from '../../policy/load-policy.js';
import type { Policy } from '../../policy/policy.js';
import { writeFileAtomic } from '../../state/state-store.js';
import { hostFactsFor } from '../../system/compile-env.js';
import { lookupUsers } from '../../system/users.js';
import { EXIT, type Context } from '../context.js';
import { openStoreForReading } from './log.js';

export interface SuggestArgs {
  since?: string;
  out?: string;
  /** The policy to extend (POLICY or --policy); default: the applied one, if any. */
  policy?: string;
  /** Replay the window against this policy instead of suggesting one. */
  check?: string;
  /** Gradual enforcement: days without would-block before proposing enforce (default DEFAULT_STABLE_DAYS). */
  stableDays?: number;
}

/** The event store, read-only; refused with a message when the daemon has not written one yet. */
function openStore(stateDir: string): SqliteStore {
  const store = openStoreForReading(stateDir);
  if (!store) throw new SluiceError('EEVENTSTORE', `No events recorded yet (no store at ${eventStorePath(stateDir)}; the daemon writes it)`);
  return store;
}

/**
 * Asks a running daemon to write the DNS lookups it counted so far (it writes
 * them every 30 s otherwise), so the window includes the last seconds. No
 * daemon, or an older one: nothing to ask, and the store is read as it is.
 */
export async function flushLookups(controlSocket: string): Promise<void> {
  try {
    await controlCall(controlSocket, 'events.flush-lookups', {}, 10_000);
  } catch {
    // Not running, or not answering: the store has what was written.
  }
}

/** The events of the window, folded into distinct flows (streamed from the store: bounded memory); with `promote`, the promotions from the same pass. */
export function observe(stateDir: string, since: number, until: number, promote?: { policy: Policy; stableDays: number }): ScanResult {
  const store = openStore(stateDir);
  try {
    return scanWindow(store, { since, until, ...(promote ? { promotions: promote } : {}) });
  } finally {
    store.close();
  }
}

function readPolicyText(file: string): { policy: Policy; text: string } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new SluiceError('EPOLICY', `Cannot read policy: ${(err as NodeJS.ErrnoException).code ?? 'error'}: ${file}`, { cause: err });
  }
  return { policy: parsePolicy(bytes, file, { lookupUsers }), text: bytes.toString('utf8') };
}

/** The policy to extend: the one named, else the applied one (its snapshot: what is in force), else none. */
function existingPolicy(ctx: Context, file: string | undefined): { policy: Policy; text: string; file: string } | undefined {
  if (file !== undefined) return { ...readPolicyText(file), file };
  const applied = ctx.state.applied();
  if (!applied) return undefined;
  const bytes = ctx.state.policySnapshot(applied.sha256);
  if (!bytes) throw new SluiceError('ESTATE', `No snapshot of the applied policy ${applied.sha256.slice(0, 16)}`);
  return { policy: parsePolicy(bytes, applied.policyFile, { lookupUsers }), text: bytes.toString('utf8'), file: applied.policyFile };
}

/**
 * `sluice suggest [--since 7d] [--out FILE] [--policy FILE] [--json]`: a policy
 * allowing what the event store saw in the window (or the existing policy
 * with rules added and unneeded ones marked), checked by Sluice's own loader
 * before it is written. `sluice suggest --check FILE`: the window replayed
 * against FILE; exit 1 when it would break observed traffic.
 */
export async function suggest(ctx: Context, args: SuggestArgs): Promise<number> {
  const since = parseSince(args.since ?? '7d');
  await flushLookups(ctx.state.controlSocket);
  const until = Date.now() + 1;
  if (args.check !== undefined) {
    if (args.out !== undefined || args.policy !== undefined) throw new UsageError('`sluice suggest --check FILE` takes no --out or --policy: it only reads FILE and the events');
    return check(ctx, args.check, since, until);
  }
  const existing = existingPolicy(ctx, args.policy);
  const stableDays = args.stableDays ?? DEFAULT_STABLE_DAYS;
  const { obs, promo } = observe(ctx.state.dir, since, until, existing ? { policy: existing.policy, stableDays } : undefined);
  // What is written must load: Sluice's own loader is the judge.
  const { suggestion: s } = checkedSuggestion(obs, { ...(existing ? { existing, facts: hostFactsFor(existing.policy) } : {}), ...(promo ? { promotions: promo } : {}), since, until }, (text) => parsePolicy(Buffer.from(text), args.out ?? '(suggestion)', { lookupUsers }));
  if (args.out !== undefined) writeFileAtomic(args.out, s.yaml, 0o644);
  if (ctx.json) {
    ctx.result({
      window: { since: new Date(since).toISOString(), until: new Date(until - 1).toISOString() },
      events: obs.events,
      flows: obs.flows.size,
      overflow: obs.overflow,
      base: existing ? existing.file : null,
      covered: s.covered,
      rules: s.rules,
      couldGo: s.couldGo,
      unsupported: s.unsupported,
      // Names resolved in the window (connected to or not), and those the suggestion cannot make resolve.
      resolved: { lookups: obs.lookups, names: new Set([...obs.names.values()].map((n) => n.name)).size, overflow: obs.lookupOverflow, unnameable: obs.unnameable },
      refusedNames: s.refusedNames,
      sharedZones: SHARED_ZONES,
      // Gradual enforcement: the days asked for, and each thing in audit with its promotion or why not yet.
      promotions: promo ?? { stableDays, since: null, historyFrom: null, covered: false, candidates: [] },
      ...(args.out !== undefined ? { out: args.out } : { policy: s.yaml }),
    });
    return EXIT.ok;
  }
  if (args.out === undefined) process.stdout.write(s.yaml);
  summary(ctx, s, obs, existing?.file, args.out, since, until, promo);
  return EXIT.ok;
}

function summary(ctx: Context, s: Suggestion, obs: Observations, base: string | undefined, out: string | undefined, since: number, until: number, promo?: PromotionReport): void {
  const lines = [
    `${obs.events} events from ${stamp(since)} to ${stamp(until)}, ${obs.flows.size} distinct flows${obs.overflow > 0 ? ` (${obs.overflow} events beyond the flow table, not counted)` : ''}`,
    base ? `based on ${base}: ${s.covered.flows} flows (${s.covered.events} events) already allowed; ${s.rules.length} new rules` : `${s.rules.length} rules`,
  ];
  if (obs.lookups > 0) lines.push(`${obs.lookups} lookups of ${new Set([...obs.names.values()].map((n) => n.name)).size} names resolved in the window${obs.lookupOverflow > 0 ? ` (${obs.lookupOverflow} beyond the names table, not counted)` : ''}`);
  for (const r of s.rules) {
    if (r.resolveOnly) {
      lines.push(`  + ${r.name}: ${r.to.length} name${r.to.length === 1 ? '' : 's'} resolved but never connected to: they resolve, nothing is opened (interfaces: [lo]) (${r.events} lookups on ${r.days} day${r.days === 1 ? '' : 's'})`);
      continue;
    }
    lines.push(`  + ${r.name}: ${r.to.length} destination${r.to.length === 1 ? '' : 's'}, ${r.ports.join(' ')} (${r.events} events on ${r.days} day${r.days === 1 ? '' : 's'})`);
    for (const sh of r.shared) lines.push(`    shared zone: ${sh.name} (under *.${sh.zone}: anyone can create names; exact name only)`);
  }
  for (const n of s.refusedNames.slice(0, 20)) lines.push(`  ! ${n.name}: resolved ${n.lookups} times, but ${n.why} in the base policy: it will not resolve (an added allow cannot undo an outright deny)`);
  for (const c of s.couldGo) lines.push(`  - ${c.rule} (line ${c.line}): no observed flow needed it: could go`);
  if (promo) {
    lines.push(`promotions (--stable-days ${promo.stableDays}: no would-block in the last ${promo.stableDays} days):`);
    if (promo.candidates.length === 0) lines.push('  nothing is in audit');
    for (const p of promo.candidates) {
      const what = p.target.kind === 'policy' ? "the policy's mode" : p.target.kind === 'rule' ? `deny rule ${p.target.name}` : p.target.kind === 'scope' ? `scope ${p.target.name}` : p.target.service !== undefined ? `service ${p.target.service}` : `uid ${p.target.user}`;
      lines.push(`  ${p.stable ? '^' : ' '} ${what}: ${promotionText(p, promo)}`);
    }
  }
  if (s.unsupported > 0) lines.push(`  ${s.unsupported} flows of other protocols left out (a policy names TCP, UDP and ICMP ports only)`);
  lines.push(out !== undefined ? `written to ${out}; check it with: sluice suggest --check ${out}` : 'check it with: sluice suggest --check FILE');
  // The policy went to stdout: the summary goes to stderr, so `> FILE` keeps only the policy.
  if (out === undefined) process.stderr.write(`${lines.join('\n')}\n`);
  else for (const l of lines) ctx.say(l);
}

function check(ctx: Context, file: string, since: number, until: number): number {
  const { policy } = readPolicyText(file);
  const { obs } = observe(ctx.state.dir, since, until);
  const r = checkPolicy(policy, obs, 100, hostFactsFor(policy));
  if (ctx.json) ctx.result({ policy: file, window: { since: new Date(since).toISOString(), until: new Date(until - 1).toISOString() }, ...r });
  else for (const l of checkLines(file, r, since, until)) ctx.say(l);
  return r.wouldBreak.events > 0 || r.wouldBreak.lookups > 0 ? EXIT.failed : EXIT.ok;
}

function checkLines(file: string, r: CheckReport, since: number, until: number): string[] {
  const lines = [
    `${file} against ${r.events} events from ${stamp(since)} to ${stamp(until)} (${r.flows} distinct flows)`,
    `would break ${r.wouldBreak.events} (events of observed traffic it blocks, or whose name it would not resolve)`,
    `would refuse ${r.wouldBreak.lookups} lookups (of ${r.resolved.lookups}, ${r.resolved.names} names resolved in the window, connected to or not)${r.resolved.overflow > 0 ? `; ${r.resolved.overflow} lookups beyond the names table were not replayed` : ''}`,
    `would block ${r.wouldBlock.events} (${r.wouldBlock.flows} flows)`,
    ...(r.audited.events > 0 ? [`would record ${r.audited.events} as would-block (${r.audited.flows} flows in audit scopes or deny rules in audit: not broken)`] : []),
  ];
  for (const f of r.wouldBreak.flows.slice(0, 20)) {
    const dest = `${f.hostname ? `${f.hostname} ` : ''}${f.dst}${f.dport !== undefined ? ` ${f.dport}` : ''}/${f.proto === 6 ? 'tcp' : f.proto === 17 ? 'udp' : f.proto}`;
    lines.push(`  breaks ${dest}: ${f.events} events${f.uid !== undefined ? ` uid ${f.uid}` : ''}${f.processes.length ? ` (${f.processes.map((p) => safeText(p)).join(', ')})` : ''}: ${f.why}`);
  }
  for (const n of r.wouldBreak.names.slice(0, 20)) {
    lines.push(`  name ${n.name} would not resolve (${n.events} events, ${n.lookups} lookups${n.processes.length ? `; ${n.processes.map((p) => safeText(p)).join(', ')}` : ''}): ${n.why}`);
  }
  if (r.overflow > 0) lines.push(`  ${r.overflow} events beyond the flow table were not replayed`);
  return lines;
}
