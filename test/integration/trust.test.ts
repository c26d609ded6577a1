/**
 * Integration: the trust promise, each test written as the attack on it.
 * What the policy says is what the kernel does, for every process, at every
 * moment: across daemon restarts, crashes, failed starts and reboots
 * (simulated by deleting the table); for flows that began under another
 * policy, or that another user tries to borrow; for a DNS guard port that an
 * unprivileged user can bind.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { waitFor } from '../support/monitor-helpers.js';
import { ECHO_PORT, HOSTS, ROOT, World } from '../world/world.js';

const FLOW = join(ROOT, 'dist/test/world/flow.js');
const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');

const ENFORCE = `mode: enforce
rules:
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp, ${ECHO_PORT}/tcp]
  - name: root-udp
    users: [root]
    to: [${HOSTS.other4}]
    ports: [5000/udp]
`;

/** Lines a flow process printed, and a promise of its exit. */
function watch(child: ChildProcess): { lines: () => string[]; ready: Promise<void>; exited: Promise<void> } {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    const check = () => (out.includes('ready') ? resolve() : undefined);
    child.stdout?.on('data', check);
    child.once('exit', () => (out.includes('ready') ? resolve() : reject(new Error(`flow exited before ready: ${out}`))));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { lines: () => out.split('\n').filter(Boolean), ready, exited };
}

const echoes = (lines: string[]) => lines.filter((l) => l.startsWith('echo ')).map((l) => Number(l.slice(5)));

describe('integration: trust (restarts, reboots, flows, impersonation)', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let enforce: string;
  let audit: string;

  const startDaemon = async (args: string[] = []) => {
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', ...args, '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  };
  const stopDaemon = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (!daemon || daemon.exitCode !== null || daemon.signalCode !== null) return;
    const exited = new Promise((r) => daemon?.once('exit', r));
    daemon.kill(signal);
    await exited;
    daemon = undefined;
  };
  const mode = async (): Promise<string | null> => {
    const tables = await w.nft(['list', 'tables']);
    if (!tables.includes('table inet sluice')) return null;
    return /mode=(\w+)/.exec(await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']))?.[1] ?? '?';
  };

  before(async () => {
    w = await World.create();
    enforce = w.policy(ENFORCE, 'enforce.yaml');
    audit = w.policy(ENFORCE.replace('mode: enforce', 'mode: audit'), 'audit.yaml');
  });
  after(async () => {
    await stopDaemon();
    await w?.destroy();
  });
  beforeEach(async () => {
    await stopDaemon();
    await w.sluice(['off']);
    // A fresh state directory: "nothing was ever applied" is a state of its own.
    rmSync(w.stateDir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await stopDaemon();
  });

  it('a restart never turns enforce into audit: the daemon runs on what was applied, not on the file its unit names', async () => {
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    // The unit names the audit policy (as `make up` once did); an operator applied enforce since.
    await startDaemon([audit]);
    assert.equal(await mode(), 'enforce', 'start');
    await stopDaemon('SIGKILL');
    await startDaemon([audit]);
    assert.equal(await mode(), 'enforce', 'restart after a crash');
    const st = await w.sluiceJson<{ state: string; mode: string; daemon: { state: string } }>(['status']);
    assert.deepEqual([st.code, st.json.state, st.json.mode, st.json.daemon.state], [0, 'live', 'enforce', 'running']);
    // The file it was started with, or the applied file edited half-way, is read only on an explicit reload.
    writeFileSync(enforce, `${ENFORCE}  - name: half-edit\n    to: [`);
    await stopDaemon();
    await startDaemon([audit]);
    assert.equal(await mode(), 'enforce');
    writeFileSync(enforce, ENFORCE);
  });

  it('a restart never undoes `sluice off`, and never re-applies a rolled-back policy', async () => {
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    await startDaemon([enforce]);
    assert.equal((await w.sluice(['off'])).code, 0);
    await stopDaemon('SIGKILL');
    await startDaemon([enforce]);
    assert.equal(await mode(), null, 'off stays off across a restart');
    assert.equal((await w.sluice(['restore'])).code, 0);
    assert.equal(await mode(), null, 'and across a reboot (the restore step)');
    const st = await w.sluiceJson<{ state: string }>(['status']);
    assert.equal(st.json.state, 'off');

    // Audit applied, then enforce with --confirm, not confirmed: rolled back to audit.
    assert.equal((await w.sluice(['apply', audit])).code, 0);
    assert.equal((await w.sluice(['apply', enforce, '--confirm', '1'])).code, 0);
    await waitFor('the rollback to audit', async () => ((await mode()) === 'audit' ? true : undefined), 20_000);
    await stopDaemon();
    await startDaemon([enforce]);
    assert.equal(await mode(), 'audit', 'the rolled-back policy does not come back on restart');
  });

  it('a reboot (table gone) with a daemon that cannot start: the last applied ruleset is back, and the failure is loud', async () => {
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    const applied = await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']);
    // Simulated reboot: the kernel forgot the table; and the daemon's start will fail (its snapshot is unreadable).
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    const state = JSON.parse(readFileSync(join(w.stateDir, 'applied.json'), 'utf8')) as { sha256: string };
    writeFileSync(join(w.stateDir, 'policies', `${state.sha256}.yaml`), 'rules: [');
    const r = await w.sluice(['daemon', enforce, '--metrics', 'off']);
    assert.equal(r.code, 1, 'the failed start exits non-zero');
    assert.match(r.stderr, /the ruleset in the kernel stays in force/);
    assert.equal(await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']), applied, 'the applied ruleset is in the kernel again');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`, `tcp:${HOSTS.other4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true, [`tcp:${HOSTS.other4}:443`]: false });
    const st = await w.sluiceJson<{ state: string; daemon: { state: string; error: string } }>(['status']);
    assert.equal(st.code, 3, 'status exits 3');
    assert.equal(st.json.state, 'live');
    assert.equal(st.json.daemon.state, 'failed');
    assert.match(st.json.daemon.error, /policy/i);
    assert.match((await w.sluice(['status'])).stdout, /Daemon: FAILED TO START/);
  });

  it('Type=notify: the daemon says READY=1 only once its policy is in the kernel, and never when its start fails', async () => {
    const sock = join(w.tmp, 'notify.sock');
    // systemd's side of sd_notify: a datagram socket that prints what it receives.
    const listener = w.spawnIn(w.client, ['python3', '-u', '-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("ready", flush=True)\nwhile True:\n  print(repr(s.recv(4096).decode()), flush=True)', sock]);
    let heard = '';
    listener.stdout?.on('data', (d: Buffer) => (heard += d.toString()));
    await new Promise((r) => listener.stdout?.once('data', r));
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env({ NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000' }), readyText: 'running' });
    await waitFor('READY=1', async () => (heard.includes('READY=1') ? true : undefined), 15_000);
    assert.match(heard, /READY=1\\nSTATUS=enforce mode/);
    assert.equal(await mode(), 'enforce', 'the table is in the kernel by then (it was restored first)');
    // WatchdogSec=: systemd sets WATCHDOG_USEC; the daemon pings at half the period.
    await waitFor('two watchdog pings', async () => ((heard.match(/'WATCHDOG=1'/g) ?? []).length >= 2 ? true : undefined), 15_000);
    await stopDaemon();
    assert.match(heard, /STOPPING=1/);
    // A start that fails says nothing is ready.
    heard = '';
    const state = JSON.parse(readFileSync(join(w.stateDir, 'applied.json'), 'utf8')) as { sha256: string };
    writeFileSync(join(w.stateDir, 'policies', `${state.sha256}.yaml`), 'rules: [');
    const r = await w.sluice(['daemon', '--metrics', 'off'], { env: { NOTIFY_SOCKET: sock } });
    assert.equal(r.code, 1);
    await sleep(200);
    assert.doesNotMatch(heard, /READY=1/);
    listener.kill('SIGKILL');
  });

  it('sluice restore (the boot unit) puts the applied ruleset back before anything else runs, and rolls back an unconfirmed apply', async () => {
    assert.equal((await w.sluice(['restore'])).code, 0, 'nothing applied: nothing to do');
    assert.equal(await mode(), null);
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    const applied = await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']);
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    const r = await w.sluiceJson<{ restored: boolean }>(['restore']);
    assert.equal(r.json.restored, true);
    assert.equal(await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']), applied);
    assert.equal((await w.sluiceJson<{ state: string }>(['status'])).json.state, 'live');
    // The host went down during a --confirm window: at boot the previous (confirmed) policy comes back.
    assert.equal((await w.sluice(['apply', audit, '--confirm', '600'])).code, 0);
    await w.nft(['delete', 'table', 'inet', 'sluice']);
    const rb = await w.sluiceJson<{ rolledBack: boolean }>(['restore']);
    assert.equal(rb.json.rolledBack, true);
    assert.equal(await mode(), 'enforce');
    assert.equal((await w.sluiceJson<{ pending: unknown }>(['status'])).json.pending, null);
  });

  it('a relative policy path is stored absolute, so the daemon (cwd /) can reload it', async () => {
    const r = await w.exec([process.execPath, join(ROOT, 'bin/sluice'), 'apply', 'enforce.yaml'], { env: w.env(), cwd: w.tmp });
    assert.equal(r.code, 0, r.stderr);
    const applied = JSON.parse(readFileSync(join(w.stateDir, 'applied.json'), 'utf8')) as { policyFile: string };
    assert.equal(applied.policyFile, join(w.tmp, 'enforce.yaml'));
    await startDaemon();
    writeFileSync(enforce, ENFORCE.replace(`to: [${HOSTS.api4}]`, `to: [${HOSTS.api4}, ${HOSTS.net3}]`));
    daemon?.kill('SIGHUP');
    let set = '';
    for (let i = 0; i < 50 && !/198\.18\.3\.30/.test(set); i++) {
      await sleep(200);
      set = await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_a4']);
    }
    assert.match(set, /198\.18\.3\.30/, 'the reload read the file');
    writeFileSync(enforce, ENFORCE);
  });

  it('SIGHUP while the daemon starts never ends it: the reload runs once the start is done', async () => {
    // A rule of 20,000 addresses: a start long enough to be seen in its "starting" state.
    const bulk = Array.from({ length: 20_000 }, (_, i) => `198.19.${i >> 8}.${i & 255}`);
    const slow = w.policy(`${ENFORCE}  - name: bulk\n    to: [${bulk.join(', ')}]\n`, 'slow.yaml');
    assert.equal((await w.sluice(['apply', slow])).code, 0);
    const child = w.spawnIn(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env() });
    daemon = child;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.resume();
    // The moment the start has begun (daemon.json says starting): a SIGHUP now, with the policy file changed.
    const pid = await waitFor('the daemon starting', async () => {
      let st: { state?: string; pid?: number } = {};
      try {
        st = JSON.parse(readFileSync(join(w.stateDir, 'daemon.json'), 'utf8')) as typeof st;
      } catch {
        return undefined;
      }
      if (out.includes('running')) throw new Error('the daemon was running before its start was seen');
      return st.state === 'starting' && st.pid !== undefined ? st.pid : undefined;
    }, 15_000, 2);
    writeFileSync(slow, readFileSync(slow, 'utf8').replace(`to: [${HOSTS.api4}]`, `to: [${HOSTS.api4}, ${HOSTS.net3}]`));
    process.kill(pid, 'SIGHUP');
    await waitFor('the daemon running', async () => (out.includes('running') ? true : child.exitCode !== null || child.signalCode !== null ? Promise.reject(new Error(`the daemon ended (${child.exitCode ?? child.signalCode})`)) : undefined), 20_000);
    await waitFor('the reload asked for during the start', async () => (/198\.18\.3\.30/.test(await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_a4'])) ? true : undefined), 15_000);
    assert.equal(child.exitCode, null, 'the daemon is still running');
    assert.equal(child.signalCode, null);
    await stopDaemon();
  });

  it('a UDP flow root made cannot be borrowed: uid 65534 reusing its source port gets nothing', async () => {
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    const root = watch(w.spawnIn(w.client, [process.execPath, FLOW, 'udp', HOSTS.other4, '5000', '--sport', '45000', '--count', '1']));
    await root.exited;
    assert.deepEqual(echoes(root.lines()), [0], 'root, whom the rule allows, is answered');
    // Same 5-tuple, conntrack entry still alive, another user.
    const thief = watch(w.spawnIn(w.client, [process.execPath, FLOW, 'udp', HOSTS.other4, '5000', '--sport', '45000', '--count', '3', '--interval', '100'], { uid: 65534 }));
    await thief.exited;
    assert.deepEqual(echoes(thief.lines()), [], `the other user is not: ${thief.lines().join(', ')}`);
    // And root still is (its identity matches what admitted the flow).
    const again = watch(w.spawnIn(w.client, [process.execPath, FLOW, 'udp', HOSTS.other4, '5000', '--sport', '45000', '--count', '1']));
    await again.exited;
    assert.deepEqual(echoes(again.lines()), [0]);
  });

  it('a flow begun in audit mode does not survive the switch to enforce; flows a new policy refuses end; others live on', async () => {
    assert.equal((await w.sluice(['apply', audit])).code, 0);
    // Flows long enough to be alive at the switch however slow the apply is; they are ended below.
    const long = ['--count', '600', '--interval', '100'];
    // uid 65534 to other4:5000/udp: only root may (the rule's user); audit mode lets it through.
    const udpChild = w.spawnIn(w.client, [process.execPath, FLOW, 'udp', HOSTS.other4, '5000', ...long], { uid: 65534 });
    // A TCP connection the enforce policy allows, and one it does not (api4:9000 is allowed, other4:9000 is not).
    const keptChild = w.spawnIn(w.client, [process.execPath, FLOW, 'tcp', HOSTS.api4, String(ECHO_PORT), ...long]);
    const cutChild = w.spawnIn(w.client, [process.execPath, FLOW, 'tcp', HOSTS.other4, String(ECHO_PORT), ...long]);
    const [udp, kept, cut] = [watch(udpChild), watch(keptChild), watch(cutChild)];
    try {
      await Promise.all([udp.ready, kept.ready, cut.ready]);
      await waitFor('echoes on all three flows in audit mode', async () => ([udp, kept, cut].every((f) => echoes(f.lines()).length >= 3) ? true : undefined));
      assert.equal((await w.sluice(['apply', enforce])).code, 0);
      const at = { udp: echoes(udp.lines()).length, kept: echoes(kept.lines()).length, cut: echoes(cut.lines()).length };
      try {
        await waitFor('the refused TCP connection ends with an error (reset), not a silent hang', async () => (cut.lines().some((l) => l.startsWith('error ')) ? true : undefined), 30_000);
      } catch (e) {
        // CI once saw no reset in 15 s (never reproduced since): what the flow and the kernel held then.
        const ct = await w.exec(['conntrack', '-L', '-p', 'tcp', '--dport', String(ECHO_PORT), '-o', 'extended']);
        const table = (await w.nft(['-t', 'list', 'table', 'inet', 'sluice'])).split('\n').find((l) => l.includes('comment "sluice')) ?? 'no table';
        const counters = (await w.nft(['list', 'counters', 'table', 'inet', 'sluice'])).replace(/\s+/g, ' ');
        throw new Error(`${(e as Error).message}\n  switch at ${JSON.stringify(at)}; the refused flow printed: ${cut.lines().slice(-6).join(' | ')}\n  conntrack: ${ct.stdout.trim().replace(/\n/g, '\n    ')}\n  ${table.trim()}\n  ${counters}`);
      }
      // Ten more round trips on the allowed connection: time enough for the UDP flow to have shown it lived.
      await waitFor('the allowed connection lives on', async () => (echoes(kept.lines()).length >= at.kept + 10 ? true : undefined));
      // One datagram or message may have been in flight at the switch.
      assert.ok(echoes(udp.lines()).length <= at.udp + 1, `the audit-mode UDP flow is cut at the switch (${at.udp} before, ${echoes(udp.lines()).length} after)`);
      assert.ok(echoes(cut.lines()).length <= at.cut + 1, `the refused TCP connection ends (${at.cut} before, ${echoes(cut.lines()).length} after)`);
      assert.ok(!kept.lines().some((l) => l.startsWith('error ')), `the allowed connection saw no error: ${kept.lines().filter((l) => l.startsWith('error ')).join(', ')}`);
    } finally {
      for (const c of [udpChild, keptChild, cutChild]) c.kill('SIGKILL');
    }
  });

  it('re-applying the same policy keeps every flow; a reload that keeps a flow allowed keeps it', async () => {
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    const epoch = () => (JSON.parse(readFileSync(join(w.stateDir, 'applied.json'), 'utf8')) as { epoch: number }).epoch;
    const first = epoch();
    const conn = watch(w.spawnIn(w.client, [process.execPath, FLOW, 'tcp', HOSTS.api4, String(ECHO_PORT), '--count', '20', '--interval', '100']));
    await conn.ready;
    assert.equal((await w.sluice(['apply', enforce])).code, 0);
    assert.equal(epoch(), first, 'the same meaning keeps its epoch');
    const other = w.policy(ENFORCE.replace(`to: [${HOSTS.api4}]`, `to: [${HOSTS.api4}, ${HOSTS.net3}]`), 'other.yaml');
    assert.equal((await w.sluice(['apply', other])).code, 0);
    assert.equal(epoch(), first + 1, 'a new meaning takes the next epoch');
    await conn.exited;
    assert.deepEqual(echoes(conn.lines()), [...Array(20).keys()], 'every message echoed: the connection never noticed');
  });

  it('with ip_unprivileged_port_start=0, a user who binds the guard port never sees a query, whether or not the daemon runs', async () => {
    const guard = w.policy(`mode: enforce\ndns:\n  upstreams: [${HOSTS.dns4}]\nrules:\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n`, 'guard.yaml');
    await w.exec(['sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=0']);
    try {
      // The CLI apply writes the redirect while no daemon listens; uid 65534 takes the port first.
      assert.equal((await w.sluice(['apply', guard])).code, 0);
      const squatter = w.spawnIn(
        w.client,
        [process.execPath, '-e', "let n = 0; for (const [t, a] of [['udp4', '127.0.0.1'], ['udp6', '::1']]) { const s = require('dgram').createSocket(t); s.on('message', (m, r) => { n++; s.send(m, r.port, r.address); }); s.bind(153, a); } setTimeout(() => console.log('ready'), 200); setInterval(() => console.log('got ' + n), 200);"],
        { uid: 65534 },
      );
      let got = '';
      squatter.stdout?.on('data', (d: Buffer) => (got += d.toString()));
      await new Promise((r) => squatter.stdout?.once('data', r));
      const ask = await w.exec([process.execPath, DNSQ, '--name', 'api.sluice.test', '--timeout', '800']);
      assert.match(ask.stdout, /"error"/, `no answer: ${ask.stdout}`);
      await sleep(300);
      assert.match(got, /got 0\n$/, 'the squatter never received root\'s query');
      squatter.kill('SIGKILL');
    } finally {
      await w.exec(['sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=1024']);
    }
  });

  it('the rollback timer never signals a process by a pid it recorded: a confirm leaves an unrelated process alone', async () => {
    assert.equal((await w.sluice(['apply', enforce, '--confirm', '600'])).code, 0);
    // After a reboot the recorded pid may belong to anyone: plant an unrelated process's pid.
    const bystander = w.spawnIn(w.client, ['sleep', '600']);
    await sleep(100);
    const file = join(w.stateDir, 'pending-confirm.json');
    const pending = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown> & { token: string };
    writeFileSync(file, JSON.stringify({ ...pending, timerPid: bystander.pid }));
    assert.equal((await w.sluice(['confirm'])).code, 0);
    await sleep(300);
    assert.equal(bystander.exitCode, null, 'still running');
    assert.equal(bystander.signalCode, null, 'never signalled');
    // The real timer saw the confirmation go and exited by itself.
    const timers = (await w.exec(['pgrep', '-f', `_rollback ${pending.token}`])).stdout.trim();
    assert.equal(timers, '', 'no timer left behind');
  });
});
