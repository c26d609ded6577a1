import { UsageError } from '../errors.js';
import { parsePrefix } from '../net/ip.js';
import type { Dest } from './explain.js';
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
