/**
 * A hostile DNS client for the integration tests, run in the client
 * namespace as an unprivileged user: it sends the guard a stream of broken,
 * oversized, mutated and odd queries for a name it cached, then asks for
 * that name properly many times (random IDs, 0x20 spelling, with and
 * without EDNS/DO) and checks every reply strictly. Prints one JSON line:
 * { sent, ok, bad, fails }.
 *
 *   node dns-fuzz-client.js --server ADDR --port N --name NAME --addr A.B.C.D --seconds S
 */
import dgram from 'node:dgram';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { server: { type: 'string' }, port: { type: 'string' }, name: { type: 'string' }, addr: { type: 'string' }, seconds: { type: 'string' } } });
const server = values.server ?? '127.0.0.1';
const port = Number(values.port ?? 53);
const qname = values.name ?? 'h1.z.test';
const want = values.addr ?? '';
const seconds = Number(values.seconds ?? 2);

let seed = 0x5eed;
const rnd = (): number => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed >>> 8;
};

function wireName(n: string): Buffer {
  return Buffer.concat([...n.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

interface Q {
  flags2?: number;
  flags3?: number;
  type?: number;
  edns?: boolean;
  dnssecOk?: boolean;
  size?: number;
  options?: Buffer;
}

function query(id: number, name: string | Buffer, o: Q = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h[2] = o.flags2 ?? 1;
  h[3] = o.flags3 ?? 0;
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(o.edns ? 1 : 0, 10);
  const parts = [h, typeof name === 'string' ? wireName(name) : name, Buffer.from([(o.type ?? 1) >> 8, (o.type ?? 1) & 0xff, 0, 1])];
  if (o.edns) {
    const opts = o.options ?? Buffer.alloc(0);
    const opt = Buffer.from([0, 0, 41, 0, 0, 0, 0, o.dnssecOk ? 0x80 : 0, 0, 0, 0]);
    opt.writeUInt16BE(o.size ?? 1232, 3);
    opt.writeUInt16BE(opts.length, 9);
    parts.push(opt, opts);
  }
  return Buffer.concat(parts);
}

/** A strict reader of a reply: names (pointers only backwards), every record, nothing left over. */
function readReply(b: Buffer): { id: number; rcode: number; question: string; a: { addr: string; ttl: number }[] } {
  const name = (at: number, depth = 0): [string, number] => {
    const out: string[] = [];
    let j = at;
    for (;;) {
      if (depth > 16) throw new Error('pointer loop');
      const l = b[j];
      if (l === undefined) throw new Error('name runs past the end');
      if (l === 0) return [out.join('.'), j + 1];
      if ((l & 0xc0) === 0xc0) {
        const p = ((l & 0x3f) << 8) | (b[j + 1] ?? 0);
        if (p >= j) throw new Error('forward pointer');
        out.push(name(p, depth + 1)[0]);
        return [out.filter(Boolean).join('.'), j + 2];
      }
      if (l > 63) throw new Error('bad label type');
      out.push(b.subarray(j + 1, j + 1 + l).toString('latin1'));
      j += 1 + l;
    }
  };
  if (b.readUInt16BE(4) !== 1) throw new Error('not one question');
  const [question, qend] = name(12);
  let i = qend + 4;
  const a: { addr: string; ttl: number }[] = [];
  const records = b.readUInt16BE(6) + b.readUInt16BE(8) + b.readUInt16BE(10);
  for (let k = 0; k < records; k++) {
    const [, j] = name(i);
    const type = b.readUInt16BE(j);
    const ttl = b.readUInt32BE(j + 4);
    const len = b.readUInt16BE(j + 8);
    if (j + 10 + len > b.length) throw new Error('record runs past the end');
    if (type === 1) a.push({ addr: [...b.subarray(j + 10, j + 14)].join('.'), ttl });
    i = j + 10 + len;
  }
  if (i !== b.length) throw new Error(`${b.length - i} bytes after the last record`);
  return { id: b.readUInt16BE(0), rcode: (b[3] ?? 0) & 0xf, question, a };
}

const sock = dgram.createSocket(server.includes(':') ? 'udp6' : 'udp4');
await new Promise<void>((r) => sock.bind(0, () => r()));
const replies = new Map<number, Buffer>();
sock.on('message', (m) => {
  if (m.length >= 2) replies.set(m.readUInt16BE(0), m);
});
const send = (b: Buffer) => new Promise<void>((r) => sock.send(b, port, server, () => r()));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The name in the cache, with and without DO (two entries).
await send(query(1, qname));
await send(query(2, qname, { edns: true, dnssecOk: true }));
await sleep(500);

const bases = [query(3, qname), query(4, qname.toUpperCase(), { edns: true }), query(5, qname, { edns: true, dnssecOk: true, options: Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]) })];
const odd = [
  Buffer.alloc(0),
  Buffer.alloc(12),
  Buffer.alloc(17),
  query(6, `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`),
  query(7, Array(127).fill('x').join('.')),
  query(8, Buffer.from([0xc0, 0x0c])),
  query(9, Buffer.from([63, ...Buffer.alloc(63, 0x41)])),
  query(10, qname, { edns: true, options: Buffer.from([0, 10, 0xff, 0xff]) }),
  query(11, qname, { type: 252 }),
  query(12, qname, { type: 255 }),
  query(13, qname, { flags2: 0x81 }),
  query(14, qname, { flags2: 0x03 }),
  Buffer.concat([query(15, qname, { edns: true }), Buffer.alloc(3000)]),
  Buffer.alloc(65000, 0xc0),
  Buffer.concat([query(16, qname), Buffer.alloc(60000)]),
  query(17, qname, { edns: true, size: 0 }),
  query(18, qname, { edns: true, size: 65535 }),
  query(19, Buffer.from([1, 0, 1, 0x2e, 0])),
];
let sent = 0;
const end = Date.now() + seconds * 1000;
while (Date.now() < end) {
  for (const b of odd) {
    await send(b);
    sent++;
  }
  for (let k = 0; k < 200; k++) {
    const b = Buffer.from(bases[k % bases.length] as Buffer);
    for (let f = 1 + (rnd() % 3); f > 0; f--) b[rnd() % b.length] = rnd() & 0xff;
    await send(rnd() % 6 === 0 ? b.subarray(0, rnd() % b.length) : b);
    sent++;
  }
  await sleep(5);
}
await sleep(500);
replies.clear();

// Proper questions now: every one answered, strictly well formed, with the cached address.
let ok = 0;
const fails: string[] = [];
const N = 300;
for (let k = 0; k < N; k++) {
  const spelled = qname.split('').map((c) => (rnd() % 2 ? c.toUpperCase() : c)).join('');
  await send(query(1000 + k, spelled, k % 3 === 0 ? { edns: true, dnssecOk: k % 2 === 0 } : {}));
  await sleep(2);
}
await sleep(1000);
for (let k = 0; k < N; k++) {
  const m = replies.get(1000 + k);
  if (!m) {
    fails.push(`${1000 + k}: no reply`);
    continue;
  }
  try {
    const r = readReply(m);
    if (r.rcode === 0 && r.a.length === 1 && r.a[0]?.addr === want && (r.a[0]?.ttl ?? 0) > 0 && r.question.toLowerCase() === qname.toLowerCase()) ok++;
    else fails.push(`${1000 + k}: ${JSON.stringify(r)}`);
  } catch (err) {
    fails.push(`${1000 + k}: ${(err as Error).message} ${m.toString('hex')}`);
  }
}
process.stdout.write(`${JSON.stringify({ sent, ok, bad: N - ok, fails: fails.slice(0, 5) })}\n`);
sock.close();
