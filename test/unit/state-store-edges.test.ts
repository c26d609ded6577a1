/**
 * The state store's decisions a restart relies on, at their edges: which of
 * applied/off is the truth, what a damaged file means, which policy
 * snapshots survive pruning, the directory checks, and the compact address
 * encoding of large rulesets. Written from the state-store mutants that lived
 * through test/unit/state-store.test.ts (npm run mutate -- src/state/state-store.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Ruleset } from '../../src/compile/ruleset.js';
import { SluiceError } from '../../src/errors.js';
import { defaultPolicyPath, fromJson, removeStaleTemps, stateDir, StateStore, toJson, writeAtomicStream, writeFileAtomic, type AppliedState } from '../../src/state/state-store.js';

const STORE = new URL('../../src/state/state-store.js', import.meta.url).pathname;
const openFds = () => readdirSync('/proc/self/fd').length;

const root = mkdtempSync(join(tmpdir(), 'sluice-state-edges-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const dir = join(root, `s${n++}`);
  const s = new StateStore(dir);
  s.ensureSafe();
  return s;
};
const RS: Ruleset = { table: 'sluice', comment: '', sets: [], counters: [], limits: [], chains: [] };
const applied = (appliedAt: string): AppliedState => ({ appliedAt, policyFile: '/etc/sluice/p.yaml', sha256: 'c'.repeat(64), mode: 'enforce', ruleset: RS, warnings: [] });
const hash = (i: number) => i.toString(16).padStart(64, '0');

describe('unit: state store, edges', () => {
  it('applied vs off: the later one is the truth, and a tie goes to off', () => {
    const s = fresh();
    assert.equal(s.applied(), null);
    assert.equal(s.isOff(), false);
    s.setApplied(applied('2026-12-04T10:00:00.000Z'));
    s.setOff({ at: '2026-12-04T09:59:59.999Z' });
    assert.equal(s.applied()?.appliedAt, '2026-12-04T10:00:00.000Z', 'off before the apply: applied');
    assert.equal(s.isOff(), false);
    s.setOff({ at: '2026-12-04T10:00:00.000Z' });
    assert.equal(s.applied(), null, 'same instant: off');
    assert.equal(s.isOff(), true);
    s.setOff(null);
    assert.equal(s.isOff(), false);
    assert.ok(s.applied());
    s.setApplied(null);
    assert.equal(s.applied(), null);
    assert.ok(!readdirSync(s.dir).includes('applied.json'));
  });

  it('a damaged off.json means off only when nothing is applied; a damaged applied.json is an error naming the file', () => {
    const s = fresh();
    writeFileSync(join(s.dir, 'off.json'), '{not json');
    assert.equal(s.isOff(), true, 'nothing applied: off stands');
    s.setApplied(applied('2026-12-04T10:00:00.000Z'));
    assert.equal(s.isOff(), false, 'an apply is on record: it stands');
    writeFileSync(join(s.dir, 'off.json'), '{"at": 5}');
    assert.equal(s.isOff(), false);
    assert.ok(s.applied());
    writeFileSync(join(s.dir, 'applied.json'), '{"appliedAt": ');
    assert.throws(
      () => s.applied(),
      (e: unknown) => e instanceof SluiceError && e.code === 'ESTATE' && e.message.startsWith(`Corrupt state file: ${join(s.dir, 'applied.json')}: `) && e.cause instanceof Error,
    );
  });

  it('pending confirmations are written and cleared; a damaged daemon.json reads as unknown, not as an error', () => {
    const s = fresh();
    s.setPending({ token: 't', deadline: '2026-12-04T10:00:05.000Z', previous: null, previousState: null });
    assert.equal(s.pending()?.token, 't');
    s.setPending(null);
    assert.equal(s.pending(), null);
    assert.ok(!readdirSync(s.dir).includes('pending-confirm.json'));
    assert.equal(s.daemonState(), null);
    s.setDaemonState({ state: 'failed', pid: 42, at: '2026-12-04T10:00:00.000Z', error: 'boom', code: 'EPOLICY' });
    assert.deepEqual(s.daemonState(), { state: 'failed', pid: 42, at: '2026-12-04T10:00:00.000Z', error: 'boom', code: 'EPOLICY' });
    writeFileSync(join(s.dir, 'daemon.json'), '{');
    assert.equal(s.daemonState(), null);
  });

  it('policy snapshots: only sha256 names; the 20 newest survive pruning, and the ones asked to be kept whatever their age', () => {
    const s = fresh();
    assert.throws(() => s.savePolicySnapshot('../../etc/x', Buffer.from('x')), (e: unknown) => e instanceof SluiceError && e.code === 'ESTATE' && e.message === 'Bad policy hash: ../../etc/x');
    for (const bad of [`${hash(1)}0`, hash(1).slice(1), `X${hash(1).slice(1)}`]) assert.throws(() => s.savePolicySnapshot(bad, Buffer.from('x')), SluiceError, bad);
    assert.equal(s.policySnapshot('../applied'), null);
    assert.equal(s.policySnapshot(hash(999)), null, 'never saved');
    const t0 = Date.now() / 1000 - 10_000;
    for (let i = 0; i < 25; i++) {
      s.savePolicySnapshot(hash(i), Buffer.from(`policy ${i}`), [hash(0)]);
      utimesSync(join(s.dir, 'policies', `${hash(i)}.yaml`), t0 + i, t0 + i);
    }
    // Something that is not a snapshot is never pruned, however old.
    for (const stranger of ['notes.txt', `a${hash(1)}.yaml`, `${hash(1)}.yaml.bak`]) {
      writeFileSync(join(s.dir, 'policies', stranger), 'x');
      utimesSync(join(s.dir, 'policies', stranger), t0 - 1000, t0 - 1000);
    }
    s.savePolicySnapshot(hash(25), Buffer.from('policy 25'), [hash(0)]);
    const left = readdirSync(join(s.dir, 'policies')).sort();
    const want = [hash(0), ...Array.from({ length: 20 }, (_, i) => hash(25 - i))].map((h) => `${h}.yaml`);
    assert.deepEqual(left, [...want, 'notes.txt', `a${hash(1)}.yaml`, `${hash(1)}.yaml.bak`].sort(), 'the 20 newest, the kept one, and the strangers');
    // A name that is not exactly a sha256 never reaches the file system: not even one that walks out of policies/.
    writeFileSync(join(s.dir, `${hash(0)}.yaml`), 'outside');
    writeFileSync(join(s.dir, 'policies', `${hash(0)}.yaml.yaml`), 'longer');
    for (const bad of [`../${hash(0)}`, `${hash(0)}.yaml`, `${hash(0).slice(1)}A`]) assert.equal(s.policySnapshot(bad), null, bad);
    assert.equal(s.policySnapshot(hash(0))?.toString(), 'policy 0');
    assert.equal(s.policySnapshot(hash(5)), null, 'pruned');
  });

  it('policy snapshots keep their list files (to_file) beside them, byte for byte, and prune them with them', () => {
    const s = fresh();
    const odd = Buffer.from([0x00, 0x0a, 0xff, 0x22, 0x5c]);
    s.savePolicySnapshot(hash(1), Buffer.from('policy 1'), [], [
      { path: '/etc/sluice/feeds/drop.txt', bytes: Buffer.from('198.18.0.0/15 ; SBL1\n') },
      { path: '/odd "name"\\\n.txt', bytes: odd },
      { path: '/empty', bytes: Buffer.alloc(0) },
    ]);
    const lists = s.policyListsSnapshot(hash(1));
    assert.deepEqual([...lists.keys()], ['/etc/sluice/feeds/drop.txt', '/odd "name"\\\n.txt', '/empty']);
    assert.equal(lists.get('/etc/sluice/feeds/drop.txt')?.toString(), '198.18.0.0/15 ; SBL1\n');
    assert.deepEqual(lists.get('/odd "name"\\\n.txt'), odd);
    assert.equal(lists.get('/empty')?.length, 0);
    assert.equal(s.policyListsSnapshot(hash(2)).size, 0, 'a policy without lists has none');
    assert.equal(s.policyListsSnapshot('../x').size, 0);
    // A name that is not exactly a sha256 reads nothing, even where a list file sits at the path it leads to.
    const planted = readFileSync(join(s.dir, 'policies', `${hash(1)}.lists`));
    writeFileSync(join(s.dir, 'x.lists'), planted);
    writeFileSync(join(s.dir, `${hash(3)}.lists`), planted);
    assert.equal(s.policyListsSnapshot('../x').size, 0, '../x: the planted file is not read');
    assert.equal(s.policyListsSnapshot(`../${hash(3)}`).size, 0, 'a sha256 behind ../');
    assert.equal(s.policyListsSnapshot(`${hash(3)}/../../x`).size, 0, 'a sha256 followed by a path');
    assert.equal(s.policyListsSnapshot(hash(3).toUpperCase()).size, 0, 'upper-case hex');
    mkdirSync(join(s.dir, 'policies', 'sub'));
    writeFileSync(join(s.dir, 'policies', 'sub', `${hash(3)}.lists`), planted);
    assert.equal(s.policyListsSnapshot(`sub/${hash(3)}`).size, 0, 'a sha256 in a subdirectory');
    // The control: the same bytes under a real name read.
    writeFileSync(join(s.dir, 'policies', `${hash(3)}.lists`), planted);
    assert.equal(s.policyListsSnapshot(hash(3)).size, 3);
    // A damaged file gives what was whole before the damage, never a wrong list.
    const file = join(s.dir, 'policies', `${hash(1)}.lists`);
    writeFileSync(file, readFileSync(file).subarray(0, 60));
    assert.deepEqual([...s.policyListsSnapshot(hash(1)).keys()], ['/etc/sluice/feeds/drop.txt']);
    const t0 = Date.now() / 1000 - 10_000;
    utimesSync(join(s.dir, 'policies', `${hash(1)}.yaml`), t0, t0);
    for (let i = 2; i < 23; i++) s.savePolicySnapshot(hash(i), Buffer.from(`policy ${i}`));
    assert.equal(existsSync(file), false, 'pruned with its policy');
  });

  it('the directory: created 0700; refused when a symlink, owned by another uid, or writable by group or others', () => {
    const s = fresh();
    const dir = join(root, 'checked');
    mkdirSync(dir, { mode: 0o700 });
    new StateStore(dir).ensureSafe();
    chmodSync(dir, 0o770);
    assert.throws(() => new StateStore(dir).ensureSafe(), (e: unknown) => e instanceof SluiceError && e.code === 'ESTATEPERM' && e.message === `State directory is writable by group or others (mode 770): ${dir}`);
    chmodSync(dir, 0o700);
    if (process.getuid?.() === 0) {
      chownSync(dir, 65534, 65534);
      assert.throws(() => new StateStore(dir).ensureSafe(), (e: unknown) => e instanceof SluiceError && e.code === 'ESTATEPERM' && e.message === `State directory is owned by uid 65534, not 0: ${dir}`);
    }
    const link = join(root, 'link');
    symlinkSync(s.dir, link);
    assert.throws(() => new StateStore(link).ensureSafe(), (e: unknown) => e instanceof SluiceError && e.code === 'ESTATEPERM' && e.message === `State directory is not a directory (a symlink?): ${link}`);
  });

  it('temporary files of dead writers are removed: only plain files named *.tmp-PID or *.tmp-PID-async whose PID is gone', () => {
    const dir = join(root, 'temps');
    mkdirSync(dir);
    const dead = 999_999_999;
    const names = {
      removed: [`applied.json.tmp-${dead}`, `learned.json.tmp-${dead}-async`],
      kept: [`a.tmp-${process.pid}`, 'b.tmp-1', `c.tmp-${dead}.bak`, `d.tmp-${dead}-asyncx`, 'applied.json'],
    };
    for (const f of [...names.removed, ...names.kept]) writeFileSync(join(dir, f), 'x');
    mkdirSync(join(dir, `dir.tmp-${dead}`));
    symlinkSync(join(dir, 'applied.json'), join(dir, `link.tmp-${dead}`));
    assert.deepEqual(removeStaleTemps(dir).sort(), [...names.removed].sort());
    assert.deepEqual(readdirSync(dir).sort(), [...names.kept, `dir.tmp-${dead}`, `link.tmp-${dead}`].sort());
    assert.deepEqual(removeStaleTemps(join(root, 'no-such-dir')), []);
  });

  it("the journal's last entry must be an object: an array, a number or null there reads as none", () => {
    for (const line of ['[1,2]', '5', 'null', '"text"']) {
      const s = fresh();
      s.journal({ event: 'apply' });
      writeFileSync(join(s.dir, 'journal.log'), `${line}\n`, { flag: 'a' });
      assert.equal(s.lastJournal(), null, line);
    }
  });

  it('defaults: SLUICE_STATE_DIR and SLUICE_POLICY when set and not empty', () => {
    const saved = { d: process.env.SLUICE_STATE_DIR, p: process.env.SLUICE_POLICY };
    try {
      process.env.SLUICE_STATE_DIR = '/tmp/x-state';
      process.env.SLUICE_POLICY = '/tmp/x.yaml';
      assert.deepEqual([stateDir(), defaultPolicyPath()], ['/tmp/x-state', '/tmp/x.yaml']);
      process.env.SLUICE_STATE_DIR = '';
      process.env.SLUICE_POLICY = '';
      assert.deepEqual([stateDir(), defaultPolicyPath()], ['/var/lib/sluice', '/etc/sluice/policy.yaml']);
    } finally {
      for (const [k, v] of [['SLUICE_STATE_DIR', saved.d], ['SLUICE_POLICY', saved.p]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('address elements without timeouts are written as family:start:end in hex, and only those; anything else round-trips as it was', () => {
    const plain = { t: 'addr', family: 6, start: 0x20010db8n << 96n, end: (0x20010db8n << 96n) | 0xffn };
    assert.equal(toJson(plain), '{"__addr":"6:20010db8000000000000000000000000:20010db80000000000000000000000ff"}');
    assert.deepEqual(fromJson(toJson(plain)), plain);
    for (const v of [
      { ...plain, timeoutMs: 5000 },
      { ...plain, expiresMs: 5 },
      { t: 'addr', family: 4, start: 1, end: 2 },
      { t: 'num', family: 4, start: 1n, end: 2n },
    ]) {
      assert.ok(!toJson(v).includes('__addr'), JSON.stringify(toJson(v)));
      assert.deepEqual(fromJson(toJson(v)), v);
    }
    // Only the exact one-key shapes are turned back into values.
    assert.deepEqual(fromJson('{"__addr":"5:1:1"}'), { __addr: '5:1:1' });
    assert.deepEqual(fromJson('{"__addr":"4:1:1","x":1}'), { __addr: '4:1:1', x: 1 });
    assert.deepEqual(fromJson('{"__bigint":"12x"}'), { __bigint: '12x' });
    assert.equal(fromJson('{"__bigint":"-12"}'), -12n);
  });

  it('a list of address elements of one family (a set of a million feed entries) is one packed base64 string, read back exactly; mixed lists and old files as they were', () => {
    const v4 = (a: number, b = a) => ({ t: 'addr', family: 4, start: BigInt(a), end: BigInt(b) });
    const v6 = { t: 'addr', family: 6, start: 0x20010db8n << 96n, end: (0x20010db8n << 96n) | 0xffffn };
    const set4 = { name: 's', elements: [v4(0), v4(0xc6120001), v4(0xc6120000, 0xc613ffff), v4(0xffffffff)] };
    const text = toJson(set4);
    assert.equal(text, `{"name":"s","elements":{"__addrs4":"${Buffer.from(['00000000', '00000000', 'c6120001', 'c6120001', 'c6120000', 'c613ffff', 'ffffffff', 'ffffffff'].join(''), 'hex').toString('base64')}"}}`);
    assert.deepEqual(fromJson(text), set4);
    const set6 = { elements: [v6, { ...v6, start: (1n << 128n) - 1n, end: (1n << 128n) - 1n }] };
    assert.match(toJson(set6), /^\{"elements":\{"__addrs6":"[A-Za-z0-9+/=]+"\}\}$/);
    assert.deepEqual(fromJson(toJson(set6)), set6);
    // Two families, or one element with a timeout: the list is written element by element, as before.
    for (const mixed of [{ elements: [v4(1), { ...v4(2), timeoutMs: 1000 }] }, { elements: [v4(1), v6] }]) {
      assert.ok(!toJson(mixed).includes('__addrs'));
      assert.deepEqual(fromJson(toJson(mixed)), mixed);
    }
    // State written before packing still reads.
    assert.deepEqual(fromJson('{"elements":[{"__addr":"4:1:1"},{"__addr":"4:2:3"}]}'), { elements: [v4(1), v4(2, 3)] });
    // A damaged packed string is left as it is, never half-read.
    for (const bad of ['AAAAAAAAAA', 'AAAAAAAAAAAAAA==', '!!!!', 'AAAAAAAAAAE=x']) assert.deepEqual(fromJson(`{"__addrs4":"${bad}"}`), { __addrs4: bad }, bad);
    const big = { elements: Array.from({ length: 200_000 }, (_, i) => v4(0xc6120000 + i)) };
    assert.deepEqual(fromJson(toJson(big)), big);
  });

  it('a list of single hosts (a hash set) keeps only their addresses, 4 or 16 bytes each, read back exactly; damage leaves it as it was', () => {
    const h4 = [0, 0xc6120001, 0x7f000001, 0xffffffff].map((a) => ({ t: 'addr', family: 4, start: BigInt(a), end: BigInt(a) }));
    const text4 = toJson({ elements: h4 });
    assert.equal(text4, `{"elements":{"__hosts4":"${Buffer.from('00000000c61200017f000001ffffffff', 'hex').toString('base64')}"}}`);
    assert.deepEqual(fromJson(text4), { elements: h4 });
    const h6 = [0n, 1n, (0x20010db8n << 96n) | 0x1234n, 1n << 64n, (1n << 64n) - 1n, (1n << 128n) - 1n].map((v) => ({ t: 'addr', family: 6, start: v, end: v }));
    const text6 = toJson({ elements: h6 });
    assert.equal(text6, `{"elements":{"__hosts6":"${Buffer.from(h6.map((e) => e.start.toString(16).padStart(32, '0')).join(''), 'hex').toString('base64')}"}}`);
    assert.deepEqual(fromJson(text6), { elements: h6 });
    // One range among the hosts: start and end for each, as before.
    assert.match(toJson({ elements: [...h4, { t: 'addr', family: 4, start: 5n, end: 6n }] }), /__addrs4/);
    // Out of range for its family: written element by element, never wrapped.
    const wide = [{ t: 'addr', family: 4, start: 1n << 32n, end: 1n << 32n }, { t: 'addr', family: 4, start: 1n, end: 1n }];
    assert.ok(!toJson({ elements: wide }).includes('__hosts'));
    assert.deepEqual(fromJson(toJson({ elements: wide })), { elements: wide });
    for (const bad of ['AAAAAAA=', 'AAAAAAAAAAAAAAAAAAAAAA', '!!!!', 'AAAAAA==x']) assert.deepEqual(fromJson(`{"__hosts4":"${bad}"}`), { __hosts4: bad }, bad);
    assert.deepEqual(fromJson('{"__hosts6":"AAAAAAAAAAAAAAAA"}'), { __hosts6: 'AAAAAAAAAAAAAAAA' }, '12 bytes is not an IPv6 address');
    // Base64 with bits past the last byte set reads as the same bytes, but is not what was written: left as it was.
    for (const [key, bad] of [['__addrs4', 'AAAAAAAAAAB='], ['__hosts4', 'AAAAAB=='], ['__addrs6', `${'A'.repeat(42)}B=`], ['__hosts6', `${'A'.repeat(21)}B==`]] as const) {
      assert.deepEqual(fromJson(`{"${key}":"${bad}"}`), { [key]: bad }, `${key} ${bad}`);
    }
  });

  it('values the packed forms cannot hold exactly (negative, past the family, other families, mixed types) are written as they are and read back as they were: never packed, wrapped or thrown on', () => {
    const a = (family: number, start: bigint, end = start) => ({ t: 'addr', family, start, end });
    const MAX128 = (1n << 128n) - 1n;
    const lists: Record<string, unknown[]> = {
      'v4 host below 0': [a(4, 1n), a(4, -1n)],
      'v4 range starting below 0': [a(4, 1n), a(4, -1n, 5n)],
      'v4 range ending past 2^32': [a(4, 1n), a(4, 5n, 1n << 32n)],
      'v6 host below 0': [a(6, 1n), a(6, -1n)],
      'v6 host past 2^128': [a(6, 1n), a(6, MAX128 + 1n)],
      'v6 range starting below 0': [a(6, 1n), a(6, -1n, 5n)],
      'v6 range ending past 2^128': [a(6, 1n), a(6, 5n, MAX128 + 1n)],
      // Reversed ranges: each end checked on its own, not one through the other.
      'v4 range starting past 2^32, ending in range': [a(4, 1n), a(4, 1n << 32n, 5n)],
      'v4 range ending below 0, starting in range': [a(4, 1n), a(4, 5n, -1n)],
      'v6 range ending below 0, starting in range': [a(6, 1n), a(6, 5n, -1n)],
    };
    // Not addresses of their family, so not in the compact forms: written as they are, read back as they were.
    const asWas: Record<string, unknown[]> = {
      ...lists,
      'family 5': [a(5, 1n), a(5, 2n)],
      'family 5 ranges': [a(5, 1n, 2n), a(5, 3n, 4n)],
      'a number start': [{ t: 'addr', family: 4, start: 1, end: 1n }, a(4, 2n)],
      'a number end': [{ t: 'addr', family: 4, start: 1n, end: 1 }, a(4, 2n)],
      'first element not an address': [{ t: 'addr', family: 4, start: 1n, end: 1n, timeoutMs: 5 }, a(4, 2n)],
      // Hosts of both families in one list: neither family's packed form holds the other's.
      'hosts of two families': [a(4, 1n), a(6, 2n)],
      'hosts of two families, v6 first': [a(6, 1n), a(4, 2n)],
    };
    for (const [what, elements] of Object.entries(asWas)) {
      const text = toJson({ elements });
      assert.doesNotMatch(text, /__addrs|__hosts/, what);
      assert.deepEqual(fromJson(text), { elements }, what);
      // One alone is not written as one compact address either.
      for (const e of elements) assert.deepEqual(fromJson(toJson(e)), e, `${what}: ${toJson(e)}`);
    }
  });

  it("a damaged list-file snapshot gives the lists whole before the damage: a header with anything around its path or length ends the reading", () => {
    const s = fresh();
    s.savePolicySnapshot(hash(7), Buffer.from('p'), [], [{ path: '/a', bytes: Buffer.from('1.2.3.4\n') }]);
    const file = join(s.dir, 'policies', `${hash(7)}.lists`);
    const good = readFileSync(file);
    const second = (header: string, body = 'xyz') => Buffer.concat([good, Buffer.from(`${header}\n${body}\n`)]);
    for (const header of ['x"/b" 3', '"/b" 3x', '"/b"  3', '"/b" -3', '"/b" 12345678901', '"/b"']) {
      writeFileSync(file, second(header));
      assert.deepEqual([...s.policyListsSnapshot(hash(7)).keys()], ['/a'], header);
    }
    // A list whose bytes do not end where its length says (no newline there).
    writeFileSync(file, second('"/b" 2'));
    assert.deepEqual([...s.policyListsSnapshot(hash(7)).keys()], ['/a']);
    writeFileSync(file, second('"/b" 3'));
    assert.deepEqual([...s.policyListsSnapshot(hash(7)).keys()], ['/a', '/b'], 'the control: a whole second list reads');
    assert.equal(s.policyListsSnapshot(hash(7)).get('/b')?.toString(), 'xyz');
  });

  it('the journal reads back only JSON objects, whatever else a line holds', () => {
    const s = fresh();
    assert.deepEqual(s.readJournal(), [], 'no journal yet: no entries');
    s.journal({ event: 'apply' });
    writeFileSync(join(s.dir, 'journal.log'), ['[1,2]', '5', 'null', '"text"', 'true', '{"event":"confirm"}', '', '  '].join('\n') + '\n', { flag: 'a' });
    assert.deepEqual(s.readJournal().map((e) => e.event), ['apply', 'confirm']);
  });

  it("the journal's last maxBytes: a line cut by the limit is skipped, a line that starts exactly at it is read", () => {
    const s = fresh();
    for (const event of ['apply', 'confirm', 'rollback']) s.journal({ event });
    const text = readFileSync(join(s.dir, 'journal.log'), 'utf8');
    const lines = text.split('\n').filter((l) => l !== '');
    const last = lines[2]!.length + 1;
    const lastTwo = lines[1]!.length + 1 + last;
    assert.deepEqual(s.readJournal(text.length).map((e) => e.event), ['apply', 'confirm', 'rollback'], 'the whole file');
    assert.deepEqual(s.readJournal(lastTwo).map((e) => e.event), ['confirm', 'rollback'], 'the limit at a line start: that line is whole');
    assert.deepEqual(s.readJournal(lastTwo - 1).map((e) => e.event), ['rollback'], 'one byte less: its first byte is cut off');
    assert.deepEqual(s.readJournal(lastTwo + 1).map((e) => e.event), ['confirm', 'rollback'], 'one byte more: the newline before it');
    assert.deepEqual(s.readJournal(last).map((e) => e.event), ['rollback']);
    assert.deepEqual(s.readJournal(last - 1), []);
  });

  it('no descriptor is left open: writes, reads, the journal, the lock, snapshots and streamed writes (failed ones too), many times over', async () => {
    const s = fresh();
    const before = openFds();
    for (let i = 0; i < 40; i++) {
      writeFileAtomic(join(s.dir, 'x.json'), `{"i":${i}}`);
      s.journal({ event: 'apply', i });
      s.lastJournal();
      s.readJournal();
      s.withLock(() => s.setApplied(applied(new Date(i * 1000).toISOString())));
      s.savePolicySnapshot(hash(i), Buffer.from(`p${i}`));
      await writeAtomicStream(join(s.dir, 'stream.json'), async (write) => write(`${i}`));
      await assert.rejects(writeAtomicStream(join(s.dir, 'stream.json'), async () => Promise.reject(new Error('producer failed'))));
    }
    assert.equal(openFds(), before, 'descriptors open after as before');
  });

  it('a streamed write: pieces in order (empty ones too), and a producer that fails leaves the old file and no temporary', async () => {
    const s = fresh();
    const file = join(s.dir, 'learned.json');
    await writeAtomicStream(file, async (write) => {
      for (const piece of ['{"a":', '', '1', '}']) await write(piece);
    });
    assert.equal(readFileSync(file, 'utf8'), '{"a":1}');
    await assert.rejects(
      writeAtomicStream(file, async (write) => {
        await write('{"half":');
        throw new Error('producer failed');
      }),
      /producer failed/,
    );
    assert.equal(readFileSync(file, 'utf8'), '{"a":1}', 'the old content stands');
    assert.deepEqual(readdirSync(s.dir).filter((f) => f.includes('.tmp-')), [], 'no temporary left');
  });

  it('the control socket lives in the state directory', () => {
    const s = fresh();
    assert.equal(s.controlSocket, join(s.dir, 'control.sock'));
  });

  it('a held lock names its holder\'s pid when the lock file says exactly a number, and "unknown" otherwise', async () => {
    const s = fresh();
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(STORE)}).then((m) => new m.StateStore(${JSON.stringify(s.dir)}).withLock(() => { console.log('held'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); }))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
      const lockFile = join(s.dir, 'lock');
      const message = () => {
        try {
          s.withLock(() => 0, 0);
        } catch (err) {
          assert.ok(err instanceof SluiceError && err.code === 'ELOCKED');
          return err.message;
        }
        assert.fail('the lock was free');
      };
      assert.equal(message(), `Another sluice command holds the lock: pid ${holder.pid} (${lockFile})`);
      for (const [content, shown] of [[' 4242\n', '4242'], ['x4242', 'unknown'], ['4242x', 'unknown'], ['', 'unknown']] as const) {
        writeFileSync(lockFile, content); // the content is informational: the flock is what holds
        assert.equal(message(), `Another sluice command holds the lock: pid ${shown} (${lockFile})`, JSON.stringify(content));
      }
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
  });

  it('an off record without a usable time is off only when nothing is applied; clearing what is not there is fine', () => {
    // ["9999"] would compare as the string "9999", later than any apply, if it were taken for a time.
    for (const off of ['{}', '{"at":5}', '{"at":["9999"]}']) {
      const s = fresh();
      writeFileSync(join(s.dir, 'off.json'), off);
      assert.equal(s.isOff(), true, `${off}, nothing applied`);
      s.setApplied(applied('2026-01-01T00:00:00.000Z'));
      assert.equal(s.isOff(), false, `${off} beside an applied policy`);
      assert.ok(s.applied(), 'the applied policy stands');
    }
    const s = fresh();
    assert.doesNotThrow(() => {
      s.setOff(null);
      s.setApplied(null);
      s.setPending(null);
    });
    s.setOff({ at: '2026-01-01T00:00:00.000Z' });
    s.setOff(null);
    assert.equal(existsSync(join(s.dir, 'off.json')), false);
  });

  it('an off.json that holds JSON null is no record at all: not off, and no error', () => {
    const s = fresh();
    writeFileSync(join(s.dir, 'off.json'), 'null');
    assert.equal(s.isOff(), false);
    assert.equal(s.applied(), null);
  });

  it('a temporary file whose writer is alive is left, whatever its pid', async () => {
    const dir = join(root, 'temps-live');
    mkdirSync(dir);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      assert.ok(child.pid);
      const name = `applied.json.tmp-${child.pid}`;
      writeFileSync(join(dir, name), 'x');
      assert.deepEqual(removeStaleTemps(dir), []);
      assert.deepEqual(readdirSync(dir), [name]);
    } finally {
      child.kill();
    }
  });

  it('null values inside state round-trip (a cleared rollback target, an absent epoch)', () => {
    const v = { previous: null, previousState: null, nested: { a: null, list: [null, 1] } };
    assert.equal(toJson(v), JSON.stringify(v));
    assert.deepEqual(fromJson(toJson(v)), v);
  });

  it('a state file that cannot be read (a directory in its place) is an error, not "absent"', () => {
    const s = fresh();
    mkdirSync(join(s.dir, 'applied.json'));
    assert.throws(() => s.applied(), /EISDIR/);
  });
});
