import { formatAddr, type Family } from '../net/ip.js';
import { canonicalName, RCODE, TYPE, type Message, type RR } from './dns-message.js';
import type { RebindingFilter } from './rebinding.js';

/** An address the answer opens, with the TTL of its record. */
export interface LearnedAddress {
  family: Family;
  addr: bigint;
  ttl: number;
  /** The owner name of the A/AAAA record (the end of the CNAME chain). */
  owner: string;
}

export interface FilteredAnswer {
  rcode: number;
  answers: RR[];
  authorities: RR[];
  addresses: LearnedAddress[];
  dropped: { address: string; why: string }[];
  /** Records left out because they were not on the chain from the queried name. */
  offChain: number;
}

const MAX_CHAIN = 16;

/**
 * Keeps only what answers the question: records on the CNAME chain from the
 * queried name (RFC 1034 section 3.6.2), in chain order, with TTLs capped at
 * ttlMax. Unrelated records (cache-poisoning attempts, glue) are left out.
 * A and AAAA records pointing where a public name should never point are
 * dropped (rebinding). Negative answers keep their SOA for negative caching
 * (RFC 2308); nothing else is passed in the authority section.
 */
export function filterAnswer(qname: string, qtype: number, upstream: Message, rebinding: RebindingFilter, ttlMax: number): FilteredAnswer {
  const out: FilteredAnswer = { rcode: upstream.flags.rcode, answers: [], authorities: [], addresses: [], dropped: [], offChain: 0 };
  // TTLs capped at ttlMax (a copy only when the cap changes it).
  const cap = (rr: RR): RR => (rr.ttl > ttlMax ? { ...rr, ttl: ttlMax } : rr);
  for (const rr of upstream.authorities) if (rr.type === TYPE.SOA && rr.class === 1) out.authorities.push(cap(rr));
  if (upstream.flags.rcode !== RCODE.NOERROR) return out;

  const all = upstream.answers;
  // Records not yet placed on the chain (one flag each: this runs for every answer the guard forwards).
  const used = new Uint8Array(all.length);
  let left = all.length;
  let current = canonicalName(qname);
  const seen: string[] = [current];
  for (let hop = 0; hop <= MAX_CHAIN; hop++) {
    let cname = -1;
    for (let i = 0; i < all.length; i++) {
      const rr = all[i] as RR;
      if (used[i] || rr.class !== 1 || canonicalName(rr.name) !== current) continue;
      if (rr.type === TYPE.CNAME) {
        if (cname < 0 && rr.data.kind === 'name') cname = i;
        continue;
      }
      used[i] = 1;
      left--;
      if (rr.type !== qtype && qtype !== TYPE.ANY) {
        out.offChain++;
        continue;
      }
      if (rr.data.kind === 'a' || rr.data.kind === 'aaaa') {
        const family: Family = rr.data.kind === 'a' ? 4 : 6;
        const why = rebinding.check(family, rr.data.addr);
        if (why) {
          out.dropped.push({ address: formatAddr(family, rr.data.addr), why });
          continue;
        }
        out.addresses.push({ family, addr: rr.data.addr, ttl: Math.min(rr.ttl, ttlMax), owner: rr.name });
      }
      out.answers.push(cap(rr));
    }
    if (cname < 0) break;
    const c = all[cname] as RR;
    used[cname] = 1;
    left--;
    out.answers.push(cap(c));
    if (qtype === TYPE.CNAME || c.data.kind !== 'name') break;
    const next = canonicalName(c.data.name);
    if (seen.includes(next)) break; // a CNAME loop: stop, keep what is there
    seen.push(next);
    current = next;
  }
  out.offChain += left;
  return out;
}
