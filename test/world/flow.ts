/**
 * One flow, for tests of what happens to established flows: sends a
 * numbered message every --interval ms on one socket (UDP from --sport, or
 * one TCP connection) and prints, as they happen, `sent N`, `echo N` (the
 * world's servers echo) and `error CODE`. Prints `ready` once the socket is
 * bound (UDP) or connected (TCP).
 *
 *   node flow.js udp|tcp HOST PORT [--sport S] [--count N] [--interval MS]
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

const [proto, host, portText, ...rest] = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = rest.indexOf(name);
  return i >= 0 ? Number(rest[i + 1]) : dflt;
};
const port = Number(portText);
const count = opt('--count', 1);
const interval = opt('--interval', 100);
const sport = opt('--sport', 0);
const out = (line: string) => process.stdout.write(`${line}\n`);
// Long enough for the last echo on a loaded machine.
const finish = () => setTimeout(() => process.exit(0), 1500);

if (proto === 'udp') {
  const s = createSocket(host?.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (m) => out(`echo ${m.toString()}`));
  s.on('error', (e: NodeJS.ErrnoException) => out(`error ${e.code}`));
  s.bind(sport, () => {
    out('ready');
    let i = 0;
    const tick = () => {
      s.send(String(i), port, host, (e) => out(e ? `error ${(e as NodeJS.ErrnoException).code}` : `sent ${i}`));
      if (++i < count) setTimeout(tick, interval);
      else finish();
    };
    tick();
  });
} else if (proto === 'tcp') {
  const c = connect({ host: host ?? '', port });
  c.on('error', (e: NodeJS.ErrnoException) => {
    out(`error ${e.code}`);
    finish();
  });
  let buf = '';
  c.on('data', (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      out(`echo ${buf.slice(0, nl)}`);
      buf = buf.slice(nl + 1);
    }
  });
  c.on('connect', () => {
    out('ready');
    let i = 0;
    const tick = () => {
      if (c.destroyed) return;
      c.write(`${i}\n`, (e) => out(e ? `error ${(e as NodeJS.ErrnoException).code}` : `sent ${i}`));
      if (++i < count) setTimeout(tick, interval);
      else finish();
    };
    tick();
  });
} else {
  process.stderr.write('usage: flow.js udp|tcp HOST PORT [--sport S] [--count N] [--interval MS]\n');
  process.exit(2);
}
