import type { CountRow, EventQuery, EventStats, EventStore, LookupRow, PipelineCounters, RecordedEvent, RetentionLimits, StoredEvent, TimelineRow } from './event-store.js';
import { lookupKey, ZERO_COUNTERS } from './event-store.js';
import { destinationKey } from './format-event.js';

/** Rough bytes per event, so retention by size behaves like the SQLite store's. */
function sizeOf(e: RecordedEvent): number {
  return 64 + JSON.stringify(e).length;
}

/** True when the event matches every given filter. Shared with tests as the reference semantics. */
export function eventMatches(e: StoredEvent, q: EventQuery): boolean {
  if (q.since !== undefined && e.time < q.since) return false;
  if (q.until !== undefined && e.time >= q.until) return false;
  if (q.verdict !== undefined && e.verdict !== q.verdict) return false;
  if (q.rule !== undefined && e.rule !== q.rule) return false;
  if (q.afterId !== undefined && e.id <= q.afterId) return false;
  if (q.process !== undefined) {
    const p = e.process;
    const base = p?.exe?.slice(p.exe.lastIndexOf('/') + 1);
    if (!p || (p.comm !== q.process && p.exe !== q.process && base !== q.process)) return false;
  }
  return true;
}


/** The process key used by stats. */
export function processKey(e: RecordedEvent): string {
  return e.process?.exe ?? e.process?.comm ?? '(unknown)';
}

function top(m: Map<string, number>, n: number): CountRow[] {
  return [...m.entries()]
    .map(([key, count]) => ({ key, count }))
    .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .slice(0, n);
}

/** An in-memory store: for tests, and for running without a writable state directory. */
export class MemoryStore implements EventStore {
  private events: (StoredEvent & { bytes: number })[] = [];
  private nextId = 1;
  private bytes = 0;
  private saved: PipelineCounters = { ...ZERO_COUNTERS };
  private lookups = new Map<string, LookupRow>();

  append(events: RecordedEvent[], counters?: PipelineCounters, lookups: LookupRow[] = []): void {
    for (const e of events) {
      const bytes = sizeOf(e);
      this.events.push({ ...structuredClone(e), id: this.nextId++, bytes });
      this.bytes += bytes;
    }
    if (counters) this.saved = { ...counters };
    for (const l of lookups) {
      const k = lookupKey(l);
      const have = this.lookups.get(k);
      if (have) {
        have.count += l.count;
        have.first = Math.min(have.first, Math.round(l.first));
        have.last = Math.max(have.last, Math.round(l.last));
      } else {
        this.lookups.set(k, { ...l, first: Math.round(l.first), last: Math.round(l.last) });
      }
    }
  }

  *scanLookups(q: { since: number; until: number }): Generator<LookupRow> {
    const rows = [...this.lookups.values()].filter((l) => l.last >= q.since && l.first < q.until);
    rows.sort((a, b) => a.day - b.day || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const r of rows) yield { ...r };
  }

  query(q: EventQuery): StoredEvent[] {
    const hits = this.events.filter((e) => eventMatches(e, q)).map(({ bytes: _b, ...e }) => structuredClone(e) as StoredEvent);
    if (q.limit === undefined) return hits;
    return q.afterId !== undefined ? hits.slice(0, q.limit) : hits.slice(Math.max(0, hits.length - q.limit));
  }

  stats(q: Pick<EventQuery, 'since' | 'until'>, n = 10): EventStats {
    const byVerdict = { blocked: 0, 'would-block': 0, allowed: 0 };
    const rules = new Map<string, number>();
    const dests = new Map<string, number>();
    const procs = new Map<string, number>();
    let total = 0;
    let attributed = 0;
    let first: number | null = null;
    let last: number | null = null;
    for (const e of this.events) {
      if (!eventMatches(e, q)) continue;
      total++;
      byVerdict[e.verdict]++;
      const rk = `${e.rule}\u0000${e.verdict}`;
      rules.set(rk, (rules.get(rk) ?? 0) + 1);
      const dk = destinationKey(e);
      dests.set(dk, (dests.get(dk) ?? 0) + 1);
      const pk = processKey(e);
      procs.set(pk, (procs.get(pk) ?? 0) + 1);
      if (e.process?.pid !== undefined) attributed++;
      first = first === null ? e.time : Math.min(first, e.time);
      last = last === null ? e.time : Math.max(last, e.time);
    }
    const byRule = top(rules, Number.MAX_SAFE_INTEGER).map(({ key, count }) => {
      const [rule, verdict] = key.split('\u0000') as [string, StoredEvent['verdict']];
      return { rule, verdict, count };
    });
    return { total, byVerdict, byRule, byDestination: top(dests, n), byProcess: top(procs, n), attributed, first, last };
  }

  timeline(q: Pick<EventQuery, 'since' | 'until'>, bucketMs: number): TimelineRow[] {
    const b = Math.max(1, Math.floor(bucketMs));
    const counts = new Map<string, TimelineRow>();
    for (const e of this.events) {
      if (!eventMatches(e, q)) continue;
      const time = Math.floor(e.time / b) * b;
      const k = `${time} ${e.verdict}`;
      const row = counts.get(k) ?? { time, verdict: e.verdict, count: 0 };
      row.count++;
      counts.set(k, row);
    }
    return [...counts.values()].sort((x, y) => x.time - y.time || (x.verdict < y.verdict ? -1 : x.verdict > y.verdict ? 1 : 0));
  }

  counters(): PipelineCounters {
    return { ...this.saved };
  }

  retain(limits: RetentionLimits, now = Date.now()): number {
    const before = this.events.length;
    if (limits.maxAgeMs !== undefined) {
      const cutoff = now - limits.maxAgeMs;
      this.events = this.events.filter((e) => e.time >= cutoff);
    }
    this.bytes = this.events.reduce((s, e) => s + e.bytes, 0);
    if (limits.maxBytes !== undefined && this.bytes > limits.maxBytes) {
      // Oldest first, by write order, as the SQLite store does.
      let drop = 0;
      while (drop < this.events.length && this.bytes > limits.maxBytes) this.bytes -= this.events[drop++]?.bytes ?? 0;
      this.events = this.events.slice(drop);
    }
    if (limits.maxAgeMs !== undefined) for (const [k, l] of this.lookups) if (l.last < now - limits.maxAgeMs) this.lookups.delete(k);
    const first = this.events[0]?.time;
    if (before > this.events.length && first !== undefined) for (const [k, l] of this.lookups) if (l.last < first) this.lookups.delete(k);
    return before - this.events.length;
  }

  sizeBytes(): number {
    return this.bytes;
  }

  lastId(): number {
    return this.nextId - 1;
  }

  close(): void {
    this.events = [];
    this.lookups.clear();
    this.bytes = 0;
  }
}
