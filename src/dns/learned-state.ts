import { readFileSync } from 'node:fs';
import { formatAddr, parseAddr, type Family } from '../net/ip.js';
import { writeAtomicStream, writeFileAtomic } from '../state/state-store.js';

/** One address the guard opened in one rule's set. */
export interface LearnedEntry {
  set: string;
  family: Family;
  addr: bigint;
  /** When the kernel element expires (ms since the epoch). */
  expiresAt: number;
}

interface Named {
  /** Most recent first. */
  names: string[];
  until: number;
}

const MAX_NAMES_PER_ADDR = 8;
/**
 * An element whose kernel timeout is this close is never deleted: the kernel
 * may have expired it already, and deleting a missing element fails the
 * whole transaction.
 */
const DELETE_MARGIN_MS = 2000;
/** Expired elements count against a set's size this long after expiry: the kernel frees them in its garbage collection, not at once. */
const GC_LAG_MS = 5000;
/** Names tracked for the per-name limit; beyond it the least recently answered name is forgotten (its addresses just expire). */
const MAX_TRACKED_NAMES = 100_000;
/** One key space for both families in per-name maps: IPv6 addresses carry a bit above 128. */
const V6_TAG = 1n << 128n;
const familyKey = (family: Family, addr: bigint): bigint => (family === 4 ? addr : addr | V6_TAG);

/**
 * What one name holds. Most names resolve to one address: that one is kept
 * inline (no Map per name, which at tens of thousands of names a minute
 * would be garbage-collector work on the answering thread); `more` (least
 * recently answered first) once there are several.
 */
interface NameHold {
  /** The name as first stored: the map is re-keyed with it, so an answer's own string dies young. */
  name: string;
  key: bigint;
  until: number;
  more: Map<bigint, number> | undefined;
}

const NO_RELEASE: readonly { family: Family; addr: bigint }[] = Object.freeze([]);

export interface SaveContext {
  mode: string;
  setComments: Record<string, string>;
}

/** The saved file's form of an address's names: `4:c6120a01` (family, hex). */
const namesKey = (family: Family, addr: bigint) => `${family}:${addr.toString(16)}`;
/** Set names are [a-z0-9_.-] (compiler-made, checked on load); JSON.stringify for anything else. */
const SAFE_SET = /^[a-z0-9_.-]{1,80}$/;
/** One entry as JSON, built directly: a save writes tens of thousands, and this is most of its cost. */
function entryJson(e: LearnedEntry): string {
  const addr = formatAddr(e.family, e.addr);
  const set = SAFE_SET.test(e.set) ? `"${e.set}"` : JSON.stringify(e.set);
  return `{"set":${set},"family":${e.family},"addr":"${addr}","expiresAt":${Math.trunc(e.expiresAt)}}`;
}
const namesJson = (family: Family, addr: bigint, v: Named) => `{"key":"${namesKey(family, addr)}","names":${JSON.stringify(v.names)},"until":${Math.trunc(v.until)}}`;

/** The file's opening, up to its entries. */
const docHead = (now: number, context: SaveContext) => `${JSON.stringify({ version: 1, savedAt: now, mode: context.mode, sets: context.setComments }).slice(0, -1)},"entries":[`;

/** The saved file: a header, then entries and names already serialised one by one. */
function document(now: number, context: SaveContext, entries: string[], names: string[]): string {
  return `${docHead(now, context)}${entries.join(',')}],"names":[${names.join(',')}]}`;
}

/**
 * What the guard has opened, and which names led there. The kernel holds the
 * truth about elements; this mirror exists so that (1) a kernel timeout is
 * only ever extended, never shortened (re-adding an element replaces its
 * timeout, so a short-TTL name sharing an address with a long-TTL one would
 * cut the long one short), (2) addresses can be named in events, and (3) a
 * restart restores the state before the guard answers again.
 *
 * The guard consults and updates it for every answer: maps are keyed by the
 * address itself (a bigint) per set and family, with no key strings built
 * per lookup, and entries are updated in place.
 */
export class LearnedState {
  private sets: Record<Family, Map<string, Map<bigint, LearnedEntry>>> = { 4: new Map(), 6: new Map() };
  private named: Record<Family, Map<bigint, Named>> = { 4: new Map(), 6: new Map() };
  /** Per name, the addresses it holds (family-tagged) and until when; names least recently answered first. */
  private byName = new Map<string, NameHold>();
  /** Elements being added per set, not yet committed: they take room too. */
  private reserved = new Map<string, number>();
  private count = 0;
  dirty = false;

  private entry(set: string, family: Family, addr: bigint): LearnedEntry | undefined {
    return this.sets[family].get(set)?.get(addr);
  }

  private put(e: LearnedEntry): void {
    let m = this.sets[e.family].get(e.set);
    if (!m) {
      m = new Map();
      this.sets[e.family].set(e.set, m);
    }
    if (!m.has(e.addr)) this.count++;
    m.set(e.addr, e);
  }

  /** Every entry (expired ones too); deleting the current one while iterating is safe. */
  private *all(): Generator<[Map<bigint, LearnedEntry>, LearnedEntry]> {
    for (const family of [4, 6] as const) for (const m of this.sets[family].values()) for (const e of m.values()) yield [m, e];
  }

  private *allNamed(): Generator<[Family, bigint, Named, Map<bigint, Named>]> {
    for (const family of [4, 6] as const) for (const [addr, v] of this.named[family]) yield [family, addr, v, this.named[family]];
  }

  private drop(m: Map<bigint, LearnedEntry>, e: LearnedEntry): void {
    if (m.delete(e.addr)) this.count--;
  }

  /** When the element's committed life ends (ms), or undefined when the set does not hold it. */
  expiryOf(set: string, family: Family, addr: bigint): number | undefined {
    return this.entry(set, family, addr)?.expiresAt;
  }

  /** True when the kernel needs a write so the element lives until `expiresAt` (a second of slack avoids churn). */
  needsWrite(set: string, family: Family, addr: bigint, expiresAt: number): boolean {
    const cur = this.entry(set, family, addr);
    return !cur || cur.expiresAt + 1000 < expiresAt;
  }

  /**
   * Marks an element as just answered, and returns it (undefined when the
   * set does not hold it): sets are kept in least-recently-answered order
   * (Map insertion order), the order makeRoom evicts in.
   */
  touch(set: string, family: Family, addr: bigint): LearnedEntry | undefined {
    const m = this.sets[family].get(set);
    const e = m?.get(addr);
    if (!m || !e) return undefined;
    m.delete(addr);
    // Under the entry's own key: the answer's bigint dies young instead of living on in the map.
    m.set(e.addr, e);
    return e;
  }

  /** Counts elements about to be added to a set (they need room before they are committed). */
  reserve(set: string, n: number): void {
    if (n !== 0) this.reserved.set(set, (this.reserved.get(set) ?? 0) + n);
  }

  /**
   * Room for `adding` more elements in a set that holds at most `capacity`:
   * the least recently answered live entries to delete from the kernel, in
   * the same transaction as the additions. They leave the mirror now (so no
   * other answer of the same transaction picks them again); restore() puts
   * them back if the kernel refuses. Entries long expired are just forgotten
   * (the kernel dropped them), recently expired or about-to-expire ones are
   * left to the kernel's own expiry, and `keep` (the answer's addresses) is
   * never chosen.
   */
  makeRoom(set: string, family: Family, adding: number, capacity: number, now: number, keep: readonly { family: Family; addr: bigint }[] = []): LearnedEntry[] {
    const m = this.sets[family].get(set);
    const victims: LearnedEntry[] = [];
    let over = (m?.size ?? 0) + (this.reserved.get(set) ?? 0) + adding - capacity;
    if (!m || over <= 0) return victims;
    const keeping = new Set(keep.filter((k) => k.family === family).map((k) => k.addr));
    for (const e of m.values()) {
      if (over <= 0) break;
      if (e.expiresAt <= now - GC_LAG_MS) {
        this.drop(m, e);
        over--;
        continue;
      }
      if (e.expiresAt <= now + DELETE_MARGIN_MS || keeping.has(e.addr)) continue;
      this.drop(m, e);
      victims.push(e);
      over--;
    }
    if (victims.length > 0) this.dirty = true;
    return victims;
  }

  /** Takes an element out of the mirror for deletion from the kernel: the entry, if it is live and safe to delete (see DELETE_MARGIN_MS). */
  evict(set: string, family: Family, addr: bigint, now: number): LearnedEntry | undefined {
    const m = this.sets[family].get(set);
    const e = m?.get(addr);
    if (!m || !e || e.expiresAt <= now + DELETE_MARGIN_MS) return undefined;
    this.drop(m, e);
    this.dirty = true;
    return e;
  }

  /** Puts back entries taken out by makeRoom or evict whose deletion the kernel refused. */
  restore(entries: LearnedEntry[]): void {
    for (const e of entries) if (!this.entry(e.set, e.family, e.addr)) this.put(e);
  }

  /** Records that `name` (canonical) holds the address until `expiresAt`, as its most recent. */
  holdForName(name: string, family: Family, addr: bigint, expiresAt: number): void {
    const k = familyKey(family, addr);
    const h = this.byName.get(name);
    if (!h) {
      if (this.byName.size >= MAX_TRACKED_NAMES) {
        const oldest = this.byName.keys().next();
        if (!oldest.done) this.byName.delete(oldest.value);
      }
      this.byName.set(name, { name, key: k, until: expiresAt, more: undefined });
      return;
    }
    if (!h.more) {
      if (h.key === k) {
        if (h.until < expiresAt) h.until = expiresAt;
        return;
      }
      h.more = new Map([[h.key, h.until]]);
    }
    const prev = h.more.get(k);
    h.more.delete(k);
    h.more.set(k, prev !== undefined && prev > expiresAt ? prev : expiresAt);
  }

  /**
   * After an answer for `name`: marks the name as just answered, and
   * returns the addresses it held beyond `limit`, least recent first, which
   * it no longer holds (and which no longer carry its name). A name never
   * answered again is forgotten once MAX_TRACKED_NAMES others were.
   */
  releaseOverLimit(name: string, limit: number, now: number): readonly { family: Family; addr: bigint }[] {
    const h = this.byName.get(name);
    if (!h) return NO_RELEASE;
    this.byName.delete(name);
    this.byName.set(h.name, h);
    const m = h.more;
    if (!m || m.size <= limit) return NO_RELEASE;
    const released: { family: Family; addr: bigint }[] = [];
    for (const [k, until] of m) {
      if (m.size <= limit) break;
      m.delete(k);
      if (until <= now) continue;
      const family: Family = k >= V6_TAG ? 6 : 4;
      const addr = family === 6 ? k ^ V6_TAG : k;
      released.push({ family, addr });
      const n = this.named[family].get(addr);
      const at = n ? n.names.indexOf(name) : -1;
      if (n && at >= 0) n.names.splice(at, 1);
    }
    return released;
  }

  /** Whether any name still holds the address (per the names remembered for it). */
  held(family: Family, addr: bigint, now: number): boolean {
    const n = this.named[family].get(addr);
    return !!n && n.until > now && n.names.length > 0;
  }

  /** Records a kernel write that succeeded. */
  committed(set: string, family: Family, addr: bigint, expiresAt: number, reserved = false): void {
    if (reserved) this.reserve(set, -1);
    const cur = this.entry(set, family, addr);
    // Updated in place: the guard calls this for every answer, and long-lived objects replaced
    // at that rate are what makes young-generation collections slow.
    if (!cur) this.put({ set, family, addr, expiresAt });
    else if (cur.expiresAt < expiresAt) cur.expiresAt = expiresAt;
    this.dirty = true;
  }

  /** Remembers that `name` resolved to the address, for as long as the address is open. */
  nameAddress(family: Family, addr: bigint, name: string, until: number): void {
    const map = this.named[family];
    const cur = map.get(addr);
    if (!cur) {
      map.set(addr, { names: [name], until });
    } else {
      const at = cur.names.indexOf(name);
      if (at !== 0) {
        // Most recent first, at most MAX_NAMES_PER_ADDR, changed in place.
        if (at > 0) cur.names.splice(at, 1);
        cur.names.unshift(name);
        if (cur.names.length > MAX_NAMES_PER_ADDR) cur.names.length = MAX_NAMES_PER_ADDR;
      }
      if (cur.until < until) cur.until = until;
    }
    this.dirty = true;
  }

  /** Names that resolved to an address (most recent first). */
  namesFor(family: Family, addr: bigint, now = Date.now()): string[] {
    const n = this.named[family].get(addr);
    return n && n.until > now ? n.names.slice() : [];
  }

  /** Live entries, optionally of one set. */
  list(now = Date.now(), set?: string): LearnedEntry[] {
    const out: LearnedEntry[] = [];
    for (const [, e] of this.all()) if (e.expiresAt > now && (set === undefined || e.set === set)) out.push(e);
    return out;
  }

  /** Every entry, expired ones the kernel may still hold included (the tamper watchdog's view of what the guard opened). */
  snapshot(): LearnedEntry[] {
    const out: LearnedEntry[] = [];
    for (const [, e] of this.all()) out.push({ ...e });
    return out;
  }

  /** How many live entries there are (what list() would return, without building it). */
  liveCount(now = Date.now()): number {
    let n = 0;
    for (const [, e] of this.all()) if (e.expiresAt > now) n++;
    return n;
  }

  /** Entries held (expired ones not yet pruned included). */
  get size(): number {
    return this.count;
  }

  /** Drops expired entries and names, and entries of sets that no longer exist. */
  prune(now = Date.now(), keepSets?: Set<string>): void {
    for (const [m, e] of this.all()) {
      if (e.expiresAt <= now || (keepSets && !keepSets.has(e.set))) {
        this.drop(m, e);
        this.dirty = true;
      }
    }
    for (const [, addr, n, map] of this.allNamed()) if (n.until <= now) map.delete(addr);
    for (const [name, h] of this.byName) {
      if (h.more) {
        for (const [k, until] of h.more) if (until <= now) h.more.delete(k);
        if (h.more.size === 0) this.byName.delete(name);
      } else if (h.until <= now) this.byName.delete(name);
    }
  }

  /** Replaces the mirror of what the kernel holds (at start, and after a reload). */
  adoptKernel(entries: LearnedEntry[]): void {
    this.sets = { 4: new Map(), 6: new Map() };
    this.count = 0;
    for (const e of entries) this.put(e);
    this.dirty = true;
  }

  /**
   * Writes the state atomically, with the mode and each set's comment (its
   * rule's meaning), so a restore under a different meaning brings nothing back.
   * Synchronous: for the daemon's shutdown; while serving, use saveAsync.
   */
  save(file: string, now = Date.now(), context: SaveContext = { mode: '', setComments: {} }): void {
    this.prune(now);
    const entries: string[] = [];
    for (const [, e] of this.all()) entries.push(entryJson(e));
    const names: string[] = [];
    for (const [family, addr, v] of this.allNamed()) names.push(namesJson(family, addr, v));
    this.dirty = false;
    writeFileAtomic(file, document(now, context, entries, names));
  }

  /**
   * The same file as save, serialised a slice at a time with the event loop
   * free in between and written from the thread pool: with tens of
   * thousands of addresses a synchronous save held the loop (and every DNS
   * answer) for up to ~100 ms. Entries learned meanwhile mark the state
   * dirty again.
   */
  async saveAsync(file: string, now = Date.now(), context: SaveContext = { mode: '', setComments: {} }, sliceMs = 0.5): Promise<void> {
    this.dirty = false;
    try {
      await writeAtomicStream(file, async (write) => {
        let piece = docHead(now, context);
        let first = true;
        let sliceStart = performance.now();
        // Yield to the event loop after sliceMs of work, so answers wait at most about that long.
        const maybeYield = async () => {
          if (performance.now() - sliceStart < sliceMs) return;
          await write(piece);
          piece = '';
          sliceStart = performance.now();
        };
        let n = 0;
        // A snapshot: answered entries move to the end of their map (touch), and a live iterator would meet them again.
        for (const [m, e] of [...this.all()]) {
          if (e.expiresAt <= now) {
            if (m.get(e.addr) === e) this.drop(m, e);
          }
          else {
            piece += (first ? '' : ',') + entryJson(e);
            first = false;
          }
          if (++n % 64 === 0) await maybeYield();
        }
        piece += '],"names":[';
        first = true;
        for (const [family, addr, v, map] of this.allNamed()) {
          if (v.until <= now) map.delete(addr);
          else {
            piece += (first ? '' : ',') + namesJson(family, addr, v);
            first = false;
          }
          if (++n % 64 === 0) await maybeYield();
        }
        await write(`${piece}]}`);
      });
    } catch (err) {
      this.dirty = true;
      throw err;
    }
  }

  /**
   * Reads a saved state; unexpired entries only. A missing or corrupt file
   * gives an empty state (the kernel's own sets are read at start anyway).
   */
  static load(file: string, now = Date.now(), expect?: { mode: string; setComments: Record<string, string>; maxLifeMs: number }): LearnedState {
    const s = new LearnedState();
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return s;
    }
    const obj = raw as { entries?: unknown; names?: unknown; mode?: unknown; sets?: unknown };
    // Saved under another mode (audit learned by watching traffic it did not control): nothing comes back.
    if (expect && obj.mode !== expect.mode) return s;
    const savedComments = obj.sets && typeof obj.sets === 'object' ? (obj.sets as Record<string, unknown>) : {};
    for (const e of Array.isArray(obj.entries) ? obj.entries : []) {
      const x = e as { set?: unknown; family?: unknown; addr?: unknown; expiresAt?: unknown };
      if (typeof x.set !== 'string' || (x.family !== 4 && x.family !== 6) || typeof x.addr !== 'string' || typeof x.expiresAt !== 'number') continue;
      if (x.expiresAt <= now || !/^[a-z0-9_.-]{1,80}$/.test(x.set)) continue;
      let expiresAt = x.expiresAt;
      if (expect) {
        // The set's rule must still mean the same, and no lifetime beyond what the policy allows comes back.
        if (savedComments[x.set] !== expect.setComments[x.set]) continue;
        expiresAt = Math.min(expiresAt, now + expect.maxLifeMs);
      }
      const parsed = parseAddr(x.addr);
      if (!parsed || parsed.family !== x.family) continue;
      s.put({ set: x.set, family: x.family, addr: parsed.value, expiresAt });
    }
    for (const n of Array.isArray(obj.names) ? obj.names : []) {
      const x = n as { key?: unknown; names?: unknown; until?: unknown };
      if (typeof x.key !== 'string' || typeof x.until !== 'number' || x.until <= now || !Array.isArray(x.names)) continue;
      const m = /^([46]):([0-9a-f]{1,32})$/.exec(x.key);
      if (!m) continue;
      const family: Family = m[1] === '4' ? 4 : 6;
      const addr = BigInt(`0x${m[2]}`);
      if (family === 4 && addr > 0xffffffffn) continue;
      const names = x.names.filter((v): v is string => typeof v === 'string' && v.length <= 255).slice(0, MAX_NAMES_PER_ADDR);
      s.named[family].set(addr, { names, until: x.until });
    }
    return s;
  }
}
