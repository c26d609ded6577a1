import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

/**
 * The command line, declared once: each command's options, its arguments and
 * its help. The parser accepts exactly what is declared for the command at
 * hand (`sluice check --confirm 5` is a usage error, not a silent success),
 * and USAGE is generated from the same table, so the help cannot promise a
 * flag the parser refuses or hide one it accepts.
 */

/** An integer option's accepted range (both ends included). */
export interface IntRange {
  min: number;
  max: number;
}

export interface OptionSpec {
  name: string;
  short?: string;
  /** The value's placeholder in the help (`SECS`, `N`); absent for a boolean flag. */
  value?: string;
  /** An integer option: parsed and range-checked before the command runs. */
  int?: IntRange;
  /** May be given more than once; the values come as a list. */
  multiple?: boolean;
}

export interface CommandSpec {
  name: string;
  section: 'Policy and ruleset' | 'Daemon' | 'Monitoring' | 'Run one command' | 'hidden';
  /** The positional arguments as shown in the help (`[POLICY]`, `DEST [PORT[/PROTO]] [POLICY]`). */
  args?: string;
  /** Accepts a policy file, as POLICY or `--policy FILE`. */
  policy?: boolean;
  /** How many positional arguments it takes at most (explain checks its own). */
  maxArgs: number;
  /** Everything after `--` is passed through untouched (the command `sluice run` runs). */
  passThrough?: boolean;
  options: OptionSpec[];
  help: string[];
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: readonly (OptionSpec & { help: string })[] = [
  { name: 'json', help: 'machine-readable output (every command)' },
  { name: 'help', short: 'h', help: 'this help' },
  { name: 'version', help: 'print the version' },
];

/** The option a command with `policy: true` takes besides its POLICY argument. */
export const POLICY_OPTION: OptionSpec = { name: 'policy', value: 'FILE' };

export const MAX_CONFIRM_SECONDS = 24 * 3600;

const follow: OptionSpec = { name: 'follow', short: 'f' };

export const COMMANDS: readonly CommandSpec[] = [
  { name: 'check', section: 'Policy and ruleset', args: '[POLICY]', policy: true, maxArgs: 1, options: [], help: ['validate; every error as FILE:LINE:COL: message'] },
  {
    name: 'plan',
    section: 'Policy and ruleset',
    args: '[POLICY]',
    policy: true,
    maxArgs: 1,
    options: [{ name: 'full' }],
    help: ['the ruleset that would be applied, and its diff against the live table', '(--full: every set element, not the first 20)'],
  },
  {
    name: 'apply',
    section: 'Policy and ruleset',
    args: '[POLICY]',
    policy: true,
    maxArgs: 1,
    options: [{ name: 'confirm', value: 'SECS', int: { min: 1, max: MAX_CONFIRM_SECONDS } }],
    help: ['apply atomically; with --confirm, roll back unless confirmed in time'],
  },
  { name: 'confirm', section: 'Policy and ruleset', maxArgs: 0, options: [], help: ['keep a policy applied with --confirm'] },
  {
    name: 'explain',
    section: 'Policy and ruleset',
    args: 'DEST [PORT[/PROTO]] [POLICY]',
    policy: true,
    maxArgs: 3,
    options: [
      { name: 'user', value: 'U' },
      { name: 'service', value: 'UNIT' },
      { name: 'iface', value: 'IF' },
      { name: 'sport', value: 'PORT', int: { min: 1, max: 65535 } },
      { name: 'icmp-type', value: 'N', int: { min: 0, max: 255 } },
    ],
    help: ['the verdict for a destination, the rule or built-in that decides, and why'],
  },
  { name: 'status', section: 'Policy and ruleset', maxArgs: 0, options: [], help: ['mode, policy hash, live or drifted, counters per rule'] },
  { name: 'off', section: 'Policy and ruleset', maxArgs: 0, options: [], help: ["remove Sluice's table: outbound is open again (and stays so across restarts)"] },
  {
    name: 'restore',
    section: 'Policy and ruleset',
    maxArgs: 0,
    options: [],
    help: ['put the last applied ruleset back into the kernel (run at boot', 'by sluice-restore.service, before the network is up)'],
  },
  {
    name: 'daemon',
    section: 'Daemon',
    args: '[POLICY]',
    policy: true,
    maxArgs: 1,
    options: [
      { name: 'metrics', value: 'unix|HOST:PORT|off' },
      { name: 'metrics-token-file', value: 'FILE' },
    ],
    help: [
      'run the DNS guard, event collector, tamper watchdog and metrics',
      'on the applied policy until SIGTERM; POLICY is applied only if',
      'this host never applied one (else a warning says it is not);',
      "SIGHUP, or saving the applied policy's file with new content,",
      'reloads it (a broken one is rejected with an alert; the policy',
      'in force stays).',
      'Metrics: GET /metrics on the root-only socket STATE/metrics.sock',
      '(curl --unix-socket STATE/metrics.sock http://localhost/metrics);',
      'with HOST:PORT (loopback) also over TCP, with the bearer token',
      'in STATE/metrics.token (generated) or FILE (root-only)',
    ],
  },
  {
    name: 'dns',
    section: 'Daemon',
    maxArgs: 0,
    options: [follow, { name: 'limit', value: 'N', int: { min: 1, max: 10_000 } }],
    help: ['recent DNS queries: name, type, answer, verdict, rule, who asked', '(the newest N, default 100)'],
  },
  {
    name: 'dashboard',
    section: 'Daemon',
    maxArgs: 0,
    options: [],
    help: ["the dashboard's sign-in link (root): http://ADDRESS:PORT/?token=...", "(the policy key dashboard.listen; the token is STATE/dashboard.token)"],
  },
  {
    name: 'alerts',
    section: 'Daemon',
    args: 'status|test|daemon-failed',
    maxArgs: 1,
    options: [],
    help: [
      'status: per alert route, delivered, retried, failed and queued',
      '(the oldest waiting), and the suppressions (expired ones marked);',
      'test: a test alert through every route now (exit 1 if any failed);',
      'daemon-failed: the daemon-failed alert (systemd runs it, OnFailure=)',
    ],
  },
  {
    name: 'log',
    section: 'Monitoring',
    maxArgs: 0,
    options: [
      follow,
      { name: 'since', value: '1h' },
      { name: 'verdict', value: 'blocked|would-block|allowed' },
      { name: 'process', value: 'NAME' },
      { name: 'rule', value: 'R' },
      { name: 'limit', value: 'N', int: { min: 1, max: 10_000_000 } },
    ],
    help: ['blocked, would-block and allowed events with their process', '(the newest N, default 100)'],
  },
  { name: 'connections', section: 'Monitoring', maxArgs: 0, options: [], help: ['live outbound connections: process, pid, user, service, addresses, rule'] },
  {
    name: 'top',
    section: 'Monitoring',
    maxArgs: 0,
    options: [{ name: 'interval', value: 'S', int: { min: 1, max: 3600 } }],
    help: ['live outbound activity by process and destination (one snapshot when piped)'],
  },
  {
    name: 'stats',
    section: 'Monitoring',
    maxArgs: 0,
    options: [
      { name: 'since', value: '24h' },
      { name: 'limit', value: 'N', int: { min: 1, max: 1000 } },
    ],
    help: ['counts by verdict, rule, destination and process; kernel counters; losses', '(the top N of each, default 10)'],
  },
  {
    name: 'suggest',
    section: 'Monitoring',
    args: '[POLICY]',
    policy: true,
    maxArgs: 1,
    options: [
      { name: 'since', value: '7d' },
      { name: 'out', value: 'FILE' },
      { name: 'check', value: 'FILE' },
      { name: 'stable-days', value: 'N', int: { min: 1, max: 365 } },
    ],
    help: [
      'a policy allowing what the event store saw in the window (names',
      'where an address came from a DNS answer, per service or user);',
      'given POLICY (default: the applied one), that policy with new rules',
      'appended and rules nothing needed marked could-go, comments kept.',
      '--check FILE: replay the window against FILE: "would break N"',
      '(observed traffic it blocks; exit 1 if N > 0), "would block M".',
      'Promotions: what audits (mode, scopes, deny rules in audit) with no',
      'would-block in the last N days (--stable-days, default 14) is proposed',
      'for enforce, as comments and in --json',
    ],
  },
  {
    name: 'run',
    section: 'Run one command',
    args: '-- COMMAND [ARG...]',
    maxArgs: 0,
    passThrough: true,
    options: [
      { name: 'allow', value: 'DEST[:PORT[/PROTO]]', multiple: true },
      { name: 'policy', value: 'FILE' },
      { name: 'dns-upstream', value: 'ADDR', multiple: true },
      { name: 'audit' },
      { name: 'suggest' },
      { name: 'report', value: 'FILE' },
      { name: 'report-md', value: 'FILE' },
      { name: 'fail-on-block' },
      { name: 'no-ipv6' },
      { name: 'cleanup' },
    ],
    help: [
      'run COMMAND in its own network namespace under its own policy',
      '(--allow: a name, *.name, address or CIDR, with :PORT[/PROTO];',
      'repeatable; and/or --policy FILE) and DNS guard; the rules live',
      'on the host, out of its reach. At exit, a report on stderr of',
      'what it resolved, reached and was refused (--report FILE: JSON,',
      '--report-md FILE: Markdown). Exit status: the command\'s, or 1',
      'with --fail-on-block when it exited 0 and anything was blocked.',
      '--audit blocks nothing and reports what would have been;',
      '--suggest also prints a policy allowing what it did;',
      '--cleanup removes what runs killed with SIGKILL left',
    ],
  },
  // The detached rollback timer `apply --confirm` starts: `sluice _rollback TOKEN`.
  { name: '_rollback', section: 'hidden', args: 'TOKEN', maxArgs: 1, options: [], help: [] },
  // The dashboard's apply of a candidate (allow this, roll back to a version): `sluice _apply-candidate REQUEST`,
  // REQUEST a JSON file the daemon wrote in STATE/candidates (apply-candidate.ts reads and checks it).
  { name: '_apply-candidate', section: 'hidden', args: 'REQUEST', maxArgs: 1, options: [], help: [] },
];

export function commandSpec(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** Every option `command` accepts: its own, `--policy` where it takes a POLICY, and the global ones. */
export function optionsOf(command: CommandSpec): OptionSpec[] {
  return [...command.options, ...(command.policy ? [POLICY_OPTION] : []), ...GLOBAL_OPTIONS];
}

function flagText(o: OptionSpec): string {
  const long = `--${o.name}${o.value !== undefined ? ` ${o.value}` : ''}`;
  return o.short ? `-${o.short}|${long}` : long;
}

/** `log [-f|--follow] [--since 1h] ...`: a command's synopsis, from its declaration. */
export function synopsis(c: CommandSpec): string {
  return [c.args ?? '', ...c.options.map((o) => `[${flagText(o)}]`)].filter((s) => s !== '').join(' ');
}

const HELP_COLUMN = 38;

function usageEntry(c: CommandSpec): string[] {
  const head = `  ${c.name.padEnd(7)} ${synopsis(c)}`;
  const indent = ' '.repeat(HELP_COLUMN);
  const [first = '', ...rest] = c.help;
  const lines = head.length < HELP_COLUMN ? [`${head.padEnd(HELP_COLUMN)}${first}`] : [head, `${indent}${first}`];
  return [...lines, ...rest.map((l) => `${indent}${l}`)];
}

/** `sluice --help`, generated from COMMANDS. */
export function usage(): string {
  const out = ['Usage: sluice COMMAND [options]'];
  for (const section of ['Policy and ruleset', 'Daemon', 'Monitoring', 'Run one command'] as const) {
    out.push('', `${section}:`);
    for (const c of COMMANDS.filter((x) => x.section === section)) out.push(...usageEntry(c));
  }
  out.push('', 'Options:');
  for (const o of GLOBAL_OPTIONS) out.push(`  ${(o.short ? `-${o.short}, --${o.name}` : `--${o.name}`).padEnd(12)}  ${o.help}`);
  const withPolicy = COMMANDS.filter((c) => c.policy).map((c) => c.name);
  const numbers = COMMANDS.flatMap((c) => c.options.filter((o) => o.int).map((o) => `${c.name} --${o.name} ${o.int?.min}-${o.int?.max}`));
  out.push(
    '',
    `Numbers are whole, in range: ${numbers.join(', ')}.`,
    `POLICY may also be given as --policy FILE (${withPolicy.join(', ')}); it defaults to`,
    '$SLUICE_POLICY or /etc/sluice/policy.yaml; state lives in $SLUICE_STATE_DIR or',
    '/var/lib/sluice. An option a command does not list is a usage error. Exit status:',
    '0 ok, 1 failed, 2 usage, 3 not live (status: drifted, missing or pending past its deadline).',
  );
  return out.join('\n');
}

/**
 * Parses an integer option: digits only (no sign, no `0x`, no exponent, no
 * blanks), within its range. The one parser for every numeric flag.
 */
export function parseIntOption(flag: string, text: string, range: IntRange): number {
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < range.min || n > range.max) {
    throw new UsageError(`Bad ${flag} value: ${JSON.stringify(text)} (want a whole number from ${range.min} to ${range.max})`);
  }
  return n;
}

export type OptionValue = string | boolean | number | string[];

export interface ParsedCommandLine {
  /** Undefined when no command was given. */
  command: CommandSpec | undefined;
  /** The command name as typed (set even when it is unknown). */
  name: string | undefined;
  args: string[];
  values: Record<string, OptionValue | undefined>;
  /** After `--`, for a command that passes it through (`sluice run -- COMMAND...`). */
  rest?: string[];
}

function parseOptions(options: OptionSpec[]): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> {
  return Object.fromEntries(options.map((o) => [o.name, { type: o.value !== undefined ? 'string' : 'boolean', ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]));
}

/**
 * Splits argv into the command, its arguments and its options, accepting
 * only the options the command declares. Throws UsageError naming the flag
 * and the command otherwise, and for a bad integer value.
 */
export function parseCommandLine(full: string[]): ParsedCommandLine {
  // A command that passes everything after `--` through never parses it: `sluice run -- curl --help`
  // runs curl with --help. Only the first `--` counts; the command's own `--` stay in its argv.
  const cut = full.indexOf('--');
  const head = cut < 0 ? full : full.slice(0, cut);
  const first = head.find((a) => !a.startsWith('-'));
  const through = first !== undefined && commandSpec(first)?.passThrough === true;
  const argv = through ? head : full;
  const rest = through ? (cut < 0 ? [] : full.slice(cut + 1)) : undefined;
  // First pass, lenient and knowing every option of every command (so a value
  // is never mistaken for the command): where the command is, and what was given.
  const all = new Map<string, OptionSpec>();
  for (const c of COMMANDS) for (const o of optionsOf(c)) all.set(o.name, o);
  const { tokens } = parseArgs({ args: argv, allowPositionals: true, strict: false, tokens: true, options: parseOptions([...all.values()]) });
  const name = tokens.find((t) => t.kind === 'positional')?.value;
  const given = tokens.filter((t) => t.kind === 'option');
  const global = (n: string) => given.some((t) => t.name === n);
  if (name === undefined || global('help') || global('version')) {
    const values = Object.fromEntries(GLOBAL_OPTIONS.map((o) => [o.name, global(o.name) || undefined]));
    return { command: name === undefined ? undefined : commandSpec(name), name, args: [], values };
  }
  const command = commandSpec(name);
  if (!command) throw new UsageError(`Unknown command: ${JSON.stringify(name)} (see sluice --help)`);
  const accepted = optionsOf(command);
  for (const t of given) {
    const o = accepted.find((x) => x.name === t.name);
    if (!o) {
      const takes = accepted.map(flagText).join(', ');
      throw new UsageError(`Unknown option for \`sluice ${name}\`: ${t.rawName} (it takes ${takes})`);
    }
    // Checked here too, so `--limit -1` is named a bad value rather than an ambiguous argument.
    if (o.int && t.value !== undefined) parseIntOption(`--${o.name}`, t.value, o.int);
  }
  // Second pass, strict, with this command's options only.
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: parseOptions(accepted) });
  } catch (err) {
    throw new UsageError(`\`sluice ${name}\`: ${(err as Error).message.split('\n').join(' ')}`);
  }
  // Booleans are never `multiple`: a list is always of strings.
  const values = { ...parsed.values } as Record<string, OptionValue | undefined>;
  for (const o of accepted) {
    const v = values[o.name];
    if (o.int && typeof v === 'string') values[o.name] = parseIntOption(`--${o.name}`, v, o.int);
  }
  const [, ...args] = parsed.positionals;
  if (args.length > command.maxArgs) {
    throw new UsageError(
      command.maxArgs === 0
        ? `\`sluice ${name}\` takes no arguments: ${JSON.stringify(args[0])}`
        : `\`sluice ${name}\` takes at most ${command.maxArgs} argument${command.maxArgs === 1 ? '' : 's'} (${command.args}): ${args.map((a) => JSON.stringify(a)).join(' ')}`,
    );
  }
  return { command, name, args, values, ...(rest !== undefined ? { rest } : {}) };
}
