import type { Family } from '../net/ip.js';

/**
 * Where the event collector and `sluice connections` find the name a
 * process resolved for an address. The DNS guard owns that knowledge and
 * fills this hook (`setHostnameSource`); monitoring only reads it, so the two
 * never import each other. Until a source is set, every lookup is undefined.
 */
export type HostnameSource = (family: Family, addr: bigint) => string | undefined;

let source: HostnameSource | undefined;

/** Installs (or, with undefined, removes) the function that names addresses. */
export function setHostnameSource(fn: HostnameSource | undefined): void {
  source = fn;
}

/** The DNS name last resolved to this address, when the DNS guard knows one. Never throws. */
export function hostnameFor(family: Family, addr: bigint): string | undefined {
  if (!source) return undefined;
  try {
    const name = source(family, addr);
    return typeof name === 'string' && name.length > 0 ? name.slice(0, 253) : undefined;
  } catch {
    return undefined;
  }
}
