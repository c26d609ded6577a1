/** Unit: `sluice run`'s pure parts: --allow parsing, the run policy, its host-side table, the report and its suggestion. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { compileRunRuleset } from '../../src/compile/run-ruleset.js';
import type { RuleDef, Stmt } from '../../src/compile/ruleset.js';
import type { ForwardChain } from '../../src/netfilter/netfilter.js';
import { parseCommandLine } from '../../src/cli/spec.js';
import { UsageError } from '../../src/errors.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import { formatRunMarkdown, formatRunReport, suggestRunPolicy } from '../../src/run/run-report.js';
import { allowRule, basePolicy, parseUpstreams, runPolicy, splitAllow } from '../../src/run/run-policy.js';
import { forwardBlockers, type RunReport } from '../../src/run/run.js';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderRuleset } from '../../src/compile/render-nft.js';
import { lineDiff } from '../../src/netfilter/compare-ruleset.js';
import { GOLDEN_DIR, policyFrom, readGolden } from '../support/fixtures.js';

const NET = { table: 'sluice-run-00000001', hostIf: 'slr00000001', guard4: 0xc612c001n, inner4: 0xc612c002n, guardPort: 25353, logGroup: 40001 };

function chain(rs: ReturnType<typeof compileRunRuleset>['ruleset'], name: string): RuleDef[] {
  const c = rs.chains.find((x) => x.name === name);
  assert.ok(c, `chain ${name}`);
  return c.rules;
}

function report(over: Partial<RunReport> = {}): RunReport {
  return {
    version: 1,
    id: 'abcd0123',
    command: ['npm', 'ci'],
    mode: 'enforce',
    policy: '--allow',
    startedAt: '2026-12-06T00:00:00.000Z',
    durationMs: 1234,
    exit: { code: 0, signal: null },
    ipv6: true,
    names: [],
    flows: [],
    lostRecords: 0,
    attribution: { probes: true },
    summary: { namesAllowed: 0, namesBlocked: 0, destinationsReached: 0, attemptsBlocked: 0 },
    ...over,
  };
}

describe('unit: sluice run --allow', () => {
  it('splits DEST[:PORT[/PROTO]] for names, wildcards, addresses, prefixes and bracketed IPv6', () => {
    assert.deepEqual(splitAllow('registry.npmjs.org'), { dest: 'registry.npmjs.org' });
    assert.deepEqual(splitAllow('*.github.com:443'), { dest: '*.github.com', ports: '443' });
    assert.deepEqual(splitAllow('198.18.0.0/15:53/udp'), { dest: '198.18.0.0/15', ports: '53/udp' });
    assert.deepEqual(splitAllow('2001:db8::/32'), { dest: '2001:db8::/32' });
    assert.deepEqual(splitAllow('2001:db8::1'), { dest: '2001:db8::1' });
    assert.deepEqual(splitAllow('[2001:db8::1]:443/tcp'), { dest: '2001:db8::1', ports: '443/tcp' });
    assert.deepEqual(splitAllow('[2001:db8::1]'), { dest: '2001:db8::1' });
    assert.deepEqual(splitAllow('  api.example.com:443 '), { dest: 'api.example.com', ports: '443' }, 'blanks around it are not part of it');
    const refusals: [string, RegExp][] = [
      ['', /^--allow needs a destination: a name, \*\.name, an address or a CIDR/],
      ['  ', /^--allow needs a destination/],
      [':443', /^--allow ":443": want DEST:PORT\[\/PROTO\]$/],
      ['example.com:', /^--allow "example.com:": want DEST:PORT\[\/PROTO\]$/],
      ['[2001:db8::1', /^--allow "\[2001:db8::1": no closing \] after the IPv6 address$/],
      ['[2001:db8::1]443', /^--allow "\[2001:db8::1\]443": want \[ADDR\]:PORT\[\/PROTO\] after the brackets$/],
      ['[2001:db8::1]:', /want \[ADDR\]:PORT/],
    ];
    for (const [bad, why] of refusals) assert.throws(() => splitAllow(bad), (e: unknown) => e instanceof UsageError && why.test(e.message), JSON.stringify(bad));
  });

  it('each --allow is checked by the policy loader itself: bad values are usage errors naming the flag', () => {
    const p = runPolicy(undefined, ['api.example.com:443/tcp', '198.18.0.0/15', '[2001:db8::1]:53'], false);
    assert.deepEqual(
      p.rules.map((r) => [r.name, r.index, r.domains.map((d) => d.text), r.addrs.length, r.ports.map((x) => `${x.from}/${x.proto}`)]),
      [
        ['allow-1', 0, ['api.example.com'], 0, ['443/tcp']],
        ['allow-2', 1, [], 1, []],
        ['allow-3', 2, [], 1, ['53/tcp', '53/udp']],
      ],
    );
    assert.equal(p.mode, 'enforce');
    assert.equal(p.defaultAction, 'deny');
    assert.equal(p.file, '--allow');
    assert.equal(allowRule('any:icmpv6', 7).index, 6);
    assert.deepEqual([allowRule('any:icmpv6', 1).icmpv6, allowRule('any:icmpv6', 1).icmp, allowRule('any:icmp', 1).icmp], [true, false, true]);
    // The reasons are the policy language's own, with the value shown.
    assert.throws(() => runPolicy(undefined, ['exa mple.com'], false), /: --allow "exa mple.com": .+: "exa mple\.com"$/);
    assert.throws(() => runPolicy(undefined, ['api.example.com:99999'], false), /: --allow "api.example.com:99999": a port is a number from 1 to 65535: "99999"$/);
    for (const bad of ['198.18.0.0/33', 'exa mple.com', '*.', 'api.example.com:70000', 'api.example.com:443/sctp', 'a.example.com:443/tcp\nmode: audit']) {
      assert.throws(() => runPolicy(undefined, [bad], false), (e: unknown) => e instanceof UsageError && e.message.startsWith('--allow'), bad);
    }
  });

  it("a run's base policy is what the loader makes of `mode: enforce` (the defaults cannot drift apart), with its guard on", () => {
    const loaded = parsePolicy(Buffer.from('mode: enforce\nrules: []\n'), '--allow', { lookupUsers: () => new Map() });
    assert.deepEqual(basePolicy(), { ...loaded, sha256: '' });
    // And each --allow makes the rule the loader makes of the same `to` and `ports`.
    for (const [spec, to, ports] of [['api.example.com:443/tcp', 'api.example.com', '443/tcp'], ['198.18.0.0/15', '198.18.0.0/15', undefined], ['[2001:db8::1]:53', '2001:db8::1', '53'], ['any:icmp', 'any', 'icmp'], ['*.example.com:8000-8100/udp', '*.example.com', '8000-8100/udp']] as const) {
      const yaml = `mode: enforce\nrules:\n  - name: allow-1\n    to: [${JSON.stringify(to)}]\n${ports ? `    ports: [${JSON.stringify(ports)}]\n` : ''}`;
      const want = parsePolicy(Buffer.from(yaml), 'x', { lookupUsers: () => new Map() }).rules[0];
      assert.deepEqual({ ...runPolicy(undefined, [spec], false).rules[0], line: 0 }, { ...want, line: 0 }, spec);
    }
  });

  it('nothing allowed without --allow or --policy; --audit sets audit; a policy file enforces whatever its mode says', () => {
    assert.deepEqual(runPolicy(undefined, [], false).rules, []);
    assert.equal(runPolicy(undefined, [], true).mode, 'audit');
    const file = policyFrom('rules:\n  - name: web\n    to: [198.18.1.1]\n'); // mode left out: audit for the host
    assert.equal(file.mode, 'audit');
    const p = runPolicy(file, ['api.example.com'], false);
    assert.equal(p.mode, 'enforce');
    assert.deepEqual(p.rules.map((r) => [r.name, r.index]), [['web', 0], ['allow-1', 1]]);
  });

  it('refuses what names host identities (users, services, interfaces), and a rule name an --allow would take', () => {
    for (const extra of ['users: [1001]', 'services: [nginx.service]', 'interfaces: [eth0]']) {
      const file = policyFrom(`rules:\n  - name: web\n    to: [198.18.1.1]\n    ${extra}\n`);
      assert.throws(() => runPolicy(file, [], false), (e: unknown) => e instanceof UsageError && /^test\.yaml: rule web: `\w+` has no meaning in `sluice run`/.test(e.message), extra);
    }
    const both = policyFrom('rules:\n  - name: web\n    to: [198.18.1.1]\n    users: [1001]\n    interfaces: [eth0]\n');
    assert.throws(() => runPolicy(both, [], false), /`users` has no meaning in `sluice run` \(the whole command is the run\); remove it; rule web: `interfaces`/);
    const taken = policyFrom('rules:\n  - name: allow-1\n    to: [198.18.1.1]\n');
    assert.throws(() => runPolicy(taken, ['198.18.2.2'], false), /taken/);
  });

  it('--dns-upstream takes addresses only', () => {
    assert.deepEqual(parseUpstreams(['198.18.0.53', '2001:db8::53']).map((u) => u.family), [4, 6]);
    assert.deepEqual(parseUpstreams([' 198.18.0.53 ']).map((u) => u.start), [0xc6120035n]);
    assert.throws(() => parseUpstreams(['resolver.example']), /: --dns-upstream "resolver.example": not an IPv4 or IPv6 address$/);
    assert.throws(() => parseUpstreams(['198.18.0.53:5353']), UsageError);
  });
});

describe('unit: sluice run command line', () => {
  it('everything after the first -- is the command, untouched, even flags sluice knows', () => {
    const p = parseCommandLine(['run', '--allow', 'a.example', '--allow', 'b.example:443', '--', 'curl', '--json', '--help', '--', 'x']);
    assert.equal(p.name, 'run');
    assert.deepEqual(p.values.allow, ['a.example', 'b.example:443']);
    assert.deepEqual(p.rest, ['curl', '--json', '--help', '--', 'x']);
    assert.equal(p.values.help, undefined);
    assert.equal(p.values.json, undefined);
    assert.deepEqual(parseCommandLine(['run', '--cleanup']).rest, []);
    assert.throws(() => parseCommandLine(['run', '--confirm', '5', '--', 'true']), UsageError);
    // Other commands keep parsing -- as before (no pass-through).
    assert.equal(parseCommandLine(['check', '--', 'x.yaml']).rest, undefined);
  });
});

describe('unit: a run\'s host-side table', () => {
  const stmtsOf = (rules: RuleDef[]) => rules.map((r) => r.stmts);
  const targets = (rules: RuleDef[]) => rules.map((r) => r.stmts[r.stmts.length - 1] as Stmt);

  it('deny rules come first whatever their order, every admitted flow is logged, and the default blocks', () => {
    const p = runPolicy(policyFrom('mode: enforce\nrules:\n  - name: wide\n    to: [198.18.0.0/15]\n  - name: meta\n    action: deny\n    to: [198.18.1.254]\n'), [], false);
    const { ruleset } = compileRunRuleset(p, NET);
    const out = chain(ruleset, 'run_out');
    const jumps = targets(out).filter((t) => t.k === 'goto').map((t) => (t as { chain: string }).chain);
    assert.deepEqual(jumps, ['block_1', 'allow_0', 'block_default']);
    assert.deepEqual(stmtsOf(chain(ruleset, 'allow_0'))[0]?.map((s) => s.k), ['log', 'verdict']);
    const block = chain(ruleset, 'block_default');
    assert.ok(block.some((r) => r.stmts.some((s) => s.k === 'reject')), 'enforce: refused');
    assert.ok(block.every((r) => r.stmts.some((s) => s.k === 'log')), 'and logged');
    // The run has no IPv6 (no guard6): IPv6 is dropped before any rule.
    assert.ok(out.some((r) => r.comment === 'this run has no IPv6'));
  });

  it('refuses, as a type error, a policy with host identities (runPolicy refuses it first, as a usage error)', () => {
    const p = policyFrom('rules:\n  - name: web\n    to: [198.18.1.1]\n    users: [1001]\n');
    assert.throws(() => compileRunRuleset(p, NET), (e: unknown) => e instanceof TypeError && /rule web: `users` has no meaning/.test((e as Error).message));
  });

  it('audit mode records would-block and lets it pass; drop mode drops silently', () => {
    const audit = compileRunRuleset({ ...runPolicy(undefined, ['198.18.1.1'], true) }, NET).ruleset;
    const b = chain(audit, 'block_default');
    assert.deepEqual(b.map((r) => r.stmts.map((s) => s.k)), [['log', 'verdict']]);
    assert.equal((b[0]?.stmts[1] as { v: string }).v, 'accept');
    assert.match((b[0]?.stmts[0] as { prefix: string }).prefix, /^sluice:W:/);
    const drop = compileRunRuleset({ ...runPolicy(undefined, [], false), blockWith: 'drop' }, NET).ruleset;
    assert.deepEqual(chain(drop, 'block_default').map((r) => r.stmts.map((s) => s.k)), [['log', 'verdict']]);
  });

  it('keys on the veth: forward from it runs the policy, into it only replies pass; DNS to any address goes to the guard; the host is closed to it', () => {
    const rs = compileRunRuleset(runPolicy(undefined, [], false), { ...NET, guard6: 1n, inner6: 2n }).ruleset;
    const fwd = chain(rs, 'forward');
    assert.deepEqual(fwd.map((r) => r.stmts.map((s) => s.k)), [['lookup', 'jump'], ['lookup', 'ct', 'verdict'], ['lookup', 'verdict']]);
    assert.deepEqual(rs.sets.find((s) => s.name === 'run_if')?.elements, [{ t: 'ifname', name: NET.hostIf, wildcard: false }]);
    const dnat = chain(rs, 'dns_dnat');
    assert.equal(dnat.length, 4, 'UDP and TCP, IPv4 and IPv6');
    for (const r of dnat) {
      assert.ok(r.stmts.some((s) => s.k === 'cmp' && s.sel === 'th dport' && s.value === 53), 'port 53, whatever the address');
      assert.ok(r.stmts.some((s) => s.k === 'dnat' && s.port === NET.guardPort));
    }
    const input = chain(rs, 'run_in');
    assert.deepEqual(input[input.length - 1]?.stmts, [{ k: 'verdict', v: 'drop' }], 'anything else on the host is closed to the run');
    assert.ok(chain(rs, 'masquerade')[0]?.stmts.some((s) => s.k === 'masquerade'));
  });
});

describe('unit: a run\'s report', () => {
  const rep = report({
    names: [
      { name: 'registry.npmjs.org', type: 'A', verdict: 'allowed', rules: ['allow-1'], answers: ['198.18.1.10'], processes: [{ pid: 77, comm: 'npm', uid: 1000 }], count: 2 },
      { name: 'evil|x.example', type: 'A', verdict: 'blocked', rules: [], answers: [], processes: [{ pid: 78, comm: 'sh|<b>', uid: 1000 }], count: 1 },
    ],
    flows: [
      { verdict: 'blocked', rule: '#default', proto: 'tcp', dst: '198.18.2.20', dport: 443, names: [], processes: [{ pid: 4242, comm: 'curl', uid: 1000, exe: '/usr/bin/curl', cmdline: 'curl https://198.18.2.20' }], count: 3, first: 'a', last: 'b' },
      { verdict: 'allowed', rule: 'allow-1', proto: 'tcp', dst: '198.18.1.10', dport: 443, names: ['registry.npmjs.org'], processes: [], count: 1, first: 'a', last: 'a' },
      { verdict: 'allowed', rule: 'allow-1', proto: 'udp', dst: '2001:db8::1', dport: 53, names: [], processes: [], count: 1, first: 'a', last: 'a' },
    ],
    summary: { namesAllowed: 1, namesBlocked: 1, destinationsReached: 2, attemptsBlocked: 3 },
  });

  it('the text report names what was resolved, reached and blocked', () => {
    const t = formatRunReport(rep);
    assert.match(t, /"npm ci" exited 0 after 1\.23 s/);
    assert.match(t, /names: 1 allowed, 1 blocked/);
    assert.match(t, /198\.18\.1\.10:443\/tcp registry\.npmjs\.org \(allow-1\)/);
    assert.match(t, /\[2001:db8::1\]:53\/udp/);
    assert.match(t, /blocked: 3 attempts\n {4}198\.18\.2\.20:443\/tcp \(#default\) x3/);
    // Who asked for each name, as for flows.
    assert.match(t, /allowed {5}registry\.npmjs\.org A \(allow-1\) x2 -> 198\.18\.1\.10 by npm\[77\]/);
  });

  it('Markdown escapes what a name could use to break the table', () => {
    const md = formatRunMarkdown(rep);
    assert.ok(md.includes('evil\\|x.example'), md);
    assert.equal(md.split('\n').filter((l) => l.startsWith('| blocked')).length, 1);
    // A process name cannot break the table either; each name row has its six cells.
    assert.ok(md.includes('| sh\\|\\<b\\>\\[78\\] |'), md);
    assert.ok(md.includes('| registry.npmjs.org | A | allowed | allow-1 | 198.18.1.10 | npm\\[77\\] |'), md);
  });

  it('the suggestion is a valid policy allowing exactly what the run did, and no name can change its shape', () => {
    const hostile = report({
      flows: [
        { verdict: 'blocked', rule: '#default', proto: 'tcp', dst: '198.18.1.10', dport: 443, names: ['a.example"]\n  - name: all\n    to: [any'], processes: [], count: 1, first: 'a', last: 'a' },
        ...rep.flows,
      ],
      names: [{ name: 'resolved-only.example', type: 'A', verdict: 'allowed', rules: [], answers: [], processes: [], count: 1 }],
    });
    const yaml = suggestRunPolicy(hostile);
    assert.match(yaml, /# Resolved but never connected to \(not allowed above\): "resolved-only\.example"/);
    // The hostile name stays one quoted string: the document has the rules the run made, and no rule `all` to `any`.
    const doc = parseYaml(yaml) as { rules: { name: string; to: string[] }[] };
    assert.deepEqual(doc.rules.map((r) => r.name), ['run-1', 'run-2', 'run-3', 'run-4']);
    assert.ok(doc.rules.some((r) => r.to[0] === 'a.example"]\n  - name: all\n    to: [any'), 'the name, whole, as one value');
    assert.ok(!doc.rules.some((r) => r.to.includes('any')));
    assert.throws(() => parsePolicy(Buffer.from(yaml), 'suggest.yaml', { lookupUsers: () => new Map() }), /name|domain/i, 'and the loader refuses it as a name');
    const clean = suggestRunPolicy(rep);
    const p = parsePolicy(Buffer.from(clean), 'suggest.yaml', { lookupUsers: () => new Map() });
    assert.deepEqual(
      p.rules.map((r) => [r.domains.map((d) => d.text), r.addrs.length, r.ports.map((x) => `${x.from}/${x.proto}`)]),
      [
        [['registry.npmjs.org'], 0, ['443/tcp']],
        [[], 1, ['443/tcp']],
        [[], 1, ['53/udp']],
      ],
    );
  });
});

describe("unit: a run's table, golden files (test/golden/run-*.yaml -> .nft)", () => {
  const cases = readdirSync(GOLDEN_DIR).filter((f) => /^run-\d\d-.*\.yaml$/.test(f));
  it('there are the three cases', () => assert.equal(cases.length, 3));
  for (const yamlFile of cases) {
    const nftFile = yamlFile.replace(/\.yaml$/, '.nft');
    it(`${yamlFile} compiles to ${nftFile}`, () => {
      const file = policyFrom(readGolden(yamlFile), yamlFile);
      const policy = { ...runPolicy(file, [], file.mode === 'audit'), sha256: '0'.repeat(64) };
      // run-02 is the IPv4-only run; the others have IPv6 too.
      const v6 = !yamlFile.startsWith('run-02') ? { guard6: 0x20010db8005c00000000000000000001n, inner6: 0x20010db8005c00000000000000000002n } : {};
      const actual = renderRuleset(compileRunRuleset(policy, { ...NET, ...v6 }).ruleset);
      const path = join(GOLDEN_DIR, nftFile);
      // As for the host's golden files: writing one never passes (UPDATE_GOLDEN=1 cannot turn CI green).
      const expected = existsSync(path) ? readGolden(nftFile) : null;
      if (actual !== expected && (process.env.UPDATE_GOLDEN === '1' || expected === null)) {
        writeFileSync(path, actual);
        assert.fail(`wrote ${expected === null ? 'missing' : 'changed'} golden file ${nftFile}; review the diff and run again without UPDATE_GOLDEN`);
      }
      if (actual !== expected) assert.fail(`${nftFile} differs (- expected, + actual):\n${lineDiff((expected ?? '').split('\n'), actual.split('\n')).join('\n')}`);
    });
  }
});

describe("unit: another firewall's forward chains", () => {
  const chain = (over: Partial<ForwardChain>): ForwardChain => ({ family: 'ip', table: 'filter', chain: 'FORWARD', policy: 'drop', rules: 3, ...over });
  it('a drop policy in any table but Sluice\'s own is named, with its family, chain and rule count, and what to add', () => {
    const text = forwardBlockers({ forwardChains: () => [chain({}), chain({ family: 'inet', table: 'fw', chain: 'fwd', rules: 1 })] }) ?? '';
    assert.match(text, /table ip filter, chain FORWARD \(3 rules\); table inet fw, chain fwd \(1 rule\)\./);
    assert.match(text, /iptables -I FORWARD -i slr\+ -j ACCEPT/);
    assert.match(text, /oifname "slr\*" ct state established,related accept/);
  });
  it('nothing to say: no chains, accept policies, Sluice\'s own tables, a writer that cannot list, a listing that fails', () => {
    assert.equal(forwardBlockers({ forwardChains: () => [] }), null);
    assert.equal(forwardBlockers({ forwardChains: () => [chain({ policy: 'accept' })] }), null);
    assert.equal(forwardBlockers({ forwardChains: () => [chain({ family: 'inet', table: 'sluice-run-forward' }), chain({ family: 'inet', table: 'sluice-run-0a1b2c3d' })] }), null);
    assert.equal(forwardBlockers({}), null);
    assert.equal(
      forwardBlockers({
        forwardChains: () => {
          throw new Error('EPERM');
        },
      }),
      null,
    );
  });
});
