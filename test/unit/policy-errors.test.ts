/** Policy errors carry file, line, column, YAML path and the bad value; all of them are reported at once. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolicyError, formatIssue } from '../../src/errors.js';
import { editDistance } from '../../src/policy/load-policy.js';
import { policyFrom } from '../support/fixtures.js';

function issues(yaml: string): string[] {
  try {
    policyFrom(yaml, 'p.yaml');
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected PolicyError, got ${String(err)}`);
    return err.issues.filter((i) => i.severity === 'error').map(formatIssue);
  }
  assert.fail('policy was accepted');
}

describe('unit: policy errors', () => {
  it('a value of the wrong form where several forms are accepted names the forms that key accepts, and what it got', () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    // Before: every such key said "must be a string or a number", to_file and flows.replies included.
    assert.deepEqual(issues(`${R}    to_file: 5\n`), ['p.yaml:5:14: to_file must be a string or a list, not a number: 5']);
    assert.deepEqual(issues(`${R}flows:\n  replies: all\n`), ['p.yaml:6:12: replies must be "any" or a list, not a string: "all"']);
    assert.deepEqual(issues(`${R}    ports: [[1]]\n`), ['p.yaml:5:13: ports[0] must be a string or a number, not a list: [...]']);
    assert.deepEqual(issues(`${R}    users: [{a: 1}]\n`), ['p.yaml:5:13: users[0] must be a string or a number, not a map: {...}']);
    assert.deepEqual(issues(`${R}suppress:\n  - until: [1]\n    reason: r\n`), ['p.yaml:6:12: until must be a string or a date, not a list: [...]']);
  });

  it('a value of a form the key accepts, wrong inside, is told what is wrong inside (it said "must be a string, not a list" of a list)', () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    assert.deepEqual(issues(`${R}    to_file: [1]\n`), ['p.yaml:5:15: to_file[0] must be a string, not a number: 1']);
    assert.deepEqual(issues(`${R}    to_file: [a.txt, [b]]\n`), ['p.yaml:5:22: to_file[1] must be a string, not a list: [...]']);
    assert.deepEqual(issues(`${R}    to_file: []\n`), ['p.yaml:5:14: to_file is too small (the minimum is 1): [...]']);
    // A limit of the list itself (zod puts it in the union's alternatives, unlike the minimum).
    const many = Array.from({ length: 65 }, (_, i) => `f${i}.txt`).join(', ');
    assert.deepEqual(issues(`${R}    to_file: [${many}]\n`), ['p.yaml:5:14: to_file is too large (the limit is 64): [...]']);
    assert.deepEqual(issues(`${R}flows:\n  replies: [{a: 1}]\n`), ['p.yaml:6:13: replies[0] must be a string or a number, not a map: {...}']);
    assert.deepEqual(issues(`${R}flows:\n  replies: []\n`), ['p.yaml:6:12: replies is too small (the minimum is 1): [...]']);
    // Of the wrong form for every alternative, the forms are named, as before.
    assert.deepEqual(issues(`${R}flows:\n  replies: {a: 1}\n`), ['p.yaml:6:12: replies must be "any" or a list, not a map: {...}']);
  });

  it('a wrong type names the expected type in words and the value found: null, a boolean, a string, a number', () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    assert.deepEqual(issues('mode: enforce\nrules: ~\n'), ['p.yaml:2:8: rules must be a list, not null: null']);
    assert.deepEqual(issues('mode: enforce\nrules:\n  - name: true\n    to: [any]\n'), ['p.yaml:3:11: name must be a string, not a boolean: true']);
    assert.deepEqual(issues(`${R}dns:\n  port: x\n`), ['p.yaml:6:9: port must be a number, not a string: "x"']);
    assert.deepEqual(issues(`${R}    log: yes please\n`), ['p.yaml:5:10: log must be true or false, not a string: "yes please"']);
    assert.deepEqual(issues(`${R}essentials: 1\n`), ['p.yaml:5:13: essentials must be true or false, not a number: 1']);
  });

  it("an unknown key's suggestion comes from the keys of the section it is in", () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    assert.deepEqual(issues(`${R}scopes:\n  - name: s\n    mode: audit\n    services: [nginx.service]\n    usres: [root]\n`), ['p.yaml:9:5: unknown key "usres" (did you mean users?)']);
    assert.deepEqual(issues(`${R}dns:\n  upstrems: [198.18.0.1]\n`), ['p.yaml:6:3: unknown key "upstrems" (did you mean upstreams?)']);
    // "mode" is a key of a scope and of the policy, not of dns: no suggestion there.
    assert.deepEqual(issues(`${R}dns:\n  mdoe: audit\n`), ['p.yaml:6:3: unknown key "mdoe"']);
    assert.deepEqual(issues(`${R}xyzzy: 1\n`), ['p.yaml:5:1: unknown key "xyzzy"']);
  });

  it('every key of every map a policy has is suggested for its misspelling (two letters swapped, or one dropped), in that map', () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    // The keys each map takes, written out here (not read from the schema the loader uses): a key
    // added to the schema without its suggestion, or a suggestion the schema refuses, fails this.
    const maps: [string, string[], (typo: string) => string][] = [
      ['the policy', ['version', 'mode', 'default', 'block_with', 'essentials', 'tamper', 'owned_table', 'log', 'dns', 'alerts', 'suppress', 'flows', 'dashboard', 'scopes', 'rules'], (t) => `${R}${t}: 1\n`],
      ['a rule', ['name', 'action', 'to', 'to_file', 'ports', 'users', 'services', 'interfaces', 'log', 'mode', 'comment'], (t) => `${R}    ${t}: 1\n`],
      ['a scope', ['name', 'mode', 'users', 'services', 'comment'], (t) => `${R}scopes:\n  - name: s\n    mode: audit\n    users: [root]\n    ${t}: 1\n`],
      ['dns', ['guard', 'upstreams', 'port', 'ttl_floor', 'ttl_grace', 'ttl_max', 'blocked_answer', 'encrypted_dns', 'encrypted_dns_list', 'mark', 'max_addresses_per_answer', 'max_addresses_per_name', 'cache_size', 'cache_max_negative_ttl'], (t) => `${R}dns:\n  ${t}: 1\n`],
      ['log', ['group', 'rate', 'burst', 'user_rate', 'user_burst', 'allowed'], (t) => `${R}log:\n  ${t}: 1\n`],
      ['flows', ['ct_mark_mask', 'replies'], (t) => `${R}flows:\n  ${t}: 1\n`],
      ['dashboard', ['listen'], (t) => `${R}dashboard:\n  ${t}: 1\n`],
      ['an alert', ['name', 'sink', 'on', 'rules', 'window'], (t) => `${R}alerts:\n  - name: x\n    sink: {syslog: x}\n    on: [blocked]\n    ${t}: 1\n`],
      ["an alert's sink", ['webhook', 'secret_file', 'template', 'syslog', 'exec', 'timeout', 'journal'], (t) => `${R}alerts:\n  - name: x\n    on: [blocked]\n    sink:\n      syslog: x\n      ${t}: 1\n`],
      ['a suppression', ['rule', 'destination', 'until', 'reason'], (t) => `${R}suppress:\n  - reason: r\n    until: 2030-01-01\n    ${t}: 1\n`],
    ];
    for (const [where, keys, place] of maps) {
      for (const k of keys) {
        // The last two letters swapped; where they are the same (suppress), the last dropped.
        const typo = k.at(-1) !== k.at(-2) ? `${k.slice(0, -2)}${k.slice(-1)}${k.slice(-2, -1)}` : k.slice(0, -1);
        const got = issues(place(typo));
        assert.ok(got.some((l) => l.endsWith(`unknown key "${typo}" (did you mean ${k}?)`)), `${where}: ${typo} -> ${got.join(' | ')}`);
      }
    }
    // Nothing is suggested where no key is near, nor for the keys of another map.
    assert.deepEqual(issues(`${R}suppress:\n  - reason: r\n    until: 2030-01-01\n    webhok: 1\n`), ['p.yaml:8:5: unknown key "webhok"']);
  });

  it('a fraction where a whole number belongs says "a whole number, not a fraction" (it said "must be int, not a number")', () => {
    const R = 'mode: enforce\nrules:\n  - name: a\n    to: [any]\n';
    assert.deepEqual(issues(`${R}log:\n  group: 1.5\n`), ['p.yaml:6:10: group must be a whole number, not a fraction: 1.5']);
  });

  it("a missing key's issue is the map's (its path), where the key would go", () => {
    for (const [yaml, path] of [
      ['mode: enforce\nrules:\n  - to: [any]\n', ['rules', 0]],
      ['mode: enforce\nrules:\n  - name: a\n    to: [any]\nscopes:\n  - name: s\n    users: [root]\n', ['scopes', 0]],
    ] as const) {
      try {
        policyFrom(yaml, 'p.yaml');
        assert.fail('accepted');
      } catch (err) {
        assert.ok(err instanceof PolicyError);
        assert.deepEqual(err.issues.map((i) => i.path), [path]);
      }
    }
  });

  it('icmp and icmpv6 warn only where the rule has destinations of the other family alone', () => {
    const warnings = (to: string, proto: string) => policyFrom(`mode: enforce\nrules:\n  - name: a\n    to: [${to}]\n    ports: [${proto}]\n`, 'p.yaml').warnings.map(formatIssue);
    assert.deepEqual(warnings('198.18.0.1, 2001:db8::1', 'icmp'), [], 'both families: icmp can match');
    assert.deepEqual(warnings('198.18.0.1, 2001:db8::1', 'icmpv6'), []);
    assert.deepEqual(warnings('198.18.0.1', 'icmp'), []);
    assert.deepEqual(warnings('2001:db8::1', 'icmpv6'), []);
    assert.deepEqual(warnings('a.example.com', 'icmp'), [], 'a name may resolve to either family');
    assert.deepEqual(warnings('2001:db8::1', 'icmp'), ['p.yaml:5:12: warning: icmp is IPv4 only and this rule has only IPv6 destinations: it never matches']);
    assert.deepEqual(warnings('198.18.0.1', 'icmpv6'), ['p.yaml:5:12: warning: icmpv6 is IPv6 only and this rule has only IPv4 destinations: it never matches']);
  });

  it('a key that is a list or a map is an error at that key, and yaml warns nothing on stderr', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      // Before: unknown key "[ a, b ]" at 1:1 (the key was made a string), and a Node warning on stderr.
      assert.deepEqual(issues('mode: enforce\n[a, b]: 1\nrules:\n  - name: a\n    to: [any]\n'), ['p.yaml:2:1: a key is a name, not a list: [a, b]']);
      assert.deepEqual(issues('mode: enforce\nrules:\n  - name: a\n    to: [any]\n    ? {x: 1}\n    : 3\ndns:\n  - [p]\n  - {[q]: 1}\n'), [
        'p.yaml:5:7: a key is a name, not a map: {x: 1}',
        // Reported with the others, in one run (it was reported alone: the rest only once it was fixed).
        'p.yaml:8:3: dns must be a map, not a list: [...]',
        'p.yaml:9:6: a key is a name, not a list: [q]',
      ]);
      // The entry is left out and the rest checked as if it were not there: a typo beside it is found too.
      assert.deepEqual(issues('mode: enforce\nrules:\n  - name: a\n    to: [any]\n    ? [x]\n    : 1\n    prots: [443]\n'), [
        'p.yaml:5:7: a key is a name, not a list: [x]',
        'p.yaml:7:5: unknown key "prots" (did you mean ports?)',
      ]);
      // A long key is shown to its 60th character; the issue is about the document, not a setting.
      const long = `{x: 1, ${'y'.repeat(60)}: 2}`;
      assert.deepEqual(issues(`mode: enforce\n? ${long}\n: 1\n`), [`p.yaml:2:3: a key is a name, not a map: ${long.slice(0, 60)}...`]);
      assert.deepEqual(issues(`mode: enforce\n? ${long.slice(0, 59)}}\n: 1\n`), [`p.yaml:2:3: a key is a name, not a map: ${long.slice(0, 59)}}`], 'sixty characters are shown whole');
      try {
        policyFrom('mode: audit\n[a]: 1\n', 'p.yaml');
        assert.fail('accepted');
      } catch (err) {
        assert.ok(err instanceof PolicyError);
        assert.deepEqual(err.issues.map((i) => i.path), [[]]);
      }
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a required key with a fixed set of values that is left out is missing, not "must be one of ...: undefined"', () => {
    assert.deepEqual(issues('mode: enforce\nrules:\n  - name: a\n    to: [any]\nscopes:\n  - name: s\n    users: [root]\n'), ['p.yaml:6:5: missing required key "mode"']);
    // A value that is there and wrong still lists the values.
    assert.deepEqual(issues('mode: enforce\nrules:\n  - name: a\n    to: [any]\nscopes:\n  - name: s\n    mode: strict\n    users: [root]\n'), ['p.yaml:7:11: mode must be one of "audit", "enforce": "strict"']);
  });

  it('an unknown key is reported at the key, with a suggestion', () => {
    assert.deepEqual(issues('mode: enforce\nrules:\n  - name: a\n    to: [198.18.0.1]\n    port: [443]\n'), ['p.yaml:5:5: unknown key "port" (did you mean ports?)']);
  });

  it('each bad entry of a flow list is reported at its own column', () => {
    assert.deepEqual(issues('rules:\n  - name: a\n    to: [198.18.0.1, 198.18.0.0/33, "*bad.com"]\n'), [
      'p.yaml:3:22: prefix length must be 0 to 32: "198.18.0.0/33"',
      'p.yaml:3:37: a wildcard must be the whole first label, as in *.example.com: "*bad.com"',
    ]);
  });

  it('host bits in a prefix name the intended network', () => {
    assert.match(issues('rules:\n  - name: a\n    to: [198.18.1.1/24]\n')[0] ?? '', /host bits are set \(the network is 198\.18\.1\.0\/24\)/);
  });

  it('a user that does not exist is an error, with the name shown', () => {
    assert.deepEqual(issues('rules:\n  - name: a\n    users: [ghost]\n'), ['p.yaml:3:13: no such user: "ghost"']);
  });

  it('wrong types say what was expected and what was found', () => {
    assert.deepEqual(issues('mode: 3\nrules: {}\n'), ['p.yaml:1:7: mode must be one of "audit", "enforce": 3', 'p.yaml:2:8: rules must be a list, not a map: {...}']);
  });

  it('a user\'s share of the log budget cannot exceed the whole, and defaults to a quarter of it', () => {
    assert.deepEqual(issues('log:\n  rate: 100\n  user_rate: 200\n  burst: 50\n  user_burst: 60\nrules:\n  - name: a\n    to: [any]\n'), [
      "p.yaml:3:14: user_rate (200) is above rate (100): one user's share cannot exceed the whole budget",
      "p.yaml:5:15: user_burst (60) is above burst (50): one user's share cannot exceed the whole budget",
    ]);
    const log = (yaml: string) => policyFrom(`${yaml}rules:\n  - name: a\n    to: [any]\n`).log;
    assert.deepEqual(log(''), { group: 7331, rate: 1000, burst: 5000, userRate: 250, userBurst: 1250, allowed: false });
    assert.deepEqual(log('log:\n  rate: 8\n  burst: 8\n'), { group: 7331, rate: 8, burst: 8, userRate: 8, userBurst: 8, allowed: false }, 'at least 10 per second, never more than the whole');
    assert.deepEqual(log('log:\n  rate: 40\n  burst: 30\n').userRate, 10);
    assert.deepEqual(log('log:\n  user_rate: 5\n  user_burst: 7\n'), { group: 7331, rate: 1000, burst: 5000, userRate: 5, userBurst: 7, allowed: false });
  });

  it('duplicate keys and duplicate rule names are errors', () => {
    assert.match(issues('mode: audit\nmode: enforce\n')[0] ?? '', /p\.yaml:2:1: YAML: Map keys must be unique/);
    assert.deepEqual(issues('rules:\n  - name: a\n    to: [any]\n  - name: a\n    to: [any]\n'), ['p.yaml:4:11: duplicate rule name "a" (first used by rule 1)']);
  });

  it('a rule with a misspelt key still has its other values checked, in the same run; a rule without a usable name only its structure', () => {
    assert.deepEqual(issues('rules:\n  - name: a\n    prots: [443]\n    to: [198.18.0.0/33]\n'), [
      'p.yaml:3:5: unknown key "prots" (did you mean ports?)',
      'p.yaml:4:10: prefix length must be 0 to 32: "198.18.0.0/33"',
    ]);
    // No usable name: what it would allow cannot be reported against a rule, so only the structure is.
    assert.deepEqual(issues('rules:\n  - name: 5\n    prots: [443]\n    to: [198.18.0.0/33]\n'), [
      'p.yaml:2:11: name must be a string, not a number: 5',
      'p.yaml:3:5: unknown key "prots" (did you mean ports?)',
    ]);
  });

  it('dns.encrypted_dns is block (the default) or allow, and nothing else', () => {
    const dns = (v: string) => policyFrom(`dns:\n  encrypted_dns: ${v}\nrules:\n  - name: a\n    to: [any]\n`).dns.encryptedDns;
    assert.equal(dns('block'), 'block');
    assert.equal(dns('allow'), 'allow');
    assert.equal(policyFrom('rules:\n  - name: a\n    to: [any]\n').dns.encryptedDns, 'block');
    assert.match(issues('dns:\n  encrypted_dns: off\nrules:\n  - name: a\n    to: [any]\n')[0] ?? '', /encrypted_dns must be one of "block", "allow"/);
  });

  it('flows.replies is "any" or a list of addresses', () => {
    const replies = (v: string) => policyFrom(`flows:\n  replies: ${v}\nrules:\n  - name: a\n    to: [any]\n`).flows.replies;
    assert.equal(replies('any'), 'any');
    assert.match(issues('flows:\n  replies: all\nrules:\n  - name: a\n    to: [any]\n')[0] ?? '', /replies/);
  });

  it('a rule that constrains nothing is refused rather than silently allowing everything', () => {
    assert.match(issues('rules:\n  - name: everything\n')[0] ?? '', /matches all traffic/);
  });

  it('an empty list is an error (it would read as "any")', () => {
    assert.match(issues('rules:\n  - name: a\n    to: []\n')[0] ?? '', /empty to list/);
  });

  it('reports every problem of every rule in one run, in file order', () => {
    const all = issues('rules:\n  - name: a\n    to: [1.2.3]\n    ports: [99999]\n  - name: B\n    interfaces: ["x/y"]\n');
    assert.equal(all.length, 4);
    assert.deepEqual(all.map((l) => l.split(':')[1]), ['3', '4', '5', '6']);
  });

  it('binary input and control characters are refused before YAML parsing', () => {
    assert.match(issues('mode: audit\u0000\n')[0] ?? '', /control character 0x00/);
    const bytes = Buffer.from([0x6d, 0x6f, 0xff, 0xfe]);
    assert.throws(() => policyFrom(bytes.toString('latin1')), PolicyError);
  });

  it('the DNS address limits are checked with their position: range, type, and per answer not above per name', () => {
    assert.deepEqual(issues('dns:\n  max_addresses_per_answer: 0\n  max_addresses_per_name: 70000\nrules:\n  - name: a\n    to: [a.example.com]\n'), [
      'p.yaml:2:29: max_addresses_per_answer is too small (the minimum is 1): 0',
      'p.yaml:3:27: max_addresses_per_name is too large (the limit is 65536): 70000',
    ]);
    assert.deepEqual(issues('dns:\n  max_addresses_per_answer: 100\nrules:\n  - name: a\n    to: [a.example.com]\n'), ['p.yaml:2:29: max_addresses_per_answer (100) is above max_addresses_per_name (64)']);
    assert.deepEqual(issues('dns:\n  max_addresses_per_name: 8\nrules:\n  - name: a\n    to: [a.example.com]\n'), ['p.yaml:2:27: max_addresses_per_answer (32) is above max_addresses_per_name (8)']);
    assert.match(issues('dns:\n  max_addresses_per_answr: 8\n')[0] ?? '', /unknown key "max_addresses_per_answr" \(did you mean max_addresses_per_answer\?\)/);
    const p = policyFrom('dns:\n  max_addresses_per_answer: 16\n  max_addresses_per_name: 128\nrules:\n  - name: a\n    to: [a.example.com]\n');
    assert.deepEqual([p.dns.maxAddressesPerAnswer, p.dns.maxAddressesPerName], [16, 128]);
    const d = policyFrom('rules:\n  - name: a\n    to: [a.example.com]\n');
    assert.deepEqual([d.dns.maxAddressesPerAnswer, d.dns.maxAddressesPerName], [32, 64], 'the defaults');
  });

  it("every dns: check refuses its case at its position, and accepts the value just inside", () => {
    const RULE = 'rules:\n  - name: a\n    to: [a.example.com]\n';
    const dns = (body: string) => `dns:\n${body}${RULE}`;
    // The guard's port: never 53 (what is redirected), never 853 (blocked as DoT), always privileged.
    assert.deepEqual(issues(dns('  port: 53\n')), ['p.yaml:2:9: the guard cannot listen on 53: DNS to port 53 is what gets redirected to it']);
    assert.deepEqual(issues(dns('  port: 853\n')), ['p.yaml:2:9: the guard cannot listen on 853: that port is blocked as DNS over TLS']);
    assert.match(issues(dns('  port: 1024\n'))[0] ?? '', /^p\.yaml:2:9: the guard's port must be privileged \(below 1024\).*: 1024$/);
    assert.match(issues(dns('  port: 5353\n'))[0] ?? '', /must be privileged/);
    for (const ok of [52, 54, 852, 854, 1023]) assert.equal(policyFrom(dns(`  port: ${ok}\n`)).dns.port, ok);
    // Upstreams: one address each, never loopback (the guard's queries would come back to it).
    for (const [u, why] of [
      ['127.0.0.1', /a loopback upstream would send the guard's queries back to itself: "127\.0\.0\.1"/],
      ['127.255.255.254', /a loopback upstream/],
      ['"::1"', /a loopback upstream/],
      ['198.18.0.0/24', /an upstream is one IP address: "198\.18\.0\.0\/24"/],
      ['dns.example.com', /an upstream is one IP address/],
    ] as const) {
      const got = issues(dns(`  upstreams: [198.18.0.53, ${u}]\n`));
      assert.equal(got.length, 1, `${u}: ${got.join('; ')}`);
      assert.match(got[0] ?? '', /^p\.yaml:2:28: /, u);
      assert.match(got[0] ?? '', why, u);
    }
    assert.equal(policyFrom(dns('  upstreams: [128.0.0.1, 126.255.255.255, "::2", 198.18.0.53/32]\n')).dns.upstreams?.length, 4);
    // ttl_floor above ttl_max is refused at ttl_floor; equal is fine.
    assert.deepEqual(issues(dns('  ttl_floor: 301\n  ttl_max: 300\n')), ['p.yaml:2:14: ttl_floor (301) is above ttl_max (300)']);
    assert.match(issues(dns('  ttl_max: 10\n'))[0] ?? '', /ttl_floor \(\d+\) is above ttl_max \(10\)$/, 'against the default floor too');
    // dns.mark: the marks that tell the guard a query came from a service scope are not the guard's to take.
    assert.deepEqual(issues(dns('  mark: 0xfffff000\n')), ['p.yaml:2:9: marks from 0xfffff000 up are Sluice\'s own (they tell the guard a query came from a service scope): 0xfffff000']);
    assert.equal(policyFrom(dns('  mark: 0xffffefff\n')).dns.mark, 0xffffefff);
    const eq = policyFrom(dns('  ttl_floor: 300\n  ttl_max: 300\n')).dns;
    assert.deepEqual([eq.ttlFloor, eq.ttlMax], [300, 300]);
  });

  it('dns.guard: false beside rules that name domains is an error at dns.guard, naming the rules (they could never match)', () => {
    const rules = 'rules:\n  - name: api\n    to: [api.example.com, 198.18.0.1]\n  - name: block-exfil\n    action: deny\n    to: ["*.paste.example"]\n  - name: lan\n    to: [198.18.0.0/24]\n';
    assert.deepEqual(issues(`mode: enforce\ndefault: allow\ndns:\n  guard: false\n${rules}`), [
      'p.yaml:4:10: dns.guard is false, but rules "api" (api.example.com), "block-exfil" (*.paste.example) name domains: only the guard fills domain rules, so they would never match (remove dns.guard: false, or the domains)',
    ]);
    // Controls: the guard on (said or implied) with the same rules, and off with address rules only.
    assert.equal(policyFrom(`dns:\n  guard: true\n${rules}`).dns.guard, true);
    assert.equal(policyFrom(rules).dns.guard, true, 'on by default when a rule names a domain');
    assert.equal(policyFrom('dns:\n  guard: false\nrules:\n  - name: lan\n    to: [198.18.0.0/24]\n').dns.guard, false);
  });

  it('a policy with no mode starts in audit mode and says so', () => {
    const p = policyFrom('rules:\n  - name: a\n    to: [any]\n');
    assert.equal(p.mode, 'audit');
    assert.match(p.warnings[0]?.message ?? '', /audit mode/);
  });
  it('the distance behind the suggestions: known pairs, one edit of any kind is exactly 1, k edits at most k, symmetric', () => {
    const known: [string, string, number][] = [
      ['', '', 0], ['log', 'log', 0], ['lgo', 'log', 1], ['ab', 'ba', 1], ['abcd', 'badc', 2], ['ca', 'abc', 3], ['kitten', 'sitting', 3],
      ['', 'abc', 3], ['abc', '', 3], ['a', 'b', 1], ['ports', 'prots', 1], ['ports', 'psrot', 3], ['abcdef', 'badcfe', 3],
      // Lengths more than 3 apart are never near: 99 whatever the letters.
      ['a', 'abcde', 99], ['', 'abcd', 99],
    ];
    for (const [a, b, d] of known) {
      assert.equal(editDistance(a, b), d, `${a} / ${b}`);
      assert.equal(editDistance(b, a), d, `${b} / ${a}`);
    }
    // Random words from a small alphabet (repeats make transpositions and matches common), edited at random.
    let seed = 0x5eed;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const letters = 'abcd';
    const word = (n: number) => Array.from({ length: n }, () => letters[rnd(4)]).join('');
    const edit = (w: string): string => {
      for (;;) {
        const i = rnd(w.length + 1);
        const kind = rnd(4);
        let out = w;
        if (kind === 0) out = w.slice(0, i) + letters[rnd(4)] + w.slice(i);
        else if (kind === 1 && i < w.length) out = w.slice(0, i) + w.slice(i + 1);
        else if (kind === 2 && i < w.length) out = w.slice(0, i) + letters[rnd(4)] + w.slice(i + 1);
        else if (kind === 3 && i + 1 < w.length) out = w.slice(0, i) + (w[i + 1] ?? '') + (w[i] ?? '') + w.slice(i + 2);
        if (out !== w) return out;
      }
    };
    for (let t = 0; t < 3000; t++) {
      const a = word(1 + rnd(7));
      const b = edit(a);
      assert.equal(editDistance(a, b), 1, `one edit: ${a} / ${b}`);
      assert.equal(editDistance(a, a), 0);
      const k = 1 + rnd(3);
      let c = a;
      for (let i = 0; i < k; i++) c = c.length > 0 ? edit(c) : letters[rnd(4)] ?? 'a';
      const d = editDistance(a, c);
      assert.ok(d <= k && d === editDistance(c, a) && d >= Math.abs(a.length - c.length), `${k} edits: ${a} / ${c}: ${d}`);
    }
  });
});
