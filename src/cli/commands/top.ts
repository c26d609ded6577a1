import { endpoint } from '../../events/format-event.js';
import { hostFactsFor } from '../../system/compile-env.js';
import { listConnections, type Connection } from '../../monitor/connections.js';
import { ProcessTable } from '../../monitor/process-table.js';
import { EXIT, type Context } from '../context.js';
import { onStop } from '../output.js';
import { appliedPolicy } from './connections.js';
import { openStoreForReading } from './log.js';
import type { StoredEvent } from '../../events/event-store.js';

/** Blocked and would-block attempts of one process (or one uid when the process is unknown) in the recent window. */
export interface AttemptRow {
  key: string;
  pid?: number;
  comm: string;
  user: string;
  blocked: number;
  wouldBlock: number;
  /** The latest attempt's destination, hostname and rule. */
  last: { dst: string; hostname?: string; rule: string; time: number };
}

/** How far back top looks for blocked and would-block attempts. */
export const ATTEMPT_WINDOW_MS = 60_000;

/** Groups blocked and would-block events by process, most attempts first. */
export function attemptRows(events: StoredEvent[]): AttemptRow[] {
  const rows = new Map<string, AttemptRow>();
  for (const e of events) {
    if (e.verdict !== 'blocked' && e.verdict !== 'would-block') continue;
    const key = e.process ? `pid:${e.process.pid}` : `uid:${e.uid ?? '?'}`;
    let r = rows.get(key);
    const dst = endpoint(e.family, e.dst, e.dport);
    if (!r) {
      r = { key, comm: e.process?.comm ?? '?', user: e.user ?? (e.uid !== undefined ? String(e.uid) : '?'), blocked: 0, wouldBlock: 0, last: { dst, rule: e.rule, time: e.time } };
      if (e.process) r.pid = e.process.pid;
      rows.set(key, r);
    }
    if (e.verdict === 'blocked') r.blocked++;
    else r.wouldBlock++;
    if (e.time >= r.last.time) r.last = { dst, rule: e.rule, time: e.time, ...(e.hostname ? { hostname: e.hostname } : {}) };
  }
  return [...rows.values()].sort((a, b) => b.blocked + b.wouldBlock - (a.blocked + a.wouldBlock) || b.last.time - a.last.time);
}

/** Activity of one process between two samples. */
export interface TopRow {
  key: string;
  pid?: number;
  comm: string;
  user: string;
  connections: number;
  destinations: number;
  bytesOut: number;
  bytesIn: number;
  /** Bytes per second over the last interval (null on the first sample). */
  outPerSec: number | null;
  inPerSec: number | null;
}

/** Groups connections by process and computes rates against the previous sample (by socket inode). */
export function topRows(now: Connection[], prev: Map<number, Connection> | null, seconds: number): TopRow[] {
  const rows = new Map<string, TopRow & { dests: Set<string> }>();
  for (const c of now) {
    const key = c.process ? `pid:${c.process.pid}` : `uid:${c.uid}`;
    let r = rows.get(key);
    if (!r) {
      r = { key, comm: c.process?.comm ?? '?', user: c.user ?? String(c.uid), connections: 0, destinations: 0, bytesOut: 0, bytesIn: 0, outPerSec: prev ? 0 : null, inPerSec: prev ? 0 : null, dests: new Set() };
      if (c.process) r.pid = c.process.pid;
      rows.set(key, r);
    }
    r.connections++;
    r.dests.add(`${c.remote}:${c.remotePort}`);
    r.bytesOut += c.bytesOut ?? 0;
    r.bytesIn += c.bytesIn ?? 0;
    const before = prev?.get(c.inode);
    if (prev && seconds > 0) {
      r.outPerSec = (r.outPerSec ?? 0) + Math.max(0, (c.bytesOut ?? 0) - (before?.bytesOut ?? 0)) / seconds;
      r.inPerSec = (r.inPerSec ?? 0) + Math.max(0, (c.bytesIn ?? 0) - (before?.bytesIn ?? 0)) / seconds;
    }
  }
  return [...rows.values()]
    .map(({ dests, ...r }) => ({ ...r, destinations: dests.size }))
    .sort((a, b) => (b.outPerSec ?? 0) + (b.inPerSec ?? 0) - ((a.outPerSec ?? 0) + (a.inPerSec ?? 0)) || b.connections - a.connections);
}

function bytes(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024) return `${Math.round(n)}B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)}K`;
  return `${(n / 1024 / 1024).toFixed(1)}M`;
}

/** The screen: processes by activity, the busiest destinations, then blocked and would-block attempts by process. */
export function topScreen(conns: Connection[], rows: TopRow[], intervalS: number, height = 40, attempts: AttemptRow[] = []): string[] {
  const lines = [`sluice top: ${conns.length} outbound connections, ${rows.length} processes  (rates over ${intervalS}s)`, ''];
  lines.push(`${'PID'.padStart(7)}  ${'PROCESS'.padEnd(16)} ${'USER'.padEnd(10)} ${'CONNS'.padStart(5)} ${'DESTS'.padStart(5)} ${'OUT/s'.padStart(8)} ${'IN/s'.padStart(8)} ${'OUT'.padStart(8)} ${'IN'.padStart(8)}`);
  const half = Math.max(5, Math.floor((height - 8) / 2));
  for (const r of rows.slice(0, half)) {
    lines.push(`${String(r.pid ?? '-').padStart(7)}  ${r.comm.slice(0, 16).padEnd(16)} ${r.user.slice(0, 10).padEnd(10)} ${String(r.connections).padStart(5)} ${String(r.destinations).padStart(5)} ${bytes(r.outPerSec).padStart(8)} ${bytes(r.inPerSec).padStart(8)} ${bytes(r.bytesOut).padStart(8)} ${bytes(r.bytesIn).padStart(8)}`);
  }
  const dests = new Map<string, { n: number; procs: Set<string>; rule?: string }>();
  for (const c of conns) {
    const k = `${c.proto} ${endpoint(c.family, c.remote, c.remotePort)}${c.hostname ? ` (${c.hostname})` : ''}`;
    const d = dests.get(k) ?? { n: 0, procs: new Set<string>(), ...(c.rule ? { rule: c.rule } : {}) };
    d.n++;
    d.procs.add(c.process ? `${c.process.comm ?? '?'}[${c.process.pid}]` : `uid ${c.uid}`);
    dests.set(k, d);
  }
  lines.push('', `${'CONNS'.padStart(5)}  ${'DESTINATION'.padEnd(40)} ${'RULE'.padEnd(14)} PROCESSES`);
  for (const [k, d] of [...dests].sort((a, b) => b[1].n - a[1].n).slice(0, half)) {
    lines.push(`${String(d.n).padStart(5)}  ${k.padEnd(40)} ${(d.rule ?? '-').padEnd(14)} ${[...d.procs].slice(0, 4).join(', ')}`);
  }
  if (attempts.length > 0) {
    lines.push('', `blocked and would-block attempts in the last ${ATTEMPT_WINDOW_MS / 1000}s`, `${'PID'.padStart(7)}  ${'PROCESS'.padEnd(16)} ${'USER'.padEnd(10)} ${'BLOCKED'.padStart(7)} ${'WOULD'.padStart(6)}  ${'LAST DESTINATION'.padEnd(40)} RULE`);
    for (const a of attempts.slice(0, half)) {
      const dest = `${a.last.dst}${a.last.hostname ? ` (${a.last.hostname})` : ''}`;
      lines.push(`${String(a.pid ?? '-').padStart(7)}  ${a.comm.slice(0, 16).padEnd(16)} ${a.user.slice(0, 10).padEnd(10)} ${String(a.blocked).padStart(7)} ${String(a.wouldBlock).padStart(6)}  ${dest.padEnd(40)} ${a.last.rule}`);
    }
  }
  return lines;
}

/**
 * `sluice top [--interval S] [--json]`: outbound activity by process and
 * destination, from the kernel's socket tables. On a terminal it refreshes
 * in place until q or Ctrl-C; otherwise (a pipe, a test) it takes two samples
 * one interval apart and prints one snapshot.
 */
export async function top(ctx: Context, args: { interval?: number }): Promise<number> {
  ctx.useSavedHostnames();
  const intervalS = args.interval ?? 2;
  const policy = appliedPolicy(ctx);
  const procs = new ProcessTable({ exclude: [process.pid] });
  const facts = policy ? hostFactsFor(policy) : undefined;
  let opened = await ctx.openedAddresses();
  let openedAt = Date.now();
  const sample = () => listConnections({ policy, procs, opened, ...(facts ? { facts } : {}) }).connections;
  let prev = sample();
  let store = null as ReturnType<typeof openStoreForReading>;
  const attempts = (): AttemptRow[] => {
    try {
      store ??= openStoreForReading(ctx.state.dir);
      return store ? attemptRows(store.query({ since: Date.now() - ATTEMPT_WINDOW_MS, limit: 20_000 })) : [];
    } catch {
      return [];
    }
  };
  const byInode = (cs: Connection[]) => new Map(cs.map((c) => [c.inode, c]));
  const live = process.stdout.isTTY && !ctx.json;
  if (!live) {
    await new Promise((r) => setTimeout(r, Math.min(intervalS, 1) * 1000));
    const now = sample();
    const rows = topRows(now, byInode(prev), Math.min(intervalS, 1));
    const tried = attempts();
    store?.close();
    if (ctx.json) ctx.result({ processes: rows, connections: now, attempts: tried });
    else for (const l of topScreen(now, rows, Math.min(intervalS, 1), 40, tried)) ctx.say(l);
    return EXIT.ok;
  }
  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  const off = onStop(stop);
  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (d: Buffer) => {
      if (d[0] === 0x71 || d[0] === 0x03) stop();
    });
  }
  process.stdout.write('\x1b[?25l');
  try {
    while (!stopped) {
      for (let i = 0; i < intervalS * 10 && !stopped; i++) await new Promise((r) => setTimeout(r, 100));
      if (stopped) break;
      // What the guard opened changes as names are resolved: read again every 5 s.
      if (Date.now() - openedAt > 5_000) {
        opened = await ctx.openedAddresses();
        openedAt = Date.now();
      }
      const now = sample();
      const screen = topScreen(now, topRows(now, byInode(prev), intervalS), intervalS, process.stdout.rows ?? 40, attempts());
      process.stdout.write(`\x1b[H\x1b[2J${screen.map((l) => l.slice(0, process.stdout.columns ?? 200)).join('\n')}\n`);
      prev = now;
    }
  } finally {
    off();
    store?.close();
    process.stdout.write('\x1b[?25h');
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
  }
  return EXIT.ok;
}
