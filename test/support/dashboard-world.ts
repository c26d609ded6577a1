/**
 * What the dashboard's browser tests (Chromium and Firefox) share: the
 * daemon serving the dashboard in a world's client namespace, the sign-in
 * link `sluice dashboard` prints, a connect the policy blocks, and where and
 * at which sizes pages are photographed.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE } from './monitor-helpers.js';
import { HOSTS, ROOT, type World } from '../world/world.js';

export const PORT = 9330;
export const ORIGIN = `http://127.0.0.1:${PORT}`;
/** Screenshots: dashboard-PAGE-WIDTH.png (a browser's prefix before it, e.g. firefox-). */
export const SHOTS = join(ROOT, 'reports/screenshots');
export const WIDTHS = { laptop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } } as const;
/** How much wider than the window the page is (0: no sideways scrolling). */
export const OVERFLOW = 'document.documentElement.scrollWidth - window.innerWidth';

/** Enforcing, the dashboard on the namespace's loopback; rule web lets 443/tcp to api4 through and logs it. */
export const ENFORCE_POLICY = `
mode: enforce
dashboard:
  listen: 127.0.0.1:${PORT}
rules:
  - name: web
    to: [${HOSTS.api4}]
    ports: [443/tcp]
    log: true
`;

/** `sluice daemon` on the policy in the world's client namespace, once running; its dashboard token. */
export async function startDashboard(w: World, policy: string): Promise<{ daemon: ChildProcess; token: string }> {
  const daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', w.policy(policy), '--metrics', 'off'], { env: w.env(), readyText: 'sluice daemon: running' });
  daemon.stderr?.resume();
  const token = readFileSync(join(w.stateDir, 'dashboard.token'), 'utf8').trim();
  mkdirSync(SHOTS, { recursive: true });
  return { daemon, token };
}

/** The sign-in link `sluice dashboard` prints (the token in it). */
export async function signInLink(w: World): Promise<string> {
  const r = await w.exec([NODE, join(ROOT, 'bin/sluice'), 'dashboard'], { env: w.env() });
  const link = /http:\/\/\S+\?token=\S+/.exec(r.stdout)?.[0];
  assert.ok(link, r.stdout);
  return link;
}

/** A connect from the client namespace to other4:PORT, which the policy blocks. */
export async function blocked(w: World, port: number): Promise<void> {
  assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:${port}`], { timeoutMs: 800 }), { [`tcp:${HOSTS.other4}:${port}`]: false });
}
