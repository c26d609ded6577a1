import type { CompileEnv } from '../compile/compile-ruleset.js';
import { loadEncryptedDnsList } from '../dns/encrypted-dns-list.js';
import type { Policy } from '../policy/policy.js';
import { resolveCgroups } from './cgroups.js';
import { resolvConfUpstreams } from './resolv-conf.js';

/** Gathers the host facts a policy's compilation needs: cgroups of its services, DNS upstreams, the encrypted-DNS list. */
export function compileEnvFor(policy: Policy): CompileEnv {
  const env: CompileEnv = { cgroups: resolveCgroups(policy) };
  if (policy.dns.guard) {
    env.dns = {
      upstreams: policy.dns.upstreams ?? resolvConfUpstreams(),
      encrypted: policy.dns.encryptedDns === 'block' ? loadEncryptedDnsList(policy.dns.encryptedDnsList) : { addrs: [], names: [] },
    };
  }
  return env;
}

