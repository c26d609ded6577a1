import { buildCounterName, DEFAULT_RULE, parseCounterName } from '../compile/kernel-names.js';
import type { CounterValue } from '../netfilter/netfilter.js';
import type { Policy } from '../policy/policy.js';
import type { Family } from '../runtime/metrics.js';

/** What the kernel's counter names need to become labelled metrics: the policy in force, reduced to plain data. */
export interface KernelMetricsContext {
  mode: 'audit' | 'enforce';
  defaultAction: 'allow' | 'deny';
  /** Each policy rule's action, by rule name. */
  actions: Record<string, 'allow' | 'deny'>;
}

const contexts = new WeakMap<Policy, KernelMetricsContext>();

/** The context for a policy, built once per policy object (the rule actions of a 100,000-rule policy are not rebuilt per scrape). */
export function kernelMetricsContext(policy: Policy): KernelMetricsContext {
  let c = contexts.get(policy);
  if (!c) {
    c = { mode: policy.mode, defaultAction: policy.defaultAction, actions: Object.fromEntries(policy.rules.map((r) => [r.name, r.action])) };
    contexts.set(policy, c);
  }
  return c;
}

/**
 * The metric families of the kernel's named counters: packets and bytes per
 * rule (with its action and the mode), and the records each log budget held
 * back. Pure, so the metrics thread runs it next to its own counter read and
 * the event loop that answers DNS never does this work.
 */
export function kernelCounterFamilies(counters: Map<string, CounterValue>, ctx: KernelMetricsContext): Family[] {
  const packets: Family['samples'] = [];
  const bytes: Family['samples'] = [];
  for (const [name, v] of counters) {
    const c = parseCounterName(name);
    let labels: Record<string, string> | undefined;
    if (c?.kind === 'default') labels = { rule: DEFAULT_RULE, action: ctx.defaultAction };
    else if (c?.kind === 'essentials') labels = { rule: 'essentials', action: 'allow' };
    else if (c?.kind === 'rule' && Object.hasOwn(ctx.actions, c.rule)) labels = { rule: c.rule, action: ctx.actions[c.rule] as string };
    if (!labels) continue;
    labels.mode = ctx.mode;
    packets.push({ labels, value: Number(v.packets) });
    bytes.push({ labels, value: Number(v.bytes) });
  }
  const suppressed = (['block', 'allow'] as const).flatMap((log) =>
    (['shared', 'user'] as const).map((budget) => ({ labels: { kind: log, budget }, value: Number(counters.get(buildCounterName({ kind: 'suppressed', log, budget }))?.packets ?? 0n) })),
  );
  return [
    { name: 'sluice_rule_packets_total', help: 'Packets of new flows per rule (exact kernel counters; action and mode say what happened to them)', type: 'counter', samples: packets },
    { name: 'sluice_rule_bytes_total', help: 'Bytes of those packets per rule (kernel counters)', type: 'counter', samples: bytes },
    {
      name: 'sluice_log_suppressed_total',
      help: "Packets not recorded by the kernel log budget: over the shared rate limit, or over the sending user's share of it (kernel counters)",
      type: 'counter',
      samples: suppressed,
    },
  ];
}
