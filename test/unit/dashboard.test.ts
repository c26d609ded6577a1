/**
 * Unit: the dashboard's checks, each written as the attack on it: a wrong
 * or missing token, a forged Host (DNS rebinding), a cross-site POST, a
 * redirect to another site after sign-in, hostile query parameters, a
 * spreadsheet formula in a process name, a slow live client. The Hono app
 * is driven with app.request(), no sockets.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PolicyError, formatIssue } from '../../src/errors.js';
import type { StoredEvent } from '../../src/events/event-store.js';
import { afterSignIn, CSP, dashboardApp, SignInLimiter, type DashboardSources } from '../../src/daemon/dashboard-app.js';
import { cookieValue, DashboardCredentials, dashboardTokenPath, ensureDashboardToken, hostAllowed, newToken, readDashboardToken, sameOrigin, signInUrl, TOKEN_FORM } from '../../src/daemon/dashboard-auth.js';
import { LiveHub, type LiveEvent } from '../../src/daemon/dashboard-live.js';
import { csvCell, eventsCsv, parseEventsQuery, parseExplainQuery, parseStatsQuery, QUERY_PARAMS } from '../../src/daemon/dashboard-query.js';
import { OPENAPI_PARAMS } from '../../src/daemon/dashboard-openapi.js';
import { dashboardHealth, type DashboardHealth } from '../../src/daemon/dashboard-health.js';
import { tamperMarks } from '../../src/daemon/dashboard-tamper.js';
import { parseLoopbackListen } from '../../src/policy/listen-address.js';
import { policyFrom } from '../support/fixtures.js';

const LISTEN = { host: '127.0.0.1', port: 9330 };
const TOKEN = newToken();
const creds = new DashboardCredentials(TOKEN, LISTEN.port);
const q = (s: string) => new URLSearchParams(s);

describe('unit: dashboard token and session', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-dash-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a new token is 32 random bytes in base64url, different each time', () => {
    const a = newToken();
    assert.match(a, TOKEN_FORM);
    assert.equal(Buffer.from(a, 'base64url').length, 32);
    assert.notEqual(a, newToken());
  });

  it('the token file is made once, mode 0600, and read back the same', () => {
    const t = ensureDashboardToken(dir);
    const path = dashboardTokenPath(dir);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(ensureDashboardToken(dir), t, 'never overwritten');
    assert.equal(readFileSync(path, 'utf8').trim(), t);
  });

  it('a token file others can read, a symlink, or one that is not a token is refused', () => {
    const path = dashboardTokenPath(dir);
    chmodSync(path, 0o644);
    assert.throws(() => readDashboardToken(path), /owned and readable by .* only/);
    chmodSync(path, 0o600);
    const link = join(dir, 'link.token');
    symlinkSync(path, link);
    assert.throws(() => readDashboardToken(link), /ELOOP/);
    const bad = join(dir, 'bad.token');
    writeFileSync(bad, 'short\n', { mode: 0o600 });
    assert.throws(() => readDashboardToken(bad), /not 32 bytes/);
  });

  it('the token matches only itself: not a prefix, an extension, a case change, empty, or absent', () => {
    assert.equal(creds.tokenMatches(TOKEN), true);
    for (const t of [TOKEN.slice(0, -1), `${TOKEN}x`, TOKEN.toUpperCase() === TOKEN ? TOKEN.toLowerCase() : TOKEN.toUpperCase(), '', undefined, null, 'x'.repeat(10_000)]) {
      assert.equal(creds.tokenMatches(t), false, String(t).slice(0, 50));
    }
  });

  it('Bearer or cookie; a wrong Authorization header is refused even beside a good cookie', () => {
    const cookie = `${creds.cookieName}=${creds.session}`;
    assert.equal(creds.authorized(`Bearer ${TOKEN}`, null), true);
    assert.equal(creds.authorized(null, cookie), true);
    assert.equal(creds.authorized(undefined, `a=b; ${cookie}; c=d`), true);
    assert.equal(creds.authorized('Bearer wrong', cookie), false);
    assert.equal(creds.authorized(`Basic ${TOKEN}`, null), false);
    assert.equal(creds.authorized(null, `${creds.cookieName}=${TOKEN}`), false, 'the token is not the session value');
    assert.equal(creds.authorized(null, `sluice_session_9331=${creds.session}`), false, "another port's cookie name");
    assert.equal(creds.authorized(null, null), false);
    assert.ok(!creds.session.includes(TOKEN), 'the cookie does not carry the token');
  });

  it('the cookie is HttpOnly, SameSite=Strict, for the whole site, and expires', () => {
    const c = creds.setCookie();
    assert.match(c, /^sluice_session_9330=[A-Za-z0-9_-]+; /);
    for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/', 'Max-Age=86400']) assert.ok(c.split('; ').includes(attr), attr);
    assert.equal(cookieValue('a=1; sluice_session_9330=xyz; b=2', 'sluice_session_9330'), 'xyz');
    assert.equal(cookieValue('xsluice_session_9330=xyz', 'sluice_session_9330'), null);
    assert.equal(cookieValue(`${'a'.repeat(9000)}; sluice_session_9330=xyz`, 'sluice_session_9330'), null);
  });

  it('the sign-in link is the listen address with the token', () => {
    assert.equal(signInUrl(LISTEN, TOKEN), `http://127.0.0.1:9330/?token=${TOKEN}`);
    assert.equal(signInUrl({ host: '::1', port: 9330 }, 'x'), 'http://[::1]:9330/?token=x');
  });
});

describe('unit: dashboard Host and Origin checks', () => {
  it('only the listen address or localhost:PORT is a good Host (DNS rebinding)', () => {
    for (const h of ['127.0.0.1:9330', 'localhost:9330', 'LOCALHOST:9330']) assert.equal(hostAllowed(h, LISTEN), true, h);
    for (const h of ['evil.example:9330', 'evil.example', '127.0.0.1', '127.0.0.1:9331', '127.0.0.2:9330', 'localhost', '127.0.0.1:9330.evil.example', '', undefined, null, '[::1]:9330']) {
      assert.equal(hostAllowed(h, LISTEN), false, String(h));
    }
    assert.equal(hostAllowed('[::1]:9330', { host: '::1', port: 9330 }), true);
  });

  it('a state-changing request must come from the same origin', () => {
    assert.equal(sameOrigin('http://127.0.0.1:9330', '127.0.0.1:9330', LISTEN), true);
    assert.equal(sameOrigin('http://localhost:9330', 'localhost:9330', LISTEN), true);
    for (const [o, h] of [
      ['http://evil.example', '127.0.0.1:9330'],
      ['http://localhost:9330', '127.0.0.1:9330'],
      ['null', '127.0.0.1:9330'],
      [undefined, '127.0.0.1:9330'],
      ['http://evil.example:9330', 'evil.example:9330'],
      ['https://127.0.0.1:9330', '127.0.0.1:9330'],
    ] as const) {
      assert.equal(sameOrigin(o, h, LISTEN), false, `${o} ${h}`);
    }
  });

  it('the listen address must be loopback: names, 0.0.0.0, other addresses and bad ports are refused', () => {
    assert.deepEqual(parseLoopbackListen('127.0.0.1:9330'), { ok: true, value: LISTEN });
    assert.deepEqual(parseLoopbackListen('[::1]:9330'), { ok: true, value: { host: '::1', port: 9330 } });
    assert.deepEqual(parseLoopbackListen('127.0.0.93:1'), { ok: true, value: { host: '127.0.0.93', port: 1 } });
    for (const t of ['0.0.0.0:9330', 'localhost:9330', '198.18.0.2:9330', '[::]:9330', '[2001:db8::1]:9330', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1', '::1:9330', '[127.0.0.1]:9330', '127.0.0.1:9330 ', '127.1:9330']) {
      assert.equal(parseLoopbackListen(t).ok, false, t);
    }
  });

  it('the policy key is checked at load, at its line, and unknown keys under it are errors', () => {
    assert.deepEqual(policyFrom('dashboard:\n  listen: 127.0.0.1:9330\n').dashboard, { listen: LISTEN });
    assert.equal(policyFrom('mode: audit\n').dashboard, undefined);
    const errs = (yaml: string) => {
      try {
        policyFrom(yaml, 'p.yaml');
      } catch (err) {
        assert.ok(err instanceof PolicyError);
        return err.issues.filter((i) => i.severity === 'error').map(formatIssue);
      }
      return [];
    };
    assert.match(errs('dashboard:\n  listen: 0.0.0.0:9330\n')[0] ?? '', /^p\.yaml:2:11: the dashboard listens on loopback only/);
    assert.match(errs('dashboard:\n  listen: 127.0.0.1:9330\n  lisen: x\n').join('\n'), /unknown key "lisen"/);
  });
});

describe('unit: dashboard query parameters', () => {
  const NOW = Date.parse('2030-01-01T12:00:00Z');

  it('defaults: the last hour, the newest 500, JSON', () => {
    assert.deepEqual(parseEventsQuery(q(''), NOW), { ok: true, value: { query: { since: NOW - 3_600_000, limit: 500 }, format: 'json' } });
  });

  it('every filter parses to the store query', () => {
    const r = parseEventsQuery(q('since=2h&verdict=blocked&process=curl&rule=%23default&limit=10&format=csv&after=5'), NOW);
    assert.deepEqual(r, { ok: true, value: { query: { since: NOW - 7_200_000, limit: 10, verdict: 'blocked', process: 'curl', rule: '#default', afterId: 5 }, format: 'csv' } });
  });

  it('hostile values are refused with a message, never passed on', () => {
    for (const s of [
      'limit=0',
      'limit=10001',
      'limit=-1',
      'limit=1e3',
      'limit=0x10',
      'limit=abc',
      'limit=99999999999999999999',
      'verdict=all',
      'since=yesterday',
      'since=' + 'x'.repeat(100),
      'process=' + 'a'.repeat(257),
      'process=a%0Ab',
      'process=',
      'rule=a;drop',
      'rule=' + 'a'.repeat(60),
      'format=xml',
      'limit=1&limit=2',
      'unknown=1',
      '__proto__=1',
      Array.from({ length: 20 }, (_, i) => `p${i}=1`).join('&'),
    ]) {
      const r = parseEventsQuery(q(s), NOW);
      assert.equal(r.ok, false, s.slice(0, 60));
    }
    assert.match((parseEventsQuery(q('unknown=1')) as { error: string }).error, /unknown query parameter: "unknown"/);
    assert.match((parseEventsQuery(q('limit=10001')) as { error: string }).error, /limit: want a whole number from 1 to 10000/);
  });

  it('stats and explain parameters are bounded too', () => {
    assert.deepEqual(parseStatsQuery(q('since=1d&limit=5'), NOW), { ok: true, value: { since: NOW - 86_400_000, limit: 5 } });
    for (const s of ['limit=101', 'verdict=blocked', 'since=1x']) assert.equal(parseStatsQuery(q(s), NOW).ok, false, s);
    assert.deepEqual(parseExplainQuery(q('dest=api.example.com&port=443/tcp&user=1001')), { ok: true, value: { dest: 'api.example.com', port: '443/tcp', user: '1001' } });
    for (const s of ['', 'port=443', 'dest=a&port=443/sctp', 'dest=' + 'a'.repeat(254), 'dest=a&user=a%00b', 'dest=a&port=443;x']) assert.equal(parseExplainQuery(q(s)).ok, false, s);
  });
});

describe('unit: dashboard CSV export', () => {
  it('cells that a spreadsheet would run as a formula are made text', () => {
    assert.equal(csvCell('=HYPERLINK("http://evil","x")'), `"'=HYPERLINK(""http://evil"",""x"")"`);
    for (const c of ['+1', '-1+1', '@SUM(A1)', '\t=1', '\r=1']) assert.ok(csvCell(c).startsWith(`"'`), JSON.stringify(c));
    assert.equal(csvCell('curl'), '"curl"');
    assert.equal(csvCell('a,b\r\nc'), '"a,b\r\nc"', 'quoted, so a newline stays in its cell');
    assert.equal(csvCell(undefined), '""');
    assert.equal(csvCell(443), '"443"');
  });

  it('an event whose process and host names are hostile exports as text', () => {
    const e: StoredEvent = { id: 1, time: 0, verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.10', dport: 443, hostname: '@evil', process: { pid: 7, comm: '=cmd|"/c calc"!A1', cmdline: '-x' } };
    const lines = eventsCsv([e]).split('\r\n');
    assert.equal(lines[0], 'id,time,verdict,rule,proto,src,sport,dst,dport,hostname,uid,user,pid,exe,comm,unit,cmdline');
    assert.ok(lines[1]?.includes(`"'=cmd|""/c calc""!A1"`));
    assert.ok(lines[1]?.includes(`"'@evil"`));
    assert.ok(lines[1]?.includes(`"'-x"`));
    assert.ok(!/(^|,)"[=+\-@]/.test(lines[1] ?? ''), 'no cell starts with a formula character');
  });
});

describe('unit: dashboard app (every request through the checks)', () => {
  const events: StoredEvent[] = [{ id: 1, time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.10', dport: 443, process: { pid: 7, comm: '<img src=x onerror=alert(1)>' } }];
  const sources: DashboardSources = {
    status: () => ({ table: 'live' }),
    events: () => events,
    stats: () => null,
    timeline: () => [],
    explain: (a) => ({ ok: true, value: { dest: a.dest } }),
    health: async () => healthAnswer,
    allow: (a) => (a.event === 1 ? { ok: true, value: { event: { id: 1, time: 0, verdict: 'blocked', rule: '#default', dst: '198.18.1.10', sender: 'user 0' }, steps: [], window: { since: a.since, until: a.until, flows: 0, overflow: 0 } } } : null),
    policy: () => ({ applied: null, pending: null, versions: [] }),
    suggest: (r) => ({ ok: true, value: { window: { asked: r.sinceText }, rules: [] } }),
    tamper: (q) => tamperMarks(journal, q),
  };
  /** The state directory's journal as the thread reads it: tamper findings among other lines, some of them not well-formed. */
  const T = Date.UTC(2026, 11, 6, 10, 0, 0);
  const iso = (ms: number) => new Date(ms).toISOString();
  const journal: Record<string, unknown>[] = [
    { at: iso(T - 7_200_000), event: 'tamper-restore', by: ['nft (pid 1)'], changes: ['the table was deleted'] },
    { at: iso(T - 600_000), event: 'apply', by: { via: 'cli', uid: 0 }, sha256: 'a'.repeat(64) },
    { at: iso(T - 300_000), event: 'tamper', by: ['nft (pid 4242)'], changes: ['added: accept', 'x'.repeat(5_000), 'three', 'four'], restored: false },
    { at: iso(T - 60_000), event: 'tamper-restore', by: 'not a list', changes: [1, 'removed: drop'] },
    { at: 12345, event: 'tamper' },
    { at: 'yesterday-ish', event: 'tamper-restore' },
    { at: iso(T + 60_000), event: 'tamper-restore', by: [], changes: [] },
  ];
  let healthAnswer: DashboardHealth | null = dashboardHealth([], null, 42);
  const live = new LiveHub({ maxClients: 1, queueMax: 10, flushMs: 50, heartbeatMs: 1000 });
  after(() => live.close());
  const app = dashboardApp({ listen: LISTEN, credentials: creds, sources, live, assets: { html: '<!doctype html><title>t</title>', js: '// js', css: '/* css */' } });
  const req = (path: string, init: { method?: string; headers?: Record<string, string> } = {}) =>
    app.request(`http://127.0.0.1:9330${path}`, { method: init.method ?? 'GET', headers: { host: '127.0.0.1:9330', ...init.headers } });
  const bearer = { authorization: `Bearer ${TOKEN}` };

  it('no credentials: 401 for the page and the API, with the security headers and no data', async () => {
    for (const p of ['/', '/api/events', '/api/status', '/app.js', '/nope']) {
      const r = await req(p);
      assert.equal(r.status, 401, p);
      assert.equal(r.headers.get('content-security-policy'), CSP);
      const body = await r.text();
      assert.ok(!body.includes('198.18.1.10'), p);
    }
  });

  it('a wrong token (header or link) is 401', async () => {
    assert.equal((await req('/api/events', { headers: { authorization: 'Bearer nope' } })).status, 401);
    assert.equal((await req(`/?token=${TOKEN}x`)).status, 401);
    const r = await req('/?token=');
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('set-cookie'), null);
  });

  it('a forged Host is 403, with a good token or cookie, and with the token link', async () => {
    for (const host of ['evil.example:9330', 'evil.example', '127.0.0.1:9331']) {
      assert.equal((await req('/api/events', { headers: { ...bearer, host } })).status, 403, host);
      assert.equal((await req('/api/events', { headers: { cookie: `${creds.cookieName}=${creds.session}`, host } })).status, 403, host);
      const link = await req(`/?token=${TOKEN}`, { headers: { host } });
      assert.equal(link.status, 403);
      assert.equal(link.headers.get('set-cookie'), null, 'no cookie for a rebinding page');
    }
  });

  it('the token link sets the session cookie and redirects to the same path without the token; the cookie then works', async () => {
    const r = await req(`/?token=${TOKEN}`);
    assert.equal(r.status, 303);
    assert.equal(r.headers.get('location'), '/');
    const set = r.headers.get('set-cookie') ?? '';
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Strict/);
    const cookie = set.split(';')[0] ?? '';
    const page = await req('/', { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(page.headers.get('content-security-policy'), CSP);
    assert.equal((await req('/api/events', { headers: { cookie } })).status, 200);
    const kept = await req(`/api/events?token=${TOKEN}&verdict=blocked`);
    assert.equal(kept.headers.get('location'), '/api/events?verdict=blocked');
  });

  it('after sign-in, never a redirect to another site', () => {
    const u = (s: string) => new URL(s, 'http://127.0.0.1:9330');
    assert.equal(afterSignIn(u('//evil.example/?token=x')), '/');
    assert.equal(afterSignIn(u('/\\evil.example/?token=x')), '/');
    assert.equal(afterSignIn(u('/%2F%2Fevil.example?token=x')), '/');
    assert.equal(afterSignIn(u('/api/events?token=x&limit=5')), '/api/events?limit=5');
  });

  it('a cross-site POST is 403 even with the cookie; a same-origin one needs the CSRF token too, then reaches routing (404: no such route)', async () => {
    const cookie = `${creds.cookieName}=${creds.session}`;
    assert.equal((await req('/api/events', { method: 'POST', headers: { cookie, origin: 'http://evil.example', 'x-sluice-csrf': creds.csrf } })).status, 403);
    assert.equal((await req('/api/events', { method: 'POST', headers: { cookie, 'x-sluice-csrf': creds.csrf } })).status, 403, 'no Origin');
    assert.equal((await req('/api/events', { method: 'POST', headers: { cookie, origin: 'http://127.0.0.1:9330' } })).status, 403, 'no CSRF token');
    assert.equal((await req('/api/events', { method: 'POST', headers: { cookie, origin: 'http://127.0.0.1:9330', 'x-sluice-csrf': creds.csrf } })).status, 404);
    assert.equal((await req('/api/events', { method: 'POST', headers: { origin: 'http://127.0.0.1:9330' } })).status, 401, 'same origin still needs the cookie');
  });

  it('/api/stats carries the tamper findings of its window (from the journal), for the chart\'s time axis: well-formed, bounded, oldest first', async () => {
    const r = await req(`/api/stats?since=${iso(T - 3_600_000)}&until=${iso(T)}`, { headers: bearer });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { timeline: unknown[]; tamper: { time: number; restored: boolean; by: string[]; changes: string[] }[] };
    assert.deepEqual(body.timeline, []);
    assert.deepEqual(
      body.tamper.map((m) => ({ ...m, changes: m.changes.map((c) => c.slice(0, 20)) })),
      [
        { time: T - 300_000, restored: false, by: ['nft (pid 4242)'], changes: ['added: accept', 'x'.repeat(20), 'three'] },
        { time: T - 60_000, restored: true, by: [], changes: ['removed: drop'] },
      ],
    );
    assert.ok(body.tamper.every((m) => m.changes.every((c) => c.length <= 200)), 'a long line is cut');
    // Without until: up to now, so the finding after T is there too; a window before them all has none.
    const open = (await (await req(`/api/stats?since=${iso(T - 3_600_000)}`, { headers: bearer })).json()) as { tamper: { time: number }[] };
    assert.deepEqual(open.tamper.map((m) => m.time), [T - 300_000, T - 60_000, T + 60_000]);
    const none = (await (await req(`/api/stats?since=${iso(T - 5_000_000)}&until=${iso(T - 4_000_000)}`, { headers: bearer })).json()) as { tamper: unknown[] };
    assert.deepEqual(none.tamper, []);
    // At most the newest `max`.
    const many = Array.from({ length: 300 }, (_, i) => ({ at: iso(T - 300_000 + i * 1000), event: 'tamper-restore' }));
    const capped = tamperMarks(many, { since: T - 3_600_000 });
    assert.equal(capped.length, 200);
    assert.equal(capped.at(-1)?.time, T - 300_000 + 299_000);
    // A source without tamper findings answers an empty list, not a missing field.
    const bare = dashboardApp({ listen: LISTEN, credentials: creds, sources: { ...sources, tamper: undefined }, live, assets: { html: '', js: '', css: '' } });
    const b = (await (await bare.request('http://127.0.0.1:9330/api/stats', { headers: { host: '127.0.0.1:9330', ...bearer } })).json()) as { tamper: unknown };
    assert.deepEqual(b.tamper, []);
  });

  it('responses carry the security headers and no CORS headers, whatever the Origin', async () => {
    const r = await req('/api/events', { headers: { ...bearer, origin: 'http://evil.example' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    for (const [k] of r.headers) assert.ok(!k.startsWith('access-control-'), k);
    assert.ok(CSP.includes("script-src 'self'") && !CSP.includes('unsafe-inline') && !CSP.includes('unsafe-eval'));
  });

  it('the API returns the events as JSON (hostile names stay data) and as CSV; a bad parameter is 400', async () => {
    const j = (await (await req('/api/events', { headers: bearer })).json()) as { events: StoredEvent[] };
    assert.equal(j.events[0]?.process?.comm, '<img src=x onerror=alert(1)>');
    const csv = await req('/api/events?format=csv', { headers: bearer });
    assert.equal(csv.headers.get('content-type'), 'text/csv; charset=utf-8');
    assert.match(csv.headers.get('content-disposition') ?? '', /attachment/);
    const bad = await req('/api/events?limit=100000', { headers: bearer });
    assert.equal(bad.status, 400);
    assert.equal((await req('/api/explain?dest=a.example', { headers: bearer })).status, 200);
  });

  it('the API is described at /api/openapi.json (signed in only): every path answers, and each lists exactly the parameters its parser takes', async () => {
    assert.equal((await req('/api/openapi.json')).status, 401);
    const r = await req('/api/openapi.json', { headers: bearer });
    assert.equal(r.status, 200);
    const doc = (await r.json()) as { openapi: string; paths: Record<string, { get: { parameters: { name: string; required: boolean }[] } }>; components: { securitySchemes: { session: { name: string } } } };
    // The POST paths (apply, confirm, roll back) are driven in dashboard-apply.test.ts.
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.components.securitySchemes.session.name, creds.cookieName);
    for (const [path, item] of Object.entries(doc.paths)) {
      if (path === '/api/live') continue; // a stream: its cap is tested below
      if (!item.get) continue;
      const query = path === '/api/explain' ? '?dest=198.18.1.10' : path === '/api/allow' ? '?event=1' : '';
      assert.equal((await req(`${path}${query}`, { headers: bearer })).status, 200, path);
      assert.ok(Array.isArray(item.get.parameters), path);
    }
    for (const name of ['events', 'stats', 'explain', 'allow', 'suggest'] as const) {
      const listed = doc.paths[`/api/${name}`]?.get.parameters.map((p) => p.name).sort();
      assert.deepEqual(listed, QUERY_PARAMS[name]().sort(), `/api/${name}: the document and the parser agree`);
      assert.deepEqual(OPENAPI_PARAMS[name].map((p) => p.name).sort(), listed);
    }
    assert.deepEqual(doc.paths['/api/explain']?.get.parameters.filter((p) => p.required).map((p) => p.name), ['dest']);
    // And the parser refuses what the document does not list.
    assert.equal((await req('/api/events?colour=red', { headers: bearer })).status, 400);
  });

  it('/api/health: signed in only; the figures as the daemon gave them; 503 when the daemon did not answer', async () => {
    assert.equal((await req('/api/health')).status, 401);
    const ok = await req('/api/health', { headers: bearer });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-security-policy'), CSP);
    assert.deepEqual(await ok.json(), JSON.parse(JSON.stringify(healthAnswer)));
    healthAnswer = null;
    try {
      const late = await req('/api/health', { headers: bearer });
      assert.equal(late.status, 503);
      assert.match(((await late.json()) as { error: string }).error, /did not answer/);
    } finally {
      healthAnswer = dashboardHealth([], null, 42);
    }
  });

  it('/api/allow: signed in only; the event id is required and whole; an unknown event is 404', async () => {
    assert.equal((await req('/api/allow?event=1')).status, 401);
    assert.equal((await req('/api/allow?event=1', { headers: bearer })).status, 200);
    assert.equal((await req('/api/allow?event=2', { headers: bearer })).status, 404);
    for (const bad of ['', '?event=', '?event=-1', '?event=1x', '?event=1&event=1', '?event=1&since=nope']) assert.equal((await req(`/api/allow${bad}`, { headers: bearer })).status, 400, bad);
  });

  it('live streams are capped: one over the limit gets 503', async () => {
    const first = await req('/api/live', { headers: bearer });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal((await req('/api/live', { headers: bearer })).status, 503);
    await first.body?.cancel();
    assert.equal(live.size, 0);
  });
});

describe('unit: dashboard failed sign-ins', () => {
  it('after 10 failures in a minute a peer is refused (429), its right token too; other peers are not; the window ends', async () => {
    let now = 0;
    const limiter = new SignInLimiter(10, 60_000, () => now);
    let peer = 'uid:65534';
    const app = dashboardApp({
      listen: LISTEN,
      credentials: creds,
      sources: { status: () => ({}), events: () => [], stats: () => null, timeline: () => [], explain: () => ({ ok: false, error: 'x' }) },
      live: new LiveHub(),
      assets: { html: '', js: '', css: '' },
      peerOf: () => peer,
      limiter,
    });
    const req = (headers: Record<string, string>, path = '/api/status') => app.request(`http://127.0.0.1:9330${path}`, { headers: { host: '127.0.0.1:9330', ...headers } });
    for (let i = 0; i < 10; i++) assert.equal((await req({ authorization: `Bearer guess${i}` })).status, 401, `guess ${i}`);
    assert.equal((await req({ authorization: 'Bearer guess10' })).status, 429);
    assert.equal((await req({ authorization: `Bearer ${TOKEN}` })).status, 429, 'the right token does not tell the guesser it was right');
    assert.equal((await req({}, `/?token=${TOKEN}`)).status, 429);
    assert.equal((await req({ cookie: `${creds.cookieName}=${creds.session}` })).status, 429);
    assert.equal((await req({})).status, 401, 'no credentials: the plain 401');
    peer = 'uid:0';
    assert.equal((await req({ authorization: `Bearer ${TOKEN}` })).status, 200, 'another user is not locked out');
    peer = 'uid:65534';
    now = 60_000;
    assert.equal((await req({ authorization: `Bearer ${TOKEN}` })).status, 200, 'the window ended');
    for (let i = 0; i < 9; i++) await req({ cookie: `${creds.cookieName}=forged${i}` });
    assert.equal((await req({}, `/?token=${TOKEN}x`)).status, 401);
    assert.equal((await req({ authorization: `Bearer ${TOKEN}` })).status, 429, 'wrong cookies and links count too');
  });
});

describe('unit: dashboard live hub', () => {
  const ev = (i: number): LiveEvent => ({ kind: 'flow', time: i, verdict: 'blocked' });
  const read = async (r: ReadableStreamDefaultReader<Uint8Array>) => new TextDecoder().decode((await r.read()).value);

  it('a client that does not read keeps at most queueMax events; the rest are dropped and counted, and said with the next batch', async () => {
    const watchers: number[] = [];
    const hub = new LiveHub({ maxClients: 2, queueMax: 5, flushMs: 1_000_000, heartbeatMs: 1_000_000 }, (n) => watchers.push(n));
    const stream = hub.open();
    assert.ok(stream);
    const r = stream.getReader();
    assert.match(await read(r), /: connected/);
    hub.publish([ev(1), ev(2), ev(3)]);
    hub.publish([ev(4), ev(5), ev(6), ev(7)]);
    assert.equal(hub.dropped, 2);
    hub.flush();
    const msg = await read(r);
    assert.match(msg, /^event: events\ndata: /);
    const data = JSON.parse(msg.split('data: ')[1] ?? '{}') as { events: LiveEvent[]; dropped: number };
    assert.deepEqual(data.events.map((e) => e.time), [1, 2, 3, 4, 5]);
    assert.equal(data.dropped, 2);
    await r.cancel();
    assert.deepEqual(watchers, [1, 0]);
    hub.close();
  });

  it('a stream whose buffer is full is not written to; its queue stays bounded', () => {
    const hub = new LiveHub({ maxClients: 1, queueMax: 3, flushMs: 1_000_000, heartbeatMs: 1_000_000 });
    assert.ok(hub.open());
    for (let i = 0; i < 100; i++) {
      hub.publish([ev(i)]);
      hub.flush();
    }
    // The stream holds 8 chunks (the greeting and 7 batches); every later event waited in the queue of 3 or was dropped.
    assert.equal(hub.dropped, 100 - 7 - 3);
    hub.close();
  });
});
