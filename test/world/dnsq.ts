/**
 * A DNS client for tests, run in the client namespace. Sends one query (UDP or
 * TCP, with or without EDNS), prints the decoded answer as JSON, and can
 * connect to the first answered address right away (the first-connect race).
 *
 *   node dnsq.js [--cgroup DIR] --server 198.18.0.53 [--port 53] --name api.sluice.test [--type AAAA|HTTPS] [--tcp] [--edns 1232] [--cd]
 *                [--connect 443 [--hold MS]] [--repeat-names r{i}.race.sluice.test --count 200]
 *                [--do] [--interval MS] [--late MS]
 *
 * `--do` sets the DNSSEC OK bit (with EDNS). `--interval` waits between
 * repeated queries. `--late MS` connects (also) MS before the first record's
 * TTL runs out, as a client that cached the answer would, without holding
 * up the next query; its result is printed as `late`.
 */
import { createSocket } from 'node:dgram';
import { connect, Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { decodeMessage, encodeMessage, type Message } from '../../src/dns/dns-message.js';
import { formatAddr } from '../../src/net/ip.js';

const args = process.argv.slice(2);
const opt = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
// --cgroup DIR: join it before any socket is opened, so the query's socket belongs to that cgroup.
const cgroup = opt('--cgroup');
if (cgroup !== undefined) writeFileSync(`${cgroup}/cgroup.procs`, String(process.pid));
const server = opt('--server') ?? '198.18.0.53';
const TYPES: Record<string, number> = { A: 1, AAAA: 28, TXT: 16, CNAME: 5, MX: 15, SVCB: 64, HTTPS: 65, ANY: 255, AXFR: 252 };
const type = TYPES[(opt('--type') ?? 'A').toUpperCase()] ?? Number(opt('--type'));
const tcp = args.includes('--tcp');
const edns = opt('--edns');
const timeout = Number(opt('--timeout') ?? 3000);
const sport = opt('--sport');
const port = Number(opt('--port') ?? 53);
const cd = args.includes('--cd');
const dnssecOk = args.includes('--do');

function query(name: string): Buffer {
  const m: Message = {
    id: Math.floor(Math.random() * 65536),
    flags: { qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, ad: false, cd, rcode: 0 },
    questions: [{ name, type, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (edns || dnssecOk) m.edns = { udpSize: Number(edns ?? 1232), extendedRcode: 0, version: 0, dnssecOk, options: [] };
  return encodeMessage(m);
}

function ask(name: string): Promise<Buffer> {
  const q = query(name);
  return new Promise((resolve, reject) => {
    let cleanup = () => undefined as void;
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error('timeout'));
    }, timeout);
    if (tcp) {
      const s = connect(port, server);
      cleanup = () => s.destroy();
      let buf = Buffer.alloc(0);
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(q.length);
        s.write(Buffer.concat([len, q]));
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          clearTimeout(timer);
          s.destroy();
          resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        }
      });
      s.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    } else {
      const s = createSocket(server.includes(':') ? 'udp6' : 'udp4');
      cleanup = () => s.close();
      s.on('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve(m);
      });
      s.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      if (sport) s.bind(Number(sport), () => s.send(q, port, server));
      else s.send(q, port, server);
    }
  });
}

/** A SvcParam's value: address hints as addresses, others in hex. */
function hints(key: number, v: Buffer): string {
  const size = key === 4 ? 4 : key === 6 ? 16 : 0;
  if (size === 0) return v.toString('hex');
  const out: string[] = [];
  for (let i = 0; i + size <= v.length; i += size) out.push(size === 4 ? formatAddr(4, BigInt(v.readUInt32BE(i))) : formatAddr(6, (v.readBigUInt64BE(i) << 64n) | v.readBigUInt64BE(i + 8)));
  return out.join(',');
}

function summary(buf: Buffer): Record<string, unknown> {
  const m = decodeMessage(buf);
  const ede = m.edns?.options.filter((o) => o.code === 15).map((o) => ({ code: o.data.readUInt16BE(0), text: o.data.subarray(2).toString() }));
  return {
    id: m.id,
    qr: m.flags.qr,
    rcode: m.flags.rcode,
    tc: m.flags.tc,
    answers: m.answers.map((a) =>
      a.data.kind === 'a'
        ? formatAddr(4, a.data.addr)
        : a.data.kind === 'aaaa'
          ? formatAddr(6, a.data.addr)
          : a.data.kind === 'name'
            ? `CNAME ${a.data.name}`
            : a.data.kind === 'svcb'
              ? `SVCB ${a.data.priority} ${a.data.target}${a.data.params.map((p) => ` ${p.key}=${hints(p.key, p.value)}`).join('')}`
              : `type${a.type}`,
    ),
    ttls: m.answers.map((a) => a.ttl),
    ede: ede ?? [],
  };
}

function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 2000);
    s.on('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve('ok');
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code ?? 'error');
    });
  });
}

/** Connects, exchanges data, waits, and exchanges again: does an open connection outlive its address? */
function holdConnection(host: string, port: number, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host, port });
    const fail = (why: string) => {
      s.destroy();
      resolve(why);
    };
    s.on('error', (e: NodeJS.ErrnoException) => fail(e.code ?? 'error'));
    s.once('connect', () => {
      s.write('first\n');
      s.once('data', () => {
        setTimeout(() => {
          s.write('second\n');
          const t = setTimeout(() => fail('no echo after the wait'), 2000);
          s.once('data', () => {
            clearTimeout(t);
            fail('ok');
          });
        }, waitMs);
      });
    });
  });
}

const connectPort = opt('--connect');
const holdMs = opt('--hold');
const pattern = opt('--repeat-names');
const count = Number(opt('--count') ?? 1);
const names = pattern ? Array.from({ length: count }, (_, i) => pattern.replace('{i}', String(i + 1))) : [opt('--name') ?? ''];
const interval = Number(opt('--interval') ?? 0);
const late = opt('--late');
const lateDone: Promise<void>[] = [];
const lines: Record<string, unknown>[] = [];
for (const name of names) {
  let out: Record<string, unknown>;
  try {
    out = { name, ...summary(await ask(name)) };
    const arrived = Date.now();
    const answers = out.answers as string[];
    const at = answers.findIndex((a) => !a.startsWith('CNAME'));
    const first = answers[at];
    if (connectPort && first) out.connect = holdMs ? await holdConnection(first, Number(connectPort), Number(holdMs)) : await tryConnect(first, Number(connectPort));
    if (late && connectPort && first) {
      const ttl = (out.ttls as number[])[at] ?? 0;
      const record = out;
      const wait = Math.max(0, arrived + ttl * 1000 - Number(late) - Date.now());
      lateDone.push(
        new Promise<void>((r) => setTimeout(r, wait)).then(async () => {
          record.late = await tryConnect(first, Number(connectPort));
        }),
      );
    }
  } catch (err) {
    out = { name, error: (err as Error).message };
  }
  if (late) lines.push(out);
  else process.stdout.write(`${JSON.stringify(out)}\n`);
  if (interval > 0) await new Promise((r) => setTimeout(r, interval));
}
await Promise.all(lateDone);
for (const out of lines) process.stdout.write(`${JSON.stringify(out)}\n`);
