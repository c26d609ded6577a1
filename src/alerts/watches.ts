import type { DnsQueryEvent, FlowEvent } from '../events/channels.js';
import type { AlertOccurrence } from './rollup.js';

/** Who sent it, for the triggers that are per process or unit: the unit, else the program, else the user. */
export function whoOf(p: FlowEvent['process'] | undefined, user: string | undefined, uid: number | undefined): string | undefined {
  return p?.unit ?? p?.exe ?? p?.comm ?? user ?? (uid !== undefined ? `uid ${uid}` : undefined);
}

/**
 * `attribution-low`: over each window, the share of connection events
 * (blocked, would-block and logged allowed ones) that named their process.
 * Below `threshold` with at least `minEvents` events, the window is one
 * occurrence: the log no longer says who is talking (short-lived senders,
 * or attribution failing).
 */
export class AttributionGauge {
  private start: number | null = null;
  private events = 0;
  private attributed = 0;

  constructor(private readonly opts: { windowMs: number; minEvents: number; threshold: number } = { windowMs: 60_000, minEvents: 20, threshold: 0.5 }) {}

  add(e: FlowEvent): AlertOccurrence | null {
    const out = this.tick(e.time);
    this.start ??= e.time;
    this.events++;
    if (e.process?.pid !== undefined) this.attributed++;
    return out;
  }

  /** Closes the window if it is over (called on each event and on a timer): its occurrence, if it was low. */
  tick(now: number): AlertOccurrence | null {
    if (this.start === null || now - this.start < this.opts.windowMs) return null;
    const { events, attributed } = this;
    this.start = null;
    this.events = 0;
    this.attributed = 0;
    if (events < this.opts.minEvents || attributed / events >= this.opts.threshold) return null;
    const pct = Math.round((100 * attributed) / events);
    return {
      time: now,
      trigger: 'attribution-low',
      severity: 'warning',
      message: `only ${attributed} of ${events} connection events in ${Math.round(this.opts.windowMs / 1000)} s named their process (${pct}%, under ${Math.round(this.opts.threshold * 100)}%): short-lived senders, or attribution failing (see sluice stats)`,
      detail: { events, attributed, windowMs: this.opts.windowMs },
    };
  }
}

/** How a pair store looks to NewDestinations (the alert database; a map in tests). */
export interface SeenStore {
  seen(limit: number, now?: number): { since: number; pairs: { who: string; destination: string }[] };
  addSeen(pairs: readonly { who: string; destination: string; first: number }[]): void;
}

/**
 * `new-destination`: a process or unit reaching a destination (the name,
 * else the address) it was never seen reaching before: an allowed
 * connection that was logged, or an allowed name its DNS guard answered.
 * Pairs are remembered in the alert database, across restarts; for the
 * first `learnMs` after the database began recording them, pairs are only
 * learned (everything is new on a first start). Memory holds the newest
 * `max` pairs: one forgotten and seen again is new again.
 */
export class NewDestinations {
  private readonly known = new Map<string, true>();
  private readonly since: number;
  private pending: { who: string; destination: string; first: number }[] = [];
  /** Pairs learned without an alert (the learning period) and with one. */
  readonly stats = { learned: 0, alerted: 0 };

  constructor(
    private readonly store: SeenStore,
    private readonly opts: { learnMs: number; max: number } = { learnMs: 3_600_000, max: 100_000 },
    now = Date.now(),
  ) {
    const { since, pairs } = store.seen(opts.max, now);
    this.since = since;
    for (const p of pairs) this.known.set(key(p.who, p.destination), true);
  }

  fromFlow(e: FlowEvent): AlertOccurrence | null {
    if (e.verdict !== 'allowed') return null;
    const proto = e.proto === 6 ? 'tcp' : e.proto === 17 ? 'udp' : `proto ${e.proto}`;
    return this.take(e.time, whoOf(e.process, e.user, e.uid), e.hostname ?? e.dst, e.rule, `${e.hostname ? `${e.hostname} (${e.dst})` : e.dst}${e.dport !== undefined ? ` port ${e.dport}/${proto}` : ''}`, e.process);
  }

  fromDns(e: DnsQueryEvent): AlertOccurrence | null {
    if (e.verdict !== 'allowed') return null;
    const name = e.name.toLowerCase().replace(/\.$/, '');
    return this.take(e.time, whoOf(e.process, undefined, e.client.uid), name, e.rules[0], `${name} (asked for)`, e.process);
  }

  private take(time: number, who: string | undefined, destination: string, rule: string | undefined, where: string, process: FlowEvent['process'] | undefined): AlertOccurrence | null {
    // Not per anyone: nothing to compare with.
    if (who === undefined || destination === '') return null;
    const k = key(who, destination);
    if (this.known.has(k)) return null;
    this.known.set(k, true);
    if (this.known.size > this.opts.max) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
    this.pending.push({ who, destination, first: time });
    if (time - this.since < this.opts.learnMs) {
      this.stats.learned++;
      return null;
    }
    this.stats.alerted++;
    const o: AlertOccurrence = {
      time,
      trigger: 'new-destination',
      severity: 'info',
      who,
      destination,
      message: `${who} reached ${where} for the first time${rule ? ` (allowed by ${rule})` : ''}`,
      detail: { ...(process ? { process } : {}) },
    };
    if (rule !== undefined) o.rule = rule;
    return o;
  }

  /** Stores the pairs seen since the last flush (one transaction). */
  flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.store.addSeen(batch);
  }
}

const key = (who: string, destination: string) => `${who}\u0000${destination}`;
