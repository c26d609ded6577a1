/**
 * Integration: one-shot senders, named by the attribution probes. Each
 * attempt is a new process that sends once and exits (a UDP datagram, a
 * shell's /dev/tcp connect, IPv6 of both), as root or as uid 65534: each must
 * give exactly one event with its pid, executable, command line, uid and
 * cgroup, although the process is gone before its record is read. A one-shot
 * DNS lookup of an unlisted name likewise. Then the fallback: a daemon whose
 * probes cannot load says so once and attributes by the socket table.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { attempter, finish, logEvents, NODE, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';
import { findCgroup2Root } from '../../src/system/cgroups.js';

const PY = '/usr/bin/python3';
const PY_EXES = new Set(['/usr/bin/python3', '/usr/bin/python3.11']);
const SH = '/usr/bin/bash';

const POLICY = `mode: enforce
block_with: reject
log: {rate: 100000, burst: 100000, user_rate: 100000, user_burst: 100000}
dns:
  upstreams: [${HOSTS.dns4}]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp, 9000/tcp]
`;
const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');

interface Attempt {
  kind: string;
  dport: number;
  uid: number;
  argv: string[];
  pid?: number;
}

function attemptArgv(kind: string, dport: number): string[] {
  const py = (family: number, type: number, host: string, act: string) =>
    `import os,socket\nprint(os.getpid(),flush=True)\ns=socket.socket(${family},${type})\ntry:\n  ${act}\nexcept OSError:\n  pass\n`.replace('HOST', host);
  switch (kind) {
    case 'udp4':
      return [PY, '-c', py(2, 2, HOSTS.other4, `s.sendto(b'x',('HOST',${dport}))`), `udp4-${dport}`];
    case 'udp6':
      return [PY, '-c', py(10, 2, HOSTS.other6, `s.sendto(b'x',('HOST',${dport}))`), `udp6-${dport}`];
    case 'tcp6':
      return [PY, '-c', py(10, 1, HOSTS.other6, `s.connect(('HOST',${dport}))`), `tcp6-${dport}`];
    default:
      return [SH, '-c', `echo $$; exec 3<>/dev/tcp/${HOSTS.other4}/${dport}`, `tcp4-${dport}`];
  }
}

describe('integration: one-shot senders named by the attribution probes', () => {
  let w: World;
  let daemon: ChildProcess;
  let stderr = '';
  const ourCgroup = readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n').find((l) => l.startsWith('0::'))?.slice(3);

  const start = (env: NodeJS.ProcessEnv = {}) => startWith(POLICY, env);
  const startWith = async (policy: string, env: NodeJS.ProcessEnv = {}) => {
    stderr = '';
    daemon = await w.spawnReady(w.client, [NODE, join(ROOT, 'bin/sluice'), 'daemon', w.policy(policy), '--metrics', 'off'], {
      env: w.env(env),
      readyText: 'running',
      onSpawn: (c) => c.stderr?.on('data', (d: Buffer) => (stderr += d.toString())),
    });
  };
  /** A process that asks the resolver once (A record), waits up to 2 s for the answer and exits; its pid. */
  const oneShotLookup = async (name: string, uid: number, qid: number, cgroup?: string): Promise<number> => {
    const labels = name.split('.').map((l) => `bytes([${l.length}])+b'${l}'`).join('+');
    // With a cgroup, it moves itself there first (root only), so its query's socket is that cgroup's.
    const enter = cgroup ? `open('${cgroup}/cgroup.procs','w').write(str(os.getpid()))\n` : '';
    const script = `import os,socket,struct\n${enter}print(os.getpid(),flush=True)\nq=struct.pack('>HHHHHH',${qid},256,1,0,0,0)+${labels}+b'\\0'+struct.pack('>HH',1,1)\ns=socket.socket(2,2)\ns.settimeout(2)\ns.sendto(q,('${HOSTS.dns4}',53))\ntry:\n  s.recv(512)\nexcept OSError:\n  pass\n`;
    const r = await w.exec([PY, '-c', script], { uid, timeoutMs: 10_000 });
    return Number(r.stdout.trim());
  };
  const stop = async () => {
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  };

  before(async () => {
    w = await World.create({ dns: true });
    await start();
  });
  after(async () => {
    daemon?.kill('SIGTERM');
    await w?.destroy();
  });

  it('the probes are attached', async () => {
    const st = (await w.control('collector.status')) as { probes: { loaded: boolean; reason?: string } };
    assert.equal(st.probes.loaded, true, `probes not loaded: ${st.probes.reason}`);
  });

  it('sluice stats reports attribution by method, the probes\' lookups and their maps\' capacity and turnover', async () => {
    const a = await attempter(w, ['udp', HOSTS.other4, '21700', '31700']);
    await a.go();
    await waitFor('the sender\'s event', async () => (await logEvents(w)).find((x) => x.sport === 31700));
    await finish(a);
    type Health = { attribution: { methods: { kernel: number }; probes: { loaded: boolean; lookups: { hits: number }; flowsMax: number; execsMax: number } } };
    const j = await w.sluiceJson<Health>(['stats']);
    assert.equal(j.json.attribution.probes.loaded, true);
    assert.equal(j.json.attribution.probes.flowsMax, 65_536);
    assert.equal(j.json.attribution.probes.execsMax, 16_384);
    assert.ok(j.json.attribution.methods.kernel >= 1);
    assert.ok(j.json.attribution.probes.lookups.hits >= 1);
    const text = (await w.sluice(['stats'])).stdout;
    assert.match(text, /Attribution \(this daemon run\):\n {2}by the probes \d+/);
    assert.match(text, /flow map 65536 entries, exec map 16384; /);
  });

  it('200 one-shot senders (UDP and TCP, IPv4 and IPv6, root and uid 65534): one event each, with pid, executable, command line, uid and cgroup', async () => {
    const kinds = ['udp4', 'tcp4', 'udp6', 'tcp6'];
    const attempts: Attempt[] = [];
    for (let i = 0; i < 200; i++) {
      const kind = kinds[i % 4] as string;
      const dport = 21000 + i;
      attempts.push({ kind, dport, uid: i % 8 < 4 ? 0 : 65534, argv: attemptArgv(kind, dport) });
    }
    for (let i = 0; i < attempts.length; i += 10) {
      await Promise.all(
        attempts.slice(i, i + 10).map(async (a) => {
          const r = await w.exec(a.argv, { uid: a.uid, timeoutMs: 10_000 });
          a.pid = Number(r.stdout.trim().split('\n')[0]);
          assert.ok(a.pid > 0, `${a.kind} printed its pid: ${r.stdout} ${r.stderr}`);
        }),
      );
    }
    const ours = (all: StoredEvent[]) => all.filter((e) => (e.dst === HOSTS.other4 || e.dst === HOSTS.other6) && e.dport !== undefined && e.dport >= 21000 && e.dport < 21200);
    const events = await waitFor('an event for each attempt', async () => {
      const got = ours(await logEvents(w));
      return new Set(got.map((e) => e.dport)).size >= attempts.length ? got : undefined;
    });
    await sleep(400);
    const all = ours(await logEvents(w));
    assert.ok(all.length >= events.length);
    const wrong: string[] = [];
    for (const a of attempts) {
      const mine = all.filter((e) => e.dport === a.dport);
      const e = mine[0];
      const exes = a.kind === 'tcp4' ? new Set([SH]) : PY_EXES;
      const problems = [
        mine.length !== 1 && `${mine.length} events`,
        e?.verdict !== 'blocked' && `verdict ${e?.verdict}`,
        e?.attribution !== 'kernel' && `attribution ${e?.attribution}`,
        e?.process?.pid !== a.pid && `pid ${e?.process?.pid} (expected ${a.pid})`,
        !exes.has(e?.process?.exe ?? '') && `exe ${e?.process?.exe}`,
        !(e?.process?.cmdline ?? '').includes(`${a.kind}-${a.dport}`) && `cmdline ${e?.process?.cmdline}`,
        e?.uid !== a.uid && `uid ${e?.uid}`,
        e?.process?.cgroup !== ourCgroup && `cgroup ${e?.process?.cgroup} (expected ${ourCgroup})`,
      ].filter(Boolean);
      if (problems.length) wrong.push(`${a.kind} :${a.dport} uid ${a.uid}: ${problems.join(', ')}`);
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${attempts.length} attempts misnamed`);
  });

  it('one-shot pings from ping sockets (ICMP and ICMPv6, root and uid 65534) are named by the echo identifier', async () => {
    // Ping sockets for every group in this namespace (as systemd sets it on the host): `ping` then uses them, not raw sockets.
    const set = await w.exec(['sysctl', '-w', 'net.ipv4.ping_group_range=0 2147483647']);
    assert.equal(set.code, 0, set.stderr);
    const pinger = (family: 4 | 6, tag: string) =>
      `import os,socket,struct\nprint(os.getpid(),flush=True)\ns=socket.socket(${family === 4 ? 2 : 10},2,${family === 4 ? 1 : 58})\ntry:\n  s.sendto(struct.pack('>BBHHH',${family === 4 ? 8 : 128},0,0,0,1)+b'${tag}',('${family === 4 ? HOSTS.other4 : HOSTS.other6}',0))\nexcept OSError:\n  pass\n`;
    const attempts = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ family: (i % 2 === 0 ? 4 : 6) as 4 | 6, uid: i < 4 ? 0 : 65534, tag: `ping-${i}`, pid: 0 }));
    for (const a of attempts) {
      // The send itself fails (EPERM: the policy rejects it on the way out), after the probe saw it.
      const r = await w.exec([PY, '-c', pinger(a.family, a.tag), a.tag], { uid: a.uid, timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr);
      a.pid = Number(r.stdout.trim());
    }
    const icmp = (all: StoredEvent[]) => all.filter((e) => (e.proto === 1 && e.dst === HOSTS.other4) || (e.proto === 58 && e.dst === HOSTS.other6));
    const events = await waitFor('an event for each ping', async () => {
      const got = icmp(await logEvents(w));
      return attempts.every((a) => got.some((e) => e.process?.pid === a.pid)) ? got : undefined;
    });
    for (const a of attempts) {
      const e = events.find((x) => x.process?.pid === a.pid);
      assert.equal(e?.proto, a.family === 4 ? 1 : 58, a.tag);
      assert.equal(e?.attribution, 'kernel', a.tag);
      assert.equal(e?.uid, a.uid, a.tag);
      assert.ok(PY_EXES.has(e?.process?.exe ?? ''), `${a.tag}: ${e?.process?.exe}`);
      assert.match(e?.process?.cmdline ?? '', new RegExp(a.tag), a.tag);
    }
  });

  it('a one-shot DNS lookup of an unlisted name names its asker, root or uid 65534', async () => {
    const asks: { name: string; uid: number; pid?: number }[] = [];
    for (let i = 0; i < 10; i++) asks.push({ name: `oneshot${i}.unlisted.example`, uid: i % 2 ? 65534 : 0 });
    for (const a of asks) a.pid = await oneShotLookup(a.name, a.uid, 4660 + asks.indexOf(a));
    type Query = { name: string; verdict: string; process?: { pid: number; uid?: number; exe?: string } };
    const queries = await waitFor('the lookups in sluice dns', async () => {
      const r = await w.sluiceJson<Query[]>(['dns', '--limit', '1000']);
      const got = r.json.filter((q) => q.name.endsWith('.unlisted.example'));
      return got.length >= asks.length ? got : undefined;
    });
    const wrong = asks
      .map((a) => {
        const q = queries.find((x) => x.name === a.name);
        return q?.process?.pid === a.pid && q?.process?.uid === a.uid && PY_EXES.has(q?.process?.exe ?? "") ? undefined : `${a.name}: ${JSON.stringify(q)} (expected pid ${a.pid}, uid ${a.uid})`;
      })
      .filter(Boolean);
    assert.deepEqual(wrong, []);
  });

  it('a connection the guard opened is listed by connections and top with its name and rule, with the daemon up and after it stopped', async () => {
    type Conn = { remote: string; remotePort: number; hostname?: string; rule?: string; process?: { pid: number } };
    const holder = w.spawnIn(w.client, [NODE, DNSQ, '--name', 'api.sluice.test', '--connect', '9000', '--hold', '15000']);
    const mine = (cs: Conn[]) => cs.find((c) => c.remote === HOSTS.api4 && c.remotePort === 9000);
    const c = await waitFor('the held connection', async () => mine((await w.sluiceJson<{ connections: Conn[] }>(['connections'])).json.connections));
    assert.equal(c.hostname, 'api.sluice.test');
    assert.equal(c.rule, 'api', 'opened by the guard for rule api, not the default deny');
    assert.equal(c.process?.pid, holder.pid);
    const t = await w.sluiceJson<{ connections: Conn[]; attempts: { pid?: number; blocked: number; last: { rule: string } }[] }>(['top', '--interval', '1']);
    assert.equal(mine(t.json.connections)?.rule, 'api');
    assert.equal(mine(t.json.connections)?.hostname, 'api.sluice.test');
    // top also lists the last minute's blocked attempts per process (the one-shot senders above, each by its pid).
    assert.ok(t.json.attempts.filter((a) => a.pid !== undefined && a.blocked === 1 && a.last.rule === '#default').length >= 1, `attempts: ${JSON.stringify(t.json.attempts.slice(0, 3))}`);
    // The daemon down: the rule from the kernel's set, the name from the guard's saved state.
    await stop();
    const down = mine((await w.sluiceJson<{ connections: Conn[] }>(['connections'])).json.connections);
    assert.equal(down?.rule, 'api');
    assert.equal(down?.hostname, 'api.sluice.test');
    holder.kill('SIGKILL');
    await start();
  });

  it('a one-shot sender in a container\'s cgroup carries the container id; a look-alike in a user\'s delegated subtree is flagged as named by that user', async () => {
    const root = findCgroup2Root() ?? '/sys/fs/cgroup';
    const top = `${root}/sluice-test-${process.pid}`;
    const id = 'c0ffee00'.repeat(8);
    const dirs = [top, `${top}/docker-${id}.scope`, `${top}/user@65534.service`, `${top}/user@65534.service/docker-${id}.scope`];
    try {
      for (const d of dirs) mkdirSync(d);
      const run = async (cg: string, dport: number, uid: number) => {
        // Moves itself into the cgroup, then sends once and exits (as root: only root may move a process there).
        const r = await w.exec([SH, '-c', `echo $$ > ${cg}/cgroup.procs && echo $$ && exec 3<>/dev/tcp/${HOSTS.other4}/${dport}`, 'in-container'], { uid, timeoutMs: 10_000 });
        return Number(r.stdout.trim());
      };
      const pidA = await run(dirs[1] as string, 21600, 0);
      const pidB = await run(dirs[3] as string, 21601, 0);
      const evs = await waitFor('both containers\' events', async () => {
        const got = (await logEvents(w)).filter((e) => e.dport === 21600 || e.dport === 21601);
        return got.length >= 2 ? got : undefined;
      });
      const a = evs.find((e) => e.dport === 21600);
      const b = evs.find((e) => e.dport === 21601);
      const rel = (d: string) => d.slice(root.length);
      assert.equal(a?.process?.pid, pidA);
      assert.equal(a?.process?.cgroup, rel(dirs[1] as string));
      assert.deepEqual(a?.process?.container, { runtime: 'docker', id });
      assert.equal(b?.process?.pid, pidB);
      assert.deepEqual(b?.process?.container, { runtime: 'docker', id, delegated: true });
      // A one-shot DNS lookup from the container's cgroup: the query carries the cgroup and the container too.
      const asked = `incontainer.unlisted.example`;
      await oneShotLookup(asked, 0, 4700, dirs[1]);
      type Query = { name: string; process?: { cgroup?: string; container?: unknown } };
      const q = await waitFor('the container\'s lookup in sluice dns', async () => {
        const r = await w.sluiceJson<Query[]>(['dns', '--limit', '1000']);
        return r.json.find((x) => x.name === asked && x.process?.cgroup !== undefined);
      });
      assert.equal(q.process?.cgroup, rel(dirs[1] as string));
      assert.deepEqual(q.process?.container, { runtime: 'docker', id });
      const dnsText = await w.sluice(['dns', '--limit', '1000']);
      assert.match(dnsText.stdout, new RegExp(`${asked.replace(/\./g, '\\.')} .*container=docker:${id.slice(0, 12)}`));
      const text = await w.sluice(['log', '--limit', '1000']);
      assert.match(text.stdout, new RegExp(`container=docker:${id.slice(0, 12)} `));
      assert.match(text.stdout, new RegExp(`container=docker:${id.slice(0, 12)}\\(user\\)`));
    } finally {
      for (const d of [...dirs].reverse()) {
        for (let i = 0; i < 20; i++) {
          try {
            rmdirSync(d);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
            await sleep(50); // its last process is still being reaped
          }
        }
      }
    }
  });

  it('audit mode: a one-shot DNS lookup of an unlisted name names its asker too', async () => {
    // Applied while the daemon runs (a daemon's POLICY argument is only its very first start's).
    const applied = await w.sluice(['apply', w.policy(POLICY.replace('mode: enforce', 'mode: audit'), 'audit.yaml')]);
    assert.equal(applied.code, 0, applied.stderr);
    const asks: { name: string; uid: number; pid?: number }[] = [];
    for (let i = 0; i < 6; i++) asks.push({ name: `audit${i}.unlisted.example`, uid: i % 2 ? 65534 : 0 });
    for (const a of asks) {
      a.pid = await oneShotLookup(a.name, a.uid, 5000 + asks.indexOf(a));
    }
    type Query = { name: string; verdict: string; transport: string; process?: { pid: number; uid?: number; exe?: string } };
    const queries = await waitFor('the observed lookups in sluice dns', async () => {
      const r = await w.sluiceJson<Query[]>(['dns', '--limit', '1000']);
      const got = r.json.filter((q) => q.name.endsWith('.unlisted.example') && q.name.startsWith('audit'));
      return got.length >= asks.length ? got : undefined;
    });
    const wrong = asks
      .map((a) => {
        const q = queries.find((x) => x.name === a.name);
        return q?.verdict === 'would-block' && q.transport === 'passive' && q.process?.pid === a.pid && q.process?.uid === a.uid && PY_EXES.has(q.process?.exe ?? '')
          ? undefined
          : `${a.name}: ${JSON.stringify(q)} (expected would-block, pid ${a.pid}, uid ${a.uid})`;
      })
      .filter(Boolean);
    assert.deepEqual(wrong, []);
    const back = await w.sluice(['apply', w.policy(POLICY)]);
    assert.equal(back.code, 0, back.stderr);
  });

  it('fallback: probes that cannot load are reported once, and the socket table still names long-lived senders', async () => {
    await stop();
    // What a kernel without the hooks looks like to the loader: an object it cannot load.
    await start({ SLUICE_BPF_OBJECT: '/dev/null' });
    const said = stderr.split('\n').filter((l) => l.includes('kernel attribution unavailable'));
    assert.equal(said.length, 1, `said once: ${stderr}`);
    const st = (await w.control('collector.status')) as { probes: { loaded: boolean; reason?: string } };
    assert.equal(st.probes.loaded, false);
    assert.match(st.probes.reason ?? '', /eBPF/);
    const a = await attempter(w, ['udp', HOSTS.other4, '21500', '31500']);
    await a.go();
    const e = await waitFor('the long-lived sender\'s event', async () => (await logEvents(w)).find((x) => x.sport === 31500));
    assert.equal(e.process?.pid, a.pid);
    assert.notEqual(e.attribution, 'kernel');
    await finish(a);
    await stop();
    await start();
  });
});
