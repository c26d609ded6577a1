/**
 * Written from the survivors of the first Stryker run of
 * src/policy/load-policy.ts (`node scripts/mutate.mjs --chunk-lines 260
 * src/policy/load-policy.ts`, 2026-12-07; mutation/README.md lists each
 * survivor and what became of it). Each test here fails against at least one
 * of those mutants (re-applied by hand to dist/) and passes on the loader.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PolicyError, SluiceError, formatIssue, type PolicyIssue } from '../../src/errors.js';
import { MAX_POLICY_BYTES, currentPolicyDigest, loadPolicyFile, loadPolicyWithBytes, parsePolicy, policyDigest } from '../../src/policy/load-policy.js';
import { fakeHost, policyFrom, refusalErrors } from '../support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-load-survivors-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const errorsOf = refusalErrors;

const RULE = 'rules:\n  - name: a\n    to: [any]\n';

describe('unit: load-policy, the file, its identity and its YAML (Stryker survivors, lines 1-171)', () => {
  it('loadPolicyFile gives the policy loadPolicyWithBytes does', () => {
    const f = join(dir, 'plain.yaml');
    writeFileSync(f, `mode: enforce\n${RULE}`);
    const p = loadPolicyFile(f, fakeHost);
    assert.equal(p.mode, 'enforce');
    assert.deepEqual(p.rules.map((r) => r.name), ['a']);
    assert.equal(p.sha256, loadPolicyWithBytes(f, fakeHost).policy.sha256);
  });

  it('a policy file that is not there: EPOLICYREAD with the errno code and the path, the cause kept', () => {
    const f = join(dir, 'missing.yaml');
    assert.throws(
      () => loadPolicyWithBytes(f, fakeHost),
      (err: unknown) => {
        assert.ok(err instanceof SluiceError, String(err));
        assert.equal(err.code, 'EPOLICYREAD');
        assert.equal(err.message, `Cannot read policy: ENOENT: ${f}`);
        assert.equal((err.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOENT');
        return true;
      },
    );
  });

  it("the identity of a policy with lists is a stored format: sha256 over a fixed preamble, the file's hash and each list's path and hash", () => {
    const lists = [
      { path: '/etc/sluice/a b.txt', sha256: 'aa' },
      { path: '/x', sha256: 'bb' },
    ];
    const want = createHash('sha256').update('sluice policy with lists\nf00d\n"/etc/sluice/a b.txt" aa\n"/x" bb\n').digest('hex');
    assert.equal(policyDigest('f00d', lists), want);
    assert.equal(policyDigest('f00d', []), 'f00d');
  });

  it("currentPolicyDigest: what is on disk, as the loader computed it; a changed or unreadable list changes it; no policy file, null", () => {
    const feed = join(dir, 'feed.txt');
    writeFileSync(feed, '198.18.0.1\n');
    const f = join(dir, 'with-list.yaml');
    writeFileSync(f, `mode: enforce\nrules:\n  - name: r\n    to_file: ${feed}\n`);
    const loaded = loadPolicyWithBytes(f, fakeHost).policy;
    const paths = (loaded.lists ?? []).map((l) => l.path);
    assert.deepEqual(paths, [feed]);
    assert.equal(currentPolicyDigest(f, paths), loaded.sha256);
    writeFileSync(feed, '198.18.0.2\n');
    const changed = currentPolicyDigest(f, paths);
    assert.equal(changed, loadPolicyWithBytes(f, fakeHost).policy.sha256);
    assert.notEqual(changed, loaded.sha256);
    rmSync(feed);
    const gone = currentPolicyDigest(f, paths);
    const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
    assert.equal(typeof gone, 'string');
    assert.notEqual(gone, loaded.sha256);
    assert.notEqual(gone, changed);
    assert.notEqual(gone, policyDigest(sha(readFileSync(f)), [{ path: feed, sha256: sha('') }]), 'unreadable is not the same as empty');
    assert.equal(currentPolicyDigest(join(dir, 'no-such.yaml'), paths), null);
    assert.equal(currentPolicyDigest(join(dir, 'no-such.yaml'), []), null);
  });

  it('the refusals before any rule is read are about the whole file: their path is empty', () => {
    const over = join(dir, 'over-path.yaml');
    const fd = openSync(over, 'w');
    ftruncateSync(fd, MAX_POLICY_BYTES + 1);
    closeSync(fd);
    const issue = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        assert.ok(err instanceof PolicyError, String(err));
        return err.issues[0];
      }
      return assert.fail('accepted');
    };
    assert.deepEqual(issue(() => loadPolicyWithBytes(over, fakeHost))?.path, []);
    rmSync(over);
    const deep = issue(() => policyFrom(`${'['.repeat(100)}${']'.repeat(100)}\n`));
    assert.match(deep?.message ?? '', /nests too deeply/);
    assert.deepEqual(deep?.path, []);
    const alias = issue(() => policyFrom('a: &a [x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n'));
    assert.match(alias?.message ?? '', /^YAML: /);
    assert.deepEqual(alias?.path, []);
  });

  it('a text with YAML errors is refused for those errors, at their places, even where composing it would fail too', () => {
    // The duplicate key is an error of the document; the alias to no anchor fails only when the value is built.
    assert.deepEqual(errorsOf('mode: enforce\nmode: audit\nx: *nope\n'), ['p.yaml:2:1: YAML: Map keys must be unique']);
  });

  it('strict YAML 1.2: a comment glued to a value is an error at its place, not a comment', () => {
    assert.deepEqual(errorsOf('mode: "enforce"#note\nrules:\n  - name: a\n    to: [any]\n'), ['p.yaml:1:16: YAML: Comments must be separated from other tokens by white space characters']);
  });
});

/** Every issue of a policy (errors and warnings) as FILE:LINE:COL: message, whether or not it was refused. */
function allIssues(yaml: string, file = 'p.yaml'): string[] {
  try {
    return policyFrom(yaml, file).warnings.map(formatIssue);
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected PolicyError, got ${String(err)}`);
    return err.issues.map(formatIssue);
  }
}

/** The first issue of a refused policy, whole (path included). */
function firstIssue(f: () => unknown): PolicyIssue {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof PolicyError, String(err));
    return err.issues[0] as PolicyIssue;
  }
  return assert.fail('accepted');
}

const addr = (i: number) => `198.18.${(i >> 8) & 255}.${i & 255}`;

describe('unit: load-policy, the text and its structure (Stryker survivors, lines 177-435)', () => {
  it('refusals of the whole text are about no key: path [] (size, UTF-8, control characters, YAML, not a map, no mode)', () => {
    assert.deepEqual(firstIssue(() => parsePolicy(Buffer.alloc(MAX_POLICY_BYTES + 1, 0x20), 'p.yaml', fakeHost)).path, []);
    assert.deepEqual(firstIssue(() => parsePolicy(Buffer.from([0x6d, 0x3a, 0x20, 0xff, 0x0a]), 'p.yaml', fakeHost)).path, []);
    assert.deepEqual(firstIssue(() => policyFrom('mode: enforce\u0007\n')).path, []);
    assert.deepEqual(firstIssue(() => policyFrom('mode: [\n')).path, []);
    assert.deepEqual(firstIssue(() => policyFrom('- a\n')).path, []);
    const noMode = policyFrom(RULE).warnings.find((w) => w.message.startsWith('no mode given'));
    assert.deepEqual(noMode?.path, []);
  });

  it('a policy that is a single scalar is refused as not a map, once', () => {
    assert.deepEqual(allIssues('just some text\n'), ['p.yaml:1:1: a policy is a map of settings (mode, rules, ...), not a string']);
    assert.deepEqual(allIssues('42\n'), ['p.yaml:1:1: a policy is a map of settings (mode, rules, ...), not a number']);
  });

  it('a scope or rule that is not a map is an error, not a crash', () => {
    assert.deepEqual(errorsOf(`mode: enforce\n${RULE}scopes: [5]\n`), ['p.yaml:5:10: scopes[0] must be a map, not a number: 5']);
  });

  it('the duplicate rule name says which rule used it first', () => {
    assert.deepEqual(errorsOf('mode: enforce\nrules:\n  - {name: x, to: [any]}\n  - {name: y, to: [any]}\n  - {name: y, to: [any]}\n'), ['p.yaml:5:12: duplicate rule name "y" (first used by rule 2)']);
  });

  it('the host is asked only for user names, and not at all when the policy names none', () => {
    const asked: string[][] = [];
    const host = { lookupUsers: (names: string[]) => (asked.push(names), fakeHost.lookupUsers(names)) };
    parsePolicy(Buffer.from('mode: enforce\nrules:\n  - {name: a, to: [any], users: [1000]}\nscopes:\n  - {name: s, mode: audit, users: [1001]}\n'), 'p.yaml', host);
    parsePolicy(Buffer.from(`mode: enforce\n${RULE}`), 'p.yaml', host);
    assert.deepEqual(asked, []);
    parsePolicy(Buffer.from('mode: enforce\nrules:\n  - {name: a, to: [any], users: [1000, root]}\nscopes:\n  - {name: s, mode: audit, users: [1001, nobody]}\n'), 'p.yaml', host);
    assert.deepEqual(asked, [['root', 'nobody']]);
  });

  it("a deny rule's mode: the warning only when it has the policy's own mode and no scope has the other", () => {
    const deny = (mode: string) => `  - {name: d, action: deny, to: [198.18.0.1], mode: ${mode}}\n`;
    const warned = (yaml: string) => allIssues(yaml).filter((l) => l.includes("has the policy's own mode (enforce) and no scope"));
    assert.equal(warned(`mode: enforce\nrules:\n${deny('enforce')}`).length, 1);
    assert.deepEqual(warned(`mode: enforce\nrules:\n${deny('audit')}`), [], 'another mode than the policy\'s');
    assert.deepEqual(warned(`mode: enforce\nrules:\n${deny('enforce')}scopes:\n  - {name: s, mode: audit, users: [1001]}\n`), [], 'a scope has the other mode');
    // A scope with the policy's own mode is an error, and does not count as the other mode.
    const both = allIssues(`mode: enforce\nrules:\n${deny('enforce')}scopes:\n  - {name: s, mode: enforce, users: [1001]}\n`);
    assert.ok(both.some((l) => l.includes("scope \"s\" has the policy's own mode")), both.join('\n'));
    assert.equal(both.filter((l) => l.includes("has the policy's own mode (enforce) and no scope")).length, 1, both.join('\n'));
  });
});

describe('unit: load-policy, places in a large policy read through the fast path (Stryker survivors)', () => {
  it('an error inside a long run that does not start the list is at its own line and column', () => {
    const items = Array.from({ length: 6000 }, (_, i) => `      - ${i === 1500 ? '198.18.300.1' : addr(i)}`);
    const text = `mode: enforce\nrules:\n  - name: big\n    to:\n      - any\n${items.join('\n')}\n`;
    assert.ok(text.length >= 64 * 1024);
    // Line 6 is the run's first item (list index 1); 198.18.300.1 is 1,500 items further.
    assert.deepEqual(errorsOf(text, 'big.yaml'), [`big.yaml:${6 + 1500}:9: not an IP address: "198.18.300.1"`]);
  });

  it("an unknown key after a long run is pointed at by its key's column", () => {
    const items = Array.from({ length: 6000 }, (_, i) => `      - ${addr(i)}`);
    const text = `mode: enforce\nrules:\n  - name: big\n    to:\n${items.join('\n')}\n    colour:   red\n`;
    assert.ok(text.length >= 64 * 1024);
    assert.deepEqual(errorsOf(text, 'big.yaml'), [`big.yaml:${5 + 6000}:5: unknown key "colour"`]);
  });

  it('a large policy the fast path declines (a list shared through an alias) keeps the columns of the original text', () => {
    const list = Array.from({ length: 6000 }, (_, i) => addr(i)).join(', ');
    const text = `mode: enforce\nrules:\n  - {name: a, to: &all [${list}], ports: [99999]}\n  - {name: b, to: *all}\n`;
    assert.ok(text.length >= 64 * 1024);
    const col = text.split('\n')[2]?.indexOf('99999');
    assert.deepEqual(errorsOf(text, 'big.yaml'), [`big.yaml:3:${(col ?? 0) + 1}: a port is a number from 1 to 65535: 99999`]);
  });
});

describe('unit: load-policy, alerts, suppressions, dns and flows (Stryker survivors, lines 437-682)', () => {
  const ALERTS = (body: string) => `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n${body}`;
  const SUPPRESS = (body: string) => `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nsuppress:\n${body}`;

  it('webhooks: http:// is accepted as https:// is; a template keeps the kind and the secret file', () => {
    const p = policyFrom(ALERTS('  - {name: a, sink: {webhook: "http://198.18.0.1/hook"}, on: [blocked]}\n  - {name: b, sink: {webhook: "https://198.18.0.1/hook", secret_file: /etc/sluice/s, template: \'{"t": {{text}}}\'}, on: [blocked]}\n'));
    assert.deepEqual(p.alerts.map((a) => a.sink), [
      { kind: 'webhook', url: 'http://198.18.0.1/hook', secretFile: null },
      { kind: 'webhook', url: 'https://198.18.0.1/hook', secretFile: '/etc/sluice/s', template: '{"t": {{text}}}' },
    ]);
  });

  it("a webhook's refusals are at the value they are about", () => {
    const lines = ALERTS('  - name: a\n    on: [blocked]\n    sink:\n      webhook: "ftp://198.18.0.1/x"\n  - name: b\n    on: [blocked]\n    sink:\n      webhook: "https://198.18.0.1/x"\n      secret_file: relative/s\n  - name: c\n    on: [blocked]\n    sink:\n      webhook: "https://198.18.0.1/x"\n      template: "{{nope}}"\n');
    const got = errorsOf(lines);
    assert.equal(got.length, 3, got.join('\n'));
    assert.match(got[0] ?? '', /^p\.yaml:9:16: a webhook is an http:\/\/ or https:\/\/ URL: "ftp:\/\/198\.18\.0\.1\/x"$/);
    assert.match(got[1] ?? '', /^p\.yaml:14:20: secret_file is an absolute path: "relative\/s"$/);
    assert.match(got[2] ?? '', /^p\.yaml:19:17: /);
  });

  it('syslog targets are whole strings: a scheme inside a longer word, text after the port, a NUL in a socket path, a path ending in .. or . are refused', () => {
    const got = errorsOf(ALERTS('  - {name: a, sink: {syslog: "xudp://198.18.0.1"}, on: [blocked]}\n  - {name: b, sink: {syslog: "udp://198.18.0.1:514x"}, on: [blocked]}\n  - {name: c, sink: {syslog: "xunix:///dev/log"}, on: [blocked]}\n  - {name: d, sink: {syslog: "unix:///dev/lo\\0g"}, on: [blocked]}\n  - {name: e, sink: {syslog: "unix:///run/.."}, on: [blocked]}\n  - {name: f, sink: {syslog: "unix:///run/."}, on: [blocked]}\n'));
    assert.equal(got.length, 6, got.join('\n'));
    for (const [i, line] of got.entries()) assert.match(line, new RegExp(`^p\\.yaml:${6 + i}:30: `), line);
  });

  it('a suppression until a date that does not exist is refused, not a crash; a name pattern is a name', () => {
    assert.deepEqual(errorsOf(SUPPRESS('  - {rule: api, until: 2026-13-01, reason: r}\n')), ['p.yaml:6:24: until is a date, YYYY-MM-DD: "2026-13-01"']);
    const p = policyFrom(SUPPRESS('  - {destination: "*.example.com", until: 2999-01-01, reason: r}\n'));
    assert.equal(p.suppress[0]?.destination?.kind, 'name');
  });

  it('dns.guard: false beside exactly three domain rules names all three, with no "and 0 more"', () => {
    const rules = ['a', 'b', 'c'].map((n) => `  - {name: ${n}, to: [${n}.example.com]}\n`).join('');
    const got = errorsOf(`mode: enforce\ndns:\n  guard: false\nrules:\n${rules}`);
    assert.equal(got.length, 1, got.join('\n'));
    assert.ok(got[0]?.includes('rules "a" (a.example.com), "b" (b.example.com), "c" (c.example.com) name domains'), got[0]);
    assert.ok(!got[0]?.includes('more'), got[0]);
  });
});
