import { watch, type FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import { publishAlert } from '../events/channels.js';
import type { Policy } from '../policy/policy.js';
import type { Component, Runtime } from '../runtime/component.js';
import type { StateStore } from '../state/state-store.js';
import { SystemProbe, type BoundSocket, type FileFacts, type IntegrityProbe } from './integrity-probe.js';
import { dnsGuardListens } from '../policy/builtins.js';

/** The poll: every check is a few lstat calls, one sysctl read and two sock_diag dumps. */
const POLL_MS = 2_000;
/** A finding that may be a moment of someone's legitimate write (a file renamed away and back, a guard rebinding its port) is looked at again this soon, and reported only if still there. */
const CONFIRM_MS = 500;
/** After an inotify event in the policy's directory, one look this soon (a burst is one look). */
const SETTLE_MS = 150;
/** Names read from the state directory (and from its `policies/`) at most. */
const MAX_ENTRIES = 500;
/** The guard's listeners: UDP and TCP on each of these. */
const GUARD_ADDRS = [
  { family: 4, addr: '127.0.0.1' },
  { family: 6, addr: '::1' },
] as const;

/** What a finding is about; the label of `sluice_integrity_findings_total`. */
export type IntegrityWhat = 'policy-file' | 'state-dir' | 'sysctl' | 'guard-socket';
const WHATS: IntegrityWhat[] = ['policy-file', 'state-dir', 'sysctl', 'guard-socket'];

/** One thing wrong (or, with `once`, one thing that happened). */
export interface IntegrityFinding {
  /** Stable while the same thing stays wrong: a finding is reported when its key appears and cleared when it goes. */
  key: string;
  what: IntegrityWhat;
  severity: 'warning' | 'critical';
  /** What changed, precisely; the remedy follows it in the alert. */
  message: string;
  remedy: string;
  detail: Record<string, unknown>;
  /** Reported only when seen on two looks CONFIRM_MS apart (it may be a moment of a legitimate write). */
  confirm?: boolean;
  /** An event, not a state: reported once, never "cleared" (a replaced file, a file modified in place). */
  once?: boolean;
  /** A log line and the status, not an alert (what a legitimate action also does: an editor's save). */
  logOnly?: boolean;
}

export interface IntegrityWatchOptions {
  probe?: IntegrityProbe;
  pollMs?: number;
  confirmMs?: number;
  /** Watch the policy's directory with inotify (on by default; tests turn it off). */
  inotify?: boolean;
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;

/**
 * Why a file or directory lets someone other than root (or the daemon's own
 * user) change it, or null: owned by another uid, or writable by group or
 * others. POSIX ACLs are not read.
 */
export function writableByOthers(f: FileFacts, ownUid: number): string | null {
  if (f.uid !== 0 && f.uid !== ownUid) return `is owned by uid ${f.uid}`;
  if ((f.mode & 0o022) !== 0) return `is writable by ${(f.mode & 0o020) !== 0 ? ((f.mode & 0o002) !== 0 ? 'group and others' : `group ${f.gid}`) : 'others'} (mode ${octal(f.mode)})`;
  return null;
}

/** Where a file stood when last seen: a different device or inode is a different file. */
interface Seen {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

/**
 * The integrity watch: the things around the table that decide what the
 * firewall is, looked at every 2 seconds (and at once on an inotify event in
 * the policy's directory). Reported as `tamper` alerts, once when a finding
 * appears and as a log line when it clears; nothing is ever put back (the
 * remedy is in the message):
 * - the applied policy file, its directory (and a symlink's): writable by
 *   someone other than root (owner, group or other write bits), deleted,
 *   or replaced by another file (a log line: editors save that way;
 *   content changes are the hot reload's);
 * - the state directory and the files in it (and in `policies/`): the
 *   same, and `applied.json` deleted while a policy is applied with no
 *   Sluice write behind it (no `off`, no journal line), or modified in
 *   place (Sluice only ever replaces it whole);
 * - `net.ipv4.ip_unprivileged_port_start` of the daemon's network namespace
 *   at or below the guard's port, or 53 with a resolver on this host;
 * - the guard's port: every socket bound to it must be one of this
 *   process's, and the guard's four listeners must be there.
 */
export class IntegrityWatch implements Component {
  readonly name = 'integrity-watch';
  private rt: Runtime | undefined;
  private readonly probe: IntegrityProbe;
  private readonly pollMs: number;
  private readonly confirmMs: number;
  private readonly inotify: boolean;
  private poll: NodeJS.Timeout | undefined;
  private soon: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private watchedDir: string | undefined;
  /** Findings in force, by key, with when they were reported. */
  private active = new Map<string, IntegrityFinding & { since: string }>();
  /** Confirm-findings seen once, waiting for the second look. */
  private candidates = new Set<string>();
  /** The applied policy file as last seen (its path, device and inode). */
  private policySeen: Seen | undefined;
  /** applied.json as last seen, and the journal's last line then. */
  private appliedSeen: (Seen & { journal: string }) | undefined;
  /** Inodes known to be this process's sockets (a socket's inode is not reused while it lives). */
  private ownInodes = new Set<number>();
  private lastError = '';
  private lastNoted: { at: string; what: IntegrityWhat; message: string } | null = null;
  readonly stats = { checks: 0, cleared: 0, errors: 0, noted: 0, found: Object.fromEntries(WHATS.map((w) => [w, 0])) as Record<IntegrityWhat, number> };

  constructor(opts: IntegrityWatchOptions = {}) {
    this.probe = opts.probe ?? new SystemProbe();
    this.pollMs = opts.pollMs ?? POLL_MS;
    this.confirmMs = opts.confirmMs ?? CONFIRM_MS;
    this.inotify = opts.inotify ?? true;
  }

  async start(rt: Runtime): Promise<void> {
    this.rt = rt;
    this.registerMetrics(rt);
    this.poll = setInterval(() => this.check(), this.pollMs);
    this.poll.unref();
    this.check();
  }

  async reload(rt: Runtime): Promise<void> {
    this.rt = rt;
    // The guard may move to another port: what is known to be its sockets is found again.
    this.ownInodes.clear();
    this.check();
  }

  async stop(): Promise<void> {
    this.rt = undefined;
    if (this.poll) clearInterval(this.poll);
    if (this.soon) clearTimeout(this.soon);
    this.poll = undefined;
    this.soon = undefined;
    this.unwatch();
    (this.probe as { close?(): void }).close?.();
  }

  status(): Record<string, unknown> {
    return {
      checks: this.stats.checks,
      found: { ...this.stats.found },
      cleared: this.stats.cleared,
      noted: this.stats.noted,
      lastNoted: this.lastNoted,
      errors: this.stats.errors,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      policyFile: this.policySeen?.path ?? null,
      active: [...this.active.values()].map((f) => ({ what: f.what, severity: f.severity, message: f.message, since: f.since })),
    };
  }

  /** One look at everything; never throws (a failure is counted, logged once per distinct message, and the next poll looks again). */
  check(): void {
    const rt = this.rt;
    if (!rt) return;
    try {
      this.stats.checks++;
      const found = [...this.policyFileFindings(rt), ...this.stateDirFindings(rt.state), ...this.sysctlFindings(rt.policy), ...this.socketFindings(rt.policy)];
      this.settle(rt, found);
      this.lastError = '';
    } catch (err) {
      this.stats.errors++;
      const message = (err as Error).message;
      if (message !== this.lastError) {
        try {
          rt.log('warn', `integrity watch: a check failed: ${message}`);
        } catch {
          // A log that fails must not take the timer down.
        }
      }
      this.lastError = message;
    }
  }

  /** Reports what appeared, clears what went, and asks for a second look at what needs one. */
  private settle(rt: Runtime, found: IntegrityFinding[]): void {
    const now = new Set<string>();
    let recheck = false;
    const candidates = new Set<string>();
    for (const f of found) {
      now.add(f.key);
      if (this.active.has(f.key)) continue;
      if (f.confirm && !this.candidates.has(f.key)) {
        candidates.add(f.key);
        recheck = true;
        continue;
      }
      if (f.logOnly) {
        this.note(rt, f);
        continue;
      }
      this.report(f);
      if (!f.once) this.active.set(f.key, { ...f, since: new Date().toISOString() });
    }
    this.candidates = candidates;
    for (const [key, f] of this.active) {
      if (now.has(key)) continue;
      this.active.delete(key);
      this.stats.cleared++;
      rt.log('info', `integrity watch: cleared: ${f.message}`, { what: f.what });
    }
    if (recheck) this.lookSoon(this.confirmMs);
  }

  private lookSoon(ms: number): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      this.check();
    }, ms);
    this.soon.unref();
  }

  private note(rt: Runtime, f: IntegrityFinding): void {
    this.stats.noted++;
    this.lastNoted = { at: new Date().toISOString(), what: f.what, message: f.message };
    rt.log('warn', `integrity watch: ${f.message}. ${f.remedy}`, { what: f.what, ...f.detail });
  }

  private report(f: IntegrityFinding): void {
    this.stats.found[f.what]++;
    publishAlert({ time: Date.now(), kind: 'tamper', severity: f.severity, message: `${f.message}. ${f.remedy}`, detail: { what: f.what, ...f.detail, remedy: f.remedy } });
  }

  // --- the policy file ---------------------------------------------------

  private policyFileFindings(rt: Runtime): IntegrityFinding[] {
    let path: string | null = null;
    try {
      path = rt.state.applied()?.policyFile ?? null;
    } catch {
      // A corrupt applied.json: the state directory's check says what it can.
    }
    if (path === null) {
      this.policySeen = undefined;
      this.unwatch();
      return [];
    }
    this.watchDir(dirname(path));
    const p = this.probe;
    const out: IntegrityFinding[] = [];
    const remedy = 'Make the file and its directory owned by root and writable by root only (chown root: and chmod go-w), and check its content: whoever can write it sets the firewall';
    const link = p.lstat(path);
    const real = link === null ? null : p.realpath(path);
    const facts = real === null ? null : p.lstat(real);
    if (link === null || real === null || facts === null) {
      out.push({
        key: `policy-file|missing|${path}`,
        what: 'policy-file',
        severity: 'critical',
        message: `The applied policy file ${path} was deleted or moved away${link?.kind === 'symlink' ? ' (a symlink that no longer resolves)' : ''}`,
        remedy: 'The policy in force stays (Sluice keeps its own copy); put the file back, or apply another with sluice apply FILE',
        detail: { file: path },
        confirm: true,
      });
      // Whatever file appears there next is a replacement.
      return out;
    }
    const checked: [string, string][] = [
      ['the applied policy file', real],
      ['the directory of the applied policy file', dirname(real)],
    ];
    if (link?.kind === 'symlink' && dirname(path) !== dirname(real)) checked.push(['the directory of the symlink to the applied policy file', dirname(path)]);
    for (const [what, at] of checked) {
      const f = at === real ? facts : p.lstat(at);
      if (f === null) continue;
      const why = writableByOthers(f, p.uid());
      if (why === null) continue;
      out.push({ key: `policy-file|${at}|${why}`, what: 'policy-file', severity: 'critical', message: `${capitalise(what)} ${at} ${why}${real !== path && at === real ? ` (${path} links to it)` : ''}`, remedy, detail: { file: at, policyFile: path, uid: f.uid, gid: f.gid, mode: octal(f.mode) } });
    }
    const seen = this.policySeen;
    if (seen && seen.path === path && (seen.dev !== facts.dev || seen.ino !== facts.ino)) {
      // Editors save by renaming a new file over the old one: a replacement by itself is a log line, not
      // an alert (a new file others can write is one, above).
      out.push({
        key: `policy-file|replaced|${path}|${facts.ino}`,
        what: 'policy-file',
        severity: 'warning',
        logOnly: true,
        message: `The applied policy file ${path} was replaced by another file (inode ${seen.ino} -> ${facts.ino}, now owned by uid ${facts.uid}, mode ${octal(facts.mode)})`,
        remedy: 'If nobody here saved it, find out who did; a change of content is reloaded only from a file that only root can write',
        detail: { file: path, inode: facts.ino, previousInode: seen.ino, uid: facts.uid, mode: octal(facts.mode) },
        once: true,
      });
    }
    this.policySeen = { path, dev: facts.dev, ino: facts.ino, size: facts.size, mtimeMs: facts.mtimeMs };
    return out;
  }

  private watchDir(dir: string): void {
    if (!this.inotify || dir === this.watchedDir) return;
    this.unwatch();
    this.watchedDir = dir;
    try {
      this.watcher = watch(dir, () => this.lookSoon(SETTLE_MS));
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // Not watchable (gone, unreadable): the poll covers it.
    }
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watchedDir = undefined;
  }

  // --- the state directory -----------------------------------------------

  private stateDirFindings(state: StateStore): IntegrityFinding[] {
    const p = this.probe;
    const dir = state.dir;
    const out: IntegrityFinding[] = [];
    const remedy = `Make it owned by root and writable by root only (chown root: and chmod go-w), and check what is in ${dir}: Sluice trusts it for what to restore and roll back to`;
    const d = p.lstat(dir);
    if (d === null) {
      out.push({ key: `state-dir|missing|${dir}`, what: 'state-dir', severity: 'critical', message: `The state directory ${dir} was deleted`, remedy: 'Restart the daemon (it writes the state it holds again), then check sluice status', detail: { dir }, confirm: true });
      return out;
    }
    if (d.kind !== 'dir') {
      out.push({ key: `state-dir|kind|${dir}|${d.kind}`, what: 'state-dir', severity: 'critical', message: `The state directory ${dir} is no longer a directory (a ${d.kind})`, remedy, detail: { dir, kind: d.kind } });
      return out;
    }
    const why = writableByOthers(d, p.uid());
    if (why) out.push({ key: `state-dir|${dir}|${why}`, what: 'state-dir', severity: 'critical', message: `The state directory ${dir} ${why}`, remedy, detail: { file: dir, uid: d.uid, gid: d.gid, mode: octal(d.mode) } });
    for (const sub of ['', 'policies']) {
      const at = sub ? join(dir, sub) : dir;
      if (sub && p.lstat(at)?.kind !== 'dir') continue;
      for (const name of p.list(at, MAX_ENTRIES) ?? []) {
        const file = join(at, name);
        const f = p.lstat(file);
        if (f === null) continue;
        if (f.kind === 'symlink') {
          out.push({ key: `state-dir|symlink|${file}`, what: 'state-dir', severity: 'critical', message: `${file} in the state directory is a symlink (Sluice writes none)`, remedy, detail: { file } });
          continue;
        }
        const w = writableByOthers(f, p.uid());
        if (w) out.push({ key: `state-dir|${file}|${w}`, what: 'state-dir', severity: 'critical', message: `${file} in the state directory ${w}`, remedy, detail: { file, uid: f.uid, gid: f.gid, mode: octal(f.mode) } });
      }
    }
    out.push(...this.appliedFindings(state));
    return out;
  }

  /**
   * applied.json: Sluice writes it only whole (a new file renamed over it)
   * and deletes it only with `off.json` written first or a journal line
   * right after. So a deletion with neither, while it named a policy, is
   * not Sluice's; nor is a change of its size or time on the same inode.
   */
  private appliedFindings(state: StateStore): IntegrityFinding[] {
    const file = join(state.dir, 'applied.json');
    const f = this.probe.lstat(file);
    const journal = journalMark(state);
    const seen = this.appliedSeen;
    const out: IntegrityFinding[] = [];
    const key = `state-dir|applied-deleted|${file}`;
    if (f === null) {
      if (seen && !isOff(state) && (this.active.has(key) || journal === seen.journal)) {
        out.push({
          key,
          what: 'state-dir',
          severity: 'critical',
          message: `${file} was deleted while a policy was applied, and no Sluice command did it (no sluice off, no journal line)`,
          remedy: 'The ruleset in the kernel stays; apply the policy again (sluice apply FILE) so that restarts, rollbacks and the tamper watchdog know what is applied, and find out who deleted it',
          detail: { file },
          confirm: true,
        });
      } else {
        this.appliedSeen = undefined;
      }
      return out;
    }
    if (seen && seen.dev === f.dev && seen.ino === f.ino && (seen.size !== f.size || seen.mtimeMs !== f.mtimeMs)) {
      out.push({
        key: `state-dir|applied-in-place|${file}|${f.mtimeMs}|${f.size}`,
        what: 'state-dir',
        severity: 'critical',
        message: `${file} was modified in place (same inode, ${seen.size} -> ${f.size} bytes): Sluice only ever replaces it whole, so another process wrote what Sluice takes as applied`,
        remedy: 'Check sluice status and apply the policy again (sluice apply FILE); find out who wrote it',
        detail: { file, inode: f.ino, size: f.size, previousSize: seen.size, mtime: new Date(f.mtimeMs).toISOString() },
        once: true,
      });
    }
    this.appliedSeen = { path: file, dev: f.dev, ino: f.ino, size: f.size, mtimeMs: f.mtimeMs, journal };
    return out;
  }

  // --- net.ipv4.ip_unprivileged_port_start ---------------------------------

  private sysctlFindings(policy: Policy): IntegrityFinding[] {
    if (!policy.dns.guard) return [];
    const v = this.probe.portStart();
    if (v === null) return [];
    const out: IntegrityFinding[] = [];
    const port = policy.dns.port;
    const remedy = (above: number) => `Raise it above ${above} (sysctl -w net.ipv4.ip_unprivileged_port_start=1024, and where it is set at boot: /etc/sysctl.d, a container runtime)`;
    if (dnsGuardListens(policy) && v <= port) {
      out.push({
        key: `sysctl|guard-port|${port}`,
        what: 'sysctl',
        severity: 'critical',
        message: `net.ipv4.ip_unprivileged_port_start was lowered to ${v}, at or below the DNS guard's port ${port}: any user may bind that port, and take it while the guard restarts (its start then fails with EGUARDPORT)`,
        remedy: remedy(port),
        detail: { sysctl: 'net.ipv4.ip_unprivileged_port_start', value: v, port },
      });
    }
    if (v <= 53) {
      const local = this.probe.localUpstreams(policy, v);
      if (local.length > 0) {
        out.push({
          key: `sysctl|local-upstream|${local.join(',')}`,
          what: 'sysctl',
          severity: 'critical',
          message: `net.ipv4.ip_unprivileged_port_start was lowered to ${v}, at or below 53, and the DNS guard's resolver ${local.join(', ')} is on this host: any user may bind port 53 while it is down and answer the guard in its place (opening addresses of their choice)`,
          remedy: remedy(53),
          detail: { sysctl: 'net.ipv4.ip_unprivileged_port_start', value: v, port: 53, upstreams: local },
        });
      }
    }
    return out;
  }

  // --- the guard's sockets -------------------------------------------------

  private socketFindings(policy: Policy): IntegrityFinding[] {
    if (!dnsGuardListens(policy)) return [];
    const port = policy.dns.port;
    const socks = this.probe.sockets(port);
    if (socks === null) return [];
    if (socks.some((s) => !this.ownInodes.has(s.inode))) {
      // Something unknown: this process's sockets are listed again (new ones are the guard's after a reload).
      this.ownInodes = new Set([...this.probe.ownSocketInodes()].filter((i) => socks.some((s) => s.inode === i)));
    }
    const out: IntegrityFinding[] = [];
    const mine: BoundSocket[] = [];
    for (const s of socks) {
      if (this.ownInodes.has(s.inode)) {
        mine.push(s);
        continue;
      }
      const key = `guard-socket|foreign|${s.proto}|${s.addr}|${s.inode}`;
      const known = this.active.get(key);
      const holder = known ? (known.detail.holder as string | null) : this.probe.socketHolder(s.inode);
      const wildcard = s.addr === '0.0.0.0' || s.addr === '::';
      out.push({
        key,
        what: 'guard-socket',
        severity: 'critical',
        message: `Another process's socket is bound to the DNS guard's port ${port}: ${s.proto.toUpperCase()} ${s.family === 6 ? `[${s.addr}]` : s.addr}:${port}${wildcard ? ' (every address)' : ''}, uid ${s.uid}, inode ${s.inode}, held by ${holder ?? 'a process not found'}`,
        remedy: 'Stop that process and find out how it got the port (the kernel delivers redirected queries only to the guard\'s marked sockets, but nothing else should hold this port)',
        detail: { proto: s.proto, address: s.addr, port, uid: s.uid, inode: s.inode, holder },
      });
    }
    for (const a of GUARD_ADDRS) {
      for (const proto of ['udp', 'tcp'] as const) {
        if (mine.some((s) => s.proto === proto && s.addr === a.addr)) continue;
        out.push({
          key: `guard-socket|gone|${proto}|${a.addr}|${port}`,
          what: 'guard-socket',
          severity: 'critical',
          message: `The DNS guard no longer listens on ${proto.toUpperCase()} ${a.family === 6 ? `[${a.addr}]` : a.addr}:${port}`,
          remedy: 'Restart the daemon (systemctl restart sluice); queries redirected there go unanswered',
          detail: { proto, address: a.addr, port },
          confirm: true,
        });
      }
    }
    return out;
  }

  private registerMetrics(rt: Runtime): void {
    rt.metrics.collect(() => [
      {
        name: 'sluice_integrity_findings_total',
        help: 'Findings of the integrity watch (policy file, state directory, sysctl, the guard\'s sockets), by what they were about',
        type: 'counter',
        samples: WHATS.map((w) => ({ labels: { what: w }, value: this.stats.found[w] })),
      },
      {
        name: 'sluice_integrity_findings_active',
        help: 'Findings of the integrity watch still in force',
        type: 'gauge',
        samples: WHATS.map((w) => ({ labels: { what: w }, value: [...this.active.values()].filter((f) => f.what === w).length })),
      },
    ]);
  }
}

const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** The journal's last line, as a key (a Sluice write of applied.json is followed by one). */
function journalMark(state: StateStore): string {
  try {
    const last = state.lastJournal();
    return last === null ? '' : `${String(last.at)}|${String(last.event)}`;
  } catch {
    return '';
  }
}

function isOff(state: StateStore): boolean {
  try {
    return state.isOff();
  } catch {
    return false;
  }
}
