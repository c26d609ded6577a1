import type { FlowRow } from '../events/sqlite-store.js';
import type { Policy, Scope } from '../policy/policy.js';
import { serviceOf } from './replay.js';

/** Days without a would-block record before something in audit is proposed for enforce (suggest --stable-days). */
export const DEFAULT_STABLE_DAYS = 14;
const DAY_MS = 86_400_000;

/** What could be promoted from audit to enforce. */
export type PromotionTarget =
  /** The policy's own mode (audit). */
  | { kind: 'policy' }
  /** A deny rule in audit by its own mode. */
  | { kind: 'rule'; name: string; line: number }
  /** An audit scope (the policy enforces): removing it enforces its senders. */
  | { kind: 'scope'; name: string; line: number }
  /** A sender seen while the policy audits: an enforce scope of its own. */
  | { kind: 'sender'; user?: number; service?: string };

export interface Promotion {
  target: PromotionTarget;
  /** No would-block record (nor block of its senders for a scope) in the last stableDays, and the history reaches back that far. */
  stable: boolean;
  /** Would-block records that count against it in the last stableDays. */
  wouldBlock: number;
  /** The newest of them (ms), or null. */
  lastWouldBlock: number | null;
  /** Events of the sender in the window (senders only). */
  events?: number;
  /** The change that promotes it, in words a person applies to the policy. */
  proposal: string;
}

export interface PromotionReport {
  stableDays: number;
  /** Start of the window looked at (ms): stableDays before the end. */
  since: number;
  /** The oldest event the store keeps (ms), or null. */
  historyFrom: number | null;
  /** The store's history reaches back stableDays: without that, nothing is called stable. */
  covered: boolean;
  candidates: Promotion[];
}

/**
 * Gradual enforcement, the next step: of what the policy leaves in audit
 * (its mode, deny rules in audit by their own mode, audit scopes, and, while
 * the policy audits, each sender seen), what has been stable: no would-block
 * record counts against it in the last `stableDays` days. Sluice does not
 * know when a scope entered audit, so it asks that the event history reach
 * back the whole period, and for an audit scope it also counts the blocks
 * of its senders recorded before the scope existed. `rows` are scanFlows
 * rows of the window [since, until).
 */
export function promotions(policy: Policy, rows: Iterable<FlowRow>, opts: { stableDays: number; until: number; historyFrom: number | null }): PromotionReport {
  const since = opts.until - opts.stableDays * DAY_MS;
  const covered = opts.historyFrom !== null && opts.historyFrom <= since;
  const tally = new Map<string, { n: number; last: number | null; events: number }>();
  const bump = (key: string, time: number, wb: boolean) => {
    const t = tally.get(key) ?? { n: 0, last: null, events: 0 };
    t.events++;
    if (wb) {
      t.n++;
      if (t.last === null || time > t.last) t.last = time;
    }
    tally.set(key, t);
  };
  const scopes = policy.scopes ?? [];
  const memberOf = (uid: number | null, svc: string | undefined): Scope | undefined =>
    scopes.find((s) => (uid !== null && s.users.some((u) => u.uid === uid)) || (svc !== undefined && s.services.some((x) => (x.kind === 'unit' ? x.unit === svc : svc === x.path || svc.startsWith(`${x.path}/`)))));
  const senders = new Map<string, { user?: number; service?: string }>();
  for (const r of rows) {
    const [time, verdict, rule, , , , , , uid, , , unit, cgroup, , scope] = r;
    if (time < since || time >= opts.until) continue;
    const svc = serviceOf({ ...(unit !== null ? { unit } : {}), ...(cgroup !== null ? { cgroup } : {}) });
    const wb = verdict === 'would-block';
    if (wb && scope === '#rule') bump(`rule:${rule}`, time, true);
    else if (wb && scope) bump(`scope:${scope}`, time, true);
    else if (wb) bump('policy', time, true);
    // A block of an audit scope's sender by the policy's mode: recorded before the scope existed.
    if (verdict === 'blocked' && !scope && policy.mode === 'enforce') {
      const sc = memberOf(uid, svc);
      if (sc?.mode === 'audit') bump(`scope:${sc.name}`, time, true);
    }
    if (policy.mode === 'audit' && !scope && !memberOf(uid, svc)) {
      const key = svc !== undefined && svc.endsWith('.service') ? `svc:${svc}` : uid !== null ? `uid:${uid}` : undefined;
      if (key) {
        senders.set(key, key.startsWith('svc:') ? { service: svc as string } : { user: uid as number });
        bump(`sender:${key}`, time, wb);
      }
    }
  }
  const get = (key: string) => tally.get(key) ?? { n: 0, last: null, events: 0 };
  const candidates: Promotion[] = [];
  const add = (target: PromotionTarget, key: string, proposal: string, withEvents = false) => {
    const t = get(key);
    candidates.push({ target, stable: covered && t.n === 0, wouldBlock: t.n, lastWouldBlock: t.last, ...(withEvents ? { events: t.events } : {}), proposal });
  };
  if (policy.mode === 'audit') {
    add({ kind: 'policy' }, 'policy', scopes.length > 0 ? 'mode: enforce (and remove the enforce scopes, which that makes redundant)' : 'mode: enforce');
  }
  for (const r of policy.rules) if (r.action === 'deny' && r.mode === 'audit') add({ kind: 'rule', name: r.name, line: r.line }, `rule:${r.name}`, `rule ${r.name}: mode: enforce`);
  for (const s of scopes) if (s.mode === 'audit') add({ kind: 'scope', name: s.name, line: s.line }, `scope:${s.name}`, `remove scope ${s.name}: its senders then have the policy's mode (enforce)`);
  for (const [key, who] of [...senders].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const what = who.service !== undefined ? `services: [${who.service}]` : `users: [${who.user}]`;
    add({ kind: 'sender', ...who }, `sender:${key}`, `a scope with mode: enforce and ${what}`, true);
  }
  return { stableDays: opts.stableDays, since, historyFrom: opts.historyFrom, covered, candidates };
}
