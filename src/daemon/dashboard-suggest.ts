import { safeText } from '../learn/observations.js';
import { checkPolicy } from '../learn/check-policy.js';
import type { Promotion, PromotionReport } from '../learn/promote.js';
import { promotionText, type SuggestedRule } from '../learn/suggest-policy.js';
import { checkedSuggestion, scanWindow, type FlowSource } from '../learn/suggest-report.js';
import type { HostFacts } from '../policy/builtins.js';
import { parsePolicy } from '../policy/load-policy.js';
import type { Policy } from '../policy/policy.js';
import { textDiff } from '../policy/text-diff.js';
import { lookupUsers } from '../system/users.js';
import { hostFactsFor } from '../system/compile-env.js';
import { MAX_SUGGEST_DAYS, type SuggestRequest } from './dashboard-query.js';

/**
 * The dashboard's Suggestions page: `sluice suggest` against the applied
 * policy, and `sluice suggest --check` of the result, from one bounded pass
 * over the event store (the functions the command runs: scanWindow,
 * checkedSuggestion, checkPolicy; nothing of their logic is repeated here).
 * Bounded: the window is at most MAX_SUGGEST_DAYS (the parser), the scan
 * stops after `budgetMs` and says where, the flows are capped at
 * `maxFlows`, the listed breaking flows at 20. Runs in a worker the
 * dashboard's thread starts for it (dashboard-suggest-runner.ts), never on
 * the daemon's thread nor the dashboard's.
 */

/** The policy in force, as the thread has it loaded from its snapshot. */
export interface SuggestBase {
  policy: Policy;
  text: string;
  sha256: string;
  file: string;
  /** Reads another text as the applied one was read (its list files as applied). */
  parse: (text: string) => Policy;
}

export interface SuggestLimits {
  /** Stop reading the store after this long (ms). */
  budgetMs: number;
  /** At most this many distinct flows (the CLI's 500,000 is more than one request should hold). */
  maxFlows: number;
  /** This host's facts for the interpreter; default: hostFactsFor each policy, as the command does. */
  facts?: HostFacts;
  now?: () => number;
}

export const SUGGEST_LIMITS: SuggestLimits = { budgetMs: 10_000, maxFlows: 100_000 };

const iso = (ms: number | null) => (ms === null || !Number.isFinite(ms) ? null : new Date(ms).toISOString());

function sender(r: SuggestedRule): string {
  const p = r.principal;
  return p.kind === 'service' ? `service ${p.unit}` : p.kind === 'user' ? `user ${p.name ?? '?'} (uid ${p.uid})` : 'any sender';
}

function promotionWhat(p: Promotion): string {
  const t = p.target;
  return t.kind === 'policy' ? "the policy's mode" : t.kind === 'rule' ? `deny rule ${t.name}` : t.kind === 'scope' ? `scope ${t.name}` : t.service !== undefined ? `service ${t.service}` : `uid ${t.user}`;
}

function promotionsOut(promo: PromotionReport) {
  return {
    stableDays: promo.stableDays,
    since: iso(promo.since),
    historyFrom: iso(promo.historyFrom),
    covered: promo.covered,
    candidates: promo.candidates.map((p) => ({ what: promotionWhat(p), stable: p.stable, wouldBlock: p.wouldBlock, lastWouldBlock: iso(p.lastWouldBlock), proposal: p.proposal, text: promotionText(p, promo) })),
  };
}

/** The answer of `GET /api/suggest`; `store` null: nothing recorded yet. */
export function suggestForDashboard(store: FlowSource | null, base: SuggestBase | null, req: SuggestRequest, limits: SuggestLimits = SUGGEST_LIMITS): Record<string, unknown> {
  const now = limits.now ?? Date.now;
  const started = now();
  const window = { since: iso(req.since), until: iso(req.until - 1), asked: req.sinceText };
  const head = { window, applied: base?.sha256 ?? null, base: base?.file ?? null, limits: { maxDays: MAX_SUGGEST_DAYS, budgetMs: limits.budgetMs, maxFlows: limits.maxFlows } };
  if (!store) return { ...head, store: false, events: 0, flows: 0, rules: [], neverHit: [], check: null, promotions: null, diff: null, complete: true, cutAt: null, elapsedMs: 0 };
  const scan = scanWindow(store, { since: req.since, until: req.until, maxFlows: limits.maxFlows, budgetMs: limits.budgetMs, now, ...(base ? { promotions: { policy: base.policy, stableDays: req.stableDays } } : {}) });
  const complete = scan.cutAt === null;
  const parse = base?.parse ?? ((text: string) => parsePolicy(Buffer.from(text), '(suggestion)', { lookupUsers }));
  const factsOf = (p: Policy) => limits.facts ?? hostFactsFor(p);
  const { suggestion: s, policy } = checkedSuggestion(scan.obs, { ...(base ? { existing: { policy: base.policy, text: base.text, file: base.file }, facts: factsOf(base.policy) } : {}), ...(scan.promo ? { promotions: scan.promo } : {}), since: req.since, until: req.until }, parse);
  const check = checkPolicy(policy, scan.obs, 20, factsOf(policy));
  return {
    ...head,
    store: true,
    events: scan.obs.events,
    flows: scan.obs.flows.size,
    overflow: scan.obs.overflow,
    unsupported: s.unsupported,
    covered: s.covered,
    // A cut scan read only part of the window: its rules are still traffic that was seen, but "never hit" and promotions would be guesses.
    complete,
    cutAt: iso(scan.cutAt),
    rules: s.rules.map((r) => ({
      name: r.name,
      sender: sender(r),
      principal: r.principal,
      to: r.to,
      ports: r.ports,
      events: r.events,
      first: iso(r.first),
      last: iso(r.last),
      days: r.days,
      processes: r.processes.map((p) => safeText(p, 32)),
      wildcards: r.wildcards,
      shared: r.shared,
      sharedZone: r.shared.length > 0,
      // Names resolved but never connected to: the rule lets them resolve and opens nothing (`events` counts lookups).
      resolveOnly: r.resolveOnly === true,
      yaml: s.snippets.get(r.name) ?? '',
    })),
    neverHit: complete ? s.couldGo : [],
    check: {
      events: check.events,
      flows: check.flows,
      wouldBreak: check.wouldBreak,
      wouldBlock: check.wouldBlock,
      audited: check.audited,
      overflow: check.overflow,
      resolved: check.resolved,
    },
    refusedNames: s.refusedNames,
    promotions: scan.promo ? promotionsOut(scan.promo) : null,
    diff: base ? textDiff(base.text, s.yaml, `applied ${base.sha256.slice(0, 16)}`, 'suggested') : null,
    elapsedMs: Math.round(now() - started),
  };
}
