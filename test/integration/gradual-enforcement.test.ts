/**
 * Integration: gradual enforcement in the real kernel. A policy that
 * enforces with one user (uid 65534) in audit: that user reaches a
 * destination the policy blocks, and the daemon records it as would-block
 * naming the scope, while root to the same destination is refused. Then the
 * reverse: a policy in audit with uid 65534 enforced. And a deny rule in
 * audit by its own mode: recorded, and the rest of the policy decides.
 * Addresses only in 198.18.0.0/15; everything inside the world's namespaces.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { logEvents, NODE, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, stopChild, World, type ProbeResult } from '../world/world.js';

const NOBODY = 65534;
const t = (h: string, port: number) => `tcp:${h}:${port}`;

/** One connection attempt from the client namespace, as root or (setpriv, no groups) as uid 65534. */
async function attempt(w: World, target: string, uid?: number): Promise<ProbeResult> {
  const as = uid === undefined ? [] : ['setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
  const r = await w.exec([...as, NODE, join(ROOT, 'dist/test/world/probe.js'), '--timeout', '1500', target]);
  assert.equal(r.code, 0, r.stderr);
  const line = r.stdout.trim().split('\n')[0];
  assert.ok(line, `probe printed nothing: ${r.stderr}`);
  return JSON.parse(line) as ProbeResult;
}

/** Events to the destination and port, once `want` holds for them (the daemon writes in batches). */
async function eventsTo(w: World, dst: string, dport: number, want: (es: StoredEvent[]) => boolean): Promise<StoredEvent[]> {
  return waitFor(`events to ${dst}:${dport}`, async () => {
    const es = (await logEvents(w)).filter((e) => e.dst === dst && e.dport === dport);
    return want(es) ? es : undefined;
  });
}

describe('integration: gradual enforcement (scopes and a deny rule\'s own mode)', () => {
  let w: World;
  let daemon: ChildProcess | undefined;

  const startDaemon = async (policy: string) => {
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', policy], { env: w.env({ SLUICE_EBPF: 'off' }), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
  };

  before(async () => {
    w = await World.create({ dns: true });
  });
  after(async () => {
    await stopChild(daemon);
    await w?.destroy();
  });

  it('enforce, with uid 65534 in audit: it reaches a blocked host (would-block, scope named); root is refused', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp]
  - name: net
    to: [${HOSTS.meta4}]
    ports: [80/tcp]
  - name: meta-trial
    action: deny
    to: [${HOSTS.meta4}]
    mode: audit
scopes:
  - name: nobody-trial
    mode: audit
    users: [${NOBODY}]
`);
    await startDaemon(policy);
    const root = await attempt(w, t(HOSTS.other4, 443));
    assert.equal(root.ok, false, 'root to a host no rule allows is refused');
    assert.equal(root.error, 'ECONNREFUSED', 'refused at once (reject)');
    const nobody = await attempt(w, t(HOSTS.other4, 443), NOBODY);
    assert.equal(nobody.ok, true, `uid 65534 is in an audit scope: its connection goes through (${JSON.stringify(nobody)})`);
    assert.equal((await attempt(w, t(HOSTS.api4, 443))).ok, true, 'what the policy allows still works for root');

    const es = await eventsTo(w, HOSTS.other4, 443, (x) => x.some((e) => e.verdict === 'would-block') && x.some((e) => e.verdict === 'blocked'));
    const wb = es.filter((e) => e.verdict === 'would-block');
    assert.ok(wb.every((e) => e.uid === NOBODY && e.rule === '#default' && e.scope === 'nobody-trial'), `would-block events are uid 65534's, by the default, in scope nobody-trial: ${JSON.stringify(wb)}`);
    const blocked = es.filter((e) => e.verdict === 'blocked');
    assert.ok(blocked.every((e) => e.uid === 0 && e.rule === '#default' && e.scope === undefined), `blocked events are root's, with no scope: ${JSON.stringify(blocked)}`);

    // A deny rule in audit by its own mode: recorded as would-block, and the allow rule after it decides.
    const meta = await attempt(w, t(HOSTS.meta4, 80));
    assert.equal(meta.ok, true, 'the audit-mode deny rule lets the packet on; rule net allows it');
    const metaEvents = await eventsTo(w, HOSTS.meta4, 80, (x) => x.some((e) => e.verdict === 'would-block'));
    assert.ok(metaEvents.some((e) => e.verdict === 'would-block' && e.rule === 'meta-trial' && e.scope === '#rule' && e.uid === 0), JSON.stringify(metaEvents));

    // Text log and status name the scope.
    const text = await w.sluice(['log', '--verdict', 'would-block']);
    assert.match(text.stdout, /scope=nobody-trial/);
    const status = await w.sluice(['status']);
    assert.match(status.stdout, /scope nobody-trial: audit \(uid 65534\)/);
    assert.match(status.stdout, /deny rule meta-trial: audit/);
  });

  it('the reverse: audit, with uid 65534 enforced: it is refused (blocked, scope named); root reaches the host', async () => {
    await stopChild(daemon);
    daemon = undefined;
    const policy = w.policy(
      `
mode: audit
rules:
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp]
scopes:
  - name: nobody-first
    mode: enforce
    users: [${NOBODY}]
`,
      'reverse.yaml',
    );
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr);
    await startDaemon(policy);
    const before = (await logEvents(w)).length;
    const nobody = await attempt(w, t(HOSTS.other4, 8080), NOBODY);
    assert.equal(nobody.ok, false, 'uid 65534 is enforced: refused');
    assert.equal(nobody.error, 'ECONNREFUSED');
    assert.equal((await attempt(w, t(HOSTS.api4, 443), NOBODY)).ok, true, 'what the policy allows works for the enforced user');
    const root = await attempt(w, t(HOSTS.other4, 8080));
    assert.equal(root.ok, true, 'root is audited: it goes through');
    await sleep(200);
    const es = await eventsTo(w, HOSTS.other4, 8080, (x) => x.some((e) => e.verdict === 'blocked') && x.some((e) => e.verdict === 'would-block'));
    assert.ok((await logEvents(w)).length > before);
    assert.ok(es.filter((e) => e.verdict === 'blocked').every((e) => e.uid === NOBODY && e.scope === 'nobody-first'), JSON.stringify(es));
    assert.ok(es.filter((e) => e.verdict === 'would-block').every((e) => e.uid === 0 && e.scope === undefined), JSON.stringify(es));
  });

  it('a service in an audit scope: sockets made in its cgroup go through; another cgroup, a look-alike in a user manager\'s subtree and root outside are refused', async () => {
    await stopChild(daemon);
    daemon = undefined;
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required for service scopes');
    const unit = `sluice-trial-${process.pid}.service`;
    const svcDir = w.makeCgroup(root, `${w.id}.slice/${unit}`);
    const otherDir = w.makeCgroup(root, `${w.id}.slice/other-${process.pid}.service`);
    // A directory named like the unit inside a user manager's subtree: never taken for the service.
    const lookAlike = w.makeCgroup(root, `${w.id}.slice/user@${NOBODY}.service/${unit}`);
    const policy = w.policy(
      `
mode: enforce
rules:
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp]
scopes:
  - name: svc-trial
    mode: audit
    services: [${unit}]
`,
      'service.yaml',
    );
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.doesNotMatch(applied.stdout + applied.stderr, /no cgroup/);
    const target = t(HOSTS.other4, 80);
    assert.equal((await w.reach([target], { cgroup: svcDir }))[target], true, 'a socket of the audited service goes through');
    assert.equal((await w.reach([target], { cgroup: otherDir }))[target], false, 'another service is enforced');
    assert.equal((await w.reach([target], { cgroup: lookAlike }))[target], false, 'a look-alike cgroup is not the service');
    assert.equal((await w.reach([target]))[target], false, 'outside any service: enforced');
    const counters = await w.nft(['list', 'chain', 'inet', 'sluice', 'default_block']);
    assert.match(counters, /sluice:W:#default@svc-trial/, 'the scope\'s record is in the kernel');
  });

  it('a service in an audit scope gets its unlisted names answered by the guard (the kernel marks its queries); a look-alike cgroup and root outside get NXDOMAIN', async () => {
    await stopChild(daemon);
    daemon = undefined;
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required for service scopes');
    const unit = `sluice-dnstrial-${process.pid}.service`;
    const svcDir = w.makeCgroup(root, `${w.id}.slice/${unit}`);
    const lookAlike = w.makeCgroup(root, `${w.id}.slice/user@${NOBODY}.service/${unit}`);
    const policy = w.policy(
      `
mode: enforce
dns:
  upstreams: [${HOSTS.dns4}]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp]
scopes:
  - name: nobody-trial
    mode: audit
    users: [${NOBODY}]
  - name: svc-dns
    mode: audit
    services: [${unit}]
`,
      'service-dns.yaml',
    );
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    await startDaemon(policy);
    const ask = async (cgroup?: string) => {
      const r = await w.exec([NODE, join(ROOT, 'dist/test/world/dnsq.js'), ...(cgroup ? ['--cgroup', cgroup] : []), '--name', 'a.cdn.sluice.test', '--timeout', '3000']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as { rcode?: number; answers?: string[]; error?: string };
    };
    const svc = await ask(svcDir);
    assert.equal(svc.rcode, 0, `the audited service is answered: ${JSON.stringify(svc)}`);
    assert.ok((svc.answers ?? []).length > 0, JSON.stringify(svc));
    assert.equal((await ask(lookAlike)).rcode, 3, 'a look-alike cgroup is enforced: NXDOMAIN');
    assert.equal((await ask()).rcode, 3, 'root outside the service: NXDOMAIN');
  });

  it("an audit policy with uid 65534 enforced: that user's DNS goes through the guard (an unlisted name refused, an allowed one open before its answer: 50 fresh resolve-then-connect pairs all connect); root's DNS is untouched", async () => {
    await stopChild(daemon);
    daemon = undefined;
    await w.addLocalRange('198.18.20.0/24');
    const policy = w.policy(
      `
mode: audit
dns:
  upstreams: [${HOSTS.dns4}]
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: web
    to: [api.sluice.test, "*.race.sluice.test"]
    ports: [443/tcp]
scopes:
  - name: nobody-enforced
    mode: enforce
    users: [${NOBODY}]
`,
      'audit-scope-dns.yaml',
    );
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    await startDaemon(policy);
    const q = async (uid: number | undefined, ...args: string[]) => {
      const r = await w.exec([NODE, join(ROOT, 'dist/test/world/dnsq.js'), '--timeout', '3000', ...args], { ...(uid !== undefined ? { uid } : {}), timeoutMs: 120_000 });
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { name: string; rcode?: number; answers?: string[]; connect?: string; error?: string });
    };
    const [refused] = await q(NOBODY, '--name', 'a.cdn.sluice.test');
    assert.equal(refused?.rcode, 3, `the enforced user's unlisted name is refused by the guard: ${JSON.stringify(refused)}`);
    const pairs = await q(NOBODY, '--repeat-names', 'r{i}.race.sluice.test', '--count', '50', '--connect', '443');
    assert.equal(pairs.length, 50);
    assert.deepEqual(pairs.filter((r) => r.connect !== 'ok'), [], 'the guard opened each address before its answer: no connect raced it');
    const [root] = await q(undefined, '--name', 'a.cdn.sluice.test');
    assert.equal(root?.rcode, 0, `root (audit) asks the upstream itself and gets the answer: ${JSON.stringify(root)}`);
    assert.deepEqual(root?.answers, ['198.18.1.12']);
  });
});
