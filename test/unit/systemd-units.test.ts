/**
 * The systemd units: valid for systemd itself (systemd-analyze verify, which
 * exits 0 on many problems it only warns about, so its output must be empty
 * too), and ordered as the boot-time guarantee needs: the ruleset is restored
 * before any interface is up, independently of the daemon, and the daemon is
 * ready only once its policy is in the kernel.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const PACKAGING = fileURLToPath(new URL('../../../packaging/', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/sluice', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'sluice-units-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A unit file's settings, section by section (repeated keys keep every value). */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1] ?? '';
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), ...line.slice(eq + 1).split(/\s+/)]);
  }
  return out;
}

describe('unit: systemd units', () => {
  it('systemd-analyze verify accepts the three units without a single warning', () => {
    // The units name /usr/local/bin/sluice (asserted below), which `make setup` links to a checkout;
    // verify checks that the command is executable, so the copies name this checkout's own: the
    // result does not depend on which checkout the host's link points to, or whether it exists.
    for (const unit of ['sluice.service', 'sluice-restore.service', 'sluice-failed.service']) {
      const text = readFileSync(join(PACKAGING, unit), 'utf8');
      assert.match(text, /^ExecStart=\/usr\/local\/bin\/sluice /m);
      writeFileSync(join(dir, unit), text.replaceAll('/usr/local/bin/sluice', BIN));
    }
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'sluice-restore.service'), join(dir, 'sluice.service'), join(dir, 'sluice-failed.service')], { encoding: 'utf8' });
    assert.equal(r.error, undefined, `systemd-analyze could not run (make test installs the systemd package): ${r.error?.message}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings either');
  });

  it('the check catches a broken unit (so a pass above means something)', () => {
    const broken = readFileSync(join(PACKAGING, 'sluice-restore.service'), 'utf8').replace('Type=oneshot', 'Type=oneshoot');
    const file = join(dir, 'broken.service');
    writeFileSync(file, broken);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
    assert.match(`${r.stdout}${r.stderr}`, /service type/);
  });

  it('restore runs before the network, with no default dependencies, from the state directory only', () => {
    const s = settings(readFileSync(join(PACKAGING, 'sluice-restore.service'), 'utf8'));
    assert.deepEqual(s.get('Unit.DefaultDependencies'), ['no']);
    assert.ok(s.get('Unit.Before')?.includes('network-pre.target'));
    assert.ok(s.get('Unit.Wants')?.includes('network-pre.target'));
    assert.deepEqual(s.get('Service.Type'), ['oneshot']);
    assert.deepEqual(s.get('Service.ExecStart'), ['/usr/local/bin/sluice', 'restore']);
    assert.ok(s.get('Install.WantedBy')?.includes('sysinit.target'));
  });

  it('the daemon is Type=notify and comes after the restore', () => {
    const s = settings(readFileSync(join(PACKAGING, 'sluice.service'), 'utf8'));
    assert.deepEqual(s.get('Service.Type'), ['notify']);
    assert.ok(s.get('Unit.After')?.includes('sluice-restore.service'));
    assert.ok(s.get('Unit.Wants')?.includes('sluice-restore.service'));
    assert.deepEqual(s.get('Service.ExecStart'), ['/usr/local/bin/sluice', 'daemon'], 'no policy argument: it runs on what was applied');
  });

  it('the daemon comes back whatever ended it, pings a watchdog, and is confined to its state directory and its capabilities', () => {
    const s = settings(readFileSync(join(PACKAGING, 'sluice.service'), 'utf8'));
    assert.deepEqual(s.get('Service.Restart'), ['always']);
    assert.ok(Number(s.get('Service.WatchdogSec')?.[0]) > 0);
    assert.deepEqual(s.get('Service.ProtectSystem'), ['strict']);
    assert.deepEqual(s.get('Service.ReadWritePaths'), ['-/etc/sluice'], 'a confirmed apply from the dashboard writes the policy file, and nothing else outside the state directory');
    assert.deepEqual(s.get('Service.StateDirectory'), ['sluice'], 'the state directory writable (and created if missing: a missing ReadWritePaths= fails the start)');
    assert.deepEqual(s.get('Service.StateDirectoryMode'), ['0700']);
    assert.deepEqual(s.get('Service.NoNewPrivileges'), ['yes']);
    const caps = s.get('Service.CapabilityBoundingSet') ?? [];
    assert.ok(caps.includes('CAP_NET_ADMIN') && caps.includes('CAP_NET_BIND_SERVICE'));
    assert.ok(!caps.includes('CAP_SYS_ADMIN') && !caps.includes('CAP_SYS_MODULE'), 'nothing it does not use');
  });

  it('a daemon left failed (restarts past the start limit) starts sluice-failed.service, which sends the daemon-failed alert', () => {
    const d = settings(readFileSync(join(PACKAGING, 'sluice.service'), 'utf8'));
    assert.deepEqual(d.get('Unit.OnFailure'), ['sluice-failed.service']);
    assert.ok(Number(d.get('Unit.StartLimitBurst')?.[0]) >= 3 && Number(d.get('Unit.StartLimitIntervalSec')?.[0]) >= 60, 'a crash loop is caught as one');
    const f = settings(readFileSync(join(PACKAGING, 'sluice-failed.service'), 'utf8'));
    assert.deepEqual(f.get('Service.Type'), ['oneshot']);
    assert.deepEqual(f.get('Service.ExecStart'), ['/usr/local/bin/sluice', 'alerts', 'daemon-failed']);
    assert.deepEqual(f.get('Service.ReadWritePaths'), ['/var/lib/sluice'], 'writes the alert database');
    assert.equal(f.get('Install.WantedBy'), undefined, 'static: only OnFailure= starts it');
  });
});
