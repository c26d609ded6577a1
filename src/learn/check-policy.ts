import type { HostFacts } from '../policy/builtins.js';
import type { Policy } from '../policy/policy.js';
import { safeText, type Observation, type Observations } from './observations.js';
import { stamp } from './suggest-policy.js';
import { isLoopbackFlow, judgeFlow, nameResolves } from './replay.js';

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
  wouldBreak: { events: number; flows: CheckedFlow[]; names: { name: string; events: number }[] };
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
 * guard would refuse under it. `limit` bounds the flows listed (the counts
 * are always whole).
 */
export function checkPolicy(policy: Policy, obs: Observations, limit = 100, facts: HostFacts = {}): CheckReport {
  const report: CheckReport = { events: obs.events, flows: obs.flows.size, wouldBreak: { events: 0, flows: [], names: [] }, wouldBlock: { events: 0, flows: 0 }, audited: { events: 0, flows: 0 }, overflow: obs.overflow };
  const names = new Map<string, number>();
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
    // The DNS guard answers a refused name to a user in an audit scope (by the uid on its UDP query).
    const uid = o.flow.uid;
    const guardAudits = uid !== undefined && (policy.scopes ?? []).some((s) => s.mode === 'audit' && s.users.some((u) => u.uid === uid));
    const unresolved = h !== undefined && !guardAudits && !nameResolves(policy, h);
    if (unresolved) names.set(h, (names.get(h) ?? 0) + o.flowed);
    if (blocks || unresolved) {
      report.wouldBreak.events += o.flowed;
      breaks.push({ o, why: blocks ? (x?.summary ?? 'blocked') : `${h} would not resolve: no allow rule lists it` });
    }
  }
  breaks.sort((a, b) => b.o.flowed - a.o.flowed);
  report.wouldBreak.flows = breaks.slice(0, limit).map((b) => row(b.o, b.why));
  report.wouldBreak.names = [...names].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([name, events]) => ({ name, events }));
  return report;
}
