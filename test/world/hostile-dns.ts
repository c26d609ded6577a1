/**
 * A hostile DNS server for tests, run in the world namespace: it answers
 * what its script says (huge answers, CNAMEs into denied names, SVCB hints
 * at loopback, silence, a question echoed in the wrong case), and logs every
 * query it gets (source port, id, name exactly as sent, CD bit).
 *
 *   node hostile-dns.js --addrs 198.18.5.53,2001:db8:5::53 --script FILE --log FILE
 *
 * The script (JSON, read again whenever it changes) maps names (exact, or
 * `*.suffix`) to behaviours:
 *   { "names": { "alias.example.test": { "records": [
 *       { "type": "CNAME", "target": "denied.example.test" },
 *       { "owner": "denied.example.test", "type": "A", "addr": "198.18.2.20" } ] },
 *     "*.huge.example.test": { "many": { "count": 4000, "base": "198.18.64.0" } },
 *     "svc.example.test": { "records": [ { "type": "HTTPS", "priority": 1, "target": ".",
 *       "ipv4hint": ["127.0.0.1"], "ipv6hint": ["::1"] } ] },
 *     "*.slow.example.test": { "silent": true },
 *     "lower.example.test": { "lowerQuestion": true, "records": [...] },
 *     "*.neg.example.test": { "rcode": 3, "soa": { "ttl": 300, "minimum": 2 } } } }
 * Records without an owner belong to the name as asked. `many` answers
 * `count` A records, new ones on every query (a counter moves the base),
 * with `ttl` (default 3600). `rcode` answers with that code, and `soa` puts
 * an SOA of the name's parent with that TTL and MINIMUM in the authority
 * section (a negative answer, RFC 2308). Names the script does not know get
 * NXDOMAIN without an SOA.
 * Over UDP an answer larger than the client's EDNS size (or 512) is sent
 * truncated (TC); over TCP it is whole. Prints "ready" once listening.
 */
import { createSocket } from 'node:dgram';
import { appendFileSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { canonicalName, decodeMessage, encodeMessage, SVC_KEY, TYPE, type Message, type RR, type SvcParam } from '../../src/dns/dns-message.js';
import { addrBytes, parseAddr } from '../../src/net/ip.js';

interface RecordSpec {
  owner?: string;
  type: 'A' | 'AAAA' | 'CNAME' | 'HTTPS' | 'SVCB';
  addr?: string;
  target?: string;
  ttl?: number;
  priority?: number;
  ipv4hint?: string[];
  ipv6hint?: string[];
}

interface Behaviour {
  records?: RecordSpec[];
  many?: { count: number; base: string; ttl?: number };
  silent?: boolean;
  lowerQuestion?: boolean;
  rcode?: number;
  soa?: { ttl: number; minimum: number };
}

const args = process.argv.slice(2);
const opt = (k: string) => {
  const i = args.indexOf(k);
  return i >= 0 ? args[i + 1] : undefined;
};
const scriptFile = opt('--script') ?? '';
const logFile = opt('--log') ?? '';
const addrs = (opt('--addrs') ?? '').split(',').filter(Boolean);

let script: { names: Record<string, Behaviour> } = { names: {} };
let scriptMtime = -1;
function current(): typeof script {
  try {
    const m = statSync(scriptFile).mtimeMs;
    if (m !== scriptMtime) {
      script = JSON.parse(readFileSync(scriptFile, 'utf8')) as typeof script;
      scriptMtime = m;
    }
  } catch {
    /* keep the last good script */
  }
  return script;
}

function behaviourFor(name: string): Behaviour | undefined {
  const names = current().names;
  const n = canonicalName(name);
  if (names[n]) return names[n];
  for (let dot = n.indexOf('.'); dot >= 0; dot = n.indexOf('.', dot + 1)) {
    const w = names[`*.${n.slice(dot + 1)}`];
    if (w) return w;
  }
  return undefined;
}

const ip = (text: string) => {
  const a = parseAddr(text);
  if (!a) throw new Error(`bad address in the script: ${text}`);
  return a;
};

let manyCounter = 0;

function records(q: Message, b: Behaviour): RR[] {
  const question = q.questions[0];
  if (!question) return [];
  const out: RR[] = [];
  for (const r of b.records ?? []) {
    const name = r.owner ?? question.name;
    const ttl = r.ttl ?? 300;
    if (r.type === 'A' || r.type === 'AAAA') out.push({ name, type: r.type === 'A' ? TYPE.A : TYPE.AAAA, class: 1, ttl, data: { kind: r.type === 'A' ? 'a' : 'aaaa', addr: ip(r.addr ?? '').value } });
    else if (r.type === 'CNAME') out.push({ name, type: TYPE.CNAME, class: 1, ttl, data: { kind: 'name', name: r.target ?? '.' } });
    else {
      const params: SvcParam[] = [];
      if (r.ipv4hint) params.push({ key: SVC_KEY.IPV4HINT, value: Buffer.concat(r.ipv4hint.map((a) => addrBytes(4, ip(a).value))) });
      if (r.ipv6hint) params.push({ key: SVC_KEY.IPV6HINT, value: Buffer.concat(r.ipv6hint.map((a) => addrBytes(6, ip(a).value))) });
      out.push({ name, type: r.type === 'HTTPS' ? TYPE.HTTPS : TYPE.SVCB, class: 1, ttl, data: { kind: 'svcb', priority: r.priority ?? 1, target: r.target ?? '.', params } });
    }
  }
  if (b.many && question.type === TYPE.A) {
    const base = ip(b.many.base).value + BigInt(manyCounter * b.many.count);
    manyCounter++;
    for (let i = 0; i < b.many.count; i++) out.push({ name: question.name, type: TYPE.A, class: 1, ttl: b.many.ttl ?? 3600, data: { kind: 'a', addr: base + BigInt(i) } });
  }
  // Only what answers the question's type (and CNAMEs), as a server would.
  return out.filter((rr) => rr.type === question.type || rr.type === TYPE.CNAME || rr.name !== question.name);
}

/** The answer to one query, or null for silence. */
function answer(buf: Buffer, transport: 'udp' | 'tcp', src: string, sport: number): Buffer | null {
  let q: Message;
  try {
    q = decodeMessage(buf);
  } catch {
    return null;
  }
  const question = q.questions[0];
  if (q.flags.qr || !question) return null;
  try {
    appendFileSync(logFile, `${JSON.stringify({ transport, src, sport, id: q.id, name: question.name, type: question.type, cd: q.flags.cd, do: q.edns?.dnssecOk ?? false })}\n`);
  } catch {
    /* logging is best effort */
  }
  const b = behaviourFor(question.name);
  if (b?.silent) return null;
  const echoed = b?.lowerQuestion ? { ...question, name: question.name.toLowerCase() } : question;
  const reply: Message = {
    id: q.id,
    flags: { qr: true, opcode: 0, aa: true, tc: false, rd: q.flags.rd, ra: true, ad: false, cd: q.flags.cd, rcode: b ? (b.rcode ?? 0) : 3 },
    questions: [echoed],
    answers: b ? records(q, b) : [],
    authorities: [],
    additionals: [],
  };
  if (b?.soa) {
    const zone = question.name.slice(question.name.indexOf('.') + 1);
    reply.authorities.push({ name: zone, type: TYPE.SOA, class: 1, ttl: b.soa.ttl, data: { kind: 'soa', mname: `ns.${zone}`, rname: `host.${zone}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: b.soa.minimum } });
  }
  if (q.edns) reply.edns = { udpSize: 4096, extendedRcode: 0, version: 0, dnssecOk: q.edns.dnssecOk, options: [] };
  let out = encodeMessage(reply);
  const limit = transport === 'tcp' ? 65535 : q.edns ? Math.max(512, q.edns.udpSize) : 512;
  if (out.length > limit) {
    reply.flags.tc = true;
    reply.answers = [];
    out = encodeMessage(reply);
  }
  return out;
}

const pending: Promise<void>[] = [];
for (const addr of addrs) {
  const udp = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    const out = answer(msg, 'udp', rinfo.address, rinfo.port);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  udp.on('error', () => undefined);
  pending.push(new Promise((resolve) => udp.bind(53, addr, () => resolve())));
  const tcp = createServer((conn) => {
    conn.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    conn.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const out = answer(msg, 'tcp', conn.remoteAddress ?? '', conn.remotePort ?? 0);
        if (!out) continue;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        conn.write(Buffer.concat([len, out]));
      }
    });
  });
  pending.push(new Promise((resolve, reject) => tcp.listen(53, addr, () => resolve()).on('error', reject)));
}
Promise.all(pending).then(
  () => process.stdout.write('ready\n'),
  (err: unknown) => {
    process.stderr.write(`hostile-dns: ${String(err)}\n`);
    process.exit(1);
  },
);
