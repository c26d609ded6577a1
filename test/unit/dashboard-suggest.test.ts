/**
 * Unit: the dashboard's Suggestions (`GET /api/suggest`): its query parsed
 * as hostile input (bad and huge windows, unknown, repeated and prototype
 * parameters), and its answer against a real SQLite store written here:
 * the suggested rules with their figures and YAML (which loads when pasted
 * under `rules:`), the rules never hit, the replay's figures, the
 * promotions, and the bound on the work (a scan cut by its time budget says
 * so and claims nothing it did not read).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { RecordedEvent } from '../../src/events/event-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { dashboardApp, type DashboardSources } from '../../src/daemon/dashboard-app.js';
import { DashboardCredentials, newToken } from '../../src/daemon/dashboard-auth.js';
import { LiveHub } from '../../src/daemon/dashboard-live.js';
import { MAX_SUGGEST_DAYS, parseSuggestQuery, type SuggestRequest } from '../../src/daemon/dashboard-query.js';
import { suggestForDashboard, type SuggestBase } from '../../src/daemon/dashboard-suggest.js';
import { SuggestRunner } from '../../src/daemon/dashboard-suggest-runner.js';
import { Observations } from '../../src/learn/observations.js';
import { promotions } from '../../src/learn/promote.js';
import { scanWindow } from '../../src/learn/suggest-report.js';
import { policyFrom } from '../support/fixtures.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);
const q = (s: string) => new URLSearchParams(s);

describe('unit: /api/suggest query parameters, as hostile input', () => {
  it('defaults: the last 7 days up to now, --stable-days 14', () => {
    const r = parseSuggestQuery(q(''), NOW);
    assert.deepEqual(r, { ok: true, value: { since: NOW - 7 * DAY, until: NOW + 1, stableDays: 14, sinceText: '7d' } });
  });

  it('a window of up to 31 days, as a duration or a time; stable-days 1 to 31', () => {
    for (const s of ['1h', '90m', '24h', '30d', '31d', '2026-12-01', '2026-12-06T11:00Z', '2026-12-06T11:59:59.5Z']) {
      const r = parseSuggestQuery(q(`since=${encodeURIComponent(s)}`), NOW);
      assert.ok(r.ok, `${s}: ${r.ok ? '' : r.error}`);
      assert.equal(r.value.sinceText, s);
    }
    const d = parseSuggestQuery(q('since=31d&stable-days=31'), NOW);
    assert.ok(d.ok && d.value.since === NOW - MAX_SUGGEST_DAYS * DAY && d.value.stableDays === 31);
    const one = parseSuggestQuery(q('stable-days=1'), NOW);
    assert.ok(one.ok && one.value.stableDays === 1);
  });

  it('refuses a bad since: not a time, too far back (huge values included), in the future, control characters, too long', () => {
    for (const s of ['yesterday', '', ' ', '7 d', '1x', '-1d', '1e3d', '0x10d', '32d', '5w', '999999999d', '999999999w', '99999999999999d', '1970-01-01', '0000-01-01', '2026-02-30', '2026-12-06T11:00Z\n', '7d\u0000', '2999-01-01T00:00Z', '2026-12-06T12:00:01Z', 'x'.repeat(65), '0s']) {
      const r = parseSuggestQuery(q(`since=${encodeURIComponent(s)}`), NOW);
      assert.equal(r.ok, false, JSON.stringify(s));
      if (!r.ok) assert.match(r.error, /^since: /, JSON.stringify(s));
    }
  });

  it('refuses a bad stable-days: zero, too many, negative, not whole, huge', () => {
    for (const s of ['0', '32', '-1', '1.5', '1e3', '', ' 1', '0x1', '9999999999', '99999999999999999999', 'NaN', 'Infinity']) {
      const r = parseSuggestQuery(q(`stable-days=${encodeURIComponent(s)}`), NOW);
      assert.equal(r.ok, false, JSON.stringify(s));
    }
  });

  it('refuses unknown, repeated and prototype parameters, and too many of them', () => {
    for (const s of ['policy=/etc/shadow', 'since=1d&since=2d', '__proto__=1', 'constructor=1', 'stableDays=3', `${Array.from({ length: 17 }, (_, i) => `p${i}=1`).join('&')}`]) {
      const r = parseSuggestQuery(q(s), NOW);
      assert.equal(r.ok, false, s);
    }
  });
});

function ev(dst: string, dport: number, time: number, extra: Partial<RecordedEvent> = {}): RecordedEvent {
  return { time, verdict: 'would-block', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst, sport: 40000, dport, uid: 1000, user: 'alice', ...extra };
}

const BASE_TEXT = `# the applied policy
mode: audit
rules:
  - name: web
    to: [198.18.1.10]
    ports: [443/tcp]
  - name: old
    to: [198.18.9.9]
    ports: [22/tcp]
`;

describe('unit: /api/suggest against a store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-dash-suggest-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new SqliteStore(join(dir, 'events.db'));
  after(() => store.close());
  const curl = { pid: 10, exe: '/usr/bin/curl', comm: 'curl' };
  store.append([
    ev('198.18.1.20', 443, NOW - 2 * DAY, { hostname: 'api.example.org', process: curl }),
    ev('198.18.1.20', 443, NOW - 3_600_000, { hostname: 'api.example.org', process: curl }),
    ev('198.18.1.21', 443, NOW - 3_600_000, { hostname: 'x.github.io', process: curl }),
    // Hostile text: a hostname that is YAML, a process name with a terminal escape.
    ev('198.18.1.22', 8443, NOW - 3_000_000, { hostname: 'evil.example.org\n  - name: pwn\n    to: [any]', process: { pid: 14, comm: '\u001b]0;pwn\u0007x: [any]' } }),
    // Allowed by `web`: a hit, so web is not "never hit".
    ev('198.18.1.10', 443, NOW - 60_000, { verdict: 'allowed', rule: 'web', process: curl }),
    // Blocked traffic never flowed: never suggested.
    ev('198.18.7.7', 25, NOW - 60_000, { verdict: 'blocked', process: curl }),
    // Outside the window.
    ev('198.18.1.30', 443, NOW - 20 * DAY, { process: curl }),
  ]);
  const base: SuggestBase = { policy: policyFrom(BASE_TEXT, '/etc/sluice/policy.yaml'), text: BASE_TEXT, sha256: 'a'.repeat(64), file: '/etc/sluice/policy.yaml', parse: (t) => policyFrom(t, '/etc/sluice/policy.yaml') };
  const req = (since: string, stable = ''): SuggestRequest => {
    const r = parseSuggestQuery(q(`since=${since}${stable ? `&stable-days=${stable}` : ''}`), NOW);
    assert.ok(r.ok);
    return r.value;
  };
  const limits = { budgetMs: 60_000, maxFlows: 1000, facts: {}, now: () => NOW };
  type Rule = { name: string; sender: string; to: string[]; ports: string[]; events: number; first: string; last: string; days: number; processes: string[]; sharedZone: boolean; shared: { name: string; zone: string }[]; yaml: string };
  type Answer = {
    store: boolean;
    complete: boolean;
    cutAt: string | null;
    events: number;
    flows: number;
    applied: string;
    base: string;
    window: { since: string; until: string; asked: string };
    rules: Rule[];
    neverHit: { rule: string; line: number }[];
    check: { wouldBreak: { events: number; flows: unknown[]; names: unknown[] }; wouldBlock: { events: number; flows: number } };
    promotions: { stableDays: number; covered: boolean; candidates: { what: string; stable: boolean; text: string }[] } | null;
    diff: string;
    elapsedMs: number;
  };
  const answer = suggestForDashboard(store, base, req('7d'), limits) as unknown as Answer;

  it('the window and what it covered: the events of 7 days, blocked and older ones not suggested', () => {
    assert.equal(answer.store, true);
    assert.equal(answer.complete, true);
    assert.equal(answer.cutAt, null);
    assert.equal(answer.events, 6, 'the event 20 days back is outside');
    assert.equal(answer.window.asked, '7d');
    assert.equal(answer.window.since, new Date(NOW - 7 * DAY).toISOString());
    assert.equal(answer.applied, 'a'.repeat(64));
    assert.equal(answer.base, '/etc/sluice/policy.yaml');
    assert.equal(typeof answer.elapsedMs, 'number');
    assert.ok(!JSON.stringify(answer.rules).includes('198.18.7.7'), 'blocked traffic is never suggested');
    assert.ok(!JSON.stringify(answer.rules).includes('198.18.1.30'), 'outside the window');
  });

  it('each rule with its comment data: first and last seen, events, processes, distinct days, shared-zone flag', () => {
    const api = answer.rules.find((r) => r.to.includes('api.example.org'));
    assert.ok(api, JSON.stringify(answer.rules));
    assert.equal(api.sender, 'user alice (uid 1000)');
    assert.deepEqual(api.ports, ['443/tcp']);
    assert.equal(api.events, 3, 'api.example.org twice and x.github.io once share the rule (same sender and ports)');
    assert.equal(api.first, new Date(NOW - 2 * DAY).toISOString());
    assert.equal(api.last, new Date(NOW - 3_600_000).toISOString());
    assert.equal(api.days, 2);
    assert.deepEqual(api.processes, ['curl']);
    assert.equal(api.sharedZone, true);
    assert.deepEqual(api.shared, [{ name: 'x.github.io', zone: 'github.io' }]);
    const evil = answer.rules.find((r) => r.ports.includes('8443/tcp'));
    assert.ok(evil);
    assert.deepEqual(evil.to, ['198.18.1.22'], 'a hostname that is not a name is never written: the address is');
    assert.equal(evil.sharedZone, false);
    for (const p of evil.processes) assert.match(p, /^[A-Za-z0-9._+@:/?~-]*$/);
  });

  it("each rule's YAML, pasted under rules: of the applied policy, loads with Sluice's loader and adds exactly that rule", () => {
    for (const r of answer.rules) {
      const p = policyFrom(BASE_TEXT + r.yaml);
      assert.deepEqual(p.rules.map((x) => x.name), ['web', 'old', r.name]);
      assert.match(r.yaml, /^ {2}- /m);
      assert.ok(!/\u001b/.test(r.yaml), r.yaml);
      assert.ok(!/name: pwn/.test(r.yaml), r.yaml);
    }
    const all = policyFrom(BASE_TEXT + answer.rules.map((r) => r.yaml).join(''));
    assert.equal(all.rules.length, 2 + answer.rules.length);
  });

  it('the diff against the applied policy: new rules, and the rules never hit in the window', () => {
    assert.deepEqual(answer.neverHit.map((c) => c.rule), ['old']);
    for (const r of answer.rules) assert.match(answer.diff, new RegExp(`^\\+.*name: ${r.name}$`, 'm'));
    assert.match(answer.diff, /^\+.*could go$/m);
  });

  it('the replay of the suggested policy (suggest --check): would break 0, would block the blocked event', () => {
    assert.equal(answer.check.wouldBreak.events, 0, JSON.stringify(answer.check.wouldBreak));
    assert.equal(answer.check.wouldBlock.events, 1);
    assert.equal(answer.check.wouldBlock.flows, 1);
  });

  it('promotions (--stable-days): the audit policy is not stable with would-block in the days asked, nor when the history is shorter than them', () => {
    assert.ok(answer.promotions);
    assert.equal(answer.promotions.stableDays, 14);
    assert.equal(answer.promotions.covered, true, 'the history reaches back 20 days');
    const mode = answer.promotions.candidates.find((c) => c.what === "the policy's mode");
    assert.ok(mode && !mode.stable, JSON.stringify(answer.promotions));
    assert.match(mode.text, /not yet stable: 4 would-block in the last 14 days/);
    const long = suggestForDashboard(store, base, req('7d', '31'), limits) as unknown as Answer;
    assert.equal(long.promotions?.covered, false, 'the history reaches back 20 days, not 31');
    assert.match(long.promotions?.candidates.find((c) => c.what === "the policy's mode")?.text ?? '', /reaches back only to/);
  });

  it('no policy applied: a policy of its own, no diff, no promotions; no store: an empty answer that says so', () => {
    const fresh = suggestForDashboard(store, null, req('7d'), limits) as unknown as Answer;
    assert.equal(fresh.applied, null);
    assert.equal(fresh.diff, null);
    assert.equal(fresh.promotions, null);
    assert.deepEqual(fresh.neverHit, []);
    assert.ok(fresh.rules.some((r) => r.to.includes('api.example.org')));
    const none = suggestForDashboard(null, base, req('7d'), limits) as unknown as Answer;
    assert.equal(none.store, false);
    assert.deepEqual(none.rules, []);
    assert.equal(none.events, 0);
  });

  it('one pass (as `sluice suggest` now reads) gives the flows and promotions of two separate passes over their windows', () => {
    for (const [since, stableDays] of [[NOW - 7 * DAY, 14], [NOW - 30 * DAY, 3], [NOW - DAY, 1]] as const) {
      const one = scanWindow(store, { since, until: NOW + 1, promotions: { policy: base.policy, stableDays } });
      const obs = new Observations();
      for (const r of store.scanFlows({ since, until: NOW + 1 })) obs.addRow(r);
      const promo = promotions(base.policy, store.scanFlows({ since: NOW + 1 - stableDays * DAY, until: NOW + 1 }), { stableDays, until: NOW + 1, historyFrom: store.firstTime() });
      assert.equal(one.cutAt, null);
      assert.equal(one.obs.events, obs.events);
      assert.deepEqual([...one.obs.flows.entries()], [...obs.flows.entries()]);
      assert.deepEqual([...one.obs.ruleEvents], [...obs.ruleEvents]);
      assert.deepEqual(one.promo, promo);
    }
  });

  it('bounded: a scan past its time budget stops, says where, and claims neither never-hit rules nor promotions', () => {
    const big = new SqliteStore(join(dir, 'big.db'));
    try {
      big.append(Array.from({ length: 5000 }, (_, i) => ev(`198.18.${2 + (i % 200)}.${1 + (i % 250)}`, 443, NOW - 3 * DAY + i * 1000, { process: curl })));
      let t = 0;
      // A clock that moves a second each time it is read: the budget of 2 s runs out within the first rows.
      const slow = { budgetMs: 2_000, maxFlows: 100_000, facts: {}, now: () => NOW + 1000 * t++ };
      const cut = suggestForDashboard(big, base, req('7d'), slow) as unknown as Answer;
      assert.equal(cut.complete, false);
      assert.ok(cut.cutAt !== null);
      assert.ok(cut.events > 0 && cut.events < 5000, String(cut.events));
      assert.deepEqual(cut.neverHit, []);
      assert.equal(cut.promotions, null);
      const whole = suggestForDashboard(big, base, req('7d'), limits) as unknown as Answer;
      assert.equal(whole.complete, true);
      assert.equal(whole.events, 5000);
      // The distinct flows are capped too: what is beyond is counted, not held.
      const capped = suggestForDashboard(big, base, req('7d'), { ...limits, maxFlows: 10 }) as unknown as Answer & { overflow: number };
      assert.equal(capped.flows, 10);
      assert.equal(capped.events, 5000);
      assert.ok(capped.overflow > 0, 'the events beyond the flow table are counted');
    } finally {
      big.close();
    }
  });
});

describe('unit: GET /api/suggest through the app', () => {
  const TOKEN = newToken();
  const creds = new DashboardCredentials(TOKEN, 9330);
  const asked: SuggestRequest[] = [];
  const sources: DashboardSources = {
    status: () => ({}),
    events: () => [],
    stats: () => null,
    timeline: () => [],
    explain: () => ({ ok: false, error: 'no' }),
    suggest: (r) => {
      asked.push(r);
      if (r.sinceText === '2h') return { ok: false, error: 'another suggestion is being computed; try again shortly', retryAfter: 7, busy: true };
      if (r.sinceText === '3h') return { ok: false, error: 'the suggestion took longer than 30 s and was stopped; try a shorter window', retryAfter: 30 };
      return r.sinceText === '1h' ? { ok: false, error: 'The suggested policy does not load (a bug in suggest): x' } : { ok: true, value: { rules: [], since: r.since } };
    },
  };
  const live = new LiveHub({ maxClients: 1, queueMax: 10, flushMs: 50, heartbeatMs: 1000 });
  after(() => live.close());
  const assets = { html: '', js: '', css: '' };
  const app = dashboardApp({ listen: { host: '127.0.0.1', port: 9330 }, credentials: creds, sources, live, assets });
  const get = (path: string, auth = true, a = app) => a.request(`http://127.0.0.1:9330${path}`, { headers: { host: '127.0.0.1:9330', ...(auth ? { authorization: `Bearer ${TOKEN}` } : {}) } });

  it('signed in only; a good query reaches the source parsed; a bad one is 400 and reaches nothing', async () => {
    assert.equal((await get('/api/suggest', false)).status, 401);
    const ok = await get('/api/suggest?since=2d&stable-days=3');
    assert.equal(ok.status, 200);
    assert.equal(asked.at(-1)?.stableDays, 3);
    assert.equal(asked.at(-1)?.sinceText, '2d');
    const n = asked.length;
    for (const bad of ['since=400d', 'since=99999999999d', 'since=nope', 'stable-days=0', 'file=/etc/shadow', 'since=1d&since=2d']) {
      const r = await get(`/api/suggest?${bad}`);
      assert.equal(r.status, 400, bad);
      assert.ok(typeof ((await r.json()) as { error: string }).error === 'string');
    }
    assert.equal(asked.length, n, 'no bad query reached the store');
  });

  it("the source's error is a 500 with its message; no source, 503", async () => {
    const r = await get('/api/suggest?since=1h');
    assert.equal(r.status, 500);
    assert.match(((await r.json()) as { error: string }).error, /does not load/);
    const { suggest: _s, ...without } = sources;
    const bare = dashboardApp({ listen: { host: '127.0.0.1', port: 9330 }, credentials: creds, sources: without, live, assets });
    assert.equal((await get('/api/suggest', true, bare)).status, 503);
  });

  it('busy (another window being computed): 503 with Retry-After and busy: true, so the page asks again by itself; a window over its time: 503 without busy', async () => {
    const busy = await get('/api/suggest?since=2h');
    assert.equal(busy.status, 503);
    assert.equal(busy.headers.get('retry-after'), '7');
    assert.deepEqual(await busy.json(), { error: 'another suggestion is being computed; try again shortly', busy: true });
    const slow = await get('/api/suggest?since=3h');
    assert.equal(slow.status, 503);
    assert.equal(slow.headers.get('retry-after'), '30');
    assert.equal(((await slow.json()) as { busy?: boolean }).busy, undefined);
  });
});

describe('unit: SuggestRunner, one window at a time', () => {
  it('another window while one is computed: busy, with the seconds until the running one must end', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-runner-'));
    // A worker that never answers: the first window stays "computing".
    const runner = new SuggestRunner({ stateDir: dir, timeoutMs: 20_000, maxHeapMb: 64, entry: new URL('data:text/javascript,setInterval(() => {}, 1000)') });
    try {
      const req = (sinceText: string): SuggestRequest => ({ since: Date.now() - 3_600_000, sinceText, until: Date.now(), stableDays: 14 });
      void runner.run(req('1h'), 'a');
      const b = await runner.run(req('2h'), 'b');
      assert.equal(b.ok, false);
      assert.ok(!b.ok && b.busy === true && b.retryAfter !== undefined && b.retryAfter >= 19 && b.retryAfter <= 20, JSON.stringify(b));
    } finally {
      runner.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
