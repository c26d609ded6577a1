/**
 * Written from hand-made mutants of src/policy/load-policy.ts that lived
 * through the existing tests (mutation/README.md, "load-policy.ts (by
 * hand)"): each test here fails against at least one of them and passes on
 * the real loader. They assert what a policy file's author sees: the Policy
 * produced, or each error's FILE:LINE:COL and words.
 */
import assert from 'node:assert/strict';
import { chmodSync, closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PolicyError, SluiceError, formatIssue } from '../../src/errors.js';
import { MAX_LIST_ENTRIES, MAX_POLICY_BYTES, loadPolicyWithBytes, parsePolicy } from '../../src/policy/load-policy.js';
import { fakeHost, policyFrom, refusalErrors, refusalIssues } from '../support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-load-edges-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const issuesOf = refusalIssues;
const errorsOf = refusalErrors;

const RULE = 'rules:\n  - name: a\n    to: [any]\n';

describe('unit: load-policy edges, the file and its text', () => {
  it('a policy file of exactly MAX_POLICY_BYTES passes the file size check; one byte more is refused for its size; a directory is not a regular file', () => {
    const exact = join(dir, 'exact.yaml');
    const fd = openSync(exact, 'w');
    ftruncateSync(fd, MAX_POLICY_BYTES); // sparse: NUL bytes, refused further on as a control character
    closeSync(fd);
    assert.throws(() => loadPolicyWithBytes(exact, fakeHost), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.deepEqual(err.issues.map(formatIssue), [`${exact}:1:1: control character 0x00 in policy text; is this a binary file?`]);
      return true;
    });
    const over = join(dir, 'over.yaml');
    const fd2 = openSync(over, 'w');
    ftruncateSync(fd2, MAX_POLICY_BYTES + 1);
    closeSync(fd2);
    assert.throws(() => loadPolicyWithBytes(over, fakeHost), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.deepEqual(err.issues.map(formatIssue), [`${over}:1:1: policy file is ${MAX_POLICY_BYTES + 1} bytes; the limit is ${MAX_POLICY_BYTES}`]);
      return true;
    });
    rmSync(exact);
    rmSync(over);
    assert.throws(
      () => loadPolicyWithBytes(dir, fakeHost),
      (err: unknown) => err instanceof SluiceError && err.code === 'EPOLICYREAD' && err.message === `Cannot read policy: not a regular file: ${dir}`,
    );
  });

  it('a YAML syntax error is the only issue (no warning about what the broken file does not say)', () => {
    assert.deepEqual(issuesOf('mode: [\n'), ['p.yaml:2:1: YAML: Flow sequence in block collection must be sufficiently indented and end with a ]']);
  });

  it('a top-level list is refused as not a map, once, at 1:1', () => {
    assert.deepEqual(issuesOf('- a\n- b\n'), ['p.yaml:1:1: a policy is a map of settings (mode, rules, ...), not a list']);
  });

  it('nesting too deep for the YAML parser is said as such, not as a stack overflow', () => {
    const got = errorsOf(`${'['.repeat(10_000)}${']'.repeat(10_000)}\n`);
    assert.ok(got.length > 0);
    for (const line of got) assert.match(line, /^p\.yaml:1:\d+: policy nests too deeply to parse \(more than 64 lists or maps inside each other\)$/);
  });

  it('in a large policy, an entry just after a long list taken out of the text keeps its own line', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `      - 198.18.${i >> 8}.${i & 255}`);
    const text = `mode: enforce\nrules:\n  - name: big\n    to:\n${items.join('\n')}\n      - 443\n      - 198.18.255.1\n`;
    assert.ok(text.length >= 64 * 1024, 'large enough for the fast path');
    assert.deepEqual(errorsOf(text, 'big.yaml'), ['big.yaml:5005:9: expected an address, a prefix or a domain name as a string: 443']);
  });

  it('two problems on one line are reported in column order, whatever order they are checked in', () => {
    // The ports are checked before the name; the name comes first on the line.
    assert.deepEqual(errorsOf('mode: enforce\nrules:\n  - {name: "Bad Name", ports: [99999], to: [any]}\n'), [
      'p.yaml:3:12: a rule name is 1 to 48 lower-case letters, digits, and . _ - (starting with a letter or digit): "Bad Name"',
      'p.yaml:3:32: a port is a number from 1 to 65535: 99999',
    ]);
  });
});

describe('unit: load-policy edges, defaults', () => {
  it('a policy that says only its mode and one rule gets every documented default', () => {
    const p = policyFrom(`mode: enforce\n${RULE}`);
    assert.deepEqual(
      { mode: p.mode, defaultAction: p.defaultAction, blockWith: p.blockWith, essentials: p.essentials, tamper: p.tamper, ownedTable: p.ownedTable, scopes: p.scopes, alerts: p.alerts, suppress: p.suppress, lists: p.lists, dashboard: p.dashboard },
      { mode: 'enforce', defaultAction: 'deny', blockWith: 'reject', essentials: true, tamper: 'restore', ownedTable: false, scopes: [], alerts: [], suppress: [], lists: undefined, dashboard: undefined },
    );
    const r = p.rules[0];
    assert.deepEqual([r?.action, r?.log, r?.icmp, r?.icmpv6, r?.line, 'mode' in (r ?? {}), 'comment' in (r ?? {})], ['allow', false, false, false, 3, false, false]);
    assert.deepEqual(p.warnings, []);
  });
});

describe('unit: load-policy edges, scopes', () => {
  const SCOPED = (mode: string, scopes: string) => `mode: ${mode}\n${RULE}scopes:\n${scopes}`;

  it('a scope name is checked, a duplicate scope name is refused naming the first, an empty list is refused', () => {
    assert.deepEqual(errorsOf(SCOPED('enforce', '  - name: Bad Name\n    mode: audit\n    users: [0]\n  - name: t\n    mode: audit\n    users: [33]\n  - name: t\n    mode: audit\n    services: []\n')), [
      'p.yaml:6:11: a scope name is 1 to 48 lower-case letters, digits, and . _ - (starting with a letter or digit): "Bad Name"',
      'p.yaml:12:11: duplicate scope name "t" (first used by scope 2)',
      'p.yaml:14:15: empty services list: list at least one entry',
    ]);
  });

  it("a scope with the policy's own mode names the other mode to use", () => {
    assert.deepEqual(errorsOf(SCOPED('enforce', '  - name: t\n    mode: enforce\n    users: [0]\n')), [
      `p.yaml:7:11: scope "t" has the policy's own mode (enforce): it would change nothing; remove it, or give it mode: audit`,
    ]);
    assert.deepEqual(errorsOf(SCOPED('audit', '  - name: t\n    mode: audit\n    users: [0]\n')), [
      `p.yaml:7:11: scope "t" has the policy's own mode (audit): it would change nothing; remove it, or give it mode: enforce`,
    ]);
  });

  it("a scope's users: a name only a scope uses is looked up; bad names, unknown users and bad uids are refused at their own column", () => {
    const p = policyFrom(SCOPED('enforce', '  - name: trial\n    mode: audit\n    users: [nobody, 0]\n'));
    assert.deepEqual(p.scopes, [{ name: 'trial', mode: 'audit', users: [{ uid: 65534, name: 'nobody' }, { uid: 0 }], services: [], line: 6 }]);
    assert.deepEqual(errorsOf(SCOPED('enforce', '  - name: t\n    mode: audit\n    users: ["-1", ghost, 4294967295]\n')), [
      'p.yaml:8:13: not a valid user name: "-1"',
      'p.yaml:8:19: no such user: "ghost"',
      'p.yaml:8:26: a uid is an integer from 0 to 4294967294: 4294967295',
    ]);
  });

  it("a scope's services: a bad one is refused; a unit or a cgroup path in two scopes is refused at the second", () => {
    assert.deepEqual(
      errorsOf(SCOPED('enforce', '  - name: t\n    mode: audit\n    services: ["bad unit", /system.slice/a.service, /system.slice/b.service]\n  - name: u\n    mode: audit\n    services: [/system.slice/b.service, x.service]\n  - name: v\n    mode: audit\n    services: [x.service]\n')),
      [
        'p.yaml:8:16: expected a unit name ending in .service, .scope or .slice (or a cgroup path starting with /): "bad unit"',
        'p.yaml:11:16: service "/system.slice/b.service" is already in scope "t": a service has one mode',
        'p.yaml:14:16: service "x.service" is already in scope "u": a service has one mode',
      ],
    );
  });
});

describe('unit: load-policy edges, alerts: and suppress:', () => {
  const ALERTS = (body: string) => `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nalerts:\n${body}`;
  const SUPPRESS = (body: string) => `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.10]\nsuppress:\n${body}`;
  const NAME48 = `a${'b'.repeat(47)}`;

  it('the limits of an alert accept their ends: a 48-character name, a window of 1s and of 1d, repeated triggers and rules once', () => {
    const p = policyFrom(ALERTS(`  - {name: ${NAME48}, sink: {journal: true}, on: [blocked, blocked, tamper], window: 1s}\n  - {name: b, sink: {journal: true}, on: [blocked], window: 1d, rules: [api, api]}\n`));
    assert.deepEqual(p.alerts, [
      { name: NAME48, sink: { kind: 'journal' }, on: ['blocked', 'tamper'], rules: null, windowMs: 1000 },
      { name: 'b', sink: { kind: 'journal' }, on: ['blocked'], rules: ['api'], windowMs: 86_400_000 },
    ]);
  });

  it('and refuse what is just beyond, each at its own position', () => {
    assert.deepEqual(errorsOf(ALERTS(`  - {name: ${NAME48}c, sink: {journal: true}, on: [blocked]}\n  - {name: "ab!", sink: {journal: true}, on: [blocked]}\n  - {name: c, sink: {journal: true}, on: [blocked], window: 999ms}\n  - {name: d, sink: {journal: true}, on: [blocked], window: 86401s}\n`)), [
      `p.yaml:6:12: an alert name is 1-48 of a-z 0-9 . _ - starting with a letter or digit: "${NAME48}c"`,
      'p.yaml:7:12: an alert name is 1-48 of a-z 0-9 . _ - starting with a letter or digit: "ab!"',
      'p.yaml:8:61: window is a duration from 1s to 1d (60s, 5m, 1h): "999ms"',
      'p.yaml:9:61: window is a duration from 1s to 1d (60s, 5m, 1h): "86401s"',
    ]);
    assert.deepEqual(errorsOf(ALERTS('  - {name: a, sink: {journal: true}, on: [blocked]}\n  - {name: a, sink: {journal: true}, on: [tamper]}\n  - {name: b, sink: {journal: true}, on: [blocked], rules: [nope]}\n')), [
      'p.yaml:7:12: duplicate alert name "a"',
      `p.yaml:8:61: no rule named "nope" (the policy's rules, or #default, #encrypted-dns, #dns-guard, #essentials, #loopback)`,
    ]);
  });

  it('syslog sinks: ports 1 and 65535, the default 514, an IPv6 host without brackets, a socket path of 107 bytes', () => {
    const p = policyFrom(ALERTS(`  - {name: a, sink: {syslog: "udp://x.example:1"}, on: [blocked]}\n  - {name: b, sink: {syslog: "tcp://x.example:65535"}, on: [blocked]}\n  - {name: c, sink: {syslog: "udp://[2001:db8::1]"}, on: [blocked]}\n  - {name: d, sink: {syslog: "unix:///${'a'.repeat(106)}"}, on: [blocked]}\n`));
    assert.deepEqual(p.alerts.map((a) => a.sink), [
      { kind: 'syslog', transport: 'udp', host: 'x.example', port: 1 },
      { kind: 'syslog', transport: 'tcp', host: 'x.example', port: 65535 },
      { kind: 'syslog', transport: 'udp', host: '2001:db8::1', port: 514 },
      { kind: 'syslog', transport: 'unix', path: `/${'a'.repeat(106)}` },
    ]);
    const USAGE = 'syslog is udp://HOST[:PORT] or tcp://HOST[:PORT] (default port 514), or unix:///dev/log (the local socket)';
    const SOCKET = 'a local syslog socket is an absolute path of at most 107 bytes, without . or .. parts';
    assert.deepEqual(errorsOf(ALERTS(`  - {name: a, sink: {syslog: "udp://x.example:0"}, on: [blocked]}\n  - {name: b, sink: {syslog: "udp://x.example:65536"}, on: [blocked]}\n  - {name: d, sink: {syslog: "unix:///${'a'.repeat(107)}"}, on: [blocked]}\n  - {name: e, sink: {syslog: "unix:///run/../log"}, on: [blocked]}\n  - {name: f, sink: {syslog: "unix:///run/./log"}, on: [blocked]}\n`)), [
      `p.yaml:6:30: ${USAGE}: "udp://x.example:0"`,
      `p.yaml:7:30: ${USAGE}: "udp://x.example:65536"`,
      `p.yaml:8:30: ${SOCKET}: "unix:///${'a'.repeat(49)}..."`,
      `p.yaml:9:30: ${SOCKET}: "unix:///run/../log"`,
      `p.yaml:10:30: ${SOCKET}: "unix:///run/./log"`,
    ]);
  });

  it('exec sinks: a timeout of 100ms and of 5m, 10s by default; 99ms, 301s, a NUL in an argument and a program found through PATH refused', () => {
    const p = policyFrom(ALERTS('  - {name: a, sink: {exec: [/bin/x], timeout: 100ms}, on: [blocked]}\n  - {name: b, sink: {exec: [/bin/x], timeout: 5m}, on: [blocked]}\n  - {name: c, sink: {exec: [/bin/x]}, on: [blocked]}\n'));
    assert.deepEqual(p.alerts.map((a) => a.sink), [
      { kind: 'exec', argv: ['/bin/x'], timeoutMs: 100 },
      { kind: 'exec', argv: ['/bin/x'], timeoutMs: 300_000 },
      { kind: 'exec', argv: ['/bin/x'], timeoutMs: 10_000 },
    ]);
    assert.deepEqual(errorsOf(ALERTS('  - {name: a, sink: {exec: [/bin/x], timeout: 99ms}, on: [blocked]}\n  - {name: b, sink: {exec: [/bin/x], timeout: 301s}, on: [blocked]}\n  - {name: c, sink: {exec: [/bin/x, "a\\0b"]}, on: [blocked]}\n  - {name: d, sink: {exec: [x]}, on: [blocked]}\n')), [
      'p.yaml:6:47: timeout is a duration from 100ms to 5m: "99ms"',
      'p.yaml:7:47: timeout is a duration from 100ms to 5m: "301s"',
      'p.yaml:8:28: an argument cannot hold a NUL byte',
      'p.yaml:9:29: the program is an absolute path (no search through PATH): "x"',
    ]);
  });

  it("webhook sinks: a password alone is a credential, not a URL is refused; each sink's foreign keys are refused at the key", () => {
    assert.deepEqual(errorsOf(ALERTS('  - {name: a, sink: {webhook: "https://:p@x.example/"}, on: [blocked]}\n  - {name: b, sink: {webhook: "not a url"}, on: [blocked]}\n  - {name: c, sink: {webhook: "https://x.example/", timeout: 1s}, on: [blocked]}\n  - {name: d, sink: {syslog: "udp://x.example", secret_file: /k}, on: [blocked]}\n  - {name: e, sink: {exec: [/bin/x], template: x}, on: [blocked]}\n')), [
      'p.yaml:6:31: put no credentials in the URL (they would show in logs); use secret_file to sign requests',
      'p.yaml:7:31: not a URL: "not a url"',
      'p.yaml:8:53: timeout belongs to an exec sink',
      'p.yaml:9:49: secret_file belongs to a webhook sink',
      'p.yaml:10:38: template belongs to a webhook sink',
    ]);
  });

  it('suppressions: one expiring today is not expired yet; an expired one is kept with a warning at its until; every refusal at its position', () => {
    const today = new Date().toISOString().slice(0, 10);
    const p = policyFrom(SUPPRESS(`  - {rule: api, until: ${today}, reason: x}\n  - {destination: 198.18.0.0/24, until: 2000-01-01, reason: y}\n`), 'p.yaml');
    assert.deepEqual(p.suppress.map((s) => [s.rule, s.until, s.line]), [['api', today, 6], [null, '2000-01-01', 7]]);
    assert.deepEqual(p.warnings.map(formatIssue), ['p.yaml:7:41: warning: this suppression expired on 2000-01-01: its alerts are sent again (remove it, or extend it)']);
    assert.deepEqual(errorsOf(SUPPRESS('  - {until: 2027-01-01, reason: x}\n  - {rule: nope, until: 2027-01-01, reason: x}\n  - {destination: "a*b.example", until: 2027-01-01, reason: x}\n  - {rule: api, destination: 198.18.0.0/24, until: 2027-02-30, reason: x}\n  - {rule: api, until: "2027-1-01", reason: x}\n')), [
      'p.yaml:6:5: a suppression names a rule, a destination, or both',
      'p.yaml:7:12: no rule named "nope"',
      'p.yaml:8:19: a destination is an address, a prefix or a name pattern (*.example.com): a wildcard must be the whole first label, as in *.example.com: "a*b.example"',
      'p.yaml:9:52: until is a date, YYYY-MM-DD: "2027-02-30"',
      'p.yaml:10:24: until is a date, YYYY-MM-DD: "2027-1-01"',
    ]);
  });
  it('an alert or a suppression that fails the schema leaves the others checked: every error in one run', () => {
    const errors = errorsOf(ALERTS('  - {name: a, sink: {journal: true}, on: [blocked], colour: red}\n  - {name: b, sink: {journal: true}, on: [blocked], rules: [nope]}\n  - {name: c, sink: {journal: true}, on: [sometimes]}\n'));
    assert.equal(errors.length, 3, errors.join('\n'));
    assert.match(errors[0] ?? '', /^p\.yaml:6:/);
    assert.match(errors[0] ?? '', /colour/);
    assert.deepEqual(errors.slice(1), [
      `p.yaml:7:61: no rule named "nope" (the policy's rules, or #default, #encrypted-dns, #dns-guard, #essentials, #loopback)`,
      'p.yaml:8:43: unknown trigger "sometimes"; one of blocked, new-destination, unlisted-name, encrypted-dns, tamper, reload-rejected, event-loss, attribution-low, daemon-failed',
    ]);
    const sup = errorsOf(SUPPRESS('  - {rule: api, until: 2027-01-01, reason: x, owner: me}\n  - {rule: nope, until: 2027-01-01, reason: x}\n'));
    assert.equal(sup.length, 2, sup.join('\n'));
    assert.match(sup[0] ?? '', /^p\.yaml:6:.*owner/);
    assert.equal(sup[1], 'p.yaml:7:12: no rule named "nope"');
  });
});

describe('unit: load-policy edges, dns:', () => {
  const domainRules = (n: number) => `rules:\n${Array.from({ length: n }, (_, i) => `  - name: r${i}\n    to: [a${i}.example.com, b${i}.example.com]\n`).join('')}`;
  const TAIL = 'only the guard fills domain rules, so they would never match (remove dns.guard: false, or the domains)';

  it("a dns: key that fails the schema leaves the section's other keys checked: every error in one run", () => {
    assert.deepEqual(errorsOf('mode: enforce\ndns:\n  guard: true\n  upstreams: [5]\n  ttl_floor: 100\n  ttl_max: 10\nrules:\n  - name: a\n    to: [198.18.0.1]\n'), [
      'p.yaml:4:15: upstreams[0] must be a string, not a number: 5',
      'p.yaml:5:14: ttl_floor (100) is above ttl_max (10)',
    ]);
  });

  it('dns.guard: false names at most three rules, says how many more, and marks a rule with several names', () => {
    assert.deepEqual(errorsOf(`mode: enforce\ndns:\n  guard: false\n${domainRules(5)}`), [
      `p.yaml:3:10: dns.guard is false, but rules "r0" (a0.example.com, ...), "r1" (a1.example.com, ...), "r2" (a2.example.com, ...) and 2 more name domains: ${TAIL}`,
    ]);
    assert.deepEqual(errorsOf(`mode: enforce\ndns:\n  guard: false\n${domainRules(1)}`), [`p.yaml:3:10: dns.guard is false, but rule "r0" (a0.example.com, ...) names domains: ${TAIL}`]);
  });

  it('the defaults of dns: with address rules only (no guard, no upstreams given), and what is given kept as given', () => {
    const d = policyFrom('mode: enforce\nrules:\n  - name: a\n    to: [198.18.0.1]\n').dns;
    assert.deepEqual(d, {
      guard: false,
      upstreams: null,
      port: 153,
      ttlFloor: 30,
      ttlGrace: 30,
      ttlMax: 86_400,
      blockedAnswer: 'nxdomain',
      encryptedDns: 'block',
      encryptedDnsList: null,
      mark: 0x5c1ce,
      maxAddressesPerAnswer: 32,
      maxAddressesPerName: 64,
      cacheSize: 10_000,
      cacheMaxNegativeTtl: 3600,
    });
    const g = policyFrom('mode: enforce\ndns:\n  upstreams: [198.18.0.53, "2001:db8::53"]\n  ttl_grace: 7\n  cache_size: 100\n  cache_max_negative_ttl: 9\n  blocked_answer: refused\n  encrypted_dns_list: /x\n  max_addresses_per_answer: 64\n  max_addresses_per_name: 64\nrules:\n  - name: a\n    to: [198.18.0.1]\n').dns;
    assert.deepEqual(g.upstreams, [
      { family: 4, start: 0xc6120035n, end: 0xc6120035n },
      { family: 6, start: 0x20010db8000000000000000000000053n, end: 0x20010db8000000000000000000000053n },
    ]);
    assert.deepEqual([g.ttlGrace, g.cacheSize, g.cacheMaxNegativeTtl, g.blockedAnswer, g.encryptedDnsList, g.maxAddressesPerAnswer, g.maxAddressesPerName], [7, 100, 9, 'refused', '/x', 64, 64]);
  });
});

describe('unit: load-policy edges, a rule', () => {
  it('an empty list of any kind is refused at that key', () => {
    const EMPTY = 'leave the key out to mean any, or list at least one entry';
    assert.deepEqual(errorsOf('mode: enforce\nrules:\n  - name: a\n    to: [any]\n    ports: []\n    users: []\n    services: []\n    interfaces: []\n'), [
      `p.yaml:5:12: empty ports list: ${EMPTY}`,
      `p.yaml:6:12: empty users list: ${EMPTY}`,
      `p.yaml:7:15: empty services list: ${EMPTY}`,
      `p.yaml:8:17: empty interfaces list: ${EMPTY}`,
    ]);
  });

  it('a rule constrained by interfaces, users, services or ports alone is not "all traffic"; a misspelt key is not reported as that too', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: a\n    interfaces: [eth0]\n  - name: b\n    users: [0]\n  - name: c\n    services: [x.service]\n  - name: d\n    ports: [443]\n');
    assert.deepEqual(p.rules.map((r) => [r.name, r.line, r.interfaces, r.users, r.services, r.ports.length]), [
      ['a', 3, [{ name: 'eth0', wildcard: false }], [], [], 0],
      ['b', 5, [], [{ uid: 0 }], [], 0],
      ['c', 7, [], [], [{ kind: 'unit', unit: 'x.service' }], 0],
      ['d', 9, [], [], [], 2],
    ]);
    assert.deepEqual(errorsOf('mode: enforce\nrules:\n  - name: a\n    prots: [443]\n'), ['p.yaml:4:5: unknown key "prots" (did you mean ports?)']);
  });

  it("a rule's parts in their normal form: names once (case, trailing dot), hosts inside a prefix dropped, adjacent prefixes and port ranges merged, users and services once, interfaces a wildcard covers dropped", () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: a\n    action: deny\n    to: [Api.Example.com, api.example.com., api.example.com, 198.18.0.2, 198.18.0.0/24, 198.18.1.0/24, 198.18.3.1, 198.18.3.1, "2001:db8::1", "2001:db8::/64"]\n    ports: [443, 80-443, 444/tcp, 53/udp, 1-52/udp]\n    users: [0, root, 33, www-data]\n    services: [x.service, x.service, /a/b, /a/b, /a/c]\n    interfaces: [eth0, "eth*", eth1, wg0]\n    log: true\n    mode: audit\n    comment: hi\n');
    assert.deepEqual(p.rules, [
      {
        name: 'a',
        action: 'deny',
        index: 0,
        addrs: [
          { family: 4, start: 0xc6120000n, end: 0xc61201ffn },
          { family: 4, start: 0xc6120301n, end: 0xc6120301n },
          { family: 6, start: 0x20010db8000000000000000000000000n, end: 0x20010db800000000ffffffffffffffffn },
        ],
        domains: [{ text: 'api.example.com', name: 'api.example.com', wildcard: false }],
        ports: [
          { proto: 'tcp', from: 80, to: 444 },
          { proto: 'udp', from: 1, to: 53 },
          { proto: 'udp', from: 80, to: 443 },
        ],
        icmp: false,
        icmpv6: false,
        users: [{ uid: 0 }, { uid: 33 }],
        services: [{ kind: 'unit', unit: 'x.service' }, { kind: 'cgroup', path: '/a/b' }, { kind: 'cgroup', path: '/a/c' }],
        interfaces: [{ name: 'eth', wildcard: true }, { name: 'wg0', wildcard: false }],
        log: true,
        mode: 'audit',
        comment: 'hi',
        line: 3,
      },
    ]);
  });

  it('icmp and icmpv6 are kept; a warning only when the rule has destinations and none of that family (a name has both)', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: a\n    to: ["2001:db8::1"]\n    ports: [icmp]\n  - name: b\n    to: [198.18.0.1]\n    ports: [icmpv6]\n  - name: c\n    to: [x.example.com]\n    ports: [icmp, icmpv6]\n  - name: d\n    ports: [icmp, icmpv6]\n    users: [0]\n', 'p.yaml');
    assert.deepEqual(p.rules.map((r) => [r.name, r.icmp, r.icmpv6]), [['a', true, false], ['b', false, true], ['c', true, true], ['d', true, true]]);
    assert.deepEqual(p.warnings.map(formatIssue), [
      'p.yaml:5:12: warning: icmp is IPv4 only and this rule has only IPv6 destinations: it never matches',
      'p.yaml:8:12: warning: icmpv6 is IPv6 only and this rule has only IPv4 destinations: it never matches',
    ]);
  });
});

describe('unit: load-policy edges, what an unknown key is told', () => {
  it("each section's keys hint from its own list, case aside, a transposition as one edit, the first of equally near keys, nothing from 3 edits away", () => {
    assert.deepEqual(
      errorsOf('mode: enforce\nMODE: enforce\ndlg: 1\nmodexyz: 1\nlgo: 1\nrluse: 1\nrules:\n  - name: a\n    to: [any]\n    acton: allow\nscopes:\n  - name: s\n    mode: audit\n    users: [0]\n    usres: [0]\ndns:\n  prot: 1\nflows:\n  replys: any\nlog:\n  rat: 1\ndashboard:\n  listen: 127.0.0.1:1\n  listn: 127.0.0.1:1\n'),
      [
        'p.yaml:2:1: unknown key "MODE" (did you mean mode?)',
        'p.yaml:3:1: unknown key "dlg" (did you mean log?)', // log and dns are both 2 edits away: the first listed
        'p.yaml:4:1: unknown key "modexyz"',
        'p.yaml:5:1: unknown key "lgo" (did you mean log?)',
        'p.yaml:6:1: unknown key "rluse" (did you mean rules?)', // 2 edits with the transpositions, 3 without
        'p.yaml:10:5: unknown key "acton" (did you mean action?)',
        'p.yaml:15:5: unknown key "usres" (did you mean users?)',
        'p.yaml:17:3: unknown key "prot" (did you mean port?)',
        'p.yaml:19:3: unknown key "replys" (did you mean replies?)',
        'p.yaml:21:3: unknown key "rat" (did you mean rate?)',
        'p.yaml:24:3: unknown key "listn" (did you mean listen?)',
      ],
    );
  });

  it('a list where a map belongs is called a list; a missing name is a missing key at the rule', () => {
    assert.deepEqual(errorsOf('mode: enforce\nlog: [1]\nrules:\n  - to: [any]\n'), ['p.yaml:2:6: log must be a map, not a list: [...]', 'p.yaml:4:5: missing required key "name"']);
  });
});

describe('unit: load-policy edges, dashboard: and flows:', () => {
  it('the dashboard listens on loopback only; refused at the address', () => {
    assert.deepEqual(policyFrom(`mode: enforce\ndashboard:\n  listen: 127.0.0.1:8080\n${RULE}`).dashboard, { listen: { host: '127.0.0.1', port: 8080 } });
    assert.deepEqual(errorsOf(`mode: enforce\ndashboard:\n  listen: 198.18.0.1:8080\n${RULE}`), ['p.yaml:3:11: the dashboard listens on loopback only (127.0.0.0/8 or [::1]): "198.18.0.1:8080"']);
  });

  it('flows: any 16 contiguous bits as the mask; replies merged per protocol; icmp and port 0 refused at their column', () => {
    const f = (body: string) => policyFrom(`mode: enforce\nflows:\n${body}${RULE}`).flows;
    assert.deepEqual(f('  ct_mark_mask: 0x00ffff00\n  replies: [443, 80-442/tcp, 444, 53/udp]\n'), {
      ctMarkMask: 0x00ffff00,
      replies: [
        { proto: 'tcp', from: 80, to: 444 },
        { proto: 'udp', from: 53, to: 53 },
        { proto: 'udp', from: 443, to: 444 },
      ],
    });
    assert.equal(f('  ct_mark_mask: 0x0001fffe\n').ctMarkMask, 0x0001fffe);
    assert.deepEqual(errorsOf(`mode: enforce\nflows:\n  replies: [443, icmp, 0]\n${RULE}`), [
      'p.yaml:3:18: replies are limited by local TCP or UDP port: "icmp"',
      'p.yaml:3:24: a port is a number from 1 to 65535: 0',
    ]);
    assert.deepEqual(errorsOf(`mode: enforce\nflows:\n  ct_mark_mask: 0xffff0001\n${RULE}`), ['p.yaml:3:17: ct_mark_mask must be 16 contiguous bits (such as 0xffff0000 or 0x0000ffff): 0xffff0001']);
  });
});

describe('unit: load-policy edges, list files', () => {
  const write = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    chmodSync(p, 0o644);
    return p;
  };

  it("list files' problems come after the policy's, each file's in the order the rules first use it, once; a NUL in a path and a missing file at their own entry", () => {
    write('a.txt', 'bad-a!\n198.18.0.1\n');
    write('b.txt', '198.18.0.2\nbad-b!\n'); // b is used first, a's bad line comes first
    const pol = write('lists.yaml', 'mode: enforce\nrules:\n  - name: one\n    to_file: [b.txt, a.txt, "x\\0y", missing.txt]\n  - name: two\n    to_file: a.txt\n  - name: three\n    to: [1.2.3]\n');
    assert.throws(() => loadPolicyWithBytes(pol, fakeHost), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.deepEqual(err.issues.map(formatIssue), [
        `${pol}:4:29: a list file's path cannot hold a NUL byte: "x\\u0000y"`,
        `${pol}:4:37: cannot use list file ${join(dir, 'missing.txt')} (rule "one"): ENOENT`,
        `${pol}:8:10: not an IP address: "1.2.3"`,
        `${join(dir, 'b.txt')}:2:1: character "!" is not allowed in a domain name: "bad-b!"`,
        `${join(dir, 'a.txt')}:1:1: character "!" is not allowed in a domain name: "bad-a!"`,
      ]);
      return true;
    });
  });

  it(`a rule's list files hold at most MAX_LIST_ENTRIES entries together (the same file twice counts twice), refused at the entry that passes it`, () => {
    const lines = (from: number, n: number) => Buffer.from(Array.from({ length: n }, (_, k) => `10.${((from + k) >> 16) & 255}.${((from + k) >> 8) & 255}.${(from + k) & 255}\n`).join(''));
    const half = MAX_LIST_ENTRIES / 2;
    const lists: Record<string, Buffer> = { '/l/a.txt': lines(0, half), '/l/x.txt': lines(half, 1) };
    const host = { ...fakeHost, readList: (path: string) => ({ ok: true as const, bytes: lists[path] ?? Buffer.alloc(0) }) };
    const load = (files: string) => parsePolicy(Buffer.from(`mode: enforce\nrules:\n  - name: big\n    to_file: [${files}]\n`), '/l/p.yaml', host);
    assert.equal(load('a.txt, a.txt').rules[0]?.addrs.length, half, 'exactly the limit is accepted (the same hosts twice are one set)');
    assert.throws(() => load('a.txt, a.txt, x.txt'), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.deepEqual(err.issues.map(formatIssue), [`/l/p.yaml:4:29: rule "big"'s list files hold more than ${MAX_LIST_ENTRIES} entries`]);
      return true;
    });
  });
});
