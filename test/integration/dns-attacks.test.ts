/**
 * Integration: attacks on "DNS answers cannot open what the policy does not
 * allow", each written as the attack, against the real kernel. A hostile
 * upstream (test/world/hostile-dns.ts) on 198.18.5.53 serves crafted
 * answers; NSD on 198.18.0.53 serves the test zone with a CNAME into a
 * denied name; an unprivileged local user (uid 65534) reads /proc/net/udp,
 * floods the guard, and runs a port-53 server of its own.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { testZone } from '../world/dns-server.js';
import { HOSTS, must, ROOT, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');
const HOSTILE = '198.18.5.53';
const NOBODY = 65534;

interface Answer {
  name: string;
  rcode?: number;
  tc?: boolean;
  answers?: string[];
  ede?: { code: number; text: string }[];
  connect?: string;
  error?: string;
}

interface Logged {
  transport: string;
  sport: number;
  id: number;
  name: string;
  type: number;
  cd: boolean;
}

/** What the hostile upstream serves. */
const SCRIPT = {
  names: {
    'api.example.test': { records: [{ type: 'A', addr: HOSTS.api4 }] },
    '*.ok.example.test': { records: [{ type: 'A', addr: HOSTS.api4b, ttl: 5 }] },
    'lower.example.test': { lowerQuestion: true, records: [{ type: 'A', addr: '198.18.1.12' }] },
    'cd.example.test': { records: [{ type: 'A', addr: '198.18.1.13' }] },
    '*.huge.example.test': { many: { count: 4000, base: '198.18.64.0' } },
    // 16 x 4,000 + 1,536 = 65,536: exactly what fills a set.
    '*.fill.example.test': { many: { count: 1536, base: '198.20.0.0' } },
    '*.slow.example.test': { silent: true },
    'svc.example.test': {
      records: [{ type: 'HTTPS', priority: 1, target: '.', ipv4hint: ['127.0.0.1', '169.254.169.254', HOSTS.client4, HOSTS.api4], ipv6hint: ['::1', HOSTS.api6] }],
    },
    'self.example.test': { records: [{ type: 'A', addr: HOSTS.client4 }, { type: 'A', addr: '198.18.1.14' }] },
    // The attacker's own server, in audit mode: an allowed name pointed where the attacker likes.
    'api.sluice.test': { records: [{ type: 'A', addr: '198.18.2.22' }] },
  },
};

/** The test zone, plus a CNAME from an allowed name into a denied one, and one into a wildcard-denied one. */
const ZONE = `${testZone()}alias 300 IN CNAME denied\ndenied 300 IN A 198.18.2.20\nalias2 300 IN CNAME x.tracker\nx.tracker 300 IN A 198.18.2.21\n`;

const HOSTILE_POLICY = `mode: enforce
dns:
  upstreams: [${HOSTILE}]
rules:
  - name: web
    to: [api.example.test, "*.ok.example.test", lower.example.test, cd.example.test, "*.huge.example.test", "*.fill.example.test",
         "*.slow.example.test", svc.example.test, self.example.test]
    ports: [443/tcp]
`;

describe('integration: attacks on the DNS guard', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  const hostileLog = () => join(w.tmp, 'hostile.log');

  const startDaemon = async (yaml: string, name: string) => {
    // Each policy starts from nothing learned: no saved state, no table to carry addresses from.
    rmSync(join(w.stateDir, 'learned.json'), { force: true });
    await w.sluice(['off']);
    const policy = w.policy(yaml, name);
    // The daemon runs on what is applied (a policy argument counts only on a state directory's first start).
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
  };
  const stopDaemon = async () => {
    const d = daemon;
    daemon = undefined;
    if (!d || d.exitCode !== null) return;
    const exited = new Promise((r) => d.once('exit', r));
    d.kill('SIGTERM');
    await exited;
  };
  const q = async (args: string[], opts: { uid?: number } = {}): Promise<Answer[]> => {
    const r = await w.exec([process.execPath, DNSQ, ...args], opts.uid !== undefined ? { uid: opts.uid } : {});
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Answer);
  };
  const one = async (args: string[], opts: { uid?: number } = {}) => (await q(args, opts))[0] as Answer;
  const logged = (): Logged[] =>
    existsSync(hostileLog())
      ? readFileSync(hostileLog(), 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Logged)
      : [];
  const setElements = async (set: string): Promise<string[]> => {
    const r = await w.exec(['nft', '-j', 'list', 'set', 'inet', 'sluice', set]);
    if (r.code !== 0) throw new Error(`nft list set ${set}: ${r.stderr}`);
    const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: (string | { elem: { val: string } })[] } }[] };
    const elems = doc.nftables.find((x) => x.set)?.set?.elem ?? [];
    return elems.map((e) => (typeof e === 'string' ? e : e.elem.val));
  };
  const guardStatus = async () =>
    ((await w.control('status')) as { components: { 'dns-guard': Record<string, Record<string, number> | null> } }).components['dns-guard'];
  const until = async (what: string, check: () => Promise<boolean>, ms = 5000) => {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
      await sleep(100);
    }
  };

  before(async () => {
    w = await World.create({ dns: true, dnsZone: ZONE });
    for (const r of ['198.18.1.0/24', '198.18.2.0/24', '198.18.64.0/18']) await w.addLocalRange(r);
    await must(['ip', '-n', w.world, 'addr', 'add', `${HOSTILE}/32`, 'dev', 'lo']);
    writeFileSync(join(w.tmp, 'hostile.json'), JSON.stringify(SCRIPT));
    await w.spawnReady(w.world, [process.execPath, join(ROOT, 'dist/test/world/hostile-dns.js'), '--addrs', HOSTILE, '--script', join(w.tmp, 'hostile.json'), '--log', hostileLog()]);
  });
  after(async () => {
    await stopDaemon();
    await w?.destroy();
  });

  describe('spoofing the upstream', () => {
    before(() => startDaemon(HOSTILE_POLICY, 'hostile.yaml'));
    after(() => stopDaemon());

    it('an unprivileged user reading /proc/net/udp never sees the source port a later query of the guard leaves from', async () => {
      // The observer, as uid 65534: before each of 40 queries, every UDP port of the namespace (what any
      // local user can read), then the query itself, answered before the next round.
      const r = await w.exec(
        [
          process.execPath,
          '-e',
          `const { readFileSync } = await import('node:fs');
           const { encodeMessage } = await import('${ROOT}dist/src/dns/dns-message.js');
           const s = (await import('node:dgram')).createSocket('udp4');
           await new Promise((r) => s.bind(0, r));
           for (let i = 0; i < 40; i++) {
             const seen = [];
             for (const f of ['/proc/net/udp', '/proc/net/udp6'])
               for (const line of readFileSync(f, 'utf8').split('\\n').slice(1)) {
                 const local = line.trim().split(/\\s+/)[1];
                 if (local) seen.push(parseInt(local.split(':')[1], 16));
               }
             const answered = new Promise((r) => s.once('message', r));
             s.send(encodeMessage({ id: i, flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
               questions: [{ name: 'p' + i + '.ok.example.test', type: 1, class: 1 }], answers: [], authorities: [], additionals: [] }), 53, '${HOSTILE}');
             await answered;
             console.log(JSON.stringify({ name: 'p' + i + '.ok.example.test', seen }));
           }
           s.close();`,
        ],
        { uid: NOBODY },
      );
      assert.equal(r.code, 0, r.stderr);
      const rounds = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; seen: number[] });
      assert.equal(rounds.length, 40);
      const reused: { query: string; port: number }[] = [];
      for (const round of rounds) {
        const sent = logged().filter((l) => l.name.toLowerCase() === round.name);
        assert.equal(sent.length, 1, `the upstream saw ${round.name} once`);
        const port = (sent[0] as Logged).sport;
        if (round.seen.includes(port)) reused.push({ query: round.name, port });
      }
      assert.deepEqual(reused, [], 'a query left from a port that was already listed before it was asked');
    });

    it('the name goes upstream in random case, and a reply that does not repeat that case exactly is refused and counted', async () => {
      assert.equal((await q(['--repeat-names', 'case{i}.ok.example.test', '--count', '8'])).length, 8);
      const spellings = logged()
        .filter((l) => /^case\d+\.ok\.example\.test$/i.test(l.name))
        .map((l) => l.name);
      assert.equal(spellings.length, 8);
      assert.ok(spellings.some((s) => /[A-Z]/.test(s)), `some letters upper case: ${spellings.join(' ')}`);
      assert.equal(new Set(spellings.map((s) => s.replace(/\d+/, ''))).size > 1, true, 'not the same spelling each time');
      // This upstream answers with the question in lower case: what a forger who did not see the query would send.
      const a = await one(['--name', 'lower.example.test', '--timeout', '8000']);
      assert.equal(a.rcode, 2, `SERVFAIL, not the answer: ${JSON.stringify(a)}`);
      assert.ok(((await guardStatus()).upstream?.caseMismatches ?? 0) >= 1, 'counted');
    });

    it("a program that happens to reuse the source port of one of the guard's finished queries is still answered by the guard", async () => {
      // With a fresh port per batch the guard leaves many finished flows in conntrack; they are kept
      // in a zone of their own, so a client's query on the same 4-tuple is a new flow, redirected as usual.
      assert.equal((await one(['--name', 'zone.ok.example.test'])).rcode, 0);
      const port = logged().find((l) => l.name.toLowerCase() === 'zone.ok.example.test')?.sport;
      assert.ok(port);
      const a = await one(['--server', HOSTILE, '--sport', String(port), '--name', 'zone2.ok.example.test', '--timeout', '1500'], { uid: NOBODY });
      assert.equal(a.rcode, 0, `answered, not dropped as the guard's flow: ${JSON.stringify(a)}`);
      assert.ok(logged().some((l) => l.name.toLowerCase() === 'zone2.ok.example.test' && l.sport !== port), 'by the guard, from a port of its own');
    });

    it("a client's CD bit (checking disabled) never reaches the upstream", async () => {
      const a = await one(['--name', 'cd.example.test', '--cd', '--edns', '1232']);
      assert.equal(a.rcode, 0);
      const sent = logged().filter((l) => l.name.toLowerCase() === 'cd.example.test');
      assert.ok(sent.length >= 1);
      assert.deepEqual(
        sent.map((l) => l.cd),
        sent.map(() => false),
      );
    });
  });

  describe('CNAME chains through denied names, and the kernel half of a domain deny', () => {
    const POLICY = `mode: enforce
dns:
  upstreams: [198.18.0.53]
rules:
  - name: web
    to: [alias.sluice.test, alias2.sluice.test, api.sluice.test]
    ports: [443/tcp]
  - name: lan
    to: [198.18.2.0/24]
    ports: [443/tcp]
  - name: no-denied
    action: deny
    to: [denied.sluice.test, "*.tracker.sluice.test"]
`;
    before(() => startDaemon(POLICY, 'chain.yaml'));
    after(() => stopDaemon());

    it("a denied name's address is in its deny set without anyone asking: a broad address rule does not reach it", async () => {
      await until('the guard resolved denied.sluice.test itself', async () => (await setElements('r_no-denied_d4')).includes('198.18.2.20'));
      const reach = await w.reach(['tcp:198.18.2.20:443', 'tcp:198.18.2.30:443'], { timeoutMs: 800 });
      assert.deepEqual(reach, { 'tcp:198.18.2.20:443': false, 'tcp:198.18.2.30:443': true }, 'the lan rule still allows the rest of 198.18.2.0/24');
    });

    it('a CNAME from an allowed name to a denied one is refused whole, with an EDE naming the denied name', async () => {
      const a = await one(['--name', 'alias.sluice.test', '--edns', '1232', '--connect', '443']);
      assert.equal(a.rcode, 3, JSON.stringify(a));
      assert.deepEqual(a.answers, []);
      assert.equal(a.ede?.[0]?.code, 15);
      assert.match(a.ede?.[0]?.text ?? '', /alias\.sluice\.test leads to denied\.sluice\.test is denied by rule no-denied/);
      assert.doesNotMatch((await setElements('r_web_d4')).join(' '), /198\.18\.2\.20/, 'the allow rule opened nothing');
    });

    it('a CNAME into a name only a wildcard deny matches is refused, and its address joins the deny set as it is seen', async () => {
      assert.deepEqual(await w.reach(['tcp:198.18.2.21:443'], { timeoutMs: 800 }), { 'tcp:198.18.2.21:443': true }, 'before: the lan rule reaches it');
      const a = await one(['--name', 'alias2.sluice.test', '--edns', '1232']);
      assert.equal(a.rcode, 3);
      assert.match(a.ede?.[0]?.text ?? '', /x\.tracker\.sluice\.test is denied by rule no-denied/);
      assert.ok((await setElements('r_no-denied_d4')).includes('198.18.2.21'));
      assert.deepEqual(await w.reach(['tcp:198.18.2.21:443'], { timeoutMs: 800 }), { 'tcp:198.18.2.21:443': false }, 'after: the deny holds in the kernel');
    });
  });

  describe('budgets: huge answers and floods', () => {
    after(() => stopDaemon());

    it('a hostile upstream serving answers of 4,000 addresses cannot fill the rule set: only the per-answer limit opens, and a legitimate name still resolves and connects', async () => {
      await startDaemon(HOSTILE_POLICY, 'budget.yaml');
      try {
        const huge: Answer[] = [];
        for (let i = 0; i < 16; i++) huge.push(await one(['--name', `h${i}.huge.example.test`, '--edns', '1232']));
        huge.push(await one(['--name', 'last.fill.example.test', '--edns', '1232']));
        const legit = await one(['--name', 'api.example.test', '--connect', '443']);
        assert.equal(legit.connect, 'ok', JSON.stringify(legit));
        assert.deepEqual(
          huge.map((a) => [a.rcode, a.answers?.length]),
          huge.map(() => [0, 32]),
          'each huge answer was answered with the 32 addresses it opened',
        );
        assert.equal((await setElements('r_web_d4')).length, 17 * 32 + 1);
      } finally {
        await stopDaemon();
      }
    });

    it('with the limits raised, 17 answers of 4,000 addresses overflow the 65,536-element set: the least recently answered make room, and a legitimate name still resolves and connects', async () => {
      await startDaemon(HOSTILE_POLICY.replace('  upstreams:', '  max_addresses_per_answer: 4096\n  max_addresses_per_name: 4096\n  upstreams:'), 'budget-raised.yaml');
      try {
        const huge: Answer[] = [];
        for (let i = 0; i < 17; i++) huge.push(await one(['--name', `r${i}.huge.example.test`, '--tcp']));
        const legit = await one(['--name', 'api.example.test', '--connect', '443']);
        assert.equal(legit.connect, 'ok', JSON.stringify(legit));
        assert.deepEqual(
          huge.map((a) => [a.rcode, a.answers?.length]),
          huge.map(() => [0, 4000]),
          'every huge answer was answered whole (room was made for each)',
        );
        const last = huge[16];
        const inSet = new Set(await setElements('r_web_d4'));
        assert.ok(inSet.size <= 65_536 && inSet.size > 60_000, `the set is full, not over: ${inSet.size}`);
        for (const a of [last?.answers?.[0], last?.answers?.[3999], HOSTS.api4]) assert.ok(a && inSet.has(a), `${a} (answered last) is open`);
        assert.ok(((await guardStatus()).guard?.evicted ?? 0) >= 17 * 4000 + 1 - 65_536);
      } finally {
        await stopDaemon();
      }
    });

    it('one unprivileged user flooding the guard with queries that never get answered cannot starve another user', async () => {
      await startDaemon(HOSTILE_POLICY, 'flood.yaml');
      try {
        // 5,000 queries for names whose upstream never answers: each holds a slot for the whole timeout.
        const flood = w.spawnIn(
          w.client,
          [
            process.execPath,
            '-e',
            `const { encodeMessage } = await import('${ROOT}dist/src/dns/dns-message.js');
             const s = (await import('node:dgram')).createSocket('udp4');
             let n = 0;
             const next = () => {
               if (n >= 5000) { console.log('sent'); setTimeout(() => s.close(), 8000); return; }
               const m = { id: n & 0xffff, flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
                 questions: [{ name: 'f' + n + '.slow.example.test', type: 1, class: 1 }], answers: [], authorities: [], additionals: [] };
               n++;
               s.send(encodeMessage(m), 53, '${HOSTILE}', next);
             };
             next();`,
          ],
          { uid: NOBODY },
        );
        await new Promise<void>((resolve, reject) => {
          flood.stdout?.on('data', (d: Buffer) => d.toString().includes('sent') && resolve());
          flood.once('exit', (code) => reject(new Error(`the flood exited early (${code})`)));
        });
        const legit = await one(['--name', 'api.example.test', '--connect', '443', '--timeout', '2000']);
        assert.equal(legit.connect, 'ok', `root's query was answered while the flood held its slots: ${JSON.stringify(legit)}`);
        const servers = (await guardStatus()).servers;
        assert.ok((servers?.overShare ?? 0) > 0, `the flood met its share: ${JSON.stringify(servers)}`);
        flood.kill('SIGKILL');
      } finally {
        await stopDaemon();
      }
    });
  });

  describe('SVCB/HTTPS hints and the host itself as rebinding targets', () => {
    before(() => startDaemon(HOSTILE_POLICY, 'hints.yaml'));
    after(() => stopDaemon());

    it('HTTPS hints at loopback, cloud metadata and this host are stripped; a public hint is opened like an A answer', async () => {
      assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4}:443`]: false }, 'closed before');
      const a = await one(['--name', 'svc.example.test', '--type', 'HTTPS', '--edns', '1232']);
      assert.equal(a.rcode, 0);
      assert.deepEqual(a.answers, [`SVCB 1 . 4=${HOSTS.api4} 6=${HOSTS.api6}`]);
      assert.equal(a.ede?.[0]?.code, 17);
      assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`, `tcp:[${HOSTS.api6}]:443`], { timeoutMs: 800 }), { [`tcp:${HOSTS.api4}:443`]: true, [`tcp:[${HOSTS.api6}]:443`]: true }, 'opened by the hint');
    });

    it("an A answer at one of this host's own addresses is dropped", async () => {
      const a = await one(['--name', 'self.example.test', '--edns', '1232']);
      assert.deepEqual(a.answers, ['198.18.1.14']);
      assert.match(a.ede?.[0]?.text ?? '', /dropped 1 address/);
    });
  });

  describe('audit mode learns only from replies to queries the host sent to its resolvers', () => {
    const AUDIT = `mode: audit
dns:
  upstreams: [198.18.0.53]
rules:
  - name: api
    to: [api.sluice.test]
    ports: [443/tcp]
`;
    before(() => startDaemon(AUDIT, 'audit.yaml'));
    after(() => stopDaemon());

    it("an unprivileged user's own port-53 server answering an allowed name teaches the daemon nothing", async () => {
      // The attack: ask a server the user controls (not the host's resolver); its reply is a conntrack-established reply from port 53.
      const forged = await one(['--server', HOSTILE, '--name', 'api.sluice.test'], { uid: NOBODY });
      assert.deepEqual(forged.answers, ['198.18.2.22'], 'the attacker got its answer');
      // The control: the host's resolver answering the same name is learned.
      const real = await one(['--name', 'api.sluice.test'], { uid: NOBODY });
      assert.deepEqual(real.answers, [HOSTS.api4]);
      await until('the real answer was learned', async () => (await setElements('r_api_d4')).includes(HOSTS.api4));
      assert.ok(!(await setElements('r_api_d4')).includes('198.18.2.22'), 'the forged address is not in the set');
      const learned = (await w.control('dns.learned')) as { address: string; names: string[] }[];
      assert.equal(learned.find((l) => l.address === '198.18.2.22'), undefined, 'nor named');
      const passive = (await guardStatus()).passive;
      assert.ok((passive?.untrusted ?? 0) >= 1, `counted: ${JSON.stringify(passive)}`);
      assert.ok((passive?.matched ?? 0) >= 1);
    });

    it('the same over TCP: the user\'s own server is not followed; the resolver\'s TCP answer is learned', async () => {
      await w.nft(['flush', 'set', 'inet', 'sluice', 'r_api_d4']);
      const forged = await one(['--server', HOSTILE, '--name', 'api.sluice.test', '--tcp'], { uid: NOBODY });
      assert.deepEqual(forged.answers, ['198.18.2.22'], 'the attacker got its answer, over TCP');
      const real = await one(['--name', 'api.sluice.test', '--tcp'], { uid: NOBODY });
      assert.deepEqual(real.answers, [HOSTS.api4]);
      await until('the real TCP answer was learned', async () => (await setElements('r_api_d4')).includes(HOSTS.api4));
      assert.ok(!(await setElements('r_api_d4')).includes('198.18.2.22'), 'the forged address is not in the set');
      const learned = (await w.control('dns.learned')) as { address: string; names: string[] }[];
      assert.equal(learned.find((l) => l.address === '198.18.2.22'), undefined, 'nor named');
    });
  });
});
