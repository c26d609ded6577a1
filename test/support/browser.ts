/**
 * Debian's Chromium (installed by the set-up; never a downloaded browser),
 * driven by playwright-core, started inside a test's network namespace so
 * that 127.0.0.1 is the namespace's loopback, where the daemon under test
 * serves its dashboard. Playwright talks to the browser over a pipe, so the
 * browser can be exec'd through nsenter: a two-line wrapper is its
 * executable.
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/**
 * Chromium's own traffic off: the namespaces have no way out, and a browser
 * that tries (updates, sync, safe browsing, and its DNS lookups, which would
 * go to the host's resolver: every name resolves to nothing, only the
 * dashboard's address literal is used) fills the event log with its blocked
 * attempts.
 */
const QUIET = ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-features=Translate,OptimizationHints,MediaRouter'];

export async function launchIn(ns: string, dir: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run make test (the set-up installs Debian's chromium)`);
  const wrapper = join(dir, 'chromium-in-ns');
  // Arguments pass through as "$@"; the namespace name is the test's own (no user input).
  writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=/run/netns/${ns} -- ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  // As root Chromium refuses its sandbox; Playwright passes --no-sandbox when chromiumSandbox is false.
  return chromium.launch({ executablePath: wrapper, headless: true, chromiumSandbox: false, args: QUIET, timeout: 60_000 });
}
