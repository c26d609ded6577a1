import { DEFAULT_RULE } from '../compile/kernel-names.js';
import { formatRange } from '../net/ip.js';
import type { Policy, Rule } from '../policy/policy.js';
import type { Family } from '../runtime/metrics.js';

/**
 * The Policy page's rules: each rule of the applied policy, in policy
 * order, with its action, what it matches (destinations, ports, senders,
 * interfaces, summarised), its own mode and the scopes whose senders it
 * covers, and its kernel hit counters (packets and bytes of new flows since
 * the last apply). The counters are the families `/metrics` and the health
 * page show (kernelCounterFamilies over one counter read), so the pages and
 * a scrape agree. Pure.
 */

/** At most this many rules are listed (a policy may have 100,000); the rest are counted. */
export const MAX_LISTED_RULES = 2_000;
/** At most this many destinations, senders or interfaces are spelled out per rule; the rest are counted. */
const MAX_ITEMS = 6;

export interface DashboardRule {
  name: string;
  action: 'allow' | 'deny';
  line: number;
  /** Destinations, summarised ("any" when the rule has none). */
  to: string;
  /** Ports and protocols ("any"). */
  ports: string;
  /** Users and services ("anyone"). */
  from: string;
  /** Interfaces, or null when the rule names none. */
  interfaces: string | null;
  /** The rule's own mode (deny rules only), or null: the policy's mode and scopes decide. */
  mode: 'audit' | 'enforce' | null;
  /** The scopes (the other mode) some of whose senders this rule covers. */
  scopes: string[];
  log: boolean;
  comment: string | null;
  /** Kernel counters since the last apply; null when they could not be read, or the kernel has no counter of this rule. */
  packets: number | null;
  bytes: number | null;
}

export interface DashboardRules {
  /** Whether the kernel's counters were read (false: no table, or the read failed). */
  counted: boolean;
  mode: 'audit' | 'enforce';
  defaultAction: 'allow' | 'deny';
  scopes: { name: string; mode: 'audit' | 'enforce'; who: string }[];
  total: number;
  rules: DashboardRule[];
  /** Rules no packet matched since the last apply, by name, in policy order (the first MAX_LISTED_RULES; listed or not). */
  neverHit: string[];
  /** How many rules no packet matched (null: not counted). */
  neverHitTotal: number | null;
  /** The packets the default action took (no rule matched). */
  default: { action: 'allow' | 'deny'; packets: number | null; bytes: number | null };
}

function list(items: string[], none: string): string {
  if (items.length === 0) return none;
  const shown = items.slice(0, MAX_ITEMS).join(', ');
  return items.length > MAX_ITEMS ? `${shown} and ${items.length - MAX_ITEMS} more` : shown;
}

function ports(r: Rule): string {
  const items = r.ports.map((p) => `${p.from === p.to ? p.from : `${p.from}-${p.to}`}/${p.proto}`);
  if (r.icmp) items.push('icmp');
  if (r.icmpv6) items.push('icmpv6');
  return list(items, 'any');
}

const userText = (u: { uid: number; name?: string }) => (u.name !== undefined ? `user ${u.name}` : `uid ${u.uid}`);
const serviceText = (s: Rule['services'][number]) => (s.kind === 'unit' ? `service ${s.unit}` : `cgroup ${s.path}`);

/** Per rule name, packets and bytes from the kernel counter families. */
function countersByRule(families: Family[]): { packets: Map<string, number>; bytes: Map<string, number> } {
  const pick = (name: string) => new Map((families.find((f) => f.name === name)?.samples ?? []).map((s) => [String(s.labels.rule), s.value] as const));
  return { packets: pick('sluice_rule_packets_total'), bytes: pick('sluice_rule_bytes_total') };
}

/** The rules of `policy` with the counters of `families` (kernelCounterFamilies; null: not read). */
export function dashboardRules(policy: Policy, families: Family[] | null): DashboardRules {
  const c = families ? countersByRule(families) : null;
  const senders = (r: Rule) => new Set([...r.users.map(userText), ...r.services.map(serviceText)]);
  const scopeSenders = policy.scopes.map((s) => ({ name: s.name, who: [...s.users.map(userText), ...s.services.map(serviceText)] }));
  const row = (r: Rule): DashboardRule => {
    const own = senders(r);
    return {
      name: r.name,
      action: r.action,
      line: r.line,
      to: list([...r.domains.map((d) => d.text), ...r.addrs.map(formatRange)], 'any'),
      ports: ports(r),
      from: list([...own], 'anyone'),
      interfaces: r.interfaces.length > 0 ? list(r.interfaces.map((i) => (i.wildcard ? `${i.name}*` : i.name)), '') : null,
      mode: r.mode ?? null,
      scopes: scopeSenders.filter((s) => own.size === 0 || s.who.some((w) => own.has(w))).map((s) => s.name),
      log: r.log,
      comment: r.comment ?? null,
      // A rule whose counter is not in the kernel (a drifted table) is unknown, not unhit.
      packets: c?.packets.get(r.name) ?? null,
      bytes: c?.bytes.get(r.name) ?? null,
    };
  };
  const never = c ? policy.rules.filter((r) => c.packets.get(r.name) === 0).map((r) => r.name) : [];
  return {
    counted: c !== null,
    mode: policy.mode,
    defaultAction: policy.defaultAction,
    scopes: policy.scopes.map((s, i) => ({ name: s.name, mode: s.mode, who: list(scopeSenders[i]?.who ?? [], 'nobody') })),
    total: policy.rules.length,
    rules: policy.rules.slice(0, MAX_LISTED_RULES).map(row),
    neverHit: never.slice(0, MAX_LISTED_RULES),
    neverHitTotal: c ? never.length : null,
    default: { action: policy.defaultAction, packets: c ? (c.packets.get(DEFAULT_RULE) ?? 0) : null, bytes: c ? (c.bytes.get(DEFAULT_RULE) ?? 0) : null },
  };
}
