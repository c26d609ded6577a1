import { readFileSync } from 'node:fs';
import { isLoopback, parseAddr, type AddrRange } from '../net/ip.js';

/**
 * The nameservers of resolv.conf(5) that the DNS guard can forward to:
 * loopback ones are skipped (a local stub such as systemd-resolved would send
 * its own upstream queries back through the guard) unless `loopback` (audit
 * mode observes what the host asks, stub included). Zone ids are refused.
 */
export function resolvConfUpstreams(text = readOptional('/etc/resolv.conf'), opts: { loopback?: boolean } = {}): AddrRange[] {
  const out: AddrRange[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)\s*$/.exec(line);
    if (!m) continue;
    const a = parseAddr(m[1] ?? '');
    if (!a) continue;
    if (isLoopback(a.family, a.value) && !opts.loopback) continue;
    if (!out.some((x) => x.family === a.family && x.start === a.value)) out.push({ family: a.family, start: a.value, end: a.value });
  }
  return out;
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
