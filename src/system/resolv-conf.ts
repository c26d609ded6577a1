import { readFileSync } from 'node:fs';
import { isLoopback, parseAddr, type AddrRange } from '../net/ip.js';

/** glibc's resolver uses the first three nameservers (MAXNS) and ignores the rest. */
const MAXNS = 3;

/**
 * The nameservers of resolv.conf(5) that the DNS guard can forward to, read
 * as glibc reads them: a line that begins with `nameserver` and a space or
 * tab, the address up to the next blank, `;` or `#`; only the first three
 * addresses count. Loopback ones are then skipped (a local stub such as
 * systemd-resolved would send its own upstream queries back through the
 * guard) unless `loopback` (audit mode observes what the host asks, stub
 * included). An address with a zone id (`fe80::1%eth0`) takes its place among
 * the three but is not used: the guard's sockets carry no interface.
 */
export function resolvConfUpstreams(text = readOptional('/etc/resolv.conf'), opts: { loopback?: boolean } = {}): AddrRange[] {
  const out: AddrRange[] = [];
  let counted = 0;
  for (const line of text.split('\n')) {
    if (counted >= MAXNS) break;
    const m = /^nameserver[ \t]+([^;# \t\r]+)/.exec(line);
    if (!m) continue;
    const word = m[1] as string;
    const zoned = /^[0-9a-f:.]+%[^%]+$/i.exec(word) && parseAddr(word.slice(0, word.indexOf('%')))?.family === 6;
    const a = zoned ? null : parseAddr(word);
    if (!a && !zoned) continue; // glibc skips what it cannot parse, without counting it
    counted++;
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
