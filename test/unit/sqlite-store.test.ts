/** What only the SQLite store promises: WAL mode, persistence, no loss of acknowledged events when the writer is killed, clear open errors. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { SluiceError } from '../../src/errors.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { ev } from '../support/event-store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const STORE_JS = fileURLToPath(new URL('../../src/events/sqlite-store.js', import.meta.url));

describe('unit: SQLite event store', () => {
  it('uses WAL with synchronous FULL by default, and keeps events across reopening', () => {
    const path = join(dir, 'a.db');
    const s = new SqliteStore(path);
    // synchronous is a setting of the connection, not of the file: read it on the store's own.
    const conn = (x: SqliteStore) => (x as unknown as { db: InstanceType<typeof Database> }).db;
    assert.equal(conn(s).pragma('synchronous', { simple: true }), 2, 'FULL (2): every commit reaches the disk');
    const normal = new SqliteStore(join(dir, 'normal.db'), { synchronous: 'normal' });
    assert.equal(conn(normal).pragma('synchronous', { simple: true }), 1, 'control: NORMAL (1) when asked for');
    normal.close();
    s.append([ev({ rule: 'kept' })]);
    s.close();
    const raw = new Database(path);
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    raw.close();
    const again = new SqliteStore(path, { mustExist: true });
    assert.deepEqual(again.query({}).map((e) => e.rule), ['kept']);
    again.close();
  });

  it('a writer killed with SIGKILL loses no batch it acknowledged', async () => {
    const path = join(dir, 'crash.db');
    const script = join(dir, 'writer.mjs');
    writeFileSync(
      script,
      `import { SqliteStore } from ${JSON.stringify(STORE_JS)};
const s = new SqliteStore(${JSON.stringify(path)});
const batch = Array.from({ length: 500 }, (_, i) => ({ time: 1, verdict: 'blocked', rule: 'r', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.1.10', sport: i, dport: 443 }));
for (let n = 1; ; n++) { s.append(batch); process.stdout.write(n + '\\n'); }
`,
    );
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = 0;
    await new Promise<void>((resolve) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) acked = Math.max(acked, Number(l));
        if (acked >= 20 && !child.killed) {
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => child.on('exit', r));
    const s = new SqliteStore(path, { mustExist: true });
    const stored = s.query({}).length;
    s.close();
    assert.ok(stored >= acked * 500, `acknowledged ${acked * 500}, found ${stored}`);
    assert.equal(stored % 500, 0, 'batches are atomic: none is half written');
  });

  it('open errors name the cause and the path', () => {
    assert.throws(() => new SqliteStore(join(dir, 'missing.db'), { mustExist: true }), (e: unknown) => e instanceof SluiceError && e.code === 'EEVENTSTORE' && /^Cannot open event store: .*missing\.db/.test(e.message));
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    assert.throws(() => new SqliteStore(join(file, 'events.db')), (e: unknown) => e instanceof SluiceError && /Cannot open event store: E[A-Z]+: .*not-a-dir\/events\.db/.test(e.message));
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, 'this is not a database, just text long enough to look like a header....................................');
    assert.throws(() => new SqliteStore(junk), (e: unknown) => e instanceof SluiceError && e.code === 'EEVENTSTORE');
  });

  it('a version-2 store (no lookups table) gains it on open, its events kept', () => {
    const path = join(dir, 'v2.db');
    const s = new SqliteStore(path);
    s.append([ev({ rule: 'old' })]);
    s.close();
    const raw = new Database(path);
    raw.exec('DROP TABLE lookups; PRAGMA user_version = 2;');
    raw.close();
    const again = new SqliteStore(path);
    assert.equal(again.query({})[0]?.rule, 'old');
    again.append([], undefined, [{ day: 1, name: 'a.example.com', verdict: 'allowed', uid: null, unit: null, cgroup: null, process: null, count: 1, first: 86_400_000, last: 86_400_000 }]);
    assert.equal([...again.scanLookups({ since: 0, until: 2 * 86_400_000 })].length, 1);
    again.close();
    const check = new Database(path);
    assert.equal(check.pragma('user_version', { simple: true }), 3);
    check.close();
  });

  it('refuses a store written by a newer schema', () => {
    const path = join(dir, 'newer.db');
    const raw = new Database(path);
    raw.pragma('user_version = 99');
    raw.close();
    assert.throws(() => new SqliteStore(path), /schema 99 is newer/);
  });
});
