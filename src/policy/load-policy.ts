import { firstInvalidUtf8 } from './utf8.js';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node, type Pair, type YAMLMap } from '../vendor/yaml.js';
import type { z } from '../vendor/zod.js';
import { PolicyError, SluiceError, type PolicyIssue } from '../errors.js';
import { isLoopback, mergeRanges, parsePrefix, type AddrRange } from '../net/ip.js';
import {
  ANY_RANGES,
  escapeControls,
  parseDestination,
  parseDomain,
  parseDuration,
  parseInterface,
  parsePortEntry,
  parseRuleName,
  parseService,
  parseUser,
  showValue,
} from './parse-values.js';
import { ALERT_TRIGGERS, DNS_DEFAULTS, FLOW_DEFAULTS, type AlertRoute, type AlertSink, type AlertTrigger, type DashboardSettings, type DnsSettings, type Suppression, type DomainPattern, type FlowSettings, type LogSettings, type InterfaceRef, type Policy, type PortRange, type Rule, type Scope, type ServiceRef, type UserRef } from './policy.js';
import { alertShape, keysAt, lenientItems, lenientRule, lenientScope, lenientTop, ruleSchema, scopeSchema, suppressShape, topSchema, type RawPolicy, type RawRule, type RawScope } from './schema.js';
import { templateProblem } from './webhook-template.js';
import { parseLoopbackListen } from './listen-address.js';
import { dedupeBy, mergePorts, normalizeAddrs, normalizeInterfaces } from './rule-parts.js';
import { SCOPE_QUERY_MARK_BASE } from './builtins.js';

// The rule parts' normal forms live in rule-parts.ts; importers of this module keep finding them here.
export { mergePorts, normalizeAddrs, normalizeInterfaces };
import { MAX_LIST_ERRORS, parseListBytes, readListFile, type ListRead } from './list-file.js';
import { expandBulk, extractBulk, type Segment } from './yaml-bulk.js';
import { TOO_DEEP, yamlTooDeep } from './yaml-depth.js';
import type { Destination } from './parse-values.js';

/** What the loader needs from the host. Injected so loading is testable without real users. */
export interface PolicyHost {
  /** Looks up user names; returns a map of the names found to their uids. */
  lookupUsers(names: string[]): Map<string, number>;
  /**
   * Reads a list file (`to_file:`) by absolute path. By default from disk
   * with readListFile's checks; a policy loaded from the state directory's
   * snapshot reads the list files as they were applied.
   */
  readList?(path: string): ListRead;
}

/** A list file a policy read: its absolute path and exact bytes (snapshotted with the policy). */
export interface ListBytes {
  path: string;
  bytes: Buffer;
}

/** A rule's list files together hold at most this many entries. */
export const MAX_LIST_ENTRIES = 2_000_000;

/**
 * The identity of a policy: the sha256 of its bytes when it reads no list
 * files (as always), else of those bytes' hash and every list file's path
 * and content hash, in first-use order. Editing a feed changes the policy's
 * identity as editing the policy file does.
 */
export function policyDigest(bytesSha256: string, lists: { path: string; sha256: string }[]): string {
  if (lists.length === 0) return bytesSha256;
  const h = createHash('sha256').update(`sluice policy with lists\n${bytesSha256}\n`);
  for (const l of lists) h.update(`${JSON.stringify(l.path)} ${l.sha256}\n`);
  return h.digest('hex');
}

/**
 * The current identity of a policy file and the list files it read (as
 * policyDigest), or null when the policy file cannot be read. A list file
 * that cannot be read counts as empty content: it changed. For the daemon's
 * look at whether what is on disk still is what it applied.
 */
export function currentPolicyDigest(file: string, listPaths: string[]): string | null {
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
  let base: string;
  try {
    base = sha(readFileSync(file));
  } catch {
    return null;
  }
  return policyDigest(
    base,
    listPaths.map((path) => {
      const r = readListFile(path);
      return { path, sha256: r.ok ? sha(r.bytes) : `unreadable:${r.reason}` };
    }),
  );
}

/** Files larger than this are refused before parsing (a policy of a million addresses is ~20 MiB). */
export const MAX_POLICY_BYTES = 64 * 1024 * 1024;

export const DEFAULT_LOG_GROUP = 7331;

/** Reads and validates a policy file. Throws PolicyError with every issue found. */
export function loadPolicyFile(file: string, host: PolicyHost): Policy {
  return loadPolicyWithBytes(file, host).policy;
}

/** Like loadPolicyFile, and also returns the exact bytes that were validated, the policy's and its list files' (for snapshots). */
/**
 * `as`: the file name the policy is read as (its errors, its list files' directory, the file it
 * records); the bytes come from `file`. A candidate (the dashboard's) is read as the policy file it
 * would replace.
 */
export function loadPolicyWithBytes(file: string, host: PolicyHost, as: string = file): { policy: Policy; bytes: Buffer; lists: ListBytes[] } {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new SluiceError('EPOLICYREAD', `Cannot read policy: not a regular file: ${file}`);
    size = st.size;
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new SluiceError('EPOLICYREAD', `Cannot read policy: ${code}: ${file}`, { cause: err });
  }
  if (size > MAX_POLICY_BYTES) {
    throw new PolicyError([
      issueAt(file, 1, 1, [], `policy file is ${size} bytes; the limit is ${MAX_POLICY_BYTES}`),
    ]);
  }
  const bytes = readFileSync(file);
  const lists: ListBytes[] = [];
  const policy = parsePolicy(bytes, as, host, (l) => lists.push(l));
  return { policy, bytes, lists };
}

/** Files at least this long are looked at for long lists to take out of the YAML (yaml-bulk.ts). */
const BULK_MIN_CHARS = 64 * 1024;

interface ParsedYaml {
  doc: Document.Parsed;
  raw: unknown;
  lines: LineIndex;
  /** Keys that are lists or maps, each an error; their entries are left out of `raw`, so the rest is still checked. */
  keyIssues: PolicyIssue[];
}

/** Parses YAML text into its document and JS value; syntax errors, nesting and alias bombs as PolicyError. */
function parseYaml(text: string, file: string): ParsedYaml {
  const lines = new LineIndex(text);
  // Measured before yaml composes it: a text nested thousands deep can abort the process there (yaml-depth.ts).
  const deep = yamlTooDeep(text);
  if (deep !== null) {
    const at = lines.pos(deep);
    throw new PolicyError([issueAt(file, at.line, at.column, [], TOO_DEEP)]);
  }
  let doc: Document.Parsed;
  try {
    // logLevel error: yaml's warnings go to the process's stderr; what they warn of is reported here.
    doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true, logLevel: 'error' });
  } catch (err) {
    if (err instanceof RangeError) {
      throw new PolicyError([issueAt(file, 1, 1, [], 'policy nests too deeply to parse')]);
    }
    throw err;
  }
  if (doc.errors.length > 0) return { doc, raw: null, lines, keyIssues: [] };
  const keys: { map: YAMLMap; pair: Pair }[] = [];
  collectionKeys(doc.contents, keys);
  const keyIssues = keys.map(({ map, pair }) => {
    const k = pair.key as Node;
    const at = lines.pos(k.range?.[0] ?? 0);
    const shown = firstLine(text.slice(k.range?.[0] ?? 0, k.range?.[1] ?? 0));
    // Left out of the values: the rest of the document is checked as if the entry were not there.
    map.items.splice(map.items.indexOf(pair), 1);
    return issueAt(file, at.line, at.column, [], `a key is a name, not a ${isSeq(k) ? 'list' : 'map'}: ${escapeControls(shown.length > 60 ? `${shown.slice(0, 60)}...` : shown)}`);
  });
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    const message = err instanceof RangeError ? 'policy nests too deeply to parse' : `YAML: ${escapeControls(firstLine(String((err as Error).message)))}`;
    throw new PolicyError([issueAt(file, 1, 1, [], message)]);
  }
  return { doc, raw, lines, keyIssues };
}

/**
 * The keys that are lists or maps (`[a, b]: 1`, `? {x: 1}`): no setting is named so, and turning the
 * document into values would make each a string such as "[ a, b ]" (with a warning). Only maps and
 * lists are descended into (yamlTooDeep bounds the depth), so a long list of scalars is one loop.
 */
function collectionKeys(node: unknown, out: { map: YAMLMap; pair: Pair }[]): void {
  if (isMap(node)) {
    for (const it of node.items) {
      if (isMap(it.key) || isSeq(it.key)) out.push({ map: node, pair: it });
      if (isMap(it.value) || isSeq(it.value)) collectionKeys(it.value, out);
    }
  } else if (isSeq(node)) {
    for (const it of node.items) if (isMap(it) || isSeq(it)) collectionKeys(it, out);
  }
}

function issueAt(file: string, line: number, column: number, path: (string | number)[], message: string): PolicyIssue {
  return { file, line, column, path, message, severity: 'error' };
}

/**
 * Validates policy bytes. Pure apart from `host` (and the list files it
 * reads, each given to `onList` once); the unit tests drive it directly.
 */
export function parsePolicy(bytes: Uint8Array, file: string, host: PolicyHost, onList?: (list: ListBytes) => void): Policy {
  if (bytes.length > MAX_POLICY_BYTES) {
    throw new PolicyError([issueAt(file, 1, 1, [], `policy is ${bytes.length} bytes; the limit is ${MAX_POLICY_BYTES}`)]);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const pos = lineColAtByte(bytes, at);
    throw new PolicyError([issueAt(file, pos.line, pos.column, [], `not valid UTF-8 text (byte ${at}); is this a binary file?`)]);
  }
  const control = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.exec(text);
  if (control) {
    const pos = lineColAtOffset(text, control.index);
    const hex = control[0].charCodeAt(0).toString(16).padStart(2, '0');
    throw new PolicyError([issueAt(file, pos.line, pos.column, [], `control character 0x${hex} in policy text; is this a binary file?`)]);
  }

  // Long lists first taken out of the text (yaml-bulk.ts), only in large files: a small policy is
  // read exactly as it always was. Any doubt, and the original text is parsed instead.
  const bulk = text.length >= BULK_MIN_CHARS ? extractBulk(text) : null;
  let parsed: ParsedYaml | null = null;
  try {
    parsed = bulk ? parseYaml(bulk.text, file) : null;
  } catch {
    // Whatever went wrong is said by the parse of the original text below.
  }
  let sources: Map<string, Segment[]> | null = null;
  // A key that is a list or map is said at its place in the original text, which the parse below reads.
  if (bulk && parsed && parsed.doc.errors.length === 0 && parsed.keyIssues.length === 0) sources = expandBulk(parsed.raw, bulk);
  if (sources === null) parsed = parseYaml(text, file);
  const { doc, lines } = parsed as ParsedYaml;
  let raw = (parsed as ParsedYaml).raw;
  const issues: PolicyIssue[] = [];
  for (const e of doc.errors) {
    const pos = lines.pos(e.pos[0]);
    // yaml reports its own stack overflow as an error message; say what it means.
    const message = /Maximum call stack size exceeded/.test(e.message) ? 'policy nests too deeply to parse' : `YAML: ${escapeControls(firstLine(e.message))}`;
    issues.push(issueAt(file, pos.line, pos.column, [], message));
  }
  if (issues.length > 0) throw new PolicyError(issues);
  issues.push(...(parsed as ParsedYaml).keyIssues);
  if (raw === null || raw === undefined) raw = {};

  const locate = (path: (string | number)[], key = false) => {
    // An element that came from a run taken out of the text has its own position; others, their index in the document.
    let docPath = path;
    if (sources) {
      docPath = [];
      for (let i = 0; i < path.length; i++) {
        const seg = path[i] as string | number;
        const segs = typeof seg === 'number' ? sources.get(path.slice(0, i).join('\0')) : undefined;
        if (segs && typeof seg === 'number') {
          const s = segs.find((x) => seg >= x.start && seg < x.start + x.length);
          if (s && 'run' in s) return { line: s.run.lines[seg - s.start] ?? 1, column: s.run.columns[seg - s.start] ?? 1 };
          docPath.push(s ? s.docIndex : seg);
        } else docPath.push(seg);
      }
    }
    const at = lines.pos(offsetOf(doc, docPath, key));
    return bulk && sources ? bulk.originalPos(at.line, at.column) : at;
  };
  const error = (path: (string | number)[], message: string, key = false) => {
    issues.push({ file, ...locate(path, key), path, message, severity: 'error' });
  };
  const warning = (path: (string | number)[], message: string) => {
    issues.push({ file, ...locate(path), path, message, severity: 'warning' });
  };

  // Structure first, but per key and per rule, so one run reports every
  // problem: a rule with a misspelt key still has its values checked.
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    error([], `a policy is a map of settings (mode, rules, ...), not ${describeValue(raw)}`);
    throw new PolicyError(issues);
  }
  const top = topSchema.safeParse(raw);
  if (!top.success) for (const zi of top.error.issues) reportZodIssue(zi, raw, error);
  const p = lenientTop(raw as Record<string, unknown>);

  const rawRules = Array.isArray((raw as Record<string, unknown>).rules) ? ((raw as Record<string, unknown>).rules as unknown[]) : [];
  const structural = new Set<number>();
  const typedRules: (RawRule | null)[] = rawRules.map((r, index) => {
    const parsed = ruleSchema.safeParse(r);
    if (parsed.success) return parsed.data;
    structural.add(index);
    for (const zi of parsed.error.issues) reportZodIssue({ ...zi, path: ['rules', index, ...zi.path] }, raw, error);
    return lenientRule(r);
  });
  const names = new Map<string, number>();
  const userNames = new Set<string>();
  for (const r of typedRules) {
    for (const u of r?.users ?? []) {
      const pu = parseUser(u);
      if (pu.ok && pu.value.name !== undefined) userNames.add(pu.value.name);
    }
  }
  const rawScopes: (RawScope | null)[] = [];
  (p.scopes ?? []).forEach((sc, index) => {
    const parsed = scopeSchema.safeParse(sc);
    if (parsed.success) return rawScopes.push(parsed.data);
    for (const zi of parsed.error.issues) reportZodIssue({ ...zi, path: ['scopes', index, ...zi.path] }, raw, error);
    rawScopes.push(lenientScope(sc));
  });
  for (const sc of rawScopes) {
    for (const u of sc?.users ?? []) {
      const pu = parseUser(u);
      if (pu.ok && pu.value.name !== undefined) userNames.add(pu.value.name);
    }
  }
  const uids = userNames.size > 0 ? host.lookupUsers([...userNames]) : new Map<string, number>();

  const lists = new ListFiles(file, host, onList, issues);
  const rules: Rule[] = [];
  typedRules.forEach((r, index) => {
    if (!r) return;
    const base: (string | number)[] = ['rules', index];
    const fromFiles = r.to_file === undefined ? [] : lists.destinations(r, base, error);
    const rule = buildRule(r, index, base, uids, error, warning, structural.has(index), fromFiles);
    if (typeof r.name === 'string') {
      const nameCheck = parseRuleName(r.name);
      if (!nameCheck.ok) error([...base, 'name'], `${nameCheck.reason}: ${showValue(r.name)}`);
      else if (names.has(r.name)) {
        error([...base, 'name'], `duplicate rule name ${showValue(r.name)} (first used by rule ${(names.get(r.name) ?? 0) + 1})`);
      } else names.set(r.name, index);
    }
    rule.line = locate(base).line;
    rules.push(rule);
  });

  if (p.mode === undefined) warning([], 'no mode given: starting in audit mode (nothing is blocked); set mode: enforce when ready');
  const mode = p.mode ?? 'audit';
  const scopes = buildScopes(rawScopes, mode, uids, error, (i) => locate(['scopes', i]).line);
  checkRuleModes(typedRules, rules, mode, scopes, error, warning);

  const dns = buildDns(p.dns, rules, error);
  const flows = buildFlows(p.flows, error);
  const dashboard = p.dashboard === undefined ? undefined : buildDashboard(p.dashboard, error);
  const log = buildLog(p.log, error);
  // Item by item: an alert or suppression that fails the schema leaves the others checked (and reported).
  const alerts = buildAlerts(lenientItems(alertShape, (raw as Record<string, unknown>).alerts), rules, error);
  const suppress = buildSuppress(lenientItems(suppressShape, (raw as Record<string, unknown>).suppress), rules, error, warning, (i) => locate(['suppress', i]).line);
  // The policy's own problems first, then each list file's, in the order the rules use them.
  const fileOrder = (f: string) => (f === file ? -1 : lists.order(f));
  issues.sort((a, b) => fileOrder(a.file) - fileOrder(b.file) || a.line - b.line || a.column - b.column);
  if (issues.some((i) => i.severity === 'error')) throw new PolicyError(issues);

  const used = lists.used();
  return {
    file,
    sha256: policyDigest(sha256, used),
    ...(used.length > 0 ? { lists: used } : {}),
    dns,
    flows,
    ...(dashboard ? { dashboard } : {}),
    mode,
    defaultAction: p.default ?? 'deny',
    blockWith: p.block_with ?? 'reject',
    essentials: p.essentials ?? true,
    tamper: p.tamper ?? 'restore',
    ownedTable: p.owned_table ?? false,
    log,
    rules,
    scopes,
    alerts,
    suppress,
    warnings: issues.filter((i) => i.severity === 'warning'),
  };
}

type Report = (path: (string | number)[], message: string, key?: boolean) => void;

/**
 * `scopes:`: users or services (one kind per scope) with a mode of their own.
 * A user or service named by two scopes is an error (which mode it has would
 * depend on reading order); a scope with the policy's own mode changes
 * nothing and is an error too, so a scope never silently does nothing.
 */
function buildScopes(
  raw: (RawScope | null)[],
  mode: 'audit' | 'enforce',
  uids: Map<string, number>,
  error: Report,
  lineOf: (i: number) => number,
): Scope[] {
  const out: Scope[] = [];
  const names = new Map<string, number>();
  const seenUsers = new Map<number, string>();
  const seenServices = new Map<string, string>();
  raw.forEach((sc, i) => {
    const base: (string | number)[] = ['scopes', i];
    if (!sc || typeof sc !== 'object') return;
    // Scope names follow the rule names' pattern, and say so as a scope's.
    const nameCheck = parseRuleName(sc.name, 'scope');
    if (!nameCheck.ok) error([...base, 'name'], `${nameCheck.reason}: ${showValue(sc.name)}`);
    else if (names.has(sc.name)) error([...base, 'name'], `duplicate scope name ${showValue(sc.name)} (first used by scope ${(names.get(sc.name) ?? 0) + 1})`);
    else names.set(sc.name, i);
    if ((sc.users === undefined) === (sc.services === undefined)) {
      error(base, `scope ${showValue(sc.name)} needs exactly one of users or services (a scope is a set of users, or a set of services)`);
    }
    for (const key of ['users', 'services'] as const) {
      const list = sc[key];
      if (list !== undefined && list.length === 0) error([...base, key], `empty ${key} list: list at least one entry`);
    }
    if (sc.mode === mode) {
      error([...base, 'mode'], `scope ${showValue(sc.name)} has the policy's own mode (${mode}): it would change nothing; remove it, or give it mode: ${mode === 'audit' ? 'enforce' : 'audit'}`);
    }
    const users: UserRef[] = [];
    (sc.users ?? []).forEach((v, j) => {
      const pu = parseUser(v);
      if (!pu.ok) return error([...base, 'users', j], `${pu.reason}: ${showValue(v)}`);
      let ref: UserRef;
      if (pu.value.uid !== undefined) ref = { uid: pu.value.uid };
      else {
        const uid = uids.get(pu.value.name ?? '');
        if (uid === undefined) return error([...base, 'users', j], `no such user: ${showValue(pu.value.name)}`);
        ref = { uid, name: pu.value.name as string };
      }
      const prev = seenUsers.get(ref.uid);
      if (prev !== undefined) return error([...base, 'users', j], `user ${showValue(v)} (uid ${ref.uid}) is already in scope ${showValue(prev)}: a user has one mode`);
      seenUsers.set(ref.uid, sc.name);
      users.push(ref);
    });
    const services: ServiceRef[] = [];
    (sc.services ?? []).forEach((v, j) => {
      const ps = parseService(v);
      if (!ps.ok) return error([...base, 'services', j], `${ps.reason}: ${showValue(v)}`);
      const key = ps.value.kind === 'unit' ? `u:${ps.value.unit}` : `c:${ps.value.path}`;
      const prev = seenServices.get(key);
      if (prev !== undefined) return error([...base, 'services', j], `service ${showValue(v)} is already in scope ${showValue(prev)}: a service has one mode`);
      seenServices.set(key, sc.name);
      services.push(ps.value);
    });
    out.push({ name: sc.name, mode: sc.mode, users, services, line: lineOf(i) });
  });
  return out;
}

/**
 * A rule's `mode:` is for deny rules. An allow rule never blocks, so in
 * audit it would record nothing and in enforce it would refuse nothing: no
 * meaning, so an error rather than a silent no-op. A deny rule with the
 * policy's mode and no scope of the other mode is a warning (it changes
 * nothing today, but pins the rule's mode when the policy's changes).
 */
function checkRuleModes(raw: (RawRule | null)[], rules: Rule[], mode: 'audit' | 'enforce', scopes: Scope[], error: Report, warning: Report): void {
  for (const rule of rules) {
    const r = raw[rule.index];
    if (!r || r.mode === undefined) continue;
    const at = ['rules', rule.index, 'mode'];
    if (rule.action === 'allow') {
      error(at, `mode is for deny rules: allow rule ${showValue(rule.name)} never blocks, so ${r.mode} would change nothing (to try a policy without it, use suggest --check; to audit a user or service, use scopes:)`);
    } else if (r.mode === mode && !scopes.some((s) => s.mode !== mode)) {
      warning(at, `rule ${showValue(rule.name)} has the policy's own mode (${mode}) and no scope has the other: mode changes nothing until one does`);
    }
  }
}

/** The names `rules:` filters and suppressions may use besides the policy's rules: the built-in verdicts events carry. */
export const BUILTIN_RULE_NAMES = ['#default', '#encrypted-dns', '#dns-guard', '#essentials', '#loopback'] as const;

const ALERT_NAME = /^[a-z0-9][a-z0-9._-]{0,47}$/;

/** The alerts: section: one sink each, known triggers, existing rules, a window from 1 s to 1 day (default 60 s). */
function buildAlerts(raw: (NonNullable<RawPolicy['alerts']>[number] | null)[], rules: Rule[], error: Report): AlertRoute[] {
  const out: AlertRoute[] = [];
  const names = new Set<string>();
  const ruleNames = new Set<string>([...rules.map((r) => r.name), ...BUILTIN_RULE_NAMES]);
  raw.forEach((a, i) => {
    if (a === null) return;
    const at = (...k: (string | number)[]) => ['alerts', i, ...k];
    if (!ALERT_NAME.test(a.name)) return error(at('name'), `an alert name is 1-48 of a-z 0-9 . _ - starting with a letter or digit: ${showValue(a.name)}`);
    if (names.has(a.name)) return error(at('name'), `duplicate alert name ${showValue(a.name)}`);
    names.add(a.name);
    const sink = buildSink(a.sink, at('sink'), error);
    const on: AlertTrigger[] = [];
    a.on.forEach((t, j) => {
      if (!(ALERT_TRIGGERS as readonly string[]).includes(t)) return error(at('on', j), `unknown trigger ${showValue(t)}; one of ${ALERT_TRIGGERS.join(', ')}`);
      if (!on.includes(t as AlertTrigger)) on.push(t as AlertTrigger);
    });
    (a.rules ?? []).forEach((r, j) => {
      if (!ruleNames.has(r)) error(at('rules', j), `no rule named ${showValue(r)} (the policy's rules, or ${BUILTIN_RULE_NAMES.join(', ')})`);
    });
    const windowMs = a.window === undefined ? 60_000 : parseDuration(a.window);
    if (windowMs === null || windowMs < 1000 || windowMs > 86_400_000) return error(at('window'), `window is a duration from 1s to 1d (60s, 5m, 1h): ${showValue(a.window)}`);
    if (sink) out.push({ name: a.name, sink, on, rules: a.rules ? [...new Set(a.rules)] : null, windowMs });
  });
  return out;
}

function buildSink(raw: NonNullable<RawPolicy['alerts']>[number]['sink'], at: (string | number)[], error: Report): AlertSink | null {
  const kinds = (['webhook', 'syslog', 'exec', 'journal'] as const).filter((k) => raw[k] !== undefined);
  if (kinds.length !== 1) {
    error(at, kinds.length === 0 ? 'a sink is one of webhook: URL, syslog: URL, exec: [ARGV], journal: true' : `a sink is one kind, not ${kinds.join(' and ')}`);
    return null;
  }
  const only = (allowed: string[]) => {
    for (const k of ['secret_file', 'template', 'timeout'] as const) if (raw[k] !== undefined && !allowed.includes(k)) error([...at, k], `${k} belongs to ${k === 'timeout' ? 'an exec' : 'a webhook'} sink`, true);
  };
  const kind = kinds[0];
  if (kind === 'webhook') {
    only(['secret_file', 'template']);
    let url: URL;
    try {
      url = new URL(raw.webhook ?? '');
    } catch {
      error([...at, 'webhook'], `not a URL: ${showValue(raw.webhook)}`);
      return null;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      error([...at, 'webhook'], `a webhook is an http:// or https:// URL: ${showValue(raw.webhook)}`);
      return null;
    }
    if (url.username || url.password) {
      error([...at, 'webhook'], 'put no credentials in the URL (they would show in logs); use secret_file to sign requests');
      return null;
    }
    const secret = raw.secret_file;
    if (secret !== undefined && !secret.startsWith('/')) {
      error([...at, 'secret_file'], `secret_file is an absolute path: ${showValue(secret)}`);
      return null;
    }
    if (raw.template !== undefined) {
      const bad = templateProblem(raw.template);
      if (bad !== null) {
        error([...at, 'template'], bad);
        return null;
      }
      return { kind: 'webhook', url: url.toString(), secretFile: secret ?? null, template: raw.template };
    }
    return { kind: 'webhook', url: url.toString(), secretFile: secret ?? null };
  }
  if (kind === 'syslog') {
    only([]);
    // The local syslog socket (/dev/log, or another datagram socket): a path, at most 107 bytes (sun_path).
    const local = /^unix:\/\/(\/[^\0]*)$/.exec(raw.syslog ?? '');
    if (local) {
      const path = local[1] as string;
      if (Buffer.byteLength(path) > 107 || /\/\.\.?(\/|$)/.test(path)) {
        error([...at, 'syslog'], `a local syslog socket is an absolute path of at most 107 bytes, without . or .. parts: ${showValue(raw.syslog)}`);
        return null;
      }
      return { kind: 'syslog', transport: 'unix', path };
    }
    const m = /^(udp|tcp):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253})(?::([0-9]{1,5}))?$/.exec(raw.syslog ?? '');
    const port = m?.[3] === undefined ? 514 : Number(m[3]);
    if (!m || port < 1 || port > 65535) {
      error([...at, 'syslog'], `syslog is udp://HOST[:PORT] or tcp://HOST[:PORT] (default port 514), or unix:///dev/log (the local socket): ${showValue(raw.syslog)}`);
      return null;
    }
    const host = (m[2] as string).replace(/^\[|\]$/g, '');
    return { kind: 'syslog', transport: m[1] as 'udp' | 'tcp', host, port };
  }
  if (kind === 'exec') {
    only(['timeout']);
    const argv = raw.exec ?? [];
    if (!(argv[0] ?? '').startsWith('/')) {
      error([...at, 'exec', 0], `the program is an absolute path (no search through PATH): ${showValue(argv[0])}`);
      return null;
    }
    if (argv.some((x) => x.includes('\0'))) {
      error([...at, 'exec'], 'an argument cannot hold a NUL byte');
      return null;
    }
    const timeoutMs = raw.timeout === undefined ? 10_000 : parseDuration(raw.timeout);
    if (timeoutMs === null || timeoutMs < 100 || timeoutMs > 300_000) {
      error([...at, 'timeout'], `timeout is a duration from 100ms to 5m: ${showValue(raw.timeout)}`);
      return null;
    }
    return { kind: 'exec', argv: [...argv], timeoutMs };
  }
  only([]);
  return { kind: 'journal' };
}

/** The suppress: section. An expired one is kept (and reported as expired), so that nobody wonders why it stopped working. */
function buildSuppress(raw: (NonNullable<RawPolicy['suppress']>[number] | null)[], rules: Rule[], error: Report, warning: (path: (string | number)[], message: string) => void, lineOf: (i: number) => number): Suppression[] {
  const out: Suppression[] = [];
  const ruleNames = new Set<string>([...rules.map((r) => r.name), ...BUILTIN_RULE_NAMES]);
  const today = new Date().toISOString().slice(0, 10);
  raw.forEach((x, i) => {
    if (x === null) return;
    const at = (k: string) => ['suppress', i, k];
    if (x.rule === undefined && x.destination === undefined) return error(['suppress', i], 'a suppression names a rule, a destination, or both');
    if (x.rule !== undefined && !ruleNames.has(x.rule)) return error(at('rule'), `no rule named ${showValue(x.rule)}`);
    const until = x.until instanceof Date ? x.until.toISOString().slice(0, 10) : x.until;
    if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(until) || Number.isNaN(Date.parse(`${until}T00:00:00Z`)) || new Date(`${until}T00:00:00Z`).toISOString().slice(0, 10) !== until) {
      return error(at('until'), `until is a date, YYYY-MM-DD: ${showValue(x.until)}`);
    }
    let destination: Suppression['destination'] = null;
    if (x.destination !== undefined) {
      const pr = parsePrefix(x.destination);
      if (pr.ok) destination = { kind: 'addr', range: pr.range };
      else {
        const d = parseDomain(x.destination);
        if (!d.ok) return error(at('destination'), `a destination is an address, a prefix or a name pattern (*.example.com): ${d.reason}: ${showValue(x.destination)}`);
        destination = { kind: 'name', pattern: d.value };
      }
    }
    if (until < today) warning(at('until'), `this suppression expired on ${until}: its alerts are sent again (remove it, or extend it)`);
    out.push({ rule: x.rule ?? null, destination, until, reason: x.reason, line: lineOf(i) });
  });
  return out;
}

/**
 * The log: section, with defaults. Each user's share of the log budget
 * defaults to a quarter of it (at least 10 records per second, never more
 * than the whole), so one user's flood cannot spend the budget that records
 * everyone else's blocked attempts.
 */
function buildLog(raw: RawPolicy['log'], error: Report): LogSettings {
  const rate = raw?.rate ?? 1000;
  const burst = raw?.burst ?? 5000;
  const userRate = raw?.user_rate ?? Math.min(rate, Math.max(10, Math.floor(rate / 4)));
  const userBurst = raw?.user_burst ?? Math.min(burst, Math.max(userRate, Math.floor(burst / 4)));
  if (userRate > rate) error(['log', 'user_rate'], `user_rate (${userRate}) is above rate (${rate}): one user's share cannot exceed the whole budget`);
  if (userBurst > burst) error(['log', 'user_burst'], `user_burst (${userBurst}) is above burst (${burst}): one user's share cannot exceed the whole budget`);
  return { group: raw?.group ?? DEFAULT_LOG_GROUP, rate, burst, userRate, userBurst, allowed: raw?.allowed ?? false };
}

/** The dns: section, with defaults. Upstreams must be plain addresses (not loopback: the guard's own traffic would loop). */
function buildDns(raw: RawPolicy['dns'], rules: Rule[], error: Report): DnsSettings {
  const upstreams: AddrRange[] = [];
  (raw?.upstreams ?? []).forEach((u, i) => {
    const pr = parsePrefix(u);
    if (!pr.ok || pr.range.start !== pr.range.end) return error(['dns', 'upstreams', i], `an upstream is one IP address: ${showValue(u)}`);
    const r = pr.range;
    if (isLoopback(r.family, r.start)) {
      return error(['dns', 'upstreams', i], `a loopback upstream would send the guard's queries back to itself: ${showValue(u)}`);
    }
    upstreams.push(r);
  });
  const floor = raw?.ttl_floor ?? DNS_DEFAULTS.ttlFloor;
  const max = raw?.ttl_max ?? DNS_DEFAULTS.ttlMax;
  if (floor > max) error(['dns', 'ttl_floor'], `ttl_floor (${floor}) is above ttl_max (${max})`);
  if (raw?.mark !== undefined && raw.mark >= SCOPE_QUERY_MARK_BASE) {
    error(['dns', 'mark'], `marks from 0x${SCOPE_QUERY_MARK_BASE.toString(16)} up are Sluice's own (they tell the guard a query came from a service scope): 0x${raw.mark.toString(16)}`);
  }
  const port = raw?.port ?? DNS_DEFAULTS.port;
  if (port === 53) error(['dns', 'port'], 'the guard cannot listen on 53: DNS to port 53 is what gets redirected to it');
  else if (port === 853) error(['dns', 'port'], 'the guard cannot listen on 853: that port is blocked as DNS over TLS');
  else if (port >= 1024) {
    error(['dns', 'port'], `the guard's port must be privileged (below 1024), so that no unprivileged process can take it while the daemon is not running: ${port}`);
  }
  const perAnswer = raw?.max_addresses_per_answer ?? DNS_DEFAULTS.maxAddressesPerAnswer;
  const perName = raw?.max_addresses_per_name ?? DNS_DEFAULTS.maxAddressesPerName;
  // A name closes its oldest addresses beyond its limit: an answer larger than that would hand out addresses already closed.
  if (perAnswer > perName) error(['dns', raw?.max_addresses_per_answer !== undefined ? 'max_addresses_per_answer' : 'max_addresses_per_name'], `max_addresses_per_answer (${perAnswer}) is above max_addresses_per_name (${perName})`);
  // Domain rules are filled only by the guard: without it an allow never allows and, worse, a deny
  // never denies (with default: allow, the names it was written to block stay reachable).
  const named = rules.filter((r) => r.domains.length > 0);
  if (raw?.guard === false && named.length > 0) {
    const list = named.slice(0, 3).map((r) => `${showValue(r.name)} (${r.domains[0]?.text ?? ''}${r.domains.length > 1 ? ', ...' : ''})`);
    error(
      ['dns', 'guard'],
      `dns.guard is false, but rule${named.length === 1 ? '' : 's'} ${list.join(', ')}${named.length > 3 ? ` and ${named.length - 3} more` : ''} name${named.length === 1 ? 's' : ''} domains: only the guard fills domain rules, so they would never match (remove dns.guard: false, or the domains)`,
    );
  }
  return {
    guard: raw?.guard ?? named.length > 0,
    upstreams: raw?.upstreams ? upstreams : null,
    port,
    ttlFloor: floor,
    ttlGrace: raw?.ttl_grace ?? DNS_DEFAULTS.ttlGrace,
    ttlMax: max,
    blockedAnswer: raw?.blocked_answer ?? 'nxdomain',
    encryptedDns: raw?.encrypted_dns ?? 'block',
    encryptedDnsList: raw?.encrypted_dns_list ?? null,
    mark: raw?.mark ?? DNS_DEFAULTS.mark,
    maxAddressesPerAnswer: perAnswer,
    maxAddressesPerName: perName,
    cacheSize: raw?.cache_size ?? DNS_DEFAULTS.cacheSize,
    cacheMaxNegativeTtl: raw?.cache_max_negative_ttl ?? DNS_DEFAULTS.cacheMaxNegativeTtl,
  };
}

/** The dashboard: section: where the daemon serves it, on loopback only. */
function buildDashboard(raw: NonNullable<RawPolicy['dashboard']>, error: Report): DashboardSettings | undefined {
  const r = parseLoopbackListen(raw.listen);
  if (!r.ok) {
    error(['dashboard', 'listen'], `${r.reason}: ${showValue(raw.listen)}`);
    return undefined;
  }
  return { listen: r.value };
}

/** The flows: section, with defaults. */
function buildFlows(raw: RawPolicy['flows'], error: Report): FlowSettings {
  const mask = raw?.ct_mark_mask ?? FLOW_DEFAULTS.ctMarkMask;
  const shift = mask === 0 ? 0 : 31 - Math.clz32(mask & -mask);
  if ((mask >>> shift) !== 0xffff) {
    error(['flows', 'ct_mark_mask'], `ct_mark_mask must be 16 contiguous bits (such as 0xffff0000 or 0x0000ffff): 0x${(mask >>> 0).toString(16)}`);
  }
  let replies: FlowSettings['replies'] = 'any';
  if (Array.isArray(raw?.replies)) {
    const ranges: PortRange[] = [];
    raw.replies.forEach((v, i) => {
      const pe = parsePortEntry(v);
      if (!pe.ok) return error(['flows', 'replies', i], `${pe.reason}: ${showValue(v)}`);
      if (pe.value.kind !== 'ports') return error(['flows', 'replies', i], `replies are limited by local TCP or UDP port: ${showValue(v)}`);
      ranges.push(...pe.value.ranges);
    });
    replies = mergePorts(ranges);
  }
  return { ctMarkMask: mask >>> 0, replies };
}

function buildRule(
  r: RawRule,
  index: number,
  base: (string | number)[],
  uids: Map<string, number>,
  error: Report,
  warning: Report,
  hadStructuralErrors: boolean,
  fromFiles: Destination[],
): Rule {
  const addrs: AddrRange[] = [];
  const domains: DomainPattern[] = [];
  const seenDomains = new Set<string>();
  const add = (d: Destination) => {
    if (d.kind === 'any') for (const x of ANY_RANGES) addrs.push({ ...x });
    else if (d.kind === 'addr') addrs.push(d.range);
    else if (!seenDomains.has(d.pattern.text)) {
      seenDomains.add(d.pattern.text);
      domains.push(d.pattern);
    }
  };
  (r.to ?? []).forEach((v, i) => {
    const d = parseDestination(v);
    if (!d.ok) return error([...base, 'to', i], `${d.reason}: ${showValue(v)}`);
    add(d.value);
  });
  for (const d of fromFiles) add(d);
  const ports: PortRange[] = [];
  let icmp = false;
  let icmpv6 = false;
  (r.ports ?? []).forEach((v, i) => {
    const pe = parsePortEntry(v);
    if (!pe.ok) return error([...base, 'ports', i], `${pe.reason}: ${showValue(v)}`);
    if (pe.value.kind === 'icmp') icmp = true;
    else if (pe.value.kind === 'icmpv6') icmpv6 = true;
    else ports.push(...pe.value.ranges);
  });
  const users: UserRef[] = [];
  (r.users ?? []).forEach((v, i) => {
    const pu = parseUser(v);
    if (!pu.ok) return error([...base, 'users', i], `${pu.reason}: ${showValue(v)}`);
    if (pu.value.uid !== undefined) users.push({ uid: pu.value.uid });
    else if (pu.value.name !== undefined) {
      const uid = uids.get(pu.value.name);
      if (uid === undefined) return error([...base, 'users', i], `no such user: ${showValue(pu.value.name)}`);
      users.push({ uid, name: pu.value.name });
    }
  });
  const services: ServiceRef[] = [];
  (r.services ?? []).forEach((v, i) => {
    const ps = parseService(v);
    if (!ps.ok) return error([...base, 'services', i], `${ps.reason}: ${showValue(v)}`);
    services.push(ps.value);
  });
  const interfaces: InterfaceRef[] = [];
  (r.interfaces ?? []).forEach((v, i) => {
    const pi = parseInterface(v);
    if (!pi.ok) return error([...base, 'interfaces', i], `${pi.reason}: ${showValue(v)}`);
    interfaces.push(pi.value);
  });

  for (const key of ['to', 'ports', 'users', 'services', 'interfaces'] as const) {
    const list = r[key];
    if (list !== undefined && list.length === 0) {
      error([...base, key], `empty ${key} list: leave the key out to mean any, or list at least one entry`);
    }
  }
  const constrains = ['to', 'to_file', 'ports', 'users', 'services', 'interfaces'].some((k) => r[k as keyof RawRule] !== undefined);
  if (!constrains && !hadStructuralErrors) {
    error(base, `rule ${showValue(r.name)} matches all traffic; give it to, to_file, ports, users, services or interfaces (to: [any] means any destination)`);
  }
  const hasV4 = addrs.some((a) => a.family === 4) || domains.length > 0;
  const hasV6 = addrs.some((a) => a.family === 6) || domains.length > 0;
  const hasAddrs = addrs.length > 0 || domains.length > 0;
  if (icmp && hasAddrs && !hasV4) warning([...base, 'ports'], 'icmp is IPv4 only and this rule has only IPv6 destinations: it never matches');
  if (icmpv6 && hasAddrs && !hasV6) warning([...base, 'ports'], 'icmpv6 is IPv6 only and this rule has only IPv4 destinations: it never matches');

  return {
    name: r.name,
    action: r.action ?? 'allow',
    index,
    addrs: normalizeAddrs(addrs),
    domains,
    ports: mergePorts(ports),
    icmp,
    icmpv6,
    users: dedupeBy(users, (u) => String(u.uid)),
    services: dedupeBy(services, (s) => (s.kind === 'unit' ? `u:${s.unit}` : `c:${s.path}`)),
    interfaces: normalizeInterfaces(interfaces),
    log: r.log ?? false,
    ...(r.mode !== undefined ? { mode: r.mode } : {}),
    ...(r.comment !== undefined ? { comment: r.comment } : {}),
    line: 0,
  };
}

function reportZodIssue(zi: z.core.$ZodIssue, raw: unknown, error: Report): void {
  const path = zi.path.filter((p): p is string | number => typeof p !== 'symbol');
  const value = valueAt(raw, path);
  // What the message names: the key, or a list's item by the list's key and its index (upstreams[0]).
  const last = path[path.length - 1];
  const where = last === undefined ? 'policy' : typeof last === 'number' ? `${path.length > 1 ? String(path[path.length - 2]) : 'item'}[${last}]` : String(last);
  switch (zi.code) {
    case 'unrecognized_keys':
      for (const k of zi.keys) {
        const hint = suggestKey(k, path);
        error([...path, k], `unknown key ${showValue(k)}${hint ? ` (did you mean ${hint}?)` : ''}`, true);
      }
      return;
    case 'invalid_type':
      if (value === undefined) {
        error(path.slice(0, -1), `missing required key ${showValue(where)}`);
      } else {
        // A fraction where a whole number belongs is a number too: no "not a number" then.
        const found = zi.expected === 'int' && typeof value === 'number' ? 'not a fraction' : `not ${describeValue(value)}`;
        error(path, `${where} must be ${describeExpected(zi.expected)}, ${found}: ${showValue(value)}`);
      }
      return;
    case 'invalid_value':
      // A required key with a fixed set of values (a scope's mode) that is not there at all.
      if (value === undefined) error(path.slice(0, -1), `missing required key ${showValue(where)}`);
      else error(path, `${where} must be one of ${zi.values.map((v) => JSON.stringify(v)).join(', ')}: ${showValue(value)}`);
      return;
    case 'invalid_union': {
      // An alternative that took the value's shape (a list where a string or a list goes) is the
      // one meant: its own complaints, at their own paths (to_file[0] must be a string), say what
      // is wrong; "must be a string or a list, not a list" would not.
      const shaped = zi.errors.find((issues) => issues.length > 0 && !issues.some((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value')));
      if (shaped) {
        for (const i of shaped) reportZodIssue({ ...i, path: [...zi.path, ...i.path] } as z.core.$ZodIssue, raw, error);
        return;
      }
      error(path, `${where} must be ${describeUnion(zi.errors)}, not ${describeValue(value)}: ${showValue(value)}`);
      return;
    }
    case 'too_big':
      error(path, `${where} is too large (the limit is ${String(zi.maximum)}): ${showValue(value)}`);
      return;
    case 'too_small':
      error(path, `${where} is too small (the minimum is ${String(zi.minimum)}): ${showValue(value)}`);
      return;
    default:
      error(path, `${where}: ${zi.message}: ${showValue(value)}`);
  }
}

function suggestKey(key: string, path: (string | number)[]): string | null {
  const list = keysAt(path);
  let best: string | null = null;
  let bestD = 3;
  for (const k of list) {
    const d = editDistance(key.toLowerCase(), k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

/**
 * Edit distance counting an adjacent transposition as one edit (optimal
 * string alignment), so "lgo" is near "log"; 99 when the lengths differ by
 * more than 3 (never a suggestion). Exported for its tests.
 */
export function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return 99;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j] ?? 0, ((d[i - 2] as number[])[j - 2] ?? 0) + 1);
    }
  }
  return (d[a.length] as number[])[b.length] ?? 99;
}

function describeExpected(expected: string): string {
  switch (expected) {
    case 'array':
      return 'a list';
    case 'object':
      return 'a map';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'int':
      return 'a whole number';
    case 'boolean':
      return 'true or false';
    case 'date':
      return 'a date';
    default:
      return expected;
  }
}

/**
 * What a union accepts, from its alternatives' own complaints about the whole
 * value: "a string or a list" (to_file), "\"any\" or a list" (flows.replies).
 * Called when every alternative refused the value's type or value: each has
 * one such complaint, about the value itself (zod looks no deeper).
 */
function describeUnion(alternatives: z.core.$ZodIssue[][]): string {
  const forms: string[] = [];
  for (const issues of alternatives) {
    for (const i of issues) {
      if (i.code === 'invalid_type') forms.push(describeExpected(i.expected));
      else if (i.code === 'invalid_value') forms.push(...i.values.map((v) => JSON.stringify(v)));
    }
  }
  const distinct = [...new Set(forms)];
  return distinct.length === 0 ? 'one of the accepted forms' : distinct.join(' or ');
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return `a ${typeof v}`;
}

function valueAt(root: unknown, path: (string | number)[]): unknown {
  let cur: unknown = root;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

/** Source offset of the node at `path` (or of its key), falling back to the nearest ancestor. */
function offsetOf(doc: Document.Parsed, path: (string | number)[], key: boolean): number {
  let node: Node | null = doc.contents;
  let best = node?.range?.[0] ?? 0;
  for (let i = 0; i < path.length && node; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg));
      if (!pair) break;
      if (last && key && isScalar(pair.key) && pair.key.range) return pair.key.range[0];
      node = (pair.value as Node | null) ?? null;
      const start = node?.range?.[0] ?? (isScalar(pair.key) ? pair.key.range?.[0] : undefined);
      if (start !== undefined) best = start;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = (node.items[seg] as Node | undefined) ?? null;
      if (node?.range) best = node.range[0];
    } else break;
  }
  return best;
}

/**
 * The list files of one policy load: each read and parsed once however many
 * rules use it, its problems reported once, at its own FILE:LINE:COL.
 */
class ListFiles {
  private readonly parsed = new Map<string, { destinations: Destination[]; sha256: string } | null>();
  private readonly orderOf = new Map<string, number>();

  constructor(
    private readonly policyFile: string,
    private readonly host: PolicyHost,
    private readonly onList: ((list: ListBytes) => void) | undefined,
    private readonly issues: PolicyIssue[],
  ) {}

  /** The destinations of a rule's list files; problems reported (a file that cannot be read at the policy's to_file). */
  destinations(r: RawRule, base: (string | number)[], error: Report): Destination[] {
    const paths = typeof r.to_file === 'string' ? [r.to_file] : (r.to_file ?? []);
    const out: Destination[] = [];
    paths.forEach((p, j) => {
      const at = typeof r.to_file === 'string' ? [...base, 'to_file'] : [...base, 'to_file', j];
      if (p.includes('\0')) return error(at, `a list file's path cannot hold a NUL byte: ${showValue(p)}`);
      const abs = isAbsolute(p) ? resolve(p) : resolve(dirname(resolve(this.policyFile)), p);
      const list = this.load(abs, r.name, at, error);
      if (!list) return;
      if (out.length + list.destinations.length > MAX_LIST_ENTRIES) {
        return error(at, `rule ${showValue(r.name)}'s list files hold more than ${MAX_LIST_ENTRIES} entries`);
      }
      for (const d of list.destinations) out.push(d);
    });
    return out;
  }

  private load(path: string, rule: string, at: (string | number)[], error: Report): { destinations: Destination[]; sha256: string } | null {
    if (this.parsed.has(path)) return this.parsed.get(path) ?? null;
    this.orderOf.set(path, this.orderOf.size);
    const read = this.host.readList ? this.host.readList(path) : readListFile(path);
    if (!read.ok) {
      this.parsed.set(path, null);
      error(at, `cannot use list file ${path} (rule ${showValue(rule)}): ${read.reason}`);
      return null;
    }
    const list = parseListBytes(read.bytes);
    for (const i of list.issues) this.issues.push({ file: path, line: i.line, column: i.column, path: at, message: i.message, severity: 'error' });
    if (list.more > 0) error(at, `list file ${path} has ${list.more} more errors than the ${MAX_LIST_ERRORS} shown`);
    const result = { destinations: list.destinations, sha256: createHash('sha256').update(read.bytes).digest('hex') };
    this.parsed.set(path, result);
    this.onList?.({ path, bytes: read.bytes });
    return result;
  }

  /** Where a list file's problems sort: by first use. */
  order(file: string): number {
    return this.orderOf.get(file) ?? this.orderOf.size;
  }

  /** The list files read without a problem reading them, in first-use order. */
  used(): { path: string; sha256: string; entries: number }[] {
    const out: { path: string; sha256: string; entries: number }[] = [];
    for (const [path, l] of this.parsed) if (l) out.push({ path, sha256: l.sha256, entries: l.destinations.length });
    return out;
  }
}

/**
 * Line and column (1-based, in UTF-16 units like the rest of the loader) of a
 * source offset. Computed from the text itself: the yaml package's
 * LineCounter misses newlines inside scalars it recovers from after an error.
 */
class LineIndex {
  private starts: number[] = [0];

  constructor(private text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.starts.push(i + 1);
  }

  pos(offset: number): { line: number; column: number } {
    const at = Math.max(0, Math.min(offset, this.text.length));
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.starts[mid] ?? 0) <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: at - (this.starts[lo] ?? 0) + 1 };
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function lineColAtByte(bytes: Uint8Array, at: number): { line: number; column: number } {
  let line = 1;
  let col = 1;
  for (let i = 0; i < at && i < bytes.length; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      col = 1;
    } else col++;
  }
  return { line, column: col };
}

function lineColAtOffset(text: string, at: number): { line: number; column: number } {
  let line = 1;
  let col = 1;
  for (let i = 0; i < at; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      col = 1;
    } else col++;
  }
  return { line, column: col };
}
