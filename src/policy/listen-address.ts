import { formatAddr, isLoopback, parseAddr } from '../net/ip.js';

/** A loopback address and port to listen on: `host` is the address in canonical form (`127.0.0.1`, `::1`). */
export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Parses `ADDRESS:PORT` (`127.0.0.1:9330`, `[::1]:9330`) where ADDRESS is a
 * loopback address (127.0.0.0/8 or ::1) and PORT 1-65535. Names are refused,
 * `localhost` included: what a name means is up to /etc/hosts, and a listen
 * address must mean one thing.
 */
export function parseLoopbackListen(text: string): { ok: true; value: ListenAddress } | { ok: false; reason: string } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text);
  if (!m) return { ok: false, reason: 'want ADDRESS:PORT, such as 127.0.0.1:9330 or [::1]:9330' };
  const a = parseAddr(m[1] ?? m[2] ?? '');
  if (!a || (m[1] !== undefined && a.family !== 6) || (m[2] !== undefined && a.family !== 4)) return { ok: false, reason: 'not an IPv4 address or a bracketed IPv6 address' };
  if (!isLoopback(a.family, a.value)) return { ok: false, reason: 'the dashboard listens on loopback only (127.0.0.0/8 or [::1])' };
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return { ok: false, reason: 'a port is 1 to 65535' };
  return { ok: true, value: { host: formatAddr(a.family, a.value), port } };
}

/** `host:port` as it appears in a URL and a Host header (`[::1]:9330` for IPv6). */
export function formatListen(l: ListenAddress): string {
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}
