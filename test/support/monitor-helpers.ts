/**
 * Shared helpers for monitoring tests: the attempt helper process
 * (test/support/attempt.ts), waiting for events in the store.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { StoredEvent } from '../../src/events/event-store.js';
import { ROOT, type World } from '../world/world.js';

export const NODE = realpathSync(process.execPath);
const SUPPORT = join(ROOT, 'dist/test/support');

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/**
 * Starts the attempt helper; resolves with its pid and a function that triggers the attempt and returns its outcome.
 * `via`: argv it is started through (e.g. delegated-user.js DIR UID --), ending where its own argv begins.
 */
export async function attempter(w: World, args: string[], opts: { uid?: number; via?: string[] } = {}): Promise<{ pid: number; child: ChildProcess; go: () => Promise<{ ok: boolean; error?: string }> }> {
  const child = w.spawnIn(w.client, [...(opts.via ?? []), NODE, join(SUPPORT, 'attempt.js'), ...args], opts.uid !== undefined ? { uid: opts.uid } : {});
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      buf = buf.slice(nl + 1);
    }
  });
  const first = await waitFor('the attempt helper', async () => lines.find((l) => l.waiting));
  const pid = Number(first.pid);
  return {
    pid,
    child,
    go: async () => {
      process.kill(pid, 'SIGUSR1');
      const done = await waitFor('the attempt', async () => lines.find((l) => l.done));
      return { ok: done.ok === true, ...(typeof done.error === 'string' ? { error: done.error } : {}) };
    },
  };
}

/**
 * Ends an attempt helper and waits until it is gone and the collector has had time to notice (it lists
 * /proc every 100 ms): a process that exited before a later record is not a candidate for it.
 */
export async function finish(a: { pid: number; child: ChildProcess }): Promise<void> {
  a.child.kill('SIGKILL');
  await waitFor(`process ${a.pid} to exit`, async () => (existsSync(`/proc/${a.pid}`) ? undefined : true));
  await sleep(300);
}

/** GET /metrics from a world's daemon over its root-only Unix socket (the default; no network namespace needed to reach it). */
export function scrapeMetrics(w: World): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(w.stateDir, 'metrics.sock'), path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics: ${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** One sample of a metric from exposition text (NaN when absent). */
export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').at(-1)) : Number.NaN;
}

export async function logEvents(w: World, extra: string[] = []): Promise<StoredEvent[]> {
  const r = await w.sluiceJson<{ events: StoredEvent[] }>(['log', '--limit', '100000', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return r.json.events;
}

/** Waits until the store has an event from this local port, then lets one more flush pass and returns all of them. */
export async function eventsFrom(w: World, sport: number): Promise<StoredEvent[]> {
  await waitFor(`an event from local port ${sport}`, async () => ((await logEvents(w)).some((e) => e.sport === sport) ? true : undefined));
  await sleep(400);
  return (await logEvents(w)).filter((e) => e.sport === sport);
}

