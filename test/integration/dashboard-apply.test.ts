/**
 * Integration: "allow this" from the dashboard, all the way to the kernel.
 * `sluice daemon` enforces in the world's client namespace with the
 * dashboard on; a client signs in with the link, a real connect is
 * blocked, and the narrowest step of its ladder is applied through
 * POST /api/allow/apply: the same connect then succeeds. The apply is
 * `sluice apply --confirm`'s: the policy file stays as it was until
 * POST /api/confirm writes the candidate over it (and the daemon's file
 * watch, finding the applied hash, does nothing); without a confirmation
 * the rollback timer restores the policy before it. Written as the attacks
 * too: no CSRF token, a foreign Origin, a stale hash, each refused with
 * nothing changed. The journal names who did it.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NODE, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';
import type { HttpOutcome } from '../support/dashboard-http.js';

const HELPER = join(ROOT, 'dist/test/support/dashboard-http.js');
const PORT = 9330;
const HOST = `127.0.0.1:${PORT}`;
const ORIGIN = `http://${HOST}`;

const POLICY = `# the operator's own comment stays
mode: enforce
dashboard:
  listen: ${HOST}
rules:
  - name: web
    to: [${HOSTS.api4}]
    ports: [443/tcp]
`;

type Got = HttpOutcome;

type Ladder = { applied: string; steps: { id: string; title: string; diff: string; rule: { name: string } }[] };

describe('integration: applying "allow this" from the dashboard', () => {
  let w: World;
  let daemon: ChildProcess;
  let policyFile: string;
  let cookie: string;
  let csrf: string;

  before(async () => {
    w = await World.create();
    policyFile = w.policy(POLICY);
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', policyFile, '--metrics', 'off'], { env: w.env(), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
  });
  after(async () => {
    await w?.destroy();
  });

  const http = async (path: string, opts: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Got> => {
    const spec = { port: PORT, path, method: opts.method ?? 'GET', headers: { host: HOST, ...opts.headers }, ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body) } : {}) };
    const r = await w.exec([NODE, HELPER, JSON.stringify(spec)]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim()) as Got;
  };
  const json = <T>(g: Got): T => JSON.parse(g.body ?? '{}') as T;
  const signed = () => ({ cookie, origin: ORIGIN, 'x-sluice-csrf': csrf, 'content-type': 'application/json' });
  const journal = () =>
    readFileSync(join(w.stateDir, 'journal.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const applied = async () => json<{ applied: { sha256: string } | null; pending: { secondsLeft: number } | null }>(await http('/api/policy', { headers: { cookie } }));
  const reach = async (port: number) => (await w.reach([`tcp:${HOSTS.other4}:${port}`], { timeoutMs: 800 }))[`tcp:${HOSTS.other4}:${port}`];

  /** A blocked connect to other4:PORT, its stored event and its ladder. */
  const blockedLadder = async (port: number): Promise<{ id: number; ladder: Ladder }> => {
    assert.equal(await reach(port), false, `${HOSTS.other4}:${port} is blocked to begin with`);
    const ev = await waitFor(`the blocked connect to ${port} in the store`, async () => {
      const r = json<{ events?: { id: number; dst: string; dport?: number }[] }>(await http('/api/events?verdict=blocked&since=5m', { headers: { cookie } }));
      return r.events?.find((e) => e.dst === HOSTS.other4 && e.dport === port);
    });
    const l = await http(`/api/allow?event=${ev.id}`, { headers: { cookie } });
    assert.equal(l.status, 200, l.body);
    return { id: ev.id, ladder: json<Ladder>(l) };
  };

  it('signs in with the link; the CSRF token comes from a signed-in GET only', async () => {
    const token = readFileSync(join(w.stateDir, 'dashboard.token'), 'utf8').trim();
    const r = await http(`/?token=${token}`);
    assert.equal(r.status, 303);
    cookie = ([] as string[]).concat(r.headers?.['set-cookie'] ?? []).join('\n').split(';')[0] ?? '';
    assert.equal((await http('/api/session')).status, 401);
    const s = await http('/api/session', { headers: { cookie } });
    assert.equal(s.status, 200);
    csrf = json<{ csrf: string }>(s).csrf;
    assert.match(csrf, /^[A-Za-z0-9_-]{43}$/);
  });

  it('a POST without the CSRF token, or from another origin, or against a stale policy, is refused and changes nothing', async () => {
    const { id, ladder } = await blockedLadder(443);
    const before = await applied();
    const lines = journal().length;
    const body = { event: id, step: ladder.steps[0]?.id, applied: ladder.applied, confirm: 120 };
    const noCsrf = await http('/api/allow/apply', { method: 'POST', headers: { cookie, origin: ORIGIN, 'content-type': 'application/json' }, body });
    assert.equal(noCsrf.status, 403, noCsrf.body);
    const foreign = await http('/api/allow/apply', { method: 'POST', headers: { ...signed(), origin: `http://127.0.0.1:${PORT + 1}` }, body });
    assert.equal(foreign.status, 403, foreign.body);
    const noCookie = await http('/api/allow/apply', { method: 'POST', headers: { origin: ORIGIN, 'x-sluice-csrf': csrf, 'content-type': 'application/json' }, body });
    assert.equal(noCookie.status, 401);
    const stale = await http('/api/allow/apply', { method: 'POST', headers: signed(), body: { ...body, applied: 'f'.repeat(64) } });
    assert.equal(stale.status, 409, stale.body);
    const unknown = await http('/api/allow/apply', { method: 'POST', headers: signed(), body: { ...body, step: 'zone' } });
    assert.equal(unknown.status, 400, 'a step the ladder does not offer (an address has no zone)');
    assert.deepEqual(await applied(), before);
    assert.equal(journal().length, lines, 'not a line in the journal');
    assert.equal(readFileSync(policyFile, 'utf8'), POLICY);
    assert.equal(await reach(443), false, 'still blocked');
  });

  it('the narrowest step applied: the connect succeeds; the policy file waits for the confirmation; confirmed, it holds the new policy, comments kept, and the daemon does not reload', async () => {
    const { id, ladder } = await blockedLadder(443);
    const narrowest = ladder.steps[0];
    assert.ok(narrowest, 'a step is offered');
    assert.equal(narrowest.title, `user root (uid 0) to ${HOSTS.other4} on 443/tcp`);
    assert.match(narrowest.diff, new RegExp(`^\\+\\s+- ${HOSTS.other4.replace(/\./g, '\\.')}$`, 'm'));
    const before = (await applied()).applied?.sha256;
    const r = await http('/api/allow/apply', { method: 'POST', headers: signed(), body: { event: id, step: narrowest.id, applied: ladder.applied, confirm: 120 } });
    assert.equal(r.status, 200, r.body);
    const a = json<{ applied: boolean; sha256: string; confirmBy: string }>(r);
    assert.equal(a.applied, true);
    assert.notEqual(a.sha256, before);
    assert.equal(await reach(443), true, 'the same connect now succeeds');
    assert.equal(await reach(8443), false, 'and only it: another port is still blocked');
    assert.equal(readFileSync(policyFile, 'utf8'), POLICY, 'the policy file is not touched before the confirmation');
    const p = await applied();
    assert.equal(p.applied?.sha256, a.sha256);
    assert.ok(p.pending && p.pending.secondsLeft > 60, JSON.stringify(p.pending));

    const line = journal().reverse().find((e) => e.event === 'apply');
    const by = line?.by as Record<string, unknown>;
    assert.equal(by.via, 'dashboard');
    assert.equal(by.auth, 'session');
    assert.match(String(by.remote), /^127\.0\.0\.1:\d+$/);
    assert.equal(by.peer, 'uid:0');
    assert.equal(by.event, id);
    assert.equal(line?.sha256, a.sha256);
    assert.equal(line?.previous, before);
    assert.match(String(line?.diff), new RegExp(`\\+\\s+- ${HOSTS.other4.replace(/\./g, '\\.')}`));

    // A second step within the same window (another blocked port): one confirmation keeps both, and
    // the file, untouched so far, still may be written.
    const second = await blockedLadder(8080);
    assert.equal(second.ladder.applied, a.sha256, 'computed on the policy waiting for confirmation');
    const r2 = await http('/api/allow/apply', { method: 'POST', headers: signed(), body: { event: second.id, step: second.ladder.steps[0]?.id, applied: second.ladder.applied, confirm: 120 } });
    assert.equal(r2.status, 200, r2.body);
    assert.equal(await reach(8080), true);
    const c = await http('/api/confirm', { method: 'POST', headers: signed(), body: {} });
    assert.equal(c.status, 200, c.body);
    assert.deepEqual(json<{ wroteBack: unknown }>(c).wroteBack, { file: policyFile, written: true });
    const text = readFileSync(policyFile, 'utf8');
    assert.ok(text.startsWith(POLICY.trimEnd().split('\n')[0] ?? 'x'), 'the comment and the order kept');
    assert.ok(text.includes(HOSTS.other4));
    assert.match(text, /ports:\n\s+- 443\/tcp[\s\S]*ports:\n\s+- 8080\/tcp/, 'both steps');
    const final = json<{ sha256: string }>(r2).sha256;
    const confirmLine = journal().reverse().find((e) => e.event === 'confirm');
    assert.equal((confirmLine?.by as Record<string, unknown>).via, 'dashboard');
    assert.equal((await applied()).pending, null);
    // The file watch settles in 300 ms and reads after 300 more: give it well over that, then look.
    await new Promise((res) => setTimeout(res, 2_000));
    assert.ok(!journal().some((e) => e.event === 'reload' && Date.parse(String(e.at)) > Date.parse(String(confirmLine?.at))), 'the file holds the applied policy: nothing to reload');
    assert.equal((await applied()).applied?.sha256, final);
    assert.equal(await reach(443), true, 'still allowed');
  });

  it('without a confirmation the rollback restores the policy before it, in the kernel and in the state; the policy file is never touched', async () => {
    const { id, ladder } = await blockedLadder(8443);
    const before = (await applied()).applied?.sha256;
    const fileBefore = readFileSync(policyFile, 'utf8');
    const r = await http('/api/allow/apply', { method: 'POST', headers: signed(), body: { event: id, step: ladder.steps[0]?.id, applied: ladder.applied, confirm: 3 } });
    assert.equal(r.status, 200, r.body);
    assert.equal(await reach(8443), true, 'allowed while it waits for confirmation');
    await waitFor('the rollback', async () => ((await applied()).applied?.sha256 === before ? true : undefined), 20_000);
    assert.equal((await applied()).pending, null);
    assert.equal(await reach(8443), false, 'blocked again');
    assert.equal(await reach(443), true, 'the confirmed change before it stays');
    assert.equal(readFileSync(policyFile, 'utf8'), fileBefore);
    const rolled = journal().filter((e) => e.event === 'rollback' && e.restored === before);
    assert.equal(rolled.length, 1, 'the rollback is journaled');
    // Nobody asked for it: the journal says the confirmation timer did (the timer process or the daemon's own watch, whichever came first).
    assert.equal((rolled[0]?.by as { via?: string } | undefined)?.via, 'confirm-timer', JSON.stringify(rolled[0]));
  });

  it('the Policy page lists the versions with who made them and their diffs; "roll back to this one" takes the same confirmation path', async () => {
    const page = json<{ applied: { sha256: string }; versions: { event: string; sha256: string | null; by: Record<string, unknown> | null; diff?: string | null; kept?: boolean }[] }>(await http('/api/policy', { headers: { cookie } }));
    const fromDashboard = page.versions.filter((v) => v.event === 'apply' && v.by?.via === 'dashboard');
    assert.equal(fromDashboard.length, 3);
    assert.ok(fromDashboard.every((v) => typeof v.diff === 'string' && v.diff.includes(HOSTS.other4)));
    const first = page.versions.find((v) => v.event === 'daemon-start' || (v.by?.via !== 'dashboard' && v.sha256 !== null && v.sha256 !== page.applied.sha256 && v.kept));
    assert.ok(first?.sha256, JSON.stringify(page.versions.map((v) => [v.event, v.sha256?.slice(0, 8)])));
    const bad = await http('/api/policy/rollback', { method: 'POST', headers: { cookie, origin: ORIGIN, 'content-type': 'application/json' }, body: { to: first.sha256, applied: page.applied.sha256 } });
    assert.equal(bad.status, 403, 'no CSRF token');
    const r = await http('/api/policy/rollback', { method: 'POST', headers: signed(), body: { to: first.sha256, applied: page.applied.sha256, confirm: 3 } });
    assert.equal(r.status, 200, r.body);
    assert.equal(await reach(443), false, 'the first version blocks it again');
    await waitFor('the rollback of the rollback', async () => ((await applied()).applied?.sha256 === page.applied.sha256 ? true : undefined), 20_000);
    assert.equal(await reach(443), true);
    assert.ok(daemon.exitCode === null, 'the daemon is alive');
  });
});
