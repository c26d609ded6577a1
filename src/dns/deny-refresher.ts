import { objectNames } from '../compile/compile-ruleset.js';
import { filterAnswer } from './answer-filter.js';
import { TYPE } from './dns-message.js';
import type { DnsGuard } from './dns-guard.js';

export interface DenyRefresherStats {
  /** Lookups made of deny rules' exact names. */
  lookups: number;
  /** Lookups that failed (no upstream answer, or the kernel refused the addresses): retried later. */
  failures: number;
  /** Addresses written into deny rules' sets by these lookups. */
  addresses: number;
}

interface Job {
  name: string;
  type: number;
  due: number;
  /** Consecutive failures, for the retry back-off. */
  failures: number;
  running: boolean;
}

/** Lookups at a time: the guard's own clients come first. */
const CONCURRENCY = 4;
const TICK_MS = 1000;
/** A name that resolves to nothing is looked up again after this. */
const EMPTY_RETRY_MS = 300_000;
const MIN_RETRY_MS = 5000;
const MAX_RETRY_MS = 300_000;

/**
 * Fills the sets of deny rules that name domains. The guard refuses such a
 * name when a program asks (forwarding it would carry data to the denied
 * domain), so no answer would ever fill the rule's sets, and the kernel half
 * of the deny would stay empty: a broad address rule, or another name
 * resolving to the same address, would reach it. So the guard resolves the
 * rules' exact names itself (a fixed name from the policy tells the
 * resolver nothing), writes the addresses into the deny rules' sets only,
 * and looks them up again before they expire. Wildcard denies can only be
 * filled as their names are seen (on CNAME chains, see DnsGuard.judge).
 */
export class DenyRefresher {
  readonly stats: DenyRefresherStats = { lookups: 0, failures: 0, addresses: 0 };
  private jobs = new Map<string, Job>();
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  private stopped = false;

  constructor(
    private guard: DnsGuard,
    private now: () => number = Date.now,
  ) {}

  /**
   * Plans the lookups for the guard's current policy and sets: each exact
   * name of a deny rule, for each family one of its rules has a set for.
   * Lookups planned before keep their schedule.
   */
  reset(): void {
    const d = this.guard.deps;
    const next = new Map<string, Job>();
    const now = this.now();
    for (const { name, rules } of d.matcher.deniedNames()) {
      for (const family of [4, 6] as const) {
        const sets = rules.map((r) => objectNames.dnsSet(r.name, family)).filter((s) => d.dynamicSets.has(s));
        if (sets.length === 0) continue;
        const type = family === 4 ? TYPE.A : TYPE.AAAA;
        const key = `${name}|${type}|${sets.join(',')}`;
        next.set(key, this.jobs.get(key) ?? { name, type, due: now, failures: 0, running: false });
      }
    }
    this.jobs = next;
  }

  /** Starts the schedule (a one-second tick; the first lookups go at once). */
  start(): void {
    this.stopped = false;
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Names planned, for status. */
  get planned(): number {
    return this.jobs.size;
  }

  /** Runs the lookups that are due, a few at a time. Resolves when those it started are done (tests await it). */
  tick(): Promise<void> {
    const now = this.now();
    const started: Promise<void>[] = [];
    for (const job of this.jobs.values()) {
      if (this.running >= CONCURRENCY) break;
      if (job.running || job.due > now) continue;
      started.push(this.run(job));
    }
    return Promise.all(started).then(() => undefined);
  }

  private async run(job: Job): Promise<void> {
    job.running = true;
    this.running++;
    this.stats.lookups++;
    const g = this.guard;
    try {
      const d = g.deps;
      const s = d.policy.dns;
      const answer = await d.upstream.query({ name: job.name, type: job.type, class: 1 }, { dnssecOk: false });
      if (this.stopped) return;
      const f = filterAnswer(job.name, job.type, answer, d.rebinding, { ttlMax: s.ttlMax, maxAddresses: s.maxAddressesPerAnswer });
      const { decision } = g.classify(job.name);
      // Only the deny rules' sets: the name is refused to programs, whatever else matches it.
      const denyOnly = { sets4: decision.denySets4, sets6: decision.denySets6, ruleNames: decision.denyRuleNames, refused: undefined };
      const judged = g.judge({ ...decision, ...denyOnly, plain: denyOnly }, f);
      await g.open(job.name, f.addresses, judged);
      this.stats.addresses += f.addresses.length;
      job.failures = 0;
      let life = Infinity;
      for (const a of f.addresses) life = Math.min(life, (Math.max(a.ttl, s.ttlFloor) + s.ttlGrace) * 1000);
      // Again before the shortest-lived address expires (a fifth of its life early, at least 5 s).
      job.due = this.now() + (life === Infinity ? EMPTY_RETRY_MS : Math.max(MIN_RETRY_MS, Math.min(life - MIN_RETRY_MS, life * 0.8)));
    } catch {
      this.stats.failures++;
      job.failures++;
      job.due = this.now() + Math.min(MAX_RETRY_MS, MIN_RETRY_MS * 2 ** Math.min(job.failures - 1, 6));
    } finally {
      job.running = false;
      this.running--;
    }
  }
}
