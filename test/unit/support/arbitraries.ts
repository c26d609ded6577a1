/**
 * Shared fast-check generators and fixtures for the parser property and
 * fuzz tests. Everything here treats input as hostile: the generators aim
 * at the edges of each grammar (almost-valid text, boundary values, zero
 * runs, look-alike characters) rather than at uniformly random noise, which
 * a strict parser rejects on the first character.
 */
import fc from 'fast-check';
import type { CtState, Stmt } from '../../../src/compile/ruleset.js';
import { MAX4, MAX6 } from '../../../src/net/ip.js';
import type { PolicyHost } from '../../../src/policy/load-policy.js';

/**
 * Multiplies every property's run count. The defaults keep the unit tier
 * fast; `SLUICE_FUZZ_SCALE=50 node --test dist/test/unit/` runs a long fuzz.
 */
const SCALE = Math.max(0.01, Number(process.env.SLUICE_FUZZ_SCALE ?? '1') || 1);

/** fast-check parameters for a property: `n` runs, scaled. */
export function runs(n: number): { numRuns: number } {
  return { numRuns: Math.max(1, Math.round(n * SCALE)) };
}

/** JSON.stringify that prints bigints (for assertion messages). */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
}

// ---------------------------------------------------------------- addresses

/** One 16-bit word, biased towards 0 so that zero runs (and `::`) are common. */
const word = fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(0xffff) }, { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffff }) });

/** Eight IPv6 words, zero-heavy. */
export const v6Words = fc.array(word, { minLength: 8, maxLength: 8 });

export const wordsToBigint = (ws: number[]): bigint => ws.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);

/** Any IPv4 address value, with the boundaries over-represented. */
export const v4Value = fc.oneof(
  fc.bigInt({ min: 0n, max: MAX4 }),
  fc.constantFrom(0n, 1n, MAX4, MAX4 - 1n, 0x7f000001n, 0x0a000000n, 0xc0a80001n),
  fc.integer({ min: 0, max: 255 }).map(BigInt),
);

/** Any IPv6 address value: uniform, zero-run heavy, and boundaries. */
export const v6Value = fc.oneof(
  fc.bigInt({ min: 0n, max: MAX6 }),
  v6Words.map(wordsToBigint),
  fc.constantFrom(0n, 1n, MAX6, MAX6 - 1n, 0xffffn << 32n, 1n << 112n),
);

/** True for an IPv6 value in ::ffff:0:0/96 (IPv4-mapped). */
export const isMapped = (v: bigint): boolean => v >> 32n === 0xffffn;

/**
 * Strings that look like addresses: fragments of valid and invalid groups,
 * dotted quads, separators. A good share are valid IPv4 or IPv6 addresses,
 * the rest fail in interesting places (one group too many, a leading zero
 * in the embedded IPv4, a triple colon).
 */
export const addressLike = fc.oneof(
  fc
    .array(
      fc.constantFrom('0', '1', '9', 'a', 'F', 'ffff', 'fffff', '0000', '00000', '12345', '1.2.3.4', '255.255.255.255', '256.0.0.1', '01.2.3.4', '0.0.0.0', '1.2.3', ':', '::', '.', 'g', ''),
      { maxLength: 12 },
    )
    .map((parts) => parts.join('')),
  fc
    .tuple(fc.array(fc.oneof(fc.stringMatching(/^[0-9a-fA-F]{1,5}$/), fc.constantFrom('1.2.3.4', '0.0.0.0', '01.2.3.4')), { maxLength: 9 }), fc.nat(9), fc.boolean())
    .map(([groups, at, compress]) => {
      if (!compress) return groups.join(':');
      const i = Math.min(at, groups.length);
      return `${groups.slice(0, i).join(':')}::${groups.slice(i).join(':')}`;
    }),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEFg:.'.split('')), maxLength: 45 }),
  fc.tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300)).map((q) => q.join('.')),
);

// ---------------------------------------------------------------- hostile text

/**
 * Values that try to smuggle syntax into nft, a shell, a log prefix or a
 * path. No parser may accept any of them.
 */
export const INJECTIONS: string[] = [
  'a; flush ruleset',
  'a;flush ruleset',
  '$(reboot)',
  '`id`',
  '${IFS}',
  'a\nb',
  'a\rb',
  'a\tb',
  'a\u0000b',
  'a\u0000',
  '\u0000',
  'a"b',
  "a'b",
  'a{b}',
  '{a}',
  '}',
  '@set',
  'a@set',
  'a b',
  ' a',
  'a ',
  'a|b',
  'a&&b',
  'a>b',
  'a<b',
  'a\\b',
  'a/b',
  '../etc',
  'a#b',
  'a%b',
  'a\u001b[31m',
  'a\u007f',
  'a\u0085b',
  'a\u2028b',
  'a\u200bb',
  'a\ufeffb',
];

/** Unicode look-alikes of plain ASCII names. */
export const LOOKALIKES: string[] = [
  'w\u0435b', // Cyrillic e
  '\u0430pi', // Cyrillic a
  'web\u2010api', // Unicode hyphen
  'web\u2011api', // non-breaking hyphen
  'web\u2212api', // minus sign
  '\uff57\uff45\uff42', // fullwidth web
  'web\u200d', // zero-width joiner
  'we\u0301b', // combining accent
  'd\u0131ns', // dotless i
  'web\u2024api', // one-dot leader
];

/** Strings over an alphabet of separators, specials and controls: for "accepted means safe" properties. */
export const nastyString = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...'abcxyzAZ0129-_.*:@/\\'.split('')) },
    { weight: 3, arbitrary: fc.constantFrom(' ', '\t', '\n', '\r', '\u0000', '\u001b', '\u007f', ';', '$', '`', '"', "'", '{', '}', '(', ')', '[', ']', '#', '%', '&', '|', '<', '>', '!', '?', ',', '=', '+', '~', '^') },
    { weight: 2, arbitrary: fc.constantFrom('\u00fc', '\u0435', '\u0430', '\u2010', '\u200b', '\u3002', '\uff0e', '\uff0a', '\u00ad', '\u0131', '\ufeff', '\u2028', '\ud83d\ude00', '\ud800') },
  ),
  maxLength: 24,
});

// ---------------------------------------------------------------- policy

/** A PolicyHost that knows a fixed set of users and refuses everyone else. */
export function fakeHost(users: Record<string, number> = { root: 0, www: 33, alice: 1000, 'svc-backup': 998 }): PolicyHost & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    lookupUsers(names: string[]): Map<string, number> {
      calls.push([...names]);
      const out = new Map<string, number>();
      for (const n of names) {
        const uid = users[n];
        if (uid !== undefined) out.set(n, uid);
      }
      return out;
    },
  };
}

// ---------------------------------------------------------------- IR statements

const CT_ORDER: CtState[] = ['invalid', 'established', 'related', 'new', 'untracked'];

/** Object, set and chain names: short, no NUL (netlink strings are NUL-terminated). */
const objName = fc.oneof(
  fc.stringMatching(/^[a-z0-9_.-]{1,24}$/),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).filter((s) => !s.includes('\u0000')),
  fc.string({ unit: 'grapheme', maxLength: 20 }).filter((s) => !s.includes('\u0000')),
);

/** Selectors whose value fits a cmp: integers of at most 4 bytes (see stmt.cmp). */
const CMP_SELECTORS = [
  ['ip daddr', 4],
  ['ip saddr', 4],
  ['th dport', 2],
  ['icmpv6 type', 1],
  ['meta l4proto', 1],
  ['meta nfproto', 1],
  ['meta oif', 4],
  ['meta skuid', 4],
  ['meta mark', 4],
  ['ct mark', 4],
  ['ct status', 4],
  ['socket mark', 4],
  ['ct direction', 1],
] as const;

const LOOKUP_SELECTORS = ['ip daddr', 'ip6 daddr', 'ip saddr', 'ip6 saddr', 'meta l4proto', 'meta nfproto', 'meta oif', 'meta oifname', 'meta skuid', 'meta mark', 'th dport', 'icmpv6 type', 'meta l4proto . th dport', 'meta l4proto . th sport'] as const;

/**
 * One IR statement in the canonical form the compiler writes (the form the
 * decoder gives back): ct states in kernel bit order, non-empty; `neg` only
 * when true; `level` only (and always) on socket cgroupv2 lookups; values
 * within the selector's width.
 */
export const stmtArb: fc.Arbitrary<Stmt> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...CMP_SELECTORS), fc.constantFrom('eq' as const, 'neq' as const), fc.bigInt({ min: 0n, max: (1n << 32n) - 1n }))
    .map(([[sel, width], op, v]): Stmt => ({ k: 'cmp', sel, op, value: Number(v & ((1n << BigInt(8 * width)) - 1n)) })),
  fc.tuple(fc.constantFrom(...LOOKUP_SELECTORS), objName, fc.boolean()).map(([sel, set, neg]): Stmt => (neg ? { k: 'lookup', sel, set, neg: true } : { k: 'lookup', sel, set })),
  fc.tuple(objName, fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([set, level, neg]): Stmt => (neg ? { k: 'lookup', sel: 'socket cgroupv2', set, level, neg: true } : { k: 'lookup', sel: 'socket cgroupv2', set, level })),
  // A masked compare (ct mark, ct status), and Sluice's write of its bits of the ct mark.
  fc
    .tuple(fc.constantFrom('ct mark' as const, 'ct status' as const), fc.constantFrom('eq' as const, 'neq' as const), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }))
    .map(([sel, op, value, mask]): Stmt => ({ k: 'cmp', sel, op, value, mask })),
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })).map(([mask, v]): Stmt => ({ k: 'ct-mark-set', mask, value: (v & mask) >>> 0 })),
  fc.subarray(CT_ORDER, { minLength: 1 }).map((states): Stmt => ({ k: 'ct', states })),
  objName.map((name): Stmt => ({ k: 'counter', name })),
  objName.map((name): Stmt => ({ k: 'limit', name })),
  fc.tuple(fc.integer({ min: 0, max: 0xffff }), objName).map(([group, prefix]): Stmt => ({ k: 'log', group, prefix })),
  fc
    .tuple(objName, fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 2 ** 32 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.boolean())
    .map(([set, timeoutMs, rate, burst, over]): Stmt => ({ k: 'meter', sel: 'meta skuid', set, timeoutMs, rate, burst, over })),
  fc.constantFrom<Stmt>({ k: 'reject', how: 'tcp-reset' }, { k: 'reject', how: 'icmpx-admin' }),
  fc.integer({ min: 0, max: 0xffff }).map((port): Stmt => ({ k: 'redirect', port })),
  fc.constant<Stmt>({ k: 'mark-set-skuid' }),
  fc.integer({ min: 0, max: 0xffff }).map((zone): Stmt => ({ k: 'ct-zone-set', zone })),
  fc.constantFrom<Stmt>({ k: 'verdict', v: 'accept' }, { k: 'verdict', v: 'drop' }, { k: 'verdict', v: 'return' }, { k: 'verdict', v: 'continue' }),
  fc.tuple(fc.constantFrom('goto' as const, 'jump' as const), objName).map(([k, chain]): Stmt => ({ k, chain })),
);

// ---------------------------------------------------------------- policy documents

const GOOD = {
  to: ['any', '1.2.3.4', '10.0.0.0/8', '10.0.0.0/9', '10.1.0.0-10.1.0.9', '10.0.0.7', '::1', '2001:db8::/32', '2001:db8::/33', '2001:db8::5', 'example.com', '*.example.com', 'B\u00fccher.example', 'Example.COM.'],
  ports: ['443', 443, '443/tcp', '53/udp', '853/tcp', '8000-8100', '60000-61000/udp', 'tcp', 'udp', 'icmp', 'icmpv6', '1-65535/tcp'],
  users: ['root', 'www', 'alice', 0, 1000, '1000', 4294967294],
  services: ['nginx.service', 'system.slice', '/system.slice/a.service', 'x@1.service'],
  interfaces: ['eth0', 'wg*', 'eth*', 'lo', 'eth0.100'],
};
const BAD = {
  to: ['1.2.3', '::ffff:1.2.3.4', '10.0.0.1/8', 'localhost', '', 42],
  ports: [0, 65536, 'https', '80-20/tcp', '443/icmp'],
  users: ['ghost', -1, 'a b', 4294967295],
  services: ['nginx', '/a/../b', 'a b.service'],
  interfaces: ['*', 'eth0/1', 'x'.repeat(16)],
};

/**
 * Rule names that collide with what Sluice names its own objects (built-in
 * chains, counters and sets, prefixes of other rules' objects), mixed into
 * clean names so the kernel-name tests meet them.
 */
const TRICKY_RULE_NAMES = ['default', 'encrypted-dns', 'encrypted_dns', 'essentials', 'output', 'refuse', 'dns_upstream', 'log_block', 'suppressed_block', 'a', 'a_p', 'a_a4', 'r_a', 'block_a', 'x'.repeat(48)];

/**
 * A policy document (before YAML or JSON rendering) of the right shape. With
 * `clean`, every value is valid (the document may still fail on a duplicate
 * rule name), and `dns.guard: false` never stands beside a domain rule; otherwise good values are mixed with bad ones and junk of any
 * type. The policy fuzzer renders these and checks the loader; the
 * kernel-name tests compile the ones that load.
 */
export function policyDocArb(clean: boolean): fc.Arbitrary<Record<string, unknown>> {
  const junk = fc.jsonValue({ maxDepth: 2 });
  const pick = <T>(good: T[], bad: unknown[] = []) =>
    clean ? fc.constantFrom(...good) : fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...good) }, { weight: 1, arbitrary: fc.constantFrom(...good, ...bad) }, { weight: 1, arbitrary: junk });
  const list = <T>(good: T[], bad: unknown[]) => fc.option(fc.array(pick(good, bad), { minLength: clean ? 1 : 0, maxLength: 5 }), { nil: undefined, freq: clean ? 2 : 4 });
  const rule = fc.record(
    {
      name: clean
        ? fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,10}$/) }, { weight: 1, arbitrary: fc.constantFrom(...TRICKY_RULE_NAMES) })
        : pick(['web', 'a', 'dns-1'], ['Web', 'a b', 'x'.repeat(49), '']),
      action: pick(['allow', 'deny'], ['permit']),
      to: clean ? fc.array(pick(GOOD.to), { minLength: 1, maxLength: 5 }) : list(GOOD.to, BAD.to),
      ports: list(GOOD.ports, BAD.ports),
      users: list(GOOD.users, BAD.users),
      services: list(GOOD.services, BAD.services),
      interfaces: list(GOOD.interfaces, BAD.interfaces),
      log: pick([true, false], ['yes']),
      comment: pick(['a comment', 'x'.repeat(200), '\u00fc'.repeat(200)], ['x'.repeat(201)]),
    },
    { requiredKeys: ['name'] },
  );
  return fc.record(
    {
      version: pick([1], [2]),
      mode: pick(['audit', 'enforce'], ['Enforce']),
      default: pick(['deny', 'allow'], ['reject']),
      block_with: pick(['reject', 'drop'], ['deny']),
      essentials: pick([true, false], ['yes']),
      log: fc.record(
        { group: pick([1, 7331, 65535], [0, 65536]), rate: pick([1, 1000], [0]), burst: pick([5, 10_000_000], [10_000_001]), user_rate: pick([1, 10], [0, 1_000_001]), user_burst: pick([1, 5], [0]), allowed: pick([true, false]) },
        { requiredKeys: [] },
      ),
      dns: fc.record(
        {
          guard: pick([true, false], ['on']),
          encrypted_dns: pick(['block', 'allow'], ['deny']),
          upstreams: list(['198.18.0.53', '2001:db8::53', '192.0.2.1'], ['127.0.0.1', '::1', '198.18.0.0/24', 'dns.example.com']),
          port: pick([52, 153, 1023], [53, 853, 1024, 0, 65536]),
          ttl_floor: pick([0, 30, 60], [-1, 86_401]),
          ttl_grace: pick([0, 10], [-1]),
          ttl_max: pick([300, 86_400], [0, 29]),
          blocked_answer: pick(['nxdomain', 'refused'], ['drop']),
          max_addresses_per_answer: pick([1, 32], [0, 65_537]),
          max_addresses_per_name: pick([64, 65_536], [0, 65_537]),
        },
        { requiredKeys: [] },
      ),
      rules: fc.array(rule, { maxLength: 4 }),
    },
    { requiredKeys: [] },
  ).map((doc) => (clean ? withoutGuardConflict(doc) : doc));
}

/** Drops `dns.guard: false` from a document whose rules name a domain (a policy error: they could never match). */
function withoutGuardConflict(doc: Record<string, unknown>): Record<string, unknown> {
  const dns = doc.dns as Record<string, unknown> | undefined;
  const rules = Array.isArray(doc.rules) ? (doc.rules as { to?: unknown }[]) : [];
  const domain = (t: unknown) => typeof t === 'string' && /[a-z]/i.test(t) && t !== 'any' && !t.includes(':');
  if (dns?.guard !== false || !rules.some((r) => Array.isArray(r.to) && r.to.some(domain))) return doc;
  const { guard: _g, ...rest } = dns;
  return { ...doc, dns: rest };
}
