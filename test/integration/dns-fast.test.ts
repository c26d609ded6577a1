/**
 * Integration: the DNS guard's fast path (native/dns_fast.c) attacked by an
 * unprivileged user. Cache hits are answered on the listeners' own threads;
 * a user (uid 65534) sends them broken, oversized, mutated and odd queries,
 * through the kernel's port-53 redirect and straight to the guard's port on
 * 127.0.0.1 and ::1. The daemon must stay up, and every proper question
 * after the attack must get a strictly well-formed answer with the right
 * address, answered by the fast path.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DNS_DEFAULTS } from '../../src/policy/policy.js';
import { must, ROOT, World } from '../world/world.js';

const UPSTREAM = '198.18.5.53';
const FUZZ = join(ROOT, 'dist/test/world/dns-fuzz-client.js');

interface FastStatus {
  components: { 'dns-guard': { fastPath: { entries: number; threads: { received: number; answered: number; forwarded: number; dropped: number }[] } | null; cache: { hits: number } } };
}

describe('integration: the DNS guard fast path under attack by an unprivileged user', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let stderr = '';

  before(async () => {
    w = await World.create({ dns: true });
    await w.addLocalRange('198.18.7.0/24');
    await must(['ip', '-n', w.world, 'addr', 'add', `${UPSTREAM}/32`, 'dev', 'lo']);
    writeFileSync(join(w.tmp, 'script.json'), JSON.stringify({ names: { '*.z.test': { records: [{ type: 'A', addr: '198.18.7.1', ttl: 3600 }] } } }));
    await w.spawnReady(w.world, [process.execPath, join(ROOT, 'dist/test/world/hostile-dns.js'), '--addrs', UPSTREAM, '--script', join(w.tmp, 'script.json'), '--log', join(w.tmp, 'upstream.log')]);
    const policy = w.policy(`mode: enforce\ndns:\n  upstreams: [${UPSTREAM}]\nrules:\n  - name: z\n    to: ["*.z.test"]\n    ports: [443/tcp]\n`);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', policy, '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    daemon.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    daemon.once('exit', (code, signal) => (exited = { code, signal }));
  });
  after(async () => {
    const d = daemon;
    if (d && d.exitCode === null) {
      const gone = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      await gone;
    }
    await w?.destroy();
  });

  for (const [label, server, port] of [
    ['through the port-53 redirect', UPSTREAM, 53],
    ["straight to the guard's port on 127.0.0.1", '127.0.0.1', DNS_DEFAULTS.port],
    ["straight to the guard's port on ::1", '::1', DNS_DEFAULTS.port],
  ] as const) {
    it(`${label}: the daemon stays up, and every proper question after the attack is answered right, by the fast path`, async () => {
      const before = (await w.control('status')) as FastStatus;
      const r = await w.exec([process.execPath, FUZZ, '--server', server, '--port', String(port), '--name', 'h1.z.test', '--addr', '198.18.7.1', '--seconds', '2'], { uid: 65534, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim()) as { sent: number; ok: number; bad: number; fails: string[] };
      assert.equal(exited, undefined, `the daemon is up: ${stderr.slice(-2000)}`);
      assert.ok(out.sent > 1000, `hostile datagrams sent: ${out.sent}`);
      assert.deepEqual([out.ok, out.fails], [300, []], 'every proper question got a strict, right answer');
      const after = (await w.control('status')) as FastStatus;
      const sum = (s: FastStatus, k: 'answered' | 'received') => s.components['dns-guard'].fastPath?.threads.reduce((n, t) => n + t[k], 0) ?? 0;
      assert.ok(sum(after, 'answered') - sum(before, 'answered') >= 300, `the fast path answered ${sum(after, 'answered') - sum(before, 'answered')} of them`);
      assert.ok(sum(after, 'received') - sum(before, 'received') >= out.sent, 'the fast path read every datagram');
    });
  }
});
