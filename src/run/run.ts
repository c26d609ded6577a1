import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { compileRunRuleset } from '../compile/run-ruleset.js';
import { parseLogPrefix } from '../compile/kernel-names.js';
import { SystemError } from '../errors.js';
import type { DnsQueryEvent } from '../events/channels.js';
import { formatAddr, type AddrRange } from '../net/ip.js';
import { hostAddresses } from '../net/host-addresses.js';
import type { ForwardChain, Netfilter } from '../netfilter/netfilter.js';
import { NflogListener, type NflogRecord } from '../netfilter/nflog.js';
import type { Policy } from '../policy/policy.js';
import { DnsGuard } from '../dns/dns-guard.js';
import { DomainMatcher } from '../dns/domain-matcher.js';
import { GuardServers } from '../dns/guard-servers.js';
import { LearnedState } from '../dns/learned-state.js';
import { RebindingFilter } from '../dns/rebinding.js';
import { SetWriter } from '../dns/set-writer.js';
import { UpstreamClient } from '../dns/upstream.js';
import { encryptedDnsFor } from '../policy/encrypted-dns-list.js';
import { join } from 'node:path';
import { ProbeReader, type FlowKey } from '../monitor/kernel-attribution.js';
import { startProbes, type ProbeAttached, type ProbeLoad } from './probes.js';
import { native } from '../native/native.js';
import { findCgroup2Root } from '../system/cgroups.js';
import { processStart, releaseSlot, takeSlot, withRunLock, type RunRecord } from './run-state.js';
import {
  cleanupDead,
  createNetwork,
  deleteVeth,
  enableForwarding,
  makeRunCgroup,
  removeNetns,
  removeRun,
  restoreForwardingIfIdle,
  runAddresses,
  runSlots,
  writeResolvConf,
  HOST_IF_PREFIX,
  type RunAddresses,
} from './sandbox.js';

/** The report's schema version: bumped on any change a script reading it would notice. */
export const RUN_REPORT_VERSION = 1;

/** A process of the run, as the kernel captured it at the connect or send. */
export interface RunProcess {
  pid: number;
  comm: string;
  uid: number;
  /** The executable as exec'd and its command line, when the probes saw the exec. */
  exe?: string;
  cmdline?: string;
}

export interface RunFlow {
  verdict: 'allowed' | 'blocked' | 'would-block';
  rule: string;
  proto: string;
  dst: string;
  dport?: number;
  /** Names whose answers (in this run) held the address. */
  names: string[];
  /** Who sent it (up to 5 distinct processes), when the kernel attribution probes could tell. */
  processes: RunProcess[];
  count: number;
  first: string;
  last: string;
}

export interface RunName {
  name: string;
  type: string;
  verdict: 'allowed' | 'blocked' | 'would-block' | 'error';
  rules: string[];
  answers: string[];
  /** Who asked (up to 5 distinct processes; queries over UDP), when the kernel attribution probes could tell. */
  processes: RunProcess[];
  count: number;
}

export interface RunReport {
  version: typeof RUN_REPORT_VERSION;
  id: string;
  command: string[];
  mode: 'enforce' | 'audit';
  policy: string;
  startedAt: string;
  durationMs: number;
  exit: { code: number | null; signal: string | null };
  ipv6: boolean;
  names: RunName[];
  flows: RunFlow[];
  /** Records the kernel could not deliver (the report may miss some attempts). */
  lostRecords: number;
  /** Whether flows are named by process (the kernel attribution probes, attached to the run's cgroup), and why not. */
  attribution: { probes: boolean; reason?: string };
  summary: { namesAllowed: number; namesBlocked: number; destinationsReached: number; attemptsBlocked: number };
}

export interface RunOptions {
  policy: Policy;
  argv: string[];
  /** The guard's upstream resolvers. */
  upstreams: AddrRange[];
  /** Give the run IPv6 where the host can forward it safely. */
  ipv6: boolean;
  /** Run the command as this user (uid, gid), with that user's groups. */
  user?: { uid: number; gid: number };
  /** Told once the run's network is up (what it could not give, such as IPv6). */
  notice?: (text: string) => void;
  /** The attribution probes, already loading (started with the command, probes.ts); else started here. Taken over: the run closes them. */
  probes?: ProbeLoad;
  /** Called once the command is started (what the caller needs only at the end can load meanwhile). */
  onStarted?: () => void;
}

const QTYPE: Record<number, string> = { 1: 'A', 28: 'AAAA', 5: 'CNAME', 15: 'MX', 16: 'TXT', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 12: 'PTR', 2: 'NS', 6: 'SOA' };
const PROTO: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };

/** Collects what the run did, for the report. */
class RunLog {
  /** Names the senders of a batch of records (the probes), or nothing. */
  senders: ((records: NflogRecord[]) => (RunProcess | undefined)[]) | undefined;
  /** Names the sender of a DNS query that came over UDP from this source address and port (the probes), or nothing. */
  asker: ((family: 4 | 6, port: number) => RunProcess | undefined) | undefined;
  names = new Map<string, RunName>();
  flows = new Map<string, RunFlow>();
  /** Address -> names whose allowed answers held it. */
  private held = new Map<string, Set<string>>();
  lost = 0;
  private lastSeq: number | undefined;

  dns(e: DnsQueryEvent): void {
    const type = QTYPE[e.type] ?? String(e.type);
    const key = `${e.name}|${type}|${e.verdict}`;
    // The query's source port in the run's namespace: the probes recorded who sent from it.
    const v4 = !e.client.address.includes(':') || (e.client.address.startsWith('::ffff:') && e.client.address.includes('.'));
    const proc = e.transport === 'udp' ? this.asker?.(v4 ? 4 : 6, e.client.port) : undefined;
    const cur = this.names.get(key);
    if (cur) {
      cur.count++;
      for (const a of e.answers) if (!cur.answers.includes(a)) cur.answers.push(a);
      if (proc && cur.processes.length < 5 && !cur.processes.some((x) => x.pid === proc.pid)) cur.processes.push(proc);
    } else this.names.set(key, { name: e.name, type, verdict: e.verdict, rules: [...e.rules], answers: [...e.answers], processes: proc ? [proc] : [], count: 1 });
    // Answers handed out (allowed; in audit mode also would-block): their addresses carry the name.
    if (e.verdict === 'allowed' || e.verdict === 'would-block') {
      for (const a of e.answers) {
        let s = this.held.get(a);
        if (!s) this.held.set(a, (s = new Set()));
        s.add(e.name);
      }
    }
  }

  records(list: NflogRecord[]): void {
    const who = this.senders?.(list) ?? [];
    for (const [i, r] of list.entries()) {
      if (r.seq !== undefined && this.lastSeq !== undefined && r.seq > this.lastSeq + 1) this.lost += r.seq - this.lastSeq - 1;
      if (r.seq !== undefined) this.lastSeq = r.seq;
      const p = parseLogPrefix(r.prefix);
      const pkt = r.packet;
      if (!p || !pkt) continue;
      const dst = formatAddr(pkt.family, pkt.dst);
      const proto = PROTO[pkt.proto] ?? String(pkt.proto);
      const key = `${p.verdict}|${p.rule}|${proto}|${dst}|${pkt.dport ?? ''}`;
      const at = new Date(r.timeMs).toISOString();
      const cur = this.flows.get(key);
      const proc = who[i];
      if (cur) {
        cur.count++;
        cur.last = at;
        if (proc && cur.processes.length < 5 && !cur.processes.some((x) => x.pid === proc.pid)) cur.processes.push(proc);
      } else {
        this.flows.set(key, {
          verdict: p.verdict as RunFlow['verdict'],
          rule: p.rule,
          proto,
          dst,
          ...(pkt.dport !== undefined ? { dport: pkt.dport } : {}),
          names: [],
          processes: proc ? [proc] : [],
          count: 1,
          first: at,
          last: at,
        });
      }
    }
  }

  finish(): { names: RunName[]; flows: RunFlow[] } {
    for (const f of this.flows.values()) f.names = [...(this.held.get(f.dst) ?? [])].sort();
    const names = [...this.names.values()].sort((a, b) => a.name.localeCompare(b.name) || a.type.localeCompare(b.type));
    const order = { blocked: 0, 'would-block': 1, allowed: 2 } as const;
    const flows = [...this.flows.values()].sort((a, b) => order[a.verdict] - order[b.verdict] || a.dst.localeCompare(b.dst) || (a.dport ?? 0) - (b.dport ?? 0));
    return { names, flows };
  }
}

function signalNumber(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}

/** The guard, listening on the host end of the run's veth, on a port no one else holds there. */
async function startGuard(handle: ConstructorParameters<typeof GuardServers>[1], a: RunAddresses): Promise<GuardServers> {
  const hosts = [formatAddr(4, a.host4), ...(a.host6 !== undefined ? [formatAddr(6, a.host6)] : [])];
  let last: unknown;
  for (let i = 0; i < 8; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    const servers = new GuardServers(port, handle, 0, { hosts });
    try {
      await servers.start();
      return servers;
    } catch (err) {
      last = err;
      await servers.stop().catch(() => undefined);
    }
  }
  throw new SystemError('ERUNGUARD', `The run's DNS guard found no free port on ${hosts.join(', ')}: ${(last as Error)?.message ?? last}`);
}

/**
 * Runs one command in its own network namespace under `policy`, with its own
 * DNS guard, and reports what it resolved, reached and was refused. Nothing
 * is started unless the whole confinement is in place; everything made is
 * removed on every exit path this process lives through (a SIGKILL leaves a
 * slot file the next run or `--cleanup` acts on; until then the run stays
 * confined: its table outlives this process and its guard is gone).
 */
export async function runConfined(nf: Netfilter, opts: RunOptions): Promise<{ report: RunReport; exitCode: number }> {
  const started = Date.now();
  // SLUICE_RUN_TRACE=1: each phase's time on stderr (what bench:run's figure is made of).
  const t0 = performance.now();
  const trace = process.env.SLUICE_RUN_TRACE === '1' ? (what: string) => process.stderr.write(`sluice run: ${(performance.now() - t0).toFixed(1)} ms ${what}\n`) : () => undefined;
  trace(`started (${t0.toFixed(1)} ms after the process)`);
  const id = randomBytes(4).toString('hex');
  let v6 = false;
  const cgroupRoot = findCgroup2Root();
  // Probes the caller started are this run's to close, whatever happens from here.
  let rec: RunRecord;
  try {
    rec = withRunLock(() => {
      cleanupDead(nf);
      const r = takeSlot((slot) => ({
        slot,
        id,
        pid: process.pid,
        pidStart: processStart(process.pid) ?? '',
        netns: `sluice-run-${id}`,
        hostIf: `${HOST_IF_PREFIX}${id}`,
        table: `sluice-run-${id}`,
        ...(cgroupRoot ? { cgroup: join(cgroupRoot, `sluice-run-${id}`) } : {}),
        startedAt: new Date(started).toISOString(),
      }), runSlots());
      try {
        v6 = enableForwarding(nf, opts.ipv6);
      } catch (err) {
        releaseSlot(r.slot);
        restoreForwardingIfIdle(nf, undefined);
        throw err;
      }
      return r;
    });
  } catch (err) {
    await opts.probes?.close();
    throw err;
  }
  trace('slot taken, forwarding on');

  const log = new RunLog();
  let servers: GuardServers | undefined;
  let upstream: UpstreamClient | undefined;
  let listener: NflogListener | undefined;
  let probes: ProbeLoad | undefined;
  let innerPending: Promise<void> | undefined;
  let vethGone: Promise<boolean> | undefined;
  let held: Held | undefined;
  const pending = new Set<NodeJS.Signals>();
  let child: ReturnType<typeof spawn> | undefined;
  // Until the command runs, a signal ends the run (after cleanup); once it runs, it is the command's.
  const onSignal = (sig: NodeJS.Signals) => {
    if (child && child.exitCode === null) {
      // SIGINT and SIGQUIT from a terminal reach the command's process group themselves.
      if (sig !== 'SIGINT' && sig !== 'SIGQUIT') child.kill(sig);
    } else pending.add(sig);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  for (const s of signals) process.on(s, onSignal);
  try {
    if (opts.ipv6 && !v6) opts.notice?.('this run has no IPv6: this host does not forward IPv6, and turning it on would make it ignore router advertisements');
    const blocking = forwardBlockers(nf);
    if (blocking) opts.notice?.(blocking);
    const a = runAddresses(rec.slot, v6);
    const cgroup = makeRunCgroup(cgroupRoot, id);
    // The probes load on another thread while this one makes the network and the guard (started with
    // the command when the caller did); their connect hook goes on the run's cgroup as soon as it exists.
    probes = opts.probes ?? (cgroup ? startProbes() : undefined);
    const attaching: Promise<ProbeAttached> = probes && cgroup ? probes.attach(cgroup.path) : Promise.resolve({ attached: false, reason: 'no cgroup v2 to give the run' });
    // The inner end's addresses and routes are made by another process while the guard and the table are.
    const inner = createNetwork(rec, a);
    innerPending = inner.catch(() => undefined);
    trace('network made (host side)');
    let hostResolv = '';
    try {
      hostResolv = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      /* none: the run gets the guard alone */
    }
    writeResolvConf(rec, a, hostResolv);
    // The command's process starts now, held at the door: `ip netns exec` (its mount namespace, the
    // run's resolv.conf) and its move into the run's cgroup are done beside the guard and the table.
    // It runs the command only when told to, once everything is in place, and never if this process
    // dies first (the pipe it waits on closes, and it exits).
    const drop = opts.user ? ['setpriv', `--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--init-groups', '--'] : [];
    held = holdCommand(rec.netns, [...drop, ...opts.argv]);
    const door = held;
    const joined = cgroup ? writeFile(join(cgroup.path, 'cgroup.procs'), String(door.proc.pid)) : Promise.resolve();
    joined.then(
      () => trace('command in the run\'s cgroup'),
      () => undefined,
    );
    trace('command held');
    const logGroup = 40000 + (rec.slot % 20000);
    listener = new NflogListener(logGroup, (records) => log.records(records), { copyBytes: 128, bufBytes: 4 << 20, qthresh: 1 });
    const policy = opts.policy;
    // The table before the guard answers: nothing runs inside yet, and the guard's sets must exist.
    let guard: DnsGuard | undefined;
    trace('nflog bound');
    servers = await startGuard((p, c) => (guard ? guard.handle(p, c) : Promise.resolve(null)), a);
    trace('guard listening');
    const { ruleset, dynamicSets } = compileRunRuleset(policy, {
      table: rec.table,
      hostIf: rec.hostIf,
      guard4: a.host4,
      inner4: a.inner4,
      ...(a.host6 !== undefined && a.inner6 !== undefined ? { guard6: a.host6, inner6: a.inner6 } : {}),
      guardPort: servers.port,
      logGroup,
    });
    nf.replace(ruleset, { carryDynamic: false });
    trace('table applied');
    upstream = new UpstreamClient(opts.upstreams, { mark: 0 });
    // Audit: the guard answers every name (deny rules and the default refuse nothing) and the
    // report labels what the policy would have refused, judged by the policy as written.
    const audit = policy.mode === 'audit';
    const guardPolicy: Policy = audit ? { ...policy, defaultAction: 'allow', rules: policy.rules.filter((r) => r.action === 'allow') } : policy;
    const deps = (p: Policy) => ({
      policy: p,
      matcher: new DomainMatcher(p, audit ? [] : encryptedDnsFor(p).names),
      rebinding: new RebindingFilter(p, hostAddresses()),
      dynamicSets,
      upstream: upstream as UpstreamClient,
      writer: new SetWriter(nf, rec.table),
      learned: new LearnedState(),
      onEvent: (e: DnsQueryEvent) => log.dns(e),
    });
    const judge = audit ? new DnsGuard({ ...deps(policy), matcher: new DomainMatcher(policy, encryptedDnsFor(policy).names) }) : undefined;
    guard = new DnsGuard({
      ...deps(guardPolicy),
      onEvent: (e: DnsQueryEvent) => log.dns(judge && e.verdict === 'allowed' && judge.classify(e.name).refused !== undefined ? { ...e, verdict: 'would-block' } : e),
    });
    await inner;
    trace('network made (inside)');
    // The command waits for the probes' connect hook on its cgroup (not for more): its first connect is seen.
    const attribution = probes && cgroup ? await attachProbes(probes, attaching, rec.netns, log) : { probes: false, reason: 'no cgroup v2 to give the run' };
    trace(`probes ${attribution.probes ? 'attached' : `not attached: ${attribution.reason}`}`);
    if (pending.size > 0) throw new SystemError('ERUNSIGNAL', `Stopped by ${[...pending].join(', ')} before the command started; nothing ran.`);

    trace('resolv.conf written; starting the command');
    // In the run's cgroup before the command's first instruction (the probes' connect hook is on it,
    // and cleanup kills what is in it); the shell holding the door has started nothing.
    await joined;
    const proc = door.proc;
    if (proc.exitCode !== null || proc.signalCode !== null) throw new SystemError('ERUNSTART', `The command's holder exited (${proc.exitCode ?? proc.signalCode}) before the command started; nothing ran.`);
    door.go();
    child = proc;
    opts.onStarted?.();
    const exit = await door.exit;
    trace('command exited');
    // Its veth goes at once (the run is cut off from everything, what the command left running included),
    // while the last records are read, the report made and the guard and probes stopped: the kernel's
    // part of deleting a link is tens of milliseconds. The rest of the cleanup waits for it.
    // The `ip` is also lent this process's nftables socket: closing it after the table's removal waits
    // for the kernel to free what that transaction deleted (a grace period, 15-30 ms); held by the `ip`
    // too, it is freed when that exits, without this process waiting.
    const nfFd = nf.socketFd?.();
    vethGone = deleteVeth(rec.hostIf, nfFd !== undefined ? [nfFd] : []).then(
      () => true,
      () => false,
    );
    // The last records: each is sent as it is logged (qthresh 1), before the packet's sender could
    // exit; a few milliseconds let the socket's readiness reach the event loop.
    await new Promise((r) => setTimeout(r, 5));
    trace('last records read');
    const { names, flows } = log.finish();
    const report: RunReport = {
      version: RUN_REPORT_VERSION,
      id,
      command: opts.argv,
      mode: policy.mode,
      policy: policy.file,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      exit: { code: exit.code, signal: exit.signal },
      ipv6: v6,
      names,
      flows,
      lostRecords: log.lost,
      attribution,
      summary: {
        namesAllowed: names.filter((n) => n.verdict === 'allowed').length,
        namesBlocked: names.filter((n) => n.verdict === 'blocked' || n.verdict === 'would-block').length,
        destinationsReached: flows.filter((f) => f.verdict === 'allowed').length,
        attemptsBlocked: flows.filter((f) => f.verdict !== 'allowed').reduce((n, f) => n + f.count, 0),
      },
    };
    const exitCode = exit.code ?? 128 + signalNumber(exit.signal ?? 'SIGKILL');
    return { report, exitCode };
  } finally {
    for (const s of signals) process.off(s, onSignal);
    listener?.close();
    trace('nflog closed');
    // Held and never told to go (a failure or a signal before it): it runs nothing, and goes now.
    if (held && !child) held.proc.kill('SIGKILL');
    await probes?.close();
    trace('probes closed');
    // An `ip` still configuring the namespace: done before the namespace is removed.
    await innerPending;
    upstream?.close();
    await servers?.stop().catch(() => undefined);
    trace('guard stopped');
    // While the veth is being deleted: what the command left running is killed, and the namespace
    // removed (the table stays until the veth is gone: until then it is what confines the run).
    const early = vethGone ? removeRun(nf, rec, { only: ['processes'] }) : [];
    const netnsGone = vethGone ? removeNetns(rec) : Promise.resolve([]);
    // Deleted (else removeRun tries again, and says what failed).
    const gone = (await vethGone) ?? false;
    early.push(...(await netnsGone));
    trace(`veth ${gone ? 'deleted' : 'not deleted here'}`);
    const failed = withRunLock(() => {
      const f = vethGone ? [...early, ...removeRun(nf, rec, { only: gone ? ['table'] : ['veth', 'table'] })] : removeRun(nf, rec);
      releaseSlot(rec.slot);
      restoreForwardingIfIdle(nf, undefined);
      return f;
    });
    trace('cleaned up');
    if (failed.length > 0) opts.notice?.(`cleanup left: ${failed.join('; ')} (run \`sluice run --cleanup\`)`);
  }
}

/**
 * The shell that holds a run's command at the door: it waits for "go" on fd
 * 3, then becomes the command (fd 3 closed); on anything else (the pipe
 * closed: this process died or gave up) it exits 125 having run nothing.
 * A constant script: the command comes as its arguments, never as text.
 */
const HOLD = 'read -r go <&3 && [ "$go" = go ] && exec "$@" 3<&-; exit 125';

interface Held {
  proc: ReturnType<typeof spawn>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  go(): void;
}

/** Starts `argv` in the run's namespace (`ip netns exec`), held until go(). */
function holdCommand(netns: string, argv: string[]): Held {
  const proc = spawn('ip', ['netns', 'exec', netns, 'sh', '-c', HOLD, 'sh', ...argv], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  exit.catch(() => undefined);
  const pipe = proc.stdio[3] as import('node:stream').Writable;
  // Gone before go: its exit says how.
  pipe.on('error', () => undefined);
  return { proc, exit, go: () => void pipe.end('go\n') };
}

/**
 * A run's traffic is forwarded, and a forwarded packet must get through
 * every base chain on the forward hook, of every table: another firewall's
 * chain with policy drop (ufw's and Docker's FORWARD, a hand-written
 * `policy drop`) drops it unless one of its rules accepts it. Sluice does not
 * change other tables; it says so before the command runs, naming the chain
 * and how to let the run's interfaces (slr*) through. Null when there is no
 * such chain (or the chains cannot be listed).
 */
export function forwardBlockers(nf: Pick<Netfilter, 'forwardChains'>): string | null {
  let chains: ForwardChain[];
  try {
    chains = nf.forwardChains?.() ?? [];
  } catch {
    return null;
  }
  const drops = chains.filter((c) => c.policy === 'drop' && !c.table.startsWith('sluice'));
  if (drops.length === 0) return null;
  const named = drops.map((c) => `table ${c.family} ${c.table}, chain ${c.chain} (${c.rules} rule${c.rules === 1 ? '' : 's'})`).join('; ');
  return (
    `the host's firewall drops forwarded packets by default, and this run's traffic is forwarded: ${named}. ` +
    'Unless a rule there accepts it, the command cannot reach anything (ufw and Docker set this policy). ' +
    `Sluice does not change other tables; to let runs out, accept their interfaces (${HOST_IF_PREFIX}*) in that chain, for example ` +
    `iptables -I FORWARD -i ${HOST_IF_PREFIX}+ -j ACCEPT and iptables -I FORWARD -o ${HOST_IF_PREFIX}+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT ` +
    `(under Docker, in DOCKER-USER instead of FORWARD), or in nft: iifname "${HOST_IF_PREFIX}*" accept and oifname "${HOST_IF_PREFIX}*" ct state established,related accept`
  );
}

/**
 * Once loaded, records are named by the process that sent them, looked up by
 * flow in the run's namespace; without the probes (no BTF, no object, no
 * libbpf), flows are reported without a process, and the report says why.
 */
async function attachProbes(load: ProbeLoad, attaching: Promise<ProbeAttached>, netns: string, log: RunLog): Promise<{ probes: boolean; reason?: string }> {
  const [state, attached] = await Promise.all([load.loaded, attaching]);
  if (!state.loaded) return { probes: false, reason: state.reason };
  if (!attached.attached) return { probes: false, reason: attached.reason };
  let cookie: bigint;
  try {
    cookie = native().netnsCookie(join('/run/netns', netns));
  } catch (err) {
    return { probes: false, reason: `the run's namespace cookie: ${(err as Error).message}` };
  }
  const reader = new ProbeReader(state.maps);
  const named = (s: { tgid: number; start: bigint; comm: string; uid: number }): RunProcess => {
    const e = reader.exec(s.tgid, s.start);
    return { pid: s.tgid, comm: s.comm, uid: s.uid, ...(e ? { exe: e.path, cmdline: e.cmdline } : {}) };
  };
  log.asker = (family, port) => {
    const s = reader.senders([{ netns: cookie, family, proto: 17, sport: port }])[0];
    return s ? named(s) : undefined;
  };
  log.senders = (records) => {
    const at: number[] = [];
    const keys: FlowKey[] = [];
    records.forEach((r, i) => {
      const p = r.packet;
      if (!p) return;
      // TCP by the flow, UDP by the port, an echo request from a ping socket by its identifier (the socket's port).
      if ((p.proto === 1 || p.proto === 58) && p.echoId !== undefined) {
        at.push(i);
        keys.push({ netns: cookie, family: p.family, proto: p.proto, sport: p.echoId });
        return;
      }
      if (p.sport === undefined || (p.proto !== 6 && p.proto !== 17)) return;
      at.push(i);
      keys.push(p.proto === 6 ? { netns: cookie, family: p.family, proto: 6, sport: p.sport, ...(p.dport !== undefined ? { dport: p.dport } : {}), dst: p.dst } : { netns: cookie, family: p.family, proto: 17, sport: p.sport });
    });
    const out: (RunProcess | undefined)[] = records.map(() => undefined);
    reader.senders(keys).forEach((s, j) => {
      if (s) out[at[j] as number] = named(s);
    });
    return out;
  };
  return { probes: true };
}

/** `sluice run --cleanup`: removes what runs whose owner died left behind. */
export function cleanupRuns(nf: Netfilter): { removed: RunRecord[]; failed: string[] } {
  return withRunLock(() => cleanupDead(nf));
}
