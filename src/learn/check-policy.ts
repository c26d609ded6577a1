import type { HostFacts } from '../policy/builtins.js';
import type { Policy } from '../policy/policy.js';
import { safeText, type Observation, type Observations } from './observations.js';
import { stamp } from './suggest-policy.js';
import { isLoopbackFlow, judgeFlow, nameRefusedBy } from './replay.js';

/** One distinct flow in a check's report. */
export interface CheckedFlow {
  dst: string;
  hostname?: string;
  proto: number;
  dport?: number;
  uid?: number;
  service?: string;
  events: number;
  first: string;
  last: string;
  processes: string[];
  /** What the policy does with it, in explain's words. */
  why: string;
}

export interface CheckReport {
  /** Events replayed, and the distinct flows they fold into. */
  events: number;
  flows: number;
  /** Observed traffic that flowed (allowed, or would-block in audit mode) which the policy would block, or whose name it would not resolve. */
  wouldBreak: {
    events: number;
    flows: CheckedFlow[];
    /** Lookups of names the workload resolved (stored lookups, connected to or not) that the guard would refuse. */
    lookups: number;
    /** Each name that would not resolve: flow events that came from it, lookups of it, and the guard's reason. */
    names: { name: string; events: number; lookups: number; why: string; processes: string[] }[];
  };
  /** Resolved lookups replayed (aggregated per day, name and asker), the distinct names, and lookups not replayed (the names table was full). */
  resolved: { lookups: number; names: number; overflow: number };
  /** Every event the policy would block (what broke above, and what was blocked before and still is). */
  wouldBlock: { events: number; flows: number };
  /**
   * Gradual enforcement: observed traffic the policy blocks only in audit
   * (a scope in audit, or a deny rule in audit by its own mode): recorded as
   * would-block, not broken. Counted in wouldBlock too.
   */
  audited: { events: number; flows: number };
  /** Events not replayed because the flow table was full. */
  overflow: number;
}

function row(o: Observation, why: string): CheckedFlow {
  const f = o.flow;
  const r: CheckedFlow = { dst: f.dst, proto: f.proto, events: o.flowed + o.blocked, first: stamp(o.first), last: stamp(o.last), processes: [...o.processes], why };
  if (f.hostname !== undefined) r.hostname = f.hostname;
  if (f.dport !== undefined) r.dport = f.dport;
  if (f.uid !== undefined) r.uid = f.uid;
  if (f.service !== undefined) r.service = safeText(f.service, 120);
  return r;
}

/**
 * Replays stored events against a policy with the compiler's own
 * interpreter (judgeFlow: explain, as `sluice explain` uses it). A flow that
 * went through (allowed, or would-block in audit mode) and that the policy
 * blocks would break; so would a name the workload resolved that the DNS
 * guard would refuse under it (decided by the guard's own matcher and
 * refusal rules: dns/name-refusal.ts), whether the name came with a flow or
 * only from the stored lookups (resolved, never connected to). `limit` bounds the flows listed (the counts
 * are always whole).
 */
export function checkPolicy(policy: Policy, obs: Observations, limit = 100, facts: HostFacts = {}): CheckReport {
  const report: CheckReport = {
    events: obs.events,
    flows: obs.flows.size,
    wouldBreak: { events: 0, flows: [], lookups: 0, names: [] },
    resolved: { lookups: obs.lookups, names: new Set([...obs.names.values()].map((n) => n.name)).size, overflow: obs.lookupOverflow },
    wouldBlock: { events: 0, flows: 0 },
    audited: { events: 0, flows: 0 },
    overflow: obs.overflow,
  };
  const names = new Map<string, { events: number; lookups: number; why: string; processes: Set<string> }>();
  const refusal = (h: string) => nameRefusedBy(policy, h, facts);
  // The DNS guard answers a refused name to a user in an audit scope (by the uid on its UDP query).
  const guardAudits = (uid: number | undefined) => uid !== undefined && (policy.scopes ?? []).some((s) => s.mode === 'audit' && s.users.some((u) => u.uid === uid));
  const nameEntry = (h: string, why: string) => {
    let n = names.get(h);
    if (!n) {
      n = { events: 0, lookups: 0, why, processes: new Set() };
      names.set(h, n);
    }
    return n;
  };
  const breaks: { o: Observation; why: string }[] = [];
  for (const o of obs.flows.values()) {
    if (isLoopbackFlow(o.flow)) continue;
    const x = judgeFlow(policy, o.flow, facts);
    const blocked = x !== null && x.verdict === 'block';
    if (blocked) {
      report.wouldBlock.events += o.flowed + o.blocked;
      report.wouldBlock.flows++;
    }
    // The policy's own mode is taken as enforce (the question is what enforcing it breaks); a mode a
    // scope or a deny rule has of its own is kept: a block in an audit scope breaks nothing.
    const auditedBlock = blocked && x?.scope !== undefined && !x.enforced;
    if (auditedBlock) {
      report.audited.events += o.flowed + o.blocked;
      report.audited.flows++;
    }
    const blocks = blocked && !auditedBlock;
    if (o.flowed === 0) continue;
    const h = o.flow.hostname;
    const refused = h !== undefined && !guardAudits(o.flow.uid) ? refusal(h) : undefined;
    if (h !== undefined && refused !== undefined) {
      const n = nameEntry(h, refused);
      n.events += o.flowed;
      for (const p of o.processes) if (n.processes.size < 6) n.processes.add(p);
    }
    if (blocks || refused !== undefined) {
      report.wouldBreak.events += o.flowed;
      breaks.push({ o, why: blocks ? (x?.summary ?? 'blocked') : `${h} would not resolve: ${refused}` });
    }
  }
  // Names resolved in the window, connected to or not: the guard must still answer them.
  for (const n of obs.names.values()) {
    if (guardAudits(n.uid)) continue;
    const refused = refusal(n.name);
    if (refused === undefined) continue;
    report.wouldBreak.lookups += n.lookups;
    const e = nameEntry(n.name, refused);
    e.lookups += n.lookups;
    for (const p of n.processes) if (e.processes.size < 6) e.processes.add(p);
  }
  breaks.sort((a, b) => b.o.flowed - a.o.flowed);
  report.wouldBreak.flows = breaks.slice(0, limit).map((b) => row(b.o, b.why));
  report.wouldBreak.names = [...names]
    .sort((a, b) => b[1].events + b[1].lookups - (a[1].events + a[1].lookups) || (a[0] < b[0] ? -1 : 1))
    .slice(0, limit)
    .map(([name, n]) => ({ name, events: n.events, lookups: n.lookups, why: n.why, processes: [...n.processes] }));
  return report;
}
