/**
 * Integration: each kind of match, enforced by the real kernel. For every
 * kind, a connection the policy allows succeeds and one it does not is refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findCgroup2Root } from '../../src/system/cgroups.js';
import { HOSTS, World } from '../world/world.js';

const t = (h: string, port: number) => `tcp:${h.includes(':') ? `[${h}]` : h}:${port}`;
const u = (h: string, port: number) => `udp:${h.includes(':') ? `[${h}]` : h}:${port}`;

describe('integration: enforcement per kind of match', () => {
  let w: World;
  before(async () => {
    w = await World.create();
  });
  after(async () => {
    await w?.destroy();
  });

  it('the world works with no firewall: every host and port answers', async () => {
    const targets = [t(HOSTS.api4, 443), t(HOSTS.api4, 80), t(HOSTS.other4, 443), u(HOSTS.dns4, 53), t(HOSTS.api6, 443), t(HOSTS.tun4, 443)];
    const r = await w.reach(targets);
    for (const target of targets) assert.equal(r[target], true, `${target} should answer without a firewall`);
  });

  it('the ufw recipe: DNS allowed, one API address on 443 only; port 80 and other hosts blocked', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp]
`);
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr);
    const r = await w.probe([u(HOSTS.dns4, 53), t(HOSTS.dns4, 53), t(HOSTS.api4, 443), t(HOSTS.api4, 80), t(HOSTS.other4, 443), u(HOSTS.api4, 53)]);
    const byTarget = Object.fromEntries(r.map((x) => [x.target, x]));
    assert.equal(byTarget[u(HOSTS.dns4, 53)]?.ok, true, 'DNS over UDP is allowed');
    assert.equal(byTarget[t(HOSTS.dns4, 53)]?.ok, true, 'DNS over TCP is allowed');
    assert.equal(byTarget[t(HOSTS.api4, 443)]?.ok, true, 'the API on 443 is allowed');
    assert.equal(byTarget[t(HOSTS.api4, 80)]?.ok, false, 'port 80 on the same host is blocked');
    assert.equal(byTarget[t(HOSTS.api4, 80)]?.error, 'ECONNREFUSED', 'blocked TCP is refused at once (reject with tcp reset)');
    assert.equal(byTarget[t(HOSTS.other4, 443)]?.ok, false, 'another host is blocked');
    assert.equal(byTarget[u(HOSTS.api4, 53)]?.ok, false, 'DNS to a host not listed is blocked');
  });

  it('addresses, CIDRs and a deny rule inside an allowed range', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: net
    to: [198.18.1.0/24, ${HOSTS.net3}]
  - name: metadata
    action: deny
    to: [${HOSTS.meta4}]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const r = await w.reach([t(HOSTS.api4, 80), t(HOSTS.api4b, 8080), t(HOSTS.net3, 22), t(HOSTS.meta4, 80), t(HOSTS.other4, 80)]);
    assert.deepEqual(r, {
      [t(HOSTS.api4, 80)]: true,
      [t(HOSTS.api4b, 8080)]: true,
      [t(HOSTS.net3, 22)]: true,
      [t(HOSTS.meta4, 80)]: false,
      [t(HOSTS.other4, 80)]: false,
    });
  });

  it('ports, port ranges and protocols (a rule with both: its single ports in a hash set, its ranges in an interval set)', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: web
    to: [${HOSTS.api4}]
    ports: [443/tcp, 8000-8100/tcp, 60000-61000/udp]
  - name: ntp
    to: [${HOSTS.other4}]
    ports: [123/udp]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const r = await w.reach([t(HOSTS.api4, 443), t(HOSTS.api4, 80), t(HOSTS.api4, 8080), t(HOSTS.api4, 8443), u(HOSTS.api4, 60500), u(HOSTS.api4, 5000), u(HOSTS.other4, 123), t(HOSTS.other4, 22)]);
    assert.deepEqual(r, {
      [t(HOSTS.api4, 443)]: true,
      [t(HOSTS.api4, 80)]: false,
      [t(HOSTS.api4, 8080)]: true,
      [t(HOSTS.api4, 8443)]: false,
      [u(HOSTS.api4, 60500)]: true,
      [u(HOSTS.api4, 5000)]: false,
      [u(HOSTS.other4, 123)]: true,
      [t(HOSTS.other4, 22)]: false,
    });
  });

  it('icmp: ping allowed to one host, refused to another', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: ping
    to: [${HOSTS.api4}]
    ports: [icmp]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const ok = await w.exec(['ping', '-n', '-c', '1', '-W', '2', HOSTS.api4]);
    const blocked = await w.exec(['ping', '-n', '-c', '1', '-W', '1', HOSTS.other4]);
    assert.equal(ok.code, 0, `ping to the allowed host: ${ok.stdout}${ok.stderr}`);
    assert.notEqual(blocked.code, 0, 'ping to another host is blocked');
    const tcpToAllowed = await w.reach([t(HOSTS.api4, 443)]);
    assert.equal(tcpToAllowed[t(HOSTS.api4, 443)], false, 'icmp does not open TCP');
  });

  it('outgoing interface: allowed out of tun0, not out of eth0', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: vpn
    interfaces: [tun0]
    ports: [443/tcp]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const r = await w.reach([t(HOSTS.tun4, 443), t(HOSTS.api4, 443), t(HOSTS.tun4, 80)]);
    assert.deepEqual(r, { [t(HOSTS.tun4, 443)]: true, [t(HOSTS.api4, 443)]: false, [t(HOSTS.tun4, 80)]: false });
  });

  it('local user: root allowed, uid 65534 refused (and the reverse with a second policy)', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: root-only
    to: [${HOSTS.api4}]
    ports: [443/tcp]
    users: [root]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const asRoot = await w.reach([t(HOSTS.api4, 443)]);
    const asNobody = await w.reach([t(HOSTS.api4, 443)], { uid: 65534 });
    assert.equal(asRoot[t(HOSTS.api4, 443)], true);
    assert.equal(asNobody[t(HOSTS.api4, 443)], false);

    const second = w.policy(`
mode: enforce
rules:
  - name: nobody-only
    to: [${HOSTS.api4}]
    ports: [443/tcp]
    users: [65534]
`);
    assert.equal((await w.sluice(['apply', second])).code, 0);
    assert.equal((await w.reach([t(HOSTS.api4, 443)]))[t(HOSTS.api4, 443)], false);
    assert.equal((await w.reach([t(HOSTS.api4, 443)], { uid: 65534 }))[t(HOSTS.api4, 443)], true);
  });

  // Not systemd itself: PID 1 on the test machines is not systemd, so the test makes the cgroups
  // systemd would make for a unit (SLICE/UNIT.service under the cgroup2 root) and moves sockets'
  // creators into them. What is under test is the match (cgroup path -> id -> `socket cgroupv2`).
  it('a service rule matches sockets made in the unit\'s cgroup (laid out as systemd lays it out), and no other', async () => {
    const root = findCgroup2Root();
    assert.ok(root, 'a cgroup2 mount is required for service matching');
    const unit = `sluice-test-${process.pid}.service`;
    const slice = `${w.id}.slice`;
    const svcDir = w.makeCgroup(root, `${slice}/${unit}`);
    const otherDir = w.makeCgroup(root, `${slice}/other-${process.pid}.service`);
    const policy = w.policy(`
mode: enforce
rules:
  - name: svc
    to: [${HOSTS.api4}]
    ports: [443/tcp]
    services: [${unit}]
`);
    const applied = await w.sluice(['apply', policy]);
    assert.equal(applied.code, 0, applied.stderr + applied.stdout);
    assert.doesNotMatch(applied.stdout, /no cgroup/);
    assert.equal((await w.reach([t(HOSTS.api4, 443)], { cgroup: svcDir }))[t(HOSTS.api4, 443)], true, 'a socket of the service connects');
    assert.equal((await w.reach([t(HOSTS.api4, 443)], { cgroup: otherDir }))[t(HOSTS.api4, 443)], false, 'another service is refused');
    assert.equal((await w.reach([t(HOSTS.api4, 443)]))[t(HOSTS.api4, 443)], false, 'a process outside any service is refused');
  });

  it('IPv6: address allowed on 443, another IPv6 host and port refused', async () => {
    const policy = w.policy(`
mode: enforce
rules:
  - name: v6
    to: [${HOSTS.api6}, 2001:db8:3::/48]
    ports: [443/tcp, 53/udp]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const r = await w.reach([t(HOSTS.api6, 443), t(HOSTS.api6, 80), t(HOSTS.other6, 443), t(HOSTS.api4, 443)]);
    assert.deepEqual(r, { [t(HOSTS.api6, 443)]: true, [t(HOSTS.api6, 80)]: false, [t(HOSTS.other6, 443)]: false, [t(HOSTS.api4, 443)]: false });
  });

  it('essentials let a root DHCP client reach DHCP servers only: not other hosts, not other users, whatever the privileged-port sysctl says', async () => {
    await w.exec(['nft', '-f', '-'], {
      ns: w.world,
      input: `table inet dhcpseen { chain in { type filter hook input priority 0; policy accept;
        udp dport 67 counter comment "v4"; udp dport 547 counter comment "v6"; }; }`,
    });
    const policy = w.policy(`mode: enforce\nrules:\n  - name: web\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const send = async (uid: number | undefined, host: string, sport: number, dport: number) => {
      const r = await w.exec(
        [process.execPath, '-e', `const s = require('dgram').createSocket('${host.includes(':') ? 'udp6' : 'udp4'}'); s.on('error', (e) => { console.log(e.code); process.exit(0); }); s.bind(${sport}, () => { if (${JSON.stringify(host)} === '255.255.255.255') s.setBroadcast(true); s.send('x', ${dport}, '${host}', (e) => { console.log(e ? e.code : 'sent'); setTimeout(() => process.exit(0), 100); }); });`],
        uid === undefined ? {} : { uid },
      );
      return r.stdout.trim();
    };
    const seen = async () => {
      const out = JSON.parse((await w.exec(['nft', '-j', 'list', 'table', 'inet', 'dhcpseen'], { ns: w.world })).stdout) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] };
      return Object.fromEntries(out.nftables.flatMap((i) => (i.rule?.comment ? [[i.rule.comment, i.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0]] : [])));
    };
    const essentials = async () => (JSON.parse((await w.exec(['nft', '-j', 'list', 'counter', 'inet', 'sluice', 'essentials'])).stdout) as { nftables: { counter?: { packets: number } }[] }).nftables.find((i) => i.counter)?.counter?.packets ?? -1;
    await send(65534, HOSTS.other4, 40067, 67);
    await send(65534, HOSTS.other6, 40547, 547);
    assert.deepEqual(await seen(), { v4: 0, v6: 0 }, 'an unprivileged sender on the DHCP ports is blocked');
    // Root, from the client port, to a host that is not a DHCP server: an exfiltration channel, not DHCP.
    await send(undefined, HOSTS.other4, 68, 67);
    await send(undefined, HOSTS.other6, 546, 547);
    assert.deepEqual(await seen(), { v4: 0, v6: 0 }, 'the DHCP ports lead only to DHCP servers');
    // Where the kernel no longer enforces privileged ports (Docker sets this in containers), any user can bind 68.
    await w.exec(['sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=0']);
    try {
      assert.equal(await send(65534, HOSTS.other4, 68, 67), 'EPERM', 'uid 65534 bound port 68 and was refused by the firewall');
      assert.equal(await send(65534, '255.255.255.255', 68, 67), 'EPERM', 'not even to the broadcast address: DHCP is root\'s');
      assert.equal(await send(65534, 'ff02::1:2%eth0', 546, 547), 'EPERM');
    } finally {
      await w.exec(['sysctl', '-qw', 'net.ipv4.ip_unprivileged_port_start=1024']);
    }
    assert.deepEqual(await seen(), { v4: 0, v6: 0 });
    // A real DHCP client (root, client port) reaches the servers: broadcast, and the DHCPv6 group.
    const ess = await essentials();
    assert.equal(await send(undefined, '255.255.255.255', 68, 67), 'sent');
    assert.equal(await send(undefined, 'ff02::1:2%eth0', 546, 547), 'sent');
    // ('sent' already means accepted: everything else here is refused with EPERM. Neighbour discovery
    // and MLD count in the same counter, so it can only grow by more.)
    assert.ok((await essentials()) >= ess + 2, 'both let out by the essentials');
  });

  it('a local address DNAT-ed to a remote one is judged by where the packet really goes', async () => {
    await w.nft(['-f', '-'], `table ip docker_like { chain out { type nat hook output priority -100; policy accept; ip daddr ${HOSTS.client4} tcp dport 8443 dnat to ${HOSTS.other4}:443; }; }`);
    try {
      const policy = w.policy(`mode: enforce\nrules:\n  - name: web\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n`);
      assert.equal((await w.sluice(['apply', policy])).code, 0);
      const r = await w.reach([`tcp:${HOSTS.client4}:8443`, `tcp:${HOSTS.other4}:443`], { uid: 65534, timeoutMs: 800 });
      assert.deepEqual(r, { [`tcp:${HOSTS.client4}:8443`]: false, [`tcp:${HOSTS.other4}:443`]: false });
    } finally {
      await w.nft(['delete', 'table', 'ip', 'docker_like']);
    }
  });

  it('audit mode blocks nothing and counts what would be blocked', async () => {
    const policy = w.policy(`
mode: audit
rules:
  - name: api
    to: [${HOSTS.api4}]
    ports: [443/tcp]
`);
    assert.equal((await w.sluice(['apply', policy])).code, 0);
    const r = await w.reach([t(HOSTS.api4, 443), t(HOSTS.api4, 80), t(HOSTS.other4, 22)]);
    assert.deepEqual(r, { [t(HOSTS.api4, 443)]: true, [t(HOSTS.api4, 80)]: true, [t(HOSTS.other4, 22)]: true });
    const st = await w.sluiceJson<{ counters: { counter: string; packets: string | null }[] }>(['status']);
    const byName = Object.fromEntries(st.json.counters.map((c) => [c.counter, Number(c.packets)]));
    assert.ok((byName.default ?? 0) >= 2, `two would-block flows counted, got ${JSON.stringify(byName)}`);
    assert.ok((byName.r_api ?? 0) >= 1, 'the allowed flow is counted on its rule');
  });
});
