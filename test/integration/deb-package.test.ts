/**
 * The Debian package (make deb): built from what the set-up built, its file
 * list and fields as promised, lintian without errors, the units valid for
 * systemd, the maintainer scripts valid shell that never remove the ruleset
 * on remove or upgrade, and the packaged program runnable from an unpacked
 * copy (its npm packages and native objects complete).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../world/world.js';

const run = (cmd: string, args: string[], opts: { cwd?: string } = {}) => spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });

describe('integration: the Debian package', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-deb-'));
  let deb = '';
  const unpacked = join(dir, 'root');
  after(() => rmSync(dir, { recursive: true, force: true }));

  before(() => {
    const r = run(join(ROOT, 'scripts/build-deb.sh'), [dir]);
    assert.equal(r.status, 0, r.stderr);
    deb = r.stdout.trim();
    assert.match(deb, /\/sluice_\d+\.\d+\.\d+-1_[a-z0-9]+\.deb$/);
    assert.equal(run('dpkg-deb', ['-x', deb, unpacked]).status, 0);
  });

  it('holds the program, the units, the default policy as a conffile, and nothing of the tests', () => {
    const files = run('dpkg-deb', ['-c', deb]).stdout.split('\n').map((l) => l.replace(/^.*?\.\//, '/').replace(/ -> .*$/, ''));
    for (const f of [
      '/usr/bin/sluice',
      '/usr/lib/sluice/bin/sluice',
      '/usr/lib/sluice/dist/src/cli/main.js',
      '/usr/lib/sluice/dist/src/daemon/tamper-watch.js',
      '/usr/lib/sluice/build/Release/sluice_native.node',
      '/usr/lib/sluice/build/Release/sluice_bpf.node',
      '/usr/lib/sluice/build/bpf/attribution.bpf.o',
      '/usr/lib/sluice/node_modules/better-sqlite3/build/Release/better_sqlite3.node',
      '/usr/lib/sluice/node_modules/yaml/package.json',
      '/usr/lib/sluice/node_modules/zod/package.json',
      '/usr/lib/sluice/policies/encrypted-dns.txt',
      '/lib/systemd/system/sluice.service',
      '/lib/systemd/system/sluice-restore.service',
      '/lib/systemd/system/sluice-failed.service',
      '/etc/sluice/policy.yaml',
      '/usr/share/doc/sluice/copyright',
      '/usr/share/doc/sluice/changelog.Debian.gz',
    ]) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    assert.deepEqual(files.filter((f) => /\/(test|bench)\/|\.ts$|\.map$|stryker|typescript|fast-check|prebuild-install/.test(f)), [], 'no tests, benchmarks, sources, maps or build-time packages');
    const control = run('dpkg-deb', ['-f', deb]).stdout;
    assert.match(control, /^Depends: .*nodejs \(>= 20\).*nftables/m);
    assert.equal(run('dpkg-deb', ['--ctrl-tarfile', deb]).status, 0);
    const conffiles = run('sh', ['-c', `dpkg-deb -I "${deb}" conffiles`]).stdout.trim();
    assert.equal(conffiles, '/etc/sluice/policy.yaml');
    assert.match(readFileSync(join(unpacked, 'etc/sluice/policy.yaml'), 'utf8'), /^mode: audit/m, 'the default policy blocks nothing');
  });

  it('lintian reports no errors', () => {
    const r = run('lintian', ['--no-tag-display-limit', deb]);
    const errors = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.startsWith('E: '));
    assert.deepEqual(errors, []);
  });

  it('the units run the packaged program and systemd-analyze verify accepts them', () => {
    const units = join(unpacked, 'lib/systemd/system');
    for (const u of ['sluice.service', 'sluice-restore.service', 'sluice-failed.service']) {
      const text = readFileSync(join(units, u), 'utf8');
      assert.match(text, /^ExecStart=\/usr\/bin\/sluice (daemon|restore|alerts daemon-failed)$/m);
      assert.doesNotMatch(text, /\/usr\/local/);
      // Verified where the program is: the unpacked copy's (this host has no /usr/bin/sluice).
      writeFileSync(join(dir, u), text.replaceAll('/usr/bin/sluice', join(unpacked, 'usr/bin/sluice')).replace(/^Documentation=.*$/m, ''));
    }
    const r = run('systemd-analyze', ['verify', '--man=no', join(dir, 'sluice-restore.service'), join(dir, 'sluice.service'), join(dir, 'sluice-failed.service')]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '');
  });

  it('maintainer scripts: valid shell; remove and upgrade never delete the table, purge does', () => {
    const ctrl = join(dir, 'control');
    assert.equal(run('dpkg-deb', ['-e', deb, ctrl]).status, 0);
    for (const s of ['postinst', 'prerm', 'postrm']) {
      assert.equal(run('sh', ['-n', join(ctrl, s)]).status, 0, `${s} parses`);
    }
    // What the scripts run: comments and quoted messages left out.
    const code = (s: string) =>
      readFileSync(join(ctrl, s), 'utf8')
        .split('\n')
        .filter((l) => !/^\s*#/.test(l))
        .map((l) => l.replace(/"[^"]*"/g, '""'))
        .join('\n');
    const postrm = code('postrm');
    const purge = postrm.slice(postrm.indexOf('purge)'));
    const remove = postrm.slice(postrm.indexOf('remove)'), postrm.indexOf('purge)'));
    assert.match(purge, /nft delete table inet sluice/);
    assert.doesNotMatch(remove, /nft|sluice off/);
    for (const s of ['postinst', 'prerm']) assert.doesNotMatch(code(s), /nft|sluice off/, `${s} never removes the ruleset`);
  });

  it('the unpacked program runs: version, and check of the shipped policy (yaml, zod, the native addon and SQLite load)', () => {
    const bin = join(unpacked, 'usr/lib/sluice/bin/sluice');
    const v = run(bin, ['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^sluice \d+\.\d+\.\d+/);
    const c = run(bin, ['check', join(unpacked, 'etc/sluice/policy.yaml')]);
    assert.equal(c.status, 0, c.stderr);
    const db = run(process.execPath, ['-e', `const D = require(${JSON.stringify(join(unpacked, 'usr/lib/sluice/node_modules/better-sqlite3'))}); console.log(new D(':memory:').prepare('select 6*7 as x').get().x)`]);
    assert.equal(db.stdout.trim(), '42', db.stderr);
  });
});
