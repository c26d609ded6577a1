import { networkInterfaces } from 'node:os';
import { parseAddr, type Family } from './ip.js';

/**
 * Every address of every interface of this host (network namespace): what
 * the kernel's `fib daddr type local` matches, so what the ruleset admits as
 * "to this host".
 */
export function hostAddresses(): { family: Family; value: bigint }[] {
  const out: { family: Family; value: bigint }[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const p = parseAddr(a.address.split('%')[0] ?? '');
      if (p) out.push(p);
    }
  }
  return out;
}
