import { SluiceError } from '../errors.js';
import type { Family } from '../net/ip.js';
import { RULE_NAME } from '../policy/parse-values.js';
import { SCOPE_QUERY_MARK_BASE } from '../policy/builtins.js';

/**
 * Every name Sluice writes into the kernel, built and parsed in one place:
 * NFLOG log prefixes, set, counter, limit and chain names, and the table
 * comment. The compiler only builds names here, and every reader (the event
 * collector, metrics, status, the DNS guard) only parses them here, so a
 * name can never be written in one shape and read with a pattern that
 * expects another (how blocked encrypted-DNS records came to be counted as
 * foreign). Each parser accepts exactly what its builder produces:
 * parse(build(x)) is x, and a test runs every name the compiler emits
 * through it.
 *
 * Name spaces are kept apart by construction: a policy rule's objects carry
 * its name after a fixed prefix (`r_`, `block_`, `allow_`), rule names start
 * with a letter or digit, and built-in objects have fixed names no rule can
 * produce, so no policy can make two objects share a name.
 *
 * Kept in src/compile (not src/netfilter): the compiler is the lowest layer
 * that writes these names, and dependencies point down only.
 */

/** A name that cannot be built (a bug in the caller: policies are validated before they get here). */
export class KernelNameError extends SluiceError {
  constructor(message: string) {
    super('EKERNELNAME', message);
  }
}

const bad = (what: string, value: unknown): never => {
  throw new KernelNameError(`Cannot build a kernel name: ${what}: ${JSON.stringify(value)}`);
};

// ------------------------------------------------------------ rules in logs

/** The rule of records no policy rule decided: default deny. */
export const DEFAULT_RULE = '#default';
/** The built-in block of DNS over TLS and known DNS-over-HTTPS endpoints. */
export const ENCRYPTED_DNS_RULE = '#encrypted-dns';
/** The built-in drop of packets a user's socket sends from an address that is not this host's (forged flows). */
export const SPOOFED_RULE = '#spoofed-source';
/** Rules Sluice adds itself; `#` keeps them apart from policy rule names. */
export const BUILTIN_RULES = [DEFAULT_RULE, ENCRYPTED_DNS_RULE, SPOOFED_RULE] as const;
export type BuiltinRule = (typeof BUILTIN_RULES)[number];

/** True for a policy rule name (RULE_NAME grammar). */
export function isRuleName(name: string): boolean {
  return RULE_NAME.test(name);
}

/** True for a rule as records name it: a policy rule or a built-in. */
export function isLogRule(name: string): boolean {
  return isRuleName(name) || (BUILTIN_RULES as readonly string[]).includes(name);
}

// ------------------------------------------------------------ log prefixes

/** Start of every NFLOG prefix Sluice writes. */
export const LOG_PREFIX = 'sluice:';

/** What a record says happened to the packet. */
export type LogVerdict = 'blocked' | 'would-block' | 'allowed';

/** The verdict letter in a prefix: B blocked, W would-block (audit), A allowed. */
const VERDICT_LETTER: Record<LogVerdict, string> = { blocked: 'B', 'would-block': 'W', allowed: 'A' };
const LETTER_VERDICT: Record<string, LogVerdict> = { B: 'blocked', W: 'would-block', A: 'allowed' };

/**
 * The scope of a record decided by a mode other than the policy's own
 * (gradual enforcement): the deciding rule's own `mode:` (RULE_SCOPE), or
 * the name of a `scopes:` entry the sender is in.
 */
export const RULE_SCOPE = '#rule';

/**
 * The packet mark a DNS query carries to the guard when its sender is in a
 * service scope of the policy (`scopes:` entry number `index`): the guard
 * cannot find a one-shot sender's cgroup after the fact, so the kernel tells
 * it, at the send, in the mark that otherwise carries the sender's uid.
 * Marks from SCOPE_QUERY_MARK_BASE up are never read as uids (uids that high,
 * 4294963200 and above, are not allocated on real systems), and `dns.mark`
 * may not be one of them (SCOPE_QUERY_MARK_BASE is in policy/builtins.ts: the loader checks it).
 */

/** The query mark of the scope at `index` in the policy's `scopes:` (0-based; at most 4095). */
export function scopeQueryMark(index: number): number {
  if (!Number.isInteger(index) || index < 0 || index > 0xffe) bad('not a scope index', String(index));
  return (SCOPE_QUERY_MARK_BASE + index) >>> 0;
}

/** What a query's mark says of its sender: a uid, or the index of the service scope it is in. */
export function parseQueryMark(mark: number): { uid: number } | { scope: number } {
  const scope = queryMarkScope(mark);
  return scope !== undefined ? { scope } : { uid: mark };
}

/** The service scope's index a query's mark carries, or undefined when the mark is a uid (the guard's per-query form: no object made). */
export function queryMarkScope(mark: number): number | undefined {
  return mark >= SCOPE_QUERY_MARK_BASE && mark < 0xffffffff ? mark - SCOPE_QUERY_MARK_BASE : undefined;
}

/** An NFLOG prefix: the verdict and the rule (policy or built-in) that decided, and the scope whose mode made it so, if not the policy's. */
export interface LogPrefix {
  verdict: LogVerdict;
  rule: string;
  scope?: string;
}

/** True for a scope as records name it: a `scopes:` name (RULE_NAME grammar) or `#rule`. */
export function isLogScope(scope: string): boolean {
  return scope === RULE_SCOPE || isRuleName(scope);
}

/**
 * `sluice:<letter>:<rule>[@<scope>] `; the trailing space separates it from
 * the kernel's text in plain-text logs. `@` is in neither grammar, so the
 * split is unambiguous; at most 7+2+48+1+48+1 = 107 bytes (the kernel keeps 127).
 */
export function buildLogPrefix(p: LogPrefix): string {
  const letter = VERDICT_LETTER[p.verdict];
  if (!letter) bad('unknown verdict', p.verdict);
  if (!isLogRule(p.rule)) bad('not a rule name', p.rule);
  if (p.scope !== undefined && !isLogScope(p.scope)) bad('not a scope name', p.scope);
  return `${LOG_PREFIX}${letter}:${p.rule}${p.scope !== undefined ? `@${p.scope}` : ''} `;
}

/** The verdict, rule and scope of a record's prefix, or null when the prefix is not one Sluice writes. */
export function parseLogPrefix(prefix: string): LogPrefix | null {
  if (!prefix.startsWith(LOG_PREFIX) || !prefix.endsWith(' ')) return null;
  const verdict = LETTER_VERDICT[prefix.charAt(LOG_PREFIX.length)];
  if (!verdict || prefix.charAt(LOG_PREFIX.length + 1) !== ':') return null;
  const body = prefix.slice(LOG_PREFIX.length + 2, -1);
  const at = body.indexOf('@');
  if (at < 0) return isLogRule(body) ? { verdict, rule: body } : null;
  const rule = body.slice(0, at);
  const scope = body.slice(at + 1);
  return isLogRule(rule) && isLogScope(scope) ? { verdict, rule, scope } : null;
}

/**
 * The prefix of DNS packets copied to NFLOG in audit mode, replies and the
 * queries they must answer (group log.group+1, read by the DNS guard, never
 * by the event collector).
 */
export function buildDnsReplyPrefix(): string {
  return `${LOG_PREFIX}D:dns `;
}

/** True for the prefix of an observed DNS reply. */
export function isDnsReplyPrefix(prefix: string): boolean {
  return prefix === buildDnsReplyPrefix();
}

// ------------------------------------------------------------ counters

/** Which log a suppressed-records counter belongs to, and which budget held the record back. */
export type LogKind = 'block' | 'allow';
export type Budget = 'shared' | 'user';

/** A named counter. */
export type CounterRef =
  /** Packets of new flows a policy rule decided. */
  | { kind: 'rule'; rule: string }
  /** Packets no rule decided. */
  | { kind: 'default' }
  | { kind: 'essentials' }
  /** The DNS guard's own queries to its upstreams. */
  | { kind: 'dns-upstream' }
  /** Encrypted DNS blocked by the built-in rule. */
  | { kind: 'encrypted-dns' }
  /** Records not made: over the shared log budget or over the sending user's own share of it. */
  | { kind: 'suppressed'; log: LogKind; budget: Budget };

const FIXED_COUNTERS = {
  default: 'default',
  essentials: 'essentials',
  'dns-upstream': 'dns_upstream',
  'encrypted-dns': 'encrypted_dns',
} as const;

const SUPPRESSED: Record<Budget, Record<LogKind, string>> = {
  shared: { block: 'suppressed_block', allow: 'suppressed_allow' },
  user: { block: 'suppressed_user_block', allow: 'suppressed_user_allow' },
};

const RULE_COUNTER = 'r_';

export function buildCounterName(c: CounterRef): string {
  switch (c.kind) {
    case 'rule':
      if (!isRuleName(c.rule)) bad('not a rule name', c.rule);
      return `${RULE_COUNTER}${c.rule}`;
    case 'suppressed':
      return SUPPRESSED[c.budget]?.[c.log] ?? bad('unknown suppressed counter', c);
    default:
      return FIXED_COUNTERS[c.kind] ?? bad('unknown counter', c);
  }
}

export function parseCounterName(name: string): CounterRef | null {
  if (name.startsWith(RULE_COUNTER)) {
    const rule = name.slice(RULE_COUNTER.length);
    return isRuleName(rule) ? { kind: 'rule', rule } : null;
  }
  for (const [kind, fixed] of Object.entries(FIXED_COUNTERS) as [keyof typeof FIXED_COUNTERS, string][]) if (fixed === name) return { kind };
  for (const budget of ['shared', 'user'] as const) {
    for (const log of ['block', 'allow'] as const) if (SUPPRESSED[budget][log] === name) return { kind: 'suppressed', log, budget };
  }
  return null;
}

// ------------------------------------------------------------ limits

/** The shared per-second budgets of log records (block and allow records) and of DNS replies observed in audit mode. */
export type LimitRef = { kind: 'log'; log: LogKind | 'dns' };

const LIMITS: Record<LogKind | 'dns', string> = { block: 'log_block', allow: 'log_allow', dns: 'log_dns' };

export function buildLimitName(l: LimitRef): string {
  return LIMITS[l.log] ?? bad('unknown limit', l);
}

export function parseLimitName(name: string): LimitRef | null {
  for (const [log, fixed] of Object.entries(LIMITS) as [LogKind | 'dns', string][]) if (fixed === name) return { kind: 'log', log };
  return null;
}

// ------------------------------------------------------------ sets

/**
 * What a policy rule's set holds: destination hosts (`a`) or prefixes (`n`)
 * per family, DNS-learned addresses (`d`) per family, `proto . port` single
 * ports (`p`), TCP and UDP port ranges (`pt`, `pu`), interfaces (`if`), users
 * (`u`), and cgroups at one depth (`cg<level>`).
 */
export type RuleSetDim = `${'a' | 'n' | 'd'}${Family}` | 'p' | 'pt' | 'pu' | 'if' | 'u' | `cg${number}`;

const DIM = /^(?:[and][46]|p[tu]?|if|u|cg(?:0|[1-9][0-9]{0,2}))$/;

/** Sets Sluice adds itself, by name. */
export const BUILTIN_SETS = [
  'essential_icmpv6',
  'dns_ports',
  'dns_upstream4',
  'dns_upstream6',
  'dot_ports',
  'doh_ports',
  'encrypted_dns4',
  'encrypted_dns6',
  'log_user_block',
  'log_user_allow',
  'dhcp_users',
  'dhcp_servers4',
  'dhcp_servers6',
  'guard_port',
  'reply_ports',
] as const;
export type BuiltinSet = (typeof BUILTIN_SETS)[number];

/** What a scope's set holds: its users (`u`) or its services' cgroups at one depth (`cg<level>`). */
export type ScopeSetDim = 'u' | `cg${number}`;
const SCOPE_DIM = /^(?:u|cg(?:0|[1-9][0-9]{0,2}))$/;

export type SetRef = { kind: 'rule'; rule: string; dim: RuleSetDim } | { kind: 'scope'; scope: string; dim: ScopeSetDim } | { kind: 'builtin'; name: BuiltinSet };

const RULE_SET = 'r_';
const SCOPE_SET = 's_';

export function buildSetName(s: SetRef): string {
  if (s.kind === 'builtin') return (BUILTIN_SETS as readonly string[]).includes(s.name) ? s.name : bad('unknown set', s.name);
  if (s.kind === 'scope') {
    if (!isRuleName(s.scope)) bad('not a scope name', s.scope);
    if (!SCOPE_DIM.test(s.dim)) bad('unknown scope set kind', s.dim);
    return `${SCOPE_SET}${s.scope}_${s.dim}`;
  }
  if (!isRuleName(s.rule)) bad('not a rule name', s.rule);
  if (!DIM.test(s.dim)) bad('unknown set kind', s.dim);
  return `${RULE_SET}${s.rule}_${s.dim}`;
}

export function parseSetName(name: string): SetRef | null {
  if ((BUILTIN_SETS as readonly string[]).includes(name)) return { kind: 'builtin', name: name as BuiltinSet };
  if (name.startsWith(SCOPE_SET)) {
    const cut = name.lastIndexOf('_');
    const scope = name.slice(SCOPE_SET.length, cut);
    const dim = name.slice(cut + 1);
    return cut > SCOPE_SET.length && isRuleName(scope) && SCOPE_DIM.test(dim) ? { kind: 'scope', scope, dim: dim as ScopeSetDim } : null;
  }
  if (!name.startsWith(RULE_SET)) return null;
  // The kind never contains `_`, so the last `_` ends the rule name (which may contain `_`).
  const cut = name.lastIndexOf('_');
  const rule = name.slice(RULE_SET.length, cut);
  const dim = name.slice(cut + 1);
  return cut > RULE_SET.length && isRuleName(rule) && DIM.test(dim) ? { kind: 'rule', rule, dim: dim as RuleSetDim } : null;
}

/** The per-user meter set of a log budget. */
export function meterSetName(log: LogKind): BuiltinSet {
  return log === 'block' ? 'log_user_block' : 'log_user_allow';
}

// ------------------------------------------------------------ chains

/**
 * A chain: a base chain, the refusal chain, the log chain of a rule (block:
 * deny rules and built-ins; allow: logged allow rules), the chain of packets
 * of established outbound flows, the chain of DNS packets, or the chain that marks a flow admitted by
 * an identity group (src/compile/flow-mark.ts).
 */
export type ChainRef =
  | { kind: 'base'; name: (typeof BASE_CHAINS)[number] }
  | { kind: 'refuse' }
  | { kind: 'flows' }
  /** Packets to a DNS port (53/tcp, 53/udp), jumped to from the output chain: the guard's rules, which no other packet needs to pass. */
  | { kind: 'dns' }
  | { kind: 'admit'; group: number }
  | { kind: 'block'; rule: string }
  | { kind: 'allow'; rule: string }
  /** The match of a deny rule in audit by its own mode: jumped to, so the rule records once and the packet goes on. */
  | { kind: 'audit'; rule: string };

const BASE_CHAINS = ['output', 'dns_redirect', 'dns_observe', 'dns_observe_queries', 'dns_zone_out', 'dns_zone_in', 'dns_client_uid', 'guard_in'] as const;
const ADMIT = /^admit_(0|[1-9][0-9]{0,2})$/;
/** Block chains of built-in rules: fixed names that no `block_<rule>` can equal (a deny rule may be called `default`). */
const BUILTIN_BLOCK_CHAINS: Record<BuiltinRule, string> = { [DEFAULT_RULE]: 'default_block', [ENCRYPTED_DNS_RULE]: 'encrypted_dns_block', [SPOOFED_RULE]: 'spoofed_source_block' };

export function buildChainName(c: ChainRef): string {
  switch (c.kind) {
    case 'base':
      return (BASE_CHAINS as readonly string[]).includes(c.name) ? c.name : bad('unknown base chain', c.name);
    case 'refuse':
      return 'refuse';
    case 'flows':
      return 'flows';
    case 'dns':
      return 'dns_traffic';
    case 'admit':
      return Number.isInteger(c.group) && c.group >= 0 && c.group <= 255 ? `admit_${c.group}` : bad('not an identity group', c.group);
    case 'block': {
      const builtin = BUILTIN_BLOCK_CHAINS[c.rule as BuiltinRule];
      if (builtin) return builtin;
      if (!isRuleName(c.rule)) bad('not a rule name', c.rule);
      return `block_${c.rule}`;
    }
    case 'allow':
      if (!isRuleName(c.rule)) bad('not a rule name', c.rule);
      return `allow_${c.rule}`;
    case 'audit':
      if (!isRuleName(c.rule)) bad('not a rule name', c.rule);
      return `audit_${c.rule}`;
  }
}

export function parseChainName(name: string): ChainRef | null {
  if ((BASE_CHAINS as readonly string[]).includes(name)) return { kind: 'base', name: name as (typeof BASE_CHAINS)[number] };
  if (name === 'refuse') return { kind: 'refuse' };
  if (name === 'flows') return { kind: 'flows' };
  if (name === 'dns_traffic') return { kind: 'dns' };
  const admit = ADMIT.exec(name);
  if (admit) return Number(admit[1]) <= 255 ? { kind: 'admit', group: Number(admit[1]) } : null;
  for (const [rule, chain] of Object.entries(BUILTIN_BLOCK_CHAINS)) if (chain === name) return { kind: 'block', rule };
  for (const kind of ['block', 'allow', 'audit'] as const) {
    if (!name.startsWith(`${kind}_`)) continue;
    const rule = name.slice(kind.length + 1);
    return isRuleName(rule) ? { kind, rule } : null;
  }
  return null;
}

// ------------------------------------------------------------ the table comment

/**
 * What the table's comment records, so `status` can tell what is loaded
 * without the state directory: the mode and the policy's sha256, and any
 * further `key=value` fields (carried as they are, so a newer writer's
 * fields survive an older reader).
 */
export interface TableComment {
  mode: 'audit' | 'enforce';
  sha256: string;
  fields: Record<string, string>;
}

const COMMENT_START = 'sluice';
const FIELD_KEY = /^[a-z][a-z0-9_-]{0,31}$/;
const FIELD_VALUE = /^[\x21-\x7e]{1,128}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** The kernel keeps at most 256 bytes of user data, which holds the comment and its TLV header. */
const COMMENT_MAX = 250;

/** `sluice mode=<mode> policy=sha256:<hex>[ key=value...]`, extra fields sorted by key. */
export function buildTableComment(c: TableComment): string {
  if (c.mode !== 'audit' && c.mode !== 'enforce') bad('unknown mode', c.mode);
  if (!SHA256.test(c.sha256)) bad('not a sha256', c.sha256);
  const parts = [COMMENT_START, `mode=${c.mode}`, `policy=sha256:${c.sha256}`];
  for (const key of Object.keys(c.fields).sort()) {
    const value = c.fields[key] ?? '';
    if (!FIELD_KEY.test(key) || key === 'mode' || key === 'policy') bad('not a comment field name', key);
    if (!FIELD_VALUE.test(value)) bad(`not a value for comment field ${key}`, value);
    parts.push(`${key}=${value}`);
  }
  const text = parts.join(' ');
  if (text.length > COMMENT_MAX) bad('table comment too long', text);
  return text;
}

/** The fields of a table comment, or null when it is not one Sluice writes (every token `key=value`, mode and policy present, no key twice). */
export function parseTableComment(text: string): TableComment | null {
  const tokens = text.split(' ');
  if (tokens[0] !== COMMENT_START || text.length > COMMENT_MAX) return null;
  const all: Record<string, string> = {};
  for (const t of tokens.slice(1)) {
    const eq = t.indexOf('=');
    if (eq <= 0) return null;
    const key = t.slice(0, eq);
    const value = t.slice(eq + 1);
    if (!FIELD_KEY.test(key) || !FIELD_VALUE.test(value) || Object.hasOwn(all, key)) return null;
    all[key] = value;
  }
  const { mode, policy, ...fields } = all;
  if (mode !== 'audit' && mode !== 'enforce') return null;
  if (!policy?.startsWith('sha256:') || !SHA256.test(policy.slice(7))) return null;
  return { mode, sha256: policy.slice(7), fields };
}

// ------------------------------------------------------------ shorthands

/** Names of kernel objects derived from a rule, for the compiler, the DNS guard and explain. */
export const objectNames = {
  counter: (rule: string) => buildCounterName({ kind: 'rule', rule }),
  set: (rule: string, dim: RuleSetDim) => buildSetName({ kind: 'rule', rule, dim }),
  dnsSet: (rule: string, family: Family) => buildSetName({ kind: 'rule', rule, dim: `d${family}` }),
  blockChain: (rule: string) => buildChainName({ kind: 'block', rule }),
  allowChain: (rule: string) => buildChainName({ kind: 'allow', rule }),
  /** Marks a flow as admitted by identity group N, then accepts it. */
  admitChain: (group: number) => buildChainName({ kind: 'admit', group }),
};
