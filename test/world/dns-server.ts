/**
 * A real authoritative DNS server (NSD, from Debian) in the world namespace,
 * serving test zones on 198.18.0.53 and 2001:db8::53.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { World } from './world.js';

export const ZONE = 'sluice.test';

/** The test zone: everything the DNS guard's tests need. */
export function testZone(): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    '$TTL 300',
    `@ IN SOA ns.${ZONE}. host.${ZONE}. 1 3600 600 86400 60`,
    '@ IN NS ns',
    'ns IN A 198.18.0.53',
    'api 300 IN A 198.18.1.10',
    'api 300 IN AAAA 2001:db8:1::10',
    'www 300 IN CNAME edge.cdn',
    'edge.cdn 300 IN CNAME edge2.cdn',
    'edge2.cdn 60 IN A 198.18.1.11',
    'a.cdn 300 IN A 198.18.1.12',
    'cdn 300 IN A 198.18.1.13',
    'evil-cdn 300 IN A 198.18.1.14',
    'x.y.cdn 300 IN A 198.18.1.15',
    'short 2 IN A 198.18.2.20',
    'shared-short 2 IN A 198.18.3.30',
    'shared-long 300 IN A 198.18.3.30',
    'private 300 IN A 10.0.0.1',
    'private 300 IN A 198.18.1.10',
    'private 300 IN AAAA fd00::1',
    'loop 300 IN CNAME loop',
    'audit-only 300 IN A 198.18.1.77',
  ];
  for (let i = 0; i < 200; i++) lines.push(`many 300 IN A 198.18.10.${i}`);
  for (let i = 1; i <= 200; i++) lines.push(`r${i}.race 300 IN A 198.18.20.${i}`);
  return `${lines.join('\n')}\n`;
}

/** Starts NSD in the world namespace; resolves once it has loaded the zone. */
export async function startDnsServer(w: World, zone = testZone()): Promise<void> {
  const dir = join(w.tmp, 'nsd');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${ZONE}.zone`), zone);
  writeFileSync(
    join(dir, 'nsd.conf'),
    [
      'server:',
      '  ip-address: 198.18.0.53',
      '  ip-address: 2001:db8::53',
      '  port: 53',
      '  username: ""',
      '  chroot: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  pidfile: "${dir}/nsd.pid"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  zonelistfile: "${dir}/zone.list"`,
      `  logfile: "${dir}/nsd.log"`,
      '  verbosity: 1',
      '  hide-version: yes',
      '  server-count: 1',
      '  tcp-count: 64',
      'remote-control:',
      '  control-enable: no',
      'zone:',
      `  name: ${ZONE}`,
      `  zonefile: "${ZONE}.zone"`,
      '',
    ].join('\n'),
  );
  w.spawnIn(w.world, ['nsd', '-d', '-c', join(dir, 'nsd.conf')]);
  const log = join(dir, 'nsd.log');
  for (let i = 0; i < 100; i++) {
    if (existsSync(log) && readFileSync(log, 'utf8').includes('nsd started')) return;
    await sleep(100);
  }
  throw new Error(`NSD did not start: ${existsSync(log) ? readFileSync(log, 'utf8') : 'no log'}`);
}
