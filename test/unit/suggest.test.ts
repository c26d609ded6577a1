import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { RecordedEvent } from '../../src/events/event-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { checkPolicy } from '../../src/learn/check-policy.js';
import { Observations } from '../../src/learn/observations.js';
import { registeredDomain, sharedZoneOf } from '../../src/learn/public-suffix.js';
import { suggestPolicy } from '../../src/learn/suggest-policy.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import { fakeHost, ROOT } from '../support/fixtures.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);

function ev(dst: string, dport: number, extra: Partial<RecordedEvent> = {}): RecordedEvent {
  return { time: T0, verdict: 'would-block', rule: '#default', family: dst.includes(':') ? 6 : 4, proto: 6, src: '198.18.0.2', dst, sport: 40000, dport, uid: 1000, user: 'alice', ...extra };
}

/** A workload: names, a CNAME'd name, siblings, a shared zone, a service, a second user's UDP, IPv6, hostile text. */
function workload(): RecordedEvent[] {
  const curl = { pid: 10, exe: '/usr/bin/curl', comm: 'curl' };
  const out: RecordedEvent[] = [];
  for (let d = 0; d < 3; d++) out.push(ev('198.18.1.10', 443, { time: T0 + d * DAY, hostname: 'api.example.com', process: curl }));
  for (const [i, n] of ['a', 'b', 'c'].entries()) out.push(ev(`198.18.1.${20 + i}`, 443, { hostname: `${n}.cdn.example.net`, process: curl }));
  out.push(ev('198.18.1.30', 443, { hostname: 'x.github.io', process: curl }));
  out.push(ev('198.18.1.31', 443, { hostname: 'y.github.io', process: curl }));
  out.push(ev('198.18.1.32', 443, { hostname: 'z.github.io', process: curl }));
  out.push(ev('2001:db8:1::10', 443, { family: 6, hostname: 'api.example.com', process: curl }));
  out.push(ev('198.18.2.20', 123, { proto: 17, uid: 1001, user: 'bob', process: { pid: 11, exe: '/usr/sbin/ntpdate', comm: 'ntpdate' } }));
  out.push(ev('198.18.3.30', 8080, { uid: 0, user: 'root', process: { pid: 12, exe: '/usr/sbin/nginx', comm: 'nginx', unit: 'nginx.service', cgroup: '/system.slice/nginx.service' } }));
  // A look-alike unit in a user's cgroup is that user's traffic, not the service's.
  out.push(ev('198.18.3.31', 8080, { process: { pid: 13, exe: '/tmp/x', comm: 'x', unit: 'nginx.service', cgroup: '/user.slice/user-1000.slice/nginx.service' } }));
  // Hostile text: a hostname that is YAML and a terminal escape, a comm with both.
  out.push(ev('198.18.4.1', 443, { hostname: 'evil.example.org\n  - name: pwn\n    to: [any]', process: { pid: 14, comm: '\u001b]0;pwn\u0007x: [any]\n#' } }));
  out.push(ev('198.18.4.2', 443, { hostname: '\u001b[31mred.example.org', process: { pid: 15, exe: '/bin/"quoted" \u001b[2J' } }));
  out.push(ev('127.0.0.1', 8080));
  return out;
}

function observe(events: RecordedEvent[]): Observations {
  const o = new Observations();
  events.forEach((e, i) => o.add({ ...e, id: i + 1 }));
  return o;
}

const load = (yaml: string) => parsePolicy(Buffer.from(yaml), 's.yaml', fakeHost);

describe('suggest: a policy from observed traffic', () => {
  const s = suggestPolicy(observe(workload()), { since: T0 - DAY, until: T0 + 4 * DAY });
  const policy = load(s.yaml);

  it('loads with Sluice\'s own loader, and replaying the same events breaks nothing', () => {
    const r = checkPolicy(policy, observe(workload()));
    assert.equal(r.wouldBreak.events, 0, JSON.stringify(r.wouldBreak, null, 1));
    assert.deepEqual(r.wouldBreak.names, []);
  });

  it('names, not addresses, where the address came from a DNS answer; ports as observed; grouped per user and service', () => {
    const alice = policy.rules.filter((r) => r.users.some((u) => u.uid === 1000));
    const names = alice.flatMap((r) => r.domains.map((d) => d.text));
    assert.ok(names.includes('api.example.com'));
    assert.ok(!alice.some((r) => r.addrs.some((a) => a.family === 4 && a.start === 0xc612010an)), 'api.example.com\'s address is not listed');
    assert.ok(alice.every((r) => r.ports.every((p) => p.proto === 'tcp')));
    const svc = policy.rules.find((r) => r.services.some((x) => x.kind === 'unit' && x.unit === 'nginx.service'));
    assert.ok(svc, 'a rule for nginx.service');
    assert.deepEqual(svc.ports.map((p) => `${p.from}/${p.proto}`), ['8080/tcp']);
    assert.equal(svc.addrs.length, 1, 'only the real service\'s destination');
    const bob = policy.rules.find((r) => r.users.some((u) => u.uid === 1001));
    assert.deepEqual(bob?.ports.map((p) => `${p.from}/${p.proto}`), ['123/udp']);
    assert.ok(!policy.rules.some((r) => r.addrs.some((a) => a.family === 4 && a.start === 0x7f000001n)), 'loopback is never a rule');
  });

  it('wildcards for three sibling names under one registered domain, never over a shared zone (flagged)', () => {
    const names = policy.rules.flatMap((r) => r.domains.map((d) => d.text));
    assert.ok(names.includes('*.example.net'));
    assert.ok(!names.some((n) => n.endsWith('cdn.example.net') && !n.startsWith('*')));
    assert.ok(!names.some((n) => n.includes('*.github.io')));
    for (const n of ['x.github.io', 'y.github.io', 'z.github.io']) assert.ok(names.includes(n), n);
    assert.match(s.yaml, /SHARED ZONE: x\.github\.io is under \*\.github\.io/);
  });

  it('each rule carries first and last seen, count, processes and distinct days', () => {
    const r = s.rules.find((x) => x.to.includes('api.example.com'));
    assert.ok(r);
    assert.equal(r.days, 3);
    assert.ok(r.processes.includes('curl'));
    assert.match(s.yaml, /api\.example\.com # 4 events, 2026-12-01T10:00Z to 2026-12-03T10:00Z, on 3 days; curl/);
  });

  it('hostile hostnames and process names inject neither YAML nor terminal escapes', () => {
    assert.doesNotMatch(s.yaml, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/, 'no control characters');
    assert.doesNotMatch(s.yaml, /name: pwn/);
    assert.ok(!policy.rules.some((r) => r.name === 'pwn'));
    assert.ok(!policy.rules.some((r) => r.addrs.some((a) => a.start === 0n && a.end > 0n && a.family === 4)), 'no `any`');
    // The bad names fell back to their addresses.
    const all = policy.rules.flatMap((r) => r.addrs.map((a) => a.start));
    assert.ok(all.includes(0xc6120401n) && all.includes(0xc6120402n));
  });

  it('the registered domain comes from the public suffix list; shared zones count as suffixes', () => {
    assert.equal(registeredDomain('a.b.example.co.uk'), 'example.co.uk');
    assert.equal(registeredDomain('x.y.github.io'), 'y.github.io');
    assert.equal(registeredDomain('example.com'), 'example.com');
    assert.equal(registeredDomain('com'), undefined);
    assert.equal(sharedZoneOf('x.s3.amazonaws.com'), 's3.amazonaws.com');
    assert.equal(sharedZoneOf('notgithub.io'), undefined);
  });
});

describe('suggest against an existing policy: a diff that keeps the file', () => {
  const text = `# Our policy: keep this comment
version: 1
mode: audit
rules:
  # the API, by name
  - name: api
    to: [api.example.com]
    ports: [443/tcp]
  - name: old-mirror # nobody uses it any more
    to: [198.18.9.0/24]
    ports: [80/tcp]
`;
  const existing = { policy: load(text), text, file: 'p.yaml' };
  const events = workload();
  const s = suggestPolicy(observe(events), { existing, since: T0 - DAY, until: T0 + 4 * DAY });

  it('keeps comments and order, appends new rules only, marks rules nothing needed as could-go', () => {
    assert.ok(s.yaml.startsWith('# Our policy: keep this comment\n'));
    assert.match(s.yaml, /# the API, by name\n {2}- name: api\n/);
    assert.match(s.yaml, /- name: old-mirror # nobody uses it any more/);
    assert.ok(s.yaml.indexOf('name: api') < s.yaml.indexOf('name: old-mirror'));
    assert.deepEqual(s.couldGo.map((c) => c.rule), ['old-mirror']);
    assert.match(s.yaml, /# sluice suggest: no observed flow needed this rule .*: it could go\n {2}- name: old-mirror/);
    assert.ok(s.covered.flows >= 2, 'api.example.com over IPv4 and IPv6 is already allowed');
    assert.ok(!s.rules.some((r) => r.to.includes('api.example.com')), 'no new rule for what is allowed');
    const merged = load(s.yaml);
    assert.equal(checkPolicy(merged, observe(events)).wouldBreak.events, 0);
  });

  it('a race recorded as would-block before the fix counts as a hit, not a new rule', () => {
    const only = suggestPolicy(observe([ev('198.18.1.99', 443, { hostname: 'api.example.com' })]), { existing, since: T0, until: T0 + 1 });
    assert.deepEqual(only.rules, []);
    assert.equal(only.covered.flows, 1);
  });
});

describe('suggest --check: the window replayed against a policy', () => {
  it('counts what would break (blocked traffic, names that would not resolve) and what it would block', () => {
    const p = load(`mode: enforce
rules:
  - name: web
    to: [198.18.1.0/24]
    ports: [443/tcp]
`);
    const events = [
      ev('198.18.1.10', 443, { hostname: 'api.example.com' }),
      ev('198.18.1.11', 443),
      ev('198.18.1.12', 80),
      ev('198.18.7.7', 443, { verdict: 'blocked' }),
    ];
    const r = checkPolicy(p, observe(events));
    // api.example.com: the address is allowed, but the guard would refuse the name.
    assert.deepEqual(r.wouldBreak.names, [{ name: 'api.example.com', events: 1, lookups: 0, why: 'api.example.com is not allowed by the policy', processes: [] }]);
    assert.equal(r.wouldBreak.events, 2);
    assert.equal(r.wouldBlock.events, 2, 'port 80, and the already blocked flow');
    assert.ok(r.wouldBreak.flows.some((f) => f.dport === 80 && /default deny/.test(f.why)));
  });
});

describe('sluice suggest (the command) on a real store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-suggest-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const sluice = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/sluice'), ...args], { env: { ...process.env, SLUICE_STATE_DIR: dir, SLUICE_POLICY: join(dir, 'none.yaml') }, encoding: 'utf8' });

  it('writes a policy that checks clean, and --check fails on one that breaks traffic', () => {
    const store = new SqliteStore(join(dir, 'events.db'));
    const now = Date.now();
    store.append(workload().map((e, i) => ({ ...e, time: now - 3600_000 + i })));
    // A name resolved and never connected to: the suggestion must let it resolve, the narrow policy must not pass.
    store.append([], undefined, [{ day: Math.floor(now / DAY), name: 'resolved-only.example.org', verdict: 'would-block', uid: 1000, unit: null, cgroup: null, process: 'app', count: 4, first: now - 60_000, last: now - 60_000 }]);
    store.close();
    const out = join(dir, 'suggested.yaml');
    const r = sluice('suggest', '--since', '1d', '--out', out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /written to/);
    const c = sluice('suggest', '--check', out, '--since', '1d', '--json');
    assert.equal(c.status, 0, c.stdout + c.stderr);
    const report = JSON.parse(c.stdout) as { wouldBreak: { events: number; lookups: number }; events: number; resolved: { lookups: number } };
    assert.equal(report.wouldBreak.events, 0);
    assert.equal(report.wouldBreak.lookups, 0);
    assert.equal(report.resolved.lookups, 4);
    assert.match(readFileSync(out, 'utf8'), /- name: resolve-only\n\s+to:\n\s+- resolved-only\.example\.org/);
    assert.equal(report.events, workload().length);
    const narrow = join(dir, 'narrow.yaml');
    writeFileSync(narrow, 'mode: enforce\nrules:\n  - name: one\n    to: [api.example.com]\n    ports: [443/tcp]\n');
    const bad = sluice('suggest', '--check', narrow, '--since', '1d');
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, /would break \d+/);
    assert.match(bad.stdout, /would block \d+/);
    assert.match(bad.stdout, /would refuse 4 lookups/);
    assert.match(bad.stdout, /name resolved-only\.example\.org would not resolve \(0 events, 4 lookups; app\): resolved-only\.example\.org is not allowed by the policy/);
    // Only lookups refused, no flow broken: still a failed check.
    const flowsOk = join(dir, 'flows-ok.yaml');
    writeFileSync(flowsOk, readFileSync(out, 'utf8').replace(/- name: resolve-only[\s\S]*?(?=\n {2}- name:|\n[a-z]|$)/, ''));
    const onlyNames = sluice('suggest', '--check', flowsOk, '--since', '1d', '--json');
    assert.equal(onlyNames.status, 1, onlyNames.stdout + onlyNames.stderr);
    assert.deepEqual((JSON.parse(onlyNames.stdout) as { wouldBreak: { events: number; lookups: number } }).wouldBreak, { ...(JSON.parse(onlyNames.stdout) as { wouldBreak: object }).wouldBreak, events: 0, lookups: 4 });
    const printed = sluice('suggest', '--since', '1d');
    assert.equal(printed.status, 0);
    // The first line names the window, to the minute: the two runs may straddle a minute.
    const body = (text: string) => text.split('\n').slice(1).join('\n');
    assert.match(printed.stdout, /^# Suggested by `sluice suggest` from the traffic observed \S+ to \S+\.\n/);
    assert.equal(body(printed.stdout), body(readFileSync(out, 'utf8')), 'without --out the policy goes to stdout, the summary to stderr');
    assert.match(printed.stderr, /rules/);
  });
});

describe('the replay\'s rule index', () => {
  it('gives the verdict explain gives over the whole policy, for every flow of the workload against several policies', async () => {
    const { explain } = await import('../../src/policy/explain.js');
    const { judgeFlow } = await import('../../src/learn/replay.js');
    const { parseAddr } = await import('../../src/net/ip.js');
    const suggested = suggestPolicy(observe(workload()), { since: T0 - DAY, until: T0 + 4 * DAY });
    const policies = [
      load(suggested.yaml),
      load(`mode: enforce
rules:
  - name: web
    to: [198.18.1.0/24, "*.example.com"]
    ports: [443/tcp, 8000-9000/tcp]
  - name: bob
    to: [any]
    users: [1001]
  - name: deny-cdn
    action: deny
    to: ["*.cdn.example.net"]
`),
    ];
    const obs = observe(workload());
    let compared = 0;
    for (const p of policies) {
      for (const o of obs.flows.values()) {
        const a = parseAddr(o.flow.dst);
        assert.ok(a);
        const range = { family: a.family, start: a.value, end: a.value };
        const learned = new Map(p.rules.filter((r) => o.flow.hostname !== undefined && r.domains.some((d) => (d.wildcard ? (o.flow.hostname as string).endsWith(`.${d.name}`) : o.flow.hostname === d.name))).map((r) => [r.name, [range]]));
        const full = explain(p, {
          dest: { kind: 'range', range },
          ...(learned.size > 0 ? { learned } : {}),
          proto: o.flow.proto === 6 ? 'tcp' : 'udp',
          ...(o.flow.dport !== undefined ? { port: o.flow.dport } : {}),
          ...(o.flow.uid !== undefined ? { uid: o.flow.uid } : {}),
          ...(o.flow.service !== undefined ? { service: o.flow.service } : {}),
        });
        const fast = judgeFlow(p, o.flow);
        assert.equal(fast?.verdict, full.verdict, `${o.flow.dst} ${o.flow.dport} ${o.flow.hostname ?? ''}`);
        assert.deepEqual(fast?.decidedBy, full.decidedBy);
        compared++;
      }
    }
    assert.ok(compared > 20);
  });
});
