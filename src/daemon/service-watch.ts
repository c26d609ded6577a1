import { watch, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import { compileRuleset, type ResolvedCgroup } from '../compile/compile-ruleset.js';
import { sameRuleset } from '../netfilter/compare-ruleset.js';
import { compileEnvFor } from '../system/compile-env.js';
import { findCgroup2Root, resolveCgroups } from '../system/cgroups.js';
import type { Component, Runtime } from './daemon.js';
import { publishAlert } from './events.js';

const DEBOUNCE_MS = 50;
const POLL_MS = 5_000;

/**
 * Keeps service rules true across service restarts. The kernel matches a
 * service by its cgroup's id, and a restarted service gets a new cgroup
 * with a new id: until the ruleset holds the new id, the service's traffic
 * would be treated as anyone else's. This component watches the cgroup
 * directories where the policy's services live (inotify on cgroupfs reports
 * a cgroup appearing or going), polls as a safety net, and re-applies the
 * policy in force with the fresh ids when they changed.
 */
export class ServiceWatch implements Component {
  readonly name = 'service-watch';
  private rt: Runtime | undefined;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  readonly stats = { checks: 0, reapplies: 0, failures: 0 };
  /**
   * The services' cgroups as last compiled into the live ruleset. Checks
   * recompile only when they change: compiling and comparing a large policy
   * costs the event loop about a second at 100,000 addresses.
   */
  private compiledFor: string | undefined;

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.compiledFor = undefined;
    this.arm();
    this.poll = setInterval(() => this.check(), POLL_MS);
    this.poll.unref();
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.compiledFor = undefined;
    this.arm();
  }

  /** (Re)creates the directory watches for the current policy's services. */
  private arm(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    const rt = this.rt;
    const root = findCgroup2Root();
    if (!rt || !root || !rt.policy.rules.some((r) => r.services.length > 0)) return;
    const dirs = new Set<string>([root, join(root, 'system.slice')]);
    for (const list of resolveCgroups(rt.policy, root).values()) for (const cg of list) dirs.add(dirname(join(root, cg.path)));
    for (const s of rt.policy.rules.flatMap((r) => r.services)) {
      if (s.kind === 'cgroup') dirs.add(dirname(join(root, s.path)));
    }
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

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.check();
    }, DEBOUNCE_MS);
  }

  /** Recompiles the policy in force against the current cgroups; applies when the result differs from what is live. */
  check(): void {
    const rt = this.rt;
    if (!rt || !rt.policy.rules.some((r) => r.services.length > 0)) return;
    this.stats.checks++;
    try {
      const cgroups = resolveCgroups(rt.policy);
      const key = cgroupsKey(cgroups);
      if (key === this.compiledFor) return;
      const compiled = compileRuleset(rt.policy, compileEnvFor(rt.policy, cgroups));
      const current = { ruleset: rt.compiled.ruleset, anomalies: [] };
      if (sameRuleset(compiled.ruleset, current)) {
        this.compiledFor = key;
        return;
      }
      rt.state.withLock(() => {
        rt.netfilter.replace(compiled.ruleset);
        const applied = rt.state.applied();
        if (applied && applied.sha256 === rt.policy.sha256) {
          rt.state.setApplied({ ...applied, ruleset: compiled.ruleset, warnings: compiled.warnings, appliedAt: new Date().toISOString() });
        }
        rt.state.journal({ event: 'service-cgroups-changed', sha256: rt.policy.sha256 });
      });
      rt.compiled = compiled;
      this.compiledFor = key;
      this.stats.reapplies++;
      rt.log('info', 'service cgroups changed; re-applied the policy with their new ids');
      this.arm();
    } catch (err) {
      this.stats.failures++;
      publishAlert({ time: Date.now(), kind: 'service-watch-failed', severity: 'warning', message: `Could not update service cgroups: ${(err as Error).message}` });
    }
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
  }

  status(): Record<string, unknown> {
    return { ...this.stats, watching: this.watchers.length };
  }
}

function cgroupsKey(cgroups: Map<string, ResolvedCgroup[]>): string {
  return [...cgroups].map(([service, list]) => `${service}=${list.map((c) => `${c.id}@${c.path}`).join(',')}`).join(';');
}
