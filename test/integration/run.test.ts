/**
 * Integration: `sluice run` against the real kernel. The world's client
 * namespace plays the host: `sluice run` runs there (never in the machine's
 * own namespace), makes its run namespace, veth, table and guard there, and
 * the world namespace is the internet, with a real DNS server (NSD) and TCP
 * and UDP servers. Runs use 198.18.192.0/18 and 2001:db8:5c::/48.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { HOSTS, ROOT, World } from '../world/world.js';

const PROBE = join(ROOT, 'dist/test/world/probe.js');
const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const SLUICE = join(ROOT, 'bin/sluice');

interface Report {
  version: number;
  exit: { code: number | null; signal: string | null };
  names: { name: string; type: string; verdict: string; answers: string[]; processes: { pid: number; comm: string; cmdline?: string }[] }[];
  flows: { verdict: string; rule: string; proto: string; dst: string; dport?: number; names: string[]; processes: { pid: number; comm: string; exe?: string; cmdline?: string }[]; count: number }[];
  attribution: { probes: boolean; reason?: string };
  summary: { namesAllowed: number; namesBlocked: number; destinationsReached: number; attemptsBlocked: number };
  ipv6: boolean;
}

interface Probe {
  target: string;
  ok: boolean;
  error?: string;
  reply?: string;
}

describe('integration: sluice run', () => {
  let w: World;
  let env: NodeJS.ProcessEnv;
  let runDir: string;

  const sluiceRun = async (args: string[], cmd: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) => {
    const report = join(w.tmp, `report-${Math.random().toString(16).slice(2)}.json`);
    const r = await w.exec([process.execPath, SLUICE, 'run', '--dns-upstream', HOSTS.dns4, '--report', report, ...args, '--', ...cmd], { env, ...opts });
    const parsed = existsSync(report) ? (JSON.parse(readFileSync(report, 'utf8')) as Report) : undefined;
    return { ...r, report: parsed };
  };
  const probes = (stdout: string): Probe[] =>
    stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Probe)
      .filter((p) => typeof p.target === 'string');
  /** What this world's client namespace holds that a run made: tables, links, netns files, slots. */
  const leftovers = async () => {
    const tables = (await w.exec(['nft', 'list', 'tables'])).stdout.split('\n').filter((l) => /sluice-run-[0-9a-f]{8}\b/.test(l));
    const links = (await w.exec(['ip', '-o', 'link'])).stdout.split('\n').filter((l) => /\bslr[0-9a-f]{8}\b/.test(l));
    const slots = existsSync(runDir) ? readdirSync(runDir).filter((n) => n.startsWith('slot-')) : [];
    return { tables, links, slots };
  };
  const namespacesOfRuns = () => new Set(readdirSync('/run/netns').filter((n) => n.startsWith('sluice-run-')));

  before(async () => {
    w = await World.create({ dns: true });
    // The zone's other names (a.cdn...) answer too.
    await w.addLocalRange('198.18.1.0/24');
    runDir = join(w.tmp, 'run');
    mkdirSync(runDir, { recursive: true });
    env = w.env({ SLUICE_RUN_DIR: runDir, SLUICE_RUN_NET4: '198.18.192.0/18', SLUICE_RUN_NET6: '2001:db8:5c::/48' });
  });
  after(async () => {
    // Whatever a failed test left. Runs still going end as a user would end them (SIGTERM: each cleans
    // up after itself); then the runs' own cleanup for any that died; then the world. A run's namespace,
    // cgroup and /etc/netns entry are global: left to the world's teardown, they would outlive it.
    for (const c of started) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
    }
    if (w) await w.exec([process.execPath, SLUICE, 'run', '--cleanup'], { env }).catch(() => undefined);
    await w?.destroy();
  });
  /** Starts `sluice run` in the background; after() ends it if a test did not. */
  const started: ChildProcess[] = [];
  const spawnRun = (args: string[], extraEnv: NodeJS.ProcessEnv = {}): ChildProcess => {
    const c = w.spawnIn(w.client, [process.execPath, SLUICE, 'run', '--dns-upstream', HOSTS.dns4, ...args], { env: { ...env, ...extraEnv } });
    started.push(c);
    return c;
  };

  it('an allowed fetch by name succeeds; an unlisted host, another port, a DNS exfiltration and an IP literal are blocked and reported', async () => {
    const before = namespacesOfRuns();
    const r = await sluiceRun(['--allow', 'api.sluice.test:443/tcp'], [process.execPath, PROBE, 'tcp:api.sluice.test:443', 'tcp:api.sluice.test:80', `tcp:${HOSTS.other4}:443`, `udp:${HOSTS.other4}:5000`]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /drops forwarded packets/, 'no other firewall here: no warning');
    const got = probes(r.stdout);
    assert.deepEqual(
      got.map((p) => [p.target, p.ok]),
      [
        ['tcp:api.sluice.test:443', true],
        ['tcp:api.sluice.test:80', false],
        [`tcp:${HOSTS.other4}:443`, false],
        [`udp:${HOSTS.other4}:5000`, false],
      ],
    );
    assert.equal(got[1]?.error, 'ECONNREFUSED', 'a blocked TCP connect is refused at once (reset), not left to time out');
    const rep = r.report;
    assert.ok(rep, 'the JSON report was written');
    assert.equal(rep.version, 1);
    assert.deepEqual(rep.exit, { code: 0, signal: null });
    assert.ok(rep.names.some((n) => n.name === 'api.sluice.test' && n.verdict === 'allowed' && n.answers.includes(HOSTS.api4)), JSON.stringify(rep.names));
    // Over IPv4 or IPv6, whichever the resolver ordered first.
    assert.ok(rep.flows.some((f) => f.verdict === 'allowed' && (f.dst === HOSTS.api4 || f.dst === HOSTS.api6) && f.dport === 443 && f.names.includes('api.sluice.test')), JSON.stringify(rep.flows));
    for (const [dst, dport, proto] of [[HOSTS.api4, 80, 'tcp'], [HOSTS.other4, 443, 'tcp'], [HOSTS.other4, 5000, 'udp']] as const) {
      assert.ok(rep.flows.some((f) => f.verdict === 'blocked' && (f.dst === dst || (dst === HOSTS.api4 && f.dst === HOSTS.api6)) && f.dport === dport && f.proto === proto && f.rule === '#default'), `${dst}:${dport}/${proto} reported blocked: ${JSON.stringify(rep.flows)}`);
    }
    assert.match(r.stderr, /blocked: [1-9][0-9]* attempts?/);
    // Each blocked attempt is named by the process that made it: the probes' connect hook is on the run's cgroup.
    assert.equal(rep.attribution.probes, true, rep.attribution.reason);
    for (const f of rep.flows) {
      assert.equal(f.processes.length, 1, `one sender for ${f.dst}:${f.dport}/${f.proto}: ${JSON.stringify(f.processes)}`);
      assert.equal(f.processes[0]?.comm, 'node', JSON.stringify(f));
      assert.match(f.processes[0]?.cmdline ?? '', /probe\.js/, JSON.stringify(f));
    }
    assert.match(r.stderr, /by node\[[0-9]+\]/);
    // The names too: the lookup came from the same process (getaddrinfo on one of its threads).
    const asked = rep.names.find((n) => n.name === 'api.sluice.test' && n.verdict === 'allowed');
    assert.ok(asked && asked.processes.length > 0, `who asked for api.sluice.test: ${JSON.stringify(rep.names)}`);
    assert.equal(asked.processes[0]?.pid, rep.flows[0]?.processes[0]?.pid, JSON.stringify({ names: rep.names, flows: rep.flows }));
    assert.match(asked.processes[0]?.cmdline ?? '', /probe\.js/);
    // Nothing is left: namespace, veth, table, slot.
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
    assert.deepEqual([...namespacesOfRuns()].filter((n) => !before.has(n)), []);
  });

  it("another firewall's forward chain with policy drop (ufw's, Docker's) is named before the command runs, and the rules it suggests let the run out", async () => {
    // What ufw and Docker leave on a host: FORWARD with policy drop, and rules for their own interfaces
    // only (theirs are ip and ip6 tables; an inet one holds both families, as the run may use either).
    await w.exec(['nft', '-f', '-'], { input: 'table inet filter {\n chain FORWARD {\n type filter hook forward priority 0; policy drop;\n iifname "docker0" accept\n }\n}\n' });
    try {
      const cmd = [process.execPath, PROBE, 'tcp:api.sluice.test:443'];
      const r = await sluiceRun(['--allow', 'api.sluice.test:443/tcp'], cmd);
      assert.match(r.stderr, /drops forwarded packets by default, and this run's traffic is forwarded: table inet filter, chain FORWARD \(1 rule\)/);
      assert.deepEqual(probes(r.stdout).map((p) => p.ok), [false], 'the warning is true: the connection does not get out');
      // The nft rules the warning suggests, in that chain.
      await w.exec(['nft', 'insert', 'rule', 'inet', 'filter', 'FORWARD', 'iifname', 'slr*', 'accept']);
      await w.exec(['nft', 'insert', 'rule', 'inet', 'filter', 'FORWARD', 'oifname', 'slr*', 'ct', 'state', 'established,related', 'accept']);
      const r2 = await sluiceRun(['--allow', 'api.sluice.test:443/tcp'], cmd);
      assert.match(r2.stderr, /chain FORWARD \(3 rules\)/);
      assert.deepEqual(probes(r2.stdout).map((p) => p.ok), [true], r2.stderr);
    } finally {
      await w.exec(['nft', 'delete', 'table', 'inet', 'filter']);
    }
  });

  it('a DNS query for an unlisted name is refused by the guard and never reaches the authoritative server, whatever resolver it is sent to', async () => {
    const seen = async () => Number(/packets (\d+)/.exec((await w.exec(['nft', 'list', 'chain', 'inet', 'runseen', 'in'], { ns: w.world })).stdout)?.[1] ?? -1);
    // Queries whose name starts with the label "exfil" (length 5, then the bytes), counted where the servers are.
    await w.exec(['nft', '-f', '-'], {
      ns: w.world,
      input: 'table inet runseen {\n chain in {\n type filter hook input priority 0; policy accept;\n udp dport 53 @th,160,48 0x05657866696c counter\n }\n}\n',
    });
    const probe = 'exfil.sluice.test';
    // Positive control: the same query sent from outside any run is counted.
    await w.exec([process.execPath, DNSQ, '--server', HOSTS.dns4, '--name', probe, '--timeout', '1500']);
    assert.equal(await seen(), 1, 'the counter sees a query for the name');
    const r = await sluiceRun(['--allow', 'api.sluice.test'], [process.execPath, DNSQ, '--server', HOSTS.dns4, '--name', probe, '--timeout', '1500']);
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as { rcode?: number; error?: string };
    assert.ok(answer.rcode === 3 || answer.rcode === 5, `refused by the guard (NXDOMAIN or REFUSED): ${r.stdout}`);
    // Sent to another resolver address: still the guard answers.
    const r2 = await sluiceRun(['--allow', 'api.sluice.test'], [process.execPath, DNSQ, '--server', HOSTS.other4, '--name', probe, '--timeout', '1500']);
    const answer2 = JSON.parse(r2.stdout.trim().split('\n')[0] ?? '{}') as { rcode?: number };
    assert.ok(answer2.rcode === 3 || answer2.rcode === 5, `a query to ${HOSTS.other4} is answered by the guard: ${r2.stdout}`);
    assert.equal(await seen(), 1, 'the world never saw a query for the unlisted name from a run');
    assert.ok(r.report?.names.some((n) => n.name === probe && n.verdict === 'blocked'), JSON.stringify(r.report?.names));
  });

  it('IPv6 and DNS over TCP work under the same policy, without proxy settings', async () => {
    const r = await sluiceRun(['--allow', `[${HOSTS.api6}]:443/tcp`, '--allow', 'api.sluice.test:443/tcp'], [
      'sh',
      '-c',
      `${process.execPath} ${PROBE} tcp:[${HOSTS.api6}]:443 tcp:[${HOSTS.other6}]:443; ${process.execPath} ${DNSQ} --tcp --server ${HOSTS.dns4} --name api.sluice.test; ${process.execPath} ${DNSQ} --tcp --server ${HOSTS.dns4} --name exfil.sluice.test`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.report?.ipv6, true, 'this host (the client namespace) can forward IPv6: no router advertisements there');
    assert.deepEqual(probes(r.stdout).map((p) => [p.target, p.ok]), [[`tcp:[${HOSTS.api6}]:443`, true], [`tcp:[${HOSTS.other6}]:443`, false]], r.stdout);
    const answers = r.stdout.trim().split('\n').filter((l) => l.includes('"name"')).map((l) => JSON.parse(l) as { name: string; rcode?: number; answers?: string[] });
    assert.deepEqual(answers.map((a) => [a.name, a.rcode]), [['api.sluice.test', 0], ['exfil.sluice.test', 3]], r.stdout);
    assert.ok(answers[0]?.answers?.some((x) => x.includes(HOSTS.api4)), JSON.stringify(answers[0]));
    assert.ok(r.report?.flows.some((f) => f.verdict === 'blocked' && f.dst === HOSTS.other6 && f.dport === 443), JSON.stringify(r.report?.flows));
  });

  it("the command's first packet is already judged by the run's table, and named by the probes: confinement and attribution are in place before it starts", async () => {
    // bash connects from its first instructions (no runtime to start first): a blocked address, then an allowed
    // one. The probes are made slow to load (0.4 s): the command waits for them, it is not started beside them.
    const r = await sluiceRun(['--allow', `${HOSTS.net3}:443/tcp`], ['bash', '-c', `: <>/dev/tcp/${HOSTS.other4}/443; a=$?; : <>/dev/tcp/${HOSTS.net3}/443; echo "connects $a $?"`], {
      env: { ...env, SLUICE_RUN_PROBE_DELAY_MS: '400' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^connects 1 0$/m, 'the blocked connect is refused, the allowed one made');
    const rep = r.report as Report;
    const blocked = rep.flows.find((f) => f.verdict === 'blocked' && f.dst === HOSTS.other4 && f.dport === 443);
    assert.ok(blocked, `the first connect is reported blocked: ${JSON.stringify(rep.flows)}`);
    const allowed = rep.flows.find((f) => f.verdict === 'allowed' && f.dst === HOSTS.net3 && f.dport === 443);
    assert.ok(allowed, JSON.stringify(rep.flows));
    // The probes' connect hook was on the run's cgroup, and their exec probe attached, before bash started.
    assert.equal(rep.attribution.probes, true, rep.attribution.reason);
    for (const f of [blocked, allowed]) {
      assert.equal(f.processes[0]?.comm, 'bash', JSON.stringify(f));
      assert.match(f.processes[0]?.cmdline ?? '', /dev\/tcp/, `the exec was seen: ${JSON.stringify(f)}`);
    }
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
  });

  it('passes the exit code, stdin and signals through', async () => {
    const code = await sluiceRun([], ['sh', '-c', 'exit 7']);
    assert.equal(code.code, 7);
    // Under sudo, the command runs as the user who called it, as it would have run directly.
    const asUser = await w.exec([process.execPath, SLUICE, 'run', '--dns-upstream', HOSTS.dns4, '--', 'id', '-u'], { env: { ...env, SUDO_UID: '65534', SUDO_GID: '65534' } });
    assert.equal(asUser.code, 0, asUser.stderr);
    assert.equal(asUser.stdout.trim(), '65534');
    const asRoot = await sluiceRun([], ['id', '-u']);
    assert.equal(asRoot.stdout.trim(), '0');
    const echo = await sluiceRun([], ['sh', '-c', 'read line; echo "got:$line"'], { input: 'hello\n' });
    assert.equal(echo.code, 0, echo.stderr);
    assert.match(echo.stdout, /^got:hello$/m);
    // SIGTERM to sluice reaches the command; its death by signal is sluice's exit status (128 + 15).
    const child: ChildProcess = spawnRun(['--', 'sleep', '30.0113']);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    await waitUntil(async () => (await leftovers()).tables.length > 0 && (await w.exec(['pgrep', '-f', '^sleep 30.0113$'])).code === 0);
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    assert.equal(await exited, 143, err);
    assert.match(err, /killed by SIGTERM/);
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
    // Ctrl-C: the terminal sends SIGINT to the foreground process group, sluice and the command alike;
    // sluice lets the command decide and outlives it long enough to clean up and report (130 = 128 + 2).
    const child2: ChildProcess = spawnRun(['--', 'sleep', '30.0131']);
    let err2 = '';
    child2.stderr?.on('data', (d: Buffer) => (err2 += d.toString()));
    await waitUntil(async () => (await leftovers()).tables.length > 0 && (await w.exec(['pgrep', '-f', '^sleep 30.0131$'])).code === 0);
    const exited2 = new Promise<number | null>((r) => child2.once('exit', (c) => r(c)));
    process.kill(-(child2.pid as number), 'SIGINT');
    assert.equal(await exited2, 130, err2);
    assert.match(err2, /killed by SIGINT/);
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
  });

  it('root inside the run cannot lift its confinement by flushing every table it can see', async () => {
    const r = await sluiceRun(['--allow', 'api.sluice.test:443/tcp'], ['sh', '-c', `nft flush ruleset; nft list ruleset | wc -l; ${process.execPath} ${PROBE} tcp:${HOSTS.other4}:443 tcp:api.sluice.test:443`]);
    assert.equal(r.code, 0, r.stderr);
    const got = probes(r.stdout);
    assert.deepEqual(got.map((p) => [p.target, p.ok]), [[`tcp:${HOSTS.other4}:443`, false], ['tcp:api.sluice.test:443', true]], r.stdout);
  });

  it('a double-forked, setsid process is still the run\'s: its blocked attempt is named, and it dies with the run', async () => {
    const r = await sluiceRun([], ['sh', '-c', `(setsid ${process.execPath} ${PROBE} tcp:${HOSTS.other4}:8443 > /dev/null &) ; setsid sh -c 'sleep 30.0121 &'; sleep 1.5`]);
    assert.equal(r.code, 0, r.stderr);
    const f = r.report?.flows.find((x) => x.verdict === 'blocked' && x.dport === 8443);
    assert.ok(f, JSON.stringify(r.report?.flows));
    assert.equal(f.processes[0]?.comm, 'node', JSON.stringify(f));
    // The detached sleep outlived the command, not the run.
    await waitUntil(async () => (await w.exec(['pgrep', '-f', '^sleep 30.0121$'])).code !== 0);
  });

  it('a forged source address from inside is dropped, and the run\'s guard answers nobody but the run', async () => {
    // Root in the run adds a second address and sends from it: once translated, a reply would go to that
    // address, and where the host routes it into another run's veth, into that run. Such packets never leave.
    // Counted where the servers are: SYNs to port 8443 (the forged attempt) and 8080 (the control, from the
    // run's own address), both allowed.
    await w.exec(['nft', '-f', '-'], {
      ns: w.world,
      input: 'table inet forged {\n chain in {\n type filter hook input priority 0; policy accept;\n tcp dport 8443 tcp flags syn counter\n tcp dport 8080 tcp flags syn counter\n }\n}\n',
    });
    const syns = async () => [...(await w.exec(['nft', 'list', 'chain', 'inet', 'forged', 'in'], { ns: w.world })).stdout.matchAll(/packets (\d+)/g)].map((m) => Number(m[1]));
    const script = join(w.tmp, 'forge.cjs');
    writeFileSync(
      script,
      `const { execFileSync } = require('child_process');
const net = require('net');
execFileSync('ip', ['addr', 'add', '198.18.255.77/32', 'dev', 'eth0']);
const attempt = (src, port) => new Promise((resolve) => {
  const s = net.connect({ host: '${HOSTS.other4}', port, ...(src ? { localAddress: src } : {}) });
  const t = setTimeout(() => { s.destroy(); resolve('TIMEOUT'); }, 1000);
  s.on('connect', () => { clearTimeout(t); resolve('CONNECTED from ' + s.localAddress); s.destroy(); });
  s.on('error', (e) => { clearTimeout(t); resolve('ERROR ' + e.code); });
});
(async () => {
  console.log('forged ' + (await attempt('198.18.255.77', 8443)));
  console.log('own ' + (await attempt(undefined, 8080)));
})();
`,
    );
    const child: ChildProcess = spawnRun(['--allow', `${HOSTS.other4}:8443/tcp`, '--allow', `${HOSTS.other4}:8080/tcp`, '--', 'sh', '-c', `${process.execPath} ${script}; sleep 30.0141`]);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await waitUntil(async () => /^own /m.test(out));
    assert.match(out, /^forged TIMEOUT$/m, out);
    assert.match(out, /^own CONNECTED from 198\.18\./m, `positive control: a connect from the run's own address passes: ${out}`);
    assert.deepEqual(await syns(), [0, 1], 'no SYN from the forged address reached the world; the control did');
    // While the run lives: its guard's port, from the table, asked from the host itself: no answer.
    const table = (await leftovers()).tables[0]?.split(' ').pop() as string;
    const set = JSON.parse((await w.exec(['nft', '-j', 'list', 'set', 'inet', table, 'run_guard_port'])).stdout) as { nftables: { set?: { elem?: { concat: [string, number] }[] } }[] };
    const port = set.nftables.find((x) => x.set)?.set?.elem?.[0]?.concat[1];
    assert.ok(port, JSON.stringify(set));
    const addr = JSON.parse((await w.exec(['nft', '-j', 'list', 'chain', 'inet', table, 'run_in'])).stdout) as unknown;
    const guard4 = /"198\.18\.(?:19[2-9]|2[0-4][0-9]|25[0-5])\.[0-9]+"/.exec(JSON.stringify(addr))?.[0]?.slice(1, -1);
    assert.ok(guard4, JSON.stringify(addr));
    const q = await w.exec([process.execPath, DNSQ, '--server', guard4, '--port', String(port), '--name', 'api.sluice.test', '--timeout', '1000']);
    assert.match(q.stdout, /timeout|error/i, `the host's own query to the run's guard gets nothing: ${q.stdout}`);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  });

  it('two concurrent runs keep their own policies', async () => {
    const [a, b] = await Promise.all([
      sluiceRun(['--allow', `${HOSTS.other4}:443/tcp`], ['sh', '-c', `sleep 0.3; ${process.execPath} ${PROBE} tcp:${HOSTS.other4}:443 tcp:${HOSTS.net3}:443`]),
      sluiceRun(['--allow', `${HOSTS.net3}:443/tcp`], ['sh', '-c', `sleep 0.3; ${process.execPath} ${PROBE} tcp:${HOSTS.other4}:443 tcp:${HOSTS.net3}:443`]),
    ]);
    assert.deepEqual(probes(a.stdout).map((p) => p.ok), [true, false], a.stdout + a.stderr);
    assert.deepEqual(probes(b.stdout).map((p) => p.ok), [false, true], b.stdout + b.stderr);
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
  });

  it('after a SIGKILL of sluice the run stays confined, and the next run removes what it left', async () => {
    const child: ChildProcess = spawnRun(['--allow', `${HOSTS.net3}:443/tcp`, '--', 'sleep', '30.0117']);
    await waitUntil(async () => (await leftovers()).tables.length > 0 && (await w.exec(['pgrep', '-f', '^sleep 30.0117$'])).code === 0);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const left = await leftovers();
    assert.equal(left.tables.length, 1, 'the table outlives a killed sluice: the run stays confined');
    assert.equal(left.slots.length, 1);
    // The next run (here --cleanup) sees the owner is gone and removes everything, the command left running included.
    const c = await w.exec([process.execPath, SLUICE, 'run', '--cleanup'], { env });
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /removed run [0-9a-f]{8}/);
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
    // The command it left running was killed with it (its own cgroup).
    await waitUntil(async () => (await w.exec(['pgrep', '-f', '^sleep 30.0117$'])).code !== 0);
  });

  it("a reader of sluice's output that goes away (| head) ends the output, not the run: the command finishes and everything is cleaned up", async () => {
    // The trace writes to stderr all through the run; its reader is gone before the first line.
    const before = namespacesOfRuns();
    const child: ChildProcess = spawnRun(['--', 'sleep', '0.3'], { SLUICE_RUN_TRACE: '1' });
    child.stderr?.destroy();
    child.stdout?.destroy();
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    assert.equal(code, 0, "the run exits with the command's status");
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
    assert.deepEqual([...namespacesOfRuns()].filter((n) => !before.has(n)), [], "the run's namespace is gone");
  });

  it('the command is started early but held until its confinement is in place: a SIGKILL of sluice while it is held runs nothing', async () => {
    // The probes made slow to load (5 s): the command's process is made (ip netns exec, the run's cgroup) and waits.
    const marker = join(w.tmp, 'held-ran');
    const child: ChildProcess = spawnRun(['--', 'touch', marker], { SLUICE_RUN_PROBE_DELAY_MS: '5000' });
    const holder = async () => (await w.exec(['pgrep', '-f', `read -r go .* touch ${marker}$`])).stdout.trim();
    await waitUntil(async () => (await leftovers()).tables.length > 0 && (await holder()) !== '');
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    // Its go pipe closed with sluice: the holder exits without running the command.
    await waitUntil(async () => (await holder()) === '');
    await sleep(200);
    assert.equal(existsSync(marker), false, 'the held command never ran');
    const c = await w.exec([process.execPath, SLUICE, 'run', '--cleanup'], { env });
    assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(await leftovers(), { tables: [], links: [], slots: [] });
  });

  it('audit mode blocks nothing and reports what would have been blocked, and --suggest prints a policy for it', async () => {
    const r = await sluiceRun(['--audit', '--suggest', '--allow', 'api.sluice.test:443/tcp'], [process.execPath, PROBE, 'tcp:api.sluice.test:443', `tcp:${HOSTS.other4}:443`, 'tcp:a.cdn.sluice.test:443']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(probes(r.stdout).map((p) => p.ok), [true, true, true], r.stdout);
    const rep = r.report as Report;
    assert.ok(rep.flows.some((f) => f.verdict === 'would-block' && f.dst === HOSTS.other4 && f.dport === 443), JSON.stringify(rep.flows));
    assert.ok(rep.names.some((n) => n.name === 'a.cdn.sluice.test' && n.verdict === 'would-block'), JSON.stringify(rep.names));
    assert.ok(rep.flows.some((f) => f.verdict === 'would-block' && f.dport === 443 && f.names.includes('a.cdn.sluice.test')), JSON.stringify(rep.flows));
    assert.match(r.stderr, /to: \["a\.cdn\.sluice\.test"\]\n {4}ports: \["443\/tcp"\]/);
    assert.match(r.stderr, new RegExp(`to: \\["${HOSTS.other4.replace(/\./g, '\\.')}"\\]\\n {4}ports: \\["443/tcp"\\]`));
  });

  it("a deny rule's own mode wins over the run's, as on the host; scopes are refused", async () => {
    // Enforce run: a deny rule in audit by its own mode records would-block and lets the allow after it judge.
    const gradual = join(w.tmp, 'run-gradual.yaml');
    writeFileSync(
      gradual,
      `rules:\n  - name: watch-net2\n    action: deny\n    mode: audit\n    to: [198.18.2.0/24]\n  - name: hard-net3\n    action: deny\n    mode: enforce\n    to: [${HOSTS.net3}]\n  - name: net2\n    to: [198.18.2.0/24, ${HOSTS.net3}]\n    ports: [443/tcp]\n`,
    );
    const r = await sluiceRun(['--policy', gradual], [process.execPath, PROBE, `tcp:${HOSTS.other4}:443`, `tcp:${HOSTS.net3}:443`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(probes(r.stdout).map((p) => p.ok), [true, false], r.stdout);
    const rep = r.report as Report;
    assert.ok(rep.flows.some((f) => f.verdict === 'would-block' && f.rule === 'watch-net2' && f.dst === HOSTS.other4), JSON.stringify(rep.flows));
    assert.ok(rep.flows.some((f) => f.verdict === 'allowed' && f.rule === 'net2' && f.dst === HOSTS.other4), 'then the allow rule admitted it');
    assert.ok(rep.flows.some((f) => f.verdict === 'blocked' && f.rule === 'hard-net3' && f.dst === HOSTS.net3), JSON.stringify(rep.flows));
    // An --audit run: the deny rule in enforce by its own mode still refuses.
    const a = await sluiceRun(['--audit', '--policy', gradual], [process.execPath, PROBE, `tcp:${HOSTS.net3}:443`, `tcp:${HOSTS.api4}:443`]);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(probes(a.stdout).map((p) => p.ok), [false, true], a.stdout);
    // scopes: name users or services of the host; a run has neither. Refused before anything runs.
    const scoped = join(w.tmp, 'run-scoped.yaml');
    writeFileSync(scoped, 'mode: enforce\nscopes:\n  - name: nobody\n    mode: audit\n    users: [nobody]\nrules:\n  - name: api\n    to: [198.18.1.10]\n');
    const marker = join(w.tmp, 'ran-scoped');
    const s = await sluiceRun(['--policy', scoped], ['touch', marker]);
    assert.equal(s.code, 2, s.stderr);
    assert.match(s.stderr, /scope nobody: `scopes` have no meaning in `sluice run`/);
    assert.equal(existsSync(marker), false, 'the command did not run');
  });

  it('--fail-on-block turns a blocked attempt into exit 1; a refused start runs nothing', async () => {
    const r = await sluiceRun(['--fail-on-block'], [process.execPath, PROBE, `tcp:${HOSTS.other4}:443`]);
    assert.equal(r.code, 1, r.stderr);
    // A bad --allow: a usage error, and the command never runs (it would create the marker).
    const marker = join(w.tmp, 'ran');
    const bad = await sluiceRun(['--allow', '198.18.0.0/33'], ['touch', marker]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.equal(existsSync(marker), false, 'the command did not run');
    // Not root: refused, nothing run.
    const user = await w.exec([process.execPath, SLUICE, 'run', '--', 'touch', marker], { env, uid: 65534 });
    assert.equal(user.code, 1);
    assert.match(user.stderr, /needs root/);
    assert.equal(existsSync(marker), false);
  });
});

async function waitUntil(fn: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await sleep(50);
  }
  throw new Error('timed out waiting');
}
