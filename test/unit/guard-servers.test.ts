/** The guard's UDP and TCP listeners, on loopback: what a query waiting for its answer keeps alive. */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { GuardServers, type Handle, type TcpLimits } from '../../src/dns/guard-servers.js';

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

/** GuardServers on a free port of both loopbacks. */
async function startServers(handle: Handle, tcp: Partial<TcpLimits> = {}): Promise<{ servers: GuardServers; port: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const s = new GuardServers(port, handle, 0, { tcp });
    try {
      await s.start();
      return { servers: s, port };
    } catch {
      await s.stop();
    }
  }
  throw new Error('no free port found');
}

const framed = (body: string) => {
  const b = Buffer.from(body);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
};

/** A TCP client that collects framed answers and notes when the server closed it. */
async function tcpClient(port: number): Promise<{ sock: Socket; answers: string[]; closed: () => boolean }> {
  const sock = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const answers: string[] = [];
  let buf = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(buf.subarray(2, 2 + buf.readUInt16BE(0)).toString());
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  sock.on('error', () => undefined);
  sock.on('close', () => (closed = true));
  return { sock, answers, closed: () => closed };
}

/** Polls `cond` every 20 ms until it holds or `ms` passed; returns whether it held. */
async function within(ms: number, cond: () => boolean): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await settle(20);
  return cond();
}

const FOREVER = 600_000;

describe('unit: GuardServers over TCP (RFC 7766), and what bounds a TCP client', () => {
  it('a query split across segments, and three pipelined in one segment, are each answered', async () => {
    const { servers, port } = await startServers(async (p) => Buffer.from(`re:${p.toString()}`));
    const c = await tcpClient(port);
    try {
      const one = framed('split-query');
      c.sock.write(one.subarray(0, 1));
      await settle(50);
      c.sock.write(one.subarray(1, 5));
      await settle(50);
      c.sock.write(one.subarray(5));
      assert.ok(await within(2000, () => c.answers.length === 1), 'the split query is answered');
      c.sock.write(Buffer.concat([framed('a'), framed('b'), framed('c')]));
      assert.ok(await within(2000, () => c.answers.length === 4));
      assert.deepEqual(c.answers.sort(), ['re:a', 're:b', 're:c', 're:split-query']);
      assert.equal(c.closed(), false, 'the connection stays open for more');
    } finally {
      c.sock.destroy();
      await servers.stop();
    }
  });

  it('beyond the connection ceiling a new connection is closed at once, and counted; the ones inside keep working', async () => {
    const { servers, port } = await startServers(async (p) => p, { maxConnections: 2, firstQueryMs: FOREVER, idleMs: FOREVER, lifetimeMs: FOREVER });
    const clients = [await tcpClient(port), await tcpClient(port)];
    try {
      const third = await tcpClient(port);
      clients.push(third);
      assert.ok(await within(2000, () => third.closed()), 'the third connection is closed');
      assert.equal(servers.stats.tcpRejected, 1);
      clients[0]?.sock.write(framed('still'));
      assert.ok(await within(2000, () => clients[0]?.answers[0] === 'still'));
    } finally {
      for (const c of clients) c.sock.destroy();
      await servers.stop();
    }
  });

  it('a client that never completes a first query is closed at the first-query deadline, though it trickles a byte at a time', async () => {
    const { servers, port } = await startServers(async (p) => p, { firstQueryMs: 300, idleMs: FOREVER, lifetimeMs: FOREVER });
    const silent = await tcpClient(port);
    const trickler = await tcpClient(port);
    const body = framed('x'.repeat(200));
    let sent = 0;
    const drip = setInterval(() => {
      if (sent < body.length && !trickler.closed()) trickler.sock.write(body.subarray(sent, ++sent));
    }, 50);
    try {
      assert.ok(await within(5000, () => silent.closed()), 'the silent client is closed');
      assert.ok(await within(5000, () => trickler.closed()), 'the trickling client is closed');
      assert.ok(sent < body.length, 'before its query was whole');
    } finally {
      clearInterval(drip);
      silent.sock.destroy();
      trickler.sock.destroy();
      await servers.stop();
    }
  });

  it('a client gone quiet after its query is closed at the idle deadline', async () => {
    const { servers, port } = await startServers(async (p) => p, { firstQueryMs: FOREVER, idleMs: 300, lifetimeMs: FOREVER });
    const c = await tcpClient(port);
    try {
      c.sock.write(framed('q'));
      assert.ok(await within(2000, () => c.answers.length === 1));
      assert.ok(await within(5000, () => c.closed()), 'closed once idle');
    } finally {
      c.sock.destroy();
      await servers.stop();
    }
  });

  it('a busy client that never goes idle is closed at the lifetime', async () => {
    const { servers, port } = await startServers(async (p) => p, { firstQueryMs: FOREVER, idleMs: FOREVER, lifetimeMs: 500 });
    const c = await tcpClient(port);
    const busy = setInterval(() => {
      if (!c.closed()) c.sock.write(framed('again'));
    }, 50);
    try {
      assert.ok(await within(5000, () => c.closed()), 'closed at the end of its life');
      assert.ok(c.answers.length >= 2, 'it was answered meanwhile');
    } finally {
      clearInterval(busy);
      c.sock.destroy();
      await servers.stop();
    }
  });

  it('one query more than the pipeline allows closes the connection; the queries beyond it are never handled', async () => {
    const handled: string[] = [];
    const { servers, port } = await startServers((p) => {
      handled.push(p.toString());
      return new Promise(() => undefined); // never answered: the first two stay in flight
    }, { pipeline: 2, firstQueryMs: FOREVER, idleMs: FOREVER, lifetimeMs: FOREVER });
    const c = await tcpClient(port);
    try {
      c.sock.write(Buffer.concat([framed('1'), framed('2'), framed('3'), framed('4')]));
      assert.ok(await within(2000, () => c.closed()), 'closed');
      assert.deepEqual(handled, ['1', '2']);
    } finally {
      c.sock.destroy();
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
