/** The state directory: lossless JSON (bigints), atomic files, and a lock that survives crashed holders. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromJson, removeStaleTemps, StateStore, toJson } from '../../src/state/state-store.js';
import { compileFrom, readGolden } from '../support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-state-'));
const STORE = new URL('../../src/state/state-store.js', import.meta.url).href;
after(() => rmSync(dir, { recursive: true, force: true }));

describe('unit: state store', () => {
  it('a compiled ruleset survives a JSON round trip, bigints included', () => {
    const { ruleset } = compileFrom(readGolden('06-services.yaml'));
    const back = fromJson(toJson(ruleset));
    assert.deepEqual(back, ruleset);
  });

  it('strings that look like the bigint tag are not turned into bigints', () => {
    const value = { a: { __bigint: 'not a number' }, b: '123n', c: { __bigint: '5', extra: 1 } };
    assert.deepEqual(fromJson(toJson(value)), value);
  });

  it('applied and pending state are written atomically and read back', () => {
    const s = new StateStore(join(dir, 'a'));
    const { ruleset, policy } = compileFrom(readGolden('01-ufw-recipe.yaml'));
    s.setApplied({ appliedAt: 'now', policyFile: 'p', sha256: policy.sha256, mode: policy.mode, ruleset, warnings: [] });
    assert.deepEqual(s.applied()?.ruleset, ruleset);
    assert.deepEqual(readdirSync(join(dir, 'a')).filter((f) => f.includes('.tmp')), [], 'no temporary files left');
    s.setApplied(null);
    assert.equal(s.applied(), null);
  });

  it('a corrupt state file is an error naming the file, not a crash', () => {
    const s = new StateStore(join(dir, 'b'));
    mkdirSync(join(dir, 'b'), { recursive: true });
    writeFileSync(join(dir, 'b', 'pending-confirm.json'), '{ not json');
    assert.throws(() => s.pending(), /Corrupt state file: .*pending-confirm\.json/);
  });

  it('refuses a state directory others can write to, or one that is a symlink', () => {
    const open = join(dir, 'open');
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    assert.throws(() => new StateStore(open).ensureSafe(), /writable by group or others/);
    symlinkSync(dir, join(dir, 'link'));
    assert.throws(() => new StateStore(join(dir, 'link')).ensureSafe(), /not a directory/);
    const made = join(dir, 'fresh');
    new StateStore(made).ensureSafe();
    assert.equal(statSync(made).mode & 0o777, 0o700, 'created private');
  });

  it('the lock is exclusive between processes, released when its holder is killed, and never held twice', async () => {
    const d = join(dir, 'c');
    const s = new StateStore(d);
    assert.equal(s.withLock(() => s.withLock(() => 1)), 1, 're-entrant within one process');
    // A holder in another process: the lock is refused while it lives...
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(STORE)}).then((m) => new m.StateStore(${JSON.stringify(d)}).withLock(() => { console.log('held'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); }))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    assert.throws(() => s.withLock(() => 2, 150), new RegExp(`holds the lock: pid ${holder.pid}`));
    // ...and free the moment it dies (SIGKILL: no clean-up ran), with nothing to take over.
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));
    assert.equal(s.withLock(() => 3, 2000), 3);
  });

  it('holders that die holding the lock never let two processes hold it at once', async () => {
    const d = join(dir, 'race');
    mkdirSync(d, { recursive: true, mode: 0o700 });
    const marker = join(d, 'inside');
    const violations = join(d, 'violations');
    writeFileSync(violations, '');
    // Each process takes the lock a few times and then dies while holding it (exit inside the
    // critical section, no clean-up), so the others keep finding a dead holder's lock. Inside,
    // a marker file proves exclusion: finding it present means two holders at once.
    const worker = `import(${JSON.stringify(STORE)}).then((m) => { const fs = require('node:fs'); const s = new m.StateStore(${JSON.stringify(d)}); for (let i = 0; ; i++) s.withLock(() => { if (fs.existsSync(${JSON.stringify(marker)})) fs.appendFileSync(${JSON.stringify(violations)}, 'x'); fs.writeFileSync(${JSON.stringify(marker)}, ''); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2); fs.rmSync(${JSON.stringify(marker)}); if (i === 3) process.exit(0); }, 60000); })`;
    for (let wave = 0; wave < 2; wave++) {
      const runs = Array.from({ length: 6 }, () => spawn(process.execPath, ['-e', worker], { stdio: 'inherit' }));
      const codes = await Promise.all(runs.map((c) => new Promise((resolve) => c.once('exit', resolve))));
      assert.deepEqual(codes, Array(6).fill(0));
    }
    assert.equal(readFileSync(violations, 'utf8').length, 0, 'no two processes ever held the lock at once');
  });

  it('temporary files of writers that died are removed; those of live writers, other files and links are left', () => {
    const d = join(dir, 'temps');
    mkdirSync(d);
    const dead = 999999999;
    for (const name of [`learned.json.tmp-${dead}`, `learned.json.tmp-${dead}-async`, `applied.json.tmp-${process.pid}`, `applied.json.tmp-1`, 'learned.json', 'notes.tmp-x']) writeFileSync(join(d, name), 'x');
    symlinkSync('/etc/passwd', join(d, `evil.tmp-${dead}`));
    assert.deepEqual(removeStaleTemps(d).sort(), [`learned.json.tmp-${dead}`, `learned.json.tmp-${dead}-async`]);
    assert.deepEqual(readdirSync(d).sort(), [`applied.json.tmp-${process.pid}`, 'applied.json.tmp-1', `evil.tmp-${dead}`, 'learned.json', 'notes.tmp-x'].sort());
    assert.deepEqual(removeStaleTemps(join(d, 'missing')), []);
  });

  it("the journal's last entry is read back; none, or a torn last line, is null", () => {
    const s = new StateStore(join(dir, 'j'));
    assert.equal(s.lastJournal(), null);
    for (let i = 0; i < 500; i++) s.journal({ event: 'apply', i });
    s.journal({ event: 'rollback', restored: 'no table' });
    assert.deepEqual({ ...s.lastJournal(), at: 'x' }, { at: 'x', event: 'rollback', restored: 'no table' });
    writeFileSync(join(dir, 'j', 'journal.log'), '{"event":"rollb', { flag: 'a' });
    assert.equal(s.lastJournal(), null);
  });
});
