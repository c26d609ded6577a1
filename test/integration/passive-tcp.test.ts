/**
 * Integration: audit mode observes DNS over TCP (issue 11). The kernel copies
 * TCP port-53 segments to the DNS log group; the daemon reassembles the
 * flow's messages and learns an allowed name's addresses from a reply to a
 * query this host sent its resolver, so the connect that follows is not
 * would-block. A name the policy does not allow, asked over TCP, is recorded
 * as would-block and opens nothing.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { logEvents, sleep, waitFor } from '../support/monitor-helpers.js';
import { HOSTS, ROOT, World } from '../world/world.js';

const DNSQ = join(ROOT, 'dist/test/world/dnsq.js');

const AUDIT = `mode: audit
tamper: alert
dns:
  upstreams: [${HOSTS.dns4}]
  max_addresses_per_answer: 200
  max_addresses_per_name: 200
rules:
  - name: resolver
    to: [${HOSTS.dns4}]
    ports: [53]
  - name: api
    to: [api.sluice.test, many.sluice.test]
    ports: [443/tcp]
`;

interface Answer {
  name: string;
  rcode?: number;
  answers?: string[];
  error?: string;
}

describe('integration: audit mode learns from DNS over TCP', () => {
  let w: World;
  let daemon: ChildProcess;

  const dnsq = async (...args: string[]): Promise<Answer> => {
    const r = await w.exec([process.execPath, DNSQ, '--server', HOSTS.dns4, '--tcp', ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n')[0] ?? '{}') as Answer;
  };

  before(async () => {
    w = await World.create({ dns: true });
    daemon = await w.startDaemon(w.policy(AUDIT, 'audit.yaml'));
  });
  after(async () => {
    await w?.destroy();
  });

  it('a TCP lookup of an allowed name teaches its address: the connect after it is not would-block', async () => {
    const a = await dnsq('--name', 'api.sluice.test');
    assert.equal(a.rcode, 0, JSON.stringify(a));
    assert.deepEqual(a.answers, [HOSTS.api4], 'the resolver answered over TCP');
    // Audit mode learns after the fact (nothing on the packet path waits for the daemon): wait for the set.
    await waitFor('the address learned from the TCP reply', async () => ((await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4'])).includes(HOSTS.api4) ? true : undefined), 5000);
    const learned = (await w.control('dns.learned')) as { address: string; names: string[] }[];
    assert.ok(learned.some((e) => e.address === HOSTS.api4 && e.names.includes('api.sluice.test')), JSON.stringify(learned));

    assert.deepEqual(await w.reach([`tcp:${HOSTS.api4}:443`]), { [`tcp:${HOSTS.api4}:443`]: true });
    // An address no answer taught, as the control: its connect is would-block.
    assert.deepEqual(await w.reach([`tcp:${HOSTS.other4}:443`]), { [`tcp:${HOSTS.other4}:443`]: true }, 'audit mode blocks nothing');
    await waitFor('the control connect recorded', async () => ((await logEvents(w)).some((e) => e.dst === HOSTS.other4 && e.dport === 443) ? true : undefined));
    await sleep(500);
    const events = await logEvents(w);
    assert.ok(events.some((e) => e.dst === HOSTS.other4 && e.dport === 443 && e.verdict === 'would-block'), 'the control is would-block');
    assert.deepEqual(
      events.filter((e) => e.dst === HOSTS.api4 && e.dport === 443 && e.verdict === 'would-block'),
      [],
      'the connect to the address the TCP answer taught is allowed by the api rule',
    );

    // A reply larger than one segment (200 addresses, about 3.3 kB over a 1500-byte MTU): reassembled from several.
    const many = await dnsq('--name', 'many.sluice.test');
    assert.equal(many.answers?.length, 200);
    await waitFor('all 200 addresses of the multi-segment reply', async () => {
      const set = await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4']);
      return set.includes('198.18.10.0') && set.includes('198.18.10.199') ? true : undefined;
    }, 5000);
    // A query written in three pieces (length prefix, then the message in two halves, no Nagle):
    // the kernel sends three segments, which the daemon reassembles before it can match the reply.
    const split = await w.exec([
      process.execPath,
      '-e',
      `const { encodeMessage, decodeMessage } = await import('${ROOT}dist/src/dns/dns-message.js');
       const net = await import('node:net');
       const q = encodeMessage({ id: 4242, flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd: false, rcode: 0 },
         questions: [{ name: 'api.sluice.test', type: 28, class: 1 }], answers: [], authorities: [], additionals: [] });
       const len = Buffer.alloc(2); len.writeUInt16BE(q.length);
       const s = net.connect(53, '${HOSTS.dns4}');
       s.setNoDelay(true);
       const wait = (ms) => new Promise((r) => setTimeout(r, ms));
       s.on('connect', async () => { s.write(len); await wait(100); s.write(q.subarray(0, 10)); await wait(100); s.write(q.subarray(10)); });
       let got = Buffer.alloc(0);
       s.on('data', (d) => { got = Buffer.concat([got, d]); if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) { console.log(JSON.stringify({ rcode: decodeMessage(got.subarray(2)).flags.rcode })); s.end(); } });
       setTimeout(() => process.exit(1), 3000).unref();`,
    ]);
    assert.equal(split.code, 0, split.stderr);
    assert.match(split.stdout, /"rcode":0/);
    // Learned only if the three segments were put back together: the reply matches the whole query.
    await waitFor('the AAAA answer to the split query', async () => ((await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d6'])).includes('2001:db8:1::10') ? true : undefined), 5000);
    type Status = { components: { 'dns-guard': { passive: { tcp: { segments: number; messages: number; givenUp: number } } } } };
    const tcp = ((await w.control('status')) as Status).components['dns-guard'].passive.tcp;
    // Three flows, a query and a reply each: six messages, from more segments than that (the split query).
    assert.ok(tcp.messages >= 6 && tcp.segments >= tcp.messages + 2, JSON.stringify(tcp));
    assert.equal(tcp.givenUp, 0, JSON.stringify(tcp));

    // The unlisted name, over TCP: would-block, observed passively; nothing opened for it.
    const u = await dnsq('--name', 'audit-only.sluice.test');
    assert.deepEqual(u.answers, ['198.18.1.77']);
    const dns = await waitFor('the observed TCP lookups', async () => {
      const r = await w.sluiceJson<{ name: string; verdict: string; transport: string }[]>(['dns', '--limit', '50']);
      return r.json.some((e) => e.name === 'audit-only.sluice.test') ? r.json : undefined;
    });
    assert.ok(dns.some((e) => e.name === 'api.sluice.test' && e.verdict === 'allowed' && e.transport === 'passive'), JSON.stringify(dns));
    assert.ok(dns.some((e) => e.name === 'audit-only.sluice.test' && e.verdict === 'would-block' && e.transport === 'passive'), JSON.stringify(dns));
    assert.doesNotMatch(await w.nft(['list', 'set', 'inet', 'sluice', 'r_api_d4']), /198\.18\.1\.77/);
  });
});
