import type { SetDef, SetElem } from '../compile/ruleset.js';
import type { ElementChange, Netfilter } from '../netfilter/netfilter.js';

export interface SetWrite {
  set: Pick<SetDef, 'name' | 'key' | 'interval'>;
  elem: SetElem;
  /** Delete the element (making room, or closing what a name no longer holds) instead of adding it. */
  remove?: boolean;
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
    const bySet = new Map<string, ElementChange>();
    // Deletions once each per set (the kernel fails a transaction that deletes a missing element).
    const removing = new Set<string>();
    for (const b of batch) {
      for (const w of b.writes) {
        let c = bySet.get(w.set.name);
        if (!c) {
          c = { set: w.set, elems: [], remove: [] };
          bySet.set(w.set.name, c);
        }
        if (!w.remove) c.elems.push(w.elem);
        else {
          const key = w.elem.t === 'addr' ? `${w.set.name}|${w.elem.family}|${w.elem.start}` : '';
          if (removing.has(key)) continue;
          removing.add(key);
          c.remove?.push(w.elem);
        }
      }
    }
    const changes = [...bySet.values()];
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
      if (failed.has(c.set.name) && (c.remove?.length ?? 0) > 0 && this.commit([{ set: c.set, elems: c.elems }])) failed.delete(c.set.name);
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
      this.stats.elements += changes.reduce((n, c) => n + c.elems.length, 0);
      this.stats.deleted += changes.reduce((n, c) => n + (c.remove?.length ?? 0), 0);
      return true;
    } catch (err) {
      this.stats.failures++;
      this.stats.lastError = (err as Error).message;
      return false;
    }
  }
}
