/**
 * Integration: the dashboard in a real browser (Debian's Chromium driven by
 * Playwright), against `sluice daemon` enforcing in the world's client
 * namespace. A user signs in with the link `sluice dashboard` prints, sees
 * a blocked connect appear on the Live page, filters it (the filter in the
 * URL), finds it in History, asks Explain, reads Health; and the attacks a
 * browser makes possible fail: no token, no page; a page on another port of
 * the same host (same site, so the SameSite cookie goes along) cannot POST
 * or read; the page never trips its own Content-Security-Policy. Each page
 * is photographed at laptop and phone widths into reports/screenshots/.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchIn } from '../support/browser.js';
import { blocked as blockedIn, ENFORCE_POLICY, ORIGIN, PORT, SHOTS, signInLink, startDashboard, WIDTHS } from '../support/dashboard-world.js';
import { NODE, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, World } from '../world/world.js';

/** Same host, another port: the same site to a browser, another origin. */
const EVIL_PORT = 9331;
const PAGES = ['overview', 'live', 'history', 'explain', 'health', 'policy'] as const;

/** The attacker's page: on load it submits a form to the dashboard (a navigation, so the browser sends the cookie), after trying to read the API with fetch. */
const EVIL_PAGE = `<!doctype html><title>evil</title><body><form id="f" method="POST" action="${ORIGIN}/api/events"><input name="x" value="1"></form>
<script>
fetch('${ORIGIN}/api/events', { credentials: 'include' }).then(() => { document.title = 'read'; }, () => { document.title = 'not read'; })
  .finally(() => document.getElementById('f').submit());
</script>`;
const EVIL_SERVER = `require('node:http').createServer((q, s) => { s.writeHead(200, { 'content-type': 'text/html' }); s.end(${JSON.stringify(EVIL_PAGE)}); }).listen(${EVIL_PORT}, '127.0.0.1', () => console.log('evil ready'));`;

describe('integration: the dashboard in a browser', () => {
  let w: World;
  let daemon: ChildProcess;
  let token: string;
  let browser: Browser;
  let ctx: BrowserContext;
  let page: Page;
  /** Every console error and CSP report any page gave. */
  const problems: string[] = [];

  before(async () => {
    w = await World.create();
    ({ daemon, token } = await startDashboard(w, ENFORCE_POLICY));
    browser = await launchIn(w.client, w.tmp);
    ctx = await browser.newContext({ viewport: WIDTHS.laptop });
    page = await ctx.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await w?.destroy();
  });

  const blocked = (port: number) => blockedIn(w, port);
  const liveRows = () => page.locator('#live-table tbody tr');

  it('the sign-in link: a session cookie (HttpOnly, SameSite=Strict), the token gone from the address, the page under its CSP', async () => {
    const res = await page.goto(await signInLink(w));
    assert.equal(page.url(), `${ORIGIN}/`, 'redirected to the same page without the token');
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'none'; script-src 'self'/);
    const cookies = await ctx.cookies(ORIGIN);
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]?.httpOnly, true);
    assert.equal(cookies[0]?.sameSite, 'Strict');
    assert.ok(!cookies[0]?.value.includes(token), 'the cookie is not the token');
    await page.locator('#policy-state').filter({ hasText: 'Mode: enforce' }).waitFor();
    assert.match(await page.locator('#policy-state').innerText(), /table live/);
  });

  it('a blocked connect appears on the Live page as it happens; a filter in the URL keeps out what it excludes', async () => {
    await page.goto(`${ORIGIN}/#live`);
    await page.locator('#live-state').filter({ hasText: 'Live.' }).waitFor();
    // The daemon subscribes once it hears a stream is open: try until the first one shows.
    const row = liveRows().filter({ hasText: `${HOSTS.other4}:443` });
    await waitFor('the blocked connect on the Live page', async () => {
      await blocked(443);
      return (await row.count()) > 0 ? true : undefined;
    }, 20_000);
    assert.match(await row.first().innerText(), /blocked/);
    assert.match(await row.first().innerText(), /#default/);

    await page.selectOption('#live-filter select[name=verdict]', 'allowed');
    await page.click('#live-filter button[type=submit]');
    assert.match(page.url(), /#live\?verdict=allowed$/);
    await blocked(8443);
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true });
    // Events arrive in order: once the allowed connect (rule web logs) shows, the blocked one before it would have.
    const allowed = liveRows().filter({ hasText: `${HOSTS.api4}:443` });
    await allowed.first().waitFor({ timeout: 10_000 });
    assert.match(await allowed.first().innerText(), /allowed\s+web/);
    assert.equal(await liveRows().filter({ hasText: `${HOSTS.other4}:8443` }).count(), 0, 'the filtered-out attempt was not shown');
    // And the filter in the URL is what a reload or a shared link shows.
    await page.goto(`${ORIGIN}/#live?verdict=blocked`);
    assert.equal(await page.locator('#live-filter select[name=verdict]').inputValue(), 'blocked');
    // A link without the filter shows everything, and the form says so (not the value chosen before).
    await page.goto(`${ORIGIN}/#live`);
    assert.equal(await page.locator('#live-filter select[name=verdict]').inputValue(), '');
    await page.goto(`${ORIGIN}/#history?process=curl`);
    await page.goto(`${ORIGIN}/#history`);
    assert.equal(await page.locator('#history-filter input[name=process]').inputValue(), '');
    assert.equal(await page.locator('#history-filter input[name=since]').inputValue(), '1h', 'the default comes back');
  });

  it('Live under a burst: batches that arrive together are one render, the rows pushed out at the bottom are reused at the top, 500 kept, newest first, the filter applied', async () => {
    await page.goto(`${ORIGIN}/#overview`);
    // Three batches of 300 in one response (as a slow page catches up), then 204: the stream ends and is not reopened.
    const batch = (k: number) =>
      JSON.stringify({
        events: Array.from({ length: 300 }, (_, i) => {
          const id = k * 300 + i;
          return { kind: 'flow', time: Date.now(), verdict: id % 10 === 0 ? 'allowed' : 'blocked', rule: id % 10 === 0 ? 'web' : '#default', family: 4, proto: 6, src: '198.18.0.2', dst: HOSTS.other4, dport: 10_000 + id, process: { pid: 1, comm: 'burst' } };
        }),
        dropped: 0,
      });
    let streams = 0;
    await page.route(/\/api\/live$/, (route) =>
      streams++ === 0
        ? route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: `retry: 3000\n\n${[0, 1, 2].map((k) => `event: events\ndata: ${batch(k)}\n\n`).join('')}` })
        : route.fulfill({ status: 204, body: '' }),
    );
    try {
      await page.evaluate(`(() => {
        const t = document.querySelector('#live-table tbody');
        const s = window.__burst = { renders: 0, nodes: new Set(t.children) };
        new MutationObserver((ms) => { let added = false; for (const m of ms) for (const n of m.addedNodes) { s.nodes.add(n); added = true; } if (added) s.renders++; }).observe(t, { childList: true });
      })()`);
      await page.goto(`${ORIGIN}/#live?verdict=blocked`);
      const newest = liveRows().first();
      await newest.filter({ hasText: `${HOSTS.other4}:10899/tcp` }).waitFor({ timeout: 10_000 });
      assert.equal(await liveRows().count(), 500, 'the newest 500 kept');
      // 810 matched (every tenth was allowed, filtered out): the 500th newest of them is id 345.
      // textContent: the rows off screen are not rendered (content-visibility), so they have no innerText.
      assert.match((await liveRows().nth(499).textContent()) ?? '', new RegExp(`${HOSTS.other4.replace(/\./g, '\\.')}:10345/tcp`));
      const verdicts = (await page.evaluate(`[...document.querySelectorAll('#live-table tbody tr')].map((r) => r.children[2].textContent)`)) as string[];
      assert.deepEqual([...new Set(verdicts)], ['blocked'], 'the filter kept the allowed ones out');
      const seen = (await page.evaluate('({ renders: window.__burst.renders, nodes: window.__burst.nodes.size })')) as { renders: number; nodes: number };
      assert.ok(seen.renders <= 2, `${seen.renders} renders for three batches that arrived together`);
      assert.ok(seen.nodes <= 500, `${seen.nodes} row nodes for 810 rows shown: the ones pushed out are reused`);
    } finally {
      await page.unroute(/\/api\/live$/);
      await page.goto(`${ORIGIN}/#overview`);
    }
  });

  it('History, filtered from the URL, lists it with its export links; Explain gives the verdict and the rule', async () => {
    await page.goto(`${ORIGIN}/#history?verdict=blocked&since=10m`);
    await page.locator('#history-table tbody tr').filter({ hasText: `${HOSTS.other4}:443` }).first().waitFor();
    assert.equal(await page.locator('#history-filter select[name=verdict]').inputValue(), 'blocked');
    const csv = await page.locator('#export-csv').getAttribute('href');
    assert.match(csv ?? '', /verdict=blocked/);
    assert.match(csv ?? '', /format=csv/);

    // "Allow this…" on the blocked attempt: the ladder, narrowest first, each step a rule that loads.
    await page.locator('#history-table tbody tr').filter({ hasText: `${HOSTS.other4}:443` }).first().locator('a.allow-link').click();
    assert.match(page.url(), /#allow\?event=\d+$/);
    await page.locator('#allow-result ol.ladder > li').first().waitFor();
    const steps = await page.locator('#allow-result ol.ladder > li h3').allInnerTexts();
    assert.deepEqual(steps, [`user root (uid 0) to ${HOSTS.other4} on 443/tcp`, `anyone to ${HOSTS.other4} on 443/tcp`]);
    assert.match(await page.locator('#allow-result ol.ladder > li pre').first().innerText(), new RegExp(`to:\\n\\s+- ${HOSTS.other4.replace(/\./g, '\\.')}`));

    await page.goto(`${ORIGIN}/#explain`);
    await page.fill('#explain-form input[name=dest]', HOSTS.api4);
    await page.fill('#explain-form input[name=port]', '443/tcp');
    await page.click('#explain-form button[type=submit]');
    await page.locator('#explain-result').filter({ hasText: 'web' }).waitFor();
    assert.match(await page.locator('#explain-result').innerText(), /allow/i);
  });

  it('Allow this, applied by clicking: the blocked event, its narrowest step, its diff, Apply, Confirm; the same connect then succeeds', async () => {
    await blocked(443);
    await page.goto(`${ORIGIN}/#history?verdict=blocked&since=10m`);
    await page.locator('#history-table tbody tr').filter({ hasText: `${HOSTS.other4}:443` }).first().locator('a.allow-link').click();
    const narrowest = page.locator('#allow-result ol.ladder > li').first();
    await narrowest.waitFor();
    assert.equal(await narrowest.locator('h3').innerText(), `user root (uid 0) to ${HOSTS.other4} on 443/tcp`);
    // Keyboard: the step is chosen with Enter, and focus moves to its Apply button.
    await narrowest.getByRole('button', { name: 'Choose this step' }).focus();
    await page.keyboard.press('Enter');
    const apply = narrowest.getByRole('button', { name: /^Apply \(rolls back in 120 s unless confirmed\)$/ });
    await apply.waitFor();
    assert.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'apply-step');
    assert.match(await narrowest.locator('pre.diff').innerText(), new RegExp(`^\\+\\s+- ${HOSTS.other4.replace(/\./g, '\\.')}$`, 'm'));
    for (const [name, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      await page.screenshot({ path: join(SHOTS, `dashboard-allow-${name}.png`), fullPage: true });
      const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
      assert.ok(overflow <= 1, `allow at ${name}: ${overflow}px wider than the window`);
    }
    await page.setViewportSize(WIDTHS.laptop);
    await apply.click();
    const confirm = page.locator('#pending-confirm');
    await page.locator('#pending').waitFor({ state: 'visible' });
    assert.match(await page.locator('#pending-text').innerText(), /rolls back in \d+ s unless confirmed/);
    assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:443`]), { [`tcp:${HOSTS.other4}:443`]: true }, 'allowed while it waits for confirmation');
    await page.screenshot({ path: join(SHOTS, 'dashboard-pending-laptop.png'), fullPage: true });
    await confirm.click();
    await page.locator('#pending-text').filter({ hasText: /^Confirmed: the change stays\.$/ }).waitFor();
    const state = JSON.parse(readFileSync(join(w.stateDir, 'applied.json'), 'utf8')) as { policyFile: string };
    assert.match(readFileSync(state.policyFile, 'utf8'), new RegExp(HOSTS.other4.replace(/\./g, '\\.')), `the policy file holds the confirmed policy: ${readFileSync(join(w.stateDir, 'journal.log'), 'utf8').split('\n').filter((l) => l.includes('"confirm"')).join('\n')}`);
    assert.ok(!readFileSync(join(w.stateDir, 'journal.log'), 'utf8').includes('"event":"rollback"'), 'nothing rolled back');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:443`]), { [`tcp:${HOSTS.other4}:443`]: true }, 'the same connect succeeds');
    // The Policy page lists it: who (the dashboard, signed in with the session) and its diff.
    await page.goto(`${ORIGIN}/#policy`);
    const row = page.locator('#policy-versions tbody tr').filter({ hasText: 'apply by dashboard (session' }).first();
    await row.waitFor();
    assert.match(await row.innerText(), /apply by dashboard \(session, 127\.0\.0\.1:\d+\): allow /);
  });

  it('the Policy page lists the applied rules with their kernel counters: rule web is never hit since the last apply, until a connect it allows raises its counter', async () => {
    await page.goto(`${ORIGIN}/#policy`);
    const web = page.locator('#policy-rules tbody tr[data-rule="web"]');
    await web.waitFor();
    // The apply above (Allow this) started the kernel's counters again; nothing has gone to web's host since.
    assert.match(await web.innerText(), new RegExp(`^web[\\s\\S]*allow[\\s\\S]*to ${HOSTS.api4.replace(/\./g, '\\.')} · ports 443/tcp · logged[\\s\\S]*0 \\(never hit\\)`));
    assert.match(await page.locator('#policy-rules-summary').innerText(), /Never hit: 1 \(web\)/);
    // The rule Allow this added was hit by the connect that then succeeded.
    const added = page.locator('#policy-rules tbody tr').filter({ hasText: HOSTS.other4 }).first();
    assert.ok(Number(await added.locator('td').nth(3).getAttribute('data-packets')) >= 1, await added.innerText());
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true });
    await waitFor('rule web counted on the Policy page', async () => {
      await page.reload();
      await web.waitFor();
      return Number(await web.locator('td').nth(3).getAttribute('data-packets')) >= 1 ? true : undefined;
    }, 10_000);
    assert.doesNotMatch(await web.innerText(), /never hit/);
    assert.match(await page.locator('#policy-rules-summary').innerText(), /Every rule has been hit\./);
    for (const [name, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      const file = join(SHOTS, `dashboard-policy-rules-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      assert.ok(statSync(file).size > 5_000, file);
      const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
      assert.ok(overflow <= 1, `policy rules at ${name}: ${overflow}px wider than the window`);
      if (name === 'phone') {
        // Readable: at phone width what a rule matches gets a card's whole width, not a column a few words wide.
        const table = await page.locator('#policy-rules').boundingBox();
        const matches = await web.locator('td').nth(2).boundingBox();
        assert.ok(table && matches && matches.width >= 0.9 * table.width, `policy rules at ${name}: the matches cell is ${matches?.width}px of ${table?.width}px`);
        // The applied versions likewise: who made a change, and what, across the width.
        const versions = await page.locator('#policy-versions').boundingBox();
        const change = await page.locator('#policy-versions tbody tr').first().locator('td').nth(1).boundingBox();
        assert.ok(versions && change && change.width >= 0.9 * versions.width, `policy versions at ${name}: the change cell is ${change?.width}px of ${versions?.width}px`);
      }
    }
    await page.setViewportSize(WIDTHS.laptop);
  });

  it('Health shows the event accounting balanced and the attribution of what was blocked', async () => {
    await page.goto(`${ORIGIN}/#health`);
    await page.locator('#health-accounting tbody tr').first().waitFor();
    await blocked(8080);
    // The page refreshes every 5 s; the attempt above is counted by the kernel and, once stored, balances.
    await page.locator('#health-state').filter({ hasText: 'every counted packet accounted for' }).waitFor({ timeout: 20_000 });
    const stored = page.locator('#health-accounting tbody tr').filter({ hasText: 'Stored: blocked' });
    assert.ok(Number(await stored.locator('td').nth(2).innerText()) >= 3, await stored.innerText()); // 443 (at least once), 8443, 8080
    assert.match(await page.locator('#health-attribution').innerText(), /with a process\s+\d/);
  });

  it('every page at laptop and phone widths, photographed; every form control labelled; the first Tab reaches the navigation', async () => {
    for (const [name, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      for (const p of PAGES) {
        await page.goto(`${ORIGIN}/#${p}`);
        await page.locator(`#page-${p}`).waitFor({ state: 'visible' });
        if (p === 'overview') await page.locator('#top-rules tbody tr').first().waitFor();
        if (p === 'health') await page.locator('#health-accounting tbody tr').first().waitFor();
        if (p === 'policy') await page.locator('#policy-rules tbody tr').first().waitFor();
        const file = join(SHOTS, `dashboard-${p}-${name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        assert.ok(statSync(file).size > 5_000, file);
        // Nothing wider than the window: no sideways scrolling at phone width.
        const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
        assert.ok(overflow <= 1, `${p} at ${name}: ${overflow}px wider than the window`);
      }
    }
    const unlabelled = await page.evaluate("[...document.querySelectorAll('input, select')].filter((e) => !e.closest('label') && !e.getAttribute('aria-label')).map((e) => e.outerHTML)");
    assert.deepEqual(unlabelled, []);
    await page.setViewportSize(WIDTHS.laptop);
    await page.goto(`${ORIGIN}/#overview`);
    // A fresh load: focus starts at the top of the document, as for a user arriving.
    await page.reload();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement && document.activeElement.textContent'), 'Overview');
  });

  it('without the token nothing is served; a page on another port cannot POST (403, Origin) nor read the API (no CORS)', async () => {
    const stranger = await browser.newContext();
    try {
      const p = await stranger.newPage();
      const r = await p.goto(`${ORIGIN}/`);
      assert.equal(r?.status(), 401);
      assert.ok(!(await p.content()).includes('Overview'), 'no page');
    } finally {
      await stranger.close();
    }

    const evil = await w.spawnReady(w.client, [NODE, '-e', EVIL_SERVER], { readyText: 'evil ready' });
    // A tab of the signed-in browser (the same cookie jar) opens the attacker's page.
    const tab = await ctx.newPage();
    const seen: string[] = [];
    tab.on('console', (m) => seen.push(m.text()));
    try {
      const attacked = tab.waitForResponse((res) => res.url() === `${ORIGIN}/api/events` && res.request().method() === 'POST', { timeout: 15_000 });
      await tab.goto(`http://127.0.0.1:${EVIL_PORT}/`);
      const post = await attacked;
      assert.equal(post.status(), 403, 'the cross-origin POST is refused');
      assert.equal(await post.request().headerValue('origin'), `http://127.0.0.1:${EVIL_PORT}`);
      assert.match((await post.request().headerValue('cookie')) ?? '', /sluice_session/, 'same site: the cookie went along, and the Origin check alone refused it');
      // The fetch before it: the browser withheld the response (no CORS headers), so the page learned nothing.
      assert.ok(seen.some((m) => /CORS|Access-Control-Allow-Origin/.test(m)), seen.join('\n'));
    } finally {
      await tab.close();
      evil.kill('SIGKILL');
    }
  });

  it('no page tripped its own Content-Security-Policy or threw', () => {
    assert.deepEqual(problems, []);
  });

  it('the browser itself tried to reach nothing: every event is one of the test\'s own connects', async () => {
    const r = (await page.evaluate("fetch('/api/events?since=10m&limit=1000').then((r) => r.json())")) as { events: { dst: string; process?: { comm?: string } }[] };
    assert.ok(r.events.length >= 5, `the test's connects are there: ${r.events.length}`);
    const others = r.events.filter((e) => e.dst !== HOSTS.other4 && e.dst !== HOSTS.api4);
    assert.deepEqual(others, []);
    assert.ok(daemon.exitCode === null, 'the daemon is alive');
  });
});

/**
 * The Suggestions page and the Overview chart's zoom, against a daemon in
 * audit mode (what `sluice suggest` learns from: nothing is blocked, what
 * would be is recorded): a connect the policy does not allow becomes a
 * suggested rule with its figures, ticked and copied as YAML with the
 * keyboard; the window is in the URL; a bad one says why. On the Overview a
 * drag across the chart puts a time range into the URL, the lists follow
 * it, and Reset zoom goes back.
 */
describe('integration: the dashboard in a browser, audit mode: suggestions and the chart zoom', () => {
  /** ENFORCE_POLICY in audit mode, with a rule nothing uses. */
  const AUDIT_POLICY = `${ENFORCE_POLICY.replace('mode: enforce', 'mode: audit')}  - name: unused
    to: [${HOSTS.net3}]
    ports: [22/tcp]
`;
  let w: World;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async () => {
    w = await World.create();
    await startDashboard(w, AUDIT_POLICY);
    browser = await launchIn(w.client, w.tmp);
    const ctx = await browser.newContext({ viewport: WIDTHS.laptop });
    page = await ctx.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(await signInLink(w));
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await w?.destroy();
  });

  const stored = async (verdict: string, dst: string, dport: number) => {
    const r = (await page.evaluate(`fetch('/api/events?since=10m&verdict=${verdict}&limit=1000').then((r) => r.json())`)) as { events: { dst: string; dport?: number }[] };
    return r.events.some((e) => e.dst === dst && e.dport === dport) ? true : undefined;
  };

  it('a connect in audit mode the policy does not allow is a suggested rule with its figures; ticked with the keyboard, its YAML is there to copy', async () => {
    // Audit: the connect goes through, and is recorded as would-block; the allowed one hits rule web.
    assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:8080`, `tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.other4}:8080`]: true, [`tcp:${HOSTS.api4}:443`]: true });
    await waitFor('the would-block connect in the store', () => stored('would-block', HOSTS.other4, 8080), 20_000);
    await waitFor('the allowed connect in the store', () => stored('allowed', HOSTS.api4, 443), 20_000);

    await page.goto(`${ORIGIN}/#suggest?since=1h`);
    const card = page.locator('#suggest-rules .card').filter({ hasText: HOSTS.other4 });
    await card.first().waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#suggest-filter input[name=since]').inputValue(), '1h', 'the window from the URL');
    const text = await card.first().innerText();
    assert.match(text, /8080\/tcp/);
    assert.match(text, /Events\s+\d+/);
    assert.match(text, /First seen\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    assert.match(text, /Last seen\s+\d{4}-\d\d-\d\d/);
    assert.match(text, /Days\s+1 distinct day/);
    assert.match(text, /Processes\s+\S/);
    assert.equal(await page.locator('#suggest-rules .card').filter({ hasText: HOSTS.api4 }).count(), 0, 'what the policy allows is not suggested again');
    const summary = await page.locator('#suggest-summary').innerText();
    assert.match(summary, /\d+\s+new rules?/);
    assert.match(summary, /0\s+would break/);
    assert.match(summary, /\d+\s+would block/);
    assert.match(await page.locator('#suggest-more').innerText(), /unused \(line \d+\): no observed flow needed it/);
    assert.match(await page.locator('#page-suggest').innerText(), /nothing is applied from this page/);

    // Nothing ticked, nothing to copy; the checkbox with the keyboard.
    assert.equal(await page.locator('#suggest-yaml').inputValue(), '');
    await card.first().locator('input[type=checkbox]').focus();
    await page.keyboard.press('Space');
    const yaml = await page.locator('#suggest-yaml').inputValue();
    assert.match(yaml, /^rules:\n/);
    assert.match(yaml, new RegExp(`- ${HOSTS.other4.replace(/\./g, '\\.')}`));
    assert.match(yaml, /- 8080\/tcp/);

    for (const [name, size] of Object.entries(WIDTHS)) {
      await page.setViewportSize(size);
      const file = join(SHOTS, `dashboard-suggest-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      assert.ok(statSync(file).size > 5_000, file);
      const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
      assert.ok(overflow <= 1, `suggest at ${name}: ${overflow}px wider than the window`);
    }
    await page.setViewportSize(WIDTHS.laptop);
    const unlabelled = await page.evaluate("[...document.querySelectorAll('input, select, textarea')].filter((e) => !e.closest('label') && !e.getAttribute('aria-label') && !(e.id && document.querySelector(`label[for=\"${e.id}\"]`))).map((e) => e.outerHTML)");
    assert.deepEqual(unlabelled, []);
  });

  it('the window is chosen on the page and kept in the URL; a window the API refuses says why', async () => {
    await page.fill('#suggest-filter input[name=since]', '2h');
    await page.click('#suggest-filter button[type=submit]');
    await page.waitForURL(/#suggest\?since=2h$/);
    await page.locator('#suggest-rules .card').filter({ hasText: HOSTS.other4 }).first().waitFor({ timeout: 30_000 });
    const before = problems.length;
    await page.goto(`${ORIGIN}/#suggest?since=400d`);
    await page.locator('#suggest-state').filter({ hasText: /^Cannot suggest: since: at most 31 days back/ }).waitFor();
    assert.equal(await page.locator('#suggest-rules .card').count(), 0);
    // The browser logs the refused request itself; that one is this test's doing.
    const logged = problems.splice(before);
    assert.ok(logged.every((p) => /status of 400/.test(p)), logged.join('\n'));
  });

  it('Suggestions, the server busy (503, busy, Retry-After): the page says it waits, asks again by itself after those seconds, then shows the cards; a window stopped for its time is not retried', async () => {
    const SUGGEST = /\/api\/suggest\?/;
    const times: number[] = [];
    let answer: 'busy' | 'slow' = 'busy';
    await page.route(SUGGEST, async (route) => {
      times.push(Date.now());
      if (times.length === 1) {
        const body = answer === 'busy' ? { error: 'another suggestion is being computed; try again shortly', busy: true } : { error: 'the suggestion took longer than 30 s and was stopped; try a shorter window' };
        return route.fulfill({ status: 503, headers: { 'retry-after': answer === 'busy' ? '2' : '30', 'content-type': 'application/json' }, body: JSON.stringify(body) });
      }
      return route.continue();
    });
    const before = problems.length;
    try {
      await page.goto(`${ORIGIN}/#suggest?since=3h`);
      await page.locator('#suggest-state').filter({ hasText: /^Busy: another suggestion is being computed; try again shortly\. Waiting 2 s as the server asks, then trying again by itself \(try 2 of 10\)\.$/ }).waitFor();
      await page.locator('#suggest-wait').filter({ hasText: /^Next try in [12] s\.$/ }).waitFor();
      await page.locator('#suggest-rules .card').filter({ hasText: HOSTS.other4 }).first().waitFor({ timeout: 30_000 });
      assert.equal(times.length, 2, 'asked once more, by itself');
      assert.ok((times[1] ?? 0) - (times[0] ?? 0) >= 1_900, `asked again after ${(times[1] ?? 0) - (times[0] ?? 0)} ms: Retry-After is 2 s`);
      assert.equal(await page.locator('#suggest-wait').innerText(), '');
      assert.match(await page.locator('#suggest-state').innerText(), /^\d+ events from /);

      // Over its time: the same window would be stopped again; the page says so and waits for the user.
      times.length = 0;
      answer = 'slow';
      await page.goto(`${ORIGIN}/#suggest?since=4h`);
      await page.locator('#suggest-state').filter({ hasText: /^Cannot suggest: the suggestion took longer than 30 s and was stopped; try a shorter window \(the server can take another in 30 s\)$/ }).waitFor();
      await new Promise((r) => setTimeout(r, 2_500));
      assert.equal(times.length, 1, 'not retried');
      // The browser logs the two 503s itself; they are this test's doing.
      const logged = problems.splice(before);
      assert.ok(logged.length === 2 && logged.every((p) => /status of 503/.test(p)), logged.join('\n'));
    } finally {
      await page.unroute(SUGGEST);
    }
  });

  it('the Overview chart: a drag across it puts the time range into the URL, the lists follow it, Reset zoom goes back; + zooms from the keyboard', async () => {
    await page.goto(`${ORIGIN}/#overview`);
    await page.locator('#chart svg').waitFor();
    await page.locator('#top-rules tbody tr').first().waitFor();
    // The drawing keeps its aspect, so it may not fill the box: drag along its time axis.
    const box = await page.locator('#chart svg line.axis').boundingBox();
    assert.ok(box);
    const asked = page.waitForRequest((r) => /\/api\/stats\?since=[^&]+Z&until=[^&]+Z/.test(r.url()));
    await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
    await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    await page.waitForURL(/#overview\?from=/, { timeout: 5_000 });
    const m = /#overview\?from=([^&]+)&to=([^&]+)$/.exec(page.url());
    assert.ok(m, page.url());
    const from = Date.parse(decodeURIComponent(m[1] ?? ''));
    const to = Date.parse(decodeURIComponent(m[2] ?? ''));
    const now = Date.now();
    assert.ok(from < to && to <= now + 1000 && from >= now - 3_700_000, `${m[1]} .. ${m[2]}`);
    // 20% to 80% of the last hour: about 36 minutes, and not the whole hour.
    assert.ok(to - from > 30 * 60_000 && to - from < 42 * 60_000, `${(to - from) / 60_000} min`);
    // The lists and the chart come from /api/stats for that range.
    const stats = new URL((await asked).url());
    assert.equal(Date.parse(stats.searchParams.get('since') ?? ''), from);
    assert.equal(Date.parse(stats.searchParams.get('until') ?? ''), to);
    await page.locator('#h-overview').filter({ hasText: ' to ' }).waitFor();
    assert.equal(await page.locator('#zoom-reset').isEnabled(), true);
    assert.equal(Date.parse(await page.locator('#zoom-form input[name=from]').inputValue()), from);
    const file = join(SHOTS, 'dashboard-overview-zoomed-laptop.png');
    await page.screenshot({ path: file, fullPage: true });

    await page.click('#zoom-reset');
    await page.waitForURL(/#overview$/);
    await page.locator('#h-overview').filter({ hasText: 'the last hour' }).waitFor();
    assert.equal(await page.locator('#zoom-reset').isEnabled(), false);

    // The keyboard way: focus the chart, + halves the range.
    await page.locator('#chart').focus();
    await page.keyboard.press('+');
    await page.waitForURL(/#overview\?from=[^&]+&to=[^&]+$/);
    await page.locator('#h-overview').filter({ hasText: ' to ' }).waitFor();
    await page.keyboard.press('0');
    await page.waitForURL(/#overview$/);
  });

  it('a tamper (the table deleted by nft) is marked on the Overview chart\'s time axis, and stays where it happened when zoomed', async () => {
    await page.goto(`${ORIGIN}/#overview`);
    await page.locator('#chart svg').waitFor();
    assert.equal(await page.locator('#chart .tamper-mark').count(), 0, 'no mark before the tamper');
    const at = Date.now();
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    // The watchdog restores it within a second or so and journals it; the page asks /api/stats again on a reload.
    await waitFor('the restore', async () => ((await w.nft(['list', 'tables'])).includes('inet sluice') ? true : undefined), 10_000);
    const mark = page.locator('#chart .tamper-mark').first();
    await waitFor('the tamper mark', async () => {
      await page.reload();
      await page.locator('#chart svg').waitFor();
      return (await page.locator('#chart .tamper-mark').count()) > 0 ? true : undefined;
    }, 10_000);
    assert.equal(await page.locator('#chart .tamper-mark').count(), 1);
    const time = Number(await mark.getAttribute('data-time'));
    assert.ok(time >= at - 1000 && time <= Date.now(), `${time} vs ${at}`);
    assert.match(await mark.getAttribute('class') ?? '', /\brestored\b/);
    assert.match(await mark.locator('title').textContent() ?? '', /^Tamper .* UTC: restored; by nft \(pid \d+\); the table was deleted/);
    assert.match(await page.locator('#totals').innerText(), /Tamper: 1 finding in this range \(1 restored\)/);
    // The last hour: the mark is at the right end, where now is.
    const x = async () => Number(await mark.locator('line').getAttribute('x1'));
    assert.ok((await x()) > 560, `x ${await x()} of 600 in the last hour`);
    // Zoomed to ten minutes around it: the mark moves to the middle with its time, as the lines do.
    const zoomFrom = Math.round((time - 300_000) / 1000) * 1000;
    const q = new URLSearchParams({ from: new Date(zoomFrom).toISOString(), to: new Date(Math.round((time + 300_000) / 1000) * 1000).toISOString() });
    await page.goto(`${ORIGIN}/#overview?${q}`);
    await page.locator('#h-overview').filter({ hasText: ' to ' }).waitFor();
    // The heading changes before /api/stats answers: wait for the zoomed drawing, not the last hour's still on the page.
    await page.locator(`#chart svg[data-from="${zoomFrom}"]`).waitFor();
    await mark.waitFor();
    assert.equal(Number(await mark.getAttribute('data-time')), time);
    // Within two one-minute buckets of the middle: the lines draw bucket i at i * step, and the mark uses the same mapping.
    assert.ok(Math.abs((await x()) - 300) < 110, `x ${await x()} of 600: the middle of the zoomed range`);
    await page.screenshot({ path: join(SHOTS, 'dashboard-overview-tamper-laptop.png'), fullPage: true });
    // Zoomed to a range before it: no mark.
    const beforeFrom = Math.round((time - 1_200_000) / 1000) * 1000;
    const before = new URLSearchParams({ from: new Date(beforeFrom).toISOString(), to: new Date(Math.round((time - 600_000) / 1000) * 1000).toISOString() });
    await page.goto(`${ORIGIN}/#overview?${before}`);
    await page.locator('#h-overview').filter({ hasText: ' to ' }).waitFor();
    await page.locator(`#chart svg[data-from="${beforeFrom}"]`).waitFor();
    assert.equal(await page.locator('#chart .tamper-mark').count(), 0);
  });

  it('a last-hour load still in flight when the user zooms does not draw over the zoomed chart when it ends', async () => {
    await page.goto(`${ORIGIN}/#health`);
    // Hold the last hour's answer until the zoom has been drawn, then let it through.
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => { release = r; });
    let heldAsked = false;
    await page.route(/\/api\/stats\?since=1h/, async (route) => {
      heldAsked = true;
      await held;
      await route.continue().catch(() => undefined);
    });
    try {
      await page.goto(`${ORIGIN}/#overview`);
      await waitFor('the held last-hour request', async () => (heldAsked ? true : undefined), 5_000);
      const now = Date.now();
      const zoomFrom = Math.round((now - 1_800_000) / 1000) * 1000;
      const zoomTo = Math.round((now - 600_000) / 1000) * 1000;
      await page.goto(`${ORIGIN}/#overview?${new URLSearchParams({ from: new Date(zoomFrom).toISOString(), to: new Date(zoomTo).toISOString() })}`);
      await page.locator(`#chart svg[data-from="${zoomFrom}"]`).waitFor();
      const lastHour = page.waitForResponse(/\/api\/stats\?since=1h/);
      release();
      await lastHour;
      // Give the page the turn in which it would draw the old answer.
      await page.evaluate('new Promise((r) => setTimeout(r, 200))');
      assert.equal(await page.locator('#chart svg').getAttribute('data-from'), String(zoomFrom), 'the zoomed drawing stays');
      assert.equal(await page.locator('#page-overview').getAttribute('aria-busy'), 'false');
      assert.match(await page.locator('#h-overview').innerText(), / to /);
    } finally {
      release();
      await page.unroute(/\/api\/stats\?since=1h/);
      await page.goto(`${ORIGIN}/#overview`);
    }
  });

  it('no page tripped its own Content-Security-Policy or threw', () => {
    assert.deepEqual(problems, []);
  });
});
