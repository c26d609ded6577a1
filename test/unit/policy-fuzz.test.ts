/**
 * The policy loader (parsePolicy) under hostile input. Whatever the bytes,
 * it either returns a Policy or throws PolicyError, never anything else;
 * every issue has a real position and a message; and a Policy it returns
 * holds only values that pass the value parsers again. Inputs: truncations
 * of a realistic policy at every byte, structure-aware mutations, random
 * bytes, random YAML documents, wrong types for every key, and the classic
 * attacks on YAML loaders (deep nesting, alias bombs, huge files, invalid
 * UTF-8, control characters, duplicate keys).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import YAML from 'yaml';
import { PolicyError, type PolicyIssue } from '../../src/errors.js';
import { MAX4, MAX6 } from '../../src/net/ip.js';
import { MAX_POLICY_BYTES, parsePolicy } from '../../src/policy/load-policy.js';
import { parseDomain, parseInterface, parseRuleName, parseService } from '../../src/policy/parse-values.js';
import type { Policy } from '../../src/policy/policy.js';
import { fakeHost, policyDocArb, runs } from './support/arbitraries.js';

const FILE = 'fuzz.yaml';
const USERS: Record<string, number> = { root: 0, www: 33, alice: 1000, 'svc-backup': 998 };

/** A realistic policy: every top-level key, every rule key, several rules, an IDNA name. */
const VALID = `# Egress policy of an API host
version: 1
mode: enforce
default: deny
block_with: reject
essentials: true
log:
  group: 7331
  rate: 500
  burst: 2000
  allowed: false

rules:
  - name: dns
    to: [any]
    ports: [53]
    comment: name resolution

  - name: web-api
    action: allow
    to:
      - 198.51.100.0/24
      - 2001:db8::/32
      - 203.0.113.7
      - 203.0.113.10-203.0.113.20
      - api.example.com
      - "*.cdn.example.net"
      - bücher.example
    ports: [443/tcp, 8000-8100/tcp, 60000-61000/udp, icmp, icmpv6]
    users: [www, 1000]
    services: [nginx.service, /system.slice/app.service]
    interfaces: [eth0, "wg*"]
    log: true
    comment: "the API and its CDN"

  - name: metadata
    action: deny
    to: [169.254.169.254, "fd00:ec2::254"]

  - name: backups
    to: [backup.example.org]
    ports: ['22/tcp']
    users: [svc-backup]
    log: false
`;

type Outcome = { policy: Policy; error?: undefined } | { policy?: undefined; error: PolicyError };

function preview(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.subarray(0, 200)).toString('latin1');
  return `${JSON.stringify(text)}${bytes.length > 200 ? `... (${bytes.length} bytes)` : ''}`;
}

/** Runs the loader; anything thrown that is not a PolicyError fails the test with the input shown. */
function load(input: string | Uint8Array): Outcome {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  try {
    return { policy: parsePolicy(bytes, FILE, fakeHost(USERS)) };
  } catch (err) {
    if (err instanceof PolicyError) return { error: err };
    const e = err as Error;
    assert.fail(`parsePolicy threw ${e?.constructor?.name ?? typeof err} (${String(e?.message)}) instead of PolicyError for ${preview(bytes)}`);
  }
}

/** Byte length of each line (lines split at LF), for bounds on positions. */
function lineLengths(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      out.push(i - start);
      start = i + 1;
    }
  }
  return out;
}

/**
 * Invariants of every issue, error or warning. `strict` adds two that the
 * loader does not meet today (see the "exact positions" tests): a position
 * inside its line, and no raw control characters in the message.
 */
function checkIssue(issue: PolicyIssue, bytes: Uint8Array, lines: number[], strict: boolean): void {
  const where = `${JSON.stringify(issue)} for ${preview(bytes)}`;
  assert.equal(issue.file, FILE, where);
  assert.ok(Number.isInteger(issue.line) && issue.line >= 1, `line: ${where}`);
  assert.ok(Number.isInteger(issue.column) && issue.column >= 1, `column: ${where}`);
  assert.ok(issue.line <= lines.length, `line past the end of the input: ${where}`);
  assert.equal(typeof issue.message, 'string', where);
  assert.ok(issue.message.trim().length > 0, `empty message: ${where}`);
  assert.ok(!issue.message.includes('\n'), `multi-line message: ${where}`);
  if (strict) {
    // Columns count UTF-16 units (YAML, values) or bytes (invalid UTF-8); either is at most the byte length.
    assert.ok(issue.column <= (lines[issue.line - 1] ?? 0) + 1, `column past the end of its line: ${where}`);
    // Messages go to terminals: no raw control characters (a CR would let the
    // rest of a message overwrite its start). Tab is harmless.
    assert.ok(!/[\u0000-\u0008\u000a-\u001f]/.test(issue.message), `raw control character in message: ${where}`);
  }
  assert.ok(issue.severity === 'error' || issue.severity === 'warning', where);
  assert.ok(Array.isArray(issue.path) && issue.path.every((p) => typeof p === 'string' || typeof p === 'number'), where);
}

/** Everything a returned Policy holds must pass the value parsers again. */
function checkPolicy(p: Policy, bytes: Uint8Array): void {
  const where = preview(bytes);
  assert.equal(p.file, FILE);
  assert.equal(p.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.ok(p.mode === 'audit' || p.mode === 'enforce', where);
  assert.ok(p.defaultAction === 'deny' || p.defaultAction === 'allow', where);
  assert.ok(p.blockWith === 'reject' || p.blockWith === 'drop', where);
  assert.equal(typeof p.essentials, 'boolean');
  assert.ok(Number.isInteger(p.log.group) && p.log.group >= 1 && p.log.group <= 65535, where);
  assert.ok(Number.isInteger(p.log.rate) && p.log.rate >= 1 && p.log.rate <= 1_000_000, where);
  assert.ok(Number.isInteger(p.log.burst) && p.log.burst >= 1 && p.log.burst <= 10_000_000, where);
  assert.equal(typeof p.log.allowed, 'boolean');
  const names = new Set<string>();
  p.rules.forEach((r, index) => {
    const at = `rule ${index} (${r.name}) of ${where}`;
    assert.deepEqual(parseRuleName(r.name), { ok: true, value: r.name }, at);
    assert.ok(!names.has(r.name), `duplicate rule name: ${at}`);
    names.add(r.name);
    assert.equal(r.index, index, at);
    assert.ok(r.action === 'allow' || r.action === 'deny', at);
    assert.ok(Number.isInteger(r.line) && r.line >= 1, at);
    assert.equal(typeof r.log, 'boolean', at);
    if (r.comment !== undefined) assert.ok(typeof r.comment === 'string' && r.comment.length <= 200, at);
    for (const a of r.addrs) {
      assert.ok(a.family === 4 || a.family === 6, at);
      assert.ok(a.start >= 0n && a.start <= a.end && a.end <= (a.family === 4 ? MAX4 : MAX6), at);
      if (a.family === 6) assert.notEqual(a.start >> 32n, 0xffffn, `IPv4-mapped address: ${at}`);
    }
    for (const family of [4, 6]) {
      const nets = r.addrs.filter((a) => a.family === family && a.start !== a.end);
      for (let i = 1; i < nets.length; i++) {
        const prev = nets[i - 1];
        const cur = nets[i];
        if (prev && cur) assert.ok(prev.end + 1n < cur.start, `ranges overlap or touch: ${at}`);
      }
    }
    for (const d of r.domains) {
      assert.deepEqual(parseDomain(d.text), { ok: true, value: d }, at);
      assert.match(d.text, /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/, at);
    }
    for (const port of r.ports) {
      assert.ok(port.proto === 'tcp' || port.proto === 'udp', at);
      assert.ok(Number.isInteger(port.from) && Number.isInteger(port.to) && port.from >= 0 && port.from <= port.to && port.to <= 65535, at);
    }
    assert.equal(typeof r.icmp, 'boolean');
    assert.equal(typeof r.icmpv6, 'boolean');
    for (const u of r.users) {
      assert.ok(Number.isInteger(u.uid) && u.uid >= 0 && u.uid <= 0xfffffffe, at);
      if (u.name !== undefined) assert.equal(USERS[u.name], u.uid, at);
    }
    for (const s of r.services) {
      const text = s.kind === 'unit' ? s.unit : s.path;
      assert.deepEqual(parseService(text), { ok: true, value: s }, at);
    }
    for (const i of r.interfaces) {
      assert.deepEqual(parseInterface(`${i.name}${i.wildcard ? '*' : ''}`), { ok: true, value: i }, at);
    }
  });
}

/** The property every input must satisfy. Returns what happened, for statistics. */
function checkLoad(input: string | Uint8Array, strict = false): Outcome {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const out = load(bytes);
  const lines = lineLengths(bytes);
  if (out.error) {
    const issues = out.error.issues;
    assert.ok(issues.length > 0, `PolicyError without issues for ${preview(bytes)}`);
    assert.ok(
      issues.some((i) => i.severity === 'error'),
      `PolicyError with only warnings for ${preview(bytes)}`,
    );
    assert.match(out.error.message, /^Invalid policy: fuzz\.yaml:\d+:\d+: /);
    assert.equal(out.error.code, 'EPOLICY');
    for (const issue of issues) checkIssue(issue, bytes, lines, strict);
  } else {
    checkPolicy(out.policy, bytes);
    for (const w of out.policy.warnings) {
      checkIssue(w, bytes, lines, strict);
      assert.equal(w.severity, 'warning');
    }
  }
  return out;
}

function errorsOf(input: string | Uint8Array): PolicyIssue[] {
  const out = checkLoad(input);
  assert.ok(out.error, 'the policy was accepted');
  return out.error.issues.filter((i) => i.severity === 'error');
}

/** The errors of a refused policy, without the invariant checks (for tests of one specific invariant). */
function rawErrors(text: string): PolicyIssue[] {
  const out = load(text);
  assert.ok(out.error, 'the policy was accepted');
  return out.error.issues.filter((i) => i.severity === 'error');
}

/** YAML syntax and awkward values, spliced into the realistic policy by the mutator. */
const TOKENS = [
  '-', ':', ': ', '[', ']', '{', '}', ',', '&a ', '*a', '!!str ', '!!binary ', '!!set ', '!foo ', '|', '>', '"', "'", '#', '---', '...', '? ', '<<: *a',
  '%TAG ! tag:x,2000:', '\t', '\r\n', '\r', '\u00a0', '\ufeff', '\u00fc', '\u2028', '\u0085', '~', 'null', 'yes', 'on', '0x1bb', '0o17', '1e3', '.inf', '.nan',
  '99999999999999999999', '2001-01-01', '-1', '0', '"\\u0000"', '"\\x1b[2J"', '"a\\nb"', 'any', '::', '1.2.3.4/33', '*.', 'name: x', '- name: y', '  ', '\n',
];
const VALID_LINES = VALID.split('\n');
const mutationArb = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), i: fc.nat(VALID_LINES.length - 1) }),
  fc.record({ op: fc.constant('duplicate' as const), i: fc.nat(VALID_LINES.length - 1) }),
  fc.record({ op: fc.constant('swap' as const), i: fc.nat(VALID_LINES.length - 1), j: fc.nat(VALID_LINES.length - 1) }),
  fc.record({ op: fc.constant('indent' as const), i: fc.nat(VALID_LINES.length - 1), by: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ op: fc.constant('splice' as const), at: fc.nat(VALID.length), len: fc.nat(6), token: fc.constantFrom(...TOKENS) }),
);

/** The realistic policy after 1 to 4 structure-aware mutations. */
const mutantArb = fc.array(mutationArb, { minLength: 1, maxLength: 4 }).map((muts) => {
  let ls = [...VALID_LINES];
  for (const m of muts) {
    const i = 'i' in m ? m.i % ls.length : 0;
    if (m.op === 'delete') ls.splice(i, 1);
    else if (m.op === 'duplicate') ls.splice(i, 0, ls[i] ?? '');
    else if (m.op === 'swap') {
      const j = m.j % ls.length;
      [ls[i], ls[j]] = [ls[j] ?? '', ls[i] ?? ''];
    } else if (m.op === 'indent') {
      const l = ls[i] ?? '';
      ls[i] = m.by >= 0 ? ' '.repeat(m.by) + l : l.replace(new RegExp(`^ {0,${-m.by}}`), '');
    } else {
      const text = ls.join('\n');
      const at = m.at % (text.length + 1);
      ls = (text.slice(0, at) + m.token + text.slice(at + m.len)).split('\n');
    }
    if (ls.length === 0) ls = [''];
  }
  return ls.join('\n');
});

/** Printable text with YAML punctuation (CR included). */
const yamlishText = fc
  .array(fc.constantFrom(...'abmode:rules-[]{}&*!|>\'"#%@`,?\n \t0123456789./\\'.split(''), '\r', 'name', 'to', 'ports', '- ', '\n  - ', '\n    ', 'any', '\u00fc'), { maxLength: 80 })
  .map((parts) => parts.join(''));

describe('policy fuzz: the realistic policy', () => {
  it('loads, with every value in place', () => {
    const out = checkLoad(VALID);
    assert.ok(out.policy, out.error?.message);
    const p = out.policy;
    assert.equal(p.mode, 'enforce');
    assert.deepEqual(p.log, { group: 7331, rate: 500, burst: 2000, userRate: 125, userBurst: 500, allowed: false });
    assert.deepEqual(
      p.rules.map((r) => [r.name, r.action, r.line]),
      [
        ['dns', 'allow', 14],
        ['web-api', 'allow', 19],
        ['metadata', 'deny', 36],
        ['backups', 'allow', 40],
      ],
    );
    const web = p.rules[1];
    assert.ok(web);
    assert.deepEqual(
      web.domains.map((d) => d.text),
      ['api.example.com', '*.cdn.example.net', 'xn--bcher-kva.example'],
    );
    assert.deepEqual(web.users, [{ uid: 33, name: 'www' }, { uid: 1000 }]);
    assert.deepEqual(web.interfaces, [
      { name: 'eth0', wildcard: false },
      { name: 'wg', wildcard: true },
    ]);
    assert.equal(p.warnings.length, 0);
  });

  it('every truncation (at every byte offset) loads or fails with a PolicyError', () => {
    const bytes = Buffer.from(VALID, 'utf8');
    let accepted = 0;
    let utf8 = 0;
    for (let n = 0; n <= bytes.length; n++) {
      const out = checkLoad(bytes.subarray(0, n));
      if (out.policy) accepted++;
      if (out.error?.issues.some((i) => i.message.includes('not valid UTF-8'))) utf8++;
    }
    // Both outcomes happen: many prefixes are complete policies, and cutting
    // the two-byte ü in half is invalid UTF-8.
    assert.ok(accepted > 10, `${accepted} prefixes loaded`);
    assert.equal(utf8, 1);
  });

  it('structure-aware mutations (lines deleted, duplicated, swapped, re-indented; YAML tokens spliced in) load or fail with a PolicyError', () => {
    let accepted = 0;
    fc.assert(
      fc.property(mutantArb, (text) => {
        if (checkLoad(text).policy) accepted++;
      }),
      runs(300),
    );
    assert.ok(accepted > 0, 'no mutant loaded: the returned-policy checks never ran');
  });
});

describe('policy fuzz: random input', () => {
  it('random bytes load or fail with a PolicyError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        checkLoad(bytes);
      }),
      runs(1000),
    );
  });

  it('random printable text with YAML punctuation loads or fails with a PolicyError', () => {
    fc.assert(
      fc.property(yamlishText, (text) => {
        checkLoad(text);
      }),
      runs(1000),
    );
  });

  it('property: every issue lies inside the file (line and column) and its message has no raw control characters', () => {
    // Fails today for two reasons, each with its minimal case under "exact positions".
    fc.assert(
      fc.property(fc.oneof(mutantArb, yamlishText), (text) => {
        checkLoad(text, true);
      }),
      runs(500),
    );
  });

  it('random YAML documents (JSON values rendered by yaml.stringify) load or fail with a PolicyError', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        checkLoad(YAML.stringify(value));
        checkLoad(YAML.stringify({ mode: 'enforce', rules: value }));
        checkLoad(YAML.stringify({ rules: [value] }));
        checkLoad(YAML.stringify({ rules: [{ name: 'r', to: value, ports: value }] }));
        checkLoad(YAML.stringify({ log: value }));
      }),
      runs(150),
    );
  });

  it('random policies of the right shape with good and bad values: accepted ones re-validate', () => {
    let accepted = 0;
    let total = 0;
    fc.assert(
      fc.property(
        fc.boolean().chain((clean) => policyDocArb(clean)),
        fc.boolean(),
        (p, flow) => {
          total++;
          const text = flow ? JSON.stringify(p) : YAML.stringify(p);
          if (checkLoad(text).policy) accepted++;
        },
      ),
      // Not scaled down under mutation: about 45% load, and at a fifth of the runs (20) the bound
      // below failed by chance about one run in fifty (a flaky kill). At 200: mean 90, bound 40.
      { numRuns: 200 },
    );
    assert.ok(accepted > total / 5, `only ${accepted} of ${total} generated policies loaded: the returned-policy checks barely ran`);
  });
});

describe('policy fuzz: wrong types for every key', () => {
  // Each key is written on its own line with a JSON (= YAML flow) value, so
  // the line of the error is known.
  const WRONG: Record<string, unknown[]> = {
    version: [2, 'one', '1', [1], { v: 1 }, true],
    mode: ['Enforce', 'block', 1, true, [], {}],
    default: ['reject', 0, [], {}],
    block_with: ['deny', 'RST', 1, []],
    essentials: ['yes', 'true', 1, [], {}],
    log: [1, 'on', [], { group: 0 }, { group: 65536 }, { group: 1.5 }, { rate: 0 }, { burst: 10_000_001 }, { allowed: 'no' }, { grup: 1 }, { user_rate: 0 }, { user_burst: 10_000_001 }, { rate: 10, user_rate: 11 }, { burst: 10, user_burst: 11 }],
    rules: [1, 'all', {}, { name: 'a' }, [1], ['a']],
    dns: [
      'on',
      1,
      [],
      { guard: 'on' },
      { port: 53 },
      { port: 853 },
      { port: 1024 },
      { port: 0 },
      { port: 65536 },
      { upstreams: ['127.0.0.1'] },
      { upstreams: ['::1'] },
      { upstreams: ['198.18.0.0/24'] },
      { upstreams: ['dns.example.com'] },
      { upstreams: '198.18.0.53' },
      { ttl_floor: 301, ttl_max: 300 },
      { ttl_max: 1 },
      { ttl_floor: -1 },
      { blocked_answer: 'drop' },
      { encrypted_dns: 'deny' },
      { max_addresses_per_answer: 0 },
      { max_addresses_per_answer: 65, max_addresses_per_name: 64 },
      { max_addresses_per_name: 65537 },
      { prot: 153 },
    ],
    flows: [1, { ct_mark_mask: 0xff }, { ct_mark_mask: 0xffff0001 }, { replies: 'any port' }, { replies: [0] }, { mask: 1 }],
  };
  const WRONG_RULE: Record<string, unknown[]> = {
    name: [1, null, [], {}, '', 'Bad Name', 'x'.repeat(49), 'a;b'],
    action: ['permit', 'ALLOW', 1, [], null],
    to: ['1.2.3.4', 1, {}, [[]], [{}], [null], [true], ['1.2.3'], []],
    ports: ['443', 443, {}, [[443]], [true], [null], [0], ['https'], []],
    users: ['root', 0, [{}], [null], [[0]], ['ghost'], [-1], []],
    services: ['nginx.service', [1], [{}], [null], ['nginx'], []],
    interfaces: ['eth0', [1], [null], ['eth0/1'], []],
    log: ['yes', 1, [], null],
    comment: [1, [], {}, 'x'.repeat(201), true],
  };
  const top: Record<string, unknown> = {
    version: 1,
    mode: 'enforce',
    default: 'deny',
    block_with: 'reject',
    essentials: true,
    log: { group: 7331 },
    dns: { upstreams: ['198.18.0.53', '2001:db8::53'], port: 153, ttl_floor: 30, ttl_max: 3600 },
    flows: { ct_mark_mask: 0xffff0000, replies: ['22/tcp'] },
  };
  const good = { name: 'web', action: 'allow', to: ['198.51.100.7'], ports: ['443/tcp'], users: ['www'], services: ['nginx.service'], interfaces: ['eth0'], log: false, comment: 'ok' };

  /** Renders the policy with one replaced value; returns the text and the 1-based line of that value. */
  function render(topKey: string | null, ruleKey: string | null, value: unknown): { text: string; line: number } {
    const lines: string[] = [];
    let line = 0;
    for (const [k, v] of Object.entries(top)) {
      if (k === topKey) line = lines.length + 1;
      lines.push(`${k}: ${JSON.stringify(k === topKey ? value : v)}`);
    }
    if (topKey === 'rules') {
      line = lines.length + 1;
      lines.push(`rules: ${JSON.stringify(value)}`);
    } else {
      lines.push('rules:');
      lines.push('  - name: first');
      lines.push('    to: [any]');
      lines.push(`  - name: ${JSON.stringify(ruleKey === 'name' ? value : good.name)}`);
      if (ruleKey === 'name') line = lines.length;
      for (const [k, v] of Object.entries(good)) {
        if (k === 'name') continue;
        if (k === ruleKey) line = lines.length + 1;
        lines.push(`    ${k}: ${JSON.stringify(k === ruleKey ? value : v)}`);
      }
    }
    return { text: `${lines.join('\n')}\n`, line };
  }

  it('the unmodified template loads (so every failure below is the replaced value)', () => {
    const out = checkLoad(render(null, null, undefined).text);
    assert.ok(out.policy, out.error?.message);
  });

  for (const [key, values] of Object.entries(WRONG)) {
    it(`top-level ${key}: each wrong value is an error on its own line`, () => {
      for (const v of values) {
        const { text, line } = render(key, null, v);
        const errs = errorsOf(text);
        assert.ok(
          errs.some((e) => e.line === line && e.path[0] === key),
          `${key}: ${JSON.stringify(v)} gave ${JSON.stringify(errs)}`,
        );
      }
    });
  }

  for (const [key, values] of Object.entries(WRONG_RULE)) {
    it(`rule key ${key}: each wrong value is an error on its own line`, () => {
      for (const v of values) {
        const { text, line } = render(null, key, v);
        const errs = errorsOf(text);
        assert.ok(
          errs.some((e) => e.line === line && e.path[0] === 'rules' && e.path[1] === 1 && (e.path[2] === key || e.path.length === 2)),
          `${key}: ${JSON.stringify(v)} gave ${JSON.stringify(errs)}`,
        );
      }
    });
  }

  it('random values at random keys load or fail with a PolicyError', () => {
    const keys = [...Object.keys(WRONG).map((k) => [k, null] as const), ...Object.keys(WRONG_RULE).map((k) => [null, k] as const)];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 3 }), ([topKey, ruleKey], value) => {
        checkLoad(render(topKey, ruleKey, value).text);
      }),
      runs(200),
    );
  });
});

describe('policy fuzz: attacks on the YAML loader', () => {
  it('10,000 nested flow lists fail with a PolicyError, not a stack overflow', () => {
    for (const text of [`rules: ${'['.repeat(10_000)}${']'.repeat(10_000)}`, `rules: ${'['.repeat(10_000)}`, `${'['.repeat(10_000)}1${']'.repeat(10_000)}`]) {
      assert.ok(errorsOf(text).length > 0);
    }
  });

  it('10,000 nested flow maps fail with a PolicyError', () => {
    assert.ok(errorsOf(`rules: ${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}`).length > 0);
    assert.ok(errorsOf(`rules: [${'{a: ['.repeat(5_000)}${']}'.repeat(5_000)}]`).length > 0);
  });

  it('deep block nesting (indentation and compact "- - -" lists) fails with a PolicyError', () => {
    const indented = Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i)}-`).join('\n');
    assert.ok(errorsOf(indented).length > 0);
    assert.ok(errorsOf(`rules:\n  ${'- '.repeat(10_000)}x\n`).length > 0);
    const maps = Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n');
    assert.ok(errorsOf(maps).length > 0);
  });

  it('a billion-laughs alias bomb is refused', () => {
    const levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const cur = String.fromCharCode(97 + i);
      levels.push(`${cur}: &${cur} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const started = Date.now();
    const errs = errorsOf(`${levels.join('\n')}\n`);
    assert.ok(
      errs.some((e) => /alias|resource exhaustion/i.test(e.message)),
      JSON.stringify(errs),
    );
    assert.ok(Date.now() - started < 2000, 'took too long: the aliases were expanded');
  });

  it('an alias bomb inside a rule list is refused, while a couple of shared lists are fine', () => {
    const bomb = ['x: &x [1.2.3.4, 1.2.3.5, 1.2.3.6, 1.2.3.7, 1.2.3.8, 1.2.3.9, 1.2.3.10, 1.2.3.11]'];
    for (let i = 0; i < 6; i++) bomb.push(`x${i}: &x${i} [${Array(8).fill(i === 0 ? '*x' : `*x${i - 1}`).join(', ')}]`);
    bomb.push('rules:', '  - name: a', '    to: *x5');
    assert.ok(errorsOf(`${bomb.join('\n')}\n`).some((e) => /alias|resource exhaustion/i.test(e.message)));

    const shared = 'rules:\n  - name: a\n    to: &hosts [1.2.3.4, example.com]\n    ports: [443]\n  - name: b\n    to: *hosts\n    ports: [80]\n';
    const out = checkLoad(shared);
    assert.ok(out.policy, out.error?.message);
    assert.deepEqual(out.policy.rules[1]?.domains, out.policy.rules[0]?.domains);
  });

  it('a self-referencing alias fails with a PolicyError', () => {
    assert.ok(errorsOf('rules: &a [*a]\n').length > 0);
    assert.ok(errorsOf('rules:\n  - &r\n    name: x\n    to: [*r]\n').length > 0);
    assert.ok(errorsOf('log: &l {group: *l}\n').length > 0);
  });

  /** Calls parsePolicy directly (no per-line scan of a huge buffer) and returns its PolicyError. */
  function refusal(bytes: Uint8Array): { err: PolicyError; ms: number } {
    const started = Date.now();
    try {
      parsePolicy(bytes, FILE, fakeHost(USERS));
    } catch (err) {
      const ms = Date.now() - started;
      assert.ok(err instanceof PolicyError, `threw ${String(err)}`);
      return { err, ms };
    }
    assert.fail('accepted');
  }

  it('a file over MAX_POLICY_BYTES (70 MiB) is refused for its size, without being parsed', () => {
    // 0xff is invalid UTF-8: had it been decoded, the error would say so.
    const huge = Buffer.alloc(70 * 1024 * 1024, 0xff);
    const { err, ms } = refusal(huge);
    assert.equal(err.issues.length, 1);
    const issue = err.issues[0] as PolicyIssue;
    assert.equal(issue.message, `policy is ${huge.length} bytes; the limit is ${MAX_POLICY_BYTES}`);
    assert.deepEqual([issue.file, issue.line, issue.column, issue.severity], [FILE, 1, 1, 'error']);
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  it('a file of exactly MAX_POLICY_BYTES passes the size check (the limit is inclusive)', () => {
    const { err } = refusal(Buffer.alloc(MAX_POLICY_BYTES, 0xff));
    assert.deepEqual(
      err.issues.map((i) => i.message),
      ['not valid UTF-8 text (byte 0); is this a binary file?'],
    );
  });

  it('duplicate keys are errors at the second occurrence, at every level', () => {
    const at = (text: string) => errorsOf(text).map((e) => `${e.line}:${e.column} ${e.message}`);
    assert.deepEqual(at('mode: audit\nrules: []\nmode: enforce\n'), ['3:1 YAML: Map keys must be unique']);
    assert.deepEqual(at('log:\n  group: 1\n  group: 2\n'), ['3:3 YAML: Map keys must be unique']);
    assert.deepEqual(at('rules:\n  - name: a\n    to: [any]\n    to: [1.2.3.4]\n'), ['4:5 YAML: Map keys must be unique']);
    assert.deepEqual(at('rules:\n  - {name: a, to: [any], name: b}\n'), ['2:26 YAML: Map keys must be unique']);
    // Keys equal as values but spelled differently are still duplicates.
    assert.equal(at('mode: audit\n"mode": enforce\n').length, 1);
  });

  it('invalid UTF-8 is refused with its position, whatever the encoding error', () => {
    const cases: [number[], number, number, number][] = [
      // bytes, byte offset reported, line, column
      [[0xff], 0, 1, 1],
      [[0x6d, 0x3a, 0x20, 0xc0, 0x80], 3, 1, 4], // overlong NUL
      [[0x0a, 0x61, 0xed, 0xa0, 0x80], 3, 2, 3], // UTF-16 surrogate encoded in UTF-8 (detected at its second byte)
      [[0x61, 0x0a, 0x62, 0x0a, 0x20, 0x20, 0x20, 0x80], 7, 3, 4], // lone continuation byte
      [[0x61, 0xe2, 0x82], 3, 1, 4], // truncated at the end of the file
      [[0xf8, 0x88, 0x80, 0x80, 0x80], 0, 1, 1], // five-byte form
      [[0xff, 0xfe, 0x6d, 0x00], 0, 1, 1], // UTF-16LE with BOM
    ];
    for (const [bytes, at, line, column] of cases) {
      const errs = errorsOf(Uint8Array.from(bytes));
      assert.equal(errs.length, 1);
      assert.equal(errs[0]?.message, `not valid UTF-8 text (byte ${at}); is this a binary file?`, bytes.join(','));
      assert.deepEqual([errs[0]?.line, errs[0]?.column], [line, column], bytes.join(','));
    }
  });

  it('every C0 control character other than tab, LF and CR, and DEL, is refused at its position', () => {
    const allowed = new Set([0x09, 0x0a, 0x0d]);
    for (let c = 0; c < 0x80; c++) {
      if (c >= 0x20 && c !== 0x7f) continue;
      const text = `mode: audit\nrules:\n  - name: a${String.fromCharCode(c)}b\n    to: [any]\n`;
      if (allowed.has(c)) {
        checkLoad(text);
        continue;
      }
      const errs = errorsOf(text);
      assert.deepEqual(
        errs.map((e) => `${e.line}:${e.column} ${e.message}`),
        [`3:12 control character 0x${c.toString(16).padStart(2, '0')} in policy text; is this a binary file?`],
      );
    }
  });

  it('control characters written as YAML escapes reach no value', () => {
    for (const esc of ['\\0', '\\x01', '\\e', '\\x7f', '\\u0085', '\\u2028', '\\t', '\\n', '\\r']) {
      const values = [`name: "web${esc}"\n    to: [any]`, `name: a\n    to: ["example.com${esc}"]`, `name: a\n    interfaces: ["eth0${esc}"]`, `name: a\n    services: ["a${esc}.service"]`, `name: a\n    users: ["root${esc}"]`];
      for (const v of values) {
        const errs = errorsOf(`rules:\n  - ${v}\n`);
        assert.equal(errs.length, 1, `${esc} in ${v}: ${JSON.stringify(errs)}`);
        assert.ok(!/[\u0000-\u001f]/.test(errs[0]?.message ?? ''), errs[0]?.message);
      }
    }
  });

  it('a CRLF policy loads like the LF one; a BOM is ignored', () => {
    const lf = checkLoad(VALID).policy;
    const crlf = checkLoad(VALID.replaceAll('\n', '\r\n')).policy;
    const bom = checkLoad(`\ufeff${VALID}`).policy;
    assert.ok(lf && crlf && bom);
    const strip = (p: Policy) => ({ ...p, sha256: '' });
    assert.deepEqual(strip(crlf), strip(lf));
    assert.deepEqual(strip(bom), strip(lf));
  });

  it('YAML tags cannot smuggle other types in', () => {
    for (const text of ['mode: !!binary ZW5mb3JjZQ==\n', 'rules: !!set {a, b}\n', 'rules: !!omap [a: 1]\n', 'rules:\n  - name: !!binary YQ==\n    to: [any]\n', 'log: {group: !!float 1.5}\n', 'rules:\n  - name: a\n    to: [!!int 16909060]\n']) {
      assert.ok(errorsOf(text).length > 0, text);
    }
  });

  it('__proto__ and constructor keys are unknown keys, not prototype changes', () => {
    assert.deepEqual(
      errorsOf('__proto__: {mode: enforce}\n').map((e) => e.message),
      ['unknown key "__proto__"'],
    );
    assert.deepEqual(
      errorsOf('rules:\n  - name: a\n    to: [any]\n    __proto__: {action: deny}\n').map((e) => `${e.line}:${e.column} ${e.message}`),
      ['4:5 unknown key "__proto__"'],
    );
    assert.deepEqual(
      errorsOf('constructor: 1\n').map((e) => e.message),
      ['unknown key "constructor"'],
    );
    assert.equal(({} as Record<string, unknown>).mode, undefined);
  });

  it('several YAML documents in one file are refused', () => {
    assert.match(errorsOf('mode: audit\n---\nmode: enforce\n')[0]?.message ?? '', /multiple documents/);
  });
});

describe('policy fuzz: exact positions', () => {
  const at = (text: string) => errorsOf(text).map((e) => `${e.line}:${e.column} ${e.message}`);
  const SYNTAX_UNCLOSED = ['5:1 YAML: Flow sequence in block collection must be sufficiently indented and end with a ]'];
  const SYNTAX_INDENT = ['4:1 YAML: Sequence item without - indicator'];

  it('an unknown key on line 5 column 5 is reported at 5:5 with a did-you-mean hint', () => {
    assert.deepEqual(at('mode: enforce\nrules:\n  - name: web\n    to: [198.51.100.7]\n    prots: [443]\n'), ['5:5 unknown key "prots" (did you mean ports?)']);
  });

  it('unknown keys at the top level and inside log get hints from their own key lists', () => {
    assert.deepEqual(at('mode: enforce\nrule:\n  - name: a\n'), ['2:1 unknown key "rule" (did you mean rules?)']);
    assert.deepEqual(at('mode: enforce\nlog:\n  grup: 5\n'), ['3:3 unknown key "grup" (did you mean group?)']);
    assert.deepEqual(at('mode: enforce\nxyzzy: 1\n'), ['2:1 unknown key "xyzzy"']);
  });

  it('a bad CIDR inside a flow list is reported at its own column', () => {
    assert.deepEqual(at('mode: enforce\nrules:\n  - name: web\n    to: [198.51.100.7, 10.0.0.1/8, example.com]\n'), ['4:24 host bits are set (the network is 10.0.0.0/8): "10.0.0.1/8"']);
  });

  it('a bad entry of a block list is reported at the entry, not the dash', () => {
    assert.deepEqual(at('mode: enforce\nrules:\n  - name: web\n    to:\n      - 198.51.100.7\n      - 10.0.0.1/8\n'), ['6:9 host bits are set (the network is 10.0.0.0/8): "10.0.0.1/8"']);
  });

  it('errors in a later rule and in a port list point at their own lines and columns, in file order', () => {
    assert.deepEqual(at('rules:\n  - name: a\n    to: [any]\n  - name: b\n    ports: [443, 0, 80-20/tcp]\n    users: [alice, ghost]\n'), [
      '5:18 a port is a number from 1 to 65535: 0',
      '5:21 a port range must go from low to high: "80-20/tcp"',
      '6:20 no such user: "ghost"',
    ]);
  });

  it('positions of YAML errors after the first stay inside the file', () => {
    // Fixed; this test guards it. Positions came from yaml's LineCounter, which is not told about
    // the newlines inside a multi-line scalar the parser is recovering from
    // ("aa\na" below), so every later error is reported lines too early:
    // here the ":" on line 3, column 2 is reported at 2:5, a column past the
    // end of the two-character line 2. Computing line and column from the
    // error offset and the text (as the loader already does for control
    // characters) gives the right position.
    const errs = rawErrors('-\naa\na:');
    const colon = errs.find((e) => e.message.includes('map-value-ind'));
    assert.ok(colon, JSON.stringify(errs));
    assert.deepEqual([colon.line, colon.column], [3, 2], JSON.stringify(errs));
  });

  it('YAML parser messages do not carry raw control characters from the file', () => {
    // Fixed; this test guards it. The yaml library quotes source text in some messages ("Not a YAML
    // token: ...") and the loader passed them through unescaped; only text
    // after a newline is cut. A CR (allowed in policy text) survives, so
    // printing the message returns the cursor and "EVERYTHING OK" overwrites
    // the start of the error line on a terminal.
    const errs = rawErrors('mode: audit\n| x\rEVERYTHING OK\n');
    const raw = errs.filter((e) => /[\u0000-\u0008\u000a-\u001f]/.test(e.message));
    assert.deepEqual(raw, []);
  });

  it('a YAML syntax error is reported where the parser found it', () => {
    assert.deepEqual(at('mode: enforce\nrules:\n  - name: a\n    to: [1.2.3.4\n'), SYNTAX_UNCLOSED);
    assert.deepEqual(at('mode: enforce\nrules:\n  - name: a\n   to: [any]\n'), SYNTAX_INDENT);
  });
});
