import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAddr, type AddrRange } from '../net/ip.js';

/** Where DHCP clients keep their leases, and how each names the server. */
const SOURCES: { dir: string; file: RegExp; server: RegExp }[] = [
  // systemd-networkd and NetworkManager's internal client: KEY=VALUE lines.
  { dir: '/run/systemd/netif/leases', file: /^[0-9]+$/, server: /^SERVER_ADDRESS=([0-9.]{7,15})$/gm },
  { dir: '/var/lib/NetworkManager', file: /^internal-.*\.lease$/, server: /^SERVER_ADDRESS=([0-9.]{7,15})$/gm },
  // ISC dhclient: `option dhcp-server-identifier A.B.C.D;` in each lease block.
  { dir: '/var/lib/dhcp', file: /^dhclient.*\.leases?$/, server: /^\s*option dhcp-server-identifier ([0-9.]{7,15});$/gm },
  { dir: '/var/lib/dhclient', file: /\.leases?$/, server: /^\s*option dhcp-server-identifier ([0-9.]{7,15});$/gm },
];

const MAX_FILE_BYTES = 1 << 20;
const MAX_FILES = 64;
const MAX_SERVERS = 64;

/**
 * The IPv4 DHCP servers of the leases this host's DHCP clients hold (a
 * renewal goes to its server by unicast). Lease files are only trusted as
 * far as their format: plain IPv4 addresses, bounded files and counts; a
 * file that cannot be read is skipped. `roots` prefixes every directory
 * (for tests).
 */
export function dhcpLeaseServers(roots = ''): AddrRange[] {
  const out = new Map<bigint, AddrRange>();
  let files = 0;
  for (const src of SOURCES) {
    let names: string[];
    try {
      names = readdirSync(join(roots, src.dir));
    } catch {
      continue;
    }
    for (const name of names.filter((n) => src.file.test(n)).sort()) {
      if (++files > MAX_FILES || out.size >= MAX_SERVERS) return [...out.values()];
      const path = join(roots, src.dir, name);
      let text: string;
      try {
        if (!statSync(path).isFile() || statSync(path).size > MAX_FILE_BYTES) continue;
        text = readFileSync(path, 'latin1');
      } catch {
        continue;
      }
      for (const m of text.matchAll(src.server)) {
        const a = parseAddr(m[1] ?? '');
        if (a && a.family === 4 && a.value !== 0n && a.value !== 0xffffffffn) out.set(a.value, { family: 4, start: a.value, end: a.value });
      }
    }
  }
  return [...out.values()];
}
