/**
 * The fast path for long YAML lists (yaml-bulk.ts) never changes what a
 * policy means: with runs taken out and put back, the value is exactly what
 * the yaml package reads from the original text, or the fast path declines.
 * Errors in a large policy keep their FILE:LINE:COL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import YAML from 'yaml';
import { PolicyError, formatIssue } from '../../src/errors.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import { expandBulk, extractBulk } from '../../src/policy/yaml-bulk.js';
import { fakeHost, runs } from './support/arbitraries.js';

/** The value of `text` through the fast path (runs of 2 or more), or null when it declines. */
function fast(text: string): { value: unknown; taken: number } | null {
  const bulk = extractBulk(text, 2);
  if (!bulk) return null;
  const doc = YAML.parseDocument(bulk.text, { uniqueKeys: true, prettyErrors: false, strict: true });
  if (doc.errors.length > 0) return null;
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch {
    return null;
  }
  return expandBulk(value, bulk) === null ? null : { value, taken: bulk.runs.size };
}

const slow = (text: string): unknown => {
  const doc = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: false, strict: true });
  if (doc.errors.length > 0) return 'error';
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch {
    return 'error';
  }
};

describe('unit: long YAML lists, the fast path', () => {
  it('addresses, prefixes, names, quoted wildcards, comments and CRLF: the same value, taken out', () => {
    const text = 'rules:\n  - name: a\n    to:\n      - 198.18.0.1\n      - 198.18.0.0/15   # a comment\n\n      # between items\n      - "*.example.com"\n      - \'2001:db8::1\'\r\n      - api.example.com\n    ports: [443]\n';
    const got = fast(text);
    assert.ok(got, 'taken');
    assert.equal(got.taken, 1);
    assert.deepEqual(got.value, slow(text));
  });

  it('what YAML reads as something else than a string is never taken as a string', () => {
    for (const v of ['1.5', '443', 'true', 'null', '1e3', '2001:db8::', '~', 'x', '*alias', '-1.5', '.inf']) {
      const text = `a:\n  - 198.18.0.1\n  - ${v}\n  - 198.18.0.2\n`;
      assert.deepEqual(parseThrough(text), slow(text), v);
    }
  });

  it('lines that look like items inside a block scalar, or a multi-line plain scalar: declined or the same value', () => {
    const cases = [
      'comment: |\n  - 198.18.0.1\n  - 198.18.0.2\n  - 198.18.0.3\nx: 1\n',
      'a:\n  - 198.18.0.1\n  - 198.18.0.2\n    continued.here\n',
      'a:\n  - 198.18.0.1\n  - 198.18.0.2\n  -  198.18.0.3\n  - b: c\n',
      'a: [\n  - 198.18.0.1,\n  - 198.18.0.2 ]\n',
      '%YAML 1.2\n---\na:\n  - 198.18.0.1\n  - 198.18.0.2\n',
      'a:\n- 198.18.0.1\n- 198.18.0.2\nb:\n  - 198.18.0.3\n  - 198.18.0.4\n',
    ];
    for (const text of cases) {
      const got = fast(text);
      if (got) assert.deepEqual(got.value, slow(text), text);
      assert.deepEqual(parseThrough(text), slow(text), text);
    }
  });

  it('property: any document of list items and other lines reads the same through the fast path', () => {
    const scalar = fc.oneof(
      fc.constantFrom('198.18.0.1', '198.18.0.0/15', '2001:db8::1', '2001:db8::', 'a.example.com', '*.example.com', '1.5', '443', 'true', 'null', 'x:y', 'a:', '1.2.3.4:', '-', '- x', 'a #b', 'a# b', '"q"', "'q'", '"a.b"', "'a.b'", '"a\\"b"', '&a 1.2.3.4', '*a', '!!str 1.2', '[1.2.3.4]', '{a: b}', ''),
      fc.stringMatching(/^[a-z0-9.:/*_-]{1,12}$/),
    );
    const line = fc.oneof(
      { weight: 6, arbitrary: fc.tuple(fc.constantFrom('', '  ', '    '), scalar, fc.constantFrom('', ' # c', '  ', '\r')).map(([i, v, c]) => `${i}- ${v}${c}`) },
      { weight: 1, arbitrary: fc.constantFrom('', '# c', 'a:', '  b:', 'c: |', '  - 1.2.3.4', 'd: [1.2.3.4, x]', '    more.words', 'e: >-', '---', '...') },
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        const text = `${lines.join('\n')}\n`;
        const want = slow(text);
        const got = fast(text);
        if (got && want !== 'error') assert.deepEqual(got.value, want, text);
      }),
      runs(1500),
    );
  });
});

describe('unit: long YAML flow sequences, the fast path', () => {
  it('one line, several lines, CRLF, quoted items and a trailing comma: the same value, taken out, lines kept', () => {
    const cases = [
      'rules:\n  - name: a\n    to: [198.18.0.1, 198.18.0.0/15, "*.example.com", \'2001:db8::1\', api.example.com]\n    ports: [443]\n',
      'rules:\n  - name: a\n    to: [\n        198.18.0.1,   198.18.0.2,\r\n\n        2001:db8::1 ,198.18.0.3,\n      ]\n    ports: [443]\n',
      'a: [[198.18.0.1, 198.18.0.2], [2001:db8::1, 2001:db8::2]]\nb: x\n',
      'x:\n  - [198.18.0.1, 198.18.0.2]\n  - to: [\n      198.18.0.3, 198.18.0.4\n    ]\n',
      'y: [198.18.0.1, 198.18.0.2\n  ,198.18.0.3\n  ]\n',
    ];
    for (const text of cases) {
      const bulk = extractBulk(text, 2);
      assert.ok(bulk, text);
      assert.equal(bulk.text.split('\n').length, text.split('\n').length, 'every line kept');
      const got = fast(text);
      assert.ok(got, `taken: ${text}`);
      assert.deepEqual(got.value, slow(text), text);
    }
  });

  it('what is not a plain list of strings is declined or read the same; what YAML refuses is never accepted', () => {
    const cases = [
      'a: [198.18.0.1, 443, 198.18.0.2]\n',
      'a: [198.18.0.1, true, 198.18.0.2]\n',
      'a: [198.18.0.1, 198.18.0.2: x]\n',
      'a: [198.18.0.1, 2001:db8::, x.y]\n',
      'a: [198.18.0.1 # c\n  , 198.18.0.2]\n',
      'a: [198.18.0.1,\n198.18.0.2]\n',
      '- to: [198.18.0.1,\n  198.18.0.2]\n',
      'x:\n  to: [198.18.0.1,\n  198.18.0.2]\n',
      'a: [198.18.0.1\n  , 198.18.0.2]\n',
      'a: [198.18.0.1, , 198.18.0.2]\n',
      'a: [198.18.0.1,\t198.18.0.2]\n',
      'a: "[198.18.0.1, 198.18.0.2]"\n',
      'a: |\n  [198.18.0.1, 198.18.0.2]\n',
      '# [198.18.0.1, 198.18.0.2]\na: 1\n',
      'a: &x [198.18.0.1, 198.18.0.2]\nb: *x\n',
      '[198.18.0.1, 198.18.0.2]: x\n',
      'a: b [198.18.0.1, 198.18.0.2]\n',
      'a: [198.18.0.1, 198.18.0.2] x\n',
      'a: [198.18.0.1, 198.18.0.2]]\n',
      'a: [198.18.0.1, *x.y, 198.18.0.2]\n',
      'a: {b: [198.18.0.1, 198.18.0.2]}\n',
      'k0: [198.18.0.1, 198.18.0.1]\nk1: &a [*a,\n    198.18.0.1]\n',
    ];
    for (const text of cases) {
      const want = slow(text);
      const got = fast(text);
      if (got) assert.notEqual(want, 'error', `YAML refuses it, the fast path took it: ${JSON.stringify(text)}`);
      if (got) assert.deepEqual(got.value, want, text);
      assert.deepEqual(parseThrough(text), want, text);
    }
  });

  it('property: any document of flow sequences and other lines reads the same through the fast path, and is refused when YAML refuses it', () => {
    const scalar = fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom('198.18.0.1', '198.18.0.0/15', '2001:db8::1', 'a.example.com', '"*.example.com"', "'a.b'") },
      {
        weight: 1,
        arbitrary: fc.constantFrom('2001:db8::', '1.5', '443', 'true', 'null', 'x', 'a:', 'x:y', '-', '- x', '*a', '&a 1.2.3.4', '"q"', '"a\\"b"', '[1.2.3.4]', '{a: b}', '', 'a #b', 'a b', '#c', '?', '1.2.3.4:'),
      },
      fc.stringMatching(/^[a-z0-9.:/*_-]{1,10}$/),
    );
    const sep = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(', ', ',', ' ,', ',\n        ', '\n        , ', ',\r\n        ', ',\n\n          ') },
      { weight: 1, arbitrary: fc.constantFrom(',\n', ',\n  ', ',\n    ', '\n    , ', ', # c\n        ', ',\t', '\n') },
    );
    const flow = fc
      .tuple(fc.array(fc.tuple(scalar, sep), { minLength: 1, maxLength: 4 }), scalar, fc.constantFrom('', '', ',', ' ', '\n        ', '\n', '\n  ', '\n    '), fc.constantFrom('[', '[', '[\n        ', '[ '))
      .map(([items, last, tail, open]) => `${open}${items.map(([v, s]) => `${v}${s}`).join('')}${last}${tail}]`);
    // Mostly well-formed documents (keys with flow values, in maps and lists), with odd lines among them.
    const tail = fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(' # c', ' x', ': y', ']', '"', '\r', ' ') });
    const entry = fc.oneof(
      { weight: 8, arbitrary: fc.tuple(flow, tail).map(([f, t]) => (k: number) => `k${k}: ${f}${t}`) },
      {
        weight: 6,
        arbitrary: fc
          .tuple(fc.constantFrom('  ', '', '    '), fc.array(fc.tuple(fc.constantFrom('- ', '- to: ', '- a: b\n  to: '), flow, tail), { minLength: 1, maxLength: 3 }))
          .map(([ind, items]) => (k: number) => `k${k}:\n${items.map(([p, f, t]) => `${ind}${p.replace('\n', `\n${ind}`)}${f}${t}`).join('\n')}`),
      },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('? ', '"', '|\n  ', 'x ', '&a ', '# '), flow).map(([p, f]) => (k: number) => `k${k}: ${p}${f}`) },
      { weight: 1, arbitrary: fc.constantFrom('', '# c', '  more.words', '---', 'h: [', '  ]', '- *a', 'z: *a').map((l) => () => l) },
    );
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 4 }), (entries) => {
        const text = `${entries.map((e, k) => e(k)).join('\n')}\n`;
        const want = slow(text);
        const got = fast(text);
        if (got) {
          assert.notEqual(want, 'error', `YAML refuses it, the fast path took it: ${JSON.stringify(text)}`);
          assert.deepEqual(got.value, want, text);
        }
      }),
      runs(3000),
    );
  });
});

describe('unit: long YAML lists, errors keep their place', () => {
  it('a bad entry in a run of a large policy, and a bad key after the run, at their own line and column', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `      - 198.18.${i >> 8}.${i & 255}`);
    items[1234] = '      - 198.18.4.300';
    items[4321] = "      - '*bad.example.com'";
    const text = `mode: enforce\nrules:\n  - name: big\n    action: deny\n    to:\n${items.join('\n')}\n    ports: [99999]\n  - name: next\n    to: [198.18.0.0/33]\n`;
    let errors: string[] = [];
    try {
      parsePolicy(Buffer.from(text), 'big.yaml', fakeHost());
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof PolicyError);
      errors = err.issues.filter((i) => i.severity === 'error').map(formatIssue);
    }
    assert.deepEqual(errors, [
      `big.yaml:${6 + 1234}:9: not an IP address: "198.18.4.300"`,
      `big.yaml:${6 + 4321}:9: a wildcard must be the whole first label, as in *.example.com: "*bad.example.com"`,
      `big.yaml:${6 + 5000}:13: a port is a number from 1 to 65535: 99999`,
      `big.yaml:${6 + 5002}:10: prefix length must be 0 to 32: "198.18.0.0/33"`,
    ]);
  });

  it('an alias of itself beside a long list: an error of the policy, not a crash of the fast path', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `      - 198.18.${i >> 8}.${i & 255}`);
    const text = `mode: enforce\nx: &a [*a, 1]\nrules:\n  - name: big\n    to:\n${items.join('\n')}\n`;
    assert.throws(() => parsePolicy(Buffer.from(text), 'big.yaml', fakeHost()), (err: unknown) => err instanceof PolicyError && formatIssue(err.issues[0] as PolicyError['issues'][number]) === 'big.yaml:2:1: unknown key "x"');
  });

  it('a bad entry in a long flow sequence, on one line or wrapped, and what follows its ], at their own line and column', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    items[1234] = '198.18.4.300';
    const oneLine = `mode: enforce\nrules:\n  - name: big\n    action: deny\n    to: [${items.join(', ')}]\n    ports: [99999]\n`;
    const col = 10 + items.slice(0, 1234).reduce((n, x) => n + x.length + 2, 0);
    assert.deepEqual(errorsOf(oneLine), [`big.yaml:5:${col}: not an IP address: "198.18.4.300"`, 'big.yaml:6:13: a port is a number from 1 to 65535: 99999']);
    // Wrapped, 8 a line: item 1234 is the third on line 6 + 154; the rule's ports on the ] line.
    const rows: string[] = [];
    for (let i = 0; i < items.length; i += 8) rows.push(`        ${items.slice(i, i + 8).join(', ')}`);
    const wrapped = `mode: enforce\nrules:\n  - name: big\n    action: deny\n    to: [\n${rows.join(',\n')}\n    ]\n    ports: [99999]\n`;
    const col2 = 9 + items.slice(1232, 1234).reduce((n, x) => n + x.length + 2, 0);
    assert.ok(extractBulk(wrapped)?.runs.size === 1, 'taken by the fast path');
    assert.deepEqual(errorsOf(wrapped), [`big.yaml:${6 + 154}:${col2}: not an IP address: "198.18.4.300"`, `big.yaml:${6 + rows.length + 1}:13: a port is a number from 1 to 65535: 99999`]);
  });

  it('two long flow sequences on one line: what follows each ] keeps its column', () => {
    const a = Array.from({ length: 3000 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    const b = Array.from({ length: 3000 }, (_, i) => `2001:db8::${i.toString(16)}`);
    b[2000] = '2001:db8::g';
    const text = `mode: enforce\nrules: [{name: one, to: [${a.join(', ')}], ports: [99999]}, {name: two, to: [${b.join(',')}], ports: [0/tcp]}]\n`;
    const col = (s: string) => text.indexOf(s) - text.indexOf('\n');
    assert.equal(extractBulk(text)?.runs.size, 2, 'both taken by the fast path');
    assert.deepEqual(errorsOf(text), [
      `big.yaml:2:${col('99999')}: a port is a number from 1 to 65535: 99999`,
      `big.yaml:2:${col('2001:db8::g')}: character ":" is not allowed in a domain name: "2001:db8::g"`,
      `big.yaml:2:${col('0/tcp')}: a port is a number from 1 to 65535: "0/tcp"`,
    ]);
  });

  it('a large policy through the fast path is the same policy as through YAML alone', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `      - ${i % 3 === 0 ? `198.18.${i >> 8}.${i & 255}` : i % 3 === 1 ? `2001:db8::${i.toString(16)}` : `h${i}.example.com`}`);
    const text = `mode: enforce\nrules:\n  - name: big\n    to:\n${items.join('\n')}\n    ports: [443]\n`;
    const p = parsePolicy(Buffer.from(text), 'big.yaml', fakeHost());
    // The same list as a flow sequence, taken out too.
    const flow = `mode: enforce\nrules:\n  - name: big\n    to: [${items.map((l) => l.replace(/^ *- /, '')).join(', ')}]\n    ports: [443]\n`;
    const q = parsePolicy(Buffer.from(flow), 'big.yaml', fakeHost());
    const strip = (x: typeof p) => JSON.stringify({ ...x, sha256: '', file: '', rules: x.rules.map((r) => ({ ...r, line: 0 })) }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    assert.equal(strip(p), strip(q));
    assert.equal(p.rules[0]?.addrs.length, 5000 - Math.floor(5000 / 3));
    assert.ok(text.length >= 64 * 1024 && extractBulk(text) !== null, 'the block list was taken by the fast path');
    assert.equal(extractBulk(flow)?.runs.size, 1, 'the flow list was taken by the fast path');
  });
});

/** The errors of a policy, as FILE:LINE:COL: message. */
function errorsOf(text: string): string[] {
  try {
    parsePolicy(Buffer.from(text), 'big.yaml', fakeHost());
  } catch (err) {
    assert.ok(err instanceof PolicyError, String(err));
    return err.issues.filter((i) => i.severity === 'error').map(formatIssue);
  }
  return assert.fail('accepted');
}

/** What parsePolicy reads for `text` when the fast path is tried: its value when it does not decline, else YAML's. */
function parseThrough(text: string): unknown {
  const bulk = extractBulk(text, 2);
  if (!bulk) return slow(text);
  const got = fast(text);
  return got ? got.value : slow(text);
}
