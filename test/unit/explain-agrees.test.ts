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
import { DEFAULT_RULE, objectNames, parseCounterName, parseLogPrefix } from '../../src/compile/kernel-names.js';
import type { AddrRange } from '../../src/net/ip.js';
import { parseAddr } from '../../src/net/ip.js';
import { explain } from '../../src/policy/explain.js';
import { interpret, type Packet } from '../support/interpret.js';
import { fakeCgroupId, fakeEnv, policyFrom, FAKE_USERS } from '../support/fixtures.js';

const TO = ['198.18.1.10', '198.18.1.0/24', '198.18.2.0/23', '198.18.5.1-198.18.5.9', '2001:db8::10', '2001:db8:1::/48', 'any', 'api.example.com', '*.cdn.example.com'];
const PORTS = ['443/tcp', '53', '8000-8100/tcp', 'udp', 'icmp', 'icmpv6', '123/udp'];
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
  })
  .filter((r) => r.to !== undefined || r.ports !== undefined || r.users !== undefined || r.services !== undefined || r.interfaces !== undefined);

const policyArb = fc.record({
  mode: fc.constantFrom('enforce', 'audit'),
  dflt: fc.constantFrom('deny', 'deny', 'allow'),
  rules: fc.array(ruleArb, { minLength: 1, maxLength: 5 }),
});

function toYaml(p: { mode: string; dflt: string; rules: Record<string, unknown>[] }): string {
  const lines = [`mode: ${p.mode}`, `default: ${p.dflt}`, 'rules:'];
  p.rules.forEach((r, i) => {
    lines.push(`  - name: r${i}`, `    action: ${String(r.action)}`);
    for (const key of ['to', 'ports', 'users', 'services', 'interfaces']) {
      const v = r[key] as string[] | undefined;
      if (v) lines.push(`    ${key}: [${v.map((x) => JSON.stringify(x)).join(', ')}]`);
    }
  });
  return `${lines.join('\n')}\n`;
}

const DESTS = ['198.18.1.10', '198.18.1.77', '198.18.2.5', '198.18.3.200', '198.18.5.5', '198.18.9.9', '2001:db8::10', '2001:db8:1::5', '2001:db8:9::1'];

const packetArb = fc.record({
  dest: fc.constantFrom(...DESTS),
  proto: fc.constantFrom('tcp', 'udp', 'icmp'),
  // Around the edges of 8000-8100/tcp as well as inside it.
  port: fc.constantFrom(443, 53, 8080, 123, 22, 7999, 8000, 8100, 8101),
  // One of this host's own addresses (fib daddr type local): admitted before any rule.
  local: fc.constantFrom(false, false, false, false, true),
  uid: fc.constantFrom(0, 33, 1001, 65534),
  iface: fc.constantFrom('eth0', 'wg0', 'wg1', 'tun0', 'eth1'),
  service: fc.constantFrom('a.service', 'b.service', '/machine.slice/c.scope/worker', 'none'),
});

function cgroupAncestors(service: string): bigint[] {
  if (service === 'none') return [fakeCgroupId('/')];
  const path = service.startsWith('/') ? service : `/system.slice/${service}`;
  const parts = path.split('/').filter(Boolean);
  return [fakeCgroupId('/'), ...parts.map((_, i) => fakeCgroupId(`/${parts.slice(0, i + 1).join('/')}`))];
}

describe('unit: explain agrees with the compiled ruleset', () => {
  it('same verdict and same deciding rule for random policies and packets', () => {
    fc.assert(
      fc.property(policyArb, fc.array(packetArb, { minLength: 1, maxLength: 8 }), fc.array(fc.constantFrom(...DESTS), { maxLength: 3 }), (pol, packets, learnedDests) => {
        const policy = policyFrom(toYaml(pol));
        const { ruleset } = compileRuleset(policy, fakeEnv(policy));
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
            ...(proto === 'tcp' || proto === 'udp' ? { dport: pk.port } : { icmpType: addr.family === 4 ? 8 : 128 }),
            uid: pk.uid,
            oif: 2,
            oifname: pk.iface,
            cgroupAncestors: cgroupAncestors(pk.service),
            ct: 'new',
            daddrLocal: pk.local,
          };
          const kernel = interpret(ruleset, packet);
          const ex = explain(policy, {
            dest: { kind: 'range', range: { family: addr.family, start: addr.value, end: addr.value } },
            proto,
            ...(proto === 'tcp' || proto === 'udp' ? { port: pk.port } : {}),
            uid: pk.uid,
            service: pk.service,
            iface: pk.iface,
            learned,
            local: pk.local,
          });
          const ctx = `\n${toYaml(pol)}packet ${JSON.stringify(pk)} -> kernel ${JSON.stringify(kernel)}, explain ${ex.summary}`;
          // Which policy rule decided in the kernel: the log prefix for blocks, the rule counter for allows.
          const blockLog = kernel.logs.map(parseLogPrefix).find((l) => l?.verdict === 'blocked' || l?.verdict === 'would-block');
          const kernelBlocks = policy.mode === 'enforce' ? kernel.verdict !== 'accept' : blockLog !== undefined;
          assert.equal(ex.verdict === 'block', kernelBlocks, `verdicts differ${ctx}`);
          if (kernelBlocks) {
            const rule = blockLog?.rule;
            const expected = ex.decidedBy.kind === 'rule' ? ex.decidedBy.rule : DEFAULT_RULE;
            assert.equal(rule, expected, `deciding rule differs${ctx}`);
          } else if (ex.decidedBy.kind === 'local' || ex.decidedBy.kind === 'loopback') {
            assert.equal(kernel.verdict, 'accept', `this host's own address${ctx}`);
            assert.ok(!kernel.counters.some((c) => parseCounterName(c)?.kind === 'rule' || parseCounterName(c)?.kind === 'default'), `no rule decides traffic to this host${ctx}`);
          } else if (ex.decidedBy.kind === 'rule') {
            assert.deepEqual(parseCounterName(kernel.counters.at(-1) ?? ''), { kind: 'rule', rule: ex.decidedBy.rule }, `deciding rule differs${ctx}`);
          } else {
            assert.deepEqual(parseCounterName(kernel.counters.at(-1) ?? ''), { kind: 'default' }, `default allow differs${ctx}`);
          }
        }
      }),
      { numRuns: 400 },
    );
  });

  it('a user that appears in the fake database resolves to its uid', () => {
    const policy = policyFrom('mode: enforce\nrules:\n  - name: w\n    users: [www-data]\n');
    assert.equal(policy.rules[0]?.users[0]?.uid, FAKE_USERS.get('www-data'));
  });
});
