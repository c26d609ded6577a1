import type { RecordedEvent, StoredEvent } from './event-store.js';
import { containerLabel } from '../system/containers.js';

/** The protocol's name for display. */
export function protoName(proto: number): string {
  return proto === 6 ? 'tcp' : proto === 17 ? 'udp' : proto === 1 ? 'icmp' : proto === 58 ? 'icmpv6' : `proto-${proto}`;
}

/** `addr:port`, with IPv6 in brackets. */
export function endpoint(family: 4 | 6, addr: string, port?: number): string {
  const a = family === 6 ? `[${addr}]` : addr;
  return port === undefined ? a : `${a}:${port}`;
}

/** One line of `sluice log` for people. Everything from the store is printed as stored (it was cleaned on the way in). */
export function formatEventLine(e: StoredEvent): string {
  const time = new Date(e.time).toISOString().replace('T', ' ').replace('Z', '');
  const verdict = e.verdict.toUpperCase().padEnd(11);
  const dst = `${endpoint(e.family, e.dst, e.dport)}${e.icmpType !== undefined ? ` type ${e.icmpType}` : ''}`;
  const who = e.process ? `${e.process.comm ?? e.process.exe ?? '?'}[${e.process.pid}]` : '-';
  const user = e.user ?? (e.uid !== undefined ? String(e.uid) : '-');
  // Gradual enforcement: which scope's mode made it so (`scope=#rule`: the deny rule's own mode).
  const extras = [e.scope ? `scope=${e.scope}` : '', e.hostname ? `host=${e.hostname}` : '', e.process?.unit ? `unit=${e.process.unit}` : '', e.process?.container ? `container=${containerLabel(e.process.container)}` : '', e.iface ? `via ${e.iface}` : ''].filter(Boolean).join(' ');
  return `${time}  ${verdict} ${e.rule.padEnd(14)} ${protoName(e.proto).padEnd(6)} ${endpoint(e.family, e.src, e.sport)} -> ${dst}  user=${user} ${who}${extras ? `  ${extras}` : ''}`;
}

/** The destination key used by stats: `dst proto/port`, or `dst icmp/type`. */
export function destinationKey(e: Pick<RecordedEvent, 'family' | 'dst' | 'proto' | 'dport' | 'icmpType'>): string {
  const proto = protoName(e.proto);
  const host = endpoint(e.family, e.dst);
  if (e.dport !== undefined) return `${host} ${proto}/${e.dport}`;
  if (e.icmpType !== undefined) return `${host} ${proto}/type-${e.icmpType}`;
  return `${host} ${proto}`;
}
