/**
 * The policy file watch says "look" once per save, however the editor
 * saves (in place, or a new file renamed over the old one), and not for
 * other files in the directory.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { PolicyFileWatch } from '../../src/daemon/policy-file-watch.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-pfw-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('unit: the policy file watch', () => {
  it('one call per save, in place or by rename; nothing for other files; nothing once disarmed', async () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'a');
    let calls = 0;
    const w = new PolicyFileWatch(() => calls++, 50, 3_600_000);
    w.arm(file);
    writeFileSync(file, 'b');
    writeFileSync(file, 'bb');
    await sleep(200);
    assert.equal(calls, 1, 'a burst of writes is one call');
    writeFileSync(join(dir, 'policy.yaml.tmp'), 'c');
    renameSync(join(dir, 'policy.yaml.tmp'), file);
    await sleep(200);
    assert.equal(calls, 2, 'an editor that saves by rename');
    writeFileSync(join(dir, 'other.yaml'), 'x');
    await sleep(200);
    assert.equal(calls, 2, 'another file in the directory');
    w.disarm();
    writeFileSync(file, 'd');
    await sleep(200);
    assert.equal(calls, 2, 'disarmed');
  });

  it('the list files a policy reads are watched too, in their own directories; re-armed when the list changes', async () => {
    const file = join(dir, 'with-lists.yaml');
    const feeds = join(dir, 'feeds');
    mkdirSync(feeds);
    const feed = join(feeds, 'drop.txt');
    writeFileSync(file, 'a');
    writeFileSync(feed, '198.18.0.1');
    let calls = 0;
    const w = new PolicyFileWatch(() => calls++, 50, 3_600_000);
    w.arm(file, [feed]);
    writeFileSync(feed, '198.18.0.2');
    await sleep(200);
    assert.equal(calls, 1, 'a feed rewritten in place');
    writeFileSync(join(feeds, 'drop.txt.tmp'), '198.18.0.3');
    renameSync(join(feeds, 'drop.txt.tmp'), feed);
    await sleep(200);
    assert.equal(calls, 2, 'a feed replaced by rename');
    writeFileSync(join(feeds, 'other.txt'), 'x');
    await sleep(200);
    assert.equal(calls, 2, 'another file beside the feed');
    w.arm(file, []);
    writeFileSync(feed, '198.18.0.4');
    await sleep(200);
    assert.equal(calls, 2, 'a feed the policy no longer reads');
    w.disarm();
  });

  it('re-arming on another path watches that one; the poll is the backstop where the directory cannot be watched', async () => {
    let calls = 0;
    const w = new PolicyFileWatch(() => calls++, 20, 60);
    w.arm(join(dir, 'no-such-dir', 'p.yaml'));
    await sleep(200);
    assert.ok(calls >= 2, `polled (${calls})`);
    const file = join(dir, 'second.yaml');
    writeFileSync(file, 'a');
    w.arm(file);
    w.arm(file);
    calls = 0;
    writeFileSync(file, 'b');
    await sleep(40);
    assert.ok(calls >= 1);
    w.disarm();
  });
});
