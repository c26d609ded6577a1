/** Batched UDP sockets (recvmmsg/sendmmsg through the native addon), on loopback only. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressBytes, peerAddress, UdpBatchSocket, type Peer } from '../../src/net/udp-batch.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('unit: UdpBatchSocket', () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`${host}: every datagram arrives once, whole, in order, from the right port, beyond one batch and one send buffer`, async () => {
      const got: { data: Buffer; from: Peer; truncated: boolean }[] = [];
      const rx = UdpBatchSocket.open(host, 0, (data, from, truncated) => got.push({ data: Buffer.from(data), from: { ...from, addr: Buffer.from(from.addr) }, truncated }), { rcvbufBytes: 8 << 20 });
      const tx = UdpBatchSocket.open(host, 0, () => undefined);
      try {
        assert.ok(rx.port > 0 && tx.port > 0 && rx.port !== tx.port);
        const to: Peer = { family: rx.family, addr: addressBytes(host).bytes, port: rx.port };
        // 300 datagrams of growing size (up to ~9 KB): more than one recvmmsg batch (64), and
        // together more than the 256 KiB send queue, so it is flushed while queuing.
        const sent = Array.from({ length: 300 }, (_, i) => Buffer.alloc(1 + i * 30, i & 0xff));
        for (const d of sent) tx.send(d, to);
        for (let i = 0; i < 100 && got.length < sent.length; i++) await settle(20);
        assert.equal(got.length, sent.length);
        got.forEach((g, i) => {
          assert.deepEqual(g.data, sent[i], `datagram ${i}`);
          assert.equal(g.truncated, false);
          assert.equal(g.from.port, tx.port);
          assert.equal(peerAddress(g.from), host);
        });
        assert.equal(tx.stats.sent, 300);
        assert.equal(tx.stats.sendFailed, 0);
        assert.equal(rx.stats.received, 300);
      } finally {
        rx.close();
        tx.close();
      }
    });
  }

  it('a port in use is refused with EADDRINUSE, and nothing shares a port', () => {
    const a = UdpBatchSocket.open('127.0.0.1', 0, () => undefined);
    try {
      assert.throws(() => UdpBatchSocket.open('127.0.0.1', a.port, () => undefined), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE');
    } finally {
      a.close();
    }
  });

  it('peerAddress gives the text of any address, remembered or not (past its memo of 4,096 IPv4 addresses too)', () => {
    const v4 = (n: number): Peer => ({ family: 4, addr: Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]), port: 53 });
    for (let i = 0; i < 5000; i++) {
      const n = (0xc6120000 + i * 7) >>> 0;
      const want = `198.18.${(n >>> 8) & 255}.${n & 255}`;
      assert.equal(peerAddress(v4(n)), want);
      assert.equal(peerAddress(v4(n)), want);
    }
    assert.equal(peerAddress({ family: 6, addr: Buffer.from('20010db8000000000000000000000001', 'hex'), port: 53 }), '2001:db8::1');
  });

  it('refuses text that is not an address', () => {
    assert.throws(() => UdpBatchSocket.open('localhost', 0, () => undefined), /not an IP address/);
  });
});
