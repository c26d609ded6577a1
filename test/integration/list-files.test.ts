/**
 * Integration: a policy whose deny rule reads a threat feed from a list file
 * (`to_file:`, Spamhaus DROP and FireHOL formats mixed), applied in a
 * namespace: an address in the feed is refused, one beside it is not. Then
 * the daemon, watching the feed, applies a rewritten feed (a new address
 * blocked, an old one open again) and rejects a feed others can write,
 * keeping the policy in force.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { collectJsonLines, HOSTS, ROOT, stopChild, World } from '../world/world.js';

const t = (h: string, port: number) => `tcp:${h.includes(':') ? `[${h}]` : h}:${port}`;

describe('integration: list files (to_file) in the kernel', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  const logs: { message: string; alert?: string; error?: string }[] = [];
  let feed = '';
  let policy = '';
  const until = async (ok: () => Promise<boolean>, ms = 8_000) => {
    const end = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > end) return false;
      await sleep(100);
    }
    return true;
  };

  before(async () => {
    w = await World.create();
    mkdirSync(join(w.tmp, 'feeds'), { mode: 0o755 });
    feed = join(w.tmp, 'feeds', 'drop.txt');
    // Spamhaus DROP lines and FireHOL comments, CRLF, an IPv6 entry: the formats feeds come in.
    writeFileSync(feed, `; Spamhaus DROP List\r\n${HOSTS.other4}/32 ; SBL1\r\n# FireHOL\r\n${HOSTS.meta4}\r\n${HOSTS.other6}\r\n`, { mode: 0o644 });
    policy = w.policy(`mode: enforce\ndefault: allow\nrules:\n  - name: feed\n    action: deny\n    to_file: feeds/drop.txt\n`, 'lists.yaml');
  });
  after(async () => {
    await stopChild(daemon);
    await w?.destroy();
  });

  it('an address in the feed is refused, the addresses beside it are not', async () => {
    const before = await w.reach([t(HOSTS.other4, 443), t(HOSTS.meta4, 443), t(HOSTS.api4, 443), t(HOSTS.other6, 443), t(HOSTS.api6, 443)]);
    for (const [target, ok] of Object.entries(before)) assert.equal(ok, true, `${target} answers without a firewall`);
    const r = await w.sluiceJson<{ applied: boolean; elements: number }>(['apply', policy]);
    assert.equal(r.code, 0, r.stderr);
    const got = await w.reach([t(HOSTS.other4, 443), t(HOSTS.meta4, 443), t(HOSTS.api4, 443), t(HOSTS.other6, 443), t(HOSTS.api6, 443)]);
    assert.deepEqual(got, {
      [t(HOSTS.other4, 443)]: false,
      [t(HOSTS.meta4, 443)]: false,
      [t(HOSTS.api4, 443)]: true,
      [t(HOSTS.other6, 443)]: false,
      [t(HOSTS.api6, 443)]: true,
    });
    const status = await w.sluiceJson<{ live?: string; state?: string }>(['status']);
    assert.equal(status.code, 0, `status is live: ${JSON.stringify(status.json)}`);
  });

  it('a bad feed is refused at its FILE:LINE:COL and nothing is applied', async () => {
    const bad = join(w.tmp, 'feeds', 'bad.txt');
    writeFileSync(bad, `${HOSTS.api4}\n198.18.1.1/24 ; host bits\n`, { mode: 0o644 });
    const p = w.policy(`mode: enforce\ndefault: allow\nrules:\n  - name: feed\n    action: deny\n    to_file: [feeds/drop.txt, feeds/bad.txt]\n`, 'bad.yaml');
    const r = await w.sluice(['apply', p]);
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:1: host bits are set \\(the network is 198\\.18\\.1\\.0/24\\)`));
    assert.equal((await w.reach([t(HOSTS.api4, 443)]))[t(HOSTS.api4, 443)], true, 'the first feed entry was not applied half-way');
  });

  it('a feed of 700,000 IPv6 addresses, one nfnetlink batch larger than the socket\'s default send buffer, is applied', async () => {
    // ~28 bytes an element: ~20 MB in one datagram, which netlink refused (EMSGSIZE) before the send buffer grew to fit.
    const big = join(w.tmp, 'feeds', 'v6.txt');
    const lines: string[] = [];
    for (let i = 0; i < 700_000; i++) lines.push(`2001:db8:ff::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`);
    writeFileSync(big, `${lines.join('\n')}\n`, { mode: 0o644 });
    const p = w.policy(`mode: enforce\ndefault: allow\nrules:\n  - name: feed\n    action: deny\n    to_file: [feeds/drop.txt, feeds/v6.txt]\n`, 'big.yaml');
    const r = await w.sluiceJson<{ applied: boolean; elements: number }>(['apply', p]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.json.elements >= 700_000, `elements: ${r.json.elements}`);
    const got = await w.reach([t(HOSTS.other6, 443), t(HOSTS.api6, 443)]);
    assert.deepEqual(got, { [t(HOSTS.other6, 443)]: false, [t(HOSTS.api6, 443)]: true });
    // Back to the small feed for the daemon's test.
    assert.equal((await w.sluice(['apply', policy])).code, 0);
  });

  it('the daemon applies a rewritten feed, and rejects one others can write while the policy in force stays', async () => {
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    collectJsonLines(daemon.stderr, logs);
    // Replaced by rename, as a cron job writes it: api4 joins, meta4 leaves.
    const tmp = `${feed}.new`;
    writeFileSync(tmp, `${HOSTS.other4}\n${HOSTS.api4}\n`, { mode: 0o644 });
    renameSync(tmp, feed);
    assert.ok(await until(async () => (await w.reach([t(HOSTS.api4, 443)], { timeoutMs: 800 }))[t(HOSTS.api4, 443)] === false), 'the new feed entry is blocked after the reload');
    assert.equal((await w.reach([t(HOSTS.meta4, 443)]))[t(HOSTS.meta4, 443)], true, 'the entry gone from the feed is open again');
    assert.ok(logs.some((l) => l.message === 'reloaded'), 'reloaded by the daemon');

    chmodSync(feed, 0o666);
    writeFileSync(feed, `${HOSTS.other4}\n`);
    assert.ok(await until(async () => logs.some((l) => l.alert === 'reload-rejected')), `a reload-rejected alert: ${JSON.stringify(logs.slice(-5))}`);
    assert.match(JSON.stringify(logs.find((l) => l.alert === 'reload-rejected')), /writable by group or others/, 'rejected for the feed others can write');
    assert.equal((await w.reach([t(HOSTS.api4, 443)]))[t(HOSTS.api4, 443)], false, 'the policy in force stays');
  });
});
