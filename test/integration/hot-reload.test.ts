/**
 * Integration: the daemon reloads its policy when the file changes, through
 * the same path as SIGHUP (load, compile, one atomic apply, read back). A
 * broken file is rejected with an alert and the policy in force stays; the
 * fixed file is then applied. Editors that save by renaming a new file over
 * the old one are seen too.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { collectJsonLines, HOSTS, ROOT, stopChild, World } from '../world/world.js';

const policy = (extra: string) => `mode: enforce\nrules:\n  - name: lan\n    to: [198.18.4.0/24]\n${extra}`;
const API = `  - name: api\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n`;
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('integration: hot reload on a change of the policy file', () => {
  let w: World;
  let daemon: ChildProcess | undefined;
  const logs: { message: string; alert?: string; error?: string }[] = [];
  let file = '';
  const tableSha = async () => /policy=sha256:([0-9a-f]+)/.exec((await w.exec(['nft', '-t', 'list', 'table', 'inet', 'sluice'])).stdout)?.[1] ?? null;
  const until = async (ok: () => Promise<boolean>, ms = 5_000) => {
    const end = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > end) return false;
      await sleep(50);
    }
    return true;
  };
  const api = async () => (await w.reach([`tcp:${HOSTS.api4}:443`], { timeoutMs: 800 }))[`tcp:${HOSTS.api4}:443`];

  before(async () => {
    w = await World.create();
    file = w.policy(policy(''), 'watched.yaml');
    const r = await w.sluice(['apply', file]);
    assert.equal(r.code, 0, r.stderr);
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running' });
    collectJsonLines(daemon.stderr, logs);
  });
  after(async () => {
    await stopChild(daemon);
    await w?.destroy();
  });

  it('an edit is applied; a broken edit is rejected with an alert and the policy in force stays; the fix is applied', async () => {
    assert.equal(await api(), false, 'blocked before the edit');
    const withApi = policy(API);
    writeFileSync(file, withApi);
    assert.ok(await until(async () => (await tableSha()) === sha(withApi)), 'the edited policy is in the kernel');
    assert.equal(await api(), true, 'allowed after the edit');

    const broken = `${withApi}  - name: oops\n    to: [not an address\n`;
    writeFileSync(file, broken);
    assert.ok(await until(async () => logs.some((l) => l.alert === 'reload-rejected')), 'a reload-rejected alert');
    const alert = logs.find((l) => l.alert === 'reload-rejected');
    assert.match(alert?.message ?? '', /Reload rejected; the policy in force stays: /);
    assert.equal(await tableSha(), sha(withApi), 'the policy in force stays');
    assert.equal(await api(), true);
    await sleep(600);
    assert.equal(logs.filter((l) => l.alert === 'reload-rejected').length, 1, 'the same broken content is not tried again');

    // Saved the way many editors do: a new file renamed over the old one.
    const fixed = policy('');
    writeFileSync(`${file}.swp`, fixed);
    renameSync(`${file}.swp`, file);
    assert.ok(await until(async () => (await tableSha()) === sha(fixed)), `the fixed policy is in the kernel: ${JSON.stringify(logs.slice(-6))}`);
    assert.equal(await api(), false, 'blocked again');
    assert.equal(logs.filter((l) => l.alert === 'tamper').length, 0, 'reloads are not tampering');
  });
});
