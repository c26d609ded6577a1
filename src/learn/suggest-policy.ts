import { Document, isMap, isSeq, type YAMLMap, type YAMLSeq } from '../vendor/yaml.js';
import type { HostFacts } from '../policy/builtins.js';
import type { Policy } from '../policy/policy.js';
import type { Observation, Observations, Principal } from './observations.js';
import { registeredDomain, sharedZoneOf } from './public-suffix.js';
import { isLoopbackFlow, judgeFlow, nameResolves, portToken } from './replay.js';
import { DomainMatcher } from '../dns/domain-matcher.js';
import { refusesOutright } from '../dns/name-refusal.js';
import type { Promotion, PromotionReport } from './promote.js';
import { parseDocumentChecked } from '../policy/yaml-depth.js';

/** How many sibling names under one registered domain make a wildcard. */
export const WILDCARD_MIN_NAMES = 3;

export interface SuggestOptions {
  /** The policy to extend: its file's text (comments and order are kept) and what it loads to. */
  existing?: { policy: Policy; text: string; file: string };
  since: number;
  until: number;
  wildcardMin?: number;
  /** This host's facts for the interpreter (DHCP servers, resolvers, the encrypted-DNS list). */
  facts?: HostFacts;
  /** Gradual enforcement: what in the existing policy could go from audit to enforce (promote.ts), written as comments. */
  promotions?: PromotionReport;
}

/** Counts over a set of observations. */
interface Tally {
  events: number;
  first: number;
  last: number;
  days: Set<number>;
  processes: Set<string>;
}

export interface SuggestedRule {
  name: string;
  principal: Principal;
  to: string[];
  ports: string[];
  events: number;
  first: number;
  last: number;
  days: number;
  processes: string[];
  /** Wildcards written, with the names that made each. */
  wildcards: { pattern: string; names: string[] }[];
  /** Names under zones where anyone can create names (listed one by one, never as a wildcard). */
  shared: { name: string; zone: string }[];
  /**
   * Names resolved but never connected to: the rule lets them resolve and
   * opens nothing (`interfaces: [lo]`: no traffic to them leaves by it).
   * `events` counts lookups then.
   */
  resolveOnly?: boolean;
}

export interface Suggestion {
  yaml: string;
  rules: SuggestedRule[];
  /** Allow rules of the existing policy no observed flow needed in the window. */
  couldGo: { rule: string; line: number }[];
  /** Distinct flows the existing policy already allows, and their events. */
  covered: { flows: number; events: number };
  /** Flows of a protocol a policy cannot name by port (not TCP, UDP, ICMP): left out, counted. */
  unsupported: number;
  /** Resolved names the suggestion cannot make resolve: the existing policy refuses them outright (a deny rule, which an added allow cannot undo). */
  refusedNames: { name: string; lookups: number; why: string }[];
  /**
   * Each new rule alone, by name, as the lines that go under `rules:` (the
   * same node as in `yaml`, comments included): what the dashboard offers to
   * copy rule by rule.
   */
  snippets: Map<string, string>;
}

const MAX_PROCESSES_SHOWN = 6;
const MAX_DAYS = 400;

function tally(): Tally {
  return { events: 0, first: Number.POSITIVE_INFINITY, last: 0, days: new Set(), processes: new Set() };
}

function addTo(t: Tally, o: { flowed: number; first: number; last: number; days: Set<number>; processes: Set<string> }): void {
  t.events += o.flowed;
  t.first = Math.min(t.first, o.first);
  t.last = Math.max(t.last, o.last);
  for (const d of o.days) if (t.days.size < MAX_DAYS) t.days.add(d);
  for (const p of o.processes) if (t.processes.size < MAX_PROCESSES_SHOWN) t.processes.add(p);
}

function merge(into: Tally, t: Tally): void {
  addTo(into, { flowed: t.events, first: t.first, last: t.last, days: t.days, processes: t.processes });
}

/** `2026-12-05T10:04Z`. */
export function stamp(ms: number): string {
  return Number.isFinite(ms) ? `${new Date(ms).toISOString().slice(0, 16)}Z` : '-';
}

function comparePorts(a: string, b: string): number {
  const na = Number.parseInt(a, 10);
  const nb = Number.parseInt(b, 10);
  if (Number.isNaN(na) || Number.isNaN(nb)) return Number.isNaN(na) === Number.isNaN(nb) ? a.localeCompare(b) : Number.isNaN(na) ? 1 : -1;
  return na - nb || a.localeCompare(b);
}

function principalKey(p: Principal): string {
  return p.kind === 'service' ? `s:${p.unit}` : p.kind === 'user' ? `u:${p.uid}` : 'any';
}

/** A rule name from the sender: `svc-nginx`, `user-alice`, `user-1001`, `any`; only a-z 0-9 . _ - (policy rule names). */
function baseName(p: Principal): string {
  const raw = p.kind === 'service' ? `svc-${p.unit.replace(/\.service$/, '')}` : p.kind === 'user' ? `user-${p.name ?? p.uid}` : 'any';
  const clean = raw.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '');
  return (clean || 'rule').slice(0, 40);
}

function describe(t: Tally): string {
  const procs = [...t.processes];
  return `${t.events} event${t.events === 1 ? '' : 's'}, ${stamp(t.first)} to ${stamp(t.last)}, on ${t.days.size} day${t.days.size === 1 ? '' : 's'}${procs.length > 0 ? `; ${procs.join(', ')}` : ''}`;
}

/**
 * A policy that allows what was observed and nothing more, or, given an
 * existing policy, that policy with rules appended for what it does not
 * allow yet and its allow rules no observed flow needed marked as could-go.
 * The YAML is built with the yaml package's Document API, so an existing
 * file's comments and order are kept; every text that came from an event
 * (names, process names) is validated or reduced to harmless characters
 * before it is written, and goes in as a YAML scalar, never pasted.
 */
export function suggestPolicy(obs: Observations, opts: SuggestOptions): Suggestion {
  const existing = opts.existing?.policy;
  const hits = new Map<string, number>(obs.ruleEvents);
  const covered = { flows: 0, events: 0 };
  let unsupported = 0;
  // principal -> destination -> ports, tally
  const groups = new Map<string, { principal: Principal; dests: Map<string, { ports: Set<string>; t: Tally; name: boolean }> }>();
  for (const o of obs.flows.values()) {
    if (o.flowed === 0 || isLoopbackFlow(o.flow)) continue;
    if (existing) {
      const x = judgeFlow(existing, o.flow, opts.facts);
      if (x && x.verdict === 'allow' && (o.flow.hostname === undefined || nameResolves(existing, o.flow.hostname, opts.facts))) {
        covered.flows++;
        covered.events += o.flowed;
        if (x.decidedBy.kind === 'rule') hits.set(x.decidedBy.rule, (hits.get(x.decidedBy.rule) ?? 0) + o.flowed);
        continue;
      }
    }
    const port = portToken(o.flow);
    if (port === undefined) {
      unsupported++;
      continue;
    }
    const pk = principalKey(o.principal);
    let g = groups.get(pk);
    if (!g) {
      g = { principal: o.principal, dests: new Map() };
      groups.set(pk, g);
    }
    const dest = o.flow.hostname ?? o.flow.dst;
    let d = g.dests.get(dest);
    if (!d) {
      d = { ports: new Set(), t: tally(), name: o.flow.hostname !== undefined };
      g.dests.set(dest, d);
    }
    d.ports.add(port);
    addTo(d.t, o);
  }

  const taken = new Set(existing?.rules.map((r) => r.name) ?? []);
  const unique = (base: string): string => {
    let n = base;
    for (let i = 2; taken.has(n); i++) n = `${base.slice(0, 44)}-${i}`;
    taken.add(n);
    return n;
  };
  const rules: SuggestedRule[] = [];
  const wildcardMin = opts.wildcardMin ?? WILDCARD_MIN_NAMES;
  for (const g of [...groups.values()].sort((a, b) => principalKey(a.principal).localeCompare(principalKey(b.principal)))) {
    // One rule per set of ports: destinations that used exactly the same ports share it.
    const byPorts = new Map<string, { ports: string[]; dests: [string, { t: Tally; name: boolean }][] }>();
    for (const [dest, d] of g.dests) {
      const ports = [...d.ports].sort(comparePorts);
      const k = ports.join(',');
      let b = byPorts.get(k);
      if (!b) {
        b = { ports, dests: [] };
        byPorts.set(k, b);
      }
      b.dests.push([dest, d]);
    }
    const base = baseName(g.principal);
    for (const b of [...byPorts.values()].sort((x, y) => x.ports.join(',').localeCompare(y.ports.join(',')))) {
      // Sibling names under one registered domain (never a shared zone) fold into a wildcard.
      const byDomain = new Map<string, string[]>();
      for (const [dest, d] of b.dests) {
        if (!d.name) continue;
        const reg = registeredDomain(dest);
        if (reg === undefined || reg === dest || sharedZoneOf(reg) !== undefined) continue;
        const list = byDomain.get(reg) ?? [];
        list.push(dest);
        byDomain.set(reg, list);
      }
      const folded = new Map<string, string>();
      const wildcards: SuggestedRule['wildcards'] = [];
      for (const [reg, names] of byDomain) {
        if (names.length < wildcardMin) continue;
        for (const n of names) folded.set(n, `*.${reg}`);
        wildcards.push({ pattern: `*.${reg}`, names: names.sort() });
      }
      const entries = new Map<string, Tally>();
      const shared: SuggestedRule['shared'] = [];
      for (const [dest, d] of b.dests) {
        const key = folded.get(dest) ?? dest;
        const t = entries.get(key) ?? tally();
        merge(t, d.t);
        entries.set(key, t);
        const zone = d.name ? sharedZoneOf(dest) : undefined;
        if (zone !== undefined) shared.push({ name: dest, zone });
      }
      const all = tally();
      for (const t of entries.values()) merge(all, t);
      const to = [...entries.keys()].sort();
      rules.push({
        name: unique(base),
        principal: g.principal,
        to,
        ports: b.ports,
        events: all.events,
        first: all.first,
        last: all.last,
        days: all.days.size,
        processes: [...all.processes],
        wildcards,
        shared: shared.sort((x, y) => x.name.localeCompare(y.name)),
      });
      // Per-destination tallies, for the comments.
      (rules[rules.length - 1] as SuggestedRule & { perDest?: Map<string, Tally> }).perDest = entries;
    }
  }

  // Names the workload resolved (stored lookups, connected to or not) must resolve under the suggestion
  // too: those no existing rule or suggested rule lets resolve go into one resolve-only rule.
  const refusedNames: Suggestion['refusedNames'] = [];
  if (obs.names.size > 0) {
    const existingMatcher = existing ? new DomainMatcher(existing) : undefined;
    const suggested = new Set<string>();
    const suffixes = new Set<string>();
    for (const r of rules) for (const t of r.to) (t.startsWith('*.') ? suffixes.add(t.slice(2)) : suggested.add(t));
    const bySuggestion = (name: string) => {
      if (suggested.has(name)) return true;
      for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) if (suffixes.has(name.slice(i + 1))) return true;
      return false;
    };
    const only = new Map<string, Tally>();
    for (const n of obs.names.values()) {
      // The existing policy's rules that let the name resolve were needed in the window.
      if (existingMatcher) for (const r of existingMatcher.match(n.name)) if (r.action === 'allow') hits.set(r.name, (hits.get(r.name) ?? 0) + n.lookups);
      if (bySuggestion(n.name)) continue;
      if (existing && nameResolves(existing, n.name, opts.facts)) continue;
      const outright = existingMatcher?.match(n.name).find(refusesOutright);
      if (outright) {
        const have = refusedNames.find((x) => x.name === n.name);
        if (have) have.lookups += n.lookups;
        else refusedNames.push({ name: n.name, lookups: n.lookups, why: `denied by rule ${outright.name}` });
        continue;
      }
      const t = only.get(n.name) ?? tally();
      addTo(t, { flowed: n.lookups, first: n.first, last: n.last, days: n.days, processes: n.processes });
      only.set(n.name, t);
    }
    if (only.size > 0) {
      const all = tally();
      for (const t of only.values()) merge(all, t);
      rules.push({
        name: unique('resolve-only'),
        principal: { kind: 'any' },
        to: [...only.keys()].sort(),
        ports: [],
        events: all.events,
        first: all.first,
        last: all.last,
        days: all.days.size,
        processes: [...all.processes],
        wildcards: [],
        shared: [],
        resolveOnly: true,
      });
      (rules[rules.length - 1] as SuggestedRule & { perDest?: Map<string, Tally> }).perDest = only;
    }
    refusedNames.sort((a, b) => b.lookups - a.lookups || (a.name < b.name ? -1 : 1));
  }

  const couldGo = existing
    ? existing.rules.filter((r) => r.action === 'allow' && (hits.get(r.name) ?? 0) === 0).map((r) => ({ rule: r.name, line: r.line }))
    : [];
  const snippets = new Map<string, string>();
  const yaml = render(rules, couldGo, opts, snippets);
  return { yaml, rules: rules.map(({ ...r }) => stripPerDest(r)), couldGo, covered, unsupported, refusedNames, snippets };
}

function stripPerDest(r: SuggestedRule & { perDest?: Map<string, Tally> }): SuggestedRule {
  const { perDest: _p, ...rest } = r;
  return rest;
}

const TO_STRING = { flowCollectionPadding: false, lineWidth: 0 } as const;

function render(rules: (SuggestedRule & { perDest?: Map<string, Tally> })[], couldGo: { rule: string; line: number }[], opts: SuggestOptions, snippets: Map<string, string>): string {
  const window = `${stamp(opts.since)} to ${stamp(opts.until)}`;
  let doc: Document;
  if (opts.existing) {
    doc = parseDocumentChecked(opts.existing.text);
  } else {
    doc = new Document({ version: 1, mode: 'audit', rules: [] });
    doc.commentBefore = ` Suggested by \`sluice suggest\` from the traffic observed ${window}.\n Review it, check it (sluice suggest --check FILE), then set mode: enforce.`;
  }
  let seq = doc.get('rules', true);
  if (!isSeq(seq)) {
    seq = doc.createNode([]) as YAMLSeq;
    doc.set('rules', seq);
  }
  const items = (seq as YAMLSeq).items;
  if (opts.existing) {
    const goes = new Set(couldGo.map((c) => c.rule));
    for (const item of items) {
      if (!isMap(item)) continue;
      const name = (item as YAMLMap).get('name');
      if (typeof name !== 'string' || !goes.has(name)) continue;
      const note = ` sluice suggest: no observed flow needed this rule ${window}: it could go`;
      item.commentBefore = item.commentBefore ? `${item.commentBefore}\n${note}` : note;
    }
  }
  if (opts.existing && opts.promotions) annotatePromotions(doc, opts.promotions);
  for (const r of rules) {
    if (r.resolveOnly) {
      const node = doc.createNode({
        name: r.name,
        to: r.to,
        interfaces: ['lo'],
        comment: `suggested: resolved, never connected to: ${r.events} lookup${r.events === 1 ? '' : 's'} ${stamp(r.first)} to ${stamp(r.last)}`.slice(0, 200),
      }) as YAMLMap;
      const lines = [
        ` suggested: names the workload resolved but never connected to (${r.events} lookup${r.events === 1 ? '' : 's'}, ${stamp(r.first)} to ${stamp(r.last)}, on ${r.days} day${r.days === 1 ? '' : 's'})`,
        ' the guard answers them under this rule; interfaces: [lo] opens nothing (no traffic to them leaves by loopback)',
      ];
      if (r.processes.length > 0) lines.push(` processes: ${r.processes.join(', ')}`);
      node.commentBefore = lines.join('\n');
      const to = node.get('to', true) as unknown as YAMLSeq;
      for (const item of to.items) {
        const v = (item as { value?: unknown }).value;
        const t = typeof v === 'string' ? r.perDest?.get(v) : undefined;
        if (t) (item as { comment?: string }).comment = ` ${describe(t).replace(/ events?,/, (m) => m.replace('event', 'lookup'))}`;
      }
      items.push(node);
      const alone = new Document({ rules: [] });
      (alone.get('rules', true) as YAMLSeq).items.push(node);
      snippets.set(r.name, alone.toString(TO_STRING).replace(/^rules:\n/, ''));
      continue;
    }
    const body: Record<string, unknown> = { name: r.name, to: r.to, ports: r.ports };
    if (r.principal.kind === 'service') body.services = [r.principal.unit];
    if (r.principal.kind === 'user') body.users = [r.principal.uid];
    body.comment = `suggested: ${r.events} event${r.events === 1 ? '' : 's'} ${stamp(r.first)} to ${stamp(r.last)}, ${r.days} day${r.days === 1 ? '' : 's'}`.slice(0, 200);
    const node = doc.createNode(body) as YAMLMap;
    const who = r.principal.kind === 'service' ? `service ${r.principal.unit}` : r.principal.kind === 'user' ? `user ${r.principal.name ?? '?'} (uid ${r.principal.uid})` : 'any sender';
    const lines = [` suggested for ${who}: ${r.events} event${r.events === 1 ? '' : 's'}, first ${stamp(r.first)}, last ${stamp(r.last)}, on ${r.days} distinct day${r.days === 1 ? '' : 's'}`];
    if (r.processes.length > 0) lines.push(` processes: ${r.processes.join(', ')}`);
    for (const w of r.wildcards) lines.push(` ${w.pattern}: ${w.names.length} sibling names seen (${w.names.slice(0, 5).join(', ')}${w.names.length > 5 ? ', ...' : ''})`);
    for (const s of r.shared) lines.push(` SHARED ZONE: ${s.name} is under *.${s.zone}, where anyone can create names: allowed by exact name only`);
    node.commentBefore = lines.join('\n');
    const to = node.get('to', true) as unknown as YAMLSeq;
    for (const item of to.items) {
      const v = (item as { value?: unknown }).value;
      const t = typeof v === 'string' ? r.perDest?.get(v) : undefined;
      if (t) (item as { comment?: string }).comment = ` ${describe(t)}`;
    }
    items.push(node);
    // The same node in a document of its own, `rules:` line dropped: the rule's lines as they go under `rules:`.
    const alone = new Document({ rules: [] });
    (alone.get('rules', true) as YAMLSeq).items.push(node);
    snippets.set(r.name, alone.toString(TO_STRING).replace(/^rules:\n/, ''));
  }
  return doc.toString(TO_STRING);
}

/** One promotion as a comment line. */
export function promotionText(p: Promotion, report: PromotionReport): string {
  const last = p.lastWouldBlock !== null ? `, the last ${stamp(p.lastWouldBlock)}` : '';
  if (p.stable) return `stable for ${report.stableDays} days (no would-block): promote: ${p.proposal}`;
  if (!report.covered) return `not yet stable: the event history reaches back ${report.historyFrom === null ? 'no time' : `only to ${stamp(report.historyFrom)}`}, not ${report.stableDays} days (${p.wouldBlock} would-block)`;
  return `not yet stable: ${p.wouldBlock} would-block in the last ${report.stableDays} days${last}`;
}

/**
 * Gradual enforcement: a comment on each thing in audit (a deny rule's own
 * mode, an audit scope; the policy's mode and the senders at the end) with
 * its promotion or why it is not stable yet. Comments only: the policy's
 * meaning is left as it is, for a person to change.
 */
function annotatePromotions(doc: Document, report: PromotionReport): void {
  const note = (node: { commentBefore?: string | null }, text: string) => {
    const line = ` sluice suggest: ${text}`;
    node.commentBefore = node.commentBefore ? `${node.commentBefore}\n${line}` : line;
  };
  const top = [` sluice suggest: promotions after ${report.stableDays} days without would-block (--stable-days ${report.stableDays})`];
  for (const p of report.candidates) {
    if (p.target.kind === 'policy') top.push(` sluice suggest: the policy's mode: ${promotionText(p, report)}`);
    if (p.target.kind === 'sender' && p.stable) top.push(` sluice suggest: ${p.target.service !== undefined ? `service ${p.target.service}` : `uid ${p.target.user}`} (${p.events ?? 0} events): ${promotionText(p, report)}`);
  }
  // At the end of the file: its head (and the comment a person wrote there) stays first.
  doc.comment = doc.comment ? `${doc.comment}\n${top.join('\n')}` : top.join('\n');
  for (const [key, kind] of [['rules', 'rule'], ['scopes', 'scope']] as const) {
    const seq = doc.get(key, true);
    if (!isSeq(seq)) continue;
    for (const item of (seq as YAMLSeq).items) {
      if (!isMap(item)) continue;
      const name = (item as YAMLMap).get('name');
      const p = report.candidates.find((c) => c.target.kind === kind && c.target.name === name);
      if (p) note(item as YAMLMap, promotionText(p, report));
    }
  }
}
