/**
 * List files (`to_file:`): the formats feeds come in (plain, FireHOL netset
 * and ipset, Spamhaus DROP/EDROP), every error at FILE:LINE:COL, an entry
 * meaning what it means in `to:`, and the files an attacker would hand in
 * (binary, huge lines, FIFOs, devices, files others can write, symlinks).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { PolicyError, formatIssue } from '../../src/errors.js';
import { formatRange, parseIPv6, parseIPv6General, parsePrefix } from '../../src/net/ip.js';
import { MAX_LIST_BYTES, MAX_LIST_ERRORS, MAX_LIST_LINE, parseListBytes, readListFile } from '../../src/policy/list-file.js';
import { loadPolicyWithBytes, normalizeAddrs, parsePolicy, policyDigest, type PolicyHost } from '../../src/policy/load-policy.js';
import { parseDestination } from '../../src/policy/parse-values.js';
import type { Policy } from '../../src/policy/policy.js';
import { fakeHost, runs } from './support/arbitraries.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-lists-'));
chmodSync(dir, 0o755);
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** Writes a list file (mode 0644, owned by this user) and returns its path. */
function listFile(text: string | Buffer, name = `list-${n++}.txt`): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o644 });
  chmodSync(p, 0o644);
  return p;
}

function policyFile(yaml: string): string {
  const p = join(dir, `policy-${n++}.yaml`);
  writeFileSync(p, yaml, { mode: 0o644 });
  return p;
}

function load(yaml: string): Policy {
  return loadPolicyWithBytes(policyFile(yaml), fakeHost()).policy;
}

function errorsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected PolicyError, got ${String(err)}`);
    return err.issues.filter((i) => i.severity === 'error').map(formatIssue);
  }
  assert.fail('accepted');
}

const texts = (p: Policy, rule: string) => (p.rules.find((r) => r.name === rule)?.addrs ?? []).map(formatRange);

describe('unit: list files, the formats', () => {
  it('plain lines, # and ; comments (whole-line and trailing), blank lines, CRLF, tabs and a BOM', () => {
    const r = parseListBytes(Buffer.from('\ufeff198.18.0.1\r\n# comment\r\n; another\r\n\r\n  198.18.0.2\t# trailing\n198.18.1.0/24;SBL1\n\t2001:db8::/32 ; v6\n*.example.com\napi.example.com.\n'));
    assert.deepEqual(r.issues, []);
    assert.deepEqual(
      r.destinations.map((d) => (d.kind === 'addr' ? formatRange(d.range) : d.kind === 'domain' ? d.pattern.text : 'any')),
      ['198.18.0.1', '198.18.0.2', '198.18.1.0/24', '2001:db8::/32', '*.example.com', 'api.example.com'],
    );
  });

  it('a FireHOL .netset file loads as it is', () => {
    const netset = `#
# firehol_level1
#
# ipv4 hash:net ipset
#
# Maintainer      : FireHOL
# Source File Date: Sat Dec  5 10:00:00 UTC 2026
#
# Entries         : 3 subnets, 3 unique IPs
#
198.18.0.0/24
198.18.4.0/22
198.19.255.255
`;
    const p = load(`mode: enforce\nrules:\n  - name: feed\n    action: deny\n    to_file: ${listFile(netset, 'firehol_level1.netset')}\n`);
    assert.deepEqual(texts(p, 'feed'), ['198.18.0.0/24', '198.18.4.0/22', '198.19.255.255']);
  });

  it('a FireHOL .ipset file (single addresses) loads as it is', () => {
    const ipset = '#\n# blocklist_de\n#\n198.18.7.1\n198.18.7.3\n198.18.7.2\n';
    const p = load(`mode: enforce\nrules:\n  - name: feed\n    action: deny\n    to_file: ${listFile(ipset, 'blocklist_de.ipset')}\n`);
    assert.deepEqual(texts(p, 'feed'), ['198.18.7.1', '198.18.7.2', '198.18.7.3']);
  });

  it('Spamhaus DROP and EDROP files (`PREFIX ; SBLnnn`, `;` header) load as they are', () => {
    const drop = '; Spamhaus DROP List 2026/12/05 - (c) 2026 The Spamhaus Project SLU\n; https://www.spamhaus.org/drop/drop.txt\n; Last-Modified: Sat, 05 Dec 2026 10:00:00 GMT\n; Expires: Sat, 05 Dec 2026 11:00:00 GMT\n198.18.16.0/20 ; SBL256894\n198.18.64.0/18 ; SBL303703\n';
    const edrop = '; Spamhaus EDROP List\n198.19.0.0/22 ; SBL1\n';
    const p = load(`mode: enforce\nrules:\n  - name: drop\n    action: deny\n    to_file: [${listFile(drop, 'drop.txt')}, ${listFile(edrop, 'edrop.txt')}]\n`);
    assert.deepEqual(texts(p, 'drop'), ['198.18.16.0/20', '198.18.64.0/18', '198.19.0.0/22']);
  });

  it('a relative path is read from the policy file\'s directory; to and to_file together', () => {
    listFile('198.18.9.9\n', 'relative.txt');
    const p = load('mode: enforce\nrules:\n  - name: r\n    to: [198.18.9.1]\n    to_file: relative.txt\n');
    assert.deepEqual(texts(p, 'r'), ['198.18.9.1', '198.18.9.9']);
    assert.deepEqual(p.lists?.map((l) => l.path), [join(dir, 'relative.txt')]);
  });

  it('the policy\'s sha256 covers its list files: a changed feed is a changed policy; without lists it is the file\'s hash', () => {
    const feed = listFile('198.18.0.1\n');
    const yaml = `mode: enforce\nrules:\n  - name: r\n    to_file: ${feed}\n`;
    const path = policyFile(yaml);
    const a = loadPolicyWithBytes(path, fakeHost());
    writeFileSync(feed, '198.18.0.2\n');
    const b = loadPolicyWithBytes(path, fakeHost());
    assert.notEqual(a.policy.sha256, b.policy.sha256);
    assert.equal(a.lists.length, 1);
    assert.equal(a.lists[0]?.bytes.toString(), '198.18.0.1\n');
    assert.equal(a.policy.sha256, policyDigest(sha(a.bytes), a.policy.lists ?? []));
    const plain = loadPolicyWithBytes(policyFile('mode: enforce\nrules:\n  - name: r\n    to: [198.18.0.1]\n'), fakeHost());
    assert.equal(plain.policy.sha256, sha(plain.bytes));
    assert.equal(plain.policy.lists, undefined);
  });

  it('the same file in two rules is read once', () => {
    const feed = listFile('198.18.0.1\n');
    const reads: string[] = [];
    const host: PolicyHost = { ...fakeHost(), readList: (p) => (reads.push(p), { ok: true, bytes: Buffer.from('198.18.0.1\n') }) };
    const p = parsePolicy(Buffer.from(`rules:\n  - name: a\n    to_file: ${feed}\n  - name: b\n    action: deny\n    to_file: ${feed}\n`), join(dir, 'x.yaml'), host);
    assert.deepEqual(reads, [feed]);
    assert.equal(p.rules.length, 2);
  });

  it('a policy loaded from a snapshot reads its lists through the host, not the disk', () => {
    const p = parsePolicy(Buffer.from('rules:\n  - name: a\n    to_file: /nonexistent/feed.txt\n'), '/etc/sluice/policy.yaml', {
      ...fakeHost(),
      readList: (path) => (path === '/nonexistent/feed.txt' ? { ok: true, bytes: Buffer.from('198.18.0.7\n') } : { ok: false, reason: 'not in the snapshot' }),
    });
    assert.deepEqual(texts(p, 'a'), ['198.18.0.7']);
  });
});

describe('unit: list files, errors at FILE:LINE:COL, all in one run', () => {
  it('every bad line is reported at its own line and column, after the policy\'s own errors', () => {
    const feed = listFile('198.18.0.1\n198.18.0\n  198.18.1.1/24 ; SBL9\n\n2001:db8::/129\n*bad.example\nany\n198.18.0.1 198.18.0.2\n');
    const errs = errorsOf(() => load(`mode: enforce\nrules:\n  - name: r\n    to_file: ${feed}\n    ports: [99999]\n`));
    assert.deepEqual(errs, [
      `${join(dir, `policy-${n - 1}.yaml`)}:5:13: a port is a number from 1 to 65535: 99999`,
      `${feed}:2:1: not an IP address: "198.18.0"`,
      `${feed}:3:3: host bits are set (the network is 198.18.1.0/24): "198.18.1.1/24"`,
      `${feed}:5:1: prefix length must be 0 to 128: "2001:db8::/129"`,
      `${feed}:6:1: a wildcard must be the whole first label, as in *.example.com: "*bad.example"`,
      `${feed}:7:1: any is not allowed in a list file (write to: [any] in the policy if that is what the rule means)`,
      `${feed}:8:1: one entry a line (comments start with # or ;): "198.18.0.1 198.18.0.2"`,
    ]);
  });

  it('a missing file is an error at the policy\'s to_file entry naming the file and the rule; nothing loads', () => {
    const errs = errorsOf(() => load(`rules:\n  - name: feeds\n    to_file: [${listFile('198.18.0.1\n')}, missing.txt]\n`));
    assert.equal(errs.length, 1);
    assert.match(errs[0] ?? '', /policy-\d+\.yaml:3:\d+: cannot use list file .*\/missing\.txt \(rule "feeds"\): ENOENT$/);
    // A single to_file (a string, not a list): at its value, line 3 column 14, not at the top of the file.
    const one = errorsOf(() => load(`rules:\n  - name: feeds\n    to_file: missing.txt\n`));
    assert.equal(one.length, 1);
    assert.match(one[0] ?? '', /policy-\d+\.yaml:3:14: cannot use list file .*\/missing\.txt \(rule "feeds"\): ENOENT$/);
    // Its path (what --json gives) is the key's, with no list index; a list's entry has its index.
    const pathOf = (yaml: string) => {
      try {
        load(yaml);
      } catch (err) {
        if (err instanceof PolicyError) return err.issues.find((i) => i.severity === 'error')?.path;
      }
      return assert.fail('accepted');
    };
    assert.deepEqual(pathOf(`rules:\n  - name: feeds\n    to_file: missing.txt\n`), ['rules', 0, 'to_file']);
    assert.deepEqual(pathOf(`rules:\n  - name: feeds\n    to_file: [missing.txt]\n`), ['rules', 0, 'to_file', 0]);
  });

  it('errors are capped per file, the rest counted', () => {
    const feed = listFile('bad!\n'.repeat(MAX_LIST_ERRORS + 25));
    const errs = errorsOf(() => load(`rules:\n  - name: r\n    to_file: ${feed}\n`));
    assert.equal(errs.filter((e) => e.startsWith(`${feed}:`)).length, MAX_LIST_ERRORS);
    assert.ok(errs.some((e) => e.includes(`has 25 more errors than the ${MAX_LIST_ERRORS} shown`)), errs.join('\n'));
  });

  it('to_file: an empty list, a wrong type and a misspelt key are policy errors', () => {
    assert.match(errorsOf(() => load('rules:\n  - name: r\n    to_file: []\n'))[0] ?? '', /to_file/);
    assert.match(errorsOf(() => load('rules:\n  - name: r\n    to_file: 3\n'))[0] ?? '', /to_file/);
    assert.match(errorsOf(() => load('rules:\n  - name: r\n    to_files: x.txt\n'))[0] ?? '', /did you mean to_file\?/);
  });

  it('a rule with only to_file constrains its destinations (it is not "matches all traffic")', () => {
    const p = load(`mode: enforce\nrules:\n  - name: r\n    to_file: ${listFile('198.18.0.1\n')}\n`);
    assert.deepEqual(texts(p, 'r'), ['198.18.0.1']);
  });
});

describe('unit: list files, hostile input', () => {
  it('NUL bytes and other control characters: an error at their line and column, in entries and comments alike', () => {
    const r = parseListBytes(Buffer.from('198.18.0.1\n198.18\x00.0.2\n198.18.0.3 # \x1b[31m\n'));
    assert.deepEqual(r.issues, [
      { line: 2, column: 7, message: 'control character 0x00; is this a binary file?' },
      { line: 3, column: 14, message: 'control character 0x1b; is this a binary file?' },
    ]);
    assert.equal(r.destinations.length, 1);
  });

  it('invalid UTF-8 is refused with the line of the first bad byte', () => {
    const r = parseListBytes(Buffer.concat([Buffer.from('198.18.0.1\n198.18.0.2\n'), Buffer.from([0xff, 0xfe, 0x00])]));
    assert.deepEqual(r.issues, [{ line: 3, column: 1, message: 'not valid UTF-8 text (byte 22); is this a binary file?' }]);
    assert.equal(r.destinations.length, 0, 'nothing of a binary file is used');
  });

  it('a huge line is one error, and the lines after it still count', () => {
    const r = parseListBytes(Buffer.from(`${'1'.repeat(MAX_LIST_LINE * 50)}\n198.18.0.1\n`));
    assert.deepEqual(r.issues, [{ line: 1, column: MAX_LIST_LINE + 1, message: `line is ${MAX_LIST_LINE * 50} characters; the limit is ${MAX_LIST_LINE}` }]);
    assert.equal(r.destinations.length, 1);
  });

  it('a FIFO is refused without blocking, /dev/zero and a directory are not regular files', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', ['-m', '0644', fifo]);
    assert.deepEqual(readListFile(fifo), { ok: false, reason: 'not a regular file' });
    assert.deepEqual(readListFile('/dev/zero'), { ok: false, reason: 'not a regular file' });
    assert.deepEqual(readListFile(dir), { ok: false, reason: 'not a regular file' });
  });

  it('a file over the size limit is refused before it is read', () => {
    const big = join(dir, 'big.txt');
    writeFileSync(big, '');
    chmodSync(big, 0o644);
    execFileSync('truncate', ['-s', String(MAX_LIST_BYTES + 1), big]);
    const r = readListFile(big);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.reason, new RegExp(`${MAX_LIST_BYTES + 1} bytes; the limit is ${MAX_LIST_BYTES}`));
    rmSync(big);
  });

  it('a list file writable by group or others, or owned by another user, is refused: whoever writes a feed sets the firewall', { skip: process.getuid?.() !== 0 ? 'needs root to chown' : false }, () => {
    const open = listFile('198.18.0.1\n');
    chmodSync(open, 0o666);
    assert.match(readListFile(open).ok ? '' : (readListFile(open) as { reason: string }).reason, /writable by group or others \(mode 666\)/);
    const theirs = listFile('198.18.0.1\n');
    chownSync(theirs, 65534, 65534);
    assert.match((readListFile(theirs) as { reason: string }).reason ?? '', /belongs to uid 65534, not root/);
    // In a directory others can write (not sticky), they could swap the file.
    const openDir = join(dir, 'open-dir');
    mkdirSync(openDir);
    chmodSync(openDir, 0o777);
    const inOpen = join(openDir, 'feed.txt');
    writeFileSync(inOpen, '198.18.0.1\n', { mode: 0o644 });
    assert.match((readListFile(inOpen) as { reason: string }).reason ?? '', /its directory .*open-dir is writable by group or others/);
    const errs = errorsOf(() => load(`rules:\n  - name: r\n    to_file: ${open}\n`));
    assert.match(errs[0] ?? '', /cannot use list file .* \(rule "r"\): it is writable by group or others/);
  });

  it('a symlink is followed, and the file it points to is what is checked', () => {
    const target = listFile('198.18.0.5\n');
    const link = join(dir, `link-${n++}.txt`);
    symlinkSync(target, link);
    assert.deepEqual(readListFile(link), { ok: true, bytes: Buffer.from('198.18.0.5\n') });
    chmodSync(target, 0o646);
    assert.match((readListFile(link) as { reason: string }).reason ?? '', /writable by group or others/);
    const dangling = join(dir, `dangling-${n++}.txt`);
    symlinkSync(join(dir, 'nowhere'), dangling);
    assert.deepEqual(readListFile(dangling), { ok: false, reason: 'ENOENT' });
  });
});

describe('unit: list files, properties', () => {
  const entry = fc.oneof(
    fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.')),
    fc.tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 0, max: 32 })).map(([a, b, len]) => `${a}.${b}.0.0/${len}`),
    fc.constantFrom('2001:db8::1', '2001:db8::/32', 'example.com', '*.example.org', 'a-b.example', '198.18.0.0-198.18.0.9', '1.2.3', '01.2.3.4', 'bad!', 'x', ':::'),
    fc.string({ maxLength: 20 }),
  );
  const comment = fc.constantFrom('', ' # c', ' ; SBL1', '\t#', ';');
  const eol = fc.constantFrom('\n', '\r\n');

  it('an entry in a file means what it means in to:, and each bad one is reported at its line', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(entry, comment, eol), { maxLength: 40 }), (lines) => {
        const text = lines.map(([e, c, l]) => `${e}${c}${l}`).join('');
        const r = parseListBytes(Buffer.from(text));
        // The reference: each line on its own, through the to: parser.
        const want: string[] = [];
        const badLines: number[] = [];
        lines.forEach(([e, c], i) => {
          const raw = `${e}${c}`;
          const cut = raw.search(/[#;]/);
          const body = (cut >= 0 ? raw.slice(0, cut) : raw).trim();
          if (/[\x00-\x08\x0a-\x1f\x7f]/.test(raw)) return badLines.push(i + 1);
          if (body === '') return;
          if (/[ \t]/.test(body) || body === 'any') return badLines.push(i + 1);
          const d = parseDestination(body);
          if (!d.ok) return badLines.push(i + 1);
          want.push(JSON.stringify(d.value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
        });
        assert.deepEqual(r.destinations.map((d) => JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))), want);
        assert.deepEqual(r.issues.map((i) => i.line), badLines.slice(0, MAX_LIST_ERRORS));
      }),
      runs(300),
    );
  });

  it('random bytes never throw: entries or positioned issues, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const lines = Buffer.from(bytes).toString('latin1').split('\n').length;
        const r = parseListBytes(bytes);
        for (const i of r.issues) {
          assert.ok(i.line >= 1 && i.line <= lines, `line ${i.line} of ${lines}`);
          assert.ok(i.column >= 1);
          assert.ok(i.message.length > 0);
        }
      }),
      runs(500),
    );
  });
});

describe('unit: large destination lists', () => {
  it('the IPv6 scan of parseIPv6 agrees with the general parser, on addresses and on near-misses', () => {
    const word = fc.integer({ min: 0, max: 0xffff }).map((w) => w.toString(16));
    const addr = fc.oneof(
      fc.array(word, { minLength: 1, maxLength: 9 }).map((ws) => ws.join(':')),
      fc.tuple(fc.array(word, { maxLength: 7 }), fc.array(word, { maxLength: 7 })).map(([a, b]) => `${a.join(':')}::${b.join(':')}`),
      fc.stringMatching(/^[0-9a-fA-F:]{1,45}$/),
      fc.constantFrom('::', '::1', '1::', ':1', '1:', ':::', '1:::2', '1::2::3', '2001:db8::', '2001:DB8::ABCD', '00000::1', '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', 'g::1', '::ffff:1.2.3.4'),
    );
    fc.assert(
      fc.property(addr, (t) => {
        assert.equal(parseIPv6(t), parseIPv6General(t), t);
        const d = parseDestination(t);
        const p = parsePrefix(t);
        if (p.ok) assert.deepEqual(d, { ok: true, value: { kind: 'addr', range: p.range } }, t);
      }),
      runs(5000),
    );
  });

  it('the IPv4 fast path of parseDestination agrees with parsePrefix, value and reason', () => {
    const text = fc.oneof(
      fc.tuple(fc.nat(300), fc.nat(255), fc.nat(255), fc.nat(255), fc.option(fc.integer({ min: -1, max: 40 }))).map(([a, b, c, d, len]) => `${a}.${b}.${c}.${d}${len === null ? '' : `/${len}`}`),
      fc.tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 8, max: 32 })).map(([a, b, len]) => `${a}.${b}.0.0/${len}`),
      fc.constantFrom('0.0.0.0/0', '255.255.255.255/32', '1.2.3.4/032', '1.2.3.4/', '01.2.3.4', '1.2.3.4.5', '1..3.4', '198.18.0.0/15', '198.18.0.0/16x'),
    );
    fc.assert(
      fc.property(text, (t) => {
        const d = parseDestination(t);
        const p = parsePrefix(t);
        if (p.ok) assert.deepEqual(d, { ok: true, value: { kind: 'addr', range: p.range } }, t);
        else if (!d.ok) assert.equal(d.reason, p.reason, t);
        else assert.notEqual(d.value.kind, 'addr', t);
      }),
      runs(2000),
    );
  });

  it('IPv6 hosts normalize sorted and deduplicated, as a bigint sort would have them, beside the prefixes that cover some', () => {
    const big = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });
    const near = fc.tuple(fc.constantFrom(0x20010db8n << 96n, (1n << 128n) - (1n << 40n), 1n << 75n), fc.bigInt({ min: 0n, max: (1n << 23n) + 5n })).map(([b, o]) => b + o);
    fc.assert(
      fc.property(fc.array(fc.oneof(big, near), { maxLength: 60 }), (values) => {
        const hosts = values.map((v) => ({ family: 6 as const, start: v, end: v }));
        const net = { family: 6 as const, start: 0x20010db8n << 96n, end: (0x20010db8n << 96n) + 1000n };
        const got = normalizeAddrs([...hosts, ...hosts.slice(0, 3), net]).map((r) => `${r.start}-${r.end}`);
        const want = [...new Set(values)].filter((v) => v < net.start || v > net.end).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        assert.deepEqual(got, [`${net.start}-${net.end}`, ...want.map((v) => `${v}-${v}`)]);
      }),
      runs(500),
    );
  });

  it('hosts that come sorted (a sorted feed, no sort done), with duplicates and one out of place, normalize as a bigint sort would have them', () => {
    const v4 = fc.bigInt({ min: 0n, max: 0xffffffffn });
    const v6 = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.bigInt({ min: 0x20010db8n << 96n, max: (0x20010db8n << 96n) + 50n }));
    const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
    for (const [family, arb] of [[4, v4], [6, v6]] as const) {
      fc.assert(
        fc.property(fc.array(arb, { maxLength: 40 }), fc.nat(), fc.boolean(), (values, swapAt, swap) => {
          const ordered = [...values].sort(cmp);
          // With its duplicates next to each other, sometimes two neighbours swapped (not sorted after all).
          const input = ordered.flatMap((v, i) => (i % 3 === 0 ? [v, v] : [v]));
          if (swap && input.length > 1) {
            const i = swapAt % (input.length - 1);
            [input[i], input[i + 1]] = [input[i + 1] as bigint, input[i] as bigint];
          }
          const got = normalizeAddrs(input.map((v) => ({ family, start: v, end: v }))).map((r) => r.start);
          assert.deepEqual(got, [...new Set(values)].sort(cmp));
        }),
        runs(500),
      );
    }
  });

  it('a million hosts normalize without overflowing the stack (push(...list) did), sorted and deduplicated', () => {
    const addrs = [];
    for (let i = 0; i < 1_000_000; i++) addrs.push({ family: 4 as const, start: BigInt(0xc6120000 + ((i * 7919) % 1_000_000)), end: BigInt(0xc6120000 + ((i * 7919) % 1_000_000)) });
    addrs.push({ family: 4 as const, start: 0xc6120000n, end: 0xc6120000n });
    const out = normalizeAddrs(addrs);
    assert.equal(out.length, 1_000_000);
    assert.equal(out[0]?.start, 0xc6120000n);
    assert.equal(out[999_999]?.start, BigInt(0xc6120000 + 999_999));
  });
});

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
