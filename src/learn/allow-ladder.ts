import { isDeepStrictEqual } from 'node:util';
import type { StoredEvent } from '../events/event-store.js';
import type { FlowRow } from '../events/sqlite-store.js';
import type { HostFacts } from '../policy/builtins.js';
import type { Policy } from '../policy/policy.js';
import { Document, isMap, isSeq, type YAMLMap, type YAMLSeq } from '../vendor/yaml.js';
import { factsOf, flowFrom, principalOf, safeHostname, safeText, type Principal } from './observations.js';
import { registeredDomain, sharedZoneOf } from './public-suffix.js';
import { isLoopbackFlow, judgeFlow, nameResolves, portToken, type ObservedFlow } from './replay.js';
import { stamp } from './suggest-policy.js';
import { parseDocumentChecked } from '../policy/yaml-depth.js';

/**
 * "Allow this": from one blocked (or would-block) event, the rules that
 * would let it through, narrowest first, each with what else it would let
 * through. Every figure comes from the compiler's own interpreter (judgeFlow,
 * explain's semantics, property-tested against the kernel ruleset) run on
 * the policy as it would be with the rule added, parsed by the same loader
 * `sluice apply` uses:
 *
 * 1. this sender (its systemd service, else its user) + this name + this port;
 * 2. this name + this port, any sender;
 * 3. the name's zone (`*.registered-domain`) + this port: flagged when the
 *    zone is one where anyone can create names (github.io, cloudfront.net...);
 * 4. this address + this port, any sender (when the program connects by name
 *    and no rule lists the name, the guard still refuses the name: said).
 *
 * A step whose policy would still block the event (a deny rule decides it)
 * is not offered; when none would allow it the answer says which rule
 * stands in the way. Nothing here writes anything: the rule text and the
 * whole new policy are for review (and for `sluice apply --confirm`).
 */

export type StepId = 'sender-name' | 'name' | 'zone' | 'sender-address' | 'address';

export interface LadderStep {
  id: StepId;
  title: string;
  rule: { name: string; to: string[]; ports: string[]; users?: number[]; services?: string[]; comment: string };
  /** The rule as it is appended to the policy's rules. */
  yaml: string;
  /** The whole policy with it: the applied policy's text, comments and order kept. */
  policy: string;
  /** What else it would let through: stored blocked and would-block events of the window that the policy with this rule allows, other than this flow's. */
  impact: { events: number; flows: number; processes: string[]; senders: string[]; destinations: string[] };
  sharedZone?: string;
  warnings: string[];
  /** The unified diff from the applied policy's text to `policy` (the dashboard adds it). */
  diff?: string;
}

export interface Ladder {
  event: { id: number; time: number; verdict: string; rule: string; dst: string; port?: string; hostname?: string; sender: string };
  steps: LadderStep[];
  /** Why nothing can be offered (not a blocked event, a deny rule decides it...). */
  refused?: string;
  /** The window the impact figures cover, and how many refused flows it held (bounded). */
  window: { since: number; until: number; flows: number; overflow: number };
  /** The applied policy's hash it was computed against (an apply of a step names it: 409 when another is applied by then). */
  applied?: string;
}

export interface LadderInput {
  event: StoredEvent;
  /** The applied policy: its text (the snapshot `sluice apply` stored) and what it parses to. */
  existing: { policy: Policy; text: string };
  /** Parses a policy text the way apply would (the applied snapshot's list files included); throws on a bad policy. */
  parse: (text: string) => Policy;
  /** Stored events of the window, as scanFlows rows. */
  history: Iterable<FlowRow>;
  since: number;
  until: number;
  facts?: HostFacts;
}

const MAX_FLOWS = 100_000;
const MAX_LISTED = 8;
/** Rule names as the policy takes them: a-z 0-9 . _ - from a letter or digit, at most 48. */
const RULE_NAME_MAX = 48;

function senderText(p: Principal): string {
  return p.kind === 'service' ? `service ${p.unit}` : p.kind === 'user' ? `user ${p.name ?? p.uid} (uid ${p.uid})` : 'an unknown sender';
}

function flowKey(f: ObservedFlow, p: Principal): string {
  return `${f.dst}|${f.proto}|${f.dport ?? ''}|${f.icmpType ?? ''}|${f.iface ?? ''}|${f.uid ?? ''}|${f.service ?? ''}|${f.hostname ?? ''}|${p.kind === 'service' ? p.unit : ''}`;
}

interface Refused {
  flow: ObservedFlow;
  principal: Principal;
  events: number;
  processes: Set<string>;
}

/** Blocked and would-block rows folded into distinct flows (bounded). */
function foldRefused(rows: Iterable<FlowRow>): { flows: Map<string, Refused>; overflow: number } {
  const flows = new Map<string, Refused>();
  let overflow = 0;
  for (const r of rows) {
    if (r[1] === 'allowed') continue;
    const flow = flowFrom(r);
    const principal = principalOf(r[8], r[9], r[11], r[12]);
    const key = flowKey(flow, principal);
    let x = flows.get(key);
    if (!x) {
      if (flows.size >= MAX_FLOWS) {
        overflow++;
        continue;
      }
      x = { flow, principal, events: 0, processes: new Set() };
      flows.set(key, x);
    }
    x.events++;
    if (r[10] !== null && x.processes.size < MAX_LISTED) x.processes.add(safeText(r[10], 32));
  }
  return { flows, overflow };
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/-+$/, '');
}

function uniqueName(base: string, taken: Set<string>): string {
  const b = (slug(base) || 'allow').slice(0, RULE_NAME_MAX - 4).replace(/[^a-z0-9]+$/, '');
  if (!taken.has(b)) return b;
  for (let i = 2; ; i++) if (!taken.has(`${b}-${i}`)) return `${b}-${i}`;
}

/**
 * The policy text with one rule appended to `rules`: the file's text kept
 * byte for byte (leading blank lines, spacing, comments, a missing final
 * newline) and the rule's lines inserted after the last rule, at its
 * indentation, so a diff against the applied text only adds. Where the text
 * cannot be spliced so (rules written as a non-empty flow list, several
 * documents), or the splice does not read back as the old rules plus this
 * one, the document is written out again with the YAML library instead
 * (comments and order kept, the formatting normalised).
 */
function withRule(text: string, rule: LadderStep['rule']): { policy: string; yaml: string } {
  // The rule alone, as a one-item list: what a reviewer reads and could paste under rules:.
  const yaml = new Document([rule]).toString({ flowCollectionPadding: false, lineWidth: 0 });
  const doc = parseDocumentChecked(text);
  const spliced = doc.errors.length === 0 ? splice(text, doc.get('rules', true), yaml) : null;
  if (spliced !== null && readsAs(spliced, doc.toJS() as unknown, rule)) return { policy: spliced, yaml };
  let seq = doc.get('rules', true);
  if (!isSeq(seq)) {
    seq = doc.createNode([]) as YAMLSeq;
    doc.set('rules', seq);
  }
  const rules = seq as YAMLSeq;
  // `rules: []` is written in flow style; a rule appended there reads better as a block.
  if (rules.items.length === 0) rules.flow = false;
  rules.items.push(doc.createNode(rule) as YAMLMap);
  return { policy: doc.toString({ flowCollectionPadding: false, lineWidth: 0 }), yaml };
}

/** `yaml` (a one-item block list) inserted into `text` as the last item of `rules` (the parsed node; undefined: no such key); null where that is not a plain insertion. */
function splice(text: string, rules: unknown, yaml: string): string | null {
  // A file written with CRLF line ends gets the rule's lines with CRLF too.
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const indented = (n: number) => yaml.replace(/^(?=.)/gm, ' '.repeat(n)).replace(/\n/g, eol);
  const withNewline = (t: string) => (t === '' || t.endsWith('\n') ? t : `${t}${eol}`);
  if (rules === undefined) return `${withNewline(text)}rules:${eol}${indented(0)}`;
  if (!isSeq(rules) || !rules.range) return null;
  const [start, end] = rules.range;
  if (rules.flow) {
    if (rules.items.length > 0) return null;
    // `rules: []`: the empty list becomes a block list of one (the spaces before the brackets go too, the rest of the line stays).
    let from = start;
    while (from > 0 && text[from - 1] === ' ') from--;
    const lineEnd = text.indexOf('\n', end);
    const rest = lineEnd === -1 ? text.slice(end) : text.slice(end, lineEnd);
    const after = lineEnd === -1 ? '' : text.slice(lineEnd + 1);
    return `${text.slice(0, from)}${rest.trimEnd()}${eol}${indented(2)}${after}`;
  }
  // A block list: its items start at the column of the first `-`; the new one goes after the last item's lines.
  const column = start - (text.lastIndexOf('\n', start - 1) + 1);
  // At the end of the line the last item ends on (a comment after it stays on its line).
  const nl = end > 0 && text[end - 1] === '\n' ? end - 1 : text.indexOf('\n', end);
  const cut = nl === -1 ? text.length : nl + 1;
  return `${withNewline(text.slice(0, cut))}${indented(column)}${text.slice(cut)}`;
}

/** Whether `policy` parses, without errors, as `before` (a policy's plain data) with `rule` appended to its rules. */
function readsAs(policy: string, before: unknown, rule: LadderStep['rule']): boolean {
  const d = parseDocumentChecked(policy);
  if (d.errors.length > 0 || typeof before !== 'object' || before === null) return false;
  const old = (before as { rules?: unknown }).rules;
  const want = { ...(before as Record<string, unknown>), rules: [...(Array.isArray(old) ? (old as unknown[]) : []), JSON.parse(JSON.stringify(rule)) as unknown] };
  return isDeepStrictEqual(d.toJS() as unknown, want);
}

function ruleNames(text: string): Set<string> {
  const names = new Set<string>();
  const seq = parseDocumentChecked(text).get('rules', true);
  if (isSeq(seq)) {
    for (const item of seq.items) {
      const n = isMap(item) ? item.get('name') : undefined;
      if (typeof n === 'string') names.add(n);
    }
  }
  return names;
}

export function allowLadder(input: LadderInput): Ladder {
  const { event: e, existing } = input;
  const row = factsOf(e);
  const flow = flowFrom(row);
  const principal = principalOf(row[8], row[9], row[11], row[12]);
  const port = portToken(flow);
  const hostname = safeHostname(e.hostname);
  const { flows, overflow } = foldRefused(input.history);
  const ladder: Ladder = {
    event: { id: e.id, time: e.time, verdict: e.verdict, rule: e.rule, dst: e.dst, ...(port !== undefined ? { port } : {}), ...(hostname !== undefined ? { hostname } : {}), sender: senderText(principal) },
    steps: [],
    window: { since: input.since, until: input.until, flows: flows.size, overflow },
  };
  if (e.verdict === 'allowed') return { ...ladder, refused: 'this event was allowed: there is nothing to allow' };
  if (port === undefined) return { ...ladder, refused: `protocol ${e.proto}: a policy names TCP, UDP, ICMP and ICMPv6 only` };
  if (isLoopbackFlow(flow)) return { ...ladder, refused: 'loopback is always allowed' };
  const now = judgeFlow(existing.policy, flow, input.facts);
  if (now && now.verdict === 'allow') return { ...ladder, refused: `the policy in force allows this already (${now.summary})` };

  const taken = ruleNames(existing.text);
  const when = stamp(e.time);
  const sender: Pick<LadderStep['rule'], 'users' | 'services'> | null = principal.kind === 'service' ? { services: [principal.unit] } : principal.kind === 'user' ? { users: [principal.uid] } : null;
  const senderSlug = principal.kind === 'service' ? principal.unit.replace(/\.service$/, '') : principal.kind === 'user' ? (principal.name ?? String(principal.uid)) : '';
  const candidates: { id: StepId; title: string; to: string[]; who: typeof sender; base: string; zone?: string }[] = [];
  if (hostname !== undefined) {
    if (sender) candidates.push({ id: 'sender-name', title: `${senderText(principal)} to ${hostname} on ${port}`, to: [hostname], who: sender, base: `${senderSlug}-${hostname}` });
    candidates.push({ id: 'name', title: `anyone to ${hostname} on ${port}`, to: [hostname], who: null, base: hostname });
    const shared = sharedZoneOf(hostname);
    const zone = registeredDomain(hostname);
    if (zone !== undefined && zone !== hostname) {
      candidates.push({ id: 'zone', title: `anyone to any name under ${zone} on ${port}`, to: [`*.${zone}`], who: null, base: `any.${zone}`, ...(shared !== undefined ? { zone: shared } : {}) });
    }
  } else if (sender) {
    candidates.push({ id: 'sender-address', title: `${senderText(principal)} to ${e.dst} on ${port}`, to: [e.dst], who: sender, base: `${senderSlug}-${e.dst}` });
  }
  candidates.push({ id: 'address', title: `anyone to ${e.dst} on ${port}`, to: [e.dst], who: null, base: e.dst });

  const ownKey = flowKey(flow, principal);
  const ownProcs = flows.get(ownKey)?.processes ?? new Set<string>();
  // The other flows the policy in force refuses (judged once; each step judges only these again).
  const others: Refused[] = [];
  for (const [key, r] of flows) {
    if (key === ownKey || isLoopbackFlow(r.flow)) continue;
    if (judgeFlow(existing.policy, r.flow, input.facts)?.verdict !== 'allow') others.push(r);
  }
  const blockers = new Set<string>();
  for (const c of candidates) {
    const name = uniqueName(`allow-${c.base}`, taken);
    const rule: LadderStep['rule'] = { name, to: c.to, ports: [port], ...(c.who ?? {}), comment: `allowed from the dashboard: event ${e.id}, ${e.verdict} ${when}`.slice(0, 200) };
    const { policy: text, yaml } = withRule(existing.text, rule);
    let candidate: Policy;
    try {
      candidate = input.parse(text);
    } catch (err) {
      // A value the loader refuses (a name it cannot hold): this step is not offered.
      blockers.add(`${c.id}: ${(err as Error).message}`);
      continue;
    }
    const verdict = judgeFlow(candidate, flow, input.facts);
    if (!verdict || verdict.verdict !== 'allow') {
      blockers.add(verdict?.decidedBy.kind === 'rule' ? `rule ${verdict.decidedBy.rule} (line ${verdict.decidedBy.line}) ${verdict.decidedBy.action === 'deny' ? 'denies' : 'decides'} it` : (verdict?.summary ?? 'the interpreter cannot judge this destination'));
      continue;
    }
    const impact: LadderStep['impact'] = { events: 0, flows: 0, processes: [], senders: [], destinations: [] };
    const procs = new Set<string>();
    const senders = new Set<string>();
    const dests = new Set<string>();
    for (const r of others) {
      if (judgeFlow(candidate, r.flow, input.facts)?.verdict !== 'allow') continue;
      impact.events += r.events;
      impact.flows++;
      for (const p of r.processes) if (!ownProcs.has(p) && procs.size < MAX_LISTED) procs.add(p);
      const s = senderText(r.principal);
      if (s !== ladder.event.sender && senders.size < MAX_LISTED) senders.add(s);
      if (dests.size < MAX_LISTED) dests.add(`${r.flow.hostname ?? r.flow.dst} ${portToken(r.flow) ?? ''}`.trim());
    }
    impact.processes = [...procs];
    impact.senders = [...senders];
    impact.destinations = [...dests];
    const warnings: string[] = [];
    // The zone is found with the Public Suffix List, where shared zones count as suffixes: the wildcard stops at one owner's site.
    if (c.zone !== undefined) warnings.push(`${c.to[0]} is one site under ${c.zone}, a zone where anyone can create names: it covers that site's names only, whoever controls the site`);
    if (hostname !== undefined && !nameResolves(candidate, hostname)) warnings.push(`${hostname} would still not resolve (no allow rule lists it): a program that connects by name still fails`);
    if (c.id === 'address' && hostname !== undefined) warnings.push(`any name that resolves to ${e.dst} is reachable on ${port} (shared hosting and CDNs put many sites on one address)`);
    ladder.steps.push({ id: c.id, title: c.title, rule, yaml, policy: text, impact, ...(c.zone !== undefined ? { sharedZone: c.zone } : {}), warnings });
  }
  if (ladder.steps.length === 0) return { ...ladder, refused: `no allow rule can let this through: ${[...blockers].join('; ') || 'the interpreter says block'}` };
  return ladder;
}
