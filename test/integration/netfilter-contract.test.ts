/** Integration: the Netfilter contract suite, run by the kernel implementation inside a fresh namespace. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, World } from '../world/world.js';

describe('integration: Netfilter contract against the kernel', () => {
  let w: World;
  before(async () => {
    // Loopback only: the contract reads every named counter back at zero, and
    // a veth sends its link-local DAD solicitation and MLD reports in the first
    // seconds after it comes up (4 reports and 1 solicitation in 10 s here),
    // into a named counter at a moment nobody chose (a full run saw one at 1).
    w = await World.create({ servers: false, links: false });
  });
  after(async () => {
    await w?.destroy();
  });

  it('the kernel implementation passes every contract test', async () => {
    // A nested node --test must not inherit the parent runner's child protocol.
    const { NODE_TEST_CONTEXT: _parent, ...env } = process.env;
    const r = await w.exec([process.execPath, '--test', '--test-reporter=tap', join(ROOT, 'dist/test/world/kernel-contract.js')], { timeoutMs: 120_000, env });
    const pass = Number(/^# pass (\d+)$/m.exec(r.stdout)?.[1] ?? 0);
    const fail = Number(/^# fail (\d+)$/m.exec(r.stdout)?.[1] ?? -1);
    assert.equal(r.code, 0, `contract run failed:\n${r.stdout.split('\n').filter((l) => /not ok|Error|expected|actual/.test(l)).join('\n')}\n${r.stderr}`);
    assert.equal(fail, 0);
    assert.ok(pass >= 7, `expected the whole contract to run, ${pass} passed`);
  });
});
