/**
 * The guard's upstream client against a fake upstream on loopback: what a
 * spoofer would have to guess (ports that are never reused, ids, the case of
 * every letter), and what is never sent (the client's CD bit).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
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

/**
 * A scripted resolver on loopback, UDP and TCP on one port, plus a second UDP
 * socket (another port on the same host) for forgeries. Each test says what
 * happens to each query.
 */
class ScriptedUpstream {
  readonly udpSeen: Message[] = [];
  readonly tcpSeen: Message[] = [];
  onUdp: (q: Message, reply: (m: Message | Buffer, from?: 'real' | 'other-port') => void) => void = () => undefined;
  onTcp: (q: Message) => Message | null = () => null;
  private sock: Socket = createSocket('udp4');
  private other: Socket = createSocket('udp4');
  private tcp: Server = createServer((conn) => {
    let buf = Buffer.alloc(0);
    conn.on('error', () => undefined);
    conn.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      const q = decodeMessage(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      this.tcpSeen.push(q);
      const out = this.onTcp(q);
      if (!out) return void conn.destroy();
      const bytes = encodeMessage(out);
      const len = Buffer.alloc(2);
      len.writeUInt16BE(bytes.length);
      conn.end(Buffer.concat([len, bytes]));
    });
  });
  port = 0;

  async start(): Promise<void> {
    this.sock.on('message', (buf, rinfo) => {
      const q = decodeMessage(buf);
      this.udpSeen.push(q);
      this.onUdp(q, (m, from = 'real') => {
        const bytes = Buffer.isBuffer(m) ? m : encodeMessage(m);
        (from === 'real' ? this.sock : this.other).send(bytes, rinfo.port, rinfo.address);
      });
    });
    // UDP and TCP on one port number: find one free for both.
    for (;;) {
      await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', () => r()));
      this.port = this.sock.address().port;
      const ok = await new Promise<boolean>((r) => {
        this.tcp.once('error', () => r(false));
        this.tcp.listen(this.port, '127.0.0.1', () => r(true));
      });
      if (ok) break;
      this.sock.close();
      this.sock = createSocket('udp4');
    }
    await new Promise<void>((r) => this.other.bind(0, '127.0.0.1', () => r()));
  }

  close(): void {
    this.sock.close();
    this.other.close();
    this.tcp.close();
  }
}

/** The answer to `query`: its id and question exactly, one A record (`addr`), `tc` as given. */
function answerTo(query: Message, addr: bigint, over: Partial<Message> & { tc?: boolean } = {}): Message {
  const question = query.questions[0] as Message['questions'][number];
  const { tc = false, ...rest } = over;
  return {
    id: query.id,
    flags: { qr: true, opcode: 0, aa: true, tc, rd: true, ra: true, ad: false, cd: false, rcode: 0 },
    questions: [question],
    answers: tc ? [] : [{ name: question.name, type: TYPE.A, class: 1, ttl: 60, data: { kind: 'a', addr } }],
    authorities: [],
    additionals: [],
    ...rest,
  };
}

const REAL = 0xc6120a01n; // 198.18.10.1
const FORGED = 0xc6120a66n; // 198.18.10.102
const addrOf = (m: Message) => (m.answers[0]?.data as { addr?: bigint } | undefined)?.addr;

describe('unit: upstream client, the checks on each reply (RFC 5452) and the TCP retry (RFC 7766)', () => {
  const up = new ScriptedUpstream();
  before(() => up.start());
  after(() => up.close());

  const forgeries: [string, (q: Message) => [Message | Buffer, 'real' | 'other-port']][] = [
    ['from another port of the same host', (q) => [answerTo(q, FORGED), 'other-port']],
    ['with another id', (q) => [answerTo(q, FORGED, { id: (q.id + 1) & 0xffff }), 'real']],
    ['for another type', (q) => [answerTo(q, FORGED, { questions: [{ ...(q.questions[0] as Message['questions'][number]), type: TYPE.AAAA }] }), 'real']],
    ['for another name', (q) => [answerTo(q, FORGED, { questions: [{ ...(q.questions[0] as Message['questions'][number]), name: 'evil.example' }] }), 'real']],
    ['with no question', (q) => [answerTo(q, FORGED, { questions: [] }), 'real']],
    ['that is a query (QR clear)', (q) => { const m = answerTo(q, FORGED); m.flags = { ...m.flags, qr: false }; return [m, 'real']; }],
    ['that does not parse', (q) => [Buffer.from([q.id >> 8, q.id & 0xff, 0x81, 0x80, 0, 1]), 'real']],
  ];
  for (const [what, forge] of forgeries) {
    it(`a reply ${what} is refused and counted; the real answer that follows is taken`, async () => {
      const u = upstreamAt(up.port);
      try {
        up.onUdp = (query, reply) => {
          const [m, from] = forge(query);
          reply(m, from);
          setTimeout(() => reply(answerTo(query, REAL)), 20);
        };
        const a = await u.query(q('www.example.com'), { dnssecOk: false });
        assert.equal(addrOf(a), REAL);
        assert.equal(u.stats.badReplies, 1);
      } finally {
        u.close();
      }
    });
  }

  it('a truncated answer is asked again over TCP, to the same server, with the same spelling; the TCP answer is returned', async () => {
    const u = upstreamAt(up.port);
    try {
      up.udpSeen.length = 0;
      up.tcpSeen.length = 0;
      up.onUdp = (query, reply) => reply(answerTo(query, FORGED, { tc: true }));
      up.onTcp = (query) => answerTo(query, REAL);
      const a = await u.query(q('Big.Example.com'), { dnssecOk: false });
      assert.equal(addrOf(a), REAL, 'the TCP answer, not the truncated one');
      assert.equal(a.questions[0]?.name, 'Big.Example.com', "in the client's spelling");
      assert.equal(u.stats.tcpFallbacks, 1);
      assert.equal(up.tcpSeen.length, 1);
      assert.equal(up.tcpSeen[0]?.questions[0]?.name, up.udpSeen[0]?.questions[0]?.name, 'the spelling asked over UDP');
      assert.equal(up.tcpSeen[0]?.flags.cd, false);
    } finally {
      u.close();
    }
  });

  it('a TCP answer with another id, or another spelling of the name, is refused: the query fails rather than take it', async () => {
    for (const forge of [(m: Message) => ({ ...m, id: (m.id + 1) & 0xffff }), (m: Message) => ({ ...m, questions: m.questions.map((x) => ({ ...x, name: x.name.toLowerCase() === x.name ? x.name.toUpperCase() : x.name.toLowerCase() })) })]) {
      const u = upstreamAt(up.port);
      try {
        up.tcpSeen.length = 0;
        up.onUdp = (query, reply) => reply(answerTo(query, FORGED, { tc: true }));
        up.onTcp = (query) => forge(answerTo(query, REAL));
        await assert.rejects(u.query(q('tcp-forged.example.com'), { dnssecOk: false }), /mismatched TCP answer/);
        assert.ok(up.tcpSeen.length >= 1);
        assert.equal(u.stats.failures, 1);
      } finally {
        u.close();
      }
    }
  });

  it('a TCP connection closed without an answer fails the query; a silent upstream times out, and the next upstream is asked', async () => {
    const u = upstreamAt(up.port, 300);
    try {
      up.onUdp = (query, reply) => reply(answerTo(query, FORGED, { tc: true }));
      up.onTcp = () => null;
      await assert.rejects(u.query(q('closed.example.com'), { dnssecOk: false }));
    } finally {
      u.close();
    }
    // Two upstreams: the first (a port nobody answers on) times out, the second answers.
    const two = new UpstreamClient(
      [
        { family: 4, start: 0x7f000001n, end: 0x7f000001n },
        { family: 4, start: 0x7f000002n, end: 0x7f000002n },
      ],
      { mark: 0, port: up.port, timeoutMs: 300 },
    );
    const onSecond = createSocket('udp4');
    try {
      // 127.0.0.2 is loopback too: the scripted server listens on 127.0.0.1 only, so bind one there.
      await new Promise<void>((r) => onSecond.bind(up.port, '127.0.0.2', () => r()));
      onSecond.on('message', (buf, rinfo) => onSecond.send(encodeMessage(answerTo(decodeMessage(buf), REAL)), rinfo.port, rinfo.address));
      up.onUdp = () => undefined; // the first upstream is silent
      const a = await two.query(q('second.example.com'), { dnssecOk: false });
      assert.equal(addrOf(a), REAL);
      assert.equal(two.stats.timeouts, 1);
      const asked = up.udpSeen.length;
      await two.query(q('third.example.com'), { dnssecOk: false });
      assert.equal(up.udpSeen.length, asked, 'the next query goes straight to the upstream that answered');
      assert.equal(two.stats.timeouts, 1);
    } finally {
      two.close();
      onSecond.close();
    }
  });
});
