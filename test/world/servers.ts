/**
 * Stand-ins for internet hosts, run inside the world namespace: TCP servers
 * that greet and close, UDP servers that echo. Listening on `::` with
 * dual-stack sockets serves every IPv4 and IPv6 address of the namespace.
 *
 *   node servers.js --tcp 22,80,443 --udp 53,123 --addrs 198.18.1.10,2001:db8:1::10
 *
 * UDP sockets are bound per address: a socket bound to `::` would answer
 * from the namespace's primary address, and a connected client drops replies
 * from any address but the one it sent to.
 * Prints "ready" once every socket is listening.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

function list(flag: string): string[] {
  const i = process.argv.indexOf(flag);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  return v ? v.split(',') : [];
}
const ports = (flag: string) => list(flag).map(Number);

const pending: Promise<void>[] = [];
for (const port of ports('--tcp')) {
  const server = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.end(`hello ${port}\n`);
  });
  pending.push(new Promise((resolve, reject) => server.listen({ port, host: '::', ipv6Only: false, backlog: 4096 }, resolve).on('error', reject)));
}
for (const port of ports('--echo')) {
  const server = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.on('data', (d) => sock.write(d));
  });
  pending.push(new Promise((resolve, reject) => server.listen({ port, host: '::', ipv6Only: false }, resolve).on('error', reject)));
}
for (const port of ports('--udp')) {
  for (const addr of list('--addrs')) {
    const sock = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
    sock.on('error', () => undefined);
    pending.push(new Promise((resolve) => sock.bind(port, addr, () => resolve())));
  }
}
Promise.all(pending).then(
  () => process.stdout.write('ready\n'),
  (err: unknown) => {
    process.stderr.write(`servers: ${String(err)}\n`);
    process.exit(1);
  },
);
