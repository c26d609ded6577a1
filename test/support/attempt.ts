/**
 * One outbound attempt from a process that stays alive afterwards, so the
 * collector can still find it (a process that exits within milliseconds of a
 * blocked attempt is attributed only if it was seen before; see README
 * "Monitoring"). Prints {"pid":N} at once, waits for SIGUSR1 (so a test can
 * first move it into a cgroup: a socket belongs to the cgroup its creator
 * was in), makes the attempt from a fixed local port (so the test finds its
 * event exactly), prints the outcome, and lives until killed (at most 120 s).
 *
 *   node attempt.js tcp|udp|hold HOST PORT LOCALPORT
 * `hold` connects over TCP and keeps the connection open.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

const [mode, host, portText, localText] = process.argv.slice(2);
const port = Number(portText);
const localPort = Number(localText);
const say = (v: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...v })}\n`);
setTimeout(() => process.exit(0), 120_000);

function attempt(): void {
  if (mode === 'udp') {
    const s = createSocket(host?.includes(':') ? 'udp6' : 'udp4');
    s.on('error', (e: NodeJS.ErrnoException) => say({ done: true, ok: false, error: e.code }));
    s.bind(localPort, () => {
      s.send('attempt', port, host, (err) => say({ done: true, ok: !err, ...(err ? { error: (err as NodeJS.ErrnoException).code } : {}) }));
    });
    return;
  }
  const sock = connect({ host: host as string, port, localPort });
  sock.on('connect', () => {
    say({ done: true, ok: true });
    if (mode !== 'hold') sock.destroy();
  });
  sock.on('data', () => undefined);
  sock.on('error', (e: NodeJS.ErrnoException) => say({ done: true, ok: false, error: e.code }));
}

process.on('SIGUSR1', attempt);
say({ waiting: true });
