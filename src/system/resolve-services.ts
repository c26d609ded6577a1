import { join } from 'node:path';
import type { ResolvedCgroup } from '../compile/compile-ruleset.js';
import { serviceKey } from '../compile/compile-ruleset.js';
import type { Policy, ServiceRef } from '../policy/policy.js';
import { asyncSystemHost, systemHost } from './cgroup-host.js';
import { findCgroup2Root, WALK_MAX_DEPTH, WALK_MAX_DIRS } from './cgroups.js';

// Service resolution: which cgroups a policy's `services:` name, right now.
//
// Who may create or join a cgroup decides whether a cgroup can stand for a
// service. Moving a process needs write access to the destination's
// cgroup.procs and to that of the common ancestor of source and destination;
// making a cgroup needs write access to the parent directory. Delegation
// (systemd's user@UID.service, any unit with Delegate=yes and User=, or an
// administrator's chown) hands exactly those to a user, who can then make a
// cgroup with any name inside the subtree and move any of its processes there.
// So:
// - with systemd running, a unit's cgroup is what systemd says it is, and
//   nothing else; a unit systemd runs no cgroup for (inactive, between timer
//   runs) matches nothing until it starts;
// - without systemd, a unit is found by the name of its directory, but only
//   where root alone controls the directory and every ancestor: subtrees
//   delegated to anyone else are never searched, and user.slice (users'
//   sessions and managers) is not searched for system services;
// - an explicit path (`/machine.slice/x.scope`) is taken as given, unless it
//   or an ancestor is delegated. Then it is refused: whoever controls the
//   subtree chooses which of their processes are in it, so it identifies no
//   service, only "some process of that user", which `users:` says honestly.
//
// The same rules, asked the other way round, name the unit a process belongs
// to (events, `sluice connections`): a cgroup is named after a unit only when
// the rules above would take one of its ancestors (or itself) for that unit's
// cgroup, so a name is never believed for its spelling alone (cgroupService).
//
// One set of rules, written once as sequences of questions to the host
// (resolutionSteps, cgroupServiceSteps); a synchronous driver answers them for
// the CLI and an asynchronous one for the daemon, whose event loop also answers
// DNS and must never wait on a tree walk or on systemctl. The real host is
// cgroup-host.ts.

/** Owner and permission bits of a file or directory. */
export interface Ownership {
  uid: number;
  mode: number;
}

/** What resolution needs to know about one directory of the cgroup tree. */
export interface DirFacts {
  /** The cgroup id: the kernfs inode, what `socket cgroupv2` compares. */
  ino: bigint;
  dir: Ownership;
  /**
   * The files delegation hands over with the directory (systemd chowns all
   * three); null when absent. No cgroup.procs: not a cgroup.
   */
  procs: Ownership | null;
  threads: Ownership | null;
  subtreeControl: Ownership | null;
  /** Names of the sub-directories, when they were asked for. */
  children?: string[];
}

/** systemd's answer for a list of units: each unit's ControlGroup (null: it has none now). */
export type ControlGroups = { ok: true; groups: Map<string, string | null> } | { ok: false; error: string };

/** The host as resolution sees it (synchronous); tests inject their own. */
export interface CgroupHost {
  /** True when systemd manages this host (sd_booted(3): /run/systemd/system exists). */
  systemdRunning(): boolean;
  controlGroups(units: string[]): ControlGroups;
  /** Facts about an absolute directory path, or null when it is not a directory. */
  inspect(dir: string, children: boolean): DirFacts | null;
}

/** The same host, answering asynchronously (for the daemon). */
export interface AsyncCgroupHost {
  systemdRunning(): Promise<boolean>;
  controlGroups(units: string[]): Promise<ControlGroups>;
  inspect(dir: string, children: boolean): Promise<DirFacts | null>;
}

/** What a policy's services resolve to, and what the caller should know about it. */
export interface ServiceResolution {
  /** Cgroups per service (key from serviceKey); empty: the service matches nothing now. */
  cgroups: Map<string, ResolvedCgroup[]>;
  /** Look-alikes and paths refused, systemd errors, a search cut short: for warnings. */
  notes: string[];
  /**
   * False when a source of truth did not answer (systemctl failed or timed
   * out): the result says less than the host would, and nothing already in
   * force should be replaced on the strength of it.
   */
  complete: boolean;
}

/** What the service rules say about the cgroup a process is in. */
export interface CgroupService {
  /**
   * The unit this cgroup belongs to: the innermost `.service` (else `.scope`)
   * in its path whose cgroup, as the rules resolve that unit, is this cgroup
   * or an ancestor of it; exactly the units a `services:` rule would match
   * this process by. Null: none (a look-alike name in a delegated subtree, a
   * unit systemd does not run there, or no unit-like name at all).
   */
  unit: string | null;
  /** False when systemd did not answer: the result says less than the host would (do not keep it). */
  complete: boolean;
}

type Question = { q: 'systemd' } | { q: 'units'; units: string[] } | { q: 'inspect'; dirs: string[]; children: boolean };
type Steps<T> = Generator<Question, T, unknown>;

/** Directories inspected per question: the asynchronous driver runs each batch concurrently. */
const INSPECT_BATCH = 32;
/** Not searched for system services without systemd: users' sessions and user managers live there. */
const NOT_SEARCHED = new Set(['user.slice']);
/** systemd's per-user manager, always delegated to its user. */
const USER_MANAGER = /^user@[^/]*\.service$/;
const SEGMENT = /^[A-Za-z0-9:_.@\\-]{1,255}$/;
const CGROUP_PATH = /^\/(?:[A-Za-z0-9:_.@\\-]{1,255}(?:\/[A-Za-z0-9:_.@\\-]{1,255})*)?$/;

/** An absolute cgroup path of plain segments (never `.` or `..`), as the policy accepts them. */
function validCgroupPath(path: string): boolean {
  return path.length <= 4000 && CGROUP_PATH.test(path) && !path.split('/').some((s) => s === '.' || s === '..');
}

/**
 * Why someone other than root may control this cgroup directory (and so
 * everything below it), or null when only root does. `name` is the
 * directory's own name ('' for the root).
 */
export function delegatedBecause(name: string, f: DirFacts): string | null {
  if (USER_MANAGER.test(name)) return `${name} is a user manager, delegated to its user`;
  const parts: [string, Ownership | null][] = [
    ['directory', f.dir],
    ['cgroup.procs', f.procs],
    ['cgroup.threads', f.threads],
    ['cgroup.subtree_control', f.subtreeControl],
  ];
  for (const [what, o] of parts) {
    if (!o) continue;
    if (o.uid !== 0) return `its ${what} is owned by uid ${o.uid}`;
    if (o.mode & 0o022) return `its ${what} is writable by group or others (mode ${(o.mode & 0o777).toString(8)})`;
  }
  return null;
}

function* ask<T>(question: Question): Steps<T> {
  return (yield question) as T;
}

function* inspectAll(root: string, rels: string[], children: boolean): Steps<(DirFacts | null)[]> {
  const out: (DirFacts | null)[] = [];
  for (let i = 0; i < rels.length; i += INSPECT_BATCH) {
    const dirs = rels.slice(i, i + INSPECT_BATCH).map((rel) => join(root, rel));
    out.push(...(yield* ask<(DirFacts | null)[]>({ q: 'inspect', dirs, children })));
  }
  return out;
}

const baseName = (rel: string) => rel.slice(rel.lastIndexOf('/') + 1);
const levelOf = (rel: string) => rel.split('/').filter(Boolean).length;

/** An explicit cgroup path: itself, if it exists and neither it nor an ancestor is delegated. */
function* explicitPath(root: string, path: string): Steps<{ cgroup: ResolvedCgroup | null; refused?: string }> {
  const parts = path.split('/').filter(Boolean);
  const rels = ['/', ...parts.map((_p, i) => `/${parts.slice(0, i + 1).join('/')}`)];
  const facts = yield* inspectAll(root, rels, false);
  for (const [i, rel] of rels.entries()) {
    const f = facts[i];
    if (!f || !f.procs) return { cgroup: null };
    const why = delegatedBecause(i === 0 ? '' : baseName(rel), f);
    if (why) return { cgroup: null, refused: `${rel} is delegated (${why})` };
  }
  const last = facts[facts.length - 1] as DirFacts;
  return { cgroup: { id: last.ino, level: parts.length, path: rels[rels.length - 1] as string } };
}

/**
 * Without systemd: every cgroup named like one of `units`, breadth-first from
 * the root, never entering a delegated directory, user.slice, or a match.
 */
function* searchByName(root: string, units: Set<string>, notes: string[]): Steps<Map<string, ResolvedCgroup[]>> {
  const found = new Map<string, ResolvedCgroup[]>();
  let frontier = ['/'];
  let seen = 1;
  let cut = false;
  for (let depth = 0; depth <= WALK_MAX_DEPTH && frontier.length > 0 && !cut; depth++) {
    const facts = yield* inspectAll(root, frontier, true);
    const next: string[] = [];
    for (const [i, rel] of frontier.entries()) {
      const f = facts[i];
      if (!f || !f.procs) continue;
      const name = rel === '/' ? '' : baseName(rel);
      // Someone other than root controls this subtree: nothing in it can be root's service.
      if (delegatedBecause(name, f) !== null) continue;
      if (units.has(name)) {
        found.set(name, [...(found.get(name) ?? []), { id: f.ino, level: levelOf(rel), path: rel }]);
        continue;
      }
      if (NOT_SEARCHED.has(name) || depth === WALK_MAX_DEPTH) continue;
      for (const child of f.children ?? []) {
        if (++seen > WALK_MAX_DIRS) {
          cut = true;
          break;
        }
        next.push(rel === '/' ? `/${child}` : `${rel}/${child}`);
      }
      if (cut) break;
    }
    frontier = next;
  }
  if (cut) notes.push(`the cgroup tree has more than ${WALK_MAX_DIRS} directories; the search for services stopped there`);
  return found;
}

/** The rules, as questions to the host; see the comment above. */
function* resolutionSteps(services: ServiceRef[], root: string): Steps<ServiceResolution> {
  const cgroups = new Map<string, ResolvedCgroup[]>();
  const notes: string[] = [];
  let complete = true;
  const units = [...new Set(services.flatMap((s) => (s.kind === 'unit' ? [s.unit] : [])))];
  const paths = [...new Set(services.flatMap((s) => (s.kind === 'cgroup' ? [s.path] : [])))];

  for (const path of paths) {
    const r = yield* explicitPath(root, path);
    cgroups.set(serviceKey({ kind: 'cgroup', path }), r.cgroup ? [r.cgroup] : []);
    if (r.refused) notes.push(`service ${path} refused: ${r.refused}; whoever controls it can move any of their processes into it, so it names no service (to allow that user, use users:)`);
  }
  if (units.length === 0) return { cgroups, notes, complete };

  const unitKey = (unit: string) => serviceKey({ kind: 'unit', unit });
  if (yield* ask<boolean>({ q: 'systemd' })) {
    const answer = yield* ask<ControlGroups>({ q: 'units', units });
    if (!answer.ok) {
      complete = false;
      notes.push(`systemd did not say where ${units.join(', ')} run (${answer.error}); their rules match nothing until it does`);
      for (const u of units) cgroups.set(unitKey(u), []);
      return { cgroups, notes, complete };
    }
    const placed = units.map((unit) => ({ unit, path: answer.groups.get(unit) ?? null }));
    for (const p of placed) {
      if (p.path !== null && !validCgroupPath(p.path)) {
        notes.push(`systemd gave ${p.unit} a cgroup path Sluice does not accept: ${JSON.stringify(p.path.slice(0, 200))}`);
        p.path = null;
      }
    }
    const withPath = placed.filter((p): p is { unit: string; path: string } => p.path !== null);
    const facts = yield* inspectAll(root, withPath.map((p) => p.path), false);
    for (const u of units) cgroups.set(unitKey(u), []);
    for (const [i, p] of withPath.entries()) {
      const f = facts[i];
      // systemd's answer is the unit's cgroup, delegated or not (a unit with Delegate=yes owns what is below it).
      if (f && f.procs) cgroups.set(unitKey(p.unit), [{ id: f.ino, level: levelOf(p.path), path: p.path }]);
    }
    return { cgroups, notes, complete };
  }

  const found = yield* searchByName(root, new Set(units), notes);
  for (const u of units) cgroups.set(unitKey(u), found.get(u) ?? []);
  return { cgroups, notes, complete };
}

const NO_SERVICE: CgroupService = { unit: null, complete: true };

/** Unit names an event or connection is named after: services, else scopes (sessions, containers). Slices name nothing. */
const NAMED_UNIT = /^[A-Za-z0-9:_.@\\-]{1,240}\.(?:service|scope)$/;
/**
 * Unit-like names of one path asked about, from the root: real units sit near
 * it (`/system.slice/x.service`, `/user.slice/user-1000.slice/user@1000.service`);
 * whatever a user invents below them never pushes them out.
 */
const MAX_NAMED_CANDIDATES = 16;

/** A cgroup path taken apart for naming: its usable components and the unit-like ones among them. */
interface PathToName {
  path: string;
  parts: string[];
  candidates: { name: string; level: number }[];
}

function pathToName(path: string): PathToName {
  if (!path.startsWith('/') || path.length > 4096) return { path, parts: [], candidates: [] };
  // Names below a component Sluice would not accept as a cgroup path do not matter: units live above it.
  const all = path.split('/').filter(Boolean);
  const usable = all.findIndex((p) => p === '.' || p === '..' || !SEGMENT.test(p));
  const parts = usable < 0 ? all : all.slice(0, usable);
  const candidates = parts.flatMap((name, i) => (NAMED_UNIT.test(name) ? [{ name, level: i + 1 }] : [])).slice(0, MAX_NAMED_CANDIDATES);
  return { path, parts, candidates };
}

/**
 * True when no rule can name a unit for this path (no unit-like name where a
 * cgroup path can have one): callers need not ask, nor even look at it.
 */
export function namesNoUnit(path: string): boolean {
  return pathToName(path).candidates.length === 0;
}

const prefixOf = (parts: string[], level: number) => `/${parts.slice(0, level).join('/')}`;

/** The innermost accepted service, else the innermost accepted scope. */
function innermostUnit(accepted: { name: string; level: number }[]): string | null {
  const last = (suffix: string) => accepted.filter((c) => c.name.endsWith(suffix)).pop();
  return (last('.service') ?? last('.scope'))?.name ?? null;
}

/** Units asked of systemctl per call when several paths are named at once. */
const UNITS_PER_CALL = 256;

/**
 * The unit each cgroup belongs to, by the rules above read backwards: with
 * systemd, a unit-like component counts when systemd puts that unit exactly
 * there; without, when it is one searchByName would find (root alone controls
 * it and every ancestor, none of which is user.slice, within the search's
 * depth). Nothing under a delegated directory is even read. Several paths are
 * answered together: one systemctl call for all of them (a path whose names
 * make systemctl fail is then asked alone, so it cannot blind the others), and
 * each directory read once.
 */
function* cgroupServiceSteps(paths: string[], root: string): Steps<Map<string, CgroupService>> {
  const out = new Map<string, CgroupService>();
  const todo: PathToName[] = [];
  for (const path of new Set(paths)) {
    const p = pathToName(path);
    if (p.candidates.length === 0) out.set(path, NO_SERVICE);
    else todo.push(p);
  }
  if (todo.length === 0) return out;

  if (yield* ask<boolean>({ q: 'systemd' })) {
    const groups = new Map<string, string | null>();
    const names = [...new Set(todo.flatMap((p) => p.candidates.map((c) => c.name)))];
    let together = true;
    for (let i = 0; i < names.length && together; i += UNITS_PER_CALL) {
      const answer = yield* ask<ControlGroups>({ q: 'units', units: names.slice(i, i + UNITS_PER_CALL) });
      if (answer.ok) for (const [k, v] of answer.groups) groups.set(k, v);
      else together = false;
    }
    for (const p of todo) {
      let g = groups;
      if (!together) {
        const alone = todo.length === 1 ? { ok: false as const, error: '' } : yield* ask<ControlGroups>({ q: 'units', units: [...new Set(p.candidates.map((c) => c.name))] });
        if (!alone.ok) {
          out.set(p.path, { unit: null, complete: false });
          continue;
        }
        g = alone.groups;
      }
      out.set(p.path, { unit: innermostUnit(p.candidates.filter((c) => g.get(c.name) === prefixOf(p.parts, c.level))), complete: true });
    }
    return out;
  }

  const read = new Map<string, DirFacts | null>();
  for (const p of todo) {
    const accepted: { name: string; level: number }[] = [];
    const deepest = Math.min((p.candidates[p.candidates.length - 1] as { level: number }).level, WALK_MAX_DEPTH);
    for (let level = 0; level <= deepest; level++) {
      const rel = level === 0 ? '/' : prefixOf(p.parts, level);
      let f = read.get(rel);
      if (f === undefined) {
        f = (yield* inspectAll(root, [rel], false))[0] ?? null;
        read.set(rel, f);
      }
      const name = level === 0 ? '' : (p.parts[level - 1] as string);
      // Not a cgroup (gone meanwhile), or someone other than root chooses what is below: nothing further down is a service.
      if (!f || !f.procs || delegatedBecause(name, f) !== null) break;
      const c = p.candidates.find((x) => x.level === level);
      if (c) accepted.push(c);
      if (NOT_SEARCHED.has(name)) break;
    }
    out.set(p.path, { unit: innermostUnit(accepted), complete: true });
  }
  return out;
}

function servicesOf(policy: Policy): ServiceRef[] {
  // Scopes' services are resolved by the same rules: the same look-alike protection.
  return [...policy.rules.flatMap((r) => r.services), ...(policy.scopes ?? []).flatMap((s) => s.services)];
}

const NO_ROOT: ServiceResolution = { cgroups: new Map(), notes: [], complete: true };

function emptyFor(policy: Policy): ServiceResolution {
  const cgroups = new Map<string, ResolvedCgroup[]>();
  for (const s of servicesOf(policy)) cgroups.set(serviceKey(s), []);
  return { ...NO_ROOT, cgroups };
}

/** Answers a sequence of questions from a synchronous host. */
function runSync<T>(steps: Steps<T>, host: CgroupHost): T {
  let r = steps.next();
  while (!r.done) {
    const q = r.value;
    r = steps.next(q.q === 'systemd' ? host.systemdRunning() : q.q === 'units' ? host.controlGroups(q.units) : q.dirs.map((d) => host.inspect(d, q.children)));
  }
  return r.value;
}

/** Answers a sequence of questions from an asynchronous host: the event loop never waits on one. */
async function runAsync<T>(steps: Steps<T>, host: AsyncCgroupHost): Promise<T> {
  let r = steps.next();
  while (!r.done) {
    const q = r.value;
    r = steps.next(q.q === 'systemd' ? await host.systemdRunning() : q.q === 'units' ? await host.controlGroups(q.units) : await Promise.all(q.dirs.map((d) => host.inspect(d, q.children))));
  }
  return r.value;
}

/**
 * Resolves every service a policy names, synchronously (the CLI: apply, plan,
 * check). Empty when there is no cgroup2 mount (the compiler warns).
 */
export function resolveServices(policy: Policy, opts: { root?: string | null; host?: CgroupHost } = {}): ServiceResolution {
  const root = opts.root === undefined ? findCgroup2Root() : opts.root;
  if (!root) return emptyFor(policy);
  return runSync(resolutionSteps(servicesOf(policy), root), opts.host ?? systemHost());
}

/**
 * The same resolution, same rules, with every question answered off the
 * event loop (the daemon): no synchronous walk, no spawnSync.
 */
export async function resolveServicesAsync(policy: Policy, opts: { root?: string | null; host?: AsyncCgroupHost } = {}): Promise<ServiceResolution> {
  const root = opts.root === undefined ? findCgroup2Root() : opts.root;
  if (!root) return emptyFor(policy);
  return runAsync(resolutionSteps(servicesOf(policy), root), opts.host ?? asyncSystemHost());
}

/**
 * The unit a cgroup path (relative to the cgroup2 mount, as /proc/PID/cgroup
 * gives it) belongs to by the service rules, synchronously. See CgroupService.
 */
export function cgroupService(path: string, opts: { root?: string | null; host?: CgroupHost } = {}): CgroupService {
  return cgroupServices([path], opts).get(path) ?? NO_SERVICE;
}

/** The same for several paths at once (the CLI: `connections`, `top`): one systemctl call, each directory read once. */
export function cgroupServices(paths: string[], opts: { root?: string | null; host?: CgroupHost } = {}): Map<string, CgroupService> {
  const root = opts.root === undefined ? findCgroup2Root() : opts.root;
  if (!root) return new Map(paths.map((p) => [p, NO_SERVICE]));
  return runSync(cgroupServiceSteps(paths, root), opts.host ?? systemHost());
}

/** The same, off the event loop (the daemon's collector). */
export async function cgroupServiceAsync(path: string, opts: { root?: string | null; host?: AsyncCgroupHost } = {}): Promise<CgroupService> {
  const root = opts.root === undefined ? findCgroup2Root() : opts.root;
  if (!root) return NO_SERVICE;
  return (await runAsync(cgroupServiceSteps([path], root), opts.host ?? asyncSystemHost())).get(path) ?? NO_SERVICE;
}
