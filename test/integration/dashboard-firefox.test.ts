/**
 * Integration: the dashboard in Firefox (Debian's firefox-esr, driven over
 * WebDriver BiDi by puppeteer-core; see test/support/firefox.ts), against
 * `sluice daemon` enforcing in the world's client namespace, as
 * dashboard-browser.test.ts does with Chromium. A user signs in with the
 * link `sluice dashboard` prints, sees a blocked connect appear on the Live
 * page, visits every page at laptop and phone widths (each photographed
 * into reports/screenshots/ as firefox-dashboard-PAGE-WIDTH.png, none wider
 * than the window), moves between pages with the keyboard; no page logs an
 * error, throws, fails a request or trips its Content-Security-Policy, and
 * the browser itself tries to reach nothing.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'puppeteer-core';
import { blocked, ENFORCE_POLICY, ORIGIN, OVERFLOW, SHOTS, signInLink, startDashboard, WIDTHS } from '../support/dashboard-world.js';
import { launchFirefoxIn, type Firefox } from '../support/firefox.js';
import { waitFor } from '../support/monitor-helpers.js';
import { HOSTS, World } from '../world/world.js';

/** Each page, and what shows it rendered its main content (the daemon's data in it, not only the empty frame). */
const PAGES = {
  overview: '#top-rules tbody tr',
  live: '#live-table tbody tr',
  history: '#history-table tbody tr',
  policy: '#policy-rules tbody tr',
  suggest: '#suggest-summary .figures',
  health: '#health-accounting tbody tr',
} as const;

/**
 * Reports every CSP violation on the console from the page itself, added
 * before any script of the page runs (not subject to its CSP). Firefox 153's
 * WebDriver BiDi log also reports one, as an error "Content-Security-Policy:
 * …"; the watch does not depend on that.
 */
const CSP_WATCH = `document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + (e.blockedURI || '')));`;

describe('integration: the dashboard in Firefox (WebDriver BiDi)', () => {
  let w: World;
  let firefox: Firefox;
  let page: Page;
  /** Every console error, uncaught error, failed request and CSP violation any page gave. */
  const problems: string[] = [];

  before(async () => {
    w = await World.create();
    await startDashboard(w, ENFORCE_POLICY);
    firefox = await launchFirefoxIn(w);
    page = await firefox.browser.newPage();
    await page.setViewport(WIDTHS.laptop);
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });
    await page.evaluateOnNewDocument(CSP_WATCH);
  });
  after(async () => {
    await firefox?.close();
    await w?.destroy();
  });

  /** Expressions evaluated in the page (strings: the tests are compiled without the DOM's types). */
  const textOf = (selector: string) => `(document.querySelector(${JSON.stringify(selector)})?.textContent ?? '')`;
  const text = async (selector: string) => (await page.evaluate(textOf(selector))) as string;
  const hidden = async (selector: string) => (await page.evaluate(`document.querySelector(${JSON.stringify(selector)}).hidden`)) as boolean;
  /** Waits until the element's text matches. */
  const waitText = (selector: string, re: RegExp, timeout = 10_000) => page.waitForFunction(`new RegExp(${JSON.stringify(re.source)}).test(${textOf(selector)})`, { polling: 100, timeout });

  it('the sign-in link: the token gone from the address, a session cookie (HttpOnly, SameSite=Strict), the Overview under its CSP', async () => {
    const res = await page.goto(await signInLink(w));
    assert.equal(page.url(), `${ORIGIN}/`, 'redirected to the same page without the token');
    assert.equal(res?.status(), 200);
    assert.match(res?.headers()['content-security-policy'] ?? '', /default-src 'none'; script-src 'self'/);
    const cookies = await page.cookies();
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]?.httpOnly, true);
    assert.equal(cookies[0]?.sameSite, 'Strict');
    await waitText('#policy-state', /Mode: enforce/);
    assert.match(await text('#policy-state'), /table live/);
    assert.equal(await hidden('#page-overview'), false, 'the Overview shows');
  });

  it('a blocked connect appears on the Live page as it happens', async () => {
    await page.goto(`${ORIGIN}/#live`);
    await waitText('#live-state', /Live\./);
    const row = async () => (await page.evaluate(`[...document.querySelectorAll('#live-table tbody tr')].map((r) => r.textContent).find((t) => t.includes('${HOSTS.other4}:443'))`)) as string | undefined;
    // The daemon subscribes once it hears a stream is open: try until the first one shows.
    const shown = await waitFor('the blocked connect on the Live page', async () => {
      await blocked(w, 443);
      return (await row()) ?? undefined;
    }, 20_000);
    assert.match(shown, /blocked/);
    assert.match(shown, /#default/);
  });

  it('every page renders its main content at laptop and phone widths, photographed, none wider than the window', async () => {
    for (const [name, size] of Object.entries(WIDTHS)) {
      await page.setViewport(size);
      for (const [p, content] of Object.entries(PAGES)) {
        await page.goto(`${ORIGIN}/#${p}`);
        await page.waitForSelector(`#page-${p}`, { visible: true });
        await page.waitForSelector(`#page-${p} ${content}`, { timeout: 20_000 });
        const file = join(SHOTS, `firefox-dashboard-${p}-${name}.png`);
        await page.screenshot({ path: file as `${string}.png`, fullPage: true });
        assert.ok(statSync(file).size > 5_000, file);
        const overflow = (await page.evaluate(OVERFLOW)) as number;
        assert.ok(overflow <= 1, `${p} at ${name}: ${overflow}px wider than the window`);
      }
    }
    await page.setViewport(WIDTHS.laptop);
  });

  it('the keyboard: the first Tab reaches the navigation, Tab moves along it, Enter changes the page', async () => {
    await page.goto(`${ORIGIN}/#overview`);
    // A fresh load: focus starts at the top of the document, as for a user arriving.
    await page.reload();
    await page.waitForSelector('#page-overview', { visible: true });
    const focused = () => page.evaluate("document.activeElement?.textContent ?? ''");
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'Overview');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'Live');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#page-live', { visible: true });
    assert.equal(page.url(), `${ORIGIN}/#live`);
    assert.equal(await hidden('#page-overview'), true, 'the Overview is hidden');
  });

  it('no page logged an error, threw, failed a request or tripped its own Content-Security-Policy; the watch for it works', async () => {
    assert.deepEqual(problems, []);
    // An inline script the page's CSP (script-src 'self') refuses: the watch reports it, so the empty list above means something.
    await page.evaluate(`document.body.append(Object.assign(document.createElement('script'), { textContent: 'document.title = "inline ran"' }))`);
    await waitFor('the CSP violation reported', async () => (problems.length > 0 ? true : undefined), 5_000);
    assert.notEqual(await page.title(), 'inline ran');
    const logged = problems.splice(0);
    assert.ok(logged.some((p) => /^CSP violation: script-src/.test(p)), logged.join('\n'));
    assert.ok(logged.every((p) => /^CSP violation: script-src|Content-Security-Policy: .*inline script/.test(p)), logged.join('\n'));
  });

  it('the browser itself tried to reach nothing: every event is one of the test\'s own connects', async () => {
    const r = (await page.evaluate("fetch('/api/events?since=10m&limit=1000').then((r) => r.json())")) as { events: { dst: string }[] };
    assert.ok(r.events.length >= 1, `the test's connects are there: ${r.events.length}`);
    assert.deepEqual(r.events.filter((e) => e.dst !== HOSTS.other4), []);
  });
});
