/**
 * Debian's Firefox ESR (installed by the set-up; never a downloaded
 * browser), driven over WebDriver BiDi by puppeteer-core, started inside a
 * test's network namespace so that 127.0.0.1 is the namespace's loopback,
 * where the daemon under test serves its dashboard.
 *
 * puppeteer.launch() cannot be used through an nsenter wrapper as Chromium's
 * is: Firefox has no pipe for WebDriver BiDi, only a WebSocket on
 * 127.0.0.1:<port>, and that loopback is the namespace's, which the test
 * process (in the host's namespace) cannot connect to (ECONNREFUSED). So
 * Firefox is started here, in the namespace, and a small relay in the same
 * namespace connects to its WebSocket and passes the messages over its
 * stdin and stdout, one JSON message a line; puppeteer.connect() takes that
 * as its transport. Nothing listens in the host's namespace.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Browser as BrowserKind, createProfile } from '@puppeteer/browsers';
import puppeteer, { type Browser, type ConnectionTransport } from 'puppeteer-core';
import type { World } from '../world/world.js';

export const FIREFOX = '/usr/bin/firefox-esr';

/**
 * Firefox's own traffic off, on top of what puppeteer's profile sets: the
 * namespaces have no way out, and a browser that tries (updates, telemetry,
 * Remote Settings and its experiments, captive-portal and connectivity
 * checks, push, safe browsing, and its DNS lookups, which would go to the
 * host's resolver through the world and be blocked) fills the event log with
 * its blocked attempts. Every host name resolves to 127.0.0.1 (test pref of
 * Firefox's), DNS over HTTPS off: only the dashboard's address literal is used.
 */
const QUIET: Record<string, string | number | boolean> = {
  // Puppeteer's launcher sets this one itself: one content process (mouse events from the main frame).
  'fission.webContentIsolationStrategy': 0,
  'network.dns.native-is-localhost': true,
  'network.trr.mode': 5,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'network.predictor.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'captivedetect.canonicalURL': '',
  'app.update.auto': false,
  'app.normandy.enabled': false,
  'app.shield.optoutstudies.enabled': false,
  'messaging-system.rsexperimentloader.enabled': false,
  // What Firefox's Remote Agent itself recommends: no Remote Settings server at all (puppeteer's names a dummy host).
  'services.settings.server': 'data:,#remote-settings-dummy/v1',
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.archive.enabled': false,
  'toolkit.telemetry.server': '',
  'datareporting.policy.dataSubmissionEnabled': false,
  'browser.ping-centre.telemetry': false,
  'browser.newtabpage.activity-stream.feeds.telemetry': false,
  'browser.newtabpage.activity-stream.telemetry': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'browser.topsites.contile.enabled': false,
  'browser.safebrowsing.provider.google4.updateURL': '',
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'extensions.blocklist.enabled': false,
  'extensions.systemAddon.update.enabled': false,
  'dom.push.connection.enabled': false,
  'dom.push.serverURL': '',
  'geo.provider.network.url': '',
  'identity.fxaccounts.enabled': false,
  'media.gmp-manager.url': '',
  'security.OCSP.enabled': 0,
  'security.remote_settings.crlite_filters.enabled': false,
  'security.remote_settings.intermediates.enabled': false,
};

/** The relay (run by node in the namespace): WebSocket URL in argv, messages out on stdout and in on stdin, a line each. */
const RELAY = `
const ws = new WebSocket(process.argv[1]);
const queue = [];
ws.onopen = () => { for (const m of queue.splice(0)) ws.send(m); };
ws.onmessage = (e) => { process.stdout.write(JSON.stringify(JSON.parse(String(e.data))) + '\\n'); };
ws.onclose = () => process.exit(0);
ws.onerror = (e) => { console.error('relay: ' + (e.message || e.type)); process.exit(1); };
require('node:readline').createInterface({ input: process.stdin }).on('line', (m) => (ws.readyState === 1 ? ws.send(m) : queue.push(m))).on('close', () => ws.close());
`;

/** Puppeteer's transport over the relay's stdin and stdout. */
class RelayTransport implements ConnectionTransport {
  onmessage?: (message: string) => void;
  onclose?: () => void;
  constructor(private readonly relay: ChildProcess) {
    if (!relay.stdout || !relay.stdin) throw new Error('the relay has no pipes');
    createInterface({ input: relay.stdout }).on('line', (m) => this.onmessage?.(m));
    relay.on('exit', () => this.onclose?.());
  }
  send(message: string): void {
    // Puppeteer sends JSON.stringify's output: one line.
    this.relay.stdin?.write(`${message}\n`);
  }
  close(): void {
    this.relay.stdin?.end();
  }
}

export interface Firefox {
  browser: Browser;
  /** Closes the browser (WebDriver BiDi browser.close), and kills it if it is still there after 5 s. */
  close(): Promise<void>;
}

/** Firefox ESR in the world's client namespace, with a throwaway profile in the world's directory (killed with the world if not closed). */
export async function launchFirefoxIn(w: World, ns: string = w.client): Promise<Firefox> {
  if (!existsSync(FIREFOX)) throw new Error(`${FIREFOX} is missing: run make test (the set-up installs Debian's firefox-esr)`);
  const profile = join(w.tmp, 'firefox-profile');
  await createProfile(BrowserKind.FIREFOX, { path: profile, preferences: QUIET });
  const env = { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1', HOME: w.tmp };
  const firefox = w.spawnIn(ns, [FIREFOX, '--headless', '--no-remote', '--profile', profile, '--remote-debugging-port=0', 'about:blank'], { env });
  firefox.stdout?.resume();
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Firefox gave no WebDriver BiDi address in 30 s: ${log}`)), 30_000);
    firefox.stderr?.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-4_000);
      const m = /WebDriver BiDi listening on (ws:\/\/\S+)/.exec(log);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    firefox.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Firefox exited (${code}) before it listened: ${log}`));
    });
  });
  // Node 20 has WebSocket behind a flag; later ones have it by default.
  const flag = typeof globalThis.WebSocket === 'undefined' ? ['--experimental-websocket', '--no-warnings'] : [];
  const relay = w.spawnIn(ns, [process.execPath, ...flag, '-e', RELAY, `${url}/session`], { stdin: true });
  relay.stderr?.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => (firefox.exitCode !== null ? resolve() : firefox.once('exit', () => resolve())));
  const kill = () => {
    for (const p of [firefox, relay]) {
      try {
        if (p.pid && p.exitCode === null) process.kill(-p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  let browser: Browser;
  try {
    browser = await puppeteer.connect({ transport: new RelayTransport(relay), protocol: 'webDriverBiDi', defaultViewport: null });
  } catch (e) {
    kill();
    throw new Error(`cannot drive Firefox over WebDriver BiDi: ${(e as Error).message}; ${log}`);
  }
  return {
    browser,
    close: async () => {
      await Promise.race([browser.close().catch(() => undefined), new Promise((r) => setTimeout(r, 5_000))]);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      kill();
    },
  };
}
