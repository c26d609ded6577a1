/** A TCP server that keeps every connection open (the world's servers close at once). Prints "ready". */
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
const server = createServer((sock) => {
  sock.on('error', () => undefined);
  sock.write('hold\n');
});
server.listen({ port, host: '::', ipv6Only: false }, () => process.stdout.write('ready\n'));
