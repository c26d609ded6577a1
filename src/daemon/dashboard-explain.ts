import { objectNames } from '../compile/kernel-names.js';
import { TABLE_NAME } from '../compile/ruleset.js';
import { hostAddresses } from '../net/host-addresses.js';
import type { AddrRange } from '../net/ip.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import { parseDest } from '../policy/explain-dest.js';
import { explain, type Query } from '../policy/explain.js';
import { parseUser } from '../policy/parse-values.js';
import type { Policy } from '../policy/policy.js';
import { hostFactsFor } from '../system/compile-env.js';
import { lookupUsers } from '../system/users.js';
import type { Parsed } from './dashboard-query.js';

const PORT_ARG = /^(?:([0-9]{1,5})(?:\/(tcp|udp))?|tcp|udp|icmp|icmpv6)$/;

/**
 * The dashboard's explain box: the interpreter `sluice explain` uses
 * (policy/explain.ts), on the applied policy, with the addresses the DNS
 * guard learned (from the live table) and this host's own addresses, as the
 * command does. Arguments are parsed with the command's parsers; a bad one
 * is an error message, never an exception.
 */
export function explainForDashboard(policy: Policy, args: { dest: string; port?: string; user?: string }, nf: Netfilter | null): Parsed<Record<string, unknown>> {
  let query: Query;
  try {
    query = { dest: parseDest(args.dest) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  if (args.port !== undefined) {
    const m = PORT_ARG.exec(args.port.toLowerCase());
    if (!m) return { ok: false, error: 'Bad port: want PORT, PORT/tcp, PORT/udp, tcp, udp, icmp or icmpv6' };
    if (m[1] !== undefined) {
      const port = Number(m[1]);
      if (port < 1 || port > 65535) return { ok: false, error: 'Bad port: a port is 1 to 65535' };
      query.port = port;
      query.proto = (m[2] as 'tcp' | 'udp' | undefined) ?? 'tcp';
    } else query.proto = args.port.toLowerCase() as Query['proto'];
  }
  if (args.user !== undefined) {
    const u = parseUser(args.user);
    if (!u.ok) return { ok: false, error: `Bad user: ${u.reason}` };
    if (u.value.uid !== undefined) query.uid = u.value.uid;
    else {
      const uid = lookupUsers([args.user]).get(args.user);
      if (uid === undefined) return { ok: false, error: 'No such user' };
      query.uid = uid;
    }
  }
  if (nf && query.dest.kind === 'range' && policy.rules.some((r) => r.domains.length > 0)) {
    try {
      const live = nf.read(TABLE_NAME, { elements: 'dynamic' });
      if (live) {
        const learned = new Map<string, AddrRange[]>();
        for (const rule of policy.rules) {
          const names = new Set([objectNames.dnsSet(rule.name, 4), objectNames.dnsSet(rule.name, 6)]);
          const addrs = live.ruleset.sets
            .filter((s) => names.has(s.name))
            .flatMap((s) => s.elements)
            .flatMap((e) => (e.t === 'addr' ? [{ family: e.family, start: e.start, end: e.end }] : []));
          if (addrs.length > 0) learned.set(rule.name, addrs);
        }
        query.learned = learned;
      }
    } catch {
      // The policy alone, then.
    }
  }
  const d = query.dest;
  if (d.kind === 'range' && d.range.start === d.range.end && hostAddresses().some((a) => a.family === d.range.family && a.value === d.range.start)) query.local = true;
  const ex = explain(policy, query, hostFactsFor(policy));
  const { learned: _learned, ...shown } = query;
  return { ok: true, value: JSON.parse(JSON.stringify({ query: shown, mode: policy.mode, ...ex }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as Record<string, unknown> };
}
