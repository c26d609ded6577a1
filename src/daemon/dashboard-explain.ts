import { hostAddresses } from '../net/host-addresses.js';
import { learnedAddresses } from '../netfilter/learned-addresses.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import { parseDest, parseExplainPort } from '../policy/explain-args.js';
import { explain, type Query } from '../policy/explain.js';
import { parseUser } from '../policy/parse-values.js';
import type { Policy } from '../policy/policy.js';
import { hostFactsFor } from '../system/compile-env.js';
import { lookupUsers } from '../system/users.js';
import type { Parsed } from './dashboard-query.js';

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
    let port: ReturnType<typeof parseExplainPort>;
    try {
      port = parseExplainPort(args.port);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    if (!port) return { ok: false, error: 'Bad port: want PORT, PORT/tcp, PORT/udp, tcp, udp, icmp or icmpv6' };
    Object.assign(query, port);
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
  if (nf && query.dest.kind === 'range') {
    const learned = learnedAddresses(nf, policy);
    if (learned) query.learned = learned;
  }
  const d = query.dest;
  if (d.kind === 'range' && d.range.start === d.range.end && hostAddresses().some((a) => a.family === d.range.family && a.value === d.range.start)) query.local = true;
  const ex = explain(policy, query, hostFactsFor(policy));
  const { learned: _learned, ...shown } = query;
  return { ok: true, value: JSON.parse(JSON.stringify({ query: shown, mode: policy.mode, ...ex }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))) as Record<string, unknown> };
}
