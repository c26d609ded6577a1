import { canonicalName, RCODE, TYPE, type EdnsOption, type RR } from './dns-message.js';
import type { LearnedAddress } from './answer-filter.js';

/**
 * One answer the guard handed out, kept as records (not as a packet): each
 * reply from the cache is built for its own client (id, question spelling,
 * EDNS size, truncation) from these.
 */
export interface CachedAnswer {
  /** The question, canonical (cacheKey). */
  name: string;
  type: number;
  /** When the answer arrived from upstream (ms since the epoch): TTLs count down from here. */
  storedAt: number;
  /** The last moment (ms) at which every record still has a TTL of at least 1 s to hand out. */
  expiresAt: number;
  rcode: number;
  /** Records as the answer filter left them (TTLs capped at ttl_max, counted from storedAt). */
  answers: RR[];
  authorities: RR[];
  /** The addresses the answer opens, with their records' TTLs (counted from storedAt). */
  addresses: LearnedAddress[];
  /** The names on the CNAME chain (canonical, the question first) and SVCB/HTTPS targets: the policy is asked about each again on every hit. */
  names: string[];
  targets: string[];
  /** Extended errors the first answer carried (addresses left out over the per-answer limit). */
  ede: EdnsOption[];
  /** The upstream's AD bit. */
  ad: boolean;
  /** What the policy decided when it was stored: set and rule names (a reload drops the entry when this changes). */
  decided: string;
  /** Times it was handed out; a refresh ahead of expiry (prefetch) is under way. */
  uses: number;
  prefetching: boolean;
  /** In the fast path's table (fast-answers.ts): its key there, its id, and until when it is handed out from there. */
  fastKey?: Buffer | undefined;
  fastId?: number | undefined;
  fastUntil?: number | undefined;
  /** The question the fast path's entry was made from (its spelling: the records' pointers lead into it). */
  fastQuestion?: { name: string; type: number; class: number } | undefined;
  /** The rules a fast-path hit is recorded against (those of the decision it was put there under). */
  fastRules?: readonly string[];
  /** When hits answered by the fast path last refreshed the entry's addresses in the learned state and the kernel. */
  refreshedAt?: number;
  /** The answer's addresses as text, for the events of its hits (made once). */
  addressTexts?: string[];
  /** Where the answer sits in the LRU list. */
  prev: CachedAnswer | null;
  next: CachedAnswer | null;
  key: string;
}

export interface AnswerCacheStats {
  hits: number;
  misses: number;
  /** Entries pushed out by newer ones (the cache was full). */
  evictions: number;
  /** Entries dropped because their time ran out. */
  expired: number;
  /** Entries dropped because a reload changed what the policy says about them (or the settings that shaped them). */
  invalidated: number;
  inserts: number;
  /** Popular entries fetched again ahead of their expiry, and such fetches that failed or were not kept. */
  prefetches: number;
  prefetchFailures: number;
}

/**
 * The key of a question: the canonical name (presentation form with escapes,
 * ASCII case folded: two keys are equal exactly when the wire names are
 * equal ignoring ASCII case, RFC 4343), the type, and the DO bit (an answer
 * with signatures is not one without). The class is always IN (the guard
 * refuses others). Nothing about the asker is in it: the policy decides by
 * name only, and an answer opens the same sets for every asker.
 */
export function cacheKey(name: string, type: number, dnssecOk: boolean): string {
  return `${type}|${dnssecOk ? 1 : 0}|${canonicalName(name)}`;
}

/**
 * How an answer is cached, or null when it must not be: `seconds`, the time
 * it may be handed out after it arrived (the smallest TTL of its records),
 * and its authority records as cached. Only NOERROR and NXDOMAIN answers.
 * Positive: records of the asked type are present. Anything else (NXDOMAIN,
 * NODATA, a CNAME chain that ends without the type) is negative, cached for
 * min(SOA TTL, SOA MINIMUM), at most `maxNegative` seconds (RFC 2308
 * section 5), with the SOA handed out at that TTL (section 3); a negative
 * answer without an SOA is not cached (section 5).
 */
export function prepareForCache(qtype: number, rcode: number, answers: readonly RR[], authorities: readonly RR[], maxNegative: number): { seconds: number; authorities: RR[] } | null {
  if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) return null;
  const positive = rcode === RCODE.NOERROR && answers.some((rr) => rr.type === qtype || qtype === TYPE.ANY);
  let min = Infinity;
  for (const rr of answers) min = Math.min(min, rr.ttl);
  let auth = authorities as RR[];
  if (!positive) {
    const soa = authorities.find((rr) => rr.type === TYPE.SOA && rr.data.kind === 'soa');
    if (!soa) return null;
    const neg = negativeTtl(soa, maxNegative);
    min = Math.min(min, neg);
    auth = authorities.map((rr) => (rr === soa ? { ...rr, ttl: neg } : rr));
  }
  if (!Number.isFinite(min)) return null;
  return { seconds: Math.max(0, Math.floor(min)), authorities: auth };
}

/** RFC 2308 section 5: a negative answer lives min(SOA TTL, SOA MINIMUM), here at most `max` seconds. */
export function negativeTtl(soa: RR, max: number): number {
  return soa.data.kind === 'soa' ? Math.min(soa.ttl, soa.data.minimum, max) : 0;
}

/**
 * Whole seconds to take off every TTL at `now`: rounded up, so a client is
 * never told to keep a record past the moment it would have expired had it
 * been asked upstream when the answer arrived.
 */
export function ageSeconds(storedAt: number, now: number): number {
  return now <= storedAt ? 0 : Math.ceil((now - storedAt) / 1000);
}

/** The records with their TTLs counted down by `age` seconds (copies; the cached ones are never changed). */
export function countDown(list: readonly RR[], age: number): RR[] {
  return list.map((rr) => ({ ...rr, ttl: Math.max(0, rr.ttl - age) }));
}

/** A bound as given when it is a whole number above 0; anything else (0, missing, not a number) keeps nothing. */
function boundOf(n: number): number {
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/**
 * Whether a hit on `e` at `now` should fetch the answer again ahead of its
 * expiry (as unbound's prefetch): the entry was handed out at least twice
 * before, lives at least 10 s, and is in the last tenth of its life. The
 * popular names are then refreshed before they expire, and their askers
 * never wait for the upstream.
 */
export function wantsPrefetch(e: CachedAnswer, now: number): boolean {
  const life = e.expiresAt - e.storedAt;
  return !e.prefetching && e.uses >= 2 && life >= 10_000 && e.expiresAt - now <= life / 10;
}

/**
 * A bounded map of answers in least-recently-used order, with TTL expiry:
 * a lookup that finds an entry past its time removes it and misses. The
 * LRU list is intrusive (each entry carries its neighbours), so a hit moves
 * an entry without allocating.
 */
export class AnswerCache {
  readonly stats: AnswerCacheStats = { hits: 0, misses: 0, evictions: 0, expired: 0, invalidated: 0, inserts: 0, prefetches: 0, prefetchFailures: 0 };
  private map = new Map<string, CachedAnswer>();
  /** Least recently used first. */
  private head: CachedAnswer | null = null;
  private tail: CachedAnswer | null = null;

  private cap: number;
  /** Told of every entry that leaves (evicted, expired, invalidated, replaced, cleared): the fast path drops it too. */
  onDrop: ((e: CachedAnswer) => void) | undefined;

  constructor(cap: number) {
    this.cap = boundOf(cap);
  }

  get size(): number {
    return this.map.size;
  }

  get capacity(): number {
    return this.cap;
  }

  /** A new bound; the least recently used entries beyond it leave at once (counted as evictions). */
  set capacity(n: number) {
    this.cap = boundOf(n);
    while (this.map.size > this.cap && this.head) this.remove(this.head, 'evictions');
  }

  /** The live entry for `key` (now most recently used), or undefined (counted as a miss). */
  get(key: string, now: number): CachedAnswer | undefined {
    const e = this.map.get(key);
    if (!e) {
      this.stats.misses++;
      return undefined;
    }
    if (now > e.expiresAt) {
      this.remove(e, 'expired');
      this.stats.misses++;
      return undefined;
    }
    this.stats.hits++;
    this.unlink(e);
    this.append(e);
    return e;
  }

  /** The entry for `key` without counting or reordering (tests, status). */
  peek(key: string): CachedAnswer | undefined {
    return this.map.get(key);
  }

  /** Stores (or replaces) an entry, pushing out the least recently used beyond the bound; returns it as stored (undefined: the cache is off). */
  set(e: Omit<CachedAnswer, 'prev' | 'next' | 'uses' | 'prefetching'>): CachedAnswer | undefined {
    if (this.cap <= 0) return undefined;
    const old = this.map.get(e.key);
    if (old) this.remove(old);
    const entry: CachedAnswer = { ...e, uses: 0, prefetching: false, prev: null, next: null };
    this.map.set(entry.key, entry);
    this.append(entry);
    this.stats.inserts++;
    while (this.map.size > this.cap && this.head) this.remove(this.head, 'evictions');
    return entry;
  }

  /** Takes back the hit just returned for `key`: the entry may no longer be used (the policy or the filter says no). It goes, and the lookup counts as a miss. */
  reject(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.remove(e, 'invalidated');
    this.stats.hits--;
    this.stats.misses++;
  }

  /** Removes every entry for which `drop` is true; returns how many. Counted as invalidated. */
  invalidate(drop: (e: CachedAnswer) => boolean): number {
    let n = 0;
    for (let e = this.head; e; ) {
      const next = e.next;
      if (drop(e)) {
        this.remove(e, 'invalidated');
        n++;
      }
      e = next;
    }
    return n;
  }

  /** Removes every entry (counted as invalidated). */
  clear(): void {
    this.stats.invalidated += this.map.size;
    if (this.onDrop) for (const e of this.map.values()) this.onDrop(e);
    this.map.clear();
    this.head = null;
    this.tail = null;
  }

  /** Keys, least recently used first (tests). */
  keys(): string[] {
    const out: string[] = [];
    for (let e = this.head; e; e = e.next) out.push(e.key);
    return out;
  }

  /** Counts a hit answered elsewhere (the fast path) and moves the entry to the most recently used end. */
  touch(e: CachedAnswer): void {
    if (this.map.get(e.key) !== e) return;
    this.stats.hits++;
    this.unlink(e);
    this.append(e);
  }

  private remove(e: CachedAnswer, why?: 'evictions' | 'expired' | 'invalidated'): void {
    this.map.delete(e.key);
    this.onDrop?.(e);
    this.unlink(e);
    if (why) this.stats[why]++;
  }

  private unlink(e: CachedAnswer): void {
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    e.prev = null;
    e.next = null;
  }

  private append(e: CachedAnswer): void {
    e.prev = this.tail;
    e.next = null;
    if (this.tail) this.tail.next = e;
    else this.head = e;
    this.tail = e;
  }
}
