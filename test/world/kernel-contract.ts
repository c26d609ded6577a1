/**
 * The Netfilter contract against the real kernel. Run only inside a test
 * namespace (test/integration/netfilter-contract.test.ts does that); it
 * refuses to run in the machine's own network namespace.
 */
import { spawnSync } from 'node:child_process';
import { KernelNetfilter } from '../../src/netfilter/kernel-netfilter.js';
import { netfilterContract } from '../support/netfilter-contract.js';

// Positive check: this process must be in one of the test world's namespaces.
const ns = spawnSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).stdout.trim();
if (!/^slt-\d+-\d+-[cw]$/.test(ns)) {
  process.stderr.write(`kernel-contract: refusing to run outside a test namespace (in ${JSON.stringify(ns)})\n`);
  process.exit(3);
}
netfilterContract('kernel, nf_tables over netlink', () => new KernelNetfilter());
