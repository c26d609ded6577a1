import { endpoint } from '../../events/format-event.js';
import { hostFactsFor } from '../../system/compile-env.js';
import { listConnections, type Connection } from '../../monitor/connections.js';
import type { Policy } from '../../policy/policy.js';
import type { AppliedState } from '../../state/state-store.js';
import { loadAppliedPolicy as loadFromState } from '../../state/load-applied-policy.js';
import { EXIT, type Context } from '../context.js';

/** The applied policy, parsed from the state directory's snapshot (see src/state/load-applied-policy.ts). */
export function loadAppliedPolicy(ctx: Context): { policy: Policy; applied: AppliedState } | null {
  return loadFromState(ctx.state);
}

/** The applied policy, for naming each connection's rule; null when none (or unreadable: names are a nicety here). */
export function appliedPolicy(ctx: Context): Policy | null {
  try {
    return loadAppliedPolicy(ctx)?.policy ?? null;
  } catch {
    return null;
  }
}

function age(s: number | undefined): string {
  if (s === undefined) return '-';
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/** A text table of connections. */
export function connectionLines(conns: Connection[]): string[] {
  const rows = conns.map((c) => [
    c.process?.comm ?? '?',
    c.process ? String(c.process.pid) : '-',
    c.user ?? String(c.uid),
    c.process?.unit ?? '-',
    c.proto,
    endpoint(c.family, c.local, c.localPort),
    endpoint(c.family, c.remote, c.remotePort),
    c.hostname ?? '-',
    c.rule ?? '-',
    c.state,
    age(c.ageSeconds),
  ]);
  const head = ['PROCESS', 'PID', 'USER', 'SERVICE', 'PROTO', 'LOCAL', 'REMOTE', 'HOSTNAME', 'RULE', 'STATE', 'AGE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) => r.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)];
}

/** `sluice connections [--json]`: live outbound connections with their process, from the kernel's tables. */
export async function connections(ctx: Context): Promise<number> {
  ctx.useSavedHostnames();
  const policy = appliedPolicy(ctx);
  const opened = await ctx.openedAddresses();
  const snap = listConnections({ policy, opened, ...(policy ? { facts: hostFactsFor(policy) } : {}) });
  ctx.result(snap);
  if (snap.connections.length === 0) ctx.say('No outbound connections.');
  else for (const l of connectionLines(snap.connections)) ctx.say(l);
  if (snap.conntrack.unavailable) ctx.say(`(conntrack unavailable: ${snap.conntrack.unavailable}; no ages)`);
  else if (!snap.conntrack.timestamps && snap.connections.length > 0) ctx.say('(ages need conntrack timestamps: sysctl net.netfilter.nf_conntrack_timestamp=1)');
  return EXIT.ok;
}
