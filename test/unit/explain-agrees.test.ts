/**
 * `explain` and the compiled ruleset must never disagree. For random policies
 * (through the real loader and compiler) and random fully specified packets,
 * the verdict explain gives, and the rule it names, equal what an interpreter
 * of the compiled ruleset decides. Deny rules winning regardless of order is
 * part of this: rules are generated in random order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { DEFAULT_RULE, ENCRYPTED_DNS_RULE, objectNames, parseCounterName, parseLogPrefix, RULE_SCOPE } from '../../src/compile/kernel-names.js';
import type { AddrRange } from '../../src/net/ip.js';
import { parseAddr } from '../../src/net/ip.js';
import { explain } from '../../src/policy/explain.js';
import { interpret, interpretNat, type Packet } from '../support/interpret.js';
import { fakeCgroupId, fakeEnv, policyFrom, FAKE_USERS } from '../support/fixtures.js';

// 1.1.1.1 is on the shipped encrypted-DNS list; 198.18.0.53 is the guard's upstream in the fake host.
const TO = ['198.18.1.10', '198.18.1.0/24', '198.18.2.0/23', '198.18.5.1-198.18.5.9', '2001:db8::10', '2001:db8:1::/48', 'any', '0.0.0.0/0', 'api.example.com', '*.cdn.example.com', '1.1.1.1', '198.18.0.53'];
const PORTS = ['443/tcp', '53', '8000-8100/tcp', 'udp', 'icmp', 'icmpv6', '123/udp', '853', '853/tcp', '67/udp'];
const USERS = ['root', 'www-data', '1001'];
const SERVICES = ['a.service', 'b.service', '/machine.slice/c.scope'];
const IFACES = ['eth0', 'wg*', 'tun0'];

const subset = (pool: string[]) => fc.option(fc.subarray(pool, { minLength: 1 }), { nil: undefined });

const ruleArb = fc
  .record({
    action: fc.constantFrom('allow', 'allow', 'deny'),
    to: subset(TO),
    ports: subset(PORTS),
    users: subset(USERS),
    services: subset(SERVICES),
    interfaces: subset(IFACES),
    // Gradual enforcement: a deny rule's own mode (the loader refuses one on an allow rule).
    mode: fc.constantFrom(undefined, undefined, 'audit', 'enforce'),
  })
  .filter((r) => r.to !== undefined || r.ports !== undefined || r.users !== undefined || r.services !== undefined || r.interfaces !== undefined);

const policyArb = fc.record({
  mode: fc.constantFrom('enforce', 'audit'),
  dflt: fc.constantFrom('deny', 'deny', 'allow'),
  essentials: fc.boolean(),
  // The guard: on, off, or as the rules have it (on when one names a domain); encrypted DNS blocked or not.
  guard: fc.constantFrom('true', 'false', 'default'),
  encrypted: fc.constantFrom('block', 'allow'),
  rules: fc.array(ruleArb, { minLength: 1, maxLength: 5 }),
  // Scopes with the other mode than the policy's: users, or services (a unit, or a cgroup path).
  scopes: fc.array(fc.oneof(fc.record({ users: fc.subarray(['www-data', '1001', '65534'], { minLength: 1 }) }), fc.record({ services: fc.subarray(SERVICES, { minLength: 1 }) })), { maxLength: 2 }),
});

function toYaml(p: { mode: string; dflt: string; essentials: boolean; guard: string; encrypted: string; rules: Record<string, unknown>[]; scopes?: { users?: string[]; services?: string[] }[] }): string {
  const guard = p.guard === 'default' ? [] : [`  guard: ${p.guard}`];
  const lines = [`mode: ${p.mode}`, `default: ${p.dflt}`, `essentials: ${p.essentials}`, 'dns:', ...guard, `  encrypted_dns: ${p.encrypted}`, 'rules:'];
  p.rules.forEach((r, i) => {
    lines.push(`  - name: r${i}`, `    action: ${String(r.action)}`);
    for (const key of ['to', 'ports', 'users', 'services', 'interfaces']) {
      const v = r[key] as string[] | undefined;
      if (v) lines.push(`    ${key}: [${v.map((x) => JSON.stringify(x)).join(', ')}]`);
    }
    if (r.mode !== undefined && r.action === 'deny') lines.push(`    mode: ${String(r.mode)}`);
  });
  // One user or service in one scope only (the loader refuses a second): later scopes drop what earlier ones hold.
  const taken = new Set<string>();
  (p.scopes ?? []).forEach((sc, i) => {
    const key = sc.users ? 'users' : 'services';
    const list = (sc.users ?? sc.services ?? []).filter((x) => !taken.has(x));
    if (list.length === 0) return;
    for (const x of list) taken.add(x);
    if (i === 0 || !lines.includes('scopes:')) lines.push('scopes:');
    lines.push(`  - name: s${i}`, `    mode: ${p.mode === 'enforce' ? 'audit' : 'enforce'}`, `    ${key}: [${list.map((x) => JSON.stringify(x)).join(', ')}]`);
  });
  return `${lines.join('\n')}\n`;
}

// With the built-ins' destinations: DHCP broadcast and the DHCPv6 servers' group, an encrypted-DNS endpoint, the guard's upstream.
const DESTS = ['198.18.1.10', '198.18.1.77', '198.18.2.5', '198.18.3.200', '198.18.5.5', '198.18.9.9', '2001:db8::10', '2001:db8:1::5', '2001:db8:9::1', '255.255.255.255', 'ff02::1:2', 'ff02::2', '1.1.1.1', '198.18.0.53'];

const packetArb = fc.record({
  dest: fc.constantFrom(...DESTS),
  proto: fc.constantFrom('tcp', 'udp', 'udp', 'icmp'),
  // Around the edges of 8000-8100/tcp as well as inside it; DNS, DoT, DHCP and DHCPv6 servers.
  port: fc.constantFrom(443, 53, 8080, 123, 22, 7999, 8000, 8100, 8101, 853, 67, 547),
  // DHCP and DHCPv6 clients' ports, or an ephemeral one.
  sport: fc.constantFrom(68, 546, 40000),
  // An echo request, or (ICMPv6) neighbour discovery, MLD and others.
  icmpType: fc.constantFrom(128, 133, 135, 143, 1),
  // One of this host's own addresses (fib daddr type local): admitted before any rule.
  local: fc.constantFrom(false, false, false, false, true),
  uid: fc.constantFrom(0, 33, 1001, 65534),
  iface: fc.constantFrom('eth0', 'wg0', 'wg1', 'tun0', 'eth1'),
  service: fc.constantFrom('a.service', 'b.service', '/machine.slice/c.scope/worker', 'none'),
});

/** Packets around the built-ins' conditions: their destinations, ports, source ports, users and ICMPv6 types, and near misses of each. */
const builtinPacketArb = fc.record({
  dest: fc.constantFrom('255.255.255.255', 'ff02::1:2', 'ff02::2', '1.1.1.1', '198.18.0.53', '198.18.1.10', '2001:db8::10'),
  proto: fc.constantFrom('tcp', 'udp', 'udp', 'icmp'),
  port: fc.constantFrom(53, 67, 68, 547, 853, 443),
  sport: fc.constantFrom(68, 546, 40000),
  icmpType: fc.constantFrom(128, 133, 135, 143, 1),
  local: fc.constant(false),
  uid: fc.constantFrom(0, 0, 33, 1001),
  iface: fc.constant('eth0'),
  service: fc.constant('none'),
});

type PolicyArb = ReturnType<typeof policyArb.generate>['value'];
interface PacketArb {
  dest: string;
  proto: 'tcp' | 'udp' | 'icmp';
  port: number;
  sport: number;
  icmpType: number;
  local: boolean;
  uid: number;
  iface: string;
  service: string;
}

function cgroupAncestors(service: string): bigint[] {
  if (service === 'none') return [fakeCgroupId('/')];
  const path = service.startsWith('/') ? service : `/system.slice/${service}`;
  const parts = path.split('/').filter(Boolean);
  return [fakeCgroupId('/'), ...parts.map((_, i) => fakeCgroupId(`/${parts.slice(0, i + 1).join('/')}`))];
}

/** The property: explain and the compiled ruleset (nat hook, then filter) agree on every packet. */
function agree(pol: PolicyArb, packets: PacketArb[], learnedDests: string[]): void {
  // Domain rules without the guard are refused by the loader (they could never match).
  fc.pre(pol.guard !== 'false' || !pol.rules.some((r) => r.to?.some((t) => /[a-z]/.test(t) && t !== 'any')));
  const policy = policyFrom(toYaml(pol));
  const env = fakeEnv(policy);
  const { ruleset } = compileRuleset(policy, env);
  // What the DNS guard would have learned for the rules that name domains: the same addresses
  // in the kernel's sets (for the interpreter) and in explain's `learned` (as the CLI reads them).
  const learned = new Map<string, AddrRange[]>();
  for (const rule of policy.rules.filter((r) => r.domains.length > 0)) {
    for (const text of learnedDests) {
      const a = parseAddr(text);
      const set = a && ruleset.sets.find((x) => x.name === objectNames.dnsSet(rule.name, a.family));
      if (!a || !set) continue;
      set.elements.push({ t: 'addr', family: a.family, start: a.value, end: a.value });
      learned.set(rule.name, [...(learned.get(rule.name) ?? []), { family: a.family, start: a.value, end: a.value }]);
    }
  }
  for (const pk of packets) {
    const addr = parseAddr(pk.dest);
    if (!addr) throw new Error('bad test address');
    const proto = pk.proto === 'icmp' ? (addr.family === 4 ? 'icmp' : 'icmpv6') : pk.proto;
    const l4proto = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 }[proto];
    const packet: Packet = {
      family: addr.family,
      daddr: addr.value,
      l4proto,
      ...(proto === 'tcp' || proto === 'udp' ? { dport: pk.port, sport: pk.sport } : { icmpType: addr.family === 4 ? 8 : pk.icmpType }),
      uid: pk.uid,
      oif: 2,
      oifname: pk.iface,
      cgroupAncestors: cgroupAncestors(pk.service),
      ct: 'new',
      daddrLocal: pk.local,
    };
    const kernel = interpret(ruleset, packet);
    const nat = interpretNat(ruleset, packet);
    const ex = explain(
      policy,
      {
        dest: { kind: 'range', range: { family: addr.family, start: addr.value, end: addr.value } },
        proto,
        ...(proto === 'tcp' || proto === 'udp' ? { port: pk.port, sport: pk.sport } : { icmpType: addr.family === 4 ? 8 : pk.icmpType }),
        uid: pk.uid,
        service: pk.service,
        iface: pk.iface,
        learned,
        local: pk.local,
      },
      env,
    );
    const ctx = `\n${toYaml(pol)}packet ${JSON.stringify(pk)} -> nat ${nat}, kernel ${JSON.stringify(kernel)}, explain ${ex.summary}`;
    // A DNS query the nat hook sends to the guard never reaches the filter as addressed.
    assert.equal(ex.verdict === 'redirect', nat === 'redirect', `redirect differs${ctx}`);
    if (nat === 'redirect') continue;
    // Which policy rule decided in the kernel: the log prefix for blocks, the rule counter for allows.
    // A deny rule in audit by its own mode records would-block (scope #rule) and the packet goes on: not a decision.
    const logs = kernel.logs.map(parseLogPrefix);
    const audited = logs.filter((l) => l?.verdict === 'would-block' && l.scope === RULE_SCOPE).map((l) => l?.rule);
    assert.deepEqual(audited, ex.audited.map((a) => a.rule), `would-block records of audit-mode deny rules differ${ctx}`);
    const blockLog = logs.find((l) => (l?.verdict === 'blocked' || l?.verdict === 'would-block') && !(l.verdict === 'would-block' && l.scope === RULE_SCOPE));
    const kernelBlocks = blockLog !== undefined;
    assert.equal(ex.verdict === 'block', kernelBlocks, `verdicts differ${ctx}`);
    if (kernelBlocks) {
      const rule = blockLog?.rule;
      const expected = ex.decidedBy.kind === 'rule' ? ex.decidedBy.rule : ex.decidedBy.kind === 'encrypted-dns' ? ENCRYPTED_DNS_RULE : DEFAULT_RULE;
      assert.equal(rule, expected, `deciding rule differs${ctx}`);
      // Refused or only recorded, and by whose mode: the rule's own, a scope's, or the policy's.
      assert.equal(ex.enforced, kernel.verdict !== 'accept', `enforced differs${ctx}`);
      assert.equal(ex.enforced, blockLog?.verdict === 'blocked', `record's verdict differs${ctx}`);
      assert.equal(ex.scope, blockLog?.scope, `scope differs${ctx}`);
    } else if (kernel.verdict !== 'accept') {
      assert.fail(`not blocked, yet the kernel refuses${ctx}`);
    } else if (ex.decidedBy.kind === 'local' || ex.decidedBy.kind === 'loopback') {
      assert.equal(kernel.verdict, 'accept', `this host's own address${ctx}`);
      assert.ok(!kernel.counters.some((c) => parseCounterName(c)?.kind === 'rule' || parseCounterName(c)?.kind === 'default'), `no rule decides traffic to this host${ctx}`);
    } else if (ex.decidedBy.kind === 'essentials') {
      assert.deepEqual(parseCounterName(kernel.counters.at(-1) ?? ''), { kind: 'essentials' }, `essentials differ${ctx}`);
    } else if (ex.decidedBy.kind === 'rule') {
      assert.deepEqual(parseCounterName(kernel.counters.at(-1) ?? ''), { kind: 'rule', rule: ex.decidedBy.rule }, `deciding rule differs${ctx}`);
    } else {
      assert.deepEqual(parseCounterName(kernel.counters.at(-1) ?? ''), { kind: 'default' }, `default allow differs${ctx}`);
    }
  }
}

describe('unit: explain agrees with the compiled ruleset', () => {
  it('same verdict and same deciding rule for random policies and packets', () => {
    fc.assert(fc.property(policyArb, fc.array(packetArb, { minLength: 1, maxLength: 8 }), fc.array(fc.constantFrom(...DESTS), { maxLength: 3 }), agree), { numRuns: 400 });
  });

  it("the built-ins (DNS redirect, essentials, encrypted DNS): packets drawn around their conditions", () => {
    fc.assert(fc.property(policyArb, fc.array(builtinPacketArb, { minLength: 1, maxLength: 8 }), fc.array(fc.constantFrom(...DESTS), { maxLength: 3 }), agree), { numRuns: 400 });
  });

  it('a user that appears in the fake database resolves to its uid', () => {
    const policy = policyFrom('mode: enforce\nrules:\n  - name: w\n    users: [www-data]\n');
    assert.equal(policy.rules[0]?.users[0]?.uid, FAKE_USERS.get('www-data'));
  });
});
