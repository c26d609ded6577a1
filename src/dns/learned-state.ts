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

const MAX_NAMES_PER_ADDR = 8;

export interface SaveContext {
  mode: string;
  setComments: Record<string, string>;
}

const entryJson = (e: LearnedEntry) => JSON.stringify({ set: e.set, family: e.family, addr: formatAddr(e.family, e.addr), expiresAt: e.expiresAt });
const namesJson = (key: string, v: { names: string[]; until: number }) => JSON.stringify({ key, names: v.names, until: v.until });

/** The saved file: a header, then entries and names already serialised one by one. */
/** The file's opening, up to its entries. */
const docHead = (now: number, context: SaveContext) => `${JSON.stringify({ version: 1, savedAt: now, mode: context.mode, sets: context.setComments }).slice(0, -1)},"entries":[`;

function document(now: number, context: SaveContext, entries: string[], names: string[]): string {
  return `${docHead(now, context)}${entries.join(',')}],"names":[${names.join(',')}]}`;
}

const addrKey = (family: Family, addr: bigint) => `${family}:${addr.toString(16)}`;

/**
 * What the guard has opened, and which names led there. The kernel holds the
 * truth about elements; this mirror exists so that (1) a kernel timeout is
 * only ever extended, never shortened (re-adding an element replaces its
 * timeout, so a short-TTL name sharing an address with a long-TTL one would
 * cut the long one short), (2) addresses can be named in events, and (3) a
 * restart restores the state before the guard answers again.
 */
export class LearnedState {
  private entries = new Map<string, LearnedEntry>();
  private names = new Map<string, { names: string[]; until: number }>();
  dirty = false;

  private key(set: string, family: Family, addr: bigint): string {
    return `${set}|${addrKey(family, addr)}`;
  }

  /** True when the kernel needs a write so the element lives until `expiresAt` (a second of slack avoids churn). */
  needsWrite(set: string, family: Family, addr: bigint, expiresAt: number): boolean {
    const cur = this.entries.get(this.key(set, family, addr));
    return !cur || cur.expiresAt + 1000 < expiresAt;
  }

  /** Records a kernel write that succeeded. */
  committed(set: string, family: Family, addr: bigint, expiresAt: number): void {
    const k = this.key(set, family, addr);
    const cur = this.entries.get(k);
    // Updated in place: the guard calls this for every answer, and long-lived objects replaced
    // at that rate are what makes young-generation collections slow.
    if (!cur) this.entries.set(k, { set, family, addr, expiresAt });
    else if (cur.expiresAt < expiresAt) cur.expiresAt = expiresAt;
    this.dirty = true;
  }

  /** Remembers that `name` resolved to the address, for as long as the address is open. */
  nameAddress(family: Family, addr: bigint, name: string, until: number): void {
    const k = addrKey(family, addr);
    const cur = this.names.get(k);
    if (!cur) {
      this.names.set(k, { names: [name], until });
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
    const n = this.names.get(addrKey(family, addr));
    return n && n.until > now ? n.names.slice() : [];
  }

  /** Live entries, optionally of one set. */
  list(now = Date.now(), set?: string): LearnedEntry[] {
    return [...this.entries.values()].filter((e) => e.expiresAt > now && (set === undefined || e.set === set));
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops expired entries and names, and entries of sets that no longer exist. */
  prune(now = Date.now(), keepSets?: Set<string>): void {
    for (const [k, e] of this.entries) {
      if (e.expiresAt <= now || (keepSets && !keepSets.has(e.set))) {
        this.entries.delete(k);
        this.dirty = true;
      }
    }
    for (const [k, n] of this.names) if (n.until <= now) this.names.delete(k);
  }

  /** Replaces the mirror of what the kernel holds (at start, and after a reload). */
  adoptKernel(entries: LearnedEntry[]): void {
    this.entries.clear();
    for (const e of entries) this.entries.set(this.key(e.set, e.family, e.addr), e);
    this.dirty = true;
  }

  /**
   * Writes the state atomically, with the mode and each set's comment (its
   * rule's meaning), so a restore under a different meaning brings nothing back.
   * Synchronous: for the daemon's shutdown; while serving, use saveAsync.
   */
  save(file: string, now = Date.now(), context: SaveContext = { mode: '', setComments: {} }): void {
    this.prune(now);
    const entries = [...this.entries.values()].map(entryJson);
    const names = [...this.names.entries()].map(([k, v]) => namesJson(k, v));
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
  async saveAsync(file: string, now = Date.now(), context: SaveContext = { mode: '', setComments: {} }, slice = 500): Promise<void> {
    this.dirty = false;
    try {
      await writeAtomicStream(file, async (write) => {
        let piece = docHead(now, context);
        let n = 0;
        let first = true;
        for (const [k, e] of this.entries) {
          if (e.expiresAt <= now) this.entries.delete(k);
          else {
            piece += (first ? '' : ',') + entryJson(e);
            first = false;
          }
          if (++n % slice === 0) {
            await write(piece);
            piece = '';
          }
        }
        piece += '],"names":[';
        first = true;
        for (const [k, v] of this.names) {
          if (v.until <= now) this.names.delete(k);
          else {
            piece += (first ? '' : ',') + namesJson(k, v);
            first = false;
          }
          if (++n % slice === 0) {
            await write(piece);
            piece = '';
          }
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
      s.entries.set(s.key(x.set, x.family, parsed.value), { set: x.set, family: x.family, addr: parsed.value, expiresAt });
    }
    for (const n of Array.isArray(obj.names) ? obj.names : []) {
      const x = n as { key?: unknown; names?: unknown; until?: unknown };
      if (typeof x.key !== 'string' || !/^[46]:[0-9a-f]{1,32}$/.test(x.key) || typeof x.until !== 'number' || x.until <= now || !Array.isArray(x.names)) continue;
      const names = x.names.filter((v): v is string => typeof v === 'string' && v.length <= 255).slice(0, MAX_NAMES_PER_ADDR);
      s.names.set(x.key, { names, until: x.until });
    }
    return s;
  }
}
