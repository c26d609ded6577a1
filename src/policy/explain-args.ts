import { UsageError } from '../errors.js';
import { parsePrefix } from '../net/ip.js';
import type { Dest, Query } from './explain.js';
import { parseDomain } from './parse-values.js';

/** Parses an explain destination (`sluice explain DEST`, the dashboard's explain box): an address, a prefix or a name. */
export function parseDest(text: string): Dest {
  const p = parsePrefix(text);
  if (p.ok) return { kind: 'range', range: p.range };
  if (/^[0-9a-fA-F:.\/]+$/.test(text) && (text.includes(':') || /^[0-9.\/]+$/.test(text))) {
    throw new UsageError(`Bad destination: ${p.reason}: ${JSON.stringify(text)}`);
  }
  const d = parseDomain(text);
  if (!d.ok || d.value.wildcard) throw new UsageError(`Bad destination: not an address, a prefix or a domain name: ${JSON.stringify(text)}`);
  return { kind: 'name', name: d.value.name };
}

const PORT_ARG = /^(?:([0-9]{1,5})(?:\/(tcp|udp))?|tcp|udp|icmp|icmpv6)$/;

/**
 * Parses an explain PORT[/PROTO] or bare protocol (`443`, `53/udp`, `icmp`):
 * a port without a protocol is TCP. Null when the text is not of that form;
 * throws a UsageError for a port out of range.
 */
export function parseExplainPort(text: string): Pick<Query, 'port' | 'proto'> | null {
  const m = PORT_ARG.exec(text.toLowerCase());
  if (!m) return null;
  if (m[1] === undefined) return { proto: text.toLowerCase() as Query['proto'] };
  const port = Number(m[1]);
  if (port < 1 || port > 65535) throw new UsageError(`Bad port: a port is 1 to 65535: ${JSON.stringify(text)}`);
  return { port, proto: (m[2] as 'tcp' | 'udp' | undefined) ?? 'tcp' };
}
