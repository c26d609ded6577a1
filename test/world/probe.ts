/**
 * A client in the client namespace: tries connections and prints one JSON
 * line per attempt. Run as whatever user and in whatever cgroup the test
 * needs (it joins --cgroup before opening any socket, so the socket belongs
 * to that cgroup).
 *
 *   node probe.js [--cgroup DIR] [--timeout MS] tcp:198.18.1.10:443 udp:[2001:db8:1::10]:53 ...
 *
 * Output per target: {"target":"tcp:...","ok":true,"ms":1.2} or
 * {"target":"...","ok":false,"error":"ECONNREFUSED"} ("timeout" when dropped).
 */
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';

interface Result {
  target: string;
  ok: boolean;
  ms: number;
  error?: string;
  reply?: string;
}

const args = process.argv.slice(2);
let timeout = 1500;
const targets: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i] ?? '';
  if (a === '--cgroup') writeFileSync(`${args[++i]}/cgroup.procs`, String(process.pid));
  else if (a === '--timeout') timeout = Number(args[++i]);
  else targets.push(a);
}

function split(target: string): { proto: string; host: string; port: number } {
  const m = /^(tcp|udp):(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
  if (!m) throw new Error(`bad target ${target}`);
  return { proto: m[1] as string, host: (m[2] ?? m[3]) as string, port: Number(m[4]) };
}

function tcp(host: string, port: number): Promise<Omit<Result, 'target'>> {
  const start = performance.now();
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let data = '';
    const done = (r: Omit<Result, 'target' | 'ms'>) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...r, ms: performance.now() - start });
    };
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeout);
    sock.on('data', (d) => {
      data += d.toString();
    });
    sock.on('end', () => done({ ok: true, reply: data.trim() }));
    sock.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
  });
}

function udp(host: string, port: number): Promise<Omit<Result, 'target'>> {
  const start = performance.now();
  return new Promise((resolve) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (r: Omit<Result, 'target' | 'ms'>) => {
      clearTimeout(timer);
      sock.close();
      resolve({ ...r, ms: performance.now() - start });
    };
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeout);
    sock.on('message', (m) => done({ ok: true, reply: m.toString() }));
    sock.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, error: e.code ?? e.message }));
    sock.connect(port, host, () => {
      sock.send('probe', (err) => {
        if (err) done({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message });
      });
    });
  });
}

for (const t of targets) {
  const { proto, host, port } = split(t);
  const r = proto === 'tcp' ? await tcp(host, port) : await udp(host, port);
  process.stdout.write(`${JSON.stringify({ target: t, ...r })}\n`);
}
