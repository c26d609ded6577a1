import { join } from 'node:path';
import { channels, type AlertEvent, type DnsQueryEvent, type FlowEvent } from '../events/channels.js';
import { parseAddr, rangeContains } from '../net/ip.js';
import type { AlertRoute, Policy, Suppression } from '../policy/policy.js';
import type { Component, Runtime } from '../runtime/component.js';
import { Outbox, type RouteCounters } from './outbox.js';
import { Rollup, type AlertMessage, type AlertOccurrence } from './rollup.js';
import { deliver } from './sinks.js';
import { AttributionGauge, NewDestinations, whoOf } from './watches.js';

/** How often due alerts are looked for when nothing new was queued. */
const TICK_MS = 1_000;
/** Attempts before an alert its sink refuses for good (HTTP 4xx but 408 and 429) is given up. */
const PERMANENT_TRIES = 3;

/** The alert database in a state directory. */
export function alertsPath(stateDir: string): string {
  return join(stateDir, 'alerts.db');
}

/** Whether a suppression covers an occurrence (today, by UTC date). */
export function suppressedBy(list: readonly Suppression[], o: AlertOccurrence, address: string | undefined, today = new Date().toISOString().slice(0, 10)): Suppression | null {
  for (const s of list) {
    if (s.until < today) continue;
    if (s.rule !== null && s.rule !== o.rule) continue;
    if (s.destination !== null) {
      if (s.destination.kind === 'addr') {
        const a = address === undefined ? null : parseAddr(address);
        if (!a || !rangeContains(s.destination.range, a.family, a.value)) continue;
      } else {
        const name = (o.destination ?? '').toLowerCase().replace(/\.$/, '');
        const p = s.destination.pattern;
        if (!(p.wildcard ? name.endsWith(`.${p.name}`) : name === p.name)) continue;
      }
    }
    return s;
  }
  return null;
}

/** The occurrence a flow event is, for the triggers that care; null for allowed flows. */
export function flowOccurrence(e: FlowEvent): AlertOccurrence | null {
  if (e.verdict === 'allowed') return null;
  const who = whoOf(e.process, e.user, e.uid);
  const proto = e.proto === 6 ? 'tcp' : e.proto === 17 ? 'udp' : `proto ${e.proto}`;
  const where = `${e.hostname ? `${e.hostname} (${e.dst})` : e.dst}${e.dport !== undefined ? ` port ${e.dport}/${proto}` : ''}`;
  const trigger = e.rule === '#encrypted-dns' ? 'encrypted-dns' : 'blocked';
  const verb = e.verdict === 'would-block' ? 'would have been blocked (audit)' : 'blocked';
  const o: AlertOccurrence = {
    time: e.time,
    trigger,
    severity: 'warning',
    rule: e.rule,
    destination: e.hostname ?? e.dst,
    message: `${who ?? 'an unknown process'} to ${where} ${verb} by ${e.rule}`,
    detail: { verdict: e.verdict, dst: e.dst, ...(e.dport !== undefined ? { dport: e.dport } : {}), proto, ...(e.process ? { process: e.process } : {}), ...(e.user ? { user: e.user } : {}) },
  };
  if (who !== undefined) o.who = who;
  return o;
}

/** The occurrence a DNS query is: a name no rule allows (or a deny rule refuses) asked for. */
export function dnsOccurrence(e: DnsQueryEvent): AlertOccurrence | null {
  if (e.verdict !== 'blocked' && e.verdict !== 'would-block') return null;
  const who = whoOf(e.process, undefined, e.client.uid);
  const rule = e.rules[0] ?? '#default';
  const o: AlertOccurrence = {
    time: e.time,
    trigger: 'unlisted-name',
    severity: 'warning',
    rule,
    destination: e.name,
    message: `${who ?? 'an unknown process'} asked for ${e.name}, ${e.verdict === 'would-block' ? 'which enforce mode would refuse (audit)' : 'refused'} (${rule})`,
    detail: { verdict: e.verdict, type: e.type, ...(e.process ? { process: e.process } : {}) },
  };
  if (who !== undefined) o.who = who;
  return o;
}

/** The triggers the core raises itself (channels.alert). */
const CORE_TRIGGERS = ['tamper', 'reload-rejected', 'event-loss', 'daemon-failed'] as const;

/** The occurrence an alert the core raised is (tamper, a rejected reload, lost events, a daemon that failed). */
export function coreOccurrence(e: AlertEvent): AlertOccurrence | null {
  const trigger = CORE_TRIGGERS.find((t) => t === e.kind);
  if (trigger === undefined) return null;
  return { time: e.time, trigger, severity: e.severity, message: e.message, ...(e.detail ? { detail: e.detail } : {}) };
}

interface RouteState {
  route: AlertRoute;
  rollup: Rollup;
  /** A delivery of this route is under way (one at a time: a route's alerts go out in order). */
  busy: boolean;
  suppressed: number;
}

/**
 * Alerts: listens to blocked flows, refused names and the core's alerts,
 * keeps what each `alerts:` route asks for (its triggers, its rules, not
 * what a suppression covers), rolls repeats up per route and key over the
 * route's window, and stores each resulting message in the durable outbox
 * before delivering it. Delivery is asynchronous, one message at a time per
 * route, with backoff on failure: a sink that is down or slow never holds
 * the event loop (which answers DNS) and never loses an alert.
 */
export class AlertsComponent implements Component {
  readonly name = 'alerts';
  private rt: Runtime | undefined;
  private outbox: Outbox | undefined;
  private routes = new Map<string, RouteState>();
  private suppress: readonly Suppression[] = [];
  private tick: NodeJS.Timeout | undefined;
  private inflight = new Set<Promise<void>>();
  private toStore: AlertMessage[] = [];
  private storeScheduled = false;
  private stopping = false;
  readonly stats = { occurrences: 0, suppressed: 0, queued: 0, delivered: 0, attemptsFailed: 0, givenUp: 0 };

  /** `attribution-low` and `new-destination`, while some route listens for them. */
  private gauge: AttributionGauge | undefined;
  private newDest: NewDestinations | undefined;

  private readonly onFlow = (m: unknown) => {
    const e = m as FlowEvent;
    this.take(flowOccurrence(e), e.dst);
    if (this.gauge) this.take(this.gauge.add(e), undefined);
    if (this.newDest) this.take(this.newDest.fromFlow(e), e.dst);
  };
  private readonly onDns = (m: unknown) => {
    const e = m as DnsQueryEvent;
    this.take(dnsOccurrence(e), undefined);
    if (this.newDest) this.take(this.newDest.fromDns(e), undefined);
  };
  private readonly onCore = (m: unknown) => this.take(coreOccurrence(m as AlertEvent), undefined);

  /**
   * `open`: the outbox (tests); `newDestinations` and `attribution`: the
   * triggers' settings (defaults: an hour of learning, 100,000 pairs in
   * memory; windows of 60 s, at least 20 events, under 50% named);
   * `journalSocket`: where journal sinks send (default journald's).
   */
  constructor(
    private readonly opts: {
      open?: (rt: Runtime) => Outbox;
      newDestinations?: { learnMs: number; max: number };
      attribution?: { windowMs: number; minEvents: number; threshold: number };
      /** The journal's socket for journal sinks (tests: a path where none is, or their own). */
      journalSocket?: string;
    } = {},
  ) {}

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.stopping = false;
    this.outbox = (this.opts.open ?? ((r) => new Outbox(alertsPath(r.state.dir))))(rt);
    this.configure(rt.policy);
    this.tick = setInterval(() => {
      if (this.gauge) this.take(this.gauge.tick(Date.now()), undefined);
      this.flushSeen();
      this.pump();
    }, TICK_MS);
    this.tick.unref();
    this.pump();
    rt.metrics.collect(() => this.metrics());
    rt.control.handle('alerts.status', { call: () => this.status() });
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.configure(rt.policy);
  }

  /** Routes as the policy says; a route that changed or went has its open windows sent first. */
  private configure(policy: Policy): void {
    const next = new Map(policy.alerts.map((r) => [r.name, r]));
    for (const [name, st] of this.routes) {
      const r = next.get(name);
      if (!r || JSON.stringify(r) !== JSON.stringify(st.route)) {
        st.rollup.flush();
        this.routes.delete(name);
      }
    }
    for (const [name, r] of next) {
      if (this.routes.has(name)) continue;
      this.routes.set(name, { route: r, rollup: new Rollup(name, r.windowMs, (m) => this.queue(m)), busy: false, suppressed: 0 });
    }
    // Alerts still queued for a route the policy no longer has (its last window included, stored now):
    // no sink to send them to. Given up, counted and said.
    this.store();
    if (this.outbox) {
      for (const route of this.outbox.routes()) {
        if (next.has(route)) continue;
        const n = this.outbox.dropRoute(route);
        if (n > 0) this.rt?.log('warn', `alert route ${route} is no longer in the policy: gave up ${n} alert(s) queued for it`);
      }
    }
    this.suppress = policy.suppress;
    // Subscribed only to what some route listens for: with no subscriber, publishing costs nothing
    // (the guard publishes every query it answers).
    const wants = (t: readonly string[]) => [...this.routes.values()].some((st) => st.route.on.some((x) => t.includes(x)));
    if (!wants(['attribution-low'])) this.gauge = undefined;
    else this.gauge ??= new AttributionGauge(this.opts.attribution);
    if (!wants(['new-destination'])) {
      this.flushSeen();
      this.newDest = undefined;
    } else if (!this.newDest && this.outbox) {
      try {
        this.newDest = new NewDestinations(this.outbox, this.opts.newDestinations);
      } catch (err) {
        this.rt?.log('error', 'cannot read the destinations seen so far: new-destination alerts are off', { error: (err as Error).message });
      }
    }
    this.subscribe(channels.flow, this.onFlow, wants(['blocked', 'encrypted-dns', 'attribution-low', 'new-destination']));
    this.subscribe(channels.dnsQuery, this.onDns, wants(['unlisted-name', 'new-destination']));
    this.subscribe(channels.alert, this.onCore, wants(CORE_TRIGGERS));
    const today = new Date().toISOString().slice(0, 10);
    for (const s of policy.suppress) {
      if (s.until < today) this.rt?.log('warn', `suppression on line ${s.line} expired on ${s.until}: its alerts are sent again`, { reason: s.reason });
    }
  }

  private subscribed = new Set<(m: unknown) => void>();
  private subscribe(ch: typeof channels.flow, fn: (m: unknown) => void, on: boolean): void {
    if (on && !this.subscribed.has(fn)) {
      ch.subscribe(fn);
      this.subscribed.add(fn);
    } else if (!on && this.subscribed.has(fn)) {
      ch.unsubscribe(fn);
      this.subscribed.delete(fn);
    }
  }

  private take(o: AlertOccurrence | null, address: string | undefined): void {
    if (o === null || this.routes.size === 0 || this.stopping) return;
    this.stats.occurrences++;
    let covered: boolean | undefined;
    for (const st of this.routes.values()) {
      const r = st.route;
      if (!r.on.includes(o.trigger)) continue;
      // `rules:` narrows the events that have a rule; tamper and rejected reloads have none, and pass.
      if (r.rules !== null && o.rule !== undefined && !r.rules.includes(o.rule)) continue;
      covered ??= suppressedBy(this.suppress, o, address) !== null;
      if (covered) {
        st.suppressed++;
        this.stats.suppressed++;
        continue;
      }
      st.rollup.add(o);
    }
  }

  /**
   * A rolled-up message: stored first, then delivered. Messages of one turn
   * of the event loop (a window closing on many keys) are stored in one
   * transaction, after the turn: one disk sync, not one per key.
   */
  private queue(m: AlertMessage): void {
    this.toStore.push(m);
    // A critical alert is on disk before anything else happens.
    if (m.severity === 'critical') {
      this.store();
      return;
    }
    if (this.storeScheduled) return;
    this.storeScheduled = true;
    setImmediate(() => {
      this.storeScheduled = false;
      this.store();
    });
  }

  private store(): void {
    const batch = this.toStore;
    this.toStore = [];
    if (!this.outbox || batch.length === 0) return;
    try {
      this.outbox.enqueueMany(batch);
      this.stats.queued += batch.length;
    } catch (err) {
      this.rt?.log('error', `could not store ${batch.length} alert(s) (they are lost)`, { error: (err as Error).message, first: batch[0]?.text });
      return;
    }
    if (!this.stopping) this.pump();
  }

  /** Starts a delivery for every route that has an alert due and none under way. */
  private pump(): void {
    const outbox = this.outbox;
    if (!outbox) return;
    for (const st of this.routes.values()) {
      if (st.busy) continue;
      const row = outbox.next(st.route.name);
      if (!row) continue;
      st.busy = true;
      const p = deliver(st.route.sink, row.message, (message, fields) => this.rt?.log('warn', message, fields), this.opts.journalSocket === undefined ? {} : { journalSocket: this.opts.journalSocket })
        .then(
          () => {
            if (this.outbox !== outbox) return;
            outbox.delivered(row.id, row.route);
            this.stats.delivered++;
          },
          (err: unknown) => {
            if (this.outbox !== outbox) return;
            const why = (err as Error).message || String(err);
            this.stats.attemptsFailed++;
            // A refusal that will not change (a webhook answering 404 or 403) is not retried for a week:
            // after a few tries it is given up, so it does not hold back the route's later alerts.
            const permanent = (err as { permanent?: boolean }).permanent === true && row.attempts + 1 >= PERMANENT_TRIES;
            if (outbox.failedAttempt(permanent ? { ...row, attempts: Number.MAX_SAFE_INTEGER - 1 } : row, why)) {
              this.stats.givenUp++;
              this.rt?.log('error', `alert route ${row.route}: gave up an alert after ${row.attempts + 1} attempts`, { error: why, text: row.message.text });
            }
          },
        )
        .finally(() => {
          st.busy = false;
          this.inflight.delete(p);
          // The next one of this route, if due.
          if (!this.stopping) setImmediate(() => this.pump());
        });
      this.inflight.add(p);
    }
  }

  /** Stores the destination pairs seen since the last time (new-destination's memory). */
  private flushSeen(): void {
    try {
      this.newDest?.flush();
    } catch (err) {
      this.rt?.log('warn', 'could not store the destinations seen (they may be reported as new again after a restart)', { error: (err as Error).message });
    }
  }

  async stop(): Promise<void> {
    // Open windows become messages now, stored: they go out after the restart if not before.
    for (const st of this.routes.values()) st.rollup.flush();
    this.store();
    this.flushSeen();
    this.newDest = undefined;
    this.gauge = undefined;
    this.stopping = true;
    this.subscribe(channels.flow, this.onFlow, false);
    this.subscribe(channels.dnsQuery, this.onDns, false);
    this.subscribe(channels.alert, this.onCore, false);
    if (this.tick) clearInterval(this.tick);
    // A delivery under way gets a moment; whatever is not acknowledged stays queued.
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => setTimeout(r, 2_000).unref())]);
    this.outbox?.close();
    this.outbox = undefined;
    this.routes.clear();
  }

  /** Per route: its counters from the outbox, what is held in open windows, what was suppressed. */
  status(): Record<string, unknown> {
    const routes: Record<string, RouteCounters & { sink: string; open: number; suppressed: number }> = {};
    for (const st of this.routes.values()) {
      const c = this.outbox?.counters(st.route.name) ?? { delivered: 0, retried: 0, failed: 0, queued: 0, oldestQueued: null, lastError: null };
      routes[st.route.name] = { ...c, sink: st.route.sink.kind, open: st.rollup.open, suppressed: st.suppressed };
    }
    return { ...this.stats, ...(this.newDest ? { newDestinations: this.newDest.stats } : {}), routes };
  }

  private metrics() {
    const outbox = this.outbox;
    const counted = [...this.routes.values()].map((st) => ({ labels: { route: st.route.name, sink: st.route.sink.kind }, c: outbox?.counters(st.route.name) }));
    const per = (pick: (c: RouteCounters) => number) => counted.map(({ labels, c }) => ({ labels, value: c ? pick(c) : 0 }));
    return [
      { name: 'sluice_alerts_delivered_total', help: 'Alerts a sink took', type: 'counter' as const, samples: per((c) => c.delivered) },
      { name: 'sluice_alerts_retried_total', help: 'Failed delivery attempts that will be retried', type: 'counter' as const, samples: per((c) => c.retried) },
      { name: 'sluice_alerts_failed_total', help: 'Alerts given up after retrying for too long (each logged)', type: 'counter' as const, samples: per((c) => c.failed) },
      { name: 'sluice_alerts_queued', help: 'Alerts waiting in the outbox', type: 'gauge' as const, samples: per((c) => c.queued) },
      {
        name: 'sluice_alerts_suppressed_total',
        help: 'Occurrences a suppression kept from a route (counted, not sent)',
        type: 'counter' as const,
        samples: [...this.routes.values()].map((st) => ({ labels: { route: st.route.name, sink: st.route.sink.kind }, value: st.suppressed })),
      },
    ];
  }
}
