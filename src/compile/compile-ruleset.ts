import { createHash } from 'node:crypto';
import { maxOf, type AddrRange, type Family } from '../net/ip.js';
import {
  DHCP_PORTS,
  dhcpDestinations,
  dhcpUids,
  DNS_PORT,
  dnsRedirected,
  dnsRedirectScopes,
  DOH_PORT,
  dohEndpoints,
  DOT_PORT,
  dotReach,
  dotRules,
  encryptedDnsBlocked,
  ESSENTIAL_ICMPV6_TYPES,
  type HostFacts,
} from '../policy/builtins.js';
import type { Policy, Rule, Scope, ServiceRef } from '../policy/policy.js';
import {
  buildChainName,
  buildCounterName,
  buildDnsReplyPrefix,
  buildLimitName,
  buildLogPrefix,
  buildSetName,
  buildTableComment,
  DEFAULT_RULE,
  ENCRYPTED_DNS_RULE,
  RULE_SCOPE,
  scopeQueryMark,
  SPOOFED_RULE,
  meterSetName,
  objectNames,
  type LogKind,
  type LogPrefix,
  type LogVerdict,
  type RuleSetDim,
} from './kernel-names.js';
import { flowMarkFields, flowMarkLayout, flowTag, MAX_IDENTITY_GROUPS } from './flow-mark.js';
import { protoPortSet, rulePortSets, TABLE_NAME, type ChainDef, type RuleDef, type Ruleset, type SetDef, type SetElem, type Stmt } from './ruleset.js';

// Kept for callers that import it from here (it is built in kernel-names, where new code should import it).
export { objectNames };

/** A cgroup v2 directory found for a service: its id (the kernfs inode) and depth below the root. */
export interface ResolvedCgroup {
  id: bigint;
  level: number;
  /** Path relative to the cgroup2 root, starting with `/`. */
  path: string;
}

/** Facts about the host the compiler needs; gathered by the caller so compiling stays pure. */
export interface CompileEnv extends HostFacts {
  /** Cgroups found per service (key from serviceKey). Empty when the service is not running. */
  cgroups: Map<string, ResolvedCgroup[]>;
  /** The policy epoch marked on admitted flows (1-255; default 1). The apply path chooses it. */
  epoch?: number;
}

export interface CompileResult {
  ruleset: Ruleset;
  warnings: string[];
}

/** The map key for a service reference. */
export function serviceKey(s: ServiceRef): string {
  return s.kind === 'unit' ? `unit:${s.unit}` : `cgroup:${s.path}`;
}


/** IPS_DST_NAT: the flow's destination was rewritten (a redirect). */
const IPS_DST_NAT = 0x20;

/** Distinct single addresses (a set refuses duplicates). */
function mergeHosts(list: AddrRange[]): AddrRange[] {
  const seen = new Map<string, AddrRange>();
  for (const a of list) if (a.start === a.end) seen.set(`${a.family}:${a.start}`, a);
  return [...seen.values()];
}

/** RTN_LOCAL: a destination address of this host. */
const RTN_LOCAL = 2;
const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;

/**
 * Compiles a policy into an nftables ruleset. Pure: same input, same output.
 *
 * Shape (see README "How the ruleset works"):
 *  - one base chain on the output hook: the guard's DNS rules (behind one
 *    lookup) and the packets of admitted flows first, then replies and this
 *    host, then the essentials, then every deny rule, then every allow rule,
 *    then the default;
 *  - each policy rule becomes a few nft rules (one per address family and
 *    protocol kind), each a chain of set lookups, so the cost per new
 *    connection depends on the number of policy rules, never on the number
 *    of addresses, ports or users in them;
 *  - deny rules come before allow rules, so the order of rules in the file
 *    never changes a verdict;
 *  - blocking goes through a small chain per rule that logs to NFLOG under a
 *    shared kernel rate limit and counts what the limit suppressed.
 */
export function compileRuleset(policy: Policy, env: CompileEnv): CompileResult {
  const warnings: string[] = [];
  const sets: SetDef[] = [];
  const extraChains: ChainDef[] = [];
  const audit = policy.mode === 'audit';
  const enforceVerdict: Stmt = { k: 'goto', chain: buildChainName({ kind: 'refuse' }) };
  const blockVerdict: Stmt = audit ? { k: 'verdict', v: 'accept' } : enforceVerdict;
  const blockedVerdict: LogVerdict = audit ? 'would-block' : 'blocked';

  // Flows are tied to the policy and identity that admitted them (flow-mark.ts).
  const layout = flowMarkLayout(policy.flows.ctMarkMask);
  const epoch = env.epoch ?? 1;
  const tag = (group: number) => flowTag(layout, epoch, group);
  const markFlow = (group: number): Stmt => ({ k: 'ct-mark-set', mask: layout.mask, value: tag(group) });

  // Gradual enforcement (README "Gradual enforcement"): scopes have the other mode than the
  // policy's (the loader refuses a scope with the policy's own), so only one kind exists at a time.
  const scopes = policy.scopes ?? [];
  const scopeMatches = new Map(scopes.map((sc) => [sc, compileScope(sc, env, sets, warnings)]));
  const enforcing = !audit || scopes.length > 0 || policy.rules.some((r) => r.mode === 'enforce');
  // Flows are tied to identities whenever anyone is enforced on; in pure audit mode nothing is refused, so nothing to re-check.
  const identityGroups = !audit || scopes.length > 0;

  /**
   * The records of a log chain (policy rule or built-in), each guarded by
   * `guard` (a scope's match, or nothing): what it decided, within the log
   * budget of its kind. Two budgets, both counted when they hold a record
   * back: first the sending user's own share (a meter keyed on the socket's
   * uid), so one user's flood cannot spend the budget that records everyone
   * else's attempts; then the shared budget, the outer bound. A flow the
   * chain lets through (allowed and logged; would-block in audit mode) is
   * marked as admitted by `admitGroup`, in a rule of its own: an untracked
   * packet (no conntrack) cannot be marked, and must still get the verdict.
   */
  const logRules = (kind: LogKind, recorded: LogVerdict, verdict: Stmt, prefix: LogPrefix, guard: Stmt[] = [], admitGroup?: number): RuleDef[] => {
    const meterSet = meterSetName(kind);
    if (!sets.some((s) => s.name === meterSet)) sets.push(userMeterSet(meterSet, kind));
    return [
      // Enforce mode, blocked packets only (they are dropped, so no other user of
      // marks is disturbed): the packet mark carries the sender's cgroup id to the
      // event collector, which then knows the sender's service even when its
      // socket is gone. 0 first, so a mark left by others never reads as a cgroup;
      // a level deeper than the sender's cgroup ends its rule, so the deepest wins.
      ...(recorded === 'blocked' ? [{ stmts: [...guard, { k: 'mark-set', value: 0 } as Stmt] }, ...[1, 2, 3, 4].map((level) => ({ stmts: [...guard, { k: 'mark-set-cgroup', level } as Stmt] }))] : []),
      ...(admitGroup !== undefined ? [{ stmts: [...guard, markFlow(admitGroup)] }] : []),
      {
        stmts: [
          ...guard,
          { k: 'meter', sel: 'meta skuid', set: meterSet, timeoutMs: meterTimeoutMs(policy), rate: policy.log.userRate, burst: policy.log.userBurst, over: true },
          { k: 'counter', name: buildCounterName({ kind: 'suppressed', log: kind, budget: 'user' }) },
          verdict,
        ],
      },
      {
        stmts: [...guard, { k: 'limit', name: buildLimitName({ kind: 'log', log: kind }) }, { k: 'log', group: policy.log.group, prefix: buildLogPrefix({ ...prefix, verdict: recorded }) }, verdict],
      },
      { stmts: [...guard, { k: 'counter', name: buildCounterName({ kind: 'suppressed', log: kind, budget: 'shared' }) }, verdict] },
    ];
  };

  const logChain = (kind: LogKind, rule: string, admitGroup?: number, dropAlways = false): ChainDef => {
    const recorded: LogVerdict = kind === 'allow' ? 'allowed' : dropAlways ? 'blocked' : blockedVerdict;
    const verdict: Stmt = kind === 'allow' ? { k: 'verdict', v: 'accept' } : dropAlways ? { k: 'verdict', v: 'drop' } : blockVerdict;
    return { name: buildChainName({ kind, rule }), rules: logRules(kind, recorded, verdict, { verdict: recorded, rule }, [], admitGroup) };
  };

  /**
   * The block chain of a deny rule or of a built-in block (#default,
   * #encrypted-dns), with gradual enforcement. A rule's own `mode:` decides
   * alone: enforce refuses; audit records would-block and returns, so the
   * packet goes on to the other rules (the caller jumps, not goes to).
   * Otherwise, a packet of a scope with the other mode gets that mode
   * (recorded with the scope's name), and any other packet the policy's.
   */
  const blockChain = (rule: string, ownMode?: 'audit' | 'enforce'): ChainDef => {
    const name = buildChainName({ kind: 'block', rule });
    if (ownMode === 'audit') return { name, rules: logRules('block', 'would-block', { k: 'verdict', v: 'return' }, { verdict: 'would-block', rule, scope: RULE_SCOPE }) };
    if (ownMode === 'enforce') return { name, rules: logRules('block', 'blocked', enforceVerdict, { verdict: 'blocked', rule, scope: RULE_SCOPE }) };
    const rules: RuleDef[] = [];
    for (const scope of scopes) {
      for (const m of scopeMatches.get(scope) ?? []) {
        rules.push(
          ...(scope.mode === 'enforce'
            ? logRules('block', 'blocked', enforceVerdict, { verdict: 'blocked', rule, scope: scope.name }, m)
            : logRules('block', 'would-block', { k: 'verdict', v: 'accept' }, { verdict: 'would-block', rule, scope: scope.name }, m, scopeGroups.get(scope))),
        );
      }
    }
    rules.push(...logRules('block', blockedVerdict, blockVerdict, { verdict: blockedVerdict, rule }, [], audit ? auditGroup : undefined));
    return { name, rules };
  };

  // Allow rules whose identity (user, service, interface) every later packet must still have: a group each.
  const groups = new Map<Rule, number>();
  // An audit scope's would-block flows carry a group of their own (their packets must still come
  // from the scope); in audit mode with enforce scopes, so do would-block flows (an enforced
  // sender must not ride one). Taken first: there are few of them.
  const scopeGroups = new Map<Scope, number>();
  let auditGroup: number | undefined = audit ? 0 : undefined;
  for (const sc of scopes) if (sc.mode === 'audit') scopeGroups.set(sc, scopeGroups.size + 1);
  if (audit && scopes.length > 0) auditGroup = scopeGroups.size + 1;
  const reserved = scopeGroups.size + (audit && scopes.length > 0 ? 1 : 0);
  if (identityGroups) {
    for (const r of policy.rules) {
      if (r.action !== 'allow' || !hasIdentity(r)) continue;
      if (groups.size >= MAX_IDENTITY_GROUPS) {
        warnings.push(`rule ${r.name}: more than ${MAX_IDENTITY_GROUPS} rules with users, services or interfaces; its flows are judged again on every packet (slower, and they end when a DNS-learned address expires)`);
        continue;
      }
      if (groups.size + reserved >= MAX_IDENTITY_GROUPS) {
        warnings.push(`rule ${r.name}: more than ${MAX_IDENTITY_GROUPS} rules and scopes with users, services or interfaces; its flows are judged again on every packet (slower, and they end when a DNS-learned address expires)`);
        continue;
      }
      groups.set(r, groups.size + reserved + 1);
    }
  }
  const admitChains = new Map<number, ChainDef>();
  /** The chain that marks a flow as admitted in this epoch by `group`, then accepts it. */
  const admit = (group: number): Stmt => {
    const name = buildChainName({ kind: 'admit', group });
    if (!admitChains.has(group)) admitChains.set(group, { name, rules: [{ stmts: [markFlow(group)] }, { stmts: [{ k: 'verdict', v: 'accept' }] }] });
    return { k: 'goto', chain: name };
  };

  const guard = policy.dns.guard;
  const redirect = dnsRedirected(policy);
  // Audit mode with enforce scopes: only the scopes' DNS goes to the guard (null: everyone's, or nobody's).
  const redirectScopes = dnsRedirectScopes(policy);
  const redirectOnly: Stmt[][] | null = redirectScopes.length > 0 ? redirectScopes.flatMap((sc) => scopeMatches.get(sc) ?? []) : null;
  // The guard's upstreams (none known: the warning below); the encrypted-DNS facts are dohEndpoints'.
  const upstreams = env.dns?.upstreams ?? [];
  const output: RuleDef[] = [];
  const dnsTraffic: RuleDef[] = [];
  const spoofedChain = logChain('block', SPOOFED_RULE, undefined, true);
  extraChains.push(spoofedChain);
  if (redirect || redirectOnly) {
    if (upstreams.length === 0) warnings.push('the DNS guard has no upstream resolver: allowed names will get SERVFAIL (set dns.upstreams)');
    // Before the established shortcut: a flow to an upstream resolver's port 53
    // that is not the guard's (root, marked) is dropped even when conntrack
    // knows it, so a process reusing a source port the guard let go cannot ride
    // the guard's conntrack entry past the redirect.
    // Every one of these rules looks its packet up in dns_ports, so they are a
    // chain of their own that only DNS packets enter: every other packet of
    // every flow pays one hash lookup for them, not a dozen comparisons.
    dnsTraffic.push(
      ...guardUpstreamRules(policy, upstreams, sets, redirectOnly),
      // A DNS flow that began before the redirect (audit mode, `off`, a lost table) keeps the NAT
      // decision conntrack made on its first packet: judged again it would still skip the guard.
      // Every new one is redirected, so an established, unredirected one is refused.
      ...(redirectOnly ?? [[]]).map((only) => ({
        stmts: [
          ...only,
          { k: 'ct', states: ['established'] },
          { k: 'cmp', sel: 'ct direction', op: 'eq', value: 0 },
          { k: 'lookup', sel: 'meta l4proto . th dport', set: buildSetName({ kind: 'builtin', name: 'dns_ports' }) },
          { k: 'cmp', sel: 'ct status', op: 'eq', value: 0, mask: IPS_DST_NAT },
          { k: 'goto', chain: buildChainName({ kind: 'refuse' }) },
        ] satisfies Stmt[],
        comment: 'DNS flows from before the redirect would skip the guard',
      })),
    );
    extraChains.push({ name: buildChainName({ kind: 'dns' }), rules: dnsTraffic, comment: 'DNS packets: the guard alone reaches the upstreams, and every query goes through it' });
    output.push({
      stmts: [
        { k: 'lookup', sel: 'meta l4proto . th dport', set: buildSetName({ kind: 'builtin', name: 'dns_ports' }) },
        { k: 'jump', chain: buildChainName({ kind: 'dns' }) },
      ],
      comment: 'DNS packets',
    });
  }
  // A user's socket sending from an address that is not this host's (IPV6_FREEBIND needs no
  // privilege) could forge a flow "from" a remote host to a local address and answer it as a
  // reply, or forge the reply to another flow (a resolver's answer to a query). Not policy but
  // anti-spoofing: dropped in both modes and recorded, never answered with a reject (that would
  // send the packet's contents to the forged source). Checked on replies before they are accepted,
  // and on new flows; an established outbound flow's source is the one checked when it began.
  const spoofed = (only: Stmt[]): RuleDef => ({
    stmts: [...only, { k: 'cmp', sel: 'meta skuid', op: 'neq', value: 0 }, { k: 'cmp', sel: 'fib saddr type', op: 'neq', value: RTN_LOCAL }, { k: 'goto', chain: spoofedChain.name }],
    comment: "a user sending from an address that is not this host's",
  });
  output.push(
    // Outbound flows: only those this policy admitted skip the rules, and only
    // while their identity still matches (the flows chain); any other packet of
    // an established flow is judged below as if it were new. First, as most
    // packets are these: the three kinds of rule it now comes before (the
    // reply spoofing check, related, the replies) match only replies or related
    // packets, which this one never takes, so the order between them changes
    // no verdict. The direction is compared first: it tells a reply apart in
    // one comparison.
    {
      stmts: [{ k: 'cmp', sel: 'ct direction', op: 'eq', value: 0 }, { k: 'ct', states: ['established'] }, { k: 'jump', chain: buildChainName({ kind: 'flows' }) }],
      comment: 'flows admitted by this policy',
    },
    spoofed([{ k: 'cmp', sel: 'ct direction', op: 'eq', value: 1 }]),
    // ICMP errors about a flow (and the first packet of an expected one).
    { stmts: [{ k: 'ct', states: ['related'] }, { k: 'verdict', v: 'accept' }], comment: 'related to tracked flows' },
    ...replyRules(policy, sets),
    // New flows (and flows judged again) too: a forged flow "from" a remote host to a local address.
    spoofed([]),
    // To this host, judged after NAT: loopback, the host's own addresses, and DNS
    // redirected to the guard. Not `oif "lo"`: later chains of the output hook see
    // the interface chosen before NAT, so a local address DNAT-ed to a remote one
    // would pass as loopback.
    { stmts: [{ k: 'cmp', sel: 'fib daddr type', op: 'eq', value: RTN_LOCAL }, admit(0)], comment: 'to this host' },
  );

  if (policy.essentials) {
    sets.push({
      name: buildSetName({ kind: 'builtin', name: 'essential_icmpv6' }),
      key: 'icmpv6_type',
      interval: false,
      timeout: false,
      dynamic: false,
      elements: ESSENTIAL_ICMPV6_TYPES.map((v) => ({ t: 'num', value: BigInt(v) })),
      comment: 'neighbour discovery and MLD',
    });
    const ess = (stmts: Stmt[], comment: string): RuleDef => ({
      stmts: [...stmts, { k: 'counter', name: buildCounterName({ kind: 'essentials' }) }, { k: 'verdict', v: 'accept' }],
      comment,
    });
    // DHCP: a root client, from the client port, to where a DHCP server is: broadcast (IPv4),
    // the DHCPv6 multicast groups, or the server of a lease this host holds (renewals are
    // unicast). Never to any host: with net.ipv4.ip_unprivileged_port_start lowered (as in
    // containers) any user could bind the client port.
    const dhcpUsers = dhcpUids(env);
    if (dhcpUsers.length > 1) {
      sets.push({
        name: buildSetName({ kind: 'builtin', name: 'dhcp_users' }),
        key: 'uid',
        interval: false,
        timeout: false,
        dynamic: false,
        elements: dhcpUsers.map((u) => ({ t: 'num', value: BigInt(u) })),
        comment: 'DHCP clients: root, systemd-network',
      });
    }
    const dhcpSet = (family: 4 | 6) => buildSetName({ kind: 'builtin', name: family === 4 ? 'dhcp_servers4' : 'dhcp_servers6' });
    sets.push(hostSet(dhcpSet(4), 4, mergeHosts(dhcpDestinations(env, 4)), 'DHCP: broadcast and the servers of leases held'));
    sets.push(hostSet(dhcpSet(6), 6, mergeHosts(dhcpDestinations(env, 6)), 'DHCPv6: server multicast groups and lease servers'));
    const dhcp = (family: 4 | 6, comment: string): RuleDef =>
      ess(
        [
          { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 },
          { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_UDP },
          { k: 'cmp', sel: 'th sport', op: 'eq', value: DHCP_PORTS[family].client },
          { k: 'cmp', sel: 'th dport', op: 'eq', value: DHCP_PORTS[family].server },
          ...(dhcpUsers.length === 1 && dhcpUsers[0] === 0
            ? [{ k: 'cmp', sel: 'meta skuid', op: 'eq', value: 0 } as Stmt]
            : [{ k: 'lookup', sel: 'meta skuid', set: buildSetName({ kind: 'builtin', name: 'dhcp_users' }) } as Stmt]),
          { k: 'lookup', sel: family === 4 ? 'ip daddr' : 'ip6 daddr', set: dhcpSet(family) },
        ],
        comment,
      );
    output.push(
      ess(
        [
          { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_ICMPV6 },
          { k: 'lookup', sel: 'icmpv6 type', set: buildSetName({ kind: 'builtin', name: 'essential_icmpv6' }) },
        ],
        'essentials: IPv6 neighbour discovery',
      ),
      dhcp(4, 'essentials: DHCP'),
      dhcp(6, 'essentials: DHCPv6'),
    );
  }

  // Every rule's sets first: the encrypted-DNS block refers to the sets of rules that allow port 853.
  const ordered = [...policy.rules.filter((r) => r.action === 'deny'), ...policy.rules.filter((r) => r.action === 'allow')];
  const compiledRules = new Map(ordered.map((rule) => [rule, compileRule(rule, env, sets, warnings)]));
  // The guard's own upstreams count as DNS-over-HTTPS endpoints in enforce mode (dohEndpoints).
  const encrypted = encryptedDnsBlocked(policy) ? encryptedDnsRules(policy, mergeHosts(dohEndpoints(policy, env)), sets) : [];
  if (encrypted.length > 0) {
    extraChains.push(blockChain(ENCRYPTED_DNS_RULE));
  }

  // The flows chain: a packet of an established outbound flow is accepted when
  // the flow was admitted in this epoch, and, if a rule with an identity
  // admitted it, the packet still has that identity. Deny rules whose match
  // can change within an epoch (an identity; DNS-learned addresses) are
  // checked first: what they refuse goes back to be judged in full.
  const flows: RuleDef[] = [];
  const recheck = (rule: Rule, extra: Stmt[] = []) => {
    for (const stmts of compiledRules.get(rule)?.lists ?? []) flows.push({ stmts: [...stmts, ...extra, { k: 'verdict', v: 'return' }], comment: `deny ${rule.name}: judged again` });
  };
  const changeable = (rule: Rule) => rule.action === 'deny' && (hasIdentity(rule) || rule.domains.length > 0);
  // Deny rules enforced by their own mode first: they refuse in every scope.
  for (const rule of ordered) if (changeable(rule) && rule.mode === 'enforce') recheck(rule);
  // Would-block flows of an audit scope (enforce mode): accepted while their packets still come from
  // the scope (a deny rule would only record them again); another sender on the flow is judged again.
  for (const [sc, group] of scopeGroups) {
    const mark: Stmt = { k: 'cmp', sel: 'ct mark', op: 'eq', value: tag(group), mask: layout.mask };
    for (const m of scopeMatches.get(sc) ?? []) flows.push({ stmts: [mark, ...m, { k: 'verdict', v: 'accept' }], comment: `would-block in scope ${sc.name}: same scope` });
    flows.push(
      { stmts: [mark, { k: 'cmp', sel: 'meta skuid', op: 'neq', value: 0xffffffff }, { k: 'verdict', v: 'return' }], comment: `would-block in scope ${sc.name}: another sender` },
      { stmts: [mark, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_TCP }, { k: 'verdict', v: 'accept' }], comment: `would-block in scope ${sc.name}: the kernel ends the connection` },
    );
  }
  if (!audit) {
    for (const rule of ordered) if (changeable(rule) && rule.mode === undefined) recheck(rule);
  } else if (scopes.length > 0) {
    // Audit mode with enforce scopes: the deny rules are re-checked for the enforced senders only,
    // and a would-block flow (marked with its own group) is judged again when one of them sends on it.
    for (const rule of ordered) if (changeable(rule) && rule.mode === undefined) for (const sc of scopes) for (const m of scopeMatches.get(sc) ?? []) recheck(rule, m);
    const mark: Stmt = { k: 'cmp', sel: 'ct mark', op: 'eq', value: tag(auditGroup ?? 0), mask: layout.mask };
    for (const sc of scopes) for (const m of scopeMatches.get(sc) ?? []) flows.push({ stmts: [mark, ...m, { k: 'verdict', v: 'return' }], comment: `would-block flow: scope ${sc.name} is enforced` });
    flows.push({ stmts: [mark, { k: 'verdict', v: 'accept' }], comment: 'would-block flows (audit)' });
  }
  flows.push({ stmts: [{ k: 'cmp', sel: 'ct mark', op: 'eq', value: tag(0), mask: layout.mask }, { k: 'verdict', v: 'accept' }], comment: 'admitted in this epoch, by a rule without identity conditions' });
  for (const [rule, group] of groups) {
    for (const id of compiledRules.get(rule)?.identity ?? []) {
      flows.push({ stmts: [{ k: 'cmp', sel: 'ct mark', op: 'eq', value: tag(group), mask: layout.mask }, ...id, { k: 'verdict', v: 'accept' }], comment: `admitted by ${rule.name}: same identity` });
    }
    // A packet with no socket owner on such a TCP flow is the kernel finishing the connection: data
    // and FIN still queued when the program called close() (an orphaned socket), ACKs from TIME_WAIT
    // (the kernel's own control socket). Nobody else can send on that conntrack entry, so it passes;
    // a packet with another owner goes back to be judged. (`meta skuid` does not match at all when
    // there is no owner, so the first rule sends back every owned packet the rules above refused.)
    const mark: Stmt = { k: 'cmp', sel: 'ct mark', op: 'eq', value: tag(group), mask: layout.mask };
    flows.push(
      { stmts: [mark, { k: 'cmp', sel: 'meta skuid', op: 'neq', value: 0xffffffff }, { k: 'verdict', v: 'return' }], comment: `admitted by ${rule.name}: another identity` },
      { stmts: [mark, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_TCP }, { k: 'verdict', v: 'accept' }], comment: `admitted by ${rule.name}: the kernel ends the connection` },
    );
  }

  let encryptedPlaced = false;
  for (const rule of ordered) {
    // Encrypted DNS is blocked after the deny rules and before the allow rules: an explicit
    // allow of its address or port is honoured (encryptedDnsRules left those out), a broad one is not.
    if (rule.action === 'allow' && !encryptedPlaced) {
      output.push(...encrypted);
      encryptedPlaced = true;
    }
    // The group that marks this rule's flows; none (judged again on every packet) past the last group.
    const group = !identityGroups || !hasIdentity(rule) ? 0 : groups.get(rule);
    let verdict: Stmt;
    if (rule.action === 'deny') {
      const chain = blockChain(rule.name, rule.mode);
      extraChains.push(chain);
      verdict = { k: 'goto', chain: chain.name };
      if (rule.mode === 'audit') {
        // A deny rule in audit by its own mode records and lets the other rules judge. Its nft
        // rules (one per family and kind of match) live in a chain of their own, jumped to: the
        // first that matches goes to the block chain, which records and returns to the base
        // chain, so a packet matching several of them is recorded and counted once.
        const audit = buildChainName({ kind: 'audit', rule: rule.name });
        extraChains.push({
          name: audit,
          rules: (compiledRules.get(rule)?.lists ?? []).map((stmts) => ({ stmts: [...stmts, { k: 'counter', name: objectNames.counter(rule.name) } as Stmt, verdict], comment: `deny ${rule.name} (audit)` })),
        });
        output.push({ stmts: [{ k: 'jump', chain: audit }], comment: `deny ${rule.name}: in audit by its own mode` });
        continue;
      }
    } else if (rule.log || policy.log.allowed) {
      const chain = logChain('allow', rule.name, group);
      extraChains.push(chain);
      verdict = { k: 'goto', chain: chain.name };
    } else {
      verdict = group === undefined ? { k: 'verdict', v: 'accept' } : admit(group);
    }
    for (const stmts of compiledRules.get(rule)?.lists ?? []) {
      output.push({
        stmts: [...stmts, { k: 'counter', name: objectNames.counter(rule.name) }, verdict],
        comment: `${rule.action} ${rule.name}`,
      });
    }
  }

  if (!encryptedPlaced) output.push(...encrypted);

  if (policy.defaultAction === 'deny') {
    const chain = blockChain(DEFAULT_RULE);
    extraChains.push(chain);
    output.push({ stmts: [{ k: 'counter', name: buildCounterName({ kind: 'default' }) }, { k: 'goto', chain: chain.name }], comment: 'default deny' });
  } else {
    output.push({ stmts: [{ k: 'counter', name: buildCounterName({ kind: 'default' }) }, admit(0)], comment: 'default allow' });
  }

  const chains: ChainDef[] = [
    {
      name: buildChainName({ kind: 'base', name: 'output' }),
      base: {
        type: 'filter',
        hook: 'output',
        priority: 0,
        // Enforce mode fails closed even if someone deletes the final rule.
        policy: !audit && policy.defaultAction === 'deny' ? 'drop' : 'accept',
      },
      rules: output,
    },
    { name: buildChainName({ kind: 'flows' }), rules: flows, comment: 'packets of established outbound flows' },
    ...[...admitChains.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    ...extraChains,
  ];
  if (enforcing) {
    chains.push({
      name: buildChainName({ kind: 'refuse' }),
      rules:
        policy.blockWith === 'reject'
          ? [
              { stmts: [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_TCP }, { k: 'reject', how: 'tcp-reset' }] },
              { stmts: [{ k: 'reject', how: 'icmpx-admin' }] },
            ]
          : [{ stmts: [{ k: 'verdict', v: 'drop' }] }],
    });
  }

  if (redirect || redirectOnly) {
    // A service scope in audit: its queries carry the scope's mark to the guard, which answers
    // them as audit mode does (a uid scope is told by the uid mark itself). Under an audit policy
    // the guard hears only its enforce scopes, and enforces everything it hears.
    const scopeQueries = scopes.flatMap((sc, i) => (redirect && sc.mode === 'audit' && sc.services.length > 0 ? [{ scope: sc, mark: scopeQueryMark(i), matches: scopeMatches.get(sc) ?? [] }] : []));
    chains.push(dnsRedirectChain(policy, redirectOnly), guardInputChain(policy, sets), ...dnsGuardChains(policy, upstreams, scopeQueries, redirectOnly));
  }
  if (guard && audit) {
    // Audit mode: nothing on the packet path may depend on the daemon, so DNS is
    // not redirected; replies are copied to NFLOG and the daemon learns from them.
    chains.push({
      name: buildChainName({ kind: 'base', name: 'dns_observe' }),
      base: { type: 'filter', hook: 'input', priority: -150, policy: 'accept' },
      // UDP and TCP alike (DNS over TCP, RFC 7766): every TCP segment is copied, with its payload, and
      // the daemon reassembles each flow's length-prefixed messages by sequence number (passive-observer.ts).
      rules: [IPPROTO_UDP, IPPROTO_TCP].map((proto) => ({
        stmts: [
          // Only replies to queries this host sent: an unsolicited packet from port 53 teaches nothing.
          { k: 'ct', states: ['established'] },
          { k: 'cmp', sel: 'ct direction', op: 'eq', value: 1 },
          { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto },
          { k: 'cmp', sel: 'th sport', op: 'eq', value: 53 },
          { k: 'limit', name: buildLimitName({ kind: 'log', log: 'dns' }) },
          { k: 'log', group: dnsLogGroup(policy), prefix: buildDnsReplyPrefix() },
        ],
        comment: `audit: DNS replies (${proto === IPPROTO_TCP ? 'TCP' : 'UDP'}) for the daemon to learn from`,
      })),
    });
    // The queries too: the daemon learns from a reply only when it answers a query this host sent
    // to one of its resolvers (same ports, id and question), so a user's own port-53 server teaches nothing.
    chains.push({
      name: buildChainName({ kind: 'base', name: 'dns_observe_queries' }),
      base: { type: 'filter', hook: 'output', priority: -150, policy: 'accept' },
      rules: [IPPROTO_UDP, IPPROTO_TCP].map((proto) => ({
        stmts: [
          { k: 'cmp', sel: 'ct direction', op: 'eq', value: 0 },
          { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto },
          { k: 'cmp', sel: 'th dport', op: 'eq', value: 53 },
          { k: 'limit', name: buildLimitName({ kind: 'log', log: 'dns' }) },
          { k: 'log', group: dnsLogGroup(policy), prefix: buildDnsReplyPrefix() },
        ],
        comment: `audit: DNS queries (${proto === IPPROTO_TCP ? 'TCP' : 'UDP'}), to match the replies against`,
      })),
    });
  }

  const counters = [
    ...(guard && (!audit || redirectOnly !== null) ? [{ name: buildCounterName({ kind: 'dns-upstream' }), comment: "the DNS guard's own queries" }] : []),
    ...(encrypted.length > 0 ? [{ name: buildCounterName({ kind: 'encrypted-dns' }), comment: 'DNS over TLS and known DNS-over-HTTPS endpoints' }] : []),
    ...policy.rules.map((r) => ({ name: objectNames.counter(r.name), comment: `${r.action} ${r.name}` })),
    { name: buildCounterName({ kind: 'default' }), comment: `default ${policy.defaultAction}` },
    ...(policy.essentials ? [{ name: buildCounterName({ kind: 'essentials' }), comment: 'neighbour discovery and DHCP' }] : []),
    { name: buildCounterName({ kind: 'suppressed', log: 'block', budget: 'shared' }), comment: 'block records over the log rate limit' },
    { name: buildCounterName({ kind: 'suppressed', log: 'allow', budget: 'shared' }), comment: 'allow records over the log rate limit' },
    { name: buildCounterName({ kind: 'suppressed', log: 'block', budget: 'user' }), comment: "block records over the sending user's share of the log rate limit" },
    { name: buildCounterName({ kind: 'suppressed', log: 'allow', budget: 'user' }), comment: "allow records over the sending user's share of the log rate limit" },
  ];
  const limits = [
    { name: buildLimitName({ kind: 'log', log: 'block' }), rate: policy.log.rate, burst: policy.log.burst },
    { name: buildLimitName({ kind: 'log', log: 'allow' }), rate: policy.log.rate, burst: policy.log.burst },
    ...(guard && audit ? [{ name: buildLimitName({ kind: 'log', log: 'dns' }), rate: 5000, burst: 10_000 }] : []),
  ];

  return {
    ruleset: {
      table: TABLE_NAME,
      comment: buildTableComment({ mode: policy.mode, sha256: policy.sha256, fields: flowMarkFields(layout, epoch) }),
      ...(policy.ownedTable ? { owned: true } : {}),
      sets,
      counters,
      limits,
      chains,
    },
    warnings,
  };
}

/**
 * How long a user's meter element lives after its last packet: long enough
 * for the bucket to refill (a reset then gives nothing the refill would not),
 * at least a minute, at most a day.
 */
function meterTimeoutMs(policy: Policy): number {
  const refillS = Math.ceil(policy.log.userBurst / policy.log.userRate);
  return Math.min(86_400, Math.max(60, refillS)) * 1000;
}

/** The set holding each user's log budget for one kind of record. Bounded: a full set lets new users through to the shared budget. */
function userMeterSet(name: string, kind: LogKind): SetDef {
  return { name, key: 'uid', interval: false, timeout: true, dynamic: true, meter: true, elements: [], comment: `each user's share of the ${kind} log budget` };
}

/** NFLOG group for DNS replies observed in audit mode: the event group plus one. */
export function dnsLogGroup(policy: Policy): number {
  return policy.log.group === 65535 ? 65534 : policy.log.group + 1;
}

const dnsPortsSet = (name: string, port: number): SetDef => protoPortSet({ name, elements: [IPPROTO_TCP, IPPROTO_UDP].map((proto) => ({ t: 'protoport', proto, from: port, to: port })) });

/** A plain (non-interval, static) set of single addresses of one family. */
function hostSet(name: string, family: 4 | 6, hosts: AddrRange[], comment: string): SetDef {
  return {
    name,
    key: family === 4 ? 'ipv4_addr' : 'ipv6_addr',
    interval: false,
    timeout: false,
    dynamic: false,
    elements: hosts.map((h) => ({ t: 'addr', family, start: h.start, end: h.end })),
    comment,
  };
}

/**
 * Only the guard (root, with its mark) may reach the upstream resolvers on
 * port 53. Setting a mark needs CAP_NET_ADMIN (CAP_NET_RAW on newer kernels),
 * so the uid is required too. Other flows there are dropped even when
 * conntrack knows them (a reused source port), which is why these rules come
 * before the established shortcut.
 */
function guardUpstreamRules(policy: Policy, upstreams: AddrRange[], sets: SetDef[], only: Stmt[][] | null = null): RuleDef[] {
  const dnsPorts = buildSetName({ kind: 'builtin', name: 'dns_ports' });
  sets.push({ ...dnsPortsSet(dnsPorts, DNS_PORT), comment: 'DNS' });
  const out: RuleDef[] = [];
  for (const family of [4, 6] as const) {
    const hosts = upstreams.filter((u) => u.family === family);
    if (hosts.length === 0) continue;
    const name = buildSetName({ kind: 'builtin', name: `dns_upstream${family}` });
    sets.push(hostSet(name, family, hosts, 'DNS guard upstreams'));
    const to: Stmt[] = [
      { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 },
      { k: 'lookup', sel: family === 4 ? 'ip daddr' : 'ip6 daddr', set: name },
      { k: 'lookup', sel: 'meta l4proto . th dport', set: dnsPorts },
    ];
    if (only === null) {
      out.push(
        { stmts: [{ k: 'cmp', sel: 'meta mark', op: 'neq', value: policy.dns.mark }, ...to, { k: 'verdict', v: 'drop' }], comment: 'only the guard reaches the upstream resolvers' },
        { stmts: [{ k: 'cmp', sel: 'meta skuid', op: 'neq', value: 0 }, ...to, { k: 'verdict', v: 'drop' }], comment: 'only the guard reaches the upstream resolvers' },
        { stmts: [...to, { k: 'counter', name: buildCounterName({ kind: 'dns-upstream' }) }, { k: 'verdict', v: 'accept' }], comment: 'DNS guard to its upstreams' },
      );
      continue;
    }
    // Audit mode, enforce scopes: only their queries are kept from the upstreams (everyone else's are
    // judged by the rules, in audit); the guard's own are accepted as they are in enforce mode.
    const guardOwn: Stmt[] = [{ k: 'cmp', sel: 'meta mark', op: 'eq', value: policy.dns.mark }, { k: 'cmp', sel: 'meta skuid', op: 'eq', value: 0 }];
    out.push(
      { stmts: [...guardOwn, ...to, { k: 'counter', name: buildCounterName({ kind: 'dns-upstream' }) }, { k: 'verdict', v: 'accept' }], comment: 'DNS guard to its upstreams' },
      ...only.map((m) => ({ stmts: [...m, ...to, { k: 'verdict', v: 'drop' }] satisfies Stmt[], comment: 'an enforced scope reaches the upstream resolvers only through the guard' })),
    );
  }
  return out;
}

/**
 * DNS over TLS everywhere, and DNS over HTTPS (and HTTP/3) to well-known
 * endpoints (`addrs`: dohEndpoints, which leaves out the addresses an allow
 * rule names exactly). Port 853 is left to the rules for the destinations of
 * allow rules that list it (dotRules): an explicit allow wins, a broad one
 * (`to: [any]`, a prefix) does not.
 */
function encryptedDnsRules(policy: Policy, addrs: AddrRange[], sets: SetDef[]): RuleDef[] {
  const end = (stmts: Stmt[]): RuleDef => ({
    stmts: [...stmts, { k: 'counter', name: buildCounterName({ kind: 'encrypted-dns' }) }, { k: 'goto', chain: buildChainName({ kind: 'block', rule: ENCRYPTED_DNS_RULE }) }],
    comment: 'encrypted DNS bypasses the guard',
  });
  const out: RuleDef[] = [];
  // DNS over TLS: blocked everywhere except to the destinations of rules that list port 853 themselves.
  const dot = dotRules(policy);
  const existing = new Set(sets.map((x) => x.name));
  const dotPorts = buildSetName({ kind: 'builtin', name: 'dot_ports' });
  sets.push({ ...dnsPortsSet(dotPorts, DOT_PORT), comment: 'DNS over TLS' });
  for (const family of [4, 6] as const) {
    if (dot.some((r) => dotReach(r, family) === 'everywhere')) continue; // a rule allows 853 to every address of the family
    const exempt: Stmt[] = dot
      .flatMap((r) => (['a', 'n', 'd'] as const).map((kind) => objectNames.set(r.name, `${kind}${family}`)))
      .filter((n) => existing.has(n))
      .map((set) => ({ k: 'lookup', sel: family === 4 ? 'ip daddr' : 'ip6 daddr', set, neg: true }));
    out.push(end([{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 }, ...exempt, { k: 'lookup', sel: 'meta l4proto . th dport', set: dotPorts }]));
  }
  const dohPorts = buildSetName({ kind: 'builtin', name: 'doh_ports' });
  sets.push({ ...dnsPortsSet(dohPorts, DOH_PORT), comment: 'HTTPS and HTTP/3' });
  for (const family of [4, 6] as const) {
    const list = addrs.filter((a) => a.family === family);
    if (list.length === 0) continue;
    const name = buildSetName({ kind: 'builtin', name: `encrypted_dns${family}` });
    sets.push(hostSet(name, family, list, 'well-known DNS-over-HTTPS endpoints'));
    out.push(
      end([
        { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 },
        { k: 'lookup', sel: family === 4 ? 'ip daddr' : 'ip6 daddr', set: name },
        { k: 'lookup', sel: 'meta l4proto . th dport', set: dohPorts },
      ]),
    );
  }
  return out;
}

/**
 * Enforce mode: redirected queries reach the guard's own sockets only. The
 * redirect names a port, and a port is only as safe as the kernel's idea of
 * a privileged port (`net.ipv4.ip_unprivileged_port_start`, which containers
 * set to 0). The guard's sockets carry its mark (SO_MARK needs CAP_NET_ADMIN),
 * so a redirected packet whose receiving socket lacks it is dropped: nobody
 * else who bound the port, whenever and however, sees a query.
 */
function guardInputChain(policy: Policy, sets: SetDef[]): ChainDef {
  const port = buildSetName({ kind: 'builtin', name: 'guard_port' });
  sets.push({ ...dnsPortsSet(port, policy.dns.port), comment: "the DNS guard's port" });
  return {
    name: buildChainName({ kind: 'base', name: 'guard_in' }),
    base: { type: 'filter', hook: 'input', priority: 0, policy: 'accept' },
    rules: [
      {
        stmts: [
          { k: 'lookup', sel: 'meta l4proto . th dport', set: port },
          { k: 'cmp', sel: 'ct status', op: 'neq', value: 0, mask: IPS_DST_NAT },
          { k: 'cmp', sel: 'socket mark', op: 'neq', value: policy.dns.mark },
          { k: 'verdict', v: 'drop' },
        ],
        comment: 'redirected DNS reaches only the guard (its sockets carry its mark)',
      },
    ],
  };
}

/**
 * Packets of inbound-initiated flows (this host answering). Any local port
 * by default, as every host firewall does; with `flows.replies`, only from
 * the listed local ports (ICMP replies, such as to a ping, always); other
 * packets are judged by the rules like any outbound packet.
 */
function replyRules(policy: Policy, sets: SetDef[]): RuleDef[] {
  const reply: Stmt[] = [{ k: 'ct', states: ['established'] }, { k: 'cmp', sel: 'ct direction', op: 'eq', value: 1 }];
  const replies = policy.flows.replies;
  if (replies === 'any') return [{ stmts: [...reply, { k: 'verdict', v: 'accept' }], comment: 'replies to inbound flows' }];
  const set = buildSetName({ kind: 'builtin', name: 'reply_ports' });
  sets.push(
    protoPortSet({
      name: set,
      elements: replies.map((p) => ({ t: 'protoport', proto: p.proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP, from: p.from, to: p.to })),
      comment: 'local ports that may answer inbound flows',
    }),
  );
  return [
    { stmts: [...reply, { k: 'lookup', sel: 'meta l4proto . th sport', set }, { k: 'verdict', v: 'accept' }], comment: 'replies to inbound flows, from the listed ports' },
    ...[IPPROTO_ICMP, IPPROTO_ICMPV6].map((proto) => ({ stmts: [...reply, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto } as Stmt, { k: 'verdict', v: 'accept' } as Stmt], comment: 'ICMP replies' })),
  ];
}

/** The conntrack zone of the guard's upstream flows: the low 16 bits of dns.mark (1 if those are 0). */
export function dnsGuardZone(policy: Policy): number {
  return policy.dns.mark & 0xffff || 1;
}

/**
 * Enforce mode, before conntrack (raw priority): the guard's upstream flows,
 * both directions, are tracked in a zone of their own. The guard opens a
 * fresh source port for every batch of queries, and a flow left in
 * conntrack is keyed by its ports: in one shared zone a client query that
 * happened to reuse a port of a finished guard flow would ride that entry
 * past the redirect (and be dropped), and a guard query on a port a client
 * flow had used would be redirected back to the guard. Only the guard's
 * packets (root, marked) go in; replies are told by their source, an
 * upstream's port 53, which in enforce mode only the guard talks to.
 *
 * After conntrack and before the redirect, every other DNS query over UDP is
 * marked with its sender's uid, which the guard reads back (SO_RCVMARK) to
 * give each user a share of the queries in flight. Only unmarked packets:
 * a mark some other (privileged) program set is left alone.
 */
function dnsGuardChains(policy: Policy, upstreams: AddrRange[], scopeQueries: { scope: Scope; mark: number; matches: Stmt[][] }[] = [], only: Stmt[][] | null = null): ChainDef[] {
  const scoped = only !== null;
  const zone: Stmt = { k: 'ct-zone-set', zone: dnsGuardZone(policy) };
  // Under an audit policy other processes ask the upstreams too: only replies to the guard's own
  // sockets (they carry its mark) go to its zone; the others stay in theirs, to be observed.
  const toGuard: Stmt[] = scoped ? [{ k: 'cmp', sel: 'socket mark', op: 'eq', value: policy.dns.mark }] : [];
  const out: RuleDef[] = [];
  const replies: RuleDef[] = [];
  for (const family of [4, 6] as const) {
    if (!upstreams.some((u) => u.family === family)) continue;
    const nfproto: Stmt = { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 };
    const set = buildSetName({ kind: 'builtin', name: family === 4 ? 'dns_upstream4' : 'dns_upstream6' });
    out.push({
      stmts: [
        { k: 'cmp', sel: 'meta mark', op: 'eq', value: policy.dns.mark },
        { k: 'cmp', sel: 'meta skuid', op: 'eq', value: 0 },
        nfproto,
        { k: 'lookup', sel: family === 4 ? 'ip daddr' : 'ip6 daddr', set },
        { k: 'lookup', sel: 'meta l4proto . th dport', set: buildSetName({ kind: 'builtin', name: 'dns_ports' }) },
        zone,
      ],
      comment: "the guard's upstream flows in a conntrack zone of their own",
    });
    for (const proto of [IPPROTO_UDP, IPPROTO_TCP]) {
      replies.push({
        stmts: [nfproto, { k: 'lookup', sel: family === 4 ? 'ip saddr' : 'ip6 saddr', set }, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto }, { k: 'cmp', sel: 'th sport', op: 'eq', value: 53 }, ...toGuard, zone],
        comment: "replies to the guard's upstream flows",
      });
    }
  }
  const chains: ChainDef[] = [];
  if (out.length > 0) {
    chains.push(
      { name: buildChainName({ kind: 'base', name: 'dns_zone_out' }), base: { type: 'filter', hook: 'output', priority: -300, policy: 'accept' }, rules: out },
      { name: buildChainName({ kind: 'base', name: 'dns_zone_in' }), base: { type: 'filter', hook: 'prerouting', priority: -300, policy: 'accept' }, rules: replies },
    );
  }
  chains.push({
    name: buildChainName({ kind: 'base', name: 'dns_client_uid' }),
    base: { type: 'filter', hook: 'output', priority: -150, policy: 'accept' },
    // Queries to port 53 (redirected to the guard) and straight to the guard's port alike: the
    // guard takes the mark for its sender's uid, to share queries in flight and to name who asked,
    // or, from a service scope in audit, the scope's mark (SCOPE_QUERY_MARK_BASE up), set first.
    rules: [53, policy.dns.port].flatMap((port) => {
      // Every packet the host sends passes here: the comparisons most packets fail come first.
      const query: Stmt[] = [
        { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_UDP },
        { k: 'cmp', sel: 'th dport', op: 'eq', value: port },
        { k: 'cmp', sel: 'meta mark', op: 'eq', value: 0 },
        // Queries only: a local server's reply that happens to go to a client's port 53 keeps its mark.
        { k: 'cmp', sel: 'ct direction', op: 'eq', value: 0 },
      ];
      return [
        ...scopeQueries.flatMap((q) => q.matches.map((m) => ({ stmts: [...query, ...m, { k: 'mark-set', value: q.mark }] satisfies Stmt[], comment: `a DNS query from scope ${q.scope.name} (${q.scope.mode})` }))),
        // Under an audit policy only the enforce scopes' queries reach the guard: nobody else's packets get a mark
        // (a uid in the mark of a packet that leaves the host could meet a `fwmark` routing rule).
        ...(only ?? [[]]).map((m) => ({ stmts: [...query, ...m, { k: 'mark-set-skuid' }] satisfies Stmt[], comment: "a DNS query's sender, for the guard's per-user share and attribution" })),
      ];
    }),
  });
  return chains;
}

/**
 * Enforce mode: every DNS query to port 53, wherever it is addressed, goes to
 * the guard. Audit mode with enforce scopes (`only`): the queries of the
 * scopes' senders.
 */
function dnsRedirectChain(policy: Policy, only: Stmt[][] | null = null): ChainDef {
  return {
    name: buildChainName({ kind: 'base', name: 'dns_redirect' }),
    base: { type: 'nat', hook: 'output', priority: -100, policy: 'accept' },
    rules: [
      {
        stmts: [{ k: 'cmp', sel: 'meta mark', op: 'eq', value: policy.dns.mark }, { k: 'cmp', sel: 'meta skuid', op: 'eq', value: 0 }, { k: 'verdict', v: 'return' }],
        comment: "the guard's own queries",
      },
      ...(only ?? [[]]).flatMap((m) =>
        [IPPROTO_UDP, IPPROTO_TCP].map((proto) => ({
          stmts: [
            ...m,
            { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto },
            { k: 'cmp', sel: 'th dport', op: 'eq', value: DNS_PORT },
            { k: 'redirect', port: policy.dns.port },
          ] satisfies Stmt[],
          comment: only ? "an enforced scope's DNS goes to the guard" : 'DNS goes to the guard',
        })),
      ),
    ],
  };
}

type Source = { family: Family; lookup?: string } | null;
/** `ports`: the statements that match the destination port against one of the rule's port sets. */
type ProtoKind = { kind: 'ports'; match: Stmt[] } | { kind: 'icmp' } | { kind: 'icmpv6' } | { kind: 'any' };

function fullRange(r: AddrRange): boolean {
  return r.start === 0n && r.end === maxOf(r.family);
}

/**
 * One policy rule compiled: the statement lists (one per nft rule) that
 * together express it, and its identity conditions alone (users, services,
 * interfaces; one list per cgroup level, empty when it has none), which the
 * flows chain re-checks on every packet of a flow the rule admitted.
 */
interface CompiledRule {
  lists: Stmt[][];
  identity: Stmt[][];
}

/** True when a rule says who may send (user, service) or how (interface): what a later packet of an admitted flow must still satisfy. */
export function hasIdentity(rule: Rule): boolean {
  return rule.users.length > 0 || rule.services.length > 0 || rule.interfaces.length > 0;
}

/** Compiles one policy rule, adding its sets. */
function compileRule(rule: Rule, env: CompileEnv, sets: SetDef[], warnings: string[]): CompiledRule {
  const name = (dim: RuleSetDim) => objectNames.set(rule.name, dim);
  const addSet = (def: Omit<SetDef, 'comment'>) => {
    sets.push({ ...def, comment: `rule ${rule.name}` });
    return def.name;
  };

  // Destinations: per family, hosts go in hash sets and prefixes in interval
  // sets (a hash lookup is cheaper, and hash sets load ~6x faster than
  // interval sets at 100,000 entries).
  const sources: Source[] = [];
  // One pass over the addresses (a feed's million hosts): per family, hosts
  // and prefixes as set elements, and whether one covers the whole family.
  const split = { 4: { full: false, hosts: [] as SetElem[], nets: [] as SetElem[] }, 6: { full: false, hosts: [] as SetElem[], nets: [] as SetElem[] } };
  for (const a of rule.addrs) {
    const part = split[a.family];
    if (a.start === a.end) part.hosts.push({ t: 'addr', family: a.family, start: a.start, end: a.end });
    else {
      if (fullRange(a)) part.full = true;
      part.nets.push({ t: 'addr', family: a.family, start: a.start, end: a.end });
    }
  }
  if ((rule.addrs.length === 0 && rule.domains.length === 0) || (split[4].full && split[6].full)) {
    // No destination constraint, or every address of both families: no lookup at all.
    sources.push(null);
  } else {
    for (const family of [4, 6] as const) {
      const { full, hosts, nets } = split[family];
      if (full) {
        sources.push({ family });
        continue;
      }
      const key = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
      if (hosts.length > 0) {
        const set = addSet({ name: name(`a${family}`), key, interval: false, timeout: false, dynamic: false, elements: hosts });
        sources.push({ family, lookup: set });
      }
      if (nets.length > 0) {
        const set = addSet({ name: name(`n${family}`), key, interval: true, timeout: false, dynamic: false, elements: nets });
        sources.push({ family, lookup: set });
      }
      if (rule.domains.length > 0) {
        const set = name(`d${family}`);
        sets.push({ name: set, key, interval: false, timeout: true, dynamic: true, elements: [], comment: domainComment(rule) });
        sources.push({ family, lookup: set });
      }
    }
  }

  const protos: ProtoKind[] = [];
  if (rule.ports.length > 0) {
    for (const { set, match } of rulePortSets(rule.ports, name)) {
      addSet(set);
      protos.push({ kind: 'ports', match });
    }
  }
  if (rule.icmp) protos.push({ kind: 'icmp' });
  if (rule.icmpv6) protos.push({ kind: 'icmpv6' });
  if (protos.length === 0) protos.push({ kind: 'any' });

  const common: Stmt[] = [];
  if (rule.interfaces.length > 0) {
    const set = addSet({
      name: name('if'),
      key: 'ifname',
      interval: true,
      timeout: false,
      dynamic: false,
      elements: rule.interfaces.map((i) => ({ t: 'ifname', name: i.name, wildcard: i.wildcard })),
    });
    common.push({ k: 'lookup', sel: 'meta oifname', set });
  }
  if (rule.users.length > 0) {
    const set = addSet({
      name: name('u'),
      key: 'uid',
      interval: false,
      timeout: false,
      dynamic: false,
      elements: [...rule.users].sort((a, b) => a.uid - b.uid).map((u) => ({ t: 'num', value: BigInt(u.uid) })),
    });
    common.push({ k: 'lookup', sel: 'meta skuid', set });
  }

  // Services: `socket cgroupv2 level L` compares the ancestor of the socket's
  // cgroup at depth L, so each depth needs its own set and its own rule.
  let cgroupStmts: Stmt[][] = [[]];
  if (rule.services.length > 0) {
    const byLevel = new Map<number, bigint[]>();
    for (const s of rule.services) {
      const found = env.cgroups.get(serviceKey(s)) ?? [];
      if (found.length === 0) {
        const label = s.kind === 'unit' ? s.unit : s.path;
        warnings.push(`rule ${rule.name}: service ${label} has no cgroup now (not running?); the rule cannot match it until the next apply`);
      }
      for (const cg of found) {
        const ids = byLevel.get(cg.level) ?? [];
        if (!ids.includes(cg.id)) ids.push(cg.id);
        byLevel.set(cg.level, ids);
      }
    }
    cgroupStmts = [...byLevel.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([level, ids]) => {
        const set = addSet({
          name: name(`cg${level}`),
          key: 'cgroupv2',
          interval: false,
          timeout: false,
          dynamic: false,
          level,
          elements: ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((id) => ({ t: 'num', value: id })),
        });
        return [{ k: 'lookup', sel: 'socket cgroupv2', set, level } satisfies Stmt];
      });
    // No cgroup found at all: the rule matches nothing (fail closed for allow rules).
    if (cgroupStmts.length === 0) return { lists: [], identity: [] };
  }

  const out: Stmt[][] = [];
  for (const src of sources) {
    for (const proto of protos) {
      if (proto.kind === 'icmp' && src && src.family !== 4) continue;
      if (proto.kind === 'icmpv6' && src && src.family !== 6) continue;
      for (const cg of cgroupStmts) {
        const stmts: Stmt[] = [];
        if (src) {
          stmts.push({ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: src.family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6 });
          if (src.lookup) stmts.push({ k: 'lookup', sel: src.family === 4 ? 'ip daddr' : 'ip6 daddr', set: src.lookup });
        }
        if (proto.kind === 'ports') stmts.push(...proto.match);
        else if (proto.kind === 'icmp') stmts.push({ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_ICMP });
        else if (proto.kind === 'icmpv6') stmts.push({ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: IPPROTO_ICMPV6 });
        stmts.push(...common, ...cg);
        out.push(stmts);
      }
    }
  }
  return { lists: out, identity: hasIdentity(rule) ? cgroupStmts.map((cg) => [...common, ...cg]) : [] };
}

/**
 * A scope's match: one statement list per cgroup level (services) or one
 * (users), each a set lookup; none when none of its services runs now (the
 * scope then matches nothing: its senders keep the policy's mode).
 */
function compileScope(scope: Scope, env: CompileEnv, sets: SetDef[], warnings: string[]): Stmt[][] {
  const comment = `scope ${scope.name} (${scope.mode})`;
  if (scope.users.length > 0) {
    const set = buildSetName({ kind: 'scope', scope: scope.name, dim: 'u' });
    sets.push({ name: set, key: 'uid', interval: false, timeout: false, dynamic: false, elements: [...scope.users].sort((a, b) => a.uid - b.uid).map((u) => ({ t: 'num', value: BigInt(u.uid) })), comment });
    return [[{ k: 'lookup', sel: 'meta skuid', set }]];
  }
  const byLevel = new Map<number, bigint[]>();
  for (const s of scope.services) {
    const found = env.cgroups.get(serviceKey(s)) ?? [];
    if (found.length === 0) warnings.push(`scope ${scope.name}: service ${s.kind === 'unit' ? s.unit : s.path} has no cgroup now (not running?); it keeps the policy's mode until the next apply`);
    for (const cg of found) {
      const ids = byLevel.get(cg.level) ?? [];
      if (!ids.includes(cg.id)) ids.push(cg.id);
      byLevel.set(cg.level, ids);
    }
  }
  return [...byLevel.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([level, ids]) => {
      const set = buildSetName({ kind: 'scope', scope: scope.name, dim: `cg${level}` });
      sets.push({ name: set, key: 'cgroupv2', interval: false, timeout: false, dynamic: false, level, elements: ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((id) => ({ t: 'num', value: id })), comment });
      return [{ k: 'lookup', sel: 'socket cgroupv2', set, level } satisfies Stmt];
    });
}

/**
 * The comment of a DNS-filled set: the rule, a hash of its action and full
 * domain list, and the names (kept under the kernel's 255-byte user-data
 * limit). Learned addresses are carried across a table replacement only into
 * a set with the same comment, so narrowing a rule's names, or turning a deny
 * into an allow, never inherits addresses learned under the old meaning.
 */
function domainComment(rule: Rule): string {
  const hash = createHash('sha256').update(`${rule.action}\n${rule.domains.map((d) => d.text).join('\n')}`).digest('hex').slice(0, 12);
  const full = `rule ${rule.name} [${hash}]: ${rule.domains.map((d) => d.text).join(', ')}`;
  return Buffer.byteLength(full) <= 200 ? full : `${full.slice(0, 190)}...`;
}

/** Sorted copy of set elements for stable output (golden files, comparisons). */
export function sortElements(elems: SetElem[]): SetElem[] {
  const keyOf = (e: SetElem): string => {
    switch (e.t) {
      case 'addr':
        return `${e.family}:${e.start.toString(16).padStart(32, '0')}:${e.end.toString(16).padStart(32, '0')}`;
      case 'protoport':
        return `${String(e.proto).padStart(3, '0')}:${String(e.from).padStart(5, '0')}:${String(e.to).padStart(5, '0')}`;
      case 'port':
        return `${String(e.from).padStart(5, '0')}:${String(e.to).padStart(5, '0')}`;
      case 'ifname':
        return `${e.name}\u0000${e.wildcard ? '*' : ''}`;
      case 'num':
        return e.value.toString(16).padStart(20, '0');
    }
  };
  // Keys computed once per element, not once per comparison.
  return elems
    .map((e) => ({ e, k: keyOf(e) }))
    .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
    .map((x) => x.e);
}
