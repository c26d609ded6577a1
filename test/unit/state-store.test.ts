/** The state directory: lossless JSON (bigints), atomic files, and a lock that survives crashed holders. */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fromJson, removeStaleTemps, StateStore, toJson } from '../../src/state/state-store.js';
import { compileFrom, readGolden } from '../support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-state-'));
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

  it('the lock is exclusive, and a lock left by a dead process is taken over', () => {
    const s = new StateStore(join(dir, 'c'));
    const inner = s.withLock(() => {
      assert.throws(() => s.withLock(() => 1, 100), /holds the lock: pid/);
      return 2;
    });
    assert.equal(inner, 2);
    writeFileSync(join(dir, 'c', 'lock'), '999999999');
    assert.equal(s.withLock(() => 3), 3, 'stale lock from a dead pid is replaced');
    // A lock without a pid is held (it may be a writer caught mid-write by an older version) until it is old.
    writeFileSync(join(dir, 'c', 'lock'), '');
    assert.throws(() => s.withLock(() => 4, 100), /holds the lock/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(dir, 'c', 'lock'), old, old);
    assert.equal(s.withLock(() => 5), 5, 'an old lock without a pid is taken over');
    assert.deepEqual(readdirSync(join(dir, 'c')).filter((n) => n.startsWith('lock')), [], 'no lock or temporary file left');
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
