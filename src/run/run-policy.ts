import { UsageError } from '../errors.js';
import { parseAddr, type AddrRange } from '../net/ip.js';
import { ANY_RANGES, parseDestination, parsePortEntry, showValue } from '../policy/parse-values.js';
import { DNS_DEFAULTS, FLOW_DEFAULTS, type Policy, type PortRange, type Rule } from '../policy/policy.js';
import { mergePorts, normalizeAddrs } from '../policy/rule-parts.js';
import { runPolicyProblems } from '../compile/run-ruleset.js';

/**
 * A run's policy: the rules of `--policy FILE` (the policy language, less
 * what names host identities: users, services, interfaces), then one rule
 * per `--allow`, in order. With neither, nothing is allowed.
 */

/** One `--allow` value split: the destination and its port part (`443`, `443/tcp`, `8000-8100/udp`), if any. */
export function splitAllow(spec: string): { dest: string; ports?: string } {
  const s = spec.trim();
  if (s === '') throw new UsageError('--allow needs a destination: a name, *.name, an address or a CIDR, optionally with :PORT[/PROTO]');
  if (s.startsWith('[')) {
    // [2001:db8::1]:443/tcp or [2001:db8::/32]
    const close = s.indexOf(']');
    if (close < 0) throw new UsageError(`--allow ${JSON.stringify(spec)}: no closing ] after the IPv6 address`);
    const dest = s.slice(1, close);
    const after = s.slice(close + 1);
    if (after === '') return { dest };
    if (!after.startsWith(':') || after.length === 1) throw new UsageError(`--allow ${JSON.stringify(spec)}: want [ADDR]:PORT[/PROTO] after the brackets`);
    return { dest, ports: after.slice(1) };
  }
  // One colon: DEST:PORT. Two or more: an IPv6 address or prefix, which takes a port only in brackets.
  const colons = s.split(':').length - 1;
  if (colons === 1) {
    const at = s.indexOf(':');
    const dest = s.slice(0, at);
    const ports = s.slice(at + 1);
    if (dest === '' || ports === '') throw new UsageError(`--allow ${JSON.stringify(spec)}: want DEST:PORT[/PROTO]`);
    return { dest, ports };
  }
  return { dest: s };
}

/**
 * The rule one `--allow` stands for, made by the policy language's own value
 * parsers (the ones `to:` and `ports:` use), so `--allow` accepts exactly
 * what a rule's `to` and `ports` accept, without loading YAML and the schema
 * (which cost most of a run's start-up).
 */
export function allowRule(spec: string, n: number): Rule {
  const { dest, ports } = splitAllow(spec);
  const bad = (why: string): never => {
    throw new UsageError(`--allow ${JSON.stringify(spec)}: ${why}`);
  };
  const d = parseDestination(dest);
  if (!d.ok) return bad(`${d.reason}: ${showValue(dest)}`);
  const ranges: PortRange[] = [];
  let icmp = false;
  let icmpv6 = false;
  if (ports !== undefined) {
    const pe = parsePortEntry(ports);
    if (!pe.ok) return bad(`${pe.reason}: ${showValue(ports)}`);
    if (pe.value.kind === 'icmp') icmp = true;
    else if (pe.value.kind === 'icmpv6') icmpv6 = true;
    else ranges.push(...pe.value.ranges);
  }
  const v = d.value;
  return {
    name: `allow-${n}`,
    action: 'allow',
    index: n - 1,
    addrs: normalizeAddrs(v.kind === 'any' ? ANY_RANGES.map((x) => ({ ...x })) : v.kind === 'addr' ? [v.range] : []),
    domains: v.kind === 'domain' ? [v.pattern] : [],
    ports: mergePorts(ranges),
    icmp,
    icmpv6,
    users: [],
    services: [],
    interfaces: [],
    log: false,
    line: 0,
  };
}

/**
 * The policy a run starts from without --policy: every default the loader
 * gives `mode: enforce`, and no rule (`dns.guard` as the loader has it for a
 * policy without names; a run runs its guard whatever it says).
 */
export function basePolicy(): Policy {
  return {
    file: '--allow',
    sha256: '',
    mode: 'enforce',
    defaultAction: 'deny',
    blockWith: 'reject',
    essentials: true,
    tamper: 'restore',
    ownedTable: false,
    log: { group: 7331, rate: 1000, burst: 5000, userRate: 250, userBurst: 1250, allowed: false },
    rules: [],
    scopes: [],
    alerts: [],
    suppress: [],
    dns: { ...DNS_DEFAULTS, guard: false, upstreams: null, blockedAnswer: 'nxdomain', encryptedDns: 'block', encryptedDnsList: null },
    flows: { ...FLOW_DEFAULTS, replies: 'any' },
    warnings: [],
  };
}

/**
 * The run's policy from an already-loaded `--policy` (or none) and the
 * `--allow` values; the run enforces unless `audit` (the file's `mode` is not used). Throws UsageError/PolicyError
 * with the reason, naming the flag or the file.
 */
export function runPolicy(file: Policy | undefined, allows: readonly string[], audit: boolean): Policy {
  const base = file ?? basePolicy();
  const problems = runPolicyProblems(base);
  if (problems.length > 0) throw new UsageError(`${base.file}: ${problems.join('; ')}`);
  const rules = [...base.rules];
  const taken = new Set(rules.map((r) => r.name));
  allows.forEach((spec, i) => {
    const r = allowRule(spec, i + 1);
    if (taken.has(r.name)) throw new UsageError(`--allow ${JSON.stringify(spec)}: its rule name ${r.name} is taken by a rule of ${base.file}; rename that rule`);
    taken.add(r.name);
    rules.push({ ...r, index: rules.length });
  });
  // A run enforces unless --audit: a policy file's `mode` (audit when left out) is not what a run asks.
  const mode = audit ? 'audit' : 'enforce';
  return { ...base, file: file ? base.file : '--allow', mode, rules };
}

/** `--dns-upstream` values: addresses (a port is not taken: the guard asks port 53). */
export function parseUpstreams(values: readonly string[]): AddrRange[] {
  return values.map((v) => {
    const a = parseAddr(v.trim());
    if (!a) throw new UsageError(`--dns-upstream ${JSON.stringify(v)}: not an IPv4 or IPv6 address`);
    return { family: a.family, start: a.value, end: a.value };
  });
}
