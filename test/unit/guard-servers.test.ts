/** The guard's UDP and TCP listeners, on loopback: what a query waiting for its answer keeps alive. */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { describe, it } from 'node:test';
import { GuardServers } from '../../src/dns/guard-servers.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('unit: GuardServers', () => {
  it('a UDP query that waits keeps only its own bytes (not the receive batch), and its answer reaches its sender', async () => {
    const held: { packet: Buffer; answer: (b: Buffer) => void }[] = [];
    let servers: GuardServers | undefined;
    let port = 0;
    // A free port on both loopbacks: the listeners take one number for 127.0.0.1 and ::1.
    for (let attempt = 0; attempt < 20 && !servers; attempt++) {
      port = 20000 + Math.floor(Math.random() * 40000);
      const s = new GuardServers(port, (packet) => new Promise((resolve) => held.push({ packet, answer: (b) => resolve(b) })));
      try {
        await s.start();
        servers = s;
      } catch {
        await s.stop();
      }
    }
    assert.ok(servers, 'no free port found');
    const client = createSocket('udp4');
    const noise = createSocket('udp4');
    try {
      const got: Buffer[] = [];
      client.on('message', (m) => got.push(m));
      await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
      client.send(Buffer.from('first query'), port, '127.0.0.1');
      for (let i = 0; i < 50 && held.length < 1; i++) await settle(10);
      // Large datagrams from another sender, so batches hold megabytes.
      for (let i = 0; i < 64; i++) noise.send(Buffer.alloc(60_000, i), port, '127.0.0.1');
      for (let i = 0; i < 100 && held.length < 65; i++) await settle(10);
      assert.equal(held.length, 65);
      for (const h of held) assert.ok(h.packet.buffer.byteLength <= 64 * 1024, `a held query keeps ${h.packet.buffer.byteLength} bytes alive`);
      assert.equal(held[0]?.packet.toString(), 'first query');
      held[0]?.answer(Buffer.from('its answer'));
      for (let i = 0; i < 50 && got.length < 1; i++) await settle(10);
      assert.deepEqual(got.map(String), ['its answer']);
      for (const h of held.slice(1)) h.answer(Buffer.alloc(0));
    } finally {
      client.close();
      noise.close();
      await servers.stop();
    }
  });
});

describe('unit: shares of the queries in flight', () => {
  it('one client holding its share is refused while the others still get slots; a slot given back is free again', async () => {
    const { InflightShares } = await import('../../src/dns/inflight-shares.js');
    const s = new InflightShares<number>(8, 3);
    assert.deepEqual([1, 2, 3, 4].map(() => s.take(65534)), [true, true, true, false], 'uid 65534 gets its share of 3');
    assert.equal(s.take(0), true, 'root still gets a slot');
    assert.equal(s.take(1000), true);
    assert.equal(s.overShare, 1);
    s.give(65534);
    assert.equal(s.take(65534), true);
    for (let uid = 1; s.inflight < 8; uid++) s.take(uid);
    assert.equal(s.take(4242), false, 'the total still bounds everything');
    assert.equal(s.overTotal, 1);
    assert.equal(s.holding(65534), 3);
  });
});
