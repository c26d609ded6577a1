import { PolicyError, UsageError } from '../errors.js';
import { parseAddr, type AddrRange } from '../net/ip.js';
import { parsePolicy, type PolicyHost } from '../policy/load-policy.js';
import type { Policy, Rule } from '../policy/policy.js';
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
  const colons = s.split(':').length - 1;
  // Two or more colons: an IPv6 address or prefix, which takes a port only in brackets.
  if (colons >= 2) return { dest: s };
  if (colons === 1) {
    const at = s.indexOf(':');
    const dest = s.slice(0, at);
    const ports = s.slice(at + 1);
    if (dest === '' || ports === '') throw new UsageError(`--allow ${JSON.stringify(spec)}: want DEST:PORT[/PROTO]`);
    return { dest, ports };
  }
  return { dest: s };
}

const NO_USERS: PolicyHost = { lookupUsers: () => new Map() };

/** The rule one `--allow` stands for, validated by the policy loader itself (so `--allow` accepts exactly what `to:` and `ports:` do). */
function allowRule(spec: string, n: number): Rule {
  const { dest, ports } = splitAllow(spec);
  // JSON strings are YAML strings: nothing the user typed can change the document's shape.
  const doc = [`mode: enforce`, `rules:`, `  - name: ${JSON.stringify(`allow-${n}`)}`, `    to: [${JSON.stringify(dest)}]`, ...(ports !== undefined ? [`    ports: [${JSON.stringify(ports)}]`] : [])].join('\n');
  let p: Policy;
  try {
    p = parsePolicy(Buffer.from(doc), `--allow ${spec}`, NO_USERS);
  } catch (err) {
    if (err instanceof PolicyError) {
      const why = err.issues.filter((i) => i.severity === 'error').map((i) => i.message).join('; ');
      throw new UsageError(`--allow ${JSON.stringify(spec)}: ${why}`);
    }
    throw err;
  }
  const rule = p.rules[0];
  if (!rule) throw new UsageError(`--allow ${JSON.stringify(spec)}: no rule`);
  return rule;
}

/** An empty policy with every default: what a run starts from without --policy. */
function basePolicy(): Policy {
  return parsePolicy(Buffer.from('mode: enforce\nrules: []\n'), '--allow', NO_USERS);
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
