#!/usr/bin/env node
// Records real nf_tables change notifications for the unit tier
// (test/fixtures/nft-notifications.json): the bytes the kernel sends to
// NFNLGRP_NFTABLES while `nft` changes a table, step by step, so that the
// parser and NftMonitor tests read what a kernel writes, not what the
// tests' own encoder writes.
//
//   npm run build && sudo node scripts/capture-nft-notifications.mjs [OUT]
//
// Root. Everything happens in a network namespace this script creates and
// deletes (nothing touches the machine's own ruleset); addresses from
// 198.18.0.0/15 and 2001:db8::/32 only.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const out = process.argv[2] === '--inside' ? process.argv[3] : (process.argv[2] ?? join(root, 'test/fixtures/nft-notifications.json'));

/** Each step is one `nft` invocation: one transaction (a file is one too). */
const STEPS = [
  ['add a table', ['add', 'table', 'inet', 'sluice']],
  ['add a base chain', ['add', 'chain', 'inet', 'sluice', 'output', '{ type filter hook output priority 0; policy accept; }']],
  ['add a rule', ['add', 'rule', 'inet', 'sluice', 'output', 'ip', 'daddr', '198.18.0.1', 'drop']],
  ['add a set with timeouts', ['add', 'set', 'inet', 'sluice', 'r_api_d4', '{ type ipv4_addr; flags timeout; }']],
  ['add two elements', ['add', 'element', 'inet', 'sluice', 'r_api_d4', '{ 198.18.9.1 timeout 60s, 198.18.9.2 timeout 60s }']],
  ['delete one element', ['delete', 'element', 'inet', 'sluice', 'r_api_d4', '{ 198.18.9.1 }']],
  ['add a named counter', ['add', 'counter', 'inet', 'sluice', 'c_api']],
  ['add a rule and an element in one transaction', ['-f', '-'], 'add rule inet sluice output ip6 daddr 2001:db8::1 drop\nadd element inet sluice r_api_d4 { 198.18.9.3 timeout 60s }\n'],
  ['another table', ['add', 'table', 'inet', 'other']],
  ['the same name in another family', ['add', 'table', 'ip', 'sluice']],
  ['flush the chain', ['flush', 'chain', 'inet', 'sluice', 'output']],
  ['flush the set', ['flush', 'set', 'inet', 'sluice', 'r_api_d4']],
  ['delete the table', ['delete', 'table', 'inet', 'sluice']],
];

if (process.argv[2] === '--inside') {
  // In the namespace: one socket joined to the group, read after each step.
  const { openNftNotifications } = await import(join(root, 'dist/src/netfilter/nft-notify-socket.js'));
  const source = openNftNotifications();
  const steps = [];
  for (const [what, args, stdin] of STEPS) {
    const r = spawnSync('nft', args, { input: stdin ?? '', encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`);
    const datagrams = [];
    for (let d = source.recv(); d !== null; d = source.recv()) datagrams.push(d.toString('hex'));
    steps.push({ what, nft: `nft ${args.join(' ')}${stdin ? ` <<< ${JSON.stringify(stdin)}` : ''}`, nftPid: r.pid, datagrams });
  }
  source.close();
  writeFileSync(out, `${JSON.stringify(steps, null, 1)}\n`);
  process.exit(0);
}

if (process.getuid?.() !== 0) {
  console.error('capture-nft-notifications: run as root (it creates a network namespace)');
  process.exit(2);
}
const ns = `sluice-capture-${process.pid}`;
const tmp = mkdtempSync(join(tmpdir(), 'sluice-capture-'));
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
};
try {
  run('ip', ['netns', 'add', ns]);
  run('ip', ['netns', 'exec', ns, process.execPath, new URL(import.meta.url).pathname, '--inside', join(tmp, 'steps.json')]);
  const nft = spawnSync('nft', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  const steps = JSON.parse(readFileSync(join(tmp, 'steps.json'), 'utf8'));
  const fixture = {
    about: 'nf_tables notifications (NFNLGRP_NFTABLES) captured by scripts/capture-nft-notifications.mjs in a fresh network namespace: each step is one nft invocation, each datagram as the socket received it (hex). Read by test/unit/nft-monitor-recorded.test.ts.',
    kernel,
    nft,
    captured: new Date().toISOString().slice(0, 10),
    steps,
  };
  writeFileSync(out, `${JSON.stringify(fixture, null, 1)}\n`);
  console.log(`capture-nft-notifications: ${steps.length} steps, ${steps.reduce((n, s) => n + s.datagrams.length, 0)} datagrams -> ${out}`);
} finally {
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(tmp, { recursive: true, force: true });
}
