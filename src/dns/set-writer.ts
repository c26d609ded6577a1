import type { SetDef, SetElem } from '../compile/ruleset.js';

/** An element's timeout; none is forever. */
function timeoutOf(e: SetElem): number {
  return 'timeoutMs' in e && e.timeoutMs !== undefined ? e.timeoutMs : Infinity;
}

/** An element's identity in its set (its key, not its timeout). */
function elemKey(e: SetElem): string {
  return e.t === 'addr' ? `a|${e.family}|${e.start}|${e.end}` : JSON.stringify(e, (k, v: unknown) => (k === 'timeoutMs' || k === 'expiresMs' ? undefined : typeof v === 'bigint' ? String(v) : v));
}
import type { ElementChange, Netfilter } from '../netfilter/netfilter.js';

export interface SetWrite {
  set: Pick<SetDef, 'name' | 'key' | 'interval'>;
  elem: SetElem;
  /** Delete the element (making room, or closing what a name no longer holds) instead of adding it. */
  remove?: boolean;
  /** The set holds the element until this time (ms since the epoch): the add extends it (ElementChange.refresh). */
  heldUntil?: number;
}

export interface SetWriterStats {
  transactions: number;
  elements: number;
  /** Elements deleted (least recently answered ones making room, addresses a name no longer holds). */
  deleted: number;
  failures: number;
  lastError?: string;
}

/**
 * Batches set-element writes into kernel transactions. Writes requested in
 * the same event-loop turn share one transaction, flushed on setImmediate, so
 * the wait is bounded by one turn of the loop plus one netlink round trip
 * (the kernel commits inside the send call). A promise resolves only after
 * the kernel committed its element, which is what lets the guard release an
 * answer knowing a connect to its addresses will pass. A failed transaction
 * rejects every waiter in it: the guard then answers SERVFAIL (fail closed),
 * logs and counts it.
 */
export class SetWriter {
  readonly stats: SetWriterStats = { transactions: 0, elements: 0, deleted: 0, failures: 0 };
  private pending: { writes: SetWrite[]; resolve: () => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;

  constructor(
    private nf: Netfilter,
    private table: string,
  ) {}

  /** Writes are queued for the next transaction: the guard's record of what it opened is about to change. */
  get busy(): boolean {
    return this.scheduled || this.pending.length > 0;
  }

  /** Adds elements; resolves once they are in the kernel. */
  write(writes: SetWrite[]): Promise<void> {
    if (writes.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.pending.push({ writes, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const bySet = new Map<string, { set: SetWrite['set']; adds: Map<string, SetWrite>; remove: Map<string, SetElem> }>();
    for (const b of batch) {
      for (const w of b.writes) {
        let c = bySet.get(w.set.name);
        if (!c) {
          c = { set: w.set, adds: new Map(), remove: new Map() };
          bySet.set(w.set.name, c);
        }
        const key = elemKey(w.elem);
        // Deletions once each per set (the kernel fails a transaction that deletes a missing element).
        if (w.remove) c.remove.set(key, w.elem);
        else {
          // One add per element, with the longest timeout asked for: the kernel keeps the last
          // add's timeout (Linux 6.12+), and every answer in the batch was promised its own.
          const prev = c.adds.get(key);
          if (!prev || timeoutOf(w.elem) > timeoutOf(prev.elem)) c.adds.set(key, { ...w, heldUntil: w.heldUntil ?? prev?.heldUntil });
          else if (prev.heldUntil === undefined && w.heldUntil !== undefined) c.adds.set(key, { ...prev, heldUntil: w.heldUntil });
        }
      }
    }
    const changes: ElementChange[] = [...bySet.values()].map((c) => {
      const adds = [...c.adds.values()];
      const refresh = adds.filter((w) => w.heldUntil !== undefined).map((w) => ({ elem: w.elem, expiresAt: w.heldUntil as number }));
      return { set: c.set, elems: adds.filter((w) => w.heldUntil === undefined).map((w) => w.elem), remove: [...c.remove.values()], ...(refresh.length > 0 ? { refresh } : {}) };
    });
    if (this.commit(changes)) {
      for (const b of batch) b.resolve();
      return;
    }
    // One set refused (full, or gone): retry set by set, so only the writes
    // that touch a failing set fail, not every query of the batch.
    const failed = new Set<string>();
    if (changes.length === 1) {
      failed.add(changes[0]?.set.name ?? '');
    } else {
      for (const c of changes) {
        if (!this.commit([c])) failed.add(c.set.name);
      }
    }
    // A deletion can fail alone (the element expired meanwhile): the additions are what answers wait for.
    for (const c of changes) {
      if (failed.has(c.set.name) && (c.remove?.length ?? 0) > 0 && this.commit([{ set: c.set, elems: c.elems, ...(c.refresh ? { refresh: c.refresh } : {}) }])) failed.delete(c.set.name);
    }
    for (const b of batch) {
      if (b.writes.some((w) => failed.has(w.set.name))) b.reject(new Error(this.stats.lastError ?? 'set update failed'));
      else b.resolve();
    }
  }

  /** One transaction; false (counted) when the kernel refused it. */
  private commit(changes: ElementChange[]): boolean {
    try {
      this.nf.addElements(this.table, changes);
      this.stats.transactions++;
      this.stats.elements += changes.reduce((n, c) => n + c.elems.length + (c.refresh?.length ?? 0), 0);
      this.stats.deleted += changes.reduce((n, c) => n + (c.remove?.length ?? 0), 0);
      return true;
    } catch (err) {
      this.stats.failures++;
      this.stats.lastError = (err as Error).message;
      return false;
    }
  }
}
