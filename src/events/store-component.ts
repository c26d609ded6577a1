import { join } from 'node:path';
import type { Component, Runtime } from '../runtime/component.js';
import { channels, publishAlert, type DnsQueryEvent } from './channels.js';
import type { EventStore, LookupRow, PipelineCounters, RecordedEvent, RetentionLimits } from './event-store.js';
import { lostRecords, ZERO_COUNTERS } from './event-store.js';
import { SqliteStore } from './sqlite-store.js';

/** The store file in a state directory. */
export function eventStorePath(stateDir: string): string {
  return join(stateDir, 'events.db');
}

/** Retention from the environment: SLUICE_EVENTS_MAX_AGE_DAYS (default 30) and SLUICE_EVENTS_MAX_MB (default 1024). */
export function retentionFromEnv(env: NodeJS.ProcessEnv = process.env): RetentionLimits {
  const num = (v: string | undefined, def: number) => {
    const n = Number(v);
    return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : def;
  };
  return { maxAgeMs: num(env.SLUICE_EVENTS_MAX_AGE_DAYS, 30) * 86_400_000, maxBytes: Math.round(num(env.SLUICE_EVENTS_MAX_MB, 1024) * 1024 * 1024) };
}

export interface StoreComponentOptions {
  open: () => EventStore;
  /** The collector's counters for this run; persisted with each batch. */
  counters: () => Omit<PipelineCounters, 'storeDrops'>;
  /** Events waiting to be written; beyond it they are dropped and counted (default 65,536). */
  queueMax?: number;
  /** Events per transaction (default 5,000). */
  batchMax?: number;
  /** Longest an event waits before its batch is written (ms, default 100). */
  flushMs?: number;
  retention?: RetentionLimits;
  retentionEveryMs?: number;
  /** How often records lost since the last look raise one `event-loss` alert (ms, default 5,000). */
  lossEveryMs?: number;
  /** Distinct lookup rows (name, verdict, asker) kept per UTC day; beyond it lookups are dropped and counted (default 100,000). */
  lookupKeysPerDay?: number;
  /** How often aggregated lookups are written (ms, default 30,000). */
  lookupFlushMs?: number;
  /** Lookup rows per transaction, one transaction per turn of the event loop (default 250). */
  lookupSlice?: number;
}

const DAY_MS = 86_400_000;

/**
 * A lookup row of the day, with what was counted in it since it was last
 * written. A class, so that the day's (up to 100,000) rows share one shape:
 * made by object spread, each row got a hidden class of its own (measured in
 * a heap snapshot under bench:dns: 60,003 rows, 59,987 maps, ~20 MiB of
 * descriptors).
 */
class DayRow {
  readonly day: number;
  readonly name: string;
  readonly verdict: LookupRow['verdict'];
  readonly uid: number | null;
  readonly unit: string | null;
  readonly cgroup: string | null;
  readonly process: string | null;
  pending = 0;
  pendingFirst: number;
  pendingLast: number;

  constructor(l: Omit<LookupRow, 'count' | 'first' | 'last'>, time: number) {
    this.day = l.day;
    this.name = l.name;
    this.verdict = l.verdict;
    this.uid = l.uid;
    this.unit = l.unit;
    this.cgroup = l.cgroup;
    this.process = l.process;
    this.pendingFirst = time;
    this.pendingLast = time;
  }

  /** The same row: name (the caller's index), verdict and asker. */
  is(l: Omit<LookupRow, 'count' | 'first' | 'last'>): boolean {
    return this.verdict === l.verdict && this.uid === l.uid && this.unit === l.unit && this.cgroup === l.cgroup && this.process === l.process;
  }
}

/**
 * A day's rows, found by name and then by asker among the few that asked for
 * it: a lookup costs a map lookup by the name it carries, no key built for it.
 */
class DayRows {
  private readonly byName = new Map<string, DayRow | DayRow[]>();
  size = 0;

  find(l: Omit<LookupRow, 'count' | 'first' | 'last'>): DayRow | undefined {
    const v = this.byName.get(l.name);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return v.is(l) ? v : undefined;
    for (const r of v) if (r.is(l)) return r;
    return undefined;
  }

  add(row: DayRow): void {
    const v = this.byName.get(row.name);
    if (v === undefined) this.byName.set(row.name, row);
    else if (Array.isArray(v)) v.push(row);
    else this.byName.set(row.name, [v, row]);
    this.size++;
  }
}
/** A name longer than a policy can hold (253 characters) is not kept: no rule could name it. */
const MAX_LOOKUP_NAME = 253;

/**
 * A lookup worth keeping: answered NOERROR, and allowed (or would-block in audit
 * mode: the workload got its answer). Refused lookups, NXDOMAIN (search-list
 * guesses, typos) and errors teach nothing a policy needs.
 */
export function lookupOf(e: DnsQueryEvent): Omit<LookupRow, 'count' | 'first' | 'last'> | null {
  if ((e.verdict !== 'allowed' && e.verdict !== 'would-block') || e.rcode !== 0) return null;
  if (e.name.length === 0 || e.name.length > MAX_LOOKUP_NAME) return null;
  const p = e.process;
  const base = p?.exe ? p.exe.slice(p.exe.lastIndexOf('/') + 1) : p?.comm;
  const uid = p?.uid ?? e.client.uid;
  return {
    day: Math.floor(e.time / DAY_MS),
    name: e.name,
    verdict: e.verdict,
    uid: uid ?? null,
    unit: p?.unit ?? null,
    cgroup: p?.cgroup ?? null,
    process: base ? base.slice(0, 64) : null,
  };
}

/**
 * Writes flow events to the store. It subscribes to the flow channel (the
 * collector never imports it), queues at most `queueMax` events, and writes
 * them in batches, one transaction each: every `flushMs`, or at once when a
 * batch is full. An event counts as written when its transaction committed;
 * what is still queued when the daemon is killed was never acknowledged.
 */
export class EventStoreComponent implements Component {
  readonly name = 'event-store';
  private store: EventStore | undefined;
  private queue: RecordedEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private immediate = false;
  private base: PipelineCounters = { ...ZERO_COUNTERS };
  private drops = 0;
  private writeErrors = 0;
  private stored = { blocked: 0, 'would-block': 0, allowed: 0 };
  private lastSaved = '';
  /** Lost records already reported (cumulative, as counters() counts them). */
  private lossReported = 0;
  private lossTimer: NodeJS.Timeout | undefined;
  private rt: Runtime | undefined;
  private readonly onFlow = (msg: unknown) => this.accept(msg as RecordedEvent);
  private readonly onDns = (msg: unknown) => this.acceptLookup(msg as DnsQueryEvent);
  /**
   * The day's lookup rows by key (bounded by lookupKeysPerDay), kept for the
   * whole day: a lookup of a known row only counts in it, so at thousands of
   * lookups a second nothing is allocated to live past the next write. The
   * previous day's rows stay one day more, for late events.
   */
  private lookupRows = new DayRows();
  private lookupRowsBefore = new DayRows();
  private lookupDay = -1;
  /** Rows counted since their last write, in the order they were first counted. */
  private lookupsDirty: DayRow[] = [];
  private lookupDrops = 0;
  private lookupTimer: NodeJS.Timeout | undefined;
  /** Rows taken for writing, not yet written (slice by slice). */
  private lookupsWriting: DayRow[] = [];

  constructor(private readonly opts: StoreComponentOptions) {}

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.store = this.opts.open();
    // Counters are cumulative across daemon runs: this run's are added to what the store kept.
    this.base = this.store.counters();
    channels.flow.subscribe(this.onFlow);
    channels.dnsQuery.subscribe(this.onDns);
    this.timer = setInterval(() => this.flush(), this.opts.flushMs ?? 100);
    // Lookups are learning data, not events: a lookup of every name costs the loop that answers DNS
    // nothing but a count in memory, and the rows go to disk every 30 s in small transactions, one per
    // turn of the loop (a crash loses at most that much of the counts).
    this.lookupTimer = setInterval(() => this.writeLookupsInSlices(), this.opts.lookupFlushMs ?? 30_000);
    this.lookupTimer.unref();
    // Losses of earlier runs were theirs to report.
    this.lossReported = lostRecords(this.counters());
    this.lossTimer = setInterval(() => this.reportLoss(), this.opts.lossEveryMs ?? 5_000);
    this.lossTimer.unref();
    const retention = this.opts.retention;
    if (retention) {
      this.retain(retention);
      this.retentionTimer = setInterval(() => this.retain(retention), this.opts.retentionEveryMs ?? 60_000);
    }
    rt.metrics.collect(() => [
      { name: 'sluice_events_stored_total', help: 'Events written to the store, by verdict', type: 'counter', samples: Object.entries(this.stored).map(([verdict, value]) => ({ labels: { verdict }, value })) },
      { name: 'sluice_events_dropped_total', help: 'Events dropped in Sluice because a queue was full or a write failed', type: 'counter', samples: [{ labels: { stage: 'store' }, value: this.drops }] },
      { name: 'sluice_dns_lookups_dropped_total', help: "Resolved DNS lookups not stored: the day's distinct (name, asker) rows were full, or a write failed", type: 'counter', samples: [{ labels: {}, value: this.lookupDrops }] },
      { name: 'sluice_event_queue_length', help: 'Events waiting to be written', type: 'gauge', samples: [{ labels: { stage: 'store' }, value: this.queue.length }] },
      { name: 'sluice_event_store_bytes', help: 'Size of the event store', type: 'gauge', samples: [{ labels: {}, value: this.safeSize() }] },
    ]);
    rt.control.handle('events.pipeline', { call: () => ({ counters: this.counters(), stored: this.stored, queued: this.queue.length }) });
    // `sluice suggest` asks for the lookups counted so far before it reads the store (written slice by slice, as on the timer).
    rt.control.handle('events.flush-lookups', { call: () => this.writeLookupsNow() });
  }

  private safeSize(): number {
    try {
      return this.store?.sizeBytes() ?? 0;
    } catch {
      return 0;
    }
  }

  private accept(e: RecordedEvent): void {
    if (this.queue.length >= (this.opts.queueMax ?? 65_536)) {
      this.drops++;
      return;
    }
    this.queue.push(e);
    if (this.queue.length >= (this.opts.batchMax ?? 5_000) && !this.immediate) {
      this.immediate = true;
      setImmediate(() => {
        this.immediate = false;
        this.flush();
      });
    }
  }

  /** A resolved lookup, counted in its day's row (written at the next lookup flush). */
  private acceptLookup(e: DnsQueryEvent): void {
    const l = lookupOf(e);
    if (!l) return;
    let rows = this.lookupRows;
    if (l.day !== this.lookupDay) {
      if (l.day < this.lookupDay) {
        // A late event from an earlier day: counted only in a row that day already has.
        const have = l.day === this.lookupDay - 1 ? this.lookupRowsBefore.find(l) : undefined;
        if (have) this.count(have, e.time);
        else this.lookupDrops++;
        return;
      }
      // A new day: its own rows (and bound); yesterday's stay for late events, unwritten ones included.
      this.lookupRowsBefore = l.day === this.lookupDay + 1 ? this.lookupRows : new DayRows();
      this.lookupRows = rows = new DayRows();
      this.lookupDay = l.day;
    }
    const have = rows.find(l);
    if (have) {
      this.count(have, e.time);
      return;
    }
    if (rows.size >= (this.opts.lookupKeysPerDay ?? 100_000)) {
      this.lookupDrops++;
      return;
    }
    const row = new DayRow(l, e.time);
    rows.add(row);
    this.count(row, e.time);
  }

  private count(row: DayRow, time: number): void {
    if (row.pending === 0) {
      row.pendingFirst = time;
      row.pendingLast = time;
      this.lookupsDirty.push(row);
    } else {
      if (time < row.pendingFirst) row.pendingFirst = time;
      if (time > row.pendingLast) row.pendingLast = time;
    }
    row.pending++;
  }

  /** Everything the pipeline counted, cumulative. */
  counters(): PipelineCounters {
    const c = this.opts.counters();
    const out = { ...ZERO_COUNTERS };
    for (const k of Object.keys(out) as (keyof PipelineCounters)[]) out[k] = this.base[k] + (k === 'storeDrops' ? this.drops : (c as PipelineCounters)[k]);
    return out;
  }

  /**
   * `event-loss`: records lost since the last look (in the kernel: socket
   * overflows, sequence gaps; dropped by the collector or the store;
   * malformed) are one alert saying how many and where. Records the kernel's
   * log budget held back are not lost (exact counters keep them).
   */
  reportLoss(): void {
    const c = this.counters();
    const lost = lostRecords(c);
    if (lost <= this.lossReported) return;
    const n = lost - this.lossReported;
    this.lossReported = lost;
    publishAlert({
      time: Date.now(),
      kind: 'event-loss',
      severity: 'warning',
      message: `${n} event record${n === 1 ? '' : 's'} lost in the last seconds (since events were first recorded: ${c.seqGaps} in the kernel, ${c.collectorDrops} dropped by the collector, ${c.storeDrops} by the store, ${c.malformed} malformed): the log is missing what they were`,
      detail: { lost: n, seqGaps: c.seqGaps, overflows: c.overflows, collectorDrops: c.collectorDrops, storeDrops: c.storeDrops, malformed: c.malformed },
    });
  }

  /** Writes what is queued, a batch per transaction. */
  flush(): void {
    const store = this.store;
    if (!store) return;
    const batchMax = this.opts.batchMax ?? 5_000;
    do {
      const batch = this.queue.length <= batchMax ? this.queue : this.queue.slice(0, batchMax);
      this.queue = this.queue.length <= batchMax ? [] : this.queue.slice(batchMax);
      const counters = this.counters();
      const key = JSON.stringify(counters);
      if (batch.length === 0 && key === this.lastSaved) return;
      try {
        store.append(batch, counters);
        this.lastSaved = key;
        for (const e of batch) this.stored[e.verdict]++;
      } catch (err) {
        // A full disk or a locked file: these events are lost, and counted as such.
        this.drops += batch.length;
        if (++this.writeErrors <= 10) this.rt?.log('error', 'event store write failed', { error: (err as Error).message, events: batch.length });
      }
    } while (this.queue.length > 0);
  }

  /** Takes the rows counted so far for writing; returns false when nothing is left to write. */
  private takeLookups(): boolean {
    if (this.lookupsDirty.length > 0) {
      for (const r of this.lookupsDirty) this.lookupsWriting.push(r);
      this.lookupsDirty = [];
    }
    return this.lookupsWriting.length > 0;
  }

  /** Writes one slice of the taken rows (what each counted since its last write); false when none is left. */
  private writeLookupSlice(): boolean {
    const store = this.store;
    if (!store || this.lookupsWriting.length === 0) return false;
    const n = Math.max(1, this.opts.lookupSlice ?? 250);
    const taken = this.lookupsWriting.length <= n ? this.lookupsWriting : this.lookupsWriting.slice(0, n);
    this.lookupsWriting = this.lookupsWriting.length <= n ? [] : this.lookupsWriting.slice(n);
    const slice: LookupRow[] = [];
    for (const r of taken) {
      // Counted again while waiting for its slice: written with its latest count, never twice.
      if (r.pending === 0) continue;
      slice.push({ day: r.day, name: r.name, verdict: r.verdict, uid: r.uid, unit: r.unit, cgroup: r.cgroup, process: r.process, count: r.pending, first: r.pendingFirst, last: r.pendingLast });
      r.pending = 0;
    }
    try {
      if (slice.length > 0) store.append([], undefined, slice);
    } catch (err) {
      for (const l of slice) this.lookupDrops += l.count;
      if (++this.writeErrors <= 10) this.rt?.log('error', 'event store write failed (DNS lookups)', { error: (err as Error).message, rows: slice.length });
    }
    return this.lookupsWriting.length > 0;
  }

  /** The lookup flush under way (slice by slice), if any. */
  private lookupFlush: Promise<void> | undefined;
  /** Someone waits for the flush under way (`sluice suggest`): no pauses between its slices. */
  private lookupHurry = false;

  /**
   * The lookup flush on the timer: a slice at a time, each followed by a
   * pause three times its length, so the writes take at most a quarter of
   * the event loop while they last. Measured before the pause (bench:dns's
   * profile at 5,000 new names a second): 150,000 rows every 30 s took the
   * loop for 2 s, 1 s of it in one second, and the guard's answers queued
   * behind it (rounds with a p50 of 19 ms).
   */
  private writeLookupsInSlices(): void {
    void this.writeLookupsNow(true);
  }

  /** Writes what was aggregated so far, a slice at a time; resolves when it is all written (what comes meanwhile waits for the next). `paced`: see writeLookupsInSlices; otherwise a slice per turn of the loop (someone waits: `sluice suggest`). */
  private writeLookupsNow(paced = false): Promise<{ written: boolean }> {
    if (!paced) this.lookupHurry = true;
    if (this.lookupFlush) return this.lookupFlush.then(() => this.writeLookupsNow(paced));
    if (!this.takeLookups()) return Promise.resolve({ written: true });
    this.lookupHurry = !paced;
    this.lookupFlush = new Promise<void>((resolve) => {
      const next = () => {
        const t0 = performance.now();
        if (!this.writeLookupSlice()) {
          resolve();
          return;
        }
        if (this.lookupHurry) setImmediate(next);
        else setTimeout(next, Math.max(1, Math.ceil(3 * (performance.now() - t0))));
      };
      next();
    }).finally(() => {
      this.lookupFlush = undefined;
    });
    return this.lookupFlush.then(() => ({ written: true }));
  }

  /** Writes every aggregated lookup now (at stop; tests). */
  flushLookups(): void {
    this.takeLookups();
    while (this.writeLookupSlice()) {
      // slice after slice
    }
  }

  private retain(limits: RetentionLimits): void {
    try {
      const n = this.store?.retain(limits) ?? 0;
      if (n > 0) this.rt?.log('info', 'event retention', { deleted: n });
    } catch (err) {
      this.rt?.log('warn', 'event retention failed', { error: (err as Error).message });
    }
  }

  status(): Record<string, unknown> {
    return { queued: this.queue.length, stored: this.stored, dropped: this.drops, lookupsDropped: this.lookupDrops, bytes: this.safeSize() };
  }

  async stop(): Promise<void> {
    channels.flow.unsubscribe(this.onFlow);
    channels.dnsQuery.unsubscribe(this.onDns);
    clearInterval(this.timer);
    clearInterval(this.retentionTimer);
    clearInterval(this.lossTimer);
    clearInterval(this.lookupTimer);
    this.flush();
    this.flushLookups();
    this.store?.close();
    this.store = undefined;
  }
}

/** The default store: SQLite in the state directory. */
export function openDefaultStore(stateDir: string): EventStore {
  return new SqliteStore(eventStorePath(stateDir));
}
