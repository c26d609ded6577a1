import { statSync } from 'node:fs';
import { join } from 'node:path';
import { asyncSystemHost } from '../system/cgroup-host.js';
import { findCgroup2Root } from '../system/cgroups.js';
import { cgroupServiceAsync, namesNoUnit, type AsyncCgroupHost, type ControlGroups } from '../system/resolve-services.js';

/** How long an answer is kept: the watch of services polls as often, so neither view lags the other by more. */
const TTL_MS = 5_000;
/** Paths kept; beyond it the oldest go (a user can make many cgroups; each costs one entry at most). */
const MAX_ENTRIES = 4_096;
/** How long an event waits for its answer before it is named after nothing. */
const WAIT_MS = 2_000;
/** systemd did not answer: the (unit-less) answer is kept this long, so a broken systemctl is not run for every event. */
const INCOMPLETE_TTL_MS = 1_000;
/** What systemd said about a unit is shared by the paths asked about meanwhile for this long (a burst of new cgroups). */
const HOST_TTL_MS = 1_000;

export interface ServiceNamesStats {
  /** Answers given from memory. */
  hits: number;
  /** Answers that had to be worked out (off the event loop). */
  resolutions: number;
  /** Waits that ended without an answer (the event then names no unit). */
  unresolved: number;
  /** Entries dropped because their cgroup went (or was replaced by another of the same path). */
  gone: number;
}

interface Entry {
  unit: string | null;
  /** The cgroup's id when the answer was worked out: another cgroup at the same path is another question. */
  ino: bigint | null;
  until: number;
  /** The batch in which the cgroup was last seen to be still the same one. */
  checked: number;
}

export interface ServiceNamesOptions {
  root?: string | null;
  host?: AsyncCgroupHost;
  ttlMs?: number;
  maxEntries?: number;
  waitMs?: number;
}

/**
 * The unit each cgroup path belongs to, by the service rules
 * (src/system/resolve-services.ts: systemd's answer where systemd runs,
 * otherwise only cgroups root alone controls, outside delegated subtrees),
 * for the collector's hot path: answers are kept per path (bounded, for a few
 * seconds, and dropped as soon as the cgroup at that path is not the one the
 * answer was about), and worked out off the event loop, never by a
 * synchronous walk or systemctl. A path never seen before gives a promise;
 * the caller waits for it (at most a couple of seconds, then: no unit).
 */
export class ServiceNames {
  readonly stats: ServiceNamesStats = { hits: 0, resolutions: 0, unresolved: 0, gone: 0 };
  private readonly root: string | null;
  private readonly host: AsyncCgroupHost;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly waitMs: number;
  private entries = new Map<string, Entry>();
  /** Paths with no unit-like name: nothing to judge, whatever the cgroup. */
  private plain = new Set<string>();
  private inflight = new Map<string, Promise<string | null>>();
  private batch = 0;

  constructor(opts: ServiceNamesOptions = {}) {
    this.root = opts.root === undefined ? findCgroup2Root() : opts.root;
    this.host = cachedHost(opts.host ?? asyncSystemHost(), Math.min(HOST_TTL_MS, opts.ttlMs ?? TTL_MS));
    this.ttlMs = opts.ttlMs ?? TTL_MS;
    this.maxEntries = opts.maxEntries ?? MAX_ENTRIES;
    this.waitMs = opts.waitMs ?? WAIT_MS;
  }

  /** Call once per batch of records: each remembered cgroup is checked again (one stat) the next time it is asked for. */
  beginBatch(): void {
    this.batch++;
  }

  /**
   * The unit the cgroup at `path` belongs to (null: none), from memory; or a
   * promise of it when it has to be worked out. The promise never rejects and
   * settles within the wait bound (null when the answer did not come).
   */
  lookup(path: string, now = Date.now()): string | null | Promise<string | null> {
    if (!this.root || this.plain.has(path)) return null;
    const e = this.entries.get(path);
    if (e && e.until > now) {
      if (e.checked === this.batch || this.same(path, e)) {
        e.checked = this.batch;
        this.stats.hits++;
        return e.unit;
      }
      this.entries.delete(path);
      this.stats.gone++;
    }
    // Nothing to judge; and a path outside this cgroup namespace's view (`/../x`) is not under the mount.
    if (path.includes('/..') || namesNoUnit(path)) {
      if (this.plain.size >= this.maxEntries) this.plain.clear();
      this.plain.add(path);
      return null;
    }
    return this.resolve(path);
  }

  /** Whether the cgroup at `path` is still the one an entry was about (a cgroup that went and came back is new). */
  private same(path: string, e: Entry): boolean {
    try {
      const st = statSync(join(this.root as string, path), { bigint: true, throwIfNoEntry: false });
      return st !== undefined && st.ino === e.ino;
    } catch {
      return false;
    }
  }

  /**
   * Works out (once per path at a time) and remembers the answer; every
   * caller shares one wait, bounded by `waitMs` (then: null, and the answer
   * is still remembered when it comes).
   */
  private resolve(path: string): Promise<string | null> {
    let p = this.inflight.get(path);
    if (p) return p;
    this.stats.resolutions++;
    const root = this.root as string;
    const work = (async () => {
      const [r, leaf] = await Promise.all([
        cgroupServiceAsync(path, { root, host: this.host }).catch(() => ({ unit: null, complete: false })),
        // The cgroup's own id: what `same` compares with later.
        this.host.inspect(join(root, path), false).catch(() => null),
      ]);
      // A cgroup gone meanwhile is not remembered; an answer without systemd's is kept only briefly.
      if (leaf) this.remember(path, { unit: r.unit, ino: leaf.ino, until: Date.now() + (r.complete ? this.ttlMs : INCOMPLETE_TTL_MS), checked: this.batch });
      return r.unit;
    })();
    p = new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => {
        this.stats.unresolved++;
        resolve(null);
      }, this.waitMs);
      void work.then((unit) => {
        clearTimeout(timer);
        resolve(unit);
      });
    });
    this.inflight.set(path, p);
    void work.finally(() => this.inflight.delete(path));
    return p;
  }

  private remember(path: string, e: Entry): void {
    this.entries.delete(path);
    if (this.entries.size >= this.maxEntries) {
      const now = Date.now();
      for (const [k, v] of this.entries) if (v.until <= now) this.entries.delete(k);
      // Still full: the oldest go (Map keeps insertion order).
      for (const k of this.entries.keys()) {
        if (this.entries.size < this.maxEntries) break;
        this.entries.delete(k);
      }
    }
    this.entries.set(path, e);
  }

  /** Remembered paths (for status and tests). */
  get size(): number {
    return this.entries.size;
  }
}

/**
 * A host that remembers, for `ttlMs`, whether systemd runs and each unit's
 * cgroup (systemctl is a process to spawn; the paths of a burst share their
 * units). Directories are always read afresh: a cgroup replaced at the same
 * path must never be judged by its predecessor's owner.
 */
function cachedHost(host: AsyncCgroupHost, ttlMs: number): AsyncCgroupHost {
  let systemd: { v: Promise<boolean>; until: number } | undefined;
  const units = new Map<string, { v: string | null; until: number }>();
  return {
    systemdRunning: () => {
      const now = Date.now();
      if (!systemd || systemd.until <= now) systemd = { v: host.systemdRunning(), until: now + ttlMs };
      return systemd.v;
    },
    inspect: (dir, children) => host.inspect(dir, children),
    controlGroups: async (asked): Promise<ControlGroups> => {
      const now = Date.now();
      const missing = asked.filter((u) => !((units.get(u)?.until ?? 0) > now));
      if (missing.length > 0) {
        const r = await host.controlGroups(missing);
        if (!r.ok) return r;
        if (units.size + missing.length > MAX_ENTRIES) units.clear();
        for (const u of missing) units.set(u, { v: r.groups.get(u) ?? null, until: now + ttlMs });
      }
      return { ok: true, groups: new Map(asked.map((u) => [u, units.get(u)?.v ?? null])) };
    },
  };
}
