/**
 * Unit tier: the dashboard's state-changing requests, written as the
 * attacks on them. A forged request (the cookie rides along, the CSRF token
 * does not; or another Origin) never reaches the code that applies; hostile
 * bodies (wrong types, unknown fields, huge, not JSON, not UTF-8, an
 * unknown step) are refused before it; the CSRF token is tied to the
 * dashboard's token and compared in constant time. Plus the pieces the
 * apply path is made of: the diff, the candidate request, and the
 * confirmation that writes the candidate over the policy file only when
 * nobody edited it meanwhile.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { dashboardApp, type DashboardSources, type DashboardWho, type Outcome } from '../../src/daemon/dashboard-app.js';
import { BODY_FIELDS, parseApplyBody, parseConfirmBody, parseRollbackBody, MAX_BODY_BYTES } from '../../src/daemon/dashboard-apply.js';
import { DashboardCredentials, newToken } from '../../src/daemon/dashboard-auth.js';
import { LiveHub } from '../../src/daemon/dashboard-live.js';
import { textDiff } from '../../src/policy/text-diff.js';
import { parseCandidateRequest, writeCandidate } from '../../src/state/candidate-request.js';
import { confirmPending } from '../../src/state/confirm-pending.js';
import { StateStore } from '../../src/state/state-store.js';
import { apply } from '../../src/cli/commands/apply.js';
import { Context } from '../../src/cli/context.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';

const LISTEN = { host: '127.0.0.1', port: 9330 };
const TOKEN = newToken();
const creds = new DashboardCredentials(TOKEN, LISTEN.port);
const SHA = 'a'.repeat(64);
const ORIGIN = 'http://127.0.0.1:9330';

describe('unit: dashboard CSRF token', () => {
  it('is derived from the token: the same for the same token, another for another, never the cookie or the token', () => {
    assert.equal(new DashboardCredentials(TOKEN, 9330).csrf, creds.csrf);
    assert.notEqual(new DashboardCredentials(newToken(), 9330).csrf, creds.csrf);
    assert.notEqual(creds.csrf, creds.session);
    assert.notEqual(creds.csrf, TOKEN);
    assert.match(creds.csrf, /^[A-Za-z0-9_-]{43}$/);
  });

  it('matches only itself (and never a non-string, an empty or a huge value)', () => {
    assert.equal(creds.csrfMatches(creds.csrf), true);
    for (const bad of [creds.csrf.slice(0, -1), `${creds.csrf}x`, creds.session, TOKEN, '', undefined, null, 'x'.repeat(100_000)]) assert.equal(creds.csrfMatches(bad), false, String(bad).slice(0, 20));
  });
});

describe('unit: dashboard request bodies (hostile input)', () => {
  const good = { event: 7, step: 'sender-name', applied: SHA };
  it('a good apply body, with the default confirmation window', () => {
    assert.deepEqual(parseApplyBody(JSON.stringify(good)), { ok: true, value: { ...good, confirm: 120 } });
    assert.deepEqual(parseApplyBody(JSON.stringify({ ...good, confirm: 30 })), { ok: true, value: { ...good, confirm: 30 } });
  });

  it('wrong types, unknown steps and fields, bad hashes, out-of-range numbers: refused with the field named', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...good, event: '7' }, /event/],
      [{ ...good, event: 7.5 }, /event/],
      [{ ...good, event: -1 }, /event/],
      [{ ...good, event: 1e12 }, /event/],
      [{ ...good, step: 'everything' }, /step/],
      [{ ...good, step: ['name'] }, /step/],
      [{ ...good, applied: SHA.toUpperCase() }, /applied/],
      [{ ...good, applied: SHA.slice(1) }, /applied/],
      [{ ...good, confirm: 0 }, /confirm/],
      [{ ...good, confirm: 86_400 }, /confirm/],
      [{ ...good, confirm: '120' }, /confirm/],
      [{ ...good, policy: 'mode: audit' }, /unknown field: "policy"/],
      [{ ...good, __proto__: { x: 1 }, constructor: 1 }, /unknown field/],
      [{ event: 7, step: 'name' }, /applied/],
      [[good], /JSON object/],
      [null, /JSON object/],
      ['x', /JSON object/],
    ];
    for (const [body, why] of cases) {
      const r = parseApplyBody(JSON.stringify(body));
      assert.equal(r.ok, false, JSON.stringify(body));
      if (!r.ok) assert.match(r.error, why, JSON.stringify(body));
    }
    assert.equal(parseApplyBody('{"event": 7,').ok, false);
    assert.equal(parseApplyBody('{"__proto__": {"event": 7}, "step": "name", "applied": "' + SHA + '"}').ok, false, 'a __proto__ key is an unknown field, not a prototype');
  });

  it('rollback and confirm bodies', () => {
    assert.deepEqual(parseRollbackBody(JSON.stringify({ to: SHA, applied: 'b'.repeat(64) })), { ok: true, value: { to: SHA, applied: 'b'.repeat(64), confirm: 120 } });
    assert.equal(parseRollbackBody(JSON.stringify({ to: '../../etc/passwd', applied: SHA })).ok, false, 'a version is a hash, never a path');
    assert.equal(parseConfirmBody('').ok, true);
    assert.equal(parseConfirmBody('{}').ok, true);
    assert.equal(parseConfirmBody('{"token": "x"}').ok, false);
  });
});

describe('unit: dashboard POST endpoints (CSRF, Origin, bodies)', () => {
  const calls: { req: unknown; who: DashboardWho }[] = [];
  const sources: DashboardSources = {
    status: () => ({}),
    events: () => [],
    stats: () => null,
    timeline: () => [],
    explain: () => ({ ok: true, value: {} }),
    applyStep: (req, who): Outcome => {
      calls.push({ req, who });
      return req.applied === SHA ? { status: 200, body: { applied: true } } : { status: 409, body: { error: 'stale' } };
    },
    rollbackTo: (req, who): Outcome => {
      calls.push({ req, who });
      return { status: 200, body: { applied: true } };
    },
    confirm: (who): Outcome => {
      calls.push({ req: 'confirm', who });
      return { status: 200, body: { confirmed: true } };
    },
  };
  const live = new LiveHub({ maxClients: 1, queueMax: 10, flushMs: 50, heartbeatMs: 1000 });
  after(() => live.close());
  let peer = 'uid 0';
  const app = dashboardApp({ listen: LISTEN, credentials: creds, sources, live, assets: { html: '', js: '', css: '' }, peerOf: () => peer, remoteOf: () => '127.0.0.1:5555' });
  const cookie = `${creds.cookieName}=${creds.session}`;
  const post = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
    app.request(`${ORIGIN}${path}`, { method: 'POST', body, headers: { host: '127.0.0.1:9330', 'content-type': 'application/json', ...headers } });
  const signed = { cookie, origin: ORIGIN, 'x-sluice-csrf': creds.csrf };
  const body = JSON.stringify({ event: 1, step: 'sender-name', applied: SHA });

  it('a cookie presented by a local user that never signed in with the link reads, but changes nothing (a cookie leaked to another port of this host)', async () => {
    calls.length = 0;
    peer = 'uid 1000';
    assert.equal((await app.request(`${ORIGIN}/api/session`, { headers: { host: '127.0.0.1:9330', cookie } })).status, 200, 'reads');
    for (const path of ['/api/allow/apply', '/api/confirm', '/api/policy/rollback']) assert.equal((await post(path, body, signed)).status, 403, path);
    assert.equal(calls.length, 0);
    // Signed in with the link (which holds the token), the same user may.
    assert.equal((await app.request(`${ORIGIN}/?token=${TOKEN}`, { headers: { host: '127.0.0.1:9330' } })).status, 303);
    assert.equal((await post('/api/allow/apply', body, signed)).status, 200);
    peer = 'uid 0';
    assert.equal((await app.request(`${ORIGIN}/?token=${TOKEN}`, { headers: { host: '127.0.0.1:9330' } })).status, 303);
  });

  it('GET /api/session gives the CSRF token to a signed-in request only', async () => {
    const none = await app.request(`${ORIGIN}/api/session`, { headers: { host: '127.0.0.1:9330' } });
    assert.equal(none.status, 401);
    assert.ok(!(await none.text()).includes(creds.csrf));
    const r = await app.request(`${ORIGIN}/api/session`, { headers: { host: '127.0.0.1:9330', cookie } });
    assert.deepEqual(await r.json(), { csrf: creds.csrf, auth: 'session' });
  });

  it('no CSRF token, a wrong one, the cookie value as one, a foreign or missing Origin, no cookie: refused, and nothing reaches the apply', async () => {
    calls.length = 0;
    const refusals: [Record<string, string>, number][] = [
      [{ cookie, origin: ORIGIN }, 403],
      [{ cookie, origin: ORIGIN, 'x-sluice-csrf': 'x' }, 403],
      [{ cookie, origin: ORIGIN, 'x-sluice-csrf': creds.session }, 403],
      [{ cookie, origin: 'http://127.0.0.1:9331', 'x-sluice-csrf': creds.csrf }, 403],
      [{ cookie, origin: 'null', 'x-sluice-csrf': creds.csrf }, 403],
      [{ cookie, 'x-sluice-csrf': creds.csrf }, 403],
      [{ origin: ORIGIN, 'x-sluice-csrf': creds.csrf }, 401],
    ];
    for (const path of ['/api/allow/apply', '/api/confirm', '/api/policy/rollback']) {
      for (const [headers, status] of refusals) assert.equal((await post(path, body, headers)).status, status, `${path} ${JSON.stringify(headers)}`);
    }
    assert.equal(calls.length, 0);
  });

  it('a signed-in same-origin request with the token reaches the apply, which learns who asked', async () => {
    calls.length = 0;
    const r = await post('/api/allow/apply', body, signed);
    assert.equal(r.status, 200);
    assert.deepEqual(calls[0], { req: { event: 1, step: 'sender-name', applied: SHA, confirm: 120 }, who: { via: 'dashboard', auth: 'session', peer: 'uid 0', remote: '127.0.0.1:5555' } });
    const bearer = await post('/api/allow/apply', body, { authorization: `Bearer ${TOKEN}`, origin: ORIGIN, 'x-sluice-csrf': creds.csrf });
    assert.equal(bearer.status, 200);
    assert.equal(calls[1]?.who.auth, 'dashboard token');
  });

  it('the OpenAPI document lists each POST body\'s fields exactly as its parser takes them, and the CSRF header', async () => {
    const r = await app.request(`${ORIGIN}/api/openapi.json`, { headers: { host: '127.0.0.1:9330', cookie } });
    const doc = (await r.json()) as { paths: Record<string, { post?: { parameters: { name: string; in: string }[]; requestBody: { content: { 'application/json': { schema: { properties: Record<string, unknown> } } } } } }> };
    const posts = Object.entries(doc.paths).filter(([, v]) => v.post);
    assert.deepEqual(posts.map(([k]) => k).sort(), Object.keys(BODY_FIELDS).sort());
    for (const [path, item] of posts) {
      assert.deepEqual(Object.keys(item.post?.requestBody.content['application/json'].schema.properties ?? {}).sort(), BODY_FIELDS[path as keyof typeof BODY_FIELDS]().sort(), path);
      assert.ok(item.post?.parameters.some((p) => p.name === 'X-Sluice-CSRF' && p.in === 'header'), path);
    }
  });

  it('a stale hash is the source\'s 409, passed through', async () => {
    const r = await post('/api/allow/apply', JSON.stringify({ event: 1, step: 'name', applied: 'c'.repeat(64) }), signed);
    assert.equal(r.status, 409);
  });

  it('hostile bodies: 400 (types, unknown step or field, not JSON, not UTF-8), 413 (huge, declared or streamed), 415 (not JSON by type); none reaches the apply', async () => {
    calls.length = 0;
    assert.equal((await post('/api/allow/apply', JSON.stringify({ event: 1, step: 'all-of-it', applied: SHA }), signed)).status, 400);
    assert.equal((await post('/api/allow/apply', JSON.stringify({ event: '1', step: 'name', applied: SHA }), signed)).status, 400);
    assert.equal((await post('/api/allow/apply', 'event=1&step=name', signed)).status, 400);
    assert.equal((await post('/api/allow/apply', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), signed)).status, 400);
    const huge = JSON.stringify({ event: 1, step: 'name', applied: SHA, pad: 'x'.repeat(10 * MAX_BODY_BYTES) });
    assert.equal((await post('/api/allow/apply', huge, signed)).status, 413);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 64; i++) c.enqueue(new Uint8Array(1024).fill(0x20));
        c.close();
      },
    });
    const streamed = await app.request(`${ORIGIN}/api/allow/apply`, { method: 'POST', body: stream, headers: { host: '127.0.0.1:9330', 'content-type': 'application/json', ...signed }, duplex: 'half' } as RequestInit);
    assert.equal(streamed.status, 413);
    assert.equal((await post('/api/allow/apply', body, { ...signed, 'content-type': 'text/plain' })).status, 415);
    assert.equal((await post('/api/confirm', '{"x":1}', signed)).status, 400);
    assert.equal(calls.length, 0);
    assert.equal((await post('/api/confirm', '', signed)).status, 200);
  });
});

describe('unit: policy text diff', () => {
  it('equal texts: empty; one added rule: a hunk with context and line numbers', () => {
    assert.equal(textDiff('a\nb\n', 'a\nb\n'), '');
    const d = textDiff('a\nb\nc\nd\ne\nf\n', 'a\nb\nc\nd\ne\nf\ng\n', 'x', 'y');
    assert.equal(d, '--- x\n+++ y\n@@ -4,3 +4,4 @@\n d\n e\n f\n+g\n');
    const r = textDiff('1\n2\n3\n', '1\nX\n3\n', 'x', 'y');
    assert.equal(r, '--- x\n+++ y\n@@ -1,3 +1,3 @@\n 1\n-2\n+X\n 3\n');
  });

  it('applying the diff\'s lines gives the new text back (changes far apart, from empty)', () => {
    const a = Array.from({ length: 40 }, (_, i) => `l${i}`).join('\n');
    const b = a.replace('l3', 'L3').replace('l30', 'L30\nnew');
    const d = textDiff(a, b);
    assert.equal((d.match(/^@@/gm) ?? []).length, 2);
    assert.match(textDiff('', 'x\n'), /^\+x$/m);
  });
});

describe('unit: candidate request and confirmation write-back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-cand-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const state = new StateStore(join(dir, 'state'));
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');

  it('the request file round-trips; hostile ones are refused', () => {
    const w = writeCandidate(state, 'mode: audit\n', { policyFile: '/etc/sluice/policy.yaml', expectApplied: SHA, unlessChangedFrom: SHA, confirm: 60, by: { via: 'dashboard' } });
    assert.equal(statSync(w.candidate).mode & 0o777, 0o600);
    assert.equal(statSync(w.request).mode & 0o777, 0o600);
    const r = parseCandidateRequest(readFileSync(w.request, 'utf8'), 86_400);
    assert.ok(r.ok);
    if (r.ok) assert.equal(r.value.candidate, w.candidate);
    for (const bad of ['[]', '{}', JSON.stringify({ candidate: 'rel.yaml', policyFile: '/p', expectApplied: SHA, unlessChangedFrom: null, confirm: 1, by: {} }), JSON.stringify({ candidate: '/c', policyFile: '/p', expectApplied: SHA, unlessChangedFrom: null, confirm: 0, by: {} })]) {
      assert.equal(parseCandidateRequest(bad, 86_400).ok, false, bad);
    }
  });

  it('confirming writes the candidate over the policy file (its mode kept) only when the file still holds what was applied', () => {
    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'old\n');
    chmodSync(policyFile, 0o640);
    const cand = join(dir, 'cand.yaml');
    writeFileSync(cand, 'new\n');
    const pend = (unless: string) => state.setPending({ token: 't', deadline: new Date(Date.now() + 60_000).toISOString(), previous: null, previousState: null, writeBack: { candidate: cand, policyFile, unlessChangedFrom: unless } });
    pend(sha('old\n'));
    const r = confirmPending(state, { via: 'dashboard', remote: '127.0.0.1:1' });
    assert.equal(r.confirmed, true);
    assert.deepEqual(r.wroteBack, { file: policyFile, written: true });
    assert.equal(readFileSync(policyFile, 'utf8'), 'new\n');
    assert.equal(statSync(policyFile).mode & 0o777, 0o640);
    const last = state.lastJournal();
    assert.equal(last?.event, 'confirm');
    assert.deepEqual(last?.by, { via: 'dashboard', remote: '127.0.0.1:1' });
    // Someone edited the file meanwhile: their edit stays.
    writeFileSync(policyFile, 'edited by hand\n');
    pend(sha('new\n'));
    const r2 = confirmPending(state, { via: 'cli' });
    assert.equal(r2.wroteBack?.written, false);
    assert.equal(readFileSync(policyFile, 'utf8'), 'edited by hand\n');
    assert.equal(confirmPending(state, { via: 'cli' }).confirmed, false, 'nothing pending any more');
  });

  it('readJournal returns every entry, skipping torn lines', () => {
    writeFileSync(join(state.dir, 'journal.log'), '{"event":"apply","sha256":"x"}\n{"event":"conf\n{"event":"confirm"}\n');
    assert.deepEqual(state.readJournal().map((e) => e.event), ['apply', 'confirm']);
  });
});

describe('unit: the apply of a candidate (sluice _apply-candidate), with the fake kernel', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-candapply-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const state = new StateStore(join(dir, 'state'));
  const nf = new FakeNetfilter();
  const ctx = new Context({ json: false, state, netfilter: nf });
  const policyFile = join(dir, 'policy.yaml');
  const v1 = '# mine\nmode: enforce\nrules:\n  - name: web\n    to: [198.18.1.10]\n    ports: [443/tcp]\n';
  const v2 = `${v1}  - name: more\n    to: [198.18.2.20]\n    ports: [443/tcp]\n`;
  const cand = join(dir, 'cand.yaml');
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');

  it('a stale applied hash is refused under the lock: nothing in the kernel, the state or the journal changes', async () => {
    writeFileSync(policyFile, v1);
    assert.equal(await apply(ctx, { policy: policyFile }), 0);
    const before = state.applied();
    const lines = state.readJournal().length;
    assert.equal(before?.sha256, sha(v1));
    assert.equal((state.readJournal().at(-1)?.by as Record<string, unknown>).via, 'cli', 'the CLI\'s apply names who ran it');
    writeFileSync(cand, v2);
    const code = await apply(ctx, { policy: cand, candidate: { as: policyFile, expectApplied: 'e'.repeat(64), unlessChangedFrom: sha(v1), by: { via: 'dashboard' } } });
    assert.equal(code, 1);
    assert.deepEqual(state.applied(), before);
    assert.equal(state.readJournal().length, lines);
    assert.equal(readFileSync(policyFile, 'utf8'), v1);
  });

  it('the right hash applies the candidate as the policy file (its path recorded, its file untouched), journaling who and the diff', async () => {
    const code = await apply(ctx, { policy: cand, candidate: { as: policyFile, expectApplied: sha(v1), unlessChangedFrom: sha(v1), by: { via: 'dashboard', remote: '127.0.0.1:9' } } });
    assert.equal(code, 0);
    assert.equal(state.applied()?.sha256, sha(v2));
    assert.equal(state.applied()?.policyFile, policyFile, 'the applied policy is the policy file\'s, never the candidate\'s');
    assert.equal(readFileSync(policyFile, 'utf8'), v1, 'nothing written there before a confirmation');
    const line = state.readJournal().at(-1);
    assert.deepEqual(line?.by, { via: 'dashboard', remote: '127.0.0.1:9' });
    assert.equal(line?.previous, sha(v1));
    assert.match(String(line?.diff), /^\+  - name: more$/m);
  });
});
