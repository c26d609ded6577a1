/**
 * The integrity watch with fake files, sysctl and sockets (no root, no
 * real /proc changes): what counts as a finding (the policy file and state
 * directory writable by others, deleted or replaced; applied.json deleted
 * or written behind Sluice's back; the port sysctl at or below the guard's
 * port; another socket on the guard's port, a listener gone), that each is
 * reported once as a `tamper` alert and cleared with a log line, and that
 * nothing throws out of a check.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { parsePortStart, socketInode, type BoundSocket, type FileFacts, type IntegrityProbe } from '../../src/daemon/integrity-probe.js';
import { IntegrityWatch, writableByOthers } from '../../src/daemon/integrity-watch.js';
import { encodeDumpRequest, sourcePortFilter } from '../../src/monitor/sock-diag.js';
import { channels, type AlertEvent } from '../../src/events/channels.js';
import type { Policy } from '../../src/policy/policy.js';
import type { Runtime } from '../../src/runtime/component.js';
import { Registry } from '../../src/runtime/metrics.js';
import type { StateStore } from '../../src/state/state-store.js';

const STATE = '/var/lib/sluice';
const POLICY = '/etc/sluice/policy.yaml';
const PORT = 153;
let inode = 100;

const file = (over: Partial<FileFacts> = {}): FileFacts => ({ kind: 'file', dev: 1, ino: ++inode, mode: 0o100600, uid: 0, gid: 0, size: 10, mtimeMs: 1000, ...over });
const dir = (over: Partial<FileFacts> = {}): FileFacts => file({ kind: 'dir', mode: 0o40755, ...over });

/** A fake host: files by path, the sysctl, the sockets on the guard's port and which of them are this process's. */
class FakeProbe implements IntegrityProbe {
  files = new Map<string, FileFacts>();
  links = new Map<string, string>();
  portStartValue: number | null = 1024;
  local: string[] = [];
  socks: BoundSocket[] = [];
  own = new Set<number>();
  holders = new Map<number, string>();
  throwOn = '';

  constructor() {
    this.files.set('/etc/sluice', dir());
    this.files.set(POLICY, file({ mode: 0o100644 }));
    this.files.set(STATE, dir({ mode: 0o40700 }));
    this.files.set(`${STATE}/applied.json`, file());
    this.files.set(`${STATE}/journal.log`, file());
    this.files.set(`${STATE}/policies`, dir({ mode: 0o40700 }));
    this.files.set(`${STATE}/policies/${'a'.repeat(64)}.yaml`, file());
    for (const [proto, addr, family] of [['udp', '127.0.0.1', 4], ['tcp', '127.0.0.1', 4], ['udp', '::1', 6], ['tcp', '::1', 6]] as const) {
      const s: BoundSocket = { proto, family, addr, port: PORT, uid: 0, inode: ++inode };
      this.socks.push(s);
      this.own.add(s.inode);
    }
  }

  lstat(path: string): FileFacts | null {
    if (this.throwOn === 'lstat') throw new Error('lstat exploded');
    return this.links.has(path) ? file({ kind: 'symlink', ino: 7 }) : (this.files.get(path) ?? null);
  }
  realpath(path: string): string | null {
    const p = this.links.get(path) ?? path;
    return this.files.has(p) ? p : null;
  }
  list(d: string): string[] | null {
    const names = [...this.files.keys(), ...this.links.keys()].filter((p) => p.startsWith(`${d}/`) && !p.slice(d.length + 1).includes('/')).map((p) => p.slice(d.length + 1));
    return this.files.has(d) ? names : null;
  }
  portStart(): number | null {
    return this.portStartValue;
  }
  localUpstreams(_policy: Policy, portStart: number): string[] {
    return portStart <= 53 ? this.local : [];
  }
  sockets(port: number): BoundSocket[] | null {
    return this.socks.filter((s) => s.port === port);
  }
  ownSocketInodes(): Set<number> {
    return new Set(this.own);
  }
  socketHolder(ino: number): string | null {
    return this.holders.get(ino) ?? null;
  }
  uid(): number {
    return 0;
  }
  chmod(path: string, mode: number): void {
    const f = this.files.get(path);
    assert.ok(f, path);
    this.files.set(path, { ...f, mode: (f.mode & ~0o7777) | mode });
  }
}

const policyOf = (over: { mode?: 'enforce' | 'audit'; guard?: boolean; port?: number } = {}) =>
  ({ mode: over.mode ?? 'enforce', dns: { guard: over.guard ?? true, port: over.port ?? PORT } }) as unknown as Policy;

interface World {
  probe: FakeProbe;
  watch: IntegrityWatch;
  rt: Runtime;
  logs: { level: string; message: string }[];
  state: { applied: boolean; off: boolean; journal: string };
}

function world(policy = policyOf()): World {
  const probe = new FakeProbe();
  const state = { applied: true, off: false, journal: 'j1' };
  const store = {
    dir: STATE,
    applied: () => (state.applied && !state.off ? { policyFile: POLICY } : null),
    isOff: () => state.off,
    lastJournal: () => ({ at: state.journal, event: 'apply' }),
  } as unknown as StateStore;
  const logs: World['logs'] = [];
  const rt = { policy, state: store, metrics: new Registry(), log: (level: string, message: string) => logs.push({ level, message }) } as unknown as Runtime;
  // A long poll and no inotify: the tests call check() themselves.
  const watch = new IntegrityWatch({ probe, pollMs: 3_600_000, confirmMs: 3_600_000, inotify: false });
  return { probe, watch, rt, logs, state };
}

describe('unit: integrity watch', () => {
  const alerts: AlertEvent[] = [];
  const onAlert = (m: unknown) => alerts.push(m as AlertEvent);
  const started: IntegrityWatch[] = [];
  before(() => channels.alert.subscribe(onAlert));
  after(async () => {
    channels.alert.unsubscribe(onAlert);
    for (const w of started) await w.stop();
  });
  beforeEach(() => {
    alerts.length = 0;
  });
  const start = async (w: World) => {
    started.push(w.watch);
    await w.watch.start(w.rt);
    return w;
  };

  it('a host as it should be: nothing found', async () => {
    const w = await start(world());
    w.watch.check();
    assert.equal(alerts.length, 0);
    assert.deepEqual(w.watch.status().active, []);
  });

  it('the policy file made writable by others: one critical tamper alert naming file and mode; cleared with a log line', async () => {
    const w = await start(world());
    w.probe.chmod(POLICY, 0o646);
    w.watch.check();
    assert.equal(alerts.length, 1);
    const a = alerts[0] as AlertEvent;
    assert.equal(a.kind, 'tamper');
    assert.equal(a.severity, 'critical');
    assert.match(a.message, /^The applied policy file \/etc\/sluice\/policy\.yaml is writable by others \(mode 0646\)\. Make the file/);
    assert.equal(a.detail?.what, 'policy-file');
    assert.equal(a.detail?.mode, '0646');
    w.watch.check();
    w.watch.check();
    assert.equal(alerts.length, 1, 'reported once, not on every poll');
    assert.equal((w.watch.status().active as unknown[]).length, 1);
    w.probe.chmod(POLICY, 0o644);
    w.watch.check();
    assert.equal(alerts.length, 1, 'a clearing is a log line, not an alert');
    assert.ok(w.logs.some((l) => /^integrity watch: cleared: The applied policy file/.test(l.message)));
    assert.deepEqual(w.watch.status().active, []);
    assert.match(w.rt.metrics.render(), /sluice_integrity_findings_total\{what="policy-file"\} 1\b/);
  });

  it('the policy file owned by another uid, its directory group-writable, a symlink to a file elsewhere that others can write', async () => {
    const w = await start(world());
    w.probe.files.set(POLICY, { ...(w.probe.files.get(POLICY) as FileFacts), uid: 1000 });
    w.watch.check();
    assert.match(alerts[0]?.message ?? '', /policy\.yaml is owned by uid 1000/);
    w.probe.chmod('/etc/sluice', 0o775);
    w.watch.check();
    assert.match(alerts[1]?.message ?? '', /^The directory of the applied policy file \/etc\/sluice is writable by group 0 \(mode 0775\)/);

    const v = await start(world());
    alerts.length = 0;
    v.probe.files.delete(POLICY);
    v.probe.links.set(POLICY, '/home/u/p.yaml');
    v.probe.files.set('/home/u', dir({ uid: 1000 }));
    v.probe.files.set('/home/u/p.yaml', file({ uid: 0 }));
    v.watch.check();
    assert.ok(alerts.some((a) => /^The directory of the applied policy file \/home\/u is owned by uid 1000/.test(a.message)), JSON.stringify(alerts));
  });

  it('the policy file deleted: reported when a second look still finds it gone; a replaced file is a log line (an editor\'s save), once', async () => {
    const w = await start(world());
    const f = w.probe.files.get(POLICY) as FileFacts;
    w.probe.files.delete(POLICY);
    w.watch.check();
    assert.equal(alerts.length, 0, 'the first look may land in an editor\'s save');
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /^The applied policy file \/etc\/sluice\/policy\.yaml was deleted or moved away/);
    assert.equal(alerts[0]?.severity, 'critical');

    w.probe.files.set(POLICY, f);
    w.watch.check();
    assert.ok(w.logs.some((l) => /cleared: The applied policy file .* was deleted/.test(l.message)));
    alerts.length = 0;
    w.probe.files.set(POLICY, file({ mode: 0o100644 }));
    w.watch.check();
    w.watch.check();
    assert.equal(alerts.length, 0, 'not an alert: editors save by renaming a new file over the old one');
    const noted = w.logs.filter((l) => /^integrity watch: The applied policy file \/etc\/sluice\/policy\.yaml was replaced by another file \(inode \d+ -> \d+, now owned by uid 0, mode 0644\)/.test(l.message));
    assert.equal(noted.length, 1, 'logged once');
    assert.equal(noted[0]?.level, 'warn');
    assert.equal(w.watch.status().noted, 1);
    // Replaced by a file others can write: that is an alert.
    w.probe.files.set(POLICY, file({ mode: 0o100666 }));
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /policy\.yaml is writable by group and others \(mode 0666\)/);
  });

  it('the state directory and files in it: writable by others, owned by another uid, a symlink', async () => {
    const w = await start(world());
    w.probe.chmod(STATE, 0o777);
    w.watch.check();
    assert.deepEqual(alerts.map((a) => a.message.split('. ')[0]), ['The state directory /var/lib/sluice is writable by group and others (mode 0777)']);
    alerts.length = 0;
    w.probe.chmod(STATE, 0o700);
    w.probe.files.set(`${STATE}/journal.log`, { ...(w.probe.files.get(`${STATE}/journal.log`) as FileFacts), uid: 1000 });
    w.probe.chmod(`${STATE}/policies/${'a'.repeat(64)}.yaml`, 0o602);
    w.probe.links.set(`${STATE}/learned.json`, '/tmp/x');
    w.watch.check();
    const got = alerts.map((a) => a.message.split('. ')[0]).sort();
    assert.deepEqual(got, [
      `${STATE}/journal.log in the state directory is owned by uid 1000`,
      `${STATE}/learned.json in the state directory is a symlink (Sluice writes none)`,
      `${STATE}/policies/${'a'.repeat(64)}.yaml in the state directory is writable by others (mode 0602)`,
    ]);
    assert.ok(alerts.every((a) => a.kind === 'tamper' && a.detail?.what === 'state-dir'));
    assert.ok(w.logs.some((l) => /cleared: The state directory/.test(l.message)));
  });

  it('applied.json deleted with no Sluice write behind it is reported; after sluice off or with a journal line it is not', async () => {
    const w = await start(world());
    w.probe.files.delete(`${STATE}/applied.json`);
    w.state.applied = false;
    w.watch.check();
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /applied\.json was deleted while a policy was applied, and no Sluice command did it/);

    const off = await start(world());
    alerts.length = 0;
    off.probe.files.delete(`${STATE}/applied.json`);
    off.state.off = true;
    off.watch.check();
    off.watch.check();
    const journaled = await start(world());
    journaled.probe.files.delete(`${STATE}/applied.json`);
    journaled.state.applied = false;
    journaled.state.journal = 'j2';
    journaled.watch.check();
    journaled.watch.check();
    assert.equal(alerts.length, 0);
  });

  it('applied.json modified in place is reported; replaced whole (how Sluice writes it) is not', async () => {
    const w = await start(world());
    const f = w.probe.files.get(`${STATE}/applied.json`) as FileFacts;
    w.probe.files.set(`${STATE}/applied.json`, file({ size: 99 }));
    w.watch.check();
    assert.equal(alerts.length, 0, 'a new inode: a Sluice write');
    const g = w.probe.files.get(`${STATE}/applied.json`) as FileFacts;
    w.probe.files.set(`${STATE}/applied.json`, { ...g, size: 120, mtimeMs: g.mtimeMs + 5 });
    w.watch.check();
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /applied\.json was modified in place \(same inode, 99 -> 120 bytes\)/);
    assert.ok(f.ino !== g.ino);
  });

  it('ip_unprivileged_port_start at or below the guard\'s port, or 53 with a local resolver; says to raise it; cleared when raised', async () => {
    const w = await start(world());
    w.probe.portStartValue = 154;
    w.watch.check();
    assert.equal(alerts.length, 0, 'above the guard\'s port');
    w.probe.portStartValue = 153;
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /^net\.ipv4\.ip_unprivileged_port_start was lowered to 153, at or below the DNS guard's port 153: any user may bind that port.*\. Raise it above 153 \(sysctl -w net\.ipv4\.ip_unprivileged_port_start=1024/);
    assert.equal(alerts[0]?.detail?.value, 153);
    w.probe.portStartValue = 100;
    w.watch.check();
    assert.equal(alerts.length, 1, 'lowered further: the same finding');
    w.probe.local = ['127.0.0.53'];
    w.probe.portStartValue = 53;
    w.watch.check();
    assert.equal(alerts.length, 2);
    assert.match(alerts[1]?.message ?? '', /at or below 53, and the DNS guard's resolver 127\.0\.0\.53 is on this host/);
    w.probe.portStartValue = 1024;
    w.watch.check();
    assert.equal(w.logs.filter((l) => /cleared: net\.ipv4\.ip_unprivileged_port_start/.test(l.message)).length, 2);

    const audit = await start(world(policyOf({ mode: 'audit' })));
    alerts.length = 0;
    audit.probe.portStartValue = 0;
    audit.watch.check();
    assert.equal(alerts.length, 0, 'audit mode: no guard port, no local resolver');
  });

  it('another socket on the guard\'s port (a wildcard bind, an address beside loopback) is reported with its holder', async () => {
    const w = await start(world());
    w.probe.socks.push({ proto: 'udp', family: 4, addr: '198.18.0.2', port: PORT, uid: 65534, inode: 4242 });
    w.probe.socks.push({ proto: 'tcp', family: 6, addr: '::', port: PORT, uid: 0, inode: 4243 });
    w.probe.holders.set(4242, 'node (pid 77)');
    w.watch.check();
    w.watch.check();
    assert.deepEqual(alerts.map((a) => a.message.split('. ')[0]), [
      "Another process's socket is bound to the DNS guard's port 153: UDP 198.18.0.2:153, uid 65534, inode 4242, held by node (pid 77)",
      "Another process's socket is bound to the DNS guard's port 153: TCP [::]:153 (every address), uid 0, inode 4243, held by a process not found",
    ]);
    assert.ok(alerts.every((a) => a.severity === 'critical' && a.detail?.what === 'guard-socket'));
    w.probe.socks = w.probe.socks.filter((s) => s.inode < 4242);
    w.watch.check();
    assert.equal(w.logs.filter((l) => /cleared: Another process's socket/.test(l.message)).length, 2);
  });

  it('a socket of this process on the port is the guard\'s (found again after a reload); a listener gone is reported on the second look', async () => {
    const w = await start(world());
    // The guard rebound (a reload): new inodes, still this process's.
    for (const s of w.probe.socks) s.inode += 1000;
    w.probe.own = new Set(w.probe.socks.map((s) => s.inode));
    w.watch.check();
    assert.equal(alerts.length, 0);
    w.probe.socks = w.probe.socks.filter((s) => !(s.proto === 'tcp' && s.addr === '::1'));
    w.watch.check();
    assert.equal(alerts.length, 0, 'one look may land in a rebind');
    w.watch.check();
    assert.equal(alerts.length, 1);
    assert.match(alerts[0]?.message ?? '', /^The DNS guard no longer listens on TCP \[::1\]:153/);
  });

  it('no guard (dns.guard off): neither the port sysctl nor the sockets are looked at', async () => {
    const w = await start(world(policyOf({ guard: false })));
    w.probe.portStartValue = 0;
    w.probe.socks = [{ proto: 'udp', family: 4, addr: '0.0.0.0', port: PORT, uid: 0, inode: 9 }];
    w.watch.check();
    assert.equal(alerts.length, 0);
  });

  it('a probe that throws does not throw out of the check: counted, logged once', async () => {
    const w = await start(world());
    w.probe.throwOn = 'lstat';
    assert.doesNotThrow(() => w.watch.check());
    assert.doesNotThrow(() => w.watch.check());
    assert.equal(w.watch.status().errors, 2);
    assert.equal(w.logs.filter((l) => /integrity watch: a check failed: lstat exploded/.test(l.message)).length, 1);
  });
});

describe('unit: integrity watch parsers', () => {
  it('the sysctl is digits within 0..65535 or nothing', () => {
    assert.equal(parsePortStart('1024\n'), 1024);
    assert.equal(parsePortStart('0'), 0);
    for (const bad of ['', '-1', '65536', '1e3', '10 20', '0x10', '99999999999999999999']) assert.equal(parsePortStart(bad), null, bad);
  });

  it('a socket link is socket:[N] and nothing else', () => {
    assert.equal(socketInode('socket:[12345]'), 12345);
    for (const bad of ['pipe:[1]', 'socket:[]', 'socket:[1] ', '/tmp/socket:[1]', 'socket:[-1]']) assert.equal(socketInode(bad), null, bad);
  });

  it('writable by others: another owner, group or other write bits; root and the daemon\'s own uid are fine', () => {
    assert.equal(writableByOthers(file({ mode: 0o100644 }), 0), null);
    assert.equal(writableByOthers(file({ uid: 5 }), 5), null);
    assert.equal(writableByOthers(file({ uid: 5 }), 0), 'is owned by uid 5');
    assert.equal(writableByOthers(file({ mode: 0o100620, gid: 4 }), 0), 'is writable by group 4 (mode 0620)');
    assert.equal(writableByOthers(dir({ mode: 0o41777 }), 0), 'is writable by group and others (mode 01777)');
  });

  it('the sockets on the guard\'s port are filtered in the kernel: an S_EQ program that keeps the port and drops the rest', () => {
    // code 11 (INET_DIAG_BC_S_EQ), yes 8 (the end: keep), no 12 (past the end: drop); the port in the next op's `no`.
    assert.deepEqual([...sourcePortFilter(153)], [11, 8, 12, 0, 0, 0, 153, 0]);
    const plain = encodeDumpRequest(4, 17, 0xffffffff, 1);
    const filtered = encodeDumpRequest(4, 17, 0xffffffff, 1, 153);
    assert.equal(filtered.length, plain.length + 12, 'one attribute: 4 bytes of header, 8 of program');
    assert.equal(filtered.readUInt32LE(0), filtered.length, 'the message length covers it');
    assert.equal(filtered.readUInt16LE(plain.length + 2), 1, 'INET_DIAG_REQ_BYTECODE');
    assert.deepEqual([...filtered.subarray(plain.length + 4)], [...sourcePortFilter(153)]);
  });
});
