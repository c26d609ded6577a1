/**
 * The guard's upstream client against a fake upstream on loopback: what a
 * spoofer would have to guess (ports that are never reused, ids, the case of
 * every letter), and what is never sent (the client's CD bit).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { decodeMessage, encodeMessage, TYPE, type Message } from '../../src/dns/dns-message.js';
import { randomCase, UpstreamClient } from '../../src/dns/upstream.js';

interface Seen {
  port: number;
  msg: Message;
}

/** A fake resolver: records every query; answers as `mode` says. */
class FakeUpstream {
  readonly seen: Seen[] = [];
  mode: 'echo' | 'lowercase-first' | 'lowercase-only' | 'silent' = 'echo';
  private sock: Socket = createSocket('udp4');
  port = 0;

  async start(): Promise<void> {
    this.sock.on('message', (buf, rinfo) => {
      const q = decodeMessage(buf);
      this.seen.push({ port: rinfo.port, msg: q });
      const question = q.questions[0];
      if (!question || this.mode === 'silent') return;
      const answer = (name: string) =>
        encodeMessage({
          id: q.id,
          flags: { qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
          questions: [{ ...question, name }],
          answers: [{ name, type: TYPE.A, class: 1, ttl: 60, data: { kind: 'a', addr: 0xc6120a01n } }],
          authorities: [],
          additionals: [],
        });
      // A forgery that guessed the port and id but not the case of the name, then (maybe) the real answer.
      if (this.mode !== 'echo') this.sock.send(answer(question.name.toLowerCase()), rinfo.port, rinfo.address);
      if (this.mode !== 'lowercase-only') this.sock.send(answer(question.name), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', () => r()));
    this.port = this.sock.address().port;
  }

  close(): void {
    this.sock.close();
  }
}

const upstreamAt = (port: number, timeoutMs = 1000) => new UpstreamClient([{ family: 4, start: 0x7f000001n, end: 0x7f000001n }], { mark: 0, port, timeoutMs });
const q = (name: string) => ({ name, type: TYPE.A, class: 1 });

describe('unit: upstream client against spoofing', () => {
  const fake = new FakeUpstream();
  before(() => fake.start());
  after(() => fake.close());

  it("each turn's queries leave from a fresh socket, which closes when they are answered: a port is never used again", async () => {
    const u = upstreamAt(fake.port);
    try {
      fake.seen.length = 0;
      await u.query(q('a.example.com'), { dnssecOk: false });
      await Promise.all([u.query(q('b.example.com'), { dnssecOk: false }), u.query(q('c.example.com'), { dnssecOk: false })]);
      await u.query(q('d.example.com'), { dnssecOk: false });
      const ports = fake.seen.map((s) => s.port);
      assert.equal(ports.length, 4);
      assert.equal(ports[1], ports[2], 'the queries of one turn share a socket');
      assert.equal(new Set([ports[0], ports[1], ports[3]]).size, 3, 'each turn its own');
      assert.equal(u.openSockets, 0, 'answered: every socket closed');
      assert.equal(u.stats.sockets, 3);
    } finally {
      u.close();
    }
  });

  it('an observer who lists the open ports before each query never sees the port that query leaves from', async () => {
    const u = upstreamAt(fake.port);
    try {
      fake.seen.length = 0;
      const seenBefore = new Set<number>();
      for (let i = 0; i < 50; i++) {
        for (const p of u.openPorts) seenBefore.add(p);
        await u.query(q(`n${i}.example.com`), { dnssecOk: false });
      }
      const used = fake.seen.map((s) => s.port);
      assert.equal(used.length, 50);
      assert.deepEqual(used.filter((p) => seenBefore.has(p)), []);
    } finally {
      u.close();
    }
  });

  it('the name goes out in random case; a reply repeating it in another case is refused and counted, the exact echo is accepted', async () => {
    const u = upstreamAt(fake.port);
    try {
      fake.seen.length = 0;
      fake.mode = 'lowercase-first';
      const a = await u.query(q('Www.Some-Long-Name.example.com'), { dnssecOk: false });
      assert.equal(u.stats.caseMismatches, 1, 'the lower-case forgery was refused');
      assert.equal(a.questions[0]?.name, 'Www.Some-Long-Name.example.com', "the answer comes back in the client's spelling");
      assert.equal(a.answers[0]?.name, 'Www.Some-Long-Name.example.com');
      const sent = fake.seen[0]?.msg.questions[0]?.name ?? '';
      assert.equal(sent.toLowerCase(), 'www.some-long-name.example.com');
      fake.mode = 'lowercase-only';
      await assert.rejects(u.query(q('only.example.com'), { dnssecOk: false }), /timed out/, 'no exact echo: no answer');
      assert.ok(u.stats.caseMismatches >= 2);
    } finally {
      fake.mode = 'echo';
      u.close();
    }
  });

  it('the CD bit is never set upstream; DO is passed on', async () => {
    const u = upstreamAt(fake.port);
    try {
      fake.seen.length = 0;
      await u.query(q('cd.example.com'), { dnssecOk: true });
      const m = fake.seen[0]?.msg;
      assert.equal(m?.flags.cd, false);
      assert.equal(m?.edns?.dnssecOk, true);
    } finally {
      u.close();
    }
  });

  it('identical questions in flight share one upstream query (no birthday attack from many queries for one name)', async () => {
    const u = upstreamAt(fake.port);
    try {
      fake.seen.length = 0;
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => u.query(q(i % 2 ? 'same.example.com' : 'SAME.example.com'), { dnssecOk: false })));
      assert.equal(answers.length, 50);
      assert.equal(fake.seen.length, 1);
      assert.equal(u.stats.coalesced, 49);
      await u.query(q('same.example.com'), { dnssecOk: false });
      assert.equal(fake.seen.length, 2, 'once answered, the next query goes upstream again');
    } finally {
      u.close();
    }
  });

  it('randomCase flips letters only, one unpredictable bit each', () => {
    const name = 'abcdefghijklmnopqrstuvwxyz.xn--bcher-kva.example-1_2\\046\\.x';
    const spellings = new Set<string>();
    let i = 0;
    const random = { u16: () => [0x0000, 0xffff, 0xaaaa, 0x5555, 0x1234][i++ % 5] as number };
    for (let k = 0; k < 5; k++) {
      const s = randomCase(name, random);
      assert.equal(s.toLowerCase(), name, 'the same name');
      assert.equal(s.replace(/[a-zA-Z]/g, ''), name.replace(/[a-zA-Z]/g, ''), 'digits, hyphens, escapes untouched');
      spellings.add(s);
    }
    assert.equal(spellings.size, 5);
    assert.equal(randomCase('abc', { u16: () => 0b101 }), 'AbC');
  });
});
