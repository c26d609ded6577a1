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
  const cap = (rr: RR): RR => ({ ...rr, ttl: Math.min(rr.ttl, ttlMax) });
  out.authorities = upstream.authorities.filter((rr) => rr.type === TYPE.SOA && rr.class === 1).map(cap);
  if (upstream.flags.rcode !== RCODE.NOERROR) return out;

  const remaining = new Set(upstream.answers);
  let current = canonicalName(qname);
  const seen = new Set<string>([current]);
  for (let hop = 0; hop <= MAX_CHAIN; hop++) {
    const here = [...remaining].filter((rr) => canonicalName(rr.name) === current && rr.class === 1);
    const cname = here.find((rr) => rr.type === TYPE.CNAME && rr.data.kind === 'name');
    for (const rr of here) {
      if (rr.type === TYPE.CNAME) continue;
      remaining.delete(rr);
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
    if (!cname || cname.data.kind !== 'name' || qtype === TYPE.CNAME) {
      if (cname && qtype === TYPE.CNAME) {
        remaining.delete(cname);
        out.answers.push(cap(cname));
      }
      break;
    }
    remaining.delete(cname);
    out.answers.push(cap(cname));
    const next = canonicalName(cname.data.name);
    if (seen.has(next)) break; // a CNAME loop: stop, keep what is there
    seen.add(next);
    current = next;
  }
  out.offChain += remaining.size;
  return out;
}
