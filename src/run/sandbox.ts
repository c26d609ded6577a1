import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SystemError } from '../errors.js';
import { formatAddr, parsePrefix, type Family } from '../net/ip.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import { NetlinkSocket } from '../netfilter/netlink-socket.js';
import { attrMap, attrStr, parseMessages } from '../netfilter/nl-attr.js';
import { native } from '../native/native.js';
import type { Ruleset } from '../compile/ruleset.js';
import { clearForwardingPrior, ownerAlive, readForwardingPrior, readSlots, releaseSlot, writeForwardingPrior, type ForwardingPrior, type RunRecord } from './run-state.js';

/**
 * The network of one `sluice run`: a namespace of its own, joined to the
 * host by a veth pair (host end `slr<id>`, inner end `eth0`), with a /30 and
 * a /64 per run carved from $SLUICE_RUN_NET4 (default 198.19.0.0/16, part of
 * the 198.18.0.0/15 block reserved for benchmarking, so it collides with no
 * real network) and $SLUICE_RUN_NET6 (default fd5c:1ce:5c00::/48, unique
 * local). Links and addresses are made with `ip -batch` (one process per
 * namespace, argv only); the host's forwarding is turned on only when it
 * was off, and then a guard table keeps the host from forwarding anything
 * but runs' traffic, and the last run turns it off again.
 */

export const FORWARD_GUARD_TABLE = 'sluice-run-forward';
/** Every run's host-end veth starts with this. */
export const HOST_IF_PREFIX = 'slr';

export interface RunAddresses {
  host4: bigint;
  inner4: bigint;
  host6?: bigint;
  inner6?: bigint;
}

function pool(env: string, fallback: string, family: Family, hostBits: number): { base: bigint; slots: number } {
  const text = process.env[env] ?? fallback;
  const p = parsePrefix(text);
  if (!p.ok || p.range.family !== family) throw new SystemError('ERUNNET', `${env}=${JSON.stringify(text)} is not an IPv${family} prefix`);
  const size = p.range.end - p.range.start + 1n;
  const slots = Number(size >> BigInt(hostBits));
  if (slots < 1) throw new SystemError('ERUNNET', `${env}=${text} is too small for one run`);
  return { base: p.range.start, slots };
}

/** How many runs the address pools hold at once. */
export function runSlots(): number {
  const v4 = pool('SLUICE_RUN_NET4', '198.19.0.0/16', 4, 2);
  return v4.slots;
}

/** The addresses of slot `slot`: host end .1 and inner end .2 of its /30; ::1 and ::2 of its /64. */
export function runAddresses(slot: number, ipv6: boolean): RunAddresses {
  const v4 = pool('SLUICE_RUN_NET4', '198.19.0.0/16', 4, 2);
  if (slot >= v4.slots) throw new SystemError('ERUNNET', `SLUICE_RUN_NET4 holds ${v4.slots} runs; slot ${slot} is past it`);
  const base4 = v4.base + (BigInt(slot) << 2n);
  const out: RunAddresses = { host4: base4 + 1n, inner4: base4 + 2n };
  if (ipv6) {
    const v6 = pool('SLUICE_RUN_NET6', 'fd5c:1ce:5c00::/48', 6, 64);
    const base6 = v6.base + (BigInt(slot % Math.max(1, v6.slots)) << 64n);
    out.host6 = base6 + 1n;
    out.inner6 = base6 + 2n;
  }
  return out;
}

function ip(args: string[], input?: string): void {
  try {
    execFileSync('ip', args, { input, stdio: ['pipe', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (err) {
    const e = err as { stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new SystemError('ENOIP', 'sluice run needs the `ip` command (package iproute2); nothing was started.');
    throw new SystemError('ERUNNET', `ip ${args.join(' ')} failed: ${(e.stderr ?? String(err)).trim()}`);
  }
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function writeSysctl(path: string, value: string): void {
  writeFileSync(`/proc/sys/${path}`, value);
}

/**
 * Whether this host may forward IPv6 for a run without harm: forwarding on
 * makes interfaces with accept_ra=1 ignore router advertisements, which
 * would cost a host its RA-learned default route. So IPv6 forwarding is
 * turned on only when it already is, or no route was learned from an RA.
 */
export function ipv6Forwardable(routes = readOptional('/proc/net/ipv6_route')): { ok: boolean; why?: string } {
  const fwd = readSysctl('net/ipv6/conf/all/forwarding');
  if (fwd === undefined) return { ok: false, why: 'IPv6 is disabled on this host' };
  if (fwd === '1') return { ok: true };
  // /proc/net/ipv6_route: the 9th field is the route's flags; RTF_ADDRCONF (0x40000) marks what an RA taught.
  for (const line of routes.split('\n')) {
    const flags = line.trim().split(/\s+/)[8];
    if (flags !== undefined && (Number.parseInt(flags, 16) & 0x40000) !== 0) {
      return { ok: false, why: 'this host has routes from router advertisements, which IPv6 forwarding would make it ignore' };
    }
  }
  return { ok: true };
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * The guard table installed while runs made the host forward: forwarded
 * packets that neither come from nor go to a run's veth are dropped, so a
 * host that did not route before does not start routing for anyone else.
 */
export function forwardGuardRuleset(): Ruleset {
  return {
    table: FORWARD_GUARD_TABLE,
    comment: 'sluice run: this host forwards only runs traffic',
    sets: [{ name: 'runs', key: 'ifname', interval: true, timeout: false, dynamic: false, elements: [{ t: 'ifname', name: HOST_IF_PREFIX, wildcard: true }], comment: "runs' veths" }],
    counters: [],
    limits: [],
    chains: [
      {
        name: 'forward',
        base: { type: 'filter', hook: 'forward', priority: -20, policy: 'accept' },
        rules: [
          { stmts: [{ k: 'lookup', sel: 'meta iifname', set: 'runs' }, { k: 'verdict', v: 'return' }] },
          { stmts: [{ k: 'lookup', sel: 'meta oifname', set: 'runs' }, { k: 'verdict', v: 'return' }] },
          { stmts: [{ k: 'verdict', v: 'drop' }], comment: 'this host did not forward before sluice run turned forwarding on' },
        ],
      },
    ],
  };
}

/**
 * Turns forwarding on for runs (under the run lock). Records what it was
 * first, installs the forward guard before switching, and returns whether
 * IPv6 is forwarded.
 */
export function enableForwarding(nf: Netfilter, wantV6: boolean): boolean {
  const prior: ForwardingPrior = readForwardingPrior() ?? {};
  const v4 = readSysctl('net/ipv4/ip_forward');
  const v6ok = wantV6 && ipv6Forwardable().ok;
  const v6 = readSysctl('net/ipv6/conf/all/forwarding');
  const changeV4 = v4 !== '1';
  const changeV6 = v6ok && v6 !== '1';
  if (changeV4 || changeV6) {
    if (changeV4 && prior.v4 === undefined) prior.v4 = v4 ?? '0';
    if (changeV6 && prior.v6 === undefined) prior.v6 = v6 ?? '0';
    writeForwardingPrior(prior);
    nf.replace(forwardGuardRuleset(), { carryDynamic: false });
    if (changeV4) writeSysctl('net/ipv4/ip_forward', '1');
    if (changeV6) writeSysctl('net/ipv6/conf/all/forwarding', '1');
  }
  return v6ok;
}

/** When no run is left (under the run lock): forwarding back as it was, and the guard table gone. */
export function restoreForwardingIfIdle(nf: Netfilter, exceptSlot: number | undefined): void {
  const live = readSlots().filter((r) => r.slot !== exceptSlot);
  if (live.length > 0) return;
  const prior = readForwardingPrior();
  if (!prior) return;
  if (prior.v4 !== undefined) writeSysctl('net/ipv4/ip_forward', prior.v4);
  if (prior.v6 !== undefined) writeSysctl('net/ipv6/conf/all/forwarding', prior.v6);
  nf.remove(FORWARD_GUARD_TABLE);
  clearForwardingPrior();
}

/** `ip` with a batch on stdin, without blocking this thread: settles when it exits (rejects with what failed). */
function ipAsync(args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new SystemError('ENOIP', 'sluice run needs the `ip` command (package iproute2); nothing was started.') : new SystemError('ERUNNET', `ip ${args.join(' ')} failed: ${err.message}`)),
    );
    p.once('close', (code) => (code === 0 ? resolve() : reject(new SystemError('ERUNNET', `ip ${args.join(' ')} failed: ${stderr.trim() || `exit ${code}`}`))));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
  });
}

/**
 * Makes the namespace, the veth pair, and the host end's addresses (done
 * when this returns); the inner end's addresses and routes are made by a
 * second `ip` in the namespace, whose completion the returned promise is
 * (the host side's guard and table are made meanwhile; the command waits
 * for both).
 */
export function createNetwork(rec: RunRecord, a: RunAddresses): Promise<void> {
  const host4 = formatAddr(4, a.host4);
  const inner4 = formatAddr(4, a.inner4);
  // The host end first: with it gone, the run has no way out (teardown deletes it first).
  const hostCmds = [
    `netns add ${rec.netns}`,
    `link add ${rec.hostIf} type veth peer name eth0 netns ${rec.netns}`,
    `addr add ${host4}/30 dev ${rec.hostIf}`,
    ...(a.host6 !== undefined ? [`addr add ${formatAddr(6, a.host6)}/64 dev ${rec.hostIf} nodad`] : []),
    `link set ${rec.hostIf} up`,
  ];
  // Every word is ours (names from hex ids, formatted addresses): nothing a user typed goes into a batch line.
  ip(['-batch', '-'], `${hostCmds.join('\n')}\n`);
  const innerCmds = [
    'link set lo up',
    `addr add ${inner4}/30 dev eth0`,
    ...(a.inner6 !== undefined ? [`addr add ${formatAddr(6, a.inner6)}/64 dev eth0 nodad`] : []),
    'link set eth0 up',
    `route add default via ${host4}`,
    ...(a.host6 !== undefined ? [`route add ::/0 via ${formatAddr(6, a.host6)}`] : []),
  ];
  const inner = ipAsync(['-n', rec.netns, '-batch', '-'], `${innerCmds.join('\n')}\n`);
  // Replies come back on other interfaces: the run's veth forwards (the host-wide switch is enableForwarding's).
  try {
    writeSysctl(`net/ipv4/conf/${rec.hostIf}/forwarding`, '1');
  } catch (err) {
    inner.catch(() => undefined);
    throw err;
  }
  return inner;
}

/**
 * The resolv.conf the run's processes see (`ip netns exec` binds
 * /etc/netns/NAME/resolv.conf over /etc/resolv.conf in their mount
 * namespace): the guard's address as the nameserver, the host's search
 * domains and options kept. DNS to any address is sent to the guard anyway.
 */
export function writeResolvConf(rec: RunRecord, a: RunAddresses, hostText: string): void {
  const dir = join('/etc/netns', rec.netns);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const kept = hostText.split('\n').filter((l) => /^(search|domain|options)[ \t]/.test(l));
  const lines = [`# written by sluice run ${rec.id}: DNS goes to the run's own guard`, `nameserver ${formatAddr(4, a.host4)}`];
  if (a.host6 !== undefined) lines.push(`nameserver ${formatAddr(6, a.host6)}`);
  writeFileSync(join(dir, 'resolv.conf'), `${[...lines, ...kept].join('\n')}\n`, { mode: 0o644 });
}

/** The inode of a namespace file (how processes in it are recognised). */
function nsInode(path: string): number | null {
  try {
    return statSync(path).ino;
  } catch {
    return null;
  }
}

/** Processes whose network namespace is the run's: what the command left running. */
export function processesIn(netns: string): number[] {
  const ino = nsInode(join('/run/netns', netns));
  if (ino === null) return [];
  const want = `net:[${ino}]`;
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/ns/net`) === want) out.push(Number(d));
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

/**
 * The run's own cgroup (`<cgroup2 root>/sluice-run-<id>`): every process of
 * the run is in it from its first instruction (the process that becomes the
 * command is moved into it while held at the door, before it runs), a double
 * fork or setsid does not leave it, and its id names the run's processes to
 * the kernel attribution probes. Null where there is no cgroup2 to use.
 */
export function makeRunCgroup(root: string | null, id: string): { path: string; id: bigint } | null {
  if (!root) return null;
  const path = join(root, `sluice-run-${id}`);
  try {
    mkdirSync(path);
    return { path, id: BigInt(statSync(path).ino) };
  } catch {
    return null;
  }
}

function ownCgroupRelative(): string | null {
  try {
    const line = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return line ? line.slice(3) : null;
  } catch {
    return null;
  }
}

function ownCgroupIs(path: string): boolean {
  const rel = ownCgroupRelative();
  return rel !== null && rel !== '/' && path.endsWith(rel);
}

/** Kills every process in the cgroup (cgroup.kill, Linux 5.14+; else one by one) and removes it once empty. */
export function removeCgroup(path: string): void {
  if (!existsSync(path)) return;
  try {
    writeFileSync(join(path, 'cgroup.kill'), '1');
  } catch {
    for (const pid of readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  // The killed leave the cgroup as the kernel reaps them: moments.
  const deadline = Date.now() + 2000;
  for (;;) {
    try {
      rmdirSync(path);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}

const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const RTNLGRP_LINK = 1;
const RTM_DELLINK = 17;
const IFLA_IFNAME = 3;
/** struct ifinfomsg: what precedes a link message's attributes. */
const IFINFOMSG_BYTES = 16;

/**
 * Deletes a run's host-end veth without blocking this thread, and settles
 * once the run is cut off: when the kernel announces the link's deletion
 * (RTM_DELLINK, to RTNLGRP_LINK's listeners). It sends that after closing
 * the link (a packet from the run's end is dropped: the peer is down),
 * unlisting it, flushing its packets from the backlog and an RCU grace
 * period (every packet that crossed it has been through the host's hooks,
 * the run's table included). What the kernel does after (an rcu_barrier,
 * waiting for references) frees memory, and takes most of the time: the
 * `ip` doing it is left to finish on its own. Without the announcement (no
 * rtnetlink socket, a lost message) it settles when `ip` exits. Already
 * gone counts as done. The `ip` is also given `lend`, descriptors it holds
 * until it exits and does not use.
 */
export function deleteVeth(hostIf: string, lend: number[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    let sock: NetlinkSocket | undefined;
    let handle: unknown;
    let done = false;
    // `lend`: descriptors the `ip` holds (from fd 3) until it exits; it uses none of them.
    const p = spawn('ip', ['link', 'del', hostIf], { stdio: ['ignore', 'ignore', 'pipe', ...lend] });
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      if (handle) native().unwatch(handle);
      sock?.close();
      // Announced: the `ip` finishes the kernel's slow part without this process waiting for it.
      p.unref();
      p.stderr?.destroy();
      if (err) reject(err);
      else resolve();
    };
    try {
      sock = NetlinkSocket.open(NETLINK_ROUTE, { bufBytes: 1 << 20 });
      native().setIntOpt(sock.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK);
      handle = native().watch(sock.fd, (err, data) => {
        if (err || !data) return;
        try {
          for (const m of parseMessages(data)) {
            if (m.type === RTM_DELLINK && attrStr(attrMap(m.payload, IFINFOMSG_BYTES).get(IFLA_IFNAME)) === hostIf) finish();
          }
        } catch {
          /* malformed: the exit of `ip` settles it */
        }
      });
    } catch {
      /* no announcement to wait for: the exit of `ip` settles it */
      sock?.close();
      sock = undefined;
    }
    let stderr = '';
    p.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.once('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'ENOENT' ? new SystemError('ENOIP', 'sluice run needs the `ip` command (package iproute2)') : new SystemError('ERUNNET', `ip link del ${hostIf} failed: ${err.message}`)),
    );
    p.once('close', (code) => {
      if (code === 0 || /Cannot find device/.test(stderr)) finish();
      else finish(new SystemError('ERUNNET', `ip link del ${hostIf} failed: ${stderr.trim() || `exit ${code}`}`));
    });
  });
}

/** The parts of removeRun: the veth; the run's processes (its cgroup, and any other in its namespace); its table; its namespace and resolv.conf. */
export type RunPart = 'veth' | 'processes' | 'table' | 'netns';

/**
 * Removes everything one run made, in the order that keeps it closed: the
 * veth first (the run is cut off from everything), then any process left
 * in its namespace, the table, the namespace and its resolv.conf; then the
 * slot. Each step is tried whatever the others did; what failed is returned.
 * `only`: these parts alone (a live run's own exit removes its processes and
 * namespace while its veth is being deleted, and its table once it is).
 */
export function removeRun(nf: Netfilter, rec: RunRecord, opts: { only?: RunPart[] } = {}): string[] {
  const doing = (part: RunPart) => opts.only === undefined || opts.only.includes(part);
  const failed: string[] = [];
  const trace = process.env.SLUICE_RUN_TRACE === '1';
  const step = (what: string, fn: () => void) => {
    const t = performance.now();
    try {
      fn();
      if (trace) process.stderr.write(`sluice run:   cleanup ${what}: ${(performance.now() - t).toFixed(1)} ms\n`);
    } catch (err) {
      failed.push(`${what}: ${(err as Error).message}`);
    }
  };
  // The veth first (asked of the kernel, not of /sys, which shows the namespace it was mounted in):
  // with it gone the run is cut off; then what is left in the namespace, the table, the namespace.
  if (doing('veth')) step(`veth ${rec.hostIf}`, () => {
    try {
      ip(['link', 'del', rec.hostIf]);
    } catch (err) {
      if (!/Cannot find device/.test((err as Error).message)) throw err;
    }
  });
  // Never the cgroup this process is in (it would kill itself): left for --cleanup, which runs elsewhere.
  if (doing('processes') && rec.cgroup && !ownCgroupIs(rec.cgroup)) step(`cgroup ${rec.cgroup}`, () => removeCgroup(rec.cgroup as string));
  if (doing('processes')) step('leftover processes', () => {
    for (const pid of processesIn(rec.netns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
  // A run's table is made without flags, and is removed after its veth: nothing to read or forget first.
  if (doing('table')) step(`table ${rec.table}`, () => void nf.remove(rec.table, { unowned: true }));
  if (doing('netns')) {
    step(`netns ${rec.netns}`, () => {
      if (existsSync(join('/run/netns', rec.netns))) ip(['netns', 'del', rec.netns]);
    });
    step('resolv.conf', () => rmSync(join('/etc/netns', rec.netns), { recursive: true, force: true }));
  }
  return failed;
}

/**
 * removeRun's `netns` part without blocking this thread (`ip netns del` runs
 * beside whatever this thread does next): settles with what failed.
 */
export async function removeNetns(rec: RunRecord): Promise<string[]> {
  const failed: string[] = [];
  const t = performance.now();
  try {
    if (existsSync(join('/run/netns', rec.netns))) await ipAsync(['netns', 'del', rec.netns], '');
    if (process.env.SLUICE_RUN_TRACE === '1') process.stderr.write(`sluice run:   cleanup netns ${rec.netns}: ${(performance.now() - t).toFixed(1)} ms\n`);
  } catch (err) {
    failed.push(`netns ${rec.netns}: ${(err as Error).message}`);
  }
  try {
    rmSync(join('/etc/netns', rec.netns), { recursive: true, force: true });
  } catch (err) {
    failed.push(`resolv.conf: ${(err as Error).message}`);
  }
  return failed;
}

/** Removes what runs whose owner died left behind (under the run lock). Returns the records removed. */
export function cleanupDead(nf: Netfilter): { removed: RunRecord[]; failed: string[] } {
  const removed: RunRecord[] = [];
  const failed: string[] = [];
  for (const r of readSlots()) {
    if (ownerAlive(r)) continue;
    failed.push(...removeRun(nf, r));
    releaseSlot(r.slot);
    removed.push(r);
  }
  restoreForwardingIfIdle(nf, undefined);
  return { removed, failed };
}
