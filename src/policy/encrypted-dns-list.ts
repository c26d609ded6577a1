import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PolicyError, type PolicyIssue } from '../errors.js';
import { parsePrefix, type AddrRange } from '../net/ip.js';
import { parseDomain } from './parse-values.js';
import type { Policy } from './policy.js';

/** Encrypted DNS endpoints: addresses blocked on 443 and 853, names the guard will not resolve. */
export interface EncryptedDnsList {
  addrs: AddrRange[];
  names: string[];
}

/** The list shipped with Sluice (policies/encrypted-dns.txt). */
export const SHIPPED_LIST = fileURLToPath(new URL('../../../policies/encrypted-dns.txt', import.meta.url));

/** Parses the list: one address or domain name per line, `#` comments. Errors carry file and line. */
export function parseEncryptedDnsList(text: string, file: string): EncryptedDnsList {
  const addrs: AddrRange[] = [];
  const names: string[] = [];
  const issues: PolicyIssue[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const issue = (message: string) => issues.push({ file, line: i + 1, column: raw.indexOf(line) + 1, path: [], message, severity: 'error' });
    if (/^[0-9.]+$|:/.test(line)) {
      const p = parsePrefix(line);
      if (!p.ok || p.range.start !== p.range.end) return issue(`not a single address: ${JSON.stringify(line)}`);
      addrs.push(p.range);
      return;
    }
    const d = parseDomain(line);
    if (!d.ok || d.value.wildcard) return issue(`not an address or a domain name: ${JSON.stringify(line)}`);
    names.push(d.value.name);
  });
  if (issues.length > 0) throw new PolicyError(issues);
  return { addrs, names };
}

/** Reads the list from `path`, or the shipped one. */
export function loadEncryptedDnsList(path: string | null): EncryptedDnsList {
  const file = path ?? SHIPPED_LIST;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PolicyError([{ file, line: 1, column: 1, path: [], message: `cannot read the encrypted DNS list: ${(err as NodeJS.ErrnoException).code ?? 'EIO'}`, severity: 'error' }]);
  }
  return parseEncryptedDnsList(text, file);
}

/** The encrypted-DNS endpoints a policy blocks (none when `encrypted_dns` is not `block`). */
export function encryptedDnsFor(policy: Pick<Policy, 'dns'>): EncryptedDnsList {
  return policy.dns.encryptedDns === 'block' ? loadEncryptedDnsList(policy.dns.encryptedDnsList) : { addrs: [], names: [] };
}
