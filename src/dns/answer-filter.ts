import { formatAddr, type Family } from '../net/ip.js';
import { canonicalName, mandatoryKeys, RCODE, SVC_KEY, TYPE, type Message, type RR, type SvcParam } from './dns-message.js';
import type { RebindingFilter } from './rebinding.js';

/** An address the answer opens, with the TTL of its record. */
export interface LearnedAddress {
  family: Family;
  addr: bigint;
  ttl: number;
  /** The owner name of the A/AAAA (or SVCB/HTTPS) record (the end of the CNAME chain). */
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
  /** The names on the CNAME chain, canonical, the queried name first. */
  names: string[];
  /** Target names of the SVCB/HTTPS records passed on (canonical; "." left out): where a client goes next. */
  targets: string[];
  /** Addresses (records or hint values) left out because the answer already held its limit. */
  overLimit: number;
}

export interface FilterOptions {
  /** TTLs are capped at this (seconds). */
  ttlMax: number;
  /** At most this many addresses are opened, and passed on, per answer. */
  maxAddresses?: number;
}

const MAX_CHAIN = 16;

/**
 * Keeps only what answers the question: records on the CNAME chain from the
 * queried name (RFC 1034 section 3.6.2), in chain order, with TTLs capped at
 * ttlMax. Unrelated records (cache-poisoning attempts, glue) are left out.
 * Addresses pointing where a public name should never point are dropped
 * (rebinding): A and AAAA records, and the values of SVCB/HTTPS address
 * hints (RFC 9460 section 7.3), whose records are rewritten without them.
 * Beyond `maxAddresses`, addresses are left out of the answer too, so a
 * client is never handed an address the firewall did not open. Negative
 * answers keep their SOA for negative caching (RFC 2308); nothing else is
 * passed in the authority section.
 */
export function filterAnswer(qname: string, qtype: number, upstream: Message, rebinding: RebindingFilter, opts: FilterOptions): FilteredAnswer {
  const ttlMax = opts.ttlMax;
  const limit = opts.maxAddresses ?? Infinity;
  const first = canonicalName(qname);
  const out: FilteredAnswer = { rcode: upstream.flags.rcode, answers: [], authorities: [], addresses: [], dropped: [], offChain: 0, names: [first], targets: [], overLimit: 0 };
  // TTLs capped at ttlMax (a copy only when the cap changes it).
  const cap = (rr: RR): RR => (rr.ttl > ttlMax ? { ...rr, ttl: ttlMax } : rr);
  for (const rr of upstream.authorities) if (rr.type === TYPE.SOA && rr.class === 1) out.authorities.push(cap(rr));
  if (upstream.flags.rcode !== RCODE.NOERROR) return out;

  const all = upstream.answers;
  // Records not yet placed on the chain (one flag each: this runs for every answer the guard forwards).
  const used = new Uint8Array(all.length);
  let left = all.length;
  let current = first;
  const seen = out.names;
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
        if (out.addresses.length >= limit) {
          out.overLimit++;
          continue;
        }
        out.addresses.push({ family, addr: rr.data.addr, ttl: Math.min(rr.ttl, ttlMax), owner: rr.name });
      } else if (rr.data.kind === 'svcb') {
        const kept = filterService(rr, rebinding, out, Math.min(rr.ttl, ttlMax), limit);
        if (!kept) continue;
        out.answers.push(cap(kept));
        continue;
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

/**
 * An SVCB/HTTPS record with its address hints filtered like A/AAAA answers:
 * failing values are dropped, a hint left empty is removed, and a record
 * whose `mandatory` list names a removed hint is dropped whole (it cannot
 * work without it, RFC 9460 section 8). AliasMode records (priority 0) lose
 * their hints and open nothing: clients must ignore their SvcParams
 * (section 2.4.2). The passing hint values are added to the answer's
 * addresses. Returns null when the record is dropped.
 */
function filterService(rr: RR, rebinding: RebindingFilter, out: FilteredAnswer, ttl: number, limit: number): RR | null {
  const d = rr.data;
  if (d.kind !== 'svcb') return rr;
  let params: SvcParam[] | undefined;
  const opened: LearnedAddress[] = [];
  const removed: number[] = [];
  for (let i = 0; i < d.params.length; i++) {
    const p = d.params[i] as SvcParam;
    const family: Family | 0 = p.key === SVC_KEY.IPV4HINT ? 4 : p.key === SVC_KEY.IPV6HINT ? 6 : 0;
    if (family === 0) {
      params?.push(p);
      continue;
    }
    const size = family === 4 ? 4 : 16;
    const keep: Buffer[] = [];
    if (d.priority !== 0) {
      for (let at = 0; at + size <= p.value.length; at += size) {
        const addr = family === 4 ? BigInt(p.value.readUInt32BE(at)) : (p.value.readBigUInt64BE(at) << 64n) | p.value.readBigUInt64BE(at + 8);
        const why = rebinding.check(family, addr);
        if (why) {
          out.dropped.push({ address: formatAddr(family, addr), why });
          continue;
        }
        if (out.addresses.length + opened.length >= limit) {
          out.overLimit++;
          continue;
        }
        opened.push({ family, addr, ttl, owner: rr.name });
        keep.push(p.value.subarray(at, at + size));
      }
    }
    if (keep.length * size === p.value.length) {
      params?.push(p);
      continue;
    }
    // Changed: from here on the record is rebuilt.
    params ??= d.params.slice(0, i);
    if (keep.length > 0) params.push({ key: p.key, value: Buffer.concat(keep) });
    else removed.push(p.key);
  }
  if (removed.length > 0 && mandatoryKeys(d.params).some((k) => removed.includes(k))) return null;
  if (d.target !== '.' && d.target !== '') {
    const target = canonicalName(d.target);
    if (!out.targets.includes(target)) out.targets.push(target);
  }
  for (const a of opened) out.addresses.push(a);
  return params ? { ...rr, data: { ...d, params } } : rr;
}
