/** "Allow this": the rules that would let one blocked event through, narrowest first, each with what else it lets through, judged by the interpreter on the policy as it would be. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordedEvent, StoredEvent } from '../../src/events/event-store.js';
import { allowLadder, type LadderInput } from '../../src/learn/allow-ladder.js';
import { factsOf } from '../../src/learn/observations.js';
import { judgeFlow } from '../../src/learn/replay.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import { textDiff } from '../../src/policy/text-diff.js';
import { fakeHost } from '../support/fixtures.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const load = (yaml: string) => parsePolicy(Buffer.from(yaml), 'p.yaml', fakeHost);

const POLICY = `# The production policy: comments stay.
mode: enforce
rules:
  # the API
  - name: api
    to: [api.example.com]
    ports: [443/tcp]
  - name: no-metadata
    action: deny
    to: [198.18.9.9]
`;

let nextId = 1;
function ev(dst: string, dport: number, extra: Partial<RecordedEvent> = {}): StoredEvent {
  return { id: nextId++, time: T0, verdict: 'blocked', rule: '#default', family: dst.includes(':') ? 6 : 4, proto: 6, src: '198.18.0.2', dst, sport: 40000, dport, uid: 1000, user: 'alice', ...extra };
}

const curl = { pid: 10, exe: '/usr/bin/curl', comm: 'curl' };
const target = ev('198.18.1.40', 443, { hostname: 'files.example.org', process: curl });
const history: StoredEvent[] = [
  target,
  ev('198.18.1.40', 443, { hostname: 'files.example.org', process: curl }),
  // Another user, same name and port: only the wider steps let it through.
  ev('198.18.1.40', 443, { hostname: 'files.example.org', uid: 1001, user: 'bob', process: { pid: 11, exe: '/usr/bin/wget', comm: 'wget' } }),
  // A sibling name under the same registered domain: only the zone step.
  ev('198.18.1.41', 443, { hostname: 'cdn.example.org', process: { pid: 12, exe: '/usr/bin/python3', comm: 'python3' } }),
  // Another name on the same address: only the address step.
  ev('198.18.1.40', 443, { hostname: 'other.example.net', process: { pid: 13, exe: '/usr/bin/node', comm: 'node' } }),
  // Another port: nothing here allows it.
  ev('198.18.1.40', 22, { hostname: 'files.example.org', process: curl }),
  // Allowed traffic is not "more let through".
  ev('198.18.1.10', 443, { verdict: 'allowed', rule: 'api', hostname: 'api.example.com', process: curl }),
];

function input(e: StoredEvent, extra: Partial<LadderInput> = {}): LadderInput {
  return { event: e, existing: { policy: load(POLICY), text: POLICY }, parse: load, history: history.map(factsOf), since: T0 - 1, until: T0 + 1, ...extra };
}

describe('unit: allow this (the ladder)', () => {
  it('narrowest first: this user + name + port, the name, the zone, the address; each lets through exactly what the interpreter says', () => {
    const l = allowLadder(input(target));
    assert.equal(l.refused, undefined);
    assert.deepEqual(
      l.steps.map((s) => s.id),
      ['sender-name', 'name', 'zone', 'address'],
    );
    const [mine, name, zone, address] = l.steps as [NonNullable<(typeof l.steps)[0]>, NonNullable<(typeof l.steps)[0]>, NonNullable<(typeof l.steps)[0]>, NonNullable<(typeof l.steps)[0]>];
    assert.deepEqual(mine.rule, { name: 'allow-alice-files.example.org', to: ['files.example.org'], ports: ['443/tcp'], users: [1000], comment: `allowed from the dashboard: event ${target.id}, blocked 2026-12-01T10:00Z` });
    assert.deepEqual(mine.impact, { events: 0, flows: 0, processes: [], senders: [], destinations: [] });
    assert.deepEqual(name.rule.to, ['files.example.org']);
    assert.equal(name.rule.users, undefined);
    assert.deepEqual(name.impact, { events: 1, flows: 1, processes: ['wget'], senders: ['user bob (uid 1001)'], destinations: ['files.example.org 443/tcp'] });
    assert.deepEqual(zone.rule.to, ['*.example.org']);
    assert.equal(zone.impact.events, 2);
    assert.deepEqual(zone.impact.processes.sort(), ['python3', 'wget']);
    assert.deepEqual(address.rule.to, ['198.18.1.40']);
    assert.deepEqual(address.impact.processes.sort(), ['node', 'wget']);
    assert.ok(address.warnings.some((w) => /would still not resolve/.test(w)), 'the address alone does not make the name resolve');
    assert.ok(address.warnings.some((w) => /shared hosting/.test(w)));
    for (const s of l.steps) {
      // The policy text is the applied one plus the rule, comments kept, and it loads.
      assert.ok(s.policy.startsWith('# The production policy: comments stay.'), s.policy);
      assert.ok(s.policy.includes('# the API'));
      const p = load(s.policy);
      assert.equal(p.rules.length, 3);
      assert.equal(judgeFlow(p, { dst: '198.18.1.40', proto: 6, dport: 443, uid: 1000, hostname: 'files.example.org' })?.verdict, 'allow', s.id);
      assert.equal(judgeFlow(p, { dst: '198.18.1.40', proto: 6, dport: 22, uid: 1000, hostname: 'files.example.org' })?.verdict, 'block', `${s.id}: not another port`);
      assert.match(s.yaml, new RegExp(`^- name: ${s.rule.name}\\n`));
      assert.deepEqual(load(`rules:\n${s.yaml.replace(/^(?=.)/gm, '  ')}`).rules[0]?.name, s.rule.name, 'the rule text alone loads under rules:');
    }
  });

  it('a service\'s event: the narrowest step names the service, not the user; an address-only event has no name steps', () => {
    const nginx = ev('198.18.3.30', 8080, { uid: 33, user: 'www-data', process: { pid: 20, exe: '/usr/sbin/nginx', comm: 'nginx', unit: 'nginx.service', cgroup: '/system.slice/nginx.service' } });
    const l = allowLadder(input(nginx, { history: [factsOf(nginx)] }));
    assert.deepEqual(
      l.steps.map((s) => s.id),
      ['sender-address', 'address'],
    );
    assert.deepEqual(l.steps[0]?.rule.services, ['nginx.service']);
    assert.equal(l.steps[0]?.rule.users, undefined);
    // A look-alike unit in a user's cgroup is that user's, not the service's.
    const fake = ev('198.18.3.30', 8080, { process: { pid: 21, exe: '/tmp/x', comm: 'x', unit: 'nginx.service', cgroup: '/user.slice/user-1000.slice/nginx.service' } });
    assert.deepEqual(allowLadder(input(fake, { history: [] })).steps[0]?.rule.users, [1000]);
  });

  it('a name under a shared zone: the zone step stops at the one site (github.io is a public suffix) and says so; rule names stay unique and valid', () => {
    const gh = ev('198.18.1.50', 443, { hostname: 'docs.someone.github.io', process: curl });
    const text = `${POLICY}  - name: allow-alice-docs.someone.github.io\n    to: [198.18.7.7]\n`;
    const l = allowLadder(input(gh, { existing: { policy: load(text), text }, history: [factsOf(gh)] }));
    assert.equal(l.steps[0]?.rule.name, 'allow-alice-docs.someone.github.io-2');
    const zone = l.steps.find((s) => s.id === 'zone');
    assert.deepEqual(zone?.rule.to, ['*.someone.github.io']);
    assert.equal(zone?.sharedZone, 'github.io');
    assert.ok(zone?.warnings.some((w) => /one site under github\.io, a zone where anyone can create names/.test(w)), zone?.warnings.join('\n'));
    assert.equal(l.steps.find((s) => s.id === 'name')?.sharedZone, undefined);
    for (const s of l.steps) assert.match(s.rule.name, /^[a-z0-9][a-z0-9._-]{0,47}$/);
    // A registered domain itself has no zone step above it.
    const apex = ev('198.18.1.51', 443, { hostname: 'someone.github.io', process: curl });
    assert.equal(allowLadder(input(apex, { history: [] })).steps.find((s) => s.id === 'zone'), undefined);
  });

  it('refuses what it cannot help: an allowed event, loopback, a deny rule in the way, another protocol', () => {
    assert.match(allowLadder(input(ev('198.18.1.10', 443, { verdict: 'allowed', rule: 'api' }))).refused ?? '', /was allowed/);
    assert.match(allowLadder(input(ev('127.0.0.1', 8080))).refused ?? '', /loopback/);
    assert.match(allowLadder(input(ev('198.18.9.9', 80))).refused ?? '', /rule no-metadata \(line \d+\) denies it/);
    assert.match(allowLadder(input(ev('198.18.1.60', 0, { proto: 47 }))).refused ?? '', /protocol 47/);
    const ok = allowLadder(input(ev('198.18.1.10', 443, { hostname: 'api.example.com' })));
    assert.match(ok.refused ?? '', /allows this already/);
  });

  it('the policy text is the file\'s text exactly, with the rule added: a leading blank line, odd spacing and comments stay, so the diff only adds', () => {
    const texts = [
      // The applied file starts with a blank line (as POLICY above does in many files), spaces its lists, and ends with a comment.
      `\n# leading blank line above\nmode:   enforce\nrules:\n    - name: api      # the API\n      to: [ api.example.com ]\n      ports: [443/tcp]\n\n# the end\n`,
      // No newline at the end; a flow-style empty list; no rules at all.
      `\nmode: enforce\nrules:\n  - name: api\n    to: [api.example.com]`,
      `\nmode: enforce\nrules: []   # none yet\n`,
      `\n\nmode: enforce\n`,
      // CRLF line ends: the rule's lines get them too.
      `\r\nmode: enforce\r\nrules:\r\n  - name: api\r\n    to: [api.example.com]\r\n`,
    ];
    for (const text of texts) {
      const l = allowLadder(input(target, { existing: { policy: load(text), text }, history: [factsOf(target)] }));
      assert.ok(l.steps.length > 0, l.refused);
      for (const s of l.steps) {
        const diff = textDiff(text, s.policy);
        const changed = diff.split('\n').filter((x) => /^[-+](?![-+]{2} )/.test(x));
        assert.ok(changed.length > 0, `${s.id}: no change`);
        if (!/rules: \[\]/.test(text)) assert.deepEqual(changed.filter((x) => x.startsWith('-')), [], `${s.id}: only added lines:\n${diff}`);
        else assert.deepEqual(changed.filter((x) => x.startsWith('-')), ['-rules: []   # none yet'], `${s.id}: only the empty list replaced:\n${diff}`);
        const p = load(s.policy);
        assert.deepEqual(p.rules.map((r) => r.name), [...load(text).rules.map((r) => r.name), s.rule.name], s.id);
        assert.ok(s.policy.startsWith(text.startsWith('\n\n') ? '\n\nmode' : text.startsWith('\r\n') ? '\r\nmode' : '\n'), `${s.id}: the leading blank line kept`);
        if (text.includes('\r\n')) assert.doesNotMatch(s.policy, /[^\r]\n/, `${s.id}: CRLF throughout`);
      }
    }
  });

  it('hostile text from the store never reaches the policy as YAML: a hostname that is not a name gives address steps only', () => {
    const evil = ev('198.18.4.1', 443, { hostname: 'evil.example.org\n  - name: pwn\n    to: [any]', process: { pid: 14, comm: 'x\n- name: pwn' } });
    const l = allowLadder(input(evil, { history: [factsOf(evil)] }));
    assert.deepEqual(
      l.steps.map((s) => s.id),
      ['sender-address', 'address'],
    );
    for (const s of l.steps) {
      assert.ok(!s.policy.includes('pwn'), s.policy);
      assert.equal(load(s.policy).rules.length, 3);
    }
  });
});
