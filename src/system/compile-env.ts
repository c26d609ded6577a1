import type { CompileEnv } from '../compile/compile-ruleset.js';
import { loadEncryptedDnsList } from '../dns/encrypted-dns-list.js';
import type { AddrRange } from '../net/ip.js';
import type { Policy } from '../policy/policy.js';
import { resolveCgroups } from './cgroups.js';
import { resolvConfUpstreams } from './resolv-conf.js';

/** The resolvers the DNS guard forwards to: the policy's, else the host's (resolv.conf). */
export function dnsUpstreamsFor(policy: Policy): AddrRange[] {
  return policy.dns.upstreams ?? resolvConfUpstreams();
}

/**
 * The resolvers audit mode trusts replies from: the policy's, else every
 * nameserver of resolv.conf, a loopback stub included (the host's programs
 * ask it; it asks resolvers of its own, which the policy should then name).
 */
export function observedResolversFor(policy: Policy): AddrRange[] {
  return policy.dns.upstreams ?? resolvConfUpstreams(undefined, { loopback: true });
}

/** The encrypted-DNS endpoints the policy blocks (none when `encrypted_dns` is not `block`). */
export function encryptedDnsFor(policy: Policy): NonNullable<CompileEnv['dns']>['encrypted'] {
  return policy.dns.encryptedDns === 'block' ? loadEncryptedDnsList(policy.dns.encryptedDnsList) : { addrs: [], names: [] };
}

/**
 * Gathers the host facts a policy's compilation needs: cgroups of its
 * services (resolved here unless the caller already did), DNS upstreams, the
 * encrypted-DNS list.
 */
export function compileEnvFor(policy: Policy, cgroups = resolveCgroups(policy)): CompileEnv {
  const env: CompileEnv = { cgroups };
  if (policy.dns.guard) {
    env.dns = {
      upstreams: dnsUpstreamsFor(policy),
      encrypted: encryptedDnsFor(policy),
    };
  }
  return env;
}

