import type { AlertTrigger } from '../policy/policy.js';

/** One occurrence of something an alert route listens for. */
export interface AlertOccurrence {
  time: number;
  trigger: AlertTrigger;
  severity: 'info' | 'warning' | 'critical';
  /** The rule behind it (`#default` and the other built-in names included), when there is one. */
  rule?: string;
  /** Who: the unit, else the executable or command, else the user. */
  who?: string;
  /** Where: the name (asked, or the address's), else the address. */
  destination?: string;
  /** One line saying what happened (the first occurrence's is kept). */
  message: string;
  detail?: Record<string, unknown>;
}

/** What is sent: every occurrence of one key over one window, counted. */
export interface AlertMessage {
  route: string;
  trigger: AlertTrigger;
  severity: 'info' | 'warning' | 'critical';
  rule?: string;
  who?: string;
  destination?: string;
  count: number;
  /** First and last occurrence in this message (ISO 8601). */
  first: string;
  last: string;
  /** The first occurrence's words, and a summary with the count. */
  message: string;
  text: string;
  detail?: Record<string, unknown>;
  /** Occurrences beyond the distinct-key limit are counted under one key: this message stands for many keys. */
  overflow?: boolean;
  test?: boolean;
}

interface Bucket {
  occ: AlertOccurrence;
  count: number;
  first: number;
  last: number;
  timer: NodeJS.Timeout;
  overflow: boolean;
}

/** Distinct keys held per window; beyond it occurrences are counted under one overflow key per trigger. */
const MAX_KEYS = 10_000;
/** Room kept for critical keys beyond MAX_KEYS. */
const MAX_CRITICAL_KEYS = 1_000;

/**
 * The roll-up key. A critical occurrence's changes are part of it (two
 * different tampers are two alerts, not one counted twice); not its words,
 * which name the committing pid and the milliseconds a restore took, so that
 * the same tamper repeated in a loop is one alert and a summary.
 */
const keyOf = (o: AlertOccurrence) => {
  const base = `${o.trigger}\u0000${o.rule ?? ''}\u0000${o.who ?? ''}\u0000${o.destination ?? ''}`;
  if (o.severity !== 'critical') return base;
  const changes = o.detail?.changes;
  return `${base}\u0000${Array.isArray(changes) ? JSON.stringify(changes) : o.message}`;
};

/**
 * Rolls occurrences up by key (trigger, rule, who, destination) over a
 * window: the first occurrence of a key opens a bucket, and at the end of
 * the window the bucket becomes one message with the count and the first
 * and last times. A critical occurrence (tamper) is not held: it goes out at
 * once, and the same words repeated within the window follow as one
 * summary (different words are a different key). Nothing is dropped: past
 * MAX_KEYS distinct keys in a window, non-critical occurrences are counted
 * under one overflow key per trigger, so the counts always add up.
 */
export class Rollup {
  private buckets = new Map<string, Bucket>();
  /** Occurrences taken in, and occurrences sent in messages: equal once flushed. */
  readonly counts = { occurrences: 0, sent: 0, messages: 0 };

  constructor(
    readonly route: string,
    readonly windowMs: number,
    private emit: (m: AlertMessage) => void,
  ) {}

  add(o: AlertOccurrence): void {
    this.counts.occurrences++;
    let key = keyOf(o);
    let overflow = false;
    // Critical occurrences get their own key past MAX_KEYS (a flood of blocked attempts never hides a
    // tamper), up to MAX_CRITICAL_KEYS more: beyond, they too are counted under the overflow key.
    if (!this.buckets.has(key) && this.buckets.size >= (o.severity === 'critical' ? MAX_KEYS + MAX_CRITICAL_KEYS : MAX_KEYS)) {
      key = `${o.trigger}\u0000overflow`;
      overflow = true;
    }
    const b = this.buckets.get(key);
    if (b) {
      // A critical key's first occurrence went out alone: the summary starts at the first repeat.
      if (b.count === 0) b.first = o.time;
      b.count++;
      b.last = o.time;
      return;
    }
    if (o.severity === 'critical' && !overflow) {
      // Out at once; repeats within the window follow as a summary.
      this.send({ occ: o, count: 1, first: o.time, last: o.time, overflow: false });
      const held: Bucket = { occ: o, count: 0, first: o.time, last: o.time, overflow: false, timer: setTimeout(() => this.close(key), this.windowMs) };
      held.timer.unref();
      this.buckets.set(key, held);
      return;
    }
    const nb: Bucket = { occ: overflow ? { ...o, rule: undefined, who: undefined, destination: undefined, message: `${o.trigger} events beyond ${MAX_KEYS} distinct keys in one window` } : o, count: 1, first: o.time, last: o.time, overflow, timer: setTimeout(() => this.close(key), this.windowMs) };
    nb.timer.unref();
    this.buckets.set(key, nb);
  }

  private close(key: string): void {
    const b = this.buckets.get(key);
    if (!b) return;
    clearTimeout(b.timer);
    this.buckets.delete(key);
    if (b.count > 0) this.send(b);
  }

  /** Sends every open bucket now (a stop, a reload that removes the route). */
  flush(): void {
    for (const key of [...this.buckets.keys()]) this.close(key);
  }

  /** Open buckets (for status). */
  get open(): number {
    return this.buckets.size;
  }

  private send(b: Pick<Bucket, 'occ' | 'count' | 'first' | 'last' | 'overflow'>): void {
    this.counts.sent += b.count;
    this.counts.messages++;
    const o = b.occ;
    const first = new Date(b.first).toISOString();
    const last = new Date(b.last).toISOString();
    const times = b.count === 1 ? `at ${first}` : `${b.count} times from ${first} to ${last}`;
    const text = `[sluice ${o.trigger}] ${o.message} (${times})`;
    const m: AlertMessage = { route: this.route, trigger: o.trigger, severity: o.severity, count: b.count, first, last, message: o.message, text };
    if (o.rule !== undefined) m.rule = o.rule;
    if (o.who !== undefined) m.who = o.who;
    if (o.destination !== undefined) m.destination = o.destination;
    if (o.detail !== undefined) m.detail = o.detail;
    if (b.overflow) m.overflow = true;
    this.emit(m);
  }
}
