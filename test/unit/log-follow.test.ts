/**
 * `sluice log --follow` as a user runs it: a real process tailing the event
 * store while another writer (the daemon's part, here a SqliteStore) appends.
 * It prints what matches its filters, each event once, in order, including
 * bursts larger than one read; it waits for a store that does not exist yet;
 * and it ends cleanly on SIGINT.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { StoredEvent } from '../../src/events/event-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { eventStorePath } from '../../src/events/store-component.js';
import { ev } from '../support/event-store-contract.js';

const SLUICE = fileURLToPath(new URL('../../../bin/sluice', import.meta.url));
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sluice-follow-'));
  dirs.push(d);
  return d;
}

interface Follower {
  child: ChildProcess;
  lines: string[];
  exit: Promise<number | null>;
}

function follow(dir: string, args: string[]): Follower {
  const child = spawn(process.execPath, [SLUICE, 'log', '--follow', ...args], { env: { ...process.env, SLUICE_STATE_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.resume();
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, lines, exit };
}

/** Polls until `cond` holds or `ms` passed (then fails with `what`). */
async function until(ms: number, what: string, cond: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Ends the follower with SIGINT; it must exit 0 promptly. */
async function stop(f: Follower): Promise<void> {
  f.child.kill('SIGINT');
  const code = await Promise.race([f.exit, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000))]);
  if (code === 'hung') f.child.kill('SIGKILL');
  assert.equal(code, 0, 'log --follow exits 0 on SIGINT');
}

describe('unit: sluice log --follow', () => {
  it('waits for a store that does not exist yet, then prints each matching event once, in order, bursts included', async () => {
    const dir = stateDir();
    const f = follow(dir, ['--json', '--verdict', 'blocked']);
    try {
      await new Promise((r) => setTimeout(r, 400)); // it is polling for a file that is not there
      assert.equal(f.child.exitCode, null, 'still running without a store');
      const store = new SqliteStore(eventStorePath(dir));
      try {
        store.append([ev({ sport: 1 }), ev({ sport: 2, verdict: 'allowed' }), ev({ sport: 3 })]);
        await until(5000, 'the first two blocked events', () => f.lines.length >= 2);
        // More than one read's worth (1,000) in one append.
        store.append(Array.from({ length: 2500 }, (_, i) => ev({ sport: 1000 + i, verdict: i % 5 === 0 ? 'allowed' : 'blocked' })));
        await until(10_000, 'the burst', () => f.lines.length >= 2 + 2000);
        await new Promise((r) => setTimeout(r, 600)); // two more polls: nothing is printed twice
        const events = f.lines.map((l) => JSON.parse(l) as StoredEvent);
        assert.equal(events.length, 2 + 2000);
        assert.ok(events.every((e) => e.verdict === 'blocked'), 'only what the filter matches');
        const ids = events.map((e) => e.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in store order');
        assert.equal(new Set(ids).size, ids.length, 'each once');
        assert.deepEqual(events.slice(0, 2).map((e) => e.sport), [1, 3]);
        assert.equal(events.at(-1)?.sport, 1000 + 2499);
      } finally {
        store.close();
      }
    } finally {
      await stop(f);
    }
  });

  it('with events already stored: the newest --limit first, then only new ones; text lines without --json', async () => {
    const dir = stateDir();
    const store = new SqliteStore(eventStorePath(dir));
    try {
      store.append([ev({ sport: 11, rule: 'old' }), ev({ sport: 12, rule: 'old' }), ev({ sport: 13, rule: 'old' })]);
      const f = follow(dir, ['--limit', '2']);
      try {
        await until(5000, 'the two newest stored events', () => f.lines.length >= 2);
        store.append([ev({ sport: 14, rule: 'new-one' })]);
        await until(5000, 'the new event', () => f.lines.length >= 3);
        await new Promise((r) => setTimeout(r, 600));
        assert.equal(f.lines.length, 3, f.lines.join('\n'));
        assert.match(f.lines[0] ?? '', /:12 -> /);
        assert.match(f.lines[1] ?? '', /:13 -> /);
        assert.match(f.lines[2] ?? '', /BLOCKED\s+new-one\s+tcp\s+198\.18\.0\.2:14 -> 198\.18\.1\.10:443/);
      } finally {
        await stop(f);
      }
    } finally {
      store.close();
    }
  });
});
