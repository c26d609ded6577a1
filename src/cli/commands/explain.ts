import { UsageError } from '../../errors.js';
import { hostAddresses } from '../../net/host-addresses.js';
import { learnedAddresses } from '../../netfilter/learned-addresses.js';
import { explain as explainPolicy, type Query } from '../../policy/explain.js';
import { parseDest, parseExplainPort } from '../../policy/explain-args.js';
import { parseInterface, parseService, parseUser } from '../../policy/parse-values.js';
import { hostFactsFor } from '../../system/compile-env.js';
import { lookupUsers } from '../../system/users.js';
import { EXIT, type Context } from '../context.js';

export interface ExplainArgs {
  positionals: string[];
  user?: string;
  service?: string;
  iface?: string;
  sport?: number;
  icmpType?: number;
  policy?: string;
}

export { parseDest };

/** `sluice explain DEST [PORT[/PROTO]] [--user U] [--service UNIT] [--iface IF] [--sport PORT] [--icmp-type N] [POLICY]` */
export function explain(ctx: Context, args: ExplainArgs): number {
  const [destText, ...rest] = args.positionals;
  if (!destText) throw new UsageError('explain needs a destination: sluice explain DEST [PORT[/PROTO]]');
  let policyPath = args.policy;
  const query: Query = { dest: parseDest(destText) };
  for (const r of rest) {
    const port = query.proto === undefined && query.port === undefined ? parseExplainPort(r) : null;
    if (port) Object.assign(query, port);
    else if (policyPath === undefined) policyPath = r;
    else throw new UsageError(`Unexpected argument: ${JSON.stringify(r)}`);
  }
  if (args.sport !== undefined) {
    if (query.proto !== 'tcp' && query.proto !== 'udp') throw new UsageError('--sport needs a TCP or UDP port to go with it: sluice explain DEST PORT/udp --sport PORT');
    query.sport = args.sport;
  }
  if (args.icmpType !== undefined) {
    if (query.proto !== 'icmp' && query.proto !== 'icmpv6') throw new UsageError('--icmp-type needs icmp or icmpv6 to go with it: sluice explain DEST icmpv6 --icmp-type 135');
    query.icmpType = args.icmpType;
  }
  if (args.user !== undefined) {
    // The policy's own grammar for users: a uid from 0 to 4294967294, or a name that exists.
    const u = parseUser(args.user);
    if (!u.ok) throw new UsageError(`Bad --user: ${u.reason}: ${JSON.stringify(args.user)}`);
    if (u.value.uid !== undefined) query.uid = u.value.uid;
    else {
      const uid = lookupUsers([args.user]).get(args.user);
      if (uid === undefined) throw new UsageError(`No such user: ${JSON.stringify(args.user)}`);
      query.uid = uid;
    }
  }
  if (args.service !== undefined) {
    const s = parseService(args.service);
    if (!s.ok) throw new UsageError(`Bad service: ${s.reason}: ${JSON.stringify(args.service)}`);
    query.service = s.value.kind === 'unit' ? s.value.unit : s.value.path;
  }
  if (args.iface !== undefined) {
    const i = parseInterface(args.iface);
    if (!i.ok || i.value.wildcard) throw new UsageError(`Bad interface: ${JSON.stringify(args.iface)}`);
    query.iface = i.value.name;
  }
  const policy = ctx.loadPolicy(policyPath);

  // Addresses the DNS guard learned for domain rules, when the live table can be read.
  if (query.dest.kind === 'range') {
    try {
      const learned = learnedAddresses(ctx.netfilter(), policy);
      if (learned) query.learned = learned;
    } catch {
      // Not root, or no kernel access: explain from the policy alone.
    }
  }

  // One of this host's own addresses: the kernel admits it before any rule.
  const d = query.dest;
  if (d.kind === 'range' && d.range.start === d.range.end && hostAddresses().some((a) => a.family === d.range.family && a.value === d.range.start)) query.local = true;

  // The built-ins depend on the host: the guard's upstreams, the encrypted-DNS list, DHCP leases.
  const ex = explainPolicy(policy, query, hostFactsFor(policy));
  const what = `${destText}${query.port !== undefined ? ` ${query.port}/${query.proto}` : query.proto ? ` ${query.proto}` : ''}`;
  const verdict = ex.verdict === 'allow' ? 'ALLOW' : ex.verdict === 'redirect' ? 'REDIRECTED TO THE DNS GUARD' : ex.enforced
        ? `BLOCK${ex.scope !== undefined && policy.mode === 'audit' ? ` (enforced by ${ex.scope === '#rule' ? "the rule's own mode" : `scope ${ex.scope}`})` : ''}`
        : `WOULD BLOCK (${ex.scope === undefined ? 'audit mode' : ex.scope === '#rule' ? "the rule's own mode: audit" : `scope ${ex.scope}: audit`}: allowed and logged)`;
  ctx.say(`${what}: ${verdict}`);
  ctx.say(`  ${ex.summary}`);
  const others = ex.matches.filter((m) => m.result !== 'no' && !(ex.decidedBy.kind === 'rule' && ex.decidedBy.rule === m.rule));
  for (const m of others) {
    ctx.say(`  also ${m.result === 'yes' ? 'matches' : 'might match'}: ${m.action} rule ${m.rule} (line ${m.line}): ${m.dimensions.filter((d) => d.result !== 'yes').map((d) => d.detail).join('; ') || 'all conditions hold'}`);
  }
  ctx.result({ query: { ...query, learned: undefined }, policy: policy.file, mode: policy.mode, ...ex });
  return EXIT.ok;
}
