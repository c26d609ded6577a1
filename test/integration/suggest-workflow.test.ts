/**
 * Integration: learn the policy (issue 11). A scripted workload runs in
 * audit mode (HTTPS to names, one through a CNAME, sibling names, an IPv6
 * destination, a UDP time query sent by uid 65534, a name resolved and never
 * connected to); `sluice suggest` writes a policy from what the daemon
 * stored (flows and resolved lookups), `suggest --check` finds 0 would-break
 * and 0 refused lookups,
 * and in enforce mode with that policy the same workload succeeds on the
 * first try while a new port, a new host, an unlisted name and the UDP
 * query from another user are blocked. (No systemd service here: the test
 * machine runs no service manager; the service grouping has unit tests.)
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { logEvents, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';
import { testZone } from '../world/dns-server.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const NOBODY = 65534;

const AUDIT = `# the base: DNS settings and the resolver; suggest appends the rest
mode: audit
tamper: alert
dns:
  guard: true          # no rule names a domain yet: DNS is observed only with the guard on
  upstreams: [${HOSTS.dns4}]
rules:
  - name: resolver
    to: [${HOSTS.dns4}]
    ports: [53]
`;

interface Answer {
  name: string;
  rcode?: number;
  answers?: string[];
  connect?: string;
}

describe('integration: audit, suggest, check, enforce', () => {
  let w: World;
  let daemon: ChildProcess;

  const dnsq = async (...args: string[]): Promise<Answer> => {
    const r = await w.exec([process.execPath, DNSQ, '--server', HOSTS.dns4, ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as Answer;
  };
  /** The workload: every connection must succeed on its first try. */
  const workload = async (): Promise<string[]> => {
    const failures: string[] = [];
    for (const [name, type] of [['api.sluice.test', 'A'], ['www.sluice.test', 'A'], ['api.sluice.test', 'AAAA'], ['r1.race.sluice.test', 'A'], ['r2.race.sluice.test', 'A'], ['r3.race.sluice.test', 'A']] as const) {
      const a = await dnsq('--name', name, '--type', type, '--connect', '443');
      if (a.connect !== 'ok') failures.push(`${name} ${type}: ${JSON.stringify(a)}`);
    }
    // A name resolved and never connected to (a health check, a probe): it must still resolve once enforced.
    // The zone's apex: no sibling wildcard (*.sluice.test) covers it.
    const only = await dnsq('--name', 'sluice.test');
    if (only.rcode !== 0 || !only.answers?.includes(HOSTS.net3)) failures.push(`sluice.test: ${JSON.stringify(only)}`);
    const udp = await w.probe([`udp:${HOSTS.other4}:123`], { uid: NOBODY });
    if (!udp[0]?.ok) failures.push(`udp 123 as ${NOBODY}: ${JSON.stringify(udp)}`);
    return failures;
  };

  before(async () => {
    // The apex gets an address (a served host the workload never connects to).
    w = await World.create({ dns: true, dnsZone: `${testZone()}@ 300 IN A ${HOSTS.net3}\n` });
    await w.addLocalRange('198.18.20.0/24');
    daemon = await w.startDaemon(w.policy(AUDIT, 'audit.yaml'));
  });
  after(async () => {
    await w?.destroy();
  });

  it('the suggestion from audit mode checks clean and, enforced, lets the workload through and nothing new', async () => {
    assert.deepEqual(await workload(), [], 'audit mode blocks nothing');
    await waitFor('the workload\'s events', async () => {
      const ev = await logEvents(w);
      return ev.some((e) => e.dst === HOSTS.other4 && e.dport === 123) && ev.some((e) => e.dst === '198.18.20.3') ? ev : undefined;
    });
    await sleep(1000);
    const events = await logEvents(w);
    assert.ok(events.some((e) => e.hostname === 'www.sluice.test'), 'the CNAME\'d name names its address');

    const out = join(w.tmp, 'suggested.yaml');
    const s = await w.sluice(['suggest', '--since', '1h', '--out', out]);
    assert.equal(s.code, 0, s.stdout + s.stderr);
    const text = readFileSync(out, 'utf8');
    assert.ok(text.startsWith('# the base'), 'the applied policy is the base; its comment is kept');
    assert.doesNotMatch(text, /198\.18\.1\.10|198\.18\.1\.11|2001:db8:1::10|198\.18\.20\./, 'names, not the addresses they resolved to');
    assert.match(text, /users:\n\s+- 65534/, 'the UDP query, for its user');
    assert.match(text, /- name: resolve-only\n\s+to:\n\s+- sluice\.test #.*\n\s+interfaces:\n\s+- lo\n/, 'the name resolved but never connected to: it resolves, nothing is opened');
    type Check = { wouldBreak: { events: number; lookups: number; flows: unknown[]; names: { name: string; lookups: number }[] }; wouldBlock: { events: number }; resolved: { lookups: number } };
    const check = await w.sluiceJson<Check>(['suggest', '--check', out, '--since', '1h']);
    assert.equal(check.code, 0, JSON.stringify(check.json));
    assert.equal(check.json.wouldBreak.events, 0);
    assert.equal(check.json.wouldBreak.lookups, 0, 'every name resolved in the window resolves under the suggestion');
    assert.ok(check.json.resolved.lookups >= 7, JSON.stringify(check.json.resolved));
    // The base policy (no name rules) refuses them all, the name only resolved among them.
    const base = await w.sluiceJson<Check>(['suggest', '--check', join(w.tmp, 'audit.yaml'), '--since', '1h']);
    assert.equal(base.code, 1);
    assert.ok(base.json.wouldBreak.names.some((n) => n.name === 'sluice.test' && n.lookups >= 1), JSON.stringify(base.json.wouldBreak.names));

    const enforce = w.policy(text.replace('mode: audit', 'mode: enforce'), 'enforce.yaml');
    const applied = await w.sluice(['apply', enforce]);
    assert.equal(applied.code, 0, applied.stderr);
    await sleep(500);
    assert.deepEqual(await workload(), [], 'enforced, the same workload succeeds on the first try (the name only resolved included)');
    assert.notEqual((await dnsq('--name', 'sluice.test', '--connect', '443')).connect, 'ok', 'the resolve-only rule opens nothing');

    // Nothing new: another port, another host, an unlisted name, the UDP query from another user.
    assert.notEqual((await dnsq('--name', 'api.sluice.test', '--connect', '8443')).connect, 'ok', 'a new port');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.net3}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.net3}:443`]: false }, 'a new host');
    assert.equal((await dnsq('--name', 'unlisted.evil.example')).rcode, 3, 'an unlisted name is refused');
    const root = await w.probe([`udp:${HOSTS.other4}:123`], { timeoutMs: 800 });
    assert.equal(root[0]?.ok, false, 'the time query from another user');
  });
});
