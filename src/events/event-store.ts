import type { FlowEvent } from './channels.js';

/**
 * The event store interface. The collector never sees an implementation:
 * the store component subscribes to the flow channel and writes through
 * this interface, so a server database can be added later beside the
 * embedded SQLite store without touching the collector. One contract suite
 * (test/support/event-store-contract.ts) runs against every implementation.
 */

/** How the process behind an event was found (see README "Monitoring"). */
export type AttributionMethod = 'kernel' | 'socket' | 'cgroup' | 'user';

/** What the collector publishes and the store keeps: a flow event plus how it was attributed. */
export interface RecordedEvent extends FlowEvent {
  attribution?: AttributionMethod;
}

/** An event as read back: with the store's id (increasing in write order). */
export interface StoredEvent extends RecordedEvent {
  id: number;
}

export type Verdict = FlowEvent['verdict'];

/** Filters for a query; every given filter must match (AND). */
export interface EventQuery {
  /** Events at or after this time (ms since the epoch). */
  since?: number;
  /** Events before this time (ms since the epoch). */
  until?: number;
  verdict?: Verdict;
  /** Process name: matches the comm, the executable path or its base name, exactly. */
  process?: string;
  rule?: string;
  /** Only events with a larger id (for following a growing store); results then start at the oldest. */
  afterId?: number;
  /**
   * At most this many events. Without afterId the newest ones are kept (like
   * `tail`); with afterId the oldest after it. Results are always in id order.
   */
  limit?: number;
}

export interface CountRow {
  key: string;
  count: number;
}

/** One bucket of a timeline: events of one verdict from `time` (ms) for the bucket's length. */
export interface TimelineRow {
  time: number;
  verdict: Verdict;
  count: number;
}

/** Aggregates over a time window. */
export interface EventStats {
  total: number;
  byVerdict: Record<Verdict, number>;
  /** Per rule and verdict, largest first. */
  byRule: { rule: string; verdict: Verdict; count: number }[];
  /** Per destination `dst proto/port` (or the ICMP type), largest first. */
  byDestination: CountRow[];
  /** Per process (executable path, else comm, else "(unknown)"), largest first. */
  byProcess: CountRow[];
  /** Events with a pid, of all events. */
  attributed: number;
  first: number | null;
  last: number | null;
}

/** Cumulative health counters of the pipeline, kept with the events so `sluice stats` works without the daemon. */
export interface PipelineCounters {
  /** NFLOG records received. */
  records: number;
  /** Records that could not be parsed. */
  malformed: number;
  /** Records with a prefix that is not Sluice's. */
  foreign: number;
  /** Socket buffer overflows (ENOBUFS): the kernel dropped records; how many is in seqGaps. */
  overflows: number;
  /** Records the kernel's sequence numbers say were lost. */
  seqGaps: number;
  /** Records dropped because the collector's queue was full. */
  collectorDrops: number;
  /** Events dropped because the store's queue was full or a write failed. */
  storeDrops: number;
}

/** Records lost or unusable after the kernel's log budget: lost in the kernel, dropped by the collector or the store, malformed. */
export function lostRecords(c: PipelineCounters): number {
  return c.seqGaps + c.collectorDrops + c.storeDrops + c.malformed;
}

export const ZERO_COUNTERS: PipelineCounters = { records: 0, malformed: 0, foreign: 0, overflows: 0, seqGaps: 0, collectorDrops: 0, storeDrops: 0 };

/**
 * DNS lookups that resolved, aggregated: one row per UTC day, name, verdict
 * and asker (uid, unit, cgroup, process name), with how many lookups and the
 * first and last of them. Kept beside the flow events so that a name the
 * workload resolved but never connected to is known to `sluice suggest` and
 * `suggest --check` too. Only lookups answered NOERROR are kept: `allowed`
 * (forwarded and answered) or `would-block` (audit mode: answered by the
 * resolver, refused under enforcement).
 */
export interface LookupRow {
  /** Days since the epoch (UTC). */
  day: number;
  name: string;
  verdict: 'allowed' | 'would-block';
  uid: number | null;
  unit: string | null;
  cgroup: string | null;
  /** Executable base name, else comm. */
  process: string | null;
  count: number;
  first: number;
  last: number;
}

/** The aggregation key of a lookup row. */
export function lookupKey(r: Pick<LookupRow, 'day' | 'name' | 'verdict' | 'uid' | 'unit' | 'cgroup' | 'process'>): string {
  return JSON.stringify([r.day, r.name, r.verdict, r.uid, r.unit, r.cgroup, r.process]);
}

export interface RetentionLimits {
  /** Delete events older than this (ms). */
  maxAgeMs?: number;
  /** Keep the store's size at most this (bytes), deleting the oldest events. */
  maxBytes?: number;
}

/** The events store. Implementations are synchronous: SQLite is, and the daemon batches writes. */
export interface EventStore {
  /**
   * Appends a batch atomically. When it returns, the events are durable to
   * the implementation's promise (SQLite: committed to the WAL, synced); the
   * pipeline counters, if given, are replaced in the same transaction.
   */
  append(events: RecordedEvent[], counters?: PipelineCounters, lookups?: LookupRow[]): void;
  /**
   * Lookup rows overlapping the window (their last lookup at or after
   * `since`, their first before `until`), by day and name. Rows of the same
   * key given to append are added up (count, first, last).
   */
  scanLookups(q: { since: number; until: number }): Iterable<LookupRow>;
  query(q: EventQuery): StoredEvent[];
  stats(q: Pick<EventQuery, 'since' | 'until'>, top?: number): EventStats;
  /** Counts per verdict in buckets of `bucketMs` (each bucket starts at a multiple of it), oldest first; empty buckets are left out. */
  timeline(q: Pick<EventQuery, 'since' | 'until'>, bucketMs: number): TimelineRow[];
  /** The pipeline counters last written (zeros for a new store). */
  counters(): PipelineCounters;
  /** Deletes by age and size (lookup rows too: by their last lookup, and older than the oldest event kept); returns how many events went. */
  retain(limits: RetentionLimits, now?: number): number;
  /** The store's current size in bytes (what retention by size compares). */
  sizeBytes(): number;
  /** The largest id written so far (0 when empty). */
  lastId(): number;
  close(): void;
}
