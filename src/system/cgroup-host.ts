import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, promises as fsp, readdirSync, statSync, type BigIntStats, type Stats } from 'node:fs';
import { join } from 'node:path';
import type { AsyncCgroupHost, CgroupHost, ControlGroups, DirFacts, Ownership } from './resolve-services.js';

// The host as service resolution sees it (resolve-services.ts): systemd,
// asked through systemctl (argv, bounded in time and output), and the cgroup
// tree, read with lstat (never following a link).

/** Exists (a directory) exactly when systemd is the init system: sd_booted(3). */
const SYSTEMD_RUNTIME = '/run/systemd/system';

/** How long systemctl may take, and how much it may print, before Sluice gives up on it. */
export const SYSTEMCTL_TIMEOUT_MS = 5_000;
const SYSTEMCTL_MAX_OUTPUT = 1 << 20;

/** The systemctl command line that asks for the units' cgroups (argv; never a shell string). */
export function systemctlShowArgv(units: string[]): string[] {
  return ['systemctl', 'show', '--no-pager', '--property=Names,ControlGroup', '--', ...units];
}

/**
 * Reads `systemctl show --property=Names,ControlGroup` for several units:
 * one block per unit, separated by blank lines. Blocks are matched to the
 * units asked for by `Names` (a unit's name and its aliases), not by order.
 * A unit with no block is an error: systemd prints one even for a unit it
 * does not know (with an empty ControlGroup).
 */
export function parseSystemctlShow(text: string, units: string[]): ControlGroups {
  const wanted = new Set(units);
  const groups = new Map<string, string | null>();
  for (const block of text.split(/\n[ \t]*\n/)) {
    let names: string[] = [];
    let cgroup: string | undefined;
    for (const line of block.split('\n')) {
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1).trim();
      if (key === 'Names') names = value.split(/\s+/).filter(Boolean);
      else if (key === 'ControlGroup') cgroup = value;
    }
    if (cgroup === undefined) continue;
    for (const n of names) if (wanted.has(n) && !groups.has(n)) groups.set(n, cgroup === '' ? null : cgroup);
  }
  const missing = units.filter((u) => !groups.has(u));
  if (missing.length > 0) return { ok: false, error: `no answer for ${missing.join(', ')}` };
  return { ok: true, groups };
}

/** What running a command gave. */
export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}

function showResult(units: string[], r: CommandResult): ControlGroups {
  if (r.error) return { ok: false, error: r.error };
  if (r.status !== 0) return { ok: false, error: `systemctl exited with ${r.status}: ${r.stderr.trim().split('\n')[0]?.slice(0, 200) ?? ''}` };
  return parseSystemctlShow(r.stdout, units);
}

function ownership(st: BigIntStats | Stats | undefined): Ownership | null {
  if (!st || !st.isFile()) return null;
  return { uid: Number(st.uid), mode: Number(st.mode) & 0o7777 };
}

const CONTROL_FILES = ['cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control'] as const;

function inspectSync(dir: string, children: boolean): DirFacts | null {
  try {
    const st = lstatSync(dir, { bigint: true, throwIfNoEntry: false });
    if (!st || !st.isDirectory()) return null;
    const [procs, threads, subtreeControl] = CONTROL_FILES.map((f) => ownership(lstatSync(join(dir, f), { throwIfNoEntry: false })));
    const facts: DirFacts = { ino: st.ino, dir: { uid: Number(st.uid), mode: Number(st.mode) & 0o7777 }, procs: procs ?? null, threads: threads ?? null, subtreeControl: subtreeControl ?? null };
    if (children) {
      try {
        facts.children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
      } catch {
        facts.children = [];
      }
    }
    return facts;
  } catch {
    return null;
  }
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(path);
  } catch {
    return undefined;
  }
}

async function inspectAsync(dir: string, children: boolean): Promise<DirFacts | null> {
  try {
    const st = await fsp.lstat(dir, { bigint: true });
    if (!st.isDirectory()) return null;
    const [procs, threads, subtreeControl] = await Promise.all(CONTROL_FILES.map(async (f) => ownership(await lstatOrUndefined(join(dir, f)))));
    const facts: DirFacts = { ino: st.ino, dir: { uid: Number(st.uid), mode: Number(st.mode) & 0o7777 }, procs: procs ?? null, threads: threads ?? null, subtreeControl: subtreeControl ?? null };
    if (children) {
      try {
        facts.children = (await fsp.readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
      } catch {
        facts.children = [];
      }
    }
    return facts;
  } catch {
    return null;
  }
}

/** Runs a command (argv) synchronously, bounded in time and output. */
export type SyncRunner = (argv: string[]) => CommandResult;
/** Runs a command (argv) asynchronously, bounded in time and output. */
export type AsyncRunner = (argv: string[]) => Promise<CommandResult>;

const runSync: SyncRunner = (argv) => {
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: SYSTEMCTL_TIMEOUT_MS, maxBuffer: SYSTEMCTL_MAX_OUTPUT, stdio: ['ignore', 'pipe', 'pipe'] });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ...(r.error ? { error: r.error.message } : {}) };
};

/**
 * Runs a command (argv) without blocking the event loop: killed when it
 * outlives `timeoutMs` or prints more than `maxOutput` characters.
 */
export function runCommandAsync(argv: string[], limits: { timeoutMs: number; maxOutput: number } = { timeoutMs: SYSTEMCTL_TIMEOUT_MS, maxOutput: SYSTEMCTL_MAX_OUTPUT }): Promise<CommandResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let error: string | undefined;
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const stop = (why: string) => {
      error ??= why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => stop(`timed out after ${limits.timeoutMs} ms`), limits.timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (stdout.length > limits.maxOutput) stop('too much output');
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.on('error', (err) => {
      error ??= err.message;
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ...(error ? { error } : {}) });
    });
  });
}

/** This host, synchronously; `run` and `systemdRunning` can be replaced (tests). */
export function systemHost(opts: { run?: SyncRunner; systemdRunning?: () => boolean } = {}): CgroupHost {
  const run = opts.run ?? runSync;
  return {
    systemdRunning: opts.systemdRunning ?? (() => statSync(SYSTEMD_RUNTIME, { throwIfNoEntry: false })?.isDirectory() === true),
    controlGroups: (units) => showResult(units, run(systemctlShowArgv(units))),
    inspect: inspectSync,
  };
}

/** This host, asynchronously; `run` and `systemdRunning` can be replaced (tests). */
export function asyncSystemHost(opts: { run?: AsyncRunner; systemdRunning?: () => Promise<boolean> } = {}): AsyncCgroupHost {
  const run = opts.run ?? ((argv: string[]) => runCommandAsync(argv));
  return {
    systemdRunning:
      opts.systemdRunning ??
      (() =>
        fsp.stat(SYSTEMD_RUNTIME).then(
          (st) => st.isDirectory(),
          () => false,
        )),
    controlGroups: async (units) => showResult(units, await run(systemctlShowArgv(units))),
    inspect: inspectAsync,
  };
}
