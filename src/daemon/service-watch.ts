import { watch, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ResolvedCgroup } from '../compile/compile-ruleset.js';
import { sameRuleset } from '../netfilter/compare-ruleset.js';
import type { Policy } from '../policy/policy.js';
import { findCgroup2Root } from '../system/cgroups.js';
import { resolveServicesAsync, type ServiceResolution } from '../system/resolve-services.js';
import { compileResolved } from '../system/compile-env.js';
import type { Component, Runtime } from '../runtime/component.js';
import { publishAlert } from '../events/channels.js';
import { writeServiceRuleset } from './write-service-ruleset.js';

const DEBOUNCE_MS = 50;
const POLL_MS = 5_000;
/** When the state lock is held (an apply in progress), the next try. */
const LOCK_RETRY_MS = 250;

/** Resolves a policy's services; the daemon's is asynchronous (resolveServicesAsync). */
export type ServiceResolver = (policy: Policy, root: string | null) => Promise<ServiceResolution>;

/**
 * Keeps service rules true across service restarts. The kernel matches a
 * service by its cgroup's id, and a restarted service gets a new cgroup
 * with a new id: until the ruleset holds the new id, the service's traffic
 * would be treated as anyone else's. This component watches the cgroup
 * directories where the policy's services live (inotify on cgroupfs reports
 * a cgroup appearing or going), polls as a safety net, and re-applies the
 * applied policy with the fresh ids when they changed.
 *
 * It writes only the policy that is applied (see writeServiceRuleset): never
 * after `sluice off`, never over a policy the CLI applied meanwhile. Services
 * are resolved asynchronously (systemctl spawned, the tree read through
 * libuv's pool): the event loop also answers DNS. Checks never overlap.
 */
export class ServiceWatch implements Component {
  readonly name = 'service-watch';
  private rt: Runtime | undefined;
  private root: string | null = null;
  private watchers: FSWatcher[] = [];
  private watching = '';
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** Bumped on reload and stop: a check begun under an older policy drops its result. */
  private generation = 0;
  readonly stats = { checks: 0, reapplies: 0, failures: 0, notApplied: 0, lockBusy: 0 };
  /**
   * The services' cgroups the last check settled (compiled into the live
   * ruleset, or found not ours to write). Checks recompile only when they
   * change: compiling and comparing a large policy costs the event loop
   * about a second at 100,000 addresses.
   */
  private settledFor: string | undefined;

  private readonly resolve: ServiceResolver;
  private readonly findRoot: () => string | null;

  /** `resolve` and `root` are replaceable for tests (a fake host; no watches on the real tree). */
  constructor(opts: { resolve?: ServiceResolver; root?: () => string | null } = {}) {
    this.resolve = opts.resolve ?? ((policy, root) => resolveServicesAsync(policy, { root }));
    this.findRoot = opts.root ?? (() => findCgroup2Root());
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.root = this.findRoot();
    this.settledFor = undefined;
    this.poll = setInterval(() => void this.check(), POLL_MS);
    this.poll.unref();
    this.schedule();
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.generation++;
    this.settledFor = undefined;
    this.schedule();
  }

  /** (Re)creates the directory watches: the root, system.slice, and where the services' cgroups are. */
  private arm(policy: Policy, resolved: ServiceResolution): void {
    const root = this.root;
    const dirs = new Set<string>();
    if (root && hasServices(policy)) {
      dirs.add(root).add(join(root, 'system.slice'));
      for (const list of resolved.cgroups.values()) for (const cg of list) dirs.add(dirname(join(root, cg.path)));
      for (const s of [...policy.rules.flatMap((r) => r.services), ...(policy.scopes ?? []).flatMap((sc) => sc.services)]) if (s.kind === 'cgroup') dirs.add(dirname(join(root, s.path)));
    }
    const key = [...dirs].sort().join('\n');
    if (key === this.watching) return;
    this.unarm();
    this.watching = key;
    for (const dir of dirs) {
      try {
        const w = watch(dir, () => this.schedule());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // The directory does not exist (yet): the poll covers it.
      }
    }
  }

  private unarm(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.watching = '';
  }

  private schedule(delayMs = DEBOUNCE_MS): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, delayMs);
  }

  /**
   * Resolves the services of the daemon's policy and re-applies it when their
   * cgroups changed. One check at a time; a request during one runs another after it.
   */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.checkOnce();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    const rt = this.rt;
    if (!rt) return;
    const policy = rt.policy;
    const generation = this.generation;
    if (!hasServices(policy)) {
      this.unarm();
      return;
    }
    this.stats.checks++;
    let resolved: ServiceResolution;
    try {
      resolved = await this.resolve(policy, this.root);
    } catch (err) {
      this.fail(`Could not resolve services: ${(err as Error).message}`);
      return;
    }
    // Reloaded, adopted another policy or stopped meanwhile: this result is about the past.
    if (generation !== this.generation || this.rt !== rt || rt.policy !== policy) return;
    this.arm(policy, resolved);
    if (!resolved.complete) {
      this.fail(`Could not resolve services: ${resolved.notes.join('; ')}`);
      return;
    }
    const key = cgroupsKey(resolved.cgroups);
    if (key === this.settledFor) return;
    try {
      const compiled = compileResolved(policy, resolved);
      if (sameRuleset(compiled.ruleset, { ruleset: rt.compiled.ruleset, anomalies: [] })) {
        this.settledFor = key;
        return;
      }
      let outcome: 'written' | 'not-applied';
      try {
        outcome = writeServiceRuleset(rt.state, rt.netfilter, policy.sha256, compiled);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ELOCKED') throw err;
        // An apply holds the lock; it will notify the daemon. Look again shortly.
        this.stats.lockBusy++;
        this.schedule(LOCK_RETRY_MS);
        return;
      }
      this.settledFor = key;
      if (outcome === 'not-applied') {
        this.stats.notApplied++;
        rt.log('info', 'service cgroups changed, but the policy the daemon holds is not the one applied (sluice off, or another apply); left the kernel table as it is', { sha256: policy.sha256 });
        return;
      }
      rt.compiled = compiled;
      this.stats.reapplies++;
      rt.log('info', 'service cgroups changed; re-applied the policy with their new ids');
    } catch (err) {
      this.fail(`Could not update service cgroups: ${(err as Error).message}`);
    }
  }

  private fail(message: string): void {
    this.stats.failures++;
    publishAlert({ time: Date.now(), kind: 'service-watch-failed', severity: 'warning', message });
  }

  async stop(): Promise<void> {
    this.generation++;
    this.rt = undefined;
    this.unarm();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.poll) clearInterval(this.poll);
    await this.running;
  }

  status(): Record<string, unknown> {
    return { ...this.stats, watching: this.watchers.length };
  }
}

function hasServices(policy: Policy): boolean {
  return policy.rules.some((r) => r.services.length > 0) || (policy.scopes ?? []).some((s) => s.services.length > 0);
}

function cgroupsKey(cgroups: Map<string, ResolvedCgroup[]>): string {
  return [...cgroups].map(([service, list]) => `${service}=${list.map((c) => `${c.id}@${c.path}`).join(',')}`).join(';');
}
