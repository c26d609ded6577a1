import { channels, type DnsQueryEvent } from '../events/channels.js';
import type { RecordedEvent } from '../events/event-store.js';
import { parseAddr, type AddrRange } from '../net/ip.js';
import { explain, type Query } from '../policy/explain.js';
import type { Policy } from '../policy/policy.js';

/** What one observed answer taught: the name, the rules whose sets it filled (none: a refused name, seen only), when. */
interface Seen {
  time: number;
  name: string;
  rules: readonly string[];
}

interface Held {
  e: RecordedEvent;
  due: number;
  settled: boolean;
}

export interface AuditReconcilerOptions {
  /** How long a would-block record waits for the DNS answer that may explain it (ms, default 500). */
  holdMs?: number;
  /** How long before a record an answer still explains it: the set write's worst delay (ms, default 5,000). */
  windowMs?: number;
  /** How much later than the record an answer's own record may be timed (two sockets, read in turn; ms, default 1,000). */
  skewMs?: number;
  /** Records held at once; beyond it they are judged at once, on what is known (default 16,384). */
  maxHeld?: number;
  /** Addresses remembered from answers (default 65,536; the oldest go first). */
  maxAddresses?: number;
  now?: () => number;
}

export interface AuditReconcilerStats {
  /** Would-block records held for a moment, in case an answer explains them. */
  held: number;
  /** Records an earlier answer explained: the race, not a would-block. */
  reconciled: number;
  /** ...of which published as allowed (their rule logs allowed flows, as the kernel would have). */
  relabelled: number;
  /** Held records published as would-block: no answer explained them. */
  confirmed: number;
  /** Records judged without waiting because too many were held. */
  overflow: number;
}

const PROTO: Record<number, Query['proto']> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };

/**
 * Audit mode learns an allowed name's addresses by watching its DNS reply go
 * by (NFLOG): nothing on the packet path waits for the daemon, so a program
 * that connects the moment its answer arrives can reach the output hook
 * before the address is in the rule's set, and the kernel logs would-block
 * for a connection the policy allows (on a fresh address this happens to
 * nearly every such connect).
 *
 * The kernel cannot be made to see the reply first without putting the
 * daemon on the packet path, so the collector reconciles: a would-block
 * record of the default deny is held for a moment; if the daemon observed an
 * answer that put its destination in an allow rule's set at most `windowMs`
 * before it (or is told of one while it waits), the record is judged again
 * by the policy's own interpreter (explain) with that address learned for
 * those rules. When that allows it, the record is the race: it is published
 * as the kernel would have logged the flow had the set been written (an
 * allowed event when the rule logs allowed flows, else nothing), never as
 * would-block. Anything else (another port, another user, a deny rule, an
 * answer long before) stays would-block.
 *
 * Only what enforce mode would have allowed is reconciled: in enforce mode
 * the guard writes the set before releasing the answer, so the same
 * sequence (answer, then connect) is admitted there. A record that stays
 * would-block and has no hostname (attribution ran before the answer was
 * read) is named by the answer observed for its address, allowed or not, so
 * `sluice suggest` can propose the name. Memory is bounded
 * (`maxHeld`, `maxAddresses`).
 */
export class AuditReconciler {
  readonly stats: AuditReconcilerStats = { held: 0, reconciled: 0, relabelled: 0, confirmed: 0, overflow: 0 };
  private readonly holdMs: number;
  private readonly windowMs: number;
  private readonly skewMs: number;
  private readonly maxHeld: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;
  /** Address text (as events print it) -> the latest answers that held it, oldest first; the map in answer order. */
  private seen = new Map<string, Seen[]>();
  private queue: Held[] = [];
  private head = 0;
  private byAddr = new Map<string, Held[]>();
  private timer: NodeJS.Timeout | undefined;
  private subscribed = false;
  private readonly onDns = (msg: unknown) => this.answer(msg as DnsQueryEvent);

  constructor(
    private readonly policy: () => Policy | undefined,
    private readonly emit: (e: RecordedEvent) => void,
    opts: AuditReconcilerOptions = {},
  ) {
    this.holdMs = opts.holdMs ?? 500;
    this.windowMs = opts.windowMs ?? 5_000;
    this.skewMs = opts.skewMs ?? 1_000;
    this.maxHeld = opts.maxHeld ?? 16_384;
    this.maxAddresses = opts.maxAddresses ?? 65_536;
    this.now = opts.now ?? Date.now;
  }

  /** Starts listening to the DNS observations. */
  start(): void {
    if (this.subscribed) return;
    channels.dnsObserved.subscribe(this.onDns);
    this.subscribed = true;
  }

  /** Records held now. */
  get holding(): number {
    return this.queue.length - this.head;
  }

  /**
   * Takes an event before it is published: true when this reconciler will
   * publish it (now or after holding it), false when the caller publishes it
   * as it is.
   */
  offer(e: RecordedEvent): boolean {
    const policy = this.policy();
    if (!policy || !this.applies(policy, e)) return false;
    const rule = this.judge(policy, e);
    if (rule !== undefined) {
      this.reconcile(policy, e, rule);
      return true;
    }
    // An answer already seen that does not allow it: a real would-block, named by that answer.
    if (this.name(e)) return false;
    if (this.holding >= this.maxHeld) {
      this.stats.overflow++;
      return false;
    }
    const h: Held = { e, due: this.now() + this.holdMs, settled: false };
    this.queue.push(h);
    const list = this.byAddr.get(e.dst);
    if (list) list.push(h);
    else this.byAddr.set(e.dst, [h]);
    this.stats.held++;
    this.arm();
    return true;
  }

  /** Publishes every held record on what is known now (at stop). */
  flush(): void {
    this.release(Number.POSITIVE_INFINITY);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
    if (this.subscribed) channels.dnsObserved.unsubscribe(this.onDns);
    this.subscribed = false;
  }

  /** Only the default deny's would-block records in audit mode with names to learn can be the race. */
  private applies(policy: Policy, e: RecordedEvent): boolean {
    return policy.mode === 'audit' && policy.dns.guard && e.verdict === 'would-block' && e.rule === '#default';
  }

  /** Names a record by the latest answer observed for its address in the window, when attribution found none (it raced the answer too). */
  private name(e: RecordedEvent): boolean {
    if (e.hostname) return true;
    const list = this.seen.get(e.dst);
    if (!list) return false;
    for (let i = list.length - 1; i >= 0; i--) {
      const s = list[i] as Seen;
      if (s.time > e.time + this.skewMs || e.time - s.time > this.windowMs) continue;
      e.hostname = s.name;
      return true;
    }
    return false;
  }

  /** An observed answer: remembered, and any record held for its addresses judged again. */
  private answer(d: DnsQueryEvent): void {
    // Allowed answers can explain a record; refused ones (would-block) only name it.
    if (d.transport !== 'passive' || (d.verdict !== 'allowed' && d.verdict !== 'would-block') || d.answers.length === 0) return;
    const s: Seen = { time: d.time, name: d.name, rules: d.rules };
    for (const addr of d.answers) {
      let list = this.seen.get(addr);
      if (list) this.seen.delete(addr);
      else list = [];
      list.push(s);
      if (list.length > 4) list.shift();
      this.seen.set(addr, list);
    }
    this.forget(d.time);
    const policy = this.policy();
    if (!policy) return;
    for (const addr of d.answers) {
      const held = this.byAddr.get(addr);
      if (!held) continue;
      for (const h of held) {
        if (h.settled) continue;
        const rule = this.judge(policy, h.e);
        if (rule === undefined) {
          this.name(h.e);
          continue;
        }
        h.settled = true;
        this.reconcile(policy, h.e, rule);
      }
      const left = held.filter((h) => !h.settled);
      if (left.length === 0) this.byAddr.delete(addr);
      else this.byAddr.set(addr, left);
    }
  }

  /** Drops answers older than the window (and the oldest beyond the bound). */
  private forget(latest: number): void {
    for (const [addr, list] of this.seen) {
      const last = list[list.length - 1];
      if (this.seen.size <= this.maxAddresses && last && latest - last.time <= this.windowMs + this.skewMs) break;
      this.seen.delete(addr);
    }
  }

  /** The allow rule an observed answer lets this record through, if any. */
  private judge(policy: Policy, e: RecordedEvent): string | undefined {
    const list = this.seen.get(e.dst);
    if (!list) return undefined;
    const parsed = parseAddr(e.dst);
    if (!parsed) return undefined;
    const range: AddrRange = { family: parsed.family, start: parsed.value, end: parsed.value };
    for (let i = list.length - 1; i >= 0; i--) {
      const s = list[i] as Seen;
      if (s.rules.length === 0 || s.time > e.time + this.skewMs || e.time - s.time > this.windowMs) continue;
      const learned = new Map<string, AddrRange[]>(s.rules.map((r) => [r, [range]]));
      const q: Query = { dest: { kind: 'range', range }, learned };
      const proto = PROTO[e.proto];
      if (proto) q.proto = proto;
      if (e.dport !== undefined) q.port = e.dport;
      if (e.sport !== undefined) q.sport = e.sport;
      if (e.icmpType !== undefined) q.icmpType = e.icmpType;
      if (e.uid !== undefined) q.uid = e.uid;
      const service = e.process?.unit ?? e.process?.cgroup;
      if (service !== undefined) q.service = service;
      if (e.iface !== undefined) q.iface = e.iface;
      const x = explain(policy, q);
      if (x.verdict === 'allow' && x.decidedBy.kind === 'rule' && s.rules.includes(x.decidedBy.rule)) {
        if (!e.hostname) e.hostname = s.name;
        return x.decidedBy.rule;
      }
    }
    return undefined;
  }

  /** Publishes a reconciled record as the kernel would have logged the admitted flow: allowed if its rule logs, else not at all. */
  private reconcile(policy: Policy, e: RecordedEvent, rule: string): void {
    this.stats.reconciled++;
    const r = policy.rules.find((x) => x.name === rule);
    if (!(policy.log.allowed || r?.log)) return;
    this.stats.relabelled++;
    this.emit({ ...e, verdict: 'allowed', rule });
  }

  private arm(): void {
    if (this.timer || this.holding === 0) return;
    const first = this.queue[this.head] as Held;
    this.timer = setTimeout(() => {
      // After the timer, one more poll phase: a DNS record read in it may still explain a held record.
      setImmediate(() => {
        this.timer = undefined;
        this.release(this.now());
        this.arm();
      });
    }, Math.max(0, first.due - this.now()));
    this.timer.unref();
  }

  /** Publishes held records due by `until`: reconciled if an answer explains them now, else as would-block. */
  private release(until: number): void {
    const policy = this.policy();
    while (this.head < this.queue.length) {
      const h = this.queue[this.head] as Held;
      if (h.due > until) break;
      this.head++;
      const list = this.byAddr.get(h.e.dst);
      if (list) {
        const left = list.filter((x) => x !== h);
        if (left.length === 0) this.byAddr.delete(h.e.dst);
        else this.byAddr.set(h.e.dst, left);
      }
      if (h.settled) continue;
      h.settled = true;
      const rule = policy ? this.judge(policy, h.e) : undefined;
      if (policy && rule !== undefined) this.reconcile(policy, h.e, rule);
      else {
        this.stats.confirmed++;
        this.name(h.e);
        this.emit(h.e);
      }
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
