import { compileRuleset, type CompileEnv, type CompileResult, type ResolvedCgroup } from '../compile/compile-ruleset.js';
import { encryptedDnsFor } from '../policy/encrypted-dns-list.js';
import type { AddrRange } from '../net/ip.js';
import type { HostFacts } from '../policy/builtins.js';
import type { Policy } from '../policy/policy.js';
import { dhcpLeaseServers } from './dhcp-leases.js';
import { dhcpClientUids } from './users.js';
import { resolveServices, resolveServicesAsync, type ServiceResolution } from './resolve-services.js';
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

// The encrypted-DNS endpoints the policy blocks: defined beside the list's parser (no compiler to load for it).
export { encryptedDnsFor };

/** The host facts Sluice's built-ins depend on (DHCP servers and users, DNS upstreams, the encrypted-DNS list), for the compiler and for explain. */
export function hostFactsFor(policy: Policy): HostFacts {
  const facts: HostFacts = {};
  if (policy.essentials) {
    facts.dhcpServers = dhcpLeaseServers();
    facts.dhcpUids = dhcpClientUids();
  }
  if (policy.dns.guard) {
    facts.dns = {
      upstreams: dnsUpstreamsFor(policy),
      encrypted: encryptedDnsFor(policy),
    };
  }
  return facts;
}

/** Gathers what a policy's compilation needs: the cgroups of its services (as resolved by the caller) and the host facts. */
export function compileEnvFor(policy: Policy, cgroups: Map<string, ResolvedCgroup[]>): CompileEnv {
  return { cgroups, ...hostFactsFor(policy) };
}

/**
 * Compiles a policy for this host with a service resolution already made;
 * what the resolution refused or could not learn leads the warnings.
 */
export function compileResolved(policy: Policy, services: ServiceResolution): CompileResult {
  const result = compileRuleset(policy, compileEnvFor(policy, services.cgroups));
  return services.notes.length === 0 ? result : { ...result, warnings: [...services.notes, ...result.warnings] };
}

/** Resolves services synchronously and compiles (the CLI: apply, plan, check). */
export function compileForHost(policy: Policy): CompileResult {
  return compileResolved(policy, resolveServices(policy));
}

/** Resolves services off the event loop and compiles (the daemon: start and reload). */
export async function compileForHostAsync(policy: Policy): Promise<CompileResult> {
  return compileResolved(policy, await resolveServicesAsync(policy));
}
