/** Audit mode's matching of observed DNS replies to the queries this host sent to its resolvers. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeMessage, TYPE, type Message } from '../../src/dns/dns-message.js';
import { PassiveObserver } from '../../src/dns/passive-observer.js';
import type { PacketInfo } from '../../src/net/packet.js';
import { parseAddr } from '../../src/net/ip.js';
import { aMessage } from '../support/dns-records.js';

const ip = (t: string) => parseAddr(t)?.value ?? 0n;
const RESOLVER = '198.18.0.53';
const HOST = '198.18.0.2';

const msg = aMessage;

/** A UDP packet as NFLOG hands it over: here, headers already parsed, payload at offset 0. */
function packet(src: string, sport: number, dst: string, dport: number, m: Message): [PacketInfo, Buffer] {
  return [{ family: 4, proto: 17, src: ip(src), dst: ip(dst), sport, dport, payloadOffset: 0, length: 0 }, encodeMessage(m)];
}

describe('unit: audit mode learns only from replies to queries the host sent', () => {
  const resolvers = [{ family: 4 as const, start: ip(RESOLVER), end: ip(RESOLVER) }];

  it('a reply that answers an observed query (reversed ports, same id and question) is learned from, once', () => {
    const o = new PassiveObserver(resolvers);
    assert.equal(o.observe(...packet(HOST, 40000, RESOLVER, 53, msg(false, 7, 'api.example.com')), 1000), null);
    const reply = packet(RESOLVER, 53, HOST, 40000, msg(true, 7, 'api.example.com', '198.18.1.10'));
    assert.equal(o.observe(...reply, 1010)?.answers.length, 1);
    assert.equal(o.observe(...reply, 1020), null, 'a second copy answers nothing');
    assert.deepEqual({ matched: o.stats.matched, unmatched: o.stats.unmatched }, { matched: 1, unmatched: 1 });
  });

  it("a reply from a server that is not the host's resolver is ignored, even to a query the host sent it", () => {
    const o = new PassiveObserver(resolvers);
    o.observe(...packet(HOST, 40001, '198.18.5.53', 53, msg(false, 8, 'api.example.com')), 1000);
    assert.equal(o.observe(...packet('198.18.5.53', 53, HOST, 40001, msg(true, 8, 'api.example.com', '198.18.2.22')), 1010), null);
    assert.equal(o.stats.untrusted, 1);
    assert.equal(o.waiting, 0, 'queries to other servers are not even remembered');
  });

  it('a reply with the wrong id, port, question (case included) or too late is ignored', () => {
    const o = new PassiveObserver(resolvers, 3000);
    o.observe(...packet(HOST, 40002, RESOLVER, 53, msg(false, 9, 'Api.Example.com')), 1000);
    const bad: [PacketInfo, Buffer][] = [
      packet(RESOLVER, 53, HOST, 40002, msg(true, 10, 'Api.Example.com', '198.18.2.22')),
      packet(RESOLVER, 53, HOST, 40003, msg(true, 9, 'Api.Example.com', '198.18.2.22')),
      packet(RESOLVER, 53, HOST, 40002, msg(true, 9, 'api.example.com', '198.18.2.22')),
      packet(RESOLVER, 53, HOST, 40002, msg(true, 9, 'evil.example.com', '198.18.2.22')),
      packet(RESOLVER, 5353, HOST, 40002, msg(true, 9, 'Api.Example.com', '198.18.2.22')),
    ];
    for (const b of bad) assert.equal(o.observe(...b, 1100), null);
    assert.equal(o.observe(...packet(RESOLVER, 53, HOST, 40002, msg(true, 9, 'Api.Example.com', '198.18.1.10')), 4200), null, 'past the window');
    assert.equal(o.stats.matched, 0);
  });

  it('an unsolicited reply (no query seen) is ignored, and the memory of queries is bounded', () => {
    const o = new PassiveObserver(resolvers);
    assert.equal(o.observe(...packet(RESOLVER, 53, HOST, 40053, msg(true, 7, 'api.example.com', '198.18.2.22')), 1000), null);
    for (let i = 0; i < 70_000; i++) o.observe(...packet(HOST, 1024 + (i % 60000), RESOLVER, 53, msg(false, i & 0xffff, `n${i}.example.com`)), 2000);
    assert.ok(o.waiting <= 65_536);
  });
});

describe("unit: the guard's own lookups seen in audit mode", () => {
  it('a reply to a query the guard sent itself (marked) is neither learned from again nor counted as unmatched', () => {
    const o = new PassiveObserver([{ family: 4, start: ip(RESOLVER), end: ip(RESOLVER) }]);
    o.observe(...packet(HOST, 40010, RESOLVER, 53, msg(false, 11, 'denied.example.com')), 1000, true);
    assert.equal(o.observe(...packet(RESOLVER, 53, HOST, 40010, msg(true, 11, 'denied.example.com', '198.18.2.20')), 1010), null);
    assert.deepEqual({ matched: o.stats.matched, unmatched: o.stats.unmatched }, { matched: 0, unmatched: 0 });
  });
});
