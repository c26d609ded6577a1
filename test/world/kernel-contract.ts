/**
 * The Netfilter contract against the real kernel. Run only inside a test
 * namespace (test/integration/netfilter-contract.test.ts does that); it
 * refuses to run in the machine's own network namespace.
 *
 * Twice: with the kernel's own way of refreshing an element's timeout where
 * the probe finds it (Linux 6.12+), and forced onto the way kernels before
 * 6.12 need (delete and add again in one transaction), so both paths are held
 * to the contract on whatever kernel runs the tests. And the probe itself,
 * against what `nft` observes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { KernelNetfilter } from '../../src/netfilter/kernel-netfilter.js';
import { netfilterContract } from '../support/netfilter-contract.js';

// Positive check: this process must be in one of the test world's namespaces.
const ns = spawnSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).stdout.trim();
if (!/^slt-\d+-\d+-[cw]$/.test(ns)) {
  process.stderr.write(`kernel-contract: refusing to run outside a test namespace (in ${JSON.stringify(ns)})\n`);
  process.exit(3);
}
netfilterContract('kernel, nf_tables over netlink', () => new KernelNetfilter());
netfilterContract('kernel, refreshing timeouts as before Linux 6.12', () => new KernelNetfilter({ timeoutUpdates: false }));

it('the timeout-update probe says what nft sees this kernel do, and leaves no table behind', () => {
  const nft = (args: string[]) => {
    const r = spawnSync('nft', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, `nft ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  nft(['add table inet seen; add set inet seen s { type ipv4_addr; flags timeout; }']);
  nft(['add element inet seen s { 198.18.0.1 timeout 10s }']);
  nft(['add element inet seen s { 198.18.0.1 timeout 1h }']);
  const listed = nft(['list set inet seen s']);
  nft(['delete table inet seen']);
  const updates = /timeout 1h/.test(listed);
  assert.ok(updates || /timeout 10s/.test(listed), `nft listed: ${listed}`);
  const nf = new KernelNetfilter();
  try {
    assert.equal(nf.timeoutUpdates(), updates, `nft listed: ${listed}`);
    assert.equal(nf.timeoutUpdates(), updates, 'asked again: the same (probed once)');
  } finally {
    nf.close();
  }
  assert.doesNotMatch(nft(['list tables']), /sluice_probe/);
});
