/**
 * Flows tied to the policy and identity that admitted them, checked on the
 * compiled IR with the interpreter: a new flow is marked with the epoch and
 * its rule's identity group; a later packet of it skips the rules only in
 * that epoch and with that identity; anything else is judged as new.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { epochBits, flowMarkLayout, flowTag, nextEpoch, rulesetFlowMark, withEpoch } from '../../src/compile/flow-mark.js';
import type { Ruleset } from '../../src/compile/ruleset.js';
import { PolicyError } from '../../src/errors.js';
import { sameRuleset } from '../../src/netfilter/compare-ruleset.js';
import { dhcpLeaseServers } from '../../src/system/dhcp-leases.js';
import { fakeEnv, policyFrom } from '../support/fixtures.js';
import { interpret, type Packet } from '../support/interpret.js';

const API = 0xc612010an; // 198.18.1.10
const OTHER = 0xc6120214n; // 198.18.2.20

const POLICY = `mode: enforce
rules:
  - name: root-api
    users: [root]
    to: [198.18.1.10]
    ports: [443/tcp]
  - name: any-other
    to: [198.18.2.20]
    ports: [443/tcp]
  - name: no-nobody
    action: deny
    users: [nobody]
    to: [198.18.0.0/15]
`;

function compile(yaml: string, epoch = 1): Ruleset {
  const p = policyFrom(yaml);
  return compileRuleset(p, { ...fakeEnv(p), epoch }).ruleset;
}

const packet = (over: Partial<Packet>): Packet => ({ family: 4, daddr: API, l4proto: 6, dport: 443, uid: 0, oif: 2, oifname: 'eth0', cgroupAncestors: [], ct: 'new', ...over });

describe('unit: flow marks', () => {
  it('a new flow is marked with the epoch and its rule\'s identity group; its packets pass only with that identity', () => {
    const rs = compile(POLICY, 7);
    const layout = flowMarkLayout(0xffff0000);
    const first = packet({});
    assert.equal(interpret(rs, first).verdict, 'accept');
    assert.equal(first.ctMark, flowTag(layout, 7, 1), 'root-api is identity group 1');
    // Later packets of the flow: the same identity passes without the rules...
    const later = packet({ ct: 'established', ctMark: first.ctMark });
    const out = interpret(rs, later);
    assert.equal(out.verdict, 'accept');
    assert.deepEqual(out.counters, [], 'no rule counter: the flows chain accepted it');
    // ...another uid on the same flow (a reused UDP source port) is judged as new, and refused.
    assert.equal(interpret(rs, packet({ ct: 'established', ctMark: first.ctMark, uid: 1001 })).verdict, 'reject');
    // A flow admitted by a rule without identity conditions is group 0.
    const other = packet({ daddr: OTHER, uid: 1001 });
    assert.equal(interpret(rs, other).verdict, 'accept');
    assert.equal(other.ctMark, flowTag(layout, 7, 0));
  });

  it('a deny rule with an identity is checked on every packet: a flow admitted for one user is not borrowed by a denied one', () => {
    const rs = compile(POLICY);
    const other = packet({ daddr: OTHER });
    interpret(rs, other);
    const borrowed = interpret(rs, packet({ daddr: OTHER, uid: 65534, ct: 'established', ctMark: other.ctMark }));
    assert.equal(borrowed.verdict, 'reject');
    assert.ok(borrowed.counters.includes('r_no-nobody'), 'refused by the deny rule');
  });

  it('flows of another epoch, of audit mode, or unmarked are judged again, and re-marked when allowed', () => {
    const rs1 = compile(POLICY, 1);
    const flow = packet({});
    interpret(rs1, flow);
    const rs2 = withEpoch(rs1, 2);
    const again = packet({ ct: 'established', ctMark: flow.ctMark });
    const out = interpret(rs2, again);
    assert.equal(out.verdict, 'accept');
    assert.ok(out.counters.includes('r_root-api'), 'judged by the rules again');
    assert.equal(again.ctMark, flowTag(flowMarkLayout(0xffff0000), 2, 1), 're-marked in the new epoch');
    // Audit mode marks everything it lets through, would-block included, as group 0...
    const audit = compile(POLICY.replace('mode: enforce', 'mode: audit'), 1);
    const blocked = packet({ daddr: 0xc6120909n });
    assert.equal(interpret(audit, blocked).verdict, 'accept');
    assert.equal(blocked.ctMark, flowTag(flowMarkLayout(0xffff0000), 1, 0));
    // ...and enforce mode (a new epoch) judges those flows again.
    assert.equal(interpret(rs2, packet({ daddr: 0xc6120909n, ct: 'established', ctMark: blocked.ctMark })).verdict, 'reject');
    assert.equal(interpret(rs2, packet({ daddr: 0xc6120909n, ct: 'established' })).verdict, 'reject', 'an unmarked flow (from before Sluice) too');
  });

  it('Sluice writes only its own bits of the ct mark, and reads only them', () => {
    const rs = compile(POLICY);
    const flow = packet({ ctMark: 0x0000ca6c });
    interpret(rs, flow);
    assert.equal((flow.ctMark ?? 0) & 0xffff, 0xca6c, 'the low bits (wg-quick\'s, say) are kept');
    assert.equal(interpret(rs, packet({ ct: 'established', ctMark: flow.ctMark })).counters.length, 0, 'and ignored when matching');
    const low = compile(`${POLICY}flows:\n  ct_mark_mask: 0x0000ffff\n`);
    const f2 = packet({ ctMark: 0xabcd0000 });
    interpret(low, f2);
    assert.equal((f2.ctMark ?? 0) >>> 16, 0xabcd);
  });

  it('withEpoch moves every tag and the comment and nothing else; epochs run 1..255', () => {
    const rs = compile(POLICY, 3);
    assert.deepEqual(rulesetFlowMark(rs)?.epoch, 3);
    const moved = withEpoch(rs, 200);
    assert.equal(rulesetFlowMark(moved)?.epoch, 200);
    assert.ok(!sameRuleset(moved, { ruleset: rs, anomalies: [] }));
    assert.ok(sameRuleset(withEpoch(moved, 3), { ruleset: rs, anomalies: [] }), 'and back exactly');
    assert.deepEqual(compile(POLICY, 200), moved, 'the same as compiling in that epoch');
    assert.deepEqual([nextEpoch(undefined), nextEpoch(1), nextEpoch(254), nextEpoch(255), nextEpoch(0)], [1, 2, 255, 1, 1]);
    assert.equal(epochBits(flowMarkLayout(0xffff0000)), 0xff000000);
  });

  it('flows: settings are validated with their position', () => {
    const bad = (yaml: string, re: RegExp) => {
      try {
        policyFrom(`${POLICY}${yaml}`);
      } catch (err) {
        assert.ok(err instanceof PolicyError);
        assert.match(err.issues.map((i) => `${i.line}:${i.column}: ${i.message}`).join('\n'), re);
        return;
      }
      assert.fail(`accepted: ${yaml}`);
    };
    bad('flows:\n  ct_mark_mask: 0xff00\n', /15:17: ct_mark_mask must be 16 contiguous bits .*0xff00/);
    bad('flows:\n  ct_mark_mask: 0xf0f0f0f0\n', /contiguous/);
    bad('flows:\n  replies: [icmp]\n', /replies are limited by local TCP or UDP port: "icmp"/);
    bad('flows:\n  replies: []\n', /15:12/);
    bad('flows:\n  replys: any\n', /unknown key "replys" \(did you mean replies\?\)/);
    const ok = policyFrom(`${POLICY}flows:\n  replies: [22/tcp, 443]\n`);
    assert.deepEqual(ok.flows.replies, [
      { proto: 'tcp', from: 22, to: 22 },
      { proto: 'tcp', from: 443, to: 443 },
      { proto: 'udp', from: 443, to: 443 },
    ]);
  });

  it('flows.replies: answers to inbound flows leave only from the listed ports (ICMP always); other packets are judged by the rules', () => {
    const rs = compile(`${POLICY}flows:\n  replies: [22/tcp]\n`);
    const reply = (over: Partial<Packet>) => packet({ ct: 'established', ctDirection: 1, daddr: 0xc6120909n, ...over });
    const sel = rs.chains.find((c) => c.name === 'output')?.rules.find((r) => r.comment?.includes('from the listed ports'));
    assert.ok(sel, 'the reply rule is there');
    // The interpreter does not model source ports: check the rule's shape instead, and that a reply is otherwise judged by the rules.
    assert.ok(sel.stmts.some((s) => s.k === 'lookup' && s.sel === 'meta l4proto . th sport' && s.set === 'reply_ports'));
    assert.equal(interpret(rs, reply({ l4proto: 17, dport: 5353 })).verdict, 'reject', 'a UDP reply from an unlisted port to a host no rule allows is refused');
    assert.equal(interpret(rs, reply({ l4proto: 1, dport: undefined })).verdict, 'accept', 'ICMP replies (to a ping) pass');
    const anyReplies = compile(POLICY);
    assert.equal(interpret(anyReplies, reply({ l4proto: 17, dport: 5353 })).verdict, 'accept', 'by default any reply passes, as with every host firewall');
  });
});

describe('unit: DHCP lease servers', () => {
  const root = mkdtempSync(join(tmpdir(), 'sluice-leases-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('reads networkd, NetworkManager and dhclient leases; ignores anything that is not a plain IPv4 server address', () => {
    mkdirSync(join(root, 'run/systemd/netif/leases'), { recursive: true });
    mkdirSync(join(root, 'var/lib/dhcp'), { recursive: true });
    mkdirSync(join(root, 'var/lib/NetworkManager'), { recursive: true });
    writeFileSync(join(root, 'run/systemd/netif/leases/2'), 'ADDRESS=198.18.0.2\nSERVER_ADDRESS=198.18.0.1\n');
    writeFileSync(join(root, 'run/systemd/netif/leases/notanindex'), 'SERVER_ADDRESS=198.18.0.99\n');
    writeFileSync(join(root, 'var/lib/NetworkManager/internal-abc-eth0.lease'), 'SERVER_ADDRESS=198.18.0.3\n');
    writeFileSync(
      join(root, 'var/lib/dhcp/dhclient.eth0.leases'),
      'lease {\n  option dhcp-server-identifier 198.18.0.4;\n}\nlease {\n  option dhcp-server-identifier 198.18.0.4;\n  option dhcp-server-identifier 999.1.1.1;\n  option dhcp-server-identifier 255.255.255.255;\n  option dhcp-server-identifier 198.18.0.5; evil;\n}\n',
    );
    const found = dhcpLeaseServers(root).map((a) => a.start).sort();
    assert.deepEqual(found, [0xc6120001n, 0xc6120003n, 0xc6120004n]);
    assert.deepEqual(dhcpLeaseServers(join(root, 'nothing-here')), []);
  });

  it('the compiled DHCP essentials allow root to broadcast and to the lease servers only', () => {
    const p = policyFrom(POLICY);
    const rs = compileRuleset(p, { ...fakeEnv(p), dhcpServers: [{ family: 4, start: 0xc6120001n, end: 0xc6120001n }] }).ruleset;
    const servers = rs.sets.find((s) => s.name === 'dhcp_servers4')?.elements.map((e) => (e.t === 'addr' ? e.start : -1n));
    assert.deepEqual(servers?.sort(), [0xc6120001n, 0xffffffffn]);
    const dhcp = rs.chains.find((c) => c.name === 'output')?.rules.find((r) => r.comment === 'essentials: DHCP');
    assert.ok(dhcp?.stmts.some((s) => s.k === 'cmp' && s.sel === 'meta skuid' && s.value === 0), 'root only');
  });
});

describe('unit: forged sources', () => {
  it('a user packet from an address that is not this host is dropped, new or as a reply, in enforce and audit mode alike', () => {
    for (const mode of ['enforce', 'audit']) {
      const rs = compile(POLICY.replace('mode: enforce', `mode: ${mode}`));
      const forged = interpret(rs, packet({ uid: 1001, saddrForeign: true, daddrLocal: true }));
      assert.equal(forged.verdict, 'drop', `${mode}: a forged flow to a local address`);
      assert.deepEqual(forged.logs, ['sluice:B:#spoofed-source '], 'recorded as blocked, whatever the mode');
      assert.equal(interpret(rs, packet({ uid: 1001, saddrForeign: true, ct: 'established', ctDirection: 1 })).verdict, 'drop', `${mode}: a forged reply`);
      assert.equal(interpret(rs, packet({ uid: 0, saddrForeign: true, daddrLocal: true })).verdict, 'accept', `${mode}: root may (transparent proxies)`);
      assert.equal(interpret(rs, packet({ uid: 1001, daddrLocal: true })).verdict, 'accept', `${mode}: a user's own address to this host`);
    }
  });
});

describe('unit: flows the kernel finishes', () => {
  it('a TCP flow admitted for an identity: ownerless packets (after close(), TIME_WAIT) pass, another owner is judged again', () => {
    const rs = compile(POLICY);
    const first = packet({});
    interpret(rs, first);
    const closing = interpret(rs, packet({ ct: 'established', ctMark: first.ctMark, ownerless: true }));
    assert.equal(closing.verdict, 'accept', 'the data and FIN queued at close() leave');
    assert.deepEqual(closing.logs, [], 'and no false blocked event');
    assert.equal(interpret(rs, packet({ ct: 'established', ctMark: first.ctMark, uid: 1001 })).verdict, 'reject', 'another owner still is refused');
  });
});
