import { maxOf, type AddrRange, type Family } from '../net/ip.js';
import { ESSENTIAL_ICMPV6_TYPES } from '../policy/builtins.js';
import type { Policy, Rule } from '../policy/policy.js';
import { buildLogPrefix, DEFAULT_RULE, objectNames, RULE_SCOPE } from './kernel-names.js';
import { protoPortSet, rulePortSets, type ChainDef, type RuleDef, type Ruleset, type SetDef, type Stmt } from './ruleset.js';

/**
 * The host-side table of one `sluice run`: the run's processes live in a
 * network namespace of their own, joined to the host by a veth pair, and
 * every rule that binds them is here, in the host's namespace, keyed by the
 * host end of that veth. Nothing inside the run can see or change it: root
 * in the run flushing every table it can see flushes only its own namespace's.
 *
 * - forward, from the veth: the policy's rules in order (allow accepts, deny
 *   blocks; deny rules first, as on the host), then the default; replies to admitted flows pass; a blocked
 *   packet is logged to the run's own NFLOG group and refused.
 * - forward, to the veth: only replies (nothing outside opens a flow into the run).
 * - prerouting nat: DNS (UDP and TCP port 53, to any address) from the veth
 *   goes to the run's own DNS guard, so a resolver of the program's own
 *   choosing is never reached and every name goes through the policy.
 * - postrouting nat: the run's flows leave with the host's address (masquerade).
 * - input, from the veth: the guard, IPv6 neighbour discovery and replies;
 *   nothing else on the host is reachable from the run.
 *
 * The DNS-filled sets are named and shaped as in the host's table (objectNames:
 * `r_<rule>_d4`...), so the DNS guard writes them the same way.
 */

export interface RunNetwork {
  /** The table's name (`sluice-run-<id>`). */
  table: string;
  /** The host end of the run's veth. */
  hostIf: string;
  /** The guard's addresses on the host end (DNS is DNATed to them), per family; v6 absent when the run has no IPv6. */
  guard4: bigint;
  guard6?: bigint;
  /** The run's own addresses (inside): the only sources its packets may have. */
  inner4: bigint;
  inner6?: bigint;
  guardPort: number;
  /** The NFLOG group the run's block (and allow-log) records go to. */
  logGroup: number;
}

export interface RunRulesetResult {
  ruleset: Ruleset;
  /** The DNS-filled sets (the guard's dynamicSets). */
  dynamicSets: Set<string>;
}

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const NFPROTO = { 4: 2, 6: 10 } as const;
const IF_SET = 'run_if';
const GUARD_PORT_SET = 'run_guard_port';
const ND_SET = 'run_nd';

/** What a run's policy cannot say: selectors that name host identities, which a run's own namespace does not have. */
export function runPolicyProblems(policy: Policy): string[] {
  const out: string[] = [];
  for (const r of policy.rules) {
    if (r.users.length > 0) out.push(`rule ${r.name}: \`users\` has no meaning in \`sluice run\` (the whole command is the run); remove it`);
    if (r.services.length > 0) out.push(`rule ${r.name}: \`services\` has no meaning in \`sluice run\`; remove it`);
    if (r.interfaces.length > 0) out.push(`rule ${r.name}: \`interfaces\` has no meaning in \`sluice run\` (the run has one link); remove it`);
  }
  for (const sc of policy.scopes ?? []) out.push(`scope ${sc.name}: \`scopes\` have no meaning in \`sluice run\` (the whole command is the run, in one mode: --audit or not); remove it`);
  return out;
}

function fullRange(r: AddrRange): boolean {
  return r.start === 0n && r.end === maxOf(r.family);
}

/** The destinations of a rule per family: null means any address of that family; [] means none. */
function destinations(rule: Rule, sets: SetDef[], dynamic: Set<string>): Map<Family, Stmt[][]> {
  const out = new Map<Family, Stmt[][]>();
  const any = rule.addrs.length === 0 && rule.domains.length === 0;
  for (const family of [4, 6] as const) {
    const sel = family === 4 ? 'ip daddr' : 'ip6 daddr';
    const key = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    const ranges = rule.addrs.filter((a) => a.family === family);
    if (any || ranges.some(fullRange)) {
      out.set(family, [[]]);
      continue;
    }
    const list: Stmt[][] = [];
    const hosts = ranges.filter((a) => a.start === a.end);
    const nets = ranges.filter((a) => a.start !== a.end);
    if (hosts.length > 0) {
      const name = objectNames.set(rule.name, `a${family}`);
      sets.push({ name, key, interval: false, timeout: false, dynamic: false, elements: hosts.map((h) => ({ t: 'addr', family, start: h.start, end: h.end })), comment: `rule ${rule.name}` });
      list.push([{ k: 'lookup', sel, set: name }]);
    }
    if (nets.length > 0) {
      const name = objectNames.set(rule.name, `n${family}`);
      sets.push({ name, key, interval: true, timeout: false, dynamic: false, elements: nets.map((n) => ({ t: 'addr', family, start: n.start, end: n.end })), comment: `rule ${rule.name}` });
      list.push([{ k: 'lookup', sel, set: name }]);
    }
    if (rule.domains.length > 0) {
      const name = objectNames.dnsSet(rule.name, family);
      sets.push({ name, key, interval: false, timeout: true, dynamic: true, elements: [], comment: `rule ${rule.name}: ${rule.domains.map((d) => d.text).join(', ').slice(0, 180)}` });
      dynamic.add(name);
      list.push([{ k: 'lookup', sel, set: name }]);
    }
    out.set(family, list);
  }
  return out;
}

/** The protocol conditions of a rule: one statement list per alternative. */
function protocols(rule: Rule, family: Family, sets: SetDef[]): Stmt[][] {
  const out: Stmt[][] = [];
  if (rule.ports.length === 0 && !rule.icmp && !rule.icmpv6) return [[]];
  if (rule.ports.length > 0) {
    // Called once per family: the sets are added the first time.
    for (const { set, match } of rulePortSets(rule.ports, (dim) => objectNames.set(rule.name, dim), `rule ${rule.name}`)) {
      if (!sets.some((s) => s.name === set.name)) sets.push(set);
      out.push(match);
    }
  }
  if (rule.icmp && family === 4) out.push([{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: ICMP }]);
  if (rule.icmpv6 && family === 6) out.push([{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: ICMPV6 }]);
  return out;
}

/**
 * The statements that refuse (or, in audit mode, only record) a packet for `rule`. A deny rule's
 * own `mode:` wins over the run's, as on the host: `enforce` refuses in an `--audit` run; `audit`
 * records would-block and returns, so the other rules judge the packet (the caller jumps).
 */
function blockChain(name: string, rule: string, policy: Policy, net: RunNetwork, ownMode?: 'audit' | 'enforce'): ChainDef {
  const audit = (ownMode ?? policy.mode) === 'audit';
  const log: Stmt = { k: 'log', group: net.logGroup, prefix: buildLogPrefix({ verdict: audit ? 'would-block' : 'blocked', rule, ...(ownMode !== undefined ? { scope: RULE_SCOPE } : {}) }) };
  const rules: RuleDef[] = [];
  if (ownMode === 'audit') rules.push({ stmts: [log, { k: 'verdict', v: 'return' }] });
  else if (audit) rules.push({ stmts: [log, { k: 'verdict', v: 'accept' }] });
  else if (policy.blockWith === 'drop') rules.push({ stmts: [log, { k: 'verdict', v: 'drop' }] });
  else {
    rules.push({ stmts: [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: TCP }, log, { k: 'reject', how: 'tcp-reset' }] });
    rules.push({ stmts: [log, { k: 'reject', how: 'icmpx-admin' }] });
  }
  return { name, rules };
}

/** Compiles the host-side table of one run. Pure: the caller applies it. */
export function compileRunRuleset(policy: Policy, net: RunNetwork): RunRulesetResult {
  const problems = runPolicyProblems(policy);
  if (problems.length > 0) throw new TypeError(problems.join('; '));
  const sets: SetDef[] = [];
  const dynamicSets = new Set<string>();
  const families: Family[] = net.guard6 === undefined ? [4] : [4, 6];
  sets.push({ name: IF_SET, key: 'ifname', interval: true, timeout: false, dynamic: false, elements: [{ t: 'ifname', name: net.hostIf, wildcard: false }], comment: "the run's veth" });
  sets.push(
    protoPortSet({
      name: GUARD_PORT_SET,
      elements: [
        { t: 'protoport', proto: TCP, from: net.guardPort, to: net.guardPort },
        { t: 'protoport', proto: UDP, from: net.guardPort, to: net.guardPort },
      ],
      comment: "the run's DNS guard",
    }),
  );
  sets.push({ name: ND_SET, key: 'icmpv6_type', interval: false, timeout: false, dynamic: false, elements: ESSENTIAL_ICMPV6_TYPES.map((v) => ({ t: 'num', value: BigInt(v) })), comment: 'neighbour discovery' });
  const fromRun: Stmt = { k: 'lookup', sel: 'meta iifname', set: IF_SET };
  const toRun: Stmt = { k: 'lookup', sel: 'meta oifname', set: IF_SET };

  sets.push({ name: 'run_src4', key: 'ipv4_addr', interval: false, timeout: false, dynamic: false, elements: [{ t: 'addr', family: 4, start: net.inner4, end: net.inner4 }], comment: "the run's address" });
  if (net.inner6 !== undefined) {
    sets.push({ name: 'run_src6', key: 'ipv6_addr', interval: false, timeout: false, dynamic: false, elements: [{ t: 'addr', family: 6, start: net.inner6, end: net.inner6 }], comment: "the run's address" });
  }
  const chains: ChainDef[] = [];
  const out: RuleDef[] = [
    // Before anything: a packet from any other source (root in the run can forge one) would come back,
    // once translated, as a reply to that address: another run's, say. Dropped.
    { stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 2 }, { k: 'lookup', sel: 'ip saddr', set: 'run_src4', neg: true }, { k: 'verdict', v: 'drop' }], comment: "only the run's own address" },
    ...(net.inner6 !== undefined
      ? [{ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 10 }, { k: 'lookup', sel: 'ip6 saddr', set: 'run_src6', neg: true }, { k: 'verdict', v: 'drop' }], comment: "only the run's own address" } satisfies RuleDef]
      : []),
    { stmts: [{ k: 'ct', states: ['established', 'related'] }, { k: 'verdict', v: 'accept' }], comment: 'replies and flows already admitted' },
    { stmts: [{ k: 'ct', states: ['invalid'] }, { k: 'verdict', v: 'drop' }] },
  ];
  for (const family of [4, 6] as const) {
    if (!families.includes(family)) out.push({ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: NFPROTO[family] }, { k: 'verdict', v: 'drop' }], comment: 'this run has no IPv6' });
  }
  // Deny rules win over allow rules, whatever the order (as on the host): they come first.
  const ordered = [...policy.rules.filter((r) => r.action === 'deny'), ...policy.rules.filter((r) => r.action === 'allow')];
  for (const rule of ordered) {
    const dests = destinations(rule, sets, dynamicSets);
    const allow = rule.action === 'allow';
    let target: Stmt;
    if (allow) {
      // Every new flow a rule admits is recorded: the run's report lists what it reached.
      const name = `allow_${rule.index}`;
      chains.push({ name, rules: [{ stmts: [{ k: 'log', group: net.logGroup, prefix: buildLogPrefix({ verdict: 'allowed', rule: rule.name }) }, { k: 'verdict', v: 'accept' }] }] });
      target = { k: 'goto', chain: name };
    } else {
      const name = `block_${rule.index}`;
      chains.push(blockChain(name, rule.name, policy, net, rule.mode));
      target = { k: 'goto', chain: name };
    }
    const matches: RuleDef[] = [];
    for (const family of families) {
      for (const dest of dests.get(family) ?? []) {
        for (const proto of protocols(rule, family, sets)) {
          matches.push({ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: NFPROTO[family] }, ...dest, ...proto, target], comment: `${rule.action} ${rule.name}` });
        }
      }
    }
    if (rule.action === 'deny' && rule.mode === 'audit') {
      // Recorded once and judged on by the rules after it: its matches in a chain of their own,
      // jumped to; the first that matches goes to the block chain, which records and returns here.
      const name = `audit_${rule.index}`;
      chains.push({ name, rules: matches });
      out.push({ stmts: [{ k: 'jump', chain: name }], comment: `deny ${rule.name}: in audit by its own mode` });
    } else out.push(...matches);
  }
  if (policy.defaultAction === 'allow') out.push({ stmts: [{ k: 'verdict', v: 'accept' }], comment: 'default allow' });
  else {
    chains.push(blockChain('block_default', DEFAULT_RULE, policy, net));
    out.push({ stmts: [{ k: 'goto', chain: 'block_default' }], comment: 'default deny' });
  }

  const guardIn: RuleDef[] = [{ stmts: [{ k: 'ct', states: ['established', 'related'] }, { k: 'verdict', v: 'accept' }] }];
  guardIn.push({ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 2 }, { k: 'cmp', sel: 'ip daddr', op: 'eq', value: Number(net.guard4) }, { k: 'lookup', sel: 'meta l4proto . th dport', set: GUARD_PORT_SET }, { k: 'verdict', v: 'accept' }], comment: 'the DNS guard' });
  if (net.guard6 !== undefined) {
    const g6 = 'run_guard6';
    sets.push({ name: g6, key: 'ipv6_addr', interval: false, timeout: false, dynamic: false, elements: [{ t: 'addr', family: 6, start: net.guard6, end: net.guard6 }], comment: "the run's DNS guard" });
    guardIn.push({ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 10 }, { k: 'lookup', sel: 'ip6 daddr', set: g6 }, { k: 'lookup', sel: 'meta l4proto . th dport', set: GUARD_PORT_SET }, { k: 'verdict', v: 'accept' }], comment: 'the DNS guard' });
    guardIn.push({ stmts: [{ k: 'cmp', sel: 'meta l4proto', op: 'eq', value: ICMPV6 }, { k: 'lookup', sel: 'icmpv6 type', set: ND_SET }, { k: 'verdict', v: 'accept' }], comment: 'neighbour discovery' });
  }
  guardIn.push({ stmts: [{ k: 'verdict', v: 'drop' }], comment: 'nothing else on this host is reachable from the run' });

  const dnat: RuleDef[] = [];
  for (const proto of [UDP, TCP]) {
    dnat.push({ stmts: [fromRun, { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 2 }, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto }, { k: 'cmp', sel: 'th dport', op: 'eq', value: 53 }, { k: 'dnat', family: 4, addr: net.guard4, port: net.guardPort }], comment: "DNS goes to the run's guard" });
    if (net.guard6 !== undefined) {
      dnat.push({ stmts: [fromRun, { k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 10 }, { k: 'cmp', sel: 'meta l4proto', op: 'eq', value: proto }, { k: 'cmp', sel: 'th dport', op: 'eq', value: 53 }, { k: 'dnat', family: 6, addr: net.guard6, port: net.guardPort }], comment: "DNS goes to the run's guard" });
    }
  }

  chains.unshift(
    {
      name: 'forward',
      base: { type: 'filter', hook: 'forward', priority: -10, policy: 'accept' },
      rules: [
        { stmts: [fromRun, { k: 'jump', chain: 'run_out' }] },
        { stmts: [toRun, { k: 'ct', states: ['established', 'related'] }, { k: 'verdict', v: 'accept' }], comment: 'replies into the run' },
        { stmts: [toRun, { k: 'verdict', v: 'drop' }], comment: 'nothing outside opens a flow into the run' },
      ],
    },
    { name: 'run_out', rules: out, comment: "the run's policy" },
    {
      name: 'input',
      base: { type: 'filter', hook: 'input', priority: -10, policy: 'accept' },
      rules: [
        { stmts: [fromRun, { k: 'goto', chain: 'run_in' }] },
        // The guard answers the run only: not this host's other users, not the network.
        { stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 2 }, { k: 'cmp', sel: 'ip daddr', op: 'eq', value: Number(net.guard4) }, { k: 'lookup', sel: 'meta l4proto . th dport', set: GUARD_PORT_SET }, { k: 'verdict', v: 'drop' }], comment: "the run's guard, from elsewhere" },
        ...(net.guard6 !== undefined
          ? [{ stmts: [{ k: 'cmp', sel: 'meta nfproto', op: 'eq', value: 10 }, { k: 'lookup', sel: 'ip6 daddr', set: 'run_guard6' }, { k: 'lookup', sel: 'meta l4proto . th dport', set: GUARD_PORT_SET }, { k: 'verdict', v: 'drop' }], comment: "the run's guard, from elsewhere" } satisfies RuleDef]
          : []),
      ],
    },
    { name: 'run_in', rules: guardIn },
    { name: 'dns_dnat', base: { type: 'nat', hook: 'prerouting', priority: -100, policy: 'accept' }, rules: dnat },
    { name: 'masquerade', base: { type: 'nat', hook: 'postrouting', priority: 100, policy: 'accept' }, rules: [{ stmts: [fromRun, { k: 'masquerade' }] }] },
  );
  return {
    ruleset: { table: net.table, comment: `sluice run policy=sha256:${policy.sha256}`, sets, counters: [], limits: [], chains },
    dynamicSets,
  };
}
