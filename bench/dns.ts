/**
 * DNS benchmark: what the DNS guard costs a lookup, against dnsmasq doing
 * the same job with --nftset, and against asking the upstream directly.
 *
 *   npm run bench:dns [-- --rounds N --seconds S --latency-seconds S --rate QPS ...]   (--help lists all,
 *   each also as an environment variable: BENCH_ROUNDS, BENCH_SECONDS, ...)
 *
 * Everything runs in the namespace worlds of test/world/world.ts (only
 * 198.18.0.0/15 and loopback are used; the machine's own namespace is never
 * touched). Each forwarder gets its own World, with its own NSD upstream on
 * 198.18.0.53 in its world namespace, all serving the same generated zone:
 * NAMES distinct names h<i>.bench.sluice.test, each with its own A record
 * in 198.18.0.0/15 (TTL 3600). dnsperf (Debian's) runs in the client
 * namespace with one query file (every name once, in a fixed shuffled order)
 * for every configuration:
 *
 *   (a) upstream        dnsperf -> NSD on 198.18.0.53 directly; no ruleset (the floor)
 *   (b) dnsmasq         dnsmasq on 127.0.0.1:53, --cache-size=0 (every query forwarded),
 *                       --nftset=/bench.sluice.test/4#inet#dnsbench#allowed4: every answer's
 *                       address is added to a kernel set; an egress ruleset like Sluice's
 *                       (policy drop, conntrack, the set) is loaded beside it
 *   (c) sluice          `sluice daemon` in enforce mode, one rule to: ["*.bench.sluice.test"],
 *                       dns.upstreams [198.18.0.53]; dnsperf sends to 198.18.0.53:53 and the
 *                       kernel redirects it to the guard (the real path); every answer's
 *                       address is written into the rule's kernel set before the answer leaves
 *   context rows:       Sluice with the client running as root (see "attribution" below),
 *                       dnsperf straight at the guard's own port on 127.0.0.1 (no redirect), and
 *                       dnsmasq with its cache on (cached answers touch no set)
 *
 * dnsperf runs as uid 65534 (an ordinary unprivileged client) except in the
 * root row. Two measurements per configuration and round: throughput
 * (dnsperf with OUTSTANDING queries in flight for S seconds) and latency at a
 * fixed rate (dnsperf -Q RATE -v: every response's latency, so p50/p99 are
 * exact; a lost query counts as slower than any answer). Configurations are
 * measured round-robin in serpentine order; ratios are per round against
 * dnsmasq of the same round; medians with a distribution-free 95% confidence
 * interval. After the rounds, a diagnostic pass profiles the guard
 * (node --cpu-prof) and counts system calls per query (strace -c, when
 * installed) for Sluice and dnsmasq. Results also go to bench/out/dns-*.json.
 * Nothing is asserted: it prints and records numbers.
 *
 * Sluice runs those rows with its answer cache off (dns.cache_size: 0), so
 * that, like dnsmasq --cache-size=0, it forwards every query: the phase
 * measures the forwarding path. A second phase, Zipf, measures caching
 * forwarders on repeated lookups as real traffic has them: a query file of
 * ZIPF_QUERIES lookups drawn from ZIPF_NAMES of the zone's names with
 * probability proportional to 1/rank^s (s = 1.0 by default), and
 *
 *   zipf-sluice         `sluice daemon` with its answer cache (dns.cache_size default 10,000), through the redirect
 *   zipf-dnsmasq        dnsmasq --cache-size=10000 --nftset (a cached answer adds nothing to the set)
 *   zipf-unbound        unbound 1 thread as a caching forwarder to NSD (no set: unbound cannot fill one),
 *                       when an unbound binary is there (--unbound PATH, or unbound on PATH)
 *
 * each warmed by one pass over the file, then measured alternating
 * (serpentine) in ZIPF_ROUNDS rounds: latency at ZIPF_RATE q/s (3,000) and
 * throughput; ratios per round against zipf-dnsmasq.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startDnsServer, ZONE } from '../test/world/dns-server.js';
import { DNS_DEFAULTS } from '../src/policy/policy.js';
import { formatAddr } from '../src/net/ip.js';
import { controlCall } from '../src/runtime/control-server.js';
import { seededRandom, zipfRanks } from './lib/zipf.js';
import { provenance } from './lib/provenance.js';
import { HOSTS, ROOT, World, type RunResult } from '../test/world/world.js';
import { check, fmtInt, fmtRatio, installExitHandlers, median, numOption, run, quantile, stat, type Stat } from './lib/stats.js';

/** The daemon's main-thread health (src/runtime/loop-health.ts), as its status reports it. */
interface Health {
  windowSeconds: number;
  loopDelay: { p50: number; p99: number; max: number };
  gcMaxPause: number;
  gc: Record<string, { count: number; seconds: number }>;
}

/** The daemon's loop-delay window during the benchmark (`$SLUICE_LOOP_WINDOW_MS`): short enough to see each load phase. */
const HEALTH_WINDOW_MS = 5_000;

/**
 * Reads a daemon's health every window while load runs: the windows' loop
 * delays (the loop that answers DNS) and the GC pauses between start and
 * stop. Published so that a tail can be told apart from a stall of the
 * daemon's own making.
 */
function watchHealth(w: World) {
  // The daemon's `health` control call: unlike `status`, no table read on the loop being measured.
  // Made from this process over the control socket (a unix socket: no namespace to enter), not by
  // spawning a Node process every window: on two cores that spawn's ~100 ms of CPU showed up as a
  // 5-second beat of 50-70 ms stalls in the very answers being timed.
  const sock = join(w.stateDir, 'control.sock');
  const read = async () => (await controlCall(sock, 'health')) as Health | undefined;
  const windows: Health[] = [];
  let stopped = false;
  let first: Health | undefined;
  const loop = (async () => {
    first = await read();
    while (!stopped) {
      await sleep(HEALTH_WINDOW_MS);
      if (stopped) break;
      const h = await read();
      if (h) windows.push(h);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      const last = await read();
      const gc: Record<string, { count: number; seconds: number }> = {};
      for (const [kind, v] of Object.entries(last?.gc ?? {})) {
        const before = first?.gc[kind] ?? { count: 0, seconds: 0 };
        gc[kind] = { count: v.count - before.count, seconds: v.seconds - before.seconds };
      }
      const p99s = windows.map((h) => h.loopDelay.p99);
      return {
        windows: windows.length,
        windowSeconds: HEALTH_WINDOW_MS / 1000,
        loopDelayP99: { median: p99s.length ? median(p99s) : 0, worst: Math.max(0, ...p99s) },
        loopDelayMaxWorst: Math.max(0, ...windows.map((h) => h.loopDelay.max)),
        gcMaxPause: Math.max(0, ...windows.map((h) => h.gcMaxPause)),
        gc,
      };
    },
  };
}

type HealthSummary = Awaited<ReturnType<ReturnType<typeof watchHealth>['stop']>>;

function healthLine(h: HealthSummary): string {
  const gc = Object.entries(h.gc).filter(([, v]) => v.count > 0).map(([k, v]) => `${k} ${fmtInt(v.count)} (${(v.seconds * 1000).toFixed(0)} ms)`).join(', ');
  return `event-loop delay over ${h.windows} windows of ${h.windowSeconds} s: p99 median ${(h.loopDelayP99.median * 1000).toFixed(2)} ms, worst ${(h.loopDelayP99.worst * 1000).toFixed(2)} ms, longest stall ${(h.loopDelayMaxWorst * 1000).toFixed(1)} ms; GC pauses ${gc || 'none'}, longest ${(h.gcMaxPause * 1000).toFixed(1)} ms`;
}

const UPSTREAM = HOSTS.dns4;
/** Where the guard listens (the policy below leaves dns.port at its default). */
const GUARD_PORT: number = DNS_DEFAULTS.port;
const SUFFIX = `bench.${ZONE}`;
const TTL = 3600;
/** The client uid for every row but the root one: an ordinary unprivileged process. */
const CLIENT_UID = 65534;
/** Sluice's dynamic sets hold at most 65,536 elements (compile-ruleset); stay below so no write is refused. */
const MAX_NAMES = 65_000;
/** dnsperf's in-flight ceiling during the fixed-rate runs (enough for 0.4 s of backlog at 5,000 q/s). */
const RATE_OUTSTANDING = 2000;
/** Names start at 198.18.16.0, clear of the world's own hosts (198.18.0-3.x, 198.18.10.x, 198.18.20.x). */
const ADDR_BASE = (198 << 24) | (18 << 16) | (16 << 8);
/** Forwarder table and sets for dnsmasq (client namespace of its own World). */
const DM_TABLE = 'dnsbench';
/** Sluice's rule and its IPv4 set (objectNames.dnsSet). */
const SLUICE_RULE = 'bench';
const SLUICE_SET4 = `r_${SLUICE_RULE}_d4`;
/** Order within a round: the pairs compared most closely are neighbours. */
const RUN_ORDER = ['upstream', 'dnsmasq', 'sluice', 'sluice-direct', 'dnsmasq-cached', 'sluice-root'];

// ---------------------------------------------------------------- options

const USAGE = `Usage: npm run bench:dns [-- OPTIONS]

  --rounds N             rounds over all configurations (BENCH_ROUNDS, default 5)
  --seconds S            throughput sample length, seconds (BENCH_SECONDS, default 3)
  --latency-seconds S    fixed-rate sample length, seconds (BENCH_LATENCY_SECONDS, default 5)
  --rate QPS             the fixed rate for latency (BENCH_RATE, default 5000)
  --outstanding N        queries in flight during throughput samples (BENCH_OUTSTANDING, default 100)
  --clients N            dnsperf clients (UDP sockets) (BENCH_CLIENTS, default 8)
  --names N              distinct names in the zone and the query file (BENCH_NAMES, default 60000,
                         at most ${MAX_NAMES.toLocaleString('en-US')}: Sluice's learned-address sets hold 65,536)
  --timeout S            dnsperf query timeout, seconds (BENCH_TIMEOUT, default 2)
  --diagnose-seconds S   load per step of the diagnostic pass after the rounds (profile, strace);
                         0 skips it (BENCH_DIAGNOSE_SECONDS, default 4)
  --no-context           leave out the context rows (root client, guard direct, dnsmasq cached)
  --zipf-rounds N        rounds of the Zipf phase (caching forwarders); 0 skips it (BENCH_ZIPF_ROUNDS, default: --rounds)
  --zipf-names N         names the Zipf mix draws from (BENCH_ZIPF_NAMES, default 3000, at most --names)
  --zipf-s S             the Zipf exponent (BENCH_ZIPF_S, default 1.0)
  --zipf-queries N       lookups in the Zipf query file (BENCH_ZIPF_QUERIES, default 100000)
  --zipf-rate QPS        the fixed rate for the Zipf latency samples (BENCH_ZIPF_RATE, default 3000)
  --unbound PATH         the unbound binary for the Zipf phase (BENCH_UNBOUND; default: unbound on PATH, else no unbound row)
  -h, --help             this help`;

interface Options {
  rounds: number;
  seconds: number;
  latencySeconds: number;
  rate: number;
  outstanding: number;
  clients: number;
  names: number;
  timeout: number;
  diagnoseSeconds: number;
  context: boolean;
  zipfRounds: number;
  zipfNames: number;
  zipfS: number;
  zipfQueries: number;
  zipfRate: number;
  unbound: string | null;
}

function options(): Options {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      'latency-seconds': { type: 'string' },
      rate: { type: 'string' },
      outstanding: { type: 'string' },
      clients: { type: 'string' },
      names: { type: 'string' },
      timeout: { type: 'string' },
      'diagnose-seconds': { type: 'string' },
      'no-context': { type: 'boolean' },
      'zipf-rounds': { type: 'string' },
      'zipf-names': { type: 'string' },
      'zipf-s': { type: 'string' },
      'zipf-queries': { type: 'string' },
      'zipf-rate': { type: 'string' },
      unbound: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const rounds = numOption(values.rounds, 'BENCH_ROUNDS', 5, { min: 1, max: 1000, int: true });
  const names = numOption(values.names, 'BENCH_NAMES', 60_000, { min: 100, max: MAX_NAMES, int: true });
  const onPath = spawnSync('sh', ['-c', 'command -v unbound'], { encoding: 'utf8' });
  return {
    rounds,
    seconds: numOption(values.seconds, 'BENCH_SECONDS', 3, { min: 1, max: 600, int: true }),
    latencySeconds: numOption(values['latency-seconds'], 'BENCH_LATENCY_SECONDS', 5, { min: 1, max: 600, int: true }),
    rate: numOption(values.rate, 'BENCH_RATE', 5000, { min: 1, max: 1_000_000, int: true }),
    outstanding: numOption(values.outstanding, 'BENCH_OUTSTANDING', 100, { min: 1, max: 65_535, int: true }),
    clients: numOption(values.clients, 'BENCH_CLIENTS', 8, { min: 1, max: 256, int: true }),
    names,
    timeout: numOption(values.timeout, 'BENCH_TIMEOUT', 2, { min: 1, max: 60, int: true }),
    diagnoseSeconds: numOption(values['diagnose-seconds'], 'BENCH_DIAGNOSE_SECONDS', 4, { min: 0, max: 600, int: true }),
    context: !values['no-context'] && process.env.BENCH_NO_CONTEXT !== '1',
    zipfRounds: numOption(values['zipf-rounds'], 'BENCH_ZIPF_ROUNDS', rounds, { min: 0, max: 1000, int: true }),
    zipfNames: numOption(values['zipf-names'], 'BENCH_ZIPF_NAMES', Math.min(3000, names), { min: 10, max: names, int: true }),
    zipfS: numOption(values['zipf-s'], 'BENCH_ZIPF_S', 1.0, { min: 0, max: 5, int: false }),
    zipfQueries: numOption(values['zipf-queries'], 'BENCH_ZIPF_QUERIES', 100_000, { min: 100, max: 10_000_000, int: true }),
    zipfRate: numOption(values['zipf-rate'], 'BENCH_ZIPF_RATE', 3000, { min: 1, max: 1_000_000, int: true }),
    unbound: values.unbound ?? process.env.BENCH_UNBOUND ?? (onPath.status === 0 ? onPath.stdout.trim() : null),
  };
}

// ---------------------------------------------------------------- types

/** What dnsperf printed, parsed. */
interface Perf {
  sent: number;
  completed: number;
  lost: number;
  runSeconds: number;
  qps: number;
  avgLatencyMs: number;
  rcodes: Record<string, number>;
}

interface ThroughputSample extends Perf {
  round: number;
  /** CPU time (user + system) of the forwarder process per completed query, microseconds. */
  cpuUsPerQuery: number | null;
}

interface LatencySample extends Perf {
  round: number;
  /** Percentiles over every query sent, a lost query counting as slower than every answer (Infinity). */
  lat_ms: { p50: number; p90: number; p99: number; p999: number; max: number };
}

interface Config {
  id: string;
  /** (a), (b), (c) or context. */
  role: string;
  label: string;
  description: string;
  world: World;
  server: string;
  port: number;
  uid: number;
  /** Measured at the fixed rate too (the root row cannot sustain it; see the notes). */
  latency: boolean;
  /** The forwarder's pid, for CPU accounting. */
  pid?: () => number | undefined;
  tput: ThroughputSample[];
  lat: LatencySample[];
  /** Every latency of every fixed-rate sample (ms; lost = Infinity), for pooled percentiles. */
  pooled: number[];
  /** The query file and fixed rate, when not the main phase's (the Zipf phase). */
  file?: string;
  rate?: number;
}

// ---------------------------------------------------------------- helpers

installExitHandlers();

const ipv4 = (n: number): string => formatAddr(4, BigInt(n));

const nameOf = (i: number) => `h${i}.${SUFFIX}`;
const addrOf = (i: number) => ipv4(ADDR_BASE + i);

function benchZone(n: number): string {
  const lines = [`$ORIGIN ${ZONE}.`, `$TTL ${TTL}`, `@ IN SOA ns.${ZONE}. host.${ZONE}. 1 3600 600 86400 60`, '@ IN NS ns', `ns IN A ${UPSTREAM}`];
  for (let i = 0; i < n; i++) lines.push(`h${i}.bench ${TTL} IN A ${addrOf(i)}`);
  return `${lines.join('\n')}\n`;
}

/** Every name once, in a fixed pseudo-random order (the same file for every configuration). */
function queryFile(n: number): string {
  const order = Array.from({ length: n }, (_, i) => i);
  let seed = 0x5c1ce;
  for (let i = n - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  return `${order.map((i) => `${nameOf(i)} A`).join('\n')}\n`;
}

/** Sluice's policy: with the answer cache off (every query forwarded, as dnsmasq --cache-size=0) or at its default. */
function sluicePolicy(cache: 'off' | 'default' = 'off'): string {
  return `# bench/dns.ts: one domain rule; every *.${SUFFIX} answer is opened in the kernel
version: 1
mode: enforce
dns:
  upstreams: [${UPSTREAM}]
${cache === 'off' ? '  cache_size: 0\n' : ''}rules:
  - name: ${SLUICE_RULE}
    to: ["*.${SUFFIX}"]
    ports: [443/tcp]
`;
}

/** dnsmasq's side: the sets it fills and an egress ruleset of the same shape as Sluice's (policy drop, conntrack, the set). */
function dnsmasqRuleset(): string {
  const set = (name: string) => `  set ${name} { type ipv4_addr; flags timeout; timeout ${TTL + 30}s; size 262144; }`;
  return `table inet ${DM_TABLE} {
${set('allowed4')}
${set('cached4')}
  chain output {
    type filter hook output priority filter; policy drop;
    ct state established,related accept
    oif "lo" accept
    ip daddr ${UPSTREAM} meta l4proto { tcp, udp } th dport 53 accept
    ip daddr @allowed4 tcp dport 443 accept
    ip daddr @cached4 tcp dport 443 accept
  }
}
`;
}

/**
 * The Zipf query file: `queries` lookups of `n` names h<i>, the name of
 * rank r (1-based) drawn with probability proportional to 1/r^s; ranks are
 * spread over the names by a fixed shuffle, and the draws by a fixed seed
 * (bench/lib/zipf.ts, shared with bench:guard-alloc).
 */
function zipfFile(n: number, s: number, queries: number): string {
  const next = seededRandom(0x2b1f);
  const names = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [names[i], names[j]] = [names[j] as number, names[i] as number];
  }
  return `${zipfRanks(n, s, queries, next)
    .map((r) => `${nameOf(names[r] as number)} A`)
    .join('\n')}\n`;
}

/** unbound as a caching forwarder to the zone's NSD, one thread, on 127.0.0.1:PORT (its files in DIR). */
function unboundConf(dir: string, port: number): string {
  return [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    '  num-threads: 1',
    '  do-ip6: no',
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    `  pidfile: "${join(dir, 'unbound.pid')}"`,
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  module-config: "iterator"',
    '  do-not-query-localhost: no',
    '  access-control: 127.0.0.0/8 allow',
    '  msg-cache-size: 16m',
    '  rrset-cache-size: 32m',
    '  prefetch: no',
    // unbound answers the special-use name test. (RFC 6761) itself, NXDOMAIN, unless told not to: the zone is sluice.test.
    '  local-zone: "test." nodefault',
    'remote-control:',
    '  control-enable: no',
    'forward-zone:',
    '  name: "."',
    `  forward-addr: ${UPSTREAM}`,
    '',
  ].join('\n');
}

function dnsmasqArgv(port: number, cacheSize: number, set: string): string[] {
  return [
    'dnsmasq',
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--pid-file=',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    `--server=${UPSTREAM}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    `--port=${port}`,
    `--cache-size=${cacheSize}`,
    // Default 150; raised to Sluice's own ceiling on queries in flight (MAX_INFLIGHT, src/dns/guard-servers.ts), so neither drops first by configuration.
    '--dns-forward-max=4096',
    `--nftset=/${SUFFIX}/4#inet#${DM_TABLE}#${set}`,
    '--log-facility=-',
  ];
}







const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'lost' : ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
const fmtStatMs = (s: Stat) => (s.n ? `${fmtMs(s.median)} (${fmtMs(s.ciLow)}-${fmtMs(s.ciHigh)})` : '-');

/** Parses dnsperf's statistics block. */
function parsePerf(out: string): Perf {
  const grab = (re: RegExp): number => {
    const m = re.exec(out);
    if (!m) throw new Error(`dnsperf printed no ${re.source}:\n${out.slice(-1500)}`);
    return Number(m[1]);
  };
  const rcodes: Record<string, number> = {};
  const line = /Response codes:\s*([^\n]*)/.exec(out)?.[1] ?? '';
  for (const m of line.matchAll(/([A-Z]+) (\d+) \(/g)) rcodes[m[1] as string] = Number(m[2]);
  return {
    sent: grab(/Queries sent:\s+(\d+)/),
    completed: grab(/Queries completed:\s+(\d+)/),
    lost: grab(/Queries lost:\s+(\d+)/),
    runSeconds: grab(/Run time \(s\):\s+([0-9.]+)/),
    qps: grab(/Queries per second:\s+([0-9.]+)/),
    avgLatencyMs: grab(/Average Latency \(s\):\s+([0-9.]+)/) * 1000,
    rcodes,
  };
}

/** Per-query latencies (ms) from dnsperf -v, in the order the responses came; a lost query ("T") is Infinity. */
function parseVerbose(out: string): number[] {
  const lat: number[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('> ')) continue;
    const parts = line.split(' ');
    if (parts[1] === 'T' || parts[1] === 'I') lat.push(Infinity);
    else lat.push(Number(parts[parts.length - 1]) * 1000);
  }
  return lat;
}

/** utime + stime of a process (all its threads), in ms; null when gone. */
function cpuMs(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const tck = 100; // USER_HZ on Linux
    return ((Number(f[11]) + Number(f[12])) * 1000) / tck;
  } catch {
    return null;
  }
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

// ---------------------------------------------------------------- profile summary

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  self: { fn: string; ms: number; pct: number }[];
  buckets: { what: string; ms: number; pct: number }[];
  stretches: { what: string; count: number; medianMs: number; maxMs: number }[];
}

/** Where the daemon's CPU went: top self time, inclusive time of the guard's parts, and how long single calls held the event loop. */
function summarizeProfile(file: string): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const where = (n: ProfileNode) => {
    const url = n.callFrame.url;
    const short = url.startsWith('file://') ? relative(join(ROOT, 'dist'), url.slice(7)) : url;
    return `${n.callFrame.functionName || '(anonymous)'} ${short ? `${short}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
  };
  const stackOf = (id: number): ProfileNode[] => {
    const out: ProfileNode[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (n) out.push(n);
    }
    return out;
  };
  const is = (fn: string, urlPart: string) => (n: ProfileNode) => n.callFrame.functionName === fn && n.callFrame.url.includes(urlPart);
  const buckets: { what: string; match: (n: ProfileNode) => boolean }[] = [
    { what: 'hand-off of query attribution to its worker thread (AttributionClient)', match: (n) => n.callFrame.url.includes('dns/attribution-client.js') },
    { what: 'learned-state save (LearnedState.saveAsync, every 5 minutes, in slices)', match: is('saveAsync', 'dns/learned-state.js') },
    { what: 'recent-queries log (GuardComponent.record)', match: is('record', 'dns/guard-component.js') },
    { what: 'kernel set writes (SetWriter.flush -> netlink)', match: is('flush', 'dns/set-writer.js') },
    { what: 'guard decision (DnsGuard.handle, sync part)', match: is('handle', 'dns/dns-guard.js') },
    { what: 'upstream client (UpstreamClient)', match: (n) => n.callFrame.url.includes('dns/upstream.js') },
    { what: 'UDP sends (UdpBatchSocket.flush: sendmmsg, including the kernel path of the packet)', match: is('flush', 'net/udp-batch.js') },
    { what: 'garbage collector', match: (n) => n.callFrame.functionName === '(garbage collector)' },
  ];
  let total = 0;
  let idle = 0;
  const self = new Map<string, number>();
  const inBucket = buckets.map(() => 0);
  const stretchDefs = [
    { what: 'LearnedState.saveAsync', match: is('saveAsync', 'dns/learned-state.js') },
    { what: 'SetWriter.flush', match: is('flush', 'dns/set-writer.js') },
    { what: '(garbage collector)', match: (n: ProfileNode) => n.callFrame.functionName === '(garbage collector)' },
  ];
  const runs = stretchDefs.map(() => [] as number[]);
  const open = stretchDefs.map(() => 0);
  p.samples.forEach((id, i) => {
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000; // a sample's time runs until the next one
    total += dt;
    const node = byId.get(id);
    if (!node) return;
    if (node.callFrame.functionName === '(idle)') idle += dt;
    const k = where(node);
    self.set(k, (self.get(k) ?? 0) + dt);
    const stack = stackOf(id);
    buckets.forEach((b, j) => {
      if (stack.some(b.match)) inBucket[j] = (inBucket[j] ?? 0) + dt;
    });
    stretchDefs.forEach((d, j) => {
      if (stack.some(d.match)) open[j] = (open[j] ?? 0) + dt;
      else if ((open[j] ?? 0) > 0) {
        runs[j]?.push(open[j] as number);
        open[j] = 0;
      }
    });
  });
  stretchDefs.forEach((_, j) => {
    if ((open[j] ?? 0) > 0) runs[j]?.push(open[j] as number);
  });
  const busy = total - idle;
  const pct = (ms: number) => (busy > 0 ? (100 * ms) / busy : 0);
  return {
    file,
    totalMs: total,
    busyMs: busy,
    self: [...self.entries()]
      .filter(([k]) => !k.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([fn, ms]) => ({ fn, ms, pct: pct(ms) })),
    buckets: buckets.map((b, j) => ({ what: b.what, ms: inBucket[j] ?? 0, pct: pct(inBucket[j] ?? 0) })),
    stretches: stretchDefs.map((d, j) => {
      const xs = runs[j] ?? [];
      return { what: d.what, count: xs.length, medianMs: median(xs), maxMs: xs.length ? Math.max(...xs) : 0 };
    }),
  };
}

// ---------------------------------------------------------------- strace

interface SyscallCount {
  syscall: string;
  calls: number;
  errors: number;
  seconds: number;
}

/** `strace -c -f -p PID` around a load; returns the summary table. */
async function straceAround<T>(pid: number, dir: string, tag: string, load: () => Promise<T>): Promise<{ value: T; counts: SyscallCount[] }> {
  const file = join(dir, `strace-${tag}.txt`);
  const st = spawn('strace', ['-c', '-f', '-o', file, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  st.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  await sleep(500);
  if (st.exitCode !== null) throw new Error(`strace -p ${pid} exited: ${err}`);
  let value: T;
  try {
    value = await load();
  } finally {
    st.kill('SIGINT');
    await waitExit(st, 10_000);
  }
  const counts: SyscallCount[] = [];
  for (const line of (existsSync(file) ? readFileSync(file, 'utf8') : '').split('\n')) {
    // % time     seconds  usecs/call     calls    errors syscall
    const m = /^\s*[0-9.]+\s+([0-9.]+)\s+\d+\s+(\d+)\s+(\d*)\s*([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[4] !== 'total') counts.push({ syscall: m[4] as string, calls: Number(m[2]), errors: Number(m[3] || 0), seconds: Number(m[1]) });
  }
  return { value, counts: counts.sort((a, b) => b.calls - a.calls) };
}

// ---------------------------------------------------------------- the benchmark

async function main(): Promise<void> {
  const opts = options();
  const started = new Date();
  const prov = provenance('npm run bench:dns');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  for (const tool of ['dnsperf', 'dnsmasq', 'nsd']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (scripts/setup.sh installs it: make test, or run scripts/setup.sh)`);
  }
  const dnsmasqVersion = /Dnsmasq version (\S+)/.exec(spawnSync('dnsmasq', ['--version'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? '?';
  const dp = spawnSync('dnsperf', ['-h'], { encoding: 'utf8' });
  const dnsperfVersion = /Version (\S+)/.exec(`${dp.stdout ?? ''}${dp.stderr ?? ''}`)?.[1] ?? '?';
  const nsdVersion = /NSD version (\S+)/.exec(spawnSync('nsd', ['-v'], { encoding: 'utf8' }).stderr ?? '')?.[1] ?? '?';

  // Files dnsperf reads as uid 65534: a directory everyone may read.
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-dns-'));
  chmodSync(tmp, 0o755);
  const qfile = join(tmp, 'queries.txt');
  writeFileSync(qfile, queryFile(opts.names), { mode: 0o644 });
  const onefile = join(tmp, 'one.txt');
  writeFileSync(onefile, `${nameOf(0)} A\n`, { mode: 0o644 });
  const zone = benchZone(opts.names);

  const worlds: World[] = [];
  let shuttingDown = false;
  try {
    say(`Sluice DNS benchmark, ${started.toISOString()}`);
    say(`  kernel ${release()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    say(`  dnsperf ${dnsperfVersion}, dnsmasq ${dnsmasqVersion}, NSD ${nsdVersion} (Debian packages)`);
    say(`  zone: ${fmtInt(opts.names)} names h<i>.${SUFFIX}, one A record each (distinct addresses from ${addrOf(0)}), TTL ${TTL}; NSD on ${UPSTREAM} in each world namespace`);
    say(`  queries: one file, every name once in a fixed shuffled order, type A; dnsperf restarts it at the top each sample; ${opts.clients} UDP clients`);
    say(`  throughput: ${opts.outstanding} queries in flight for ${opts.seconds} s; latency: dnsperf -Q ${opts.rate} -v for ${opts.latencySeconds} s (every response's latency)`);
    say(`  ${opts.rounds} rounds, serpentine order; dnsperf runs as uid ${CLIENT_UID} unless the row says root`);
    say();

    // ------------------------------------------------------------ setup
    say('Setup (one World per forwarder, each with its own NSD serving the same zone)');
    const newWorld = async (): Promise<World> => {
      const w = await World.create({ servers: false });
      worlds.push(w);
      await startDnsServer(w, zone);
      return w;
    };
    const ready = async (w: World, server: string, port: number, what: string): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        const r = await w.exec(['dnsperf', '-s', server, '-p', String(port), '-d', onefile, '-n', '1', '-t', '1']);
        if (/Queries completed:\s+1 /.test(r.stdout)) return;
        await sleep(100);
      }
      throw new Error(`${what} does not answer on ${server}:${port}`);
    };

    const wA = await newWorld();
    await ready(wA, UPSTREAM, 53, 'NSD');
    say(`  (a) world ${wA.id}: NSD on ${UPSTREAM}, no ruleset in the client namespace`);

    const wB = await newWorld();
    await wB.nft(['-f', '-'], dnsmasqRuleset());
    const dmSpawn = (port: number, cacheSize: number, set: string): ChildProcess => {
      const child = wB.spawnIn(wB.client, dnsmasqArgv(port, cacheSize, set));
      let err = '';
      child.stderr?.on('data', (d: Buffer) => {
        err = (err + d.toString()).slice(-4000);
      });
      child.on('exit', (code) => {
        if (!shuttingDown) say(`  WARNING: dnsmasq on port ${port} exited (${code}): ${err.trim()}`);
      });
      return child;
    };
    const dm = dmSpawn(53, 0, 'allowed4');
    await ready(wB, '127.0.0.1', 53, 'dnsmasq');
    say(`  (b) world ${wB.id}: ${dnsmasqArgv(53, 0, 'allowed4').join(' ')}`);
    say(`      table inet ${DM_TABLE}: sets allowed4/cached4 (ipv4_addr, timeout ${TTL + 30}s), output chain policy drop: ct established,related, oif lo, DNS to ${UPSTREAM}, @set tcp/443`);
    let dmCached: ChildProcess | undefined;
    if (opts.context) {
      dmCached = dmSpawn(5353, 100_000, 'cached4');
      await ready(wB, '127.0.0.1', 5353, 'dnsmasq (cached)');
      say(`      context: the same with --cache-size=100000 --port=5353 --nftset=...#cached4`);
    }

    const wC = await newWorld();
    const policyFile = wC.policy(sluicePolicy(), 'bench-dns.yaml');
    const startDaemon = async (extraNode: string[] = []): Promise<ChildProcess> =>
      wC.spawnReady(wC.client, [process.execPath, ...extraNode, join(ROOT, 'bin/sluice'), 'daemon', policyFile, '--metrics', 'off'], { env: wC.env({ SLUICE_LOOP_WINDOW_MS: String(HEALTH_WINDOW_MS) }), readyText: 'running', timeoutMs: 30_000 });
    let daemon = await startDaemon();
    await ready(wC, UPSTREAM, 53, 'the Sluice guard (through the redirect)');
    say(`  (c) world ${wC.id}: sluice daemon ${policyFile} --metrics off (enforce; rule "${SLUICE_RULE}": to ["*.${SUFFIX}"] ports [443/tcp]; dns.upstreams [${UPSTREAM}])`);

    const status = async (): Promise<Record<string, unknown>> => (await wC.control('status')) as Record<string, unknown>;
    type GuardStatus = {
      guard: { queries: number; allowed: number; blocked: number; upstreamFailures: number; kernelFailures: number };
      kernel: { transactions: number; elements: number; failures: number };
      attribution: { lookups: number; found: number; overBudget: number; errors: number };
      servers: { udpDropped: number };
      upstream: { timeouts: number; badReplies: number; failures: number; tcpFallbacks: number };
    };
    const guardStatus = async () => (await status() as { components: { 'dns-guard': GuardStatus } }).components['dns-guard'];

    const configs: Config[] = [];
    const add = (c: Omit<Config, 'tput' | 'lat' | 'pooled'>) => configs.push({ ...c, tput: [], lat: [], pooled: [] });
    add({ id: 'upstream', role: '(a)', label: 'upstream (NSD) direct', description: `dnsperf -> NSD ${UPSTREAM}:53, no forwarder, no ruleset`, world: wA, server: UPSTREAM, port: 53, uid: CLIENT_UID, latency: true });
    add({
      id: 'dnsmasq',
      role: '(b)',
      label: 'dnsmasq --nftset, no cache',
      description: `dnsperf -> dnsmasq 127.0.0.1:53 --cache-size=0 --nftset -> NSD; every answer added to an nft set`,
      world: wB,
      server: '127.0.0.1',
      port: 53,
      uid: CLIENT_UID,
      latency: true,
      pid: () => dm.pid,
    });
    add({
      id: 'sluice',
      role: '(c)',
      label: 'sluice guard',
      description: `dnsperf -> ${UPSTREAM}:53, redirected by the kernel to the guard on 127.0.0.1:${GUARD_PORT} -> NSD; every answer written to ${SLUICE_SET4} before it leaves`,
      world: wC,
      server: UPSTREAM,
      port: 53,
      uid: CLIENT_UID,
      latency: true,
      pid: () => daemon.pid,
    });
    if (opts.context) {
      add({
        id: 'sluice-direct',
        role: 'context',
        label: `sluice guard, direct :${GUARD_PORT}`,
        description: `dnsperf -> 127.0.0.1:${GUARD_PORT} (the guard itself, no NAT redirect)`,
        world: wC,
        server: '127.0.0.1',
        port: GUARD_PORT,
        uid: CLIENT_UID,
        latency: true,
        pid: () => daemon.pid,
      });
      add({
        id: 'dnsmasq-cached',
        role: 'context',
        label: 'dnsmasq --nftset, cached',
        description: 'dnsmasq --cache-size=100000, warm: answers come from its cache and add nothing to the set',
        world: wB,
        server: '127.0.0.1',
        port: 5353,
        uid: CLIENT_UID,
        latency: true,
        pid: () => dmCached?.pid,
      });
      add({
        id: 'sluice-root',
        role: 'context',
        label: 'sluice guard, client root',
        description: `as (c), dnsperf running as root (uid 0): the guard's query attribution then scans every root process's /proc/PID/fd`,
        world: wC,
        server: UPSTREAM,
        port: 53,
        uid: 0,
        latency: false,
        pid: () => daemon.pid,
      });
    }
    say();

    const dnsperf = async (c: Config, args: string[], limitS: number): Promise<RunResult> => {
      const argv = ['dnsperf', '-s', c.server, '-p', String(c.port), '-d', c.file ?? qfile, '-c', String(opts.clients), '-t', String(opts.timeout), ...args];
      return check(await c.world.exec(argv, { uid: c.uid, timeoutMs: (limitS + opts.timeout + 60) * 1000 }), `dnsperf (${c.label})`);
    };
    const throughput = async (c: Config, seconds: number): Promise<Perf & { cpuUsPerQuery: number | null }> => {
      const pid = c.pid?.();
      const cpu0 = cpuMs(pid);
      const r = await dnsperf(c, ['-l', String(seconds), '-q', String(opts.outstanding)], seconds);
      const cpu1 = cpuMs(pid);
      const perf = parsePerf(r.stdout);
      return { ...perf, cpuUsPerQuery: cpu0 !== null && cpu1 !== null && perf.completed > 0 ? ((cpu1 - cpu0) * 1000) / perf.completed : null };
    };
    const fixedRate = async (c: Config, seconds: number): Promise<{ perf: Perf; lat: number[] }> => {
      const r = await dnsperf(c, ['-l', String(seconds), '-Q', String(c.rate ?? opts.rate), '-q', String(RATE_OUTSTANDING), '-v'], seconds);
      const perf = parsePerf(r.stdout);
      const lat = parseVerbose(r.stdout);
      // Queries dnsperf sent but printed no line for (interrupted at the end) count as lost too.
      for (let i = lat.length; i < perf.sent; i++) lat.push(Infinity);
      return { perf, lat };
    };
    /**
     * One round: every fixed-rate sample first, then every throughput sample, so that a latency
     * sample never follows its own forwarder's all-out throughput sample. Returns the round's line.
     */
    const measureRound = async (latencyOrder: Config[], order: Config[], round: number): Promise<string> => {
      const latParts = new Map<string, string>();
      for (const c of latencyOrder) {
        const { perf, lat } = await fixedRate(c, opts.latencySeconds);
        const pc = percentiles(lat);
        c.lat.push({ ...perf, round, lat_ms: pc });
        for (const x of lat) c.pooled.push(x);
        latParts.set(c.id, ` | ${fmtMs(pc.p99)}${perf.lost ? ` (${perf.lost} lost)` : ''}`);
        await sleep(500);
      }
      const parts: string[] = [];
      for (const c of order) {
        const t = await throughput(c, opts.seconds);
        c.tput.push({ ...t, round });
        parts.push(`${c.id} ${fmtInt(t.qps)}${t.lost ? ` (${t.lost} lost)` : ''}${latParts.get(c.id) ?? ''}`);
        await sleep(500);
      }
      return parts.join(', ');
    };
    const percentiles = (lat: number[]) => {
      const s = [...lat].sort((a, b) => a - b);
      return { p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), p999: quantile(s, 0.999), max: s[s.length - 1] ?? NaN };
    };

    // ------------------------------------------------------------ warm-up and checks
    say('Warm-up: one pass over the whole query file per forwarder (JIT, sockets; every address lands in the sets), then checks');
    for (const c of configs.filter((x) => ['upstream', 'dnsmasq', 'sluice', 'dnsmasq-cached'].includes(x.id))) {
      const r = await dnsperf(c, ['-n', '1', '-q', String(opts.outstanding)], 600);
      const p = parsePerf(r.stdout);
      say(`  ${c.label.padEnd(30)} ${fmtInt(p.completed)}/${fmtInt(p.sent)} answered, ${fmtInt(p.qps)} q/s, rcodes ${JSON.stringify(p.rcodes)}`);
    }
    const countElems = async (w: World, family: string, table: string, set: string): Promise<number> => {
      const r = check(await w.exec(['nft', 'list', 'set', family, table, set]), `nft list set ${table} ${set}`);
      return (r.stdout.match(/ expires /g) ?? []).length;
    };
    const dmElems = await countElems(wB, 'inet', DM_TABLE, 'allowed4');
    const slElems = await countElems(wC, 'inet', 'sluice', SLUICE_SET4);
    say(`  elements in dnsmasq's set allowed4: ${fmtInt(dmElems)}; in Sluice's ${SLUICE_SET4}: ${fmtInt(slElems)} (of ${fmtInt(opts.names)} names)`);
    if (dmElems < opts.names * 0.99 || slElems < opts.names * 0.99) throw new Error('a forwarder did not put the answers into its set: the comparison would not be fair');
    // The addresses answered are the zone's: check one name everywhere (dnsperf does not look at answers).
    const dnsq = join(ROOT, 'dist/test/world/dnsq.js');
    for (const [w, server] of [[wA, UPSTREAM], [wB, '127.0.0.1'], [wC, UPSTREAM]] as const) {
      const r = check(await w.exec([process.execPath, dnsq, '--server', server, '--name', nameOf(7)], { uid: CLIENT_UID }), 'dnsq');
      const a = JSON.parse(r.stdout.trim()) as { answers?: string[] };
      if (a.answers?.[0] !== addrOf(7)) throw new Error(`${server} in ${w.id} answered ${JSON.stringify(a)} for ${nameOf(7)}, expected ${addrOf(7)}`);
    }
    say(`  ${nameOf(7)} -> ${addrOf(7)} from all three (checked with test/world/dnsq.js)`);
    const g0 = await guardStatus();
    say(
      `  guard so far: ${fmtInt(g0.guard.allowed)} allowed, ${fmtInt(g0.kernel.elements)} set elements written in ${fmtInt(g0.kernel.transactions)} transactions, ${g0.kernel.failures} failed, ${g0.guard.upstreamFailures} upstream failures`,
    );
    say();

    // ------------------------------------------------------------ rounds
    say(`Rounds (per round: every fixed-rate sample, then every throughput sample): throughput q/s (in flight ${opts.outstanding}) | p99 ms at ${fmtInt(opts.rate)} q/s`);
    const statusBefore = await guardStatus();
    const healthWatch = watchHealth(wC);
    for (let round = 0; round < opts.rounds; round++) {
      const forward = RUN_ORDER.map((id) => configs.find((c) => c.id === id)).filter((c): c is Config => c !== undefined);
      const order = round % 2 === 0 ? forward : [...forward].reverse();
      say(`  ${String(round + 1).padStart(2)}/${opts.rounds}: ${await measureRound(order.filter((x) => x.latency), order, round)}`);
    }
    const statusAfter = await guardStatus();
    const health = await healthWatch.stop();
    // The tamper watchdog shares the guard's event loop: how often it read every element (lost notifications, touched sets).
    const tamper = ((await status()) as { components?: Record<string, Record<string, unknown>> }).components?.['tamper-watch'];
    if (tamper) say(`  tamper watchdog over the rounds: ${tamper.checks} checks, ${tamper.elementReads} of them reading every element; ${tamper.lost} notification losses; ${tamper.ownTransactions} own transactions`);
    const finished = new Date();
    say();

    // ------------------------------------------------------------ summary
    const byId = (id: string) => configs.find((c) => c.id === id);
    const b = byId('dnsmasq') as Config;
    const a = byId('upstream') as Config;
    const perRound = <T extends { round: number }>(xs: T[], round: number) => xs.find((s) => s.round === round);
    const ratioTo = (c: Config, ref: Config, pick: (s: ThroughputSample) => number) => {
      const out: number[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        const x = perRound(c.tput, r);
        const y = perRound(ref.tput, r);
        if (x && y && pick(y) > 0) out.push(pick(x) / pick(y));
      }
      return stat(out);
    };
    const latRatioTo = (c: Config, ref: Config, pick: (s: LatencySample) => number) => {
      const out: number[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        const x = perRound(c.lat, r);
        const y = perRound(ref.lat, r);
        if (x && y && pick(y) > 0) out.push(pick(x) / pick(y));
      }
      return stat(out);
    };
    const latDiff = (c: Config, ref: Config, pick: (s: LatencySample) => number) => {
      const out: number[] = [];
      for (let r = 0; r < opts.rounds; r++) {
        const x = perRound(c.lat, r);
        const y = perRound(ref.lat, r);
        if (x && y) out.push(pick(x) - pick(y));
      }
      return stat(out);
    };
    const summary = configs.map((c) => {
      const pooled = c.latency ? percentiles(c.pooled) : null;
      return {
        id: c.id,
        role: c.role,
        label: c.label,
        description: c.description,
        clientUid: c.uid,
        target: `${c.server}:${c.port}`,
        qps: stat(c.tput.map((s) => s.qps)),
        tputLatencyMs: stat(c.tput.map((s) => s.avgLatencyMs)),
        cpuUsPerQuery: stat(c.tput.map((s) => s.cpuUsPerQuery).filter((x): x is number => x !== null)),
        lostThroughput: c.tput.reduce((n, s) => n + s.lost, 0),
        sentThroughput: c.tput.reduce((n, s) => n + s.sent, 0),
        fixedRate: c.latency
          ? {
              achievedQps: stat(c.lat.map((s) => s.qps)),
              p50: stat(c.lat.map((s) => s.lat_ms.p50)),
              p90: stat(c.lat.map((s) => s.lat_ms.p90)),
              p99: stat(c.lat.map((s) => s.lat_ms.p99)),
              p999: stat(c.lat.map((s) => s.lat_ms.p999)),
              max: stat(c.lat.map((s) => s.lat_ms.max)),
              pooled,
              lost: c.lat.reduce((n, s) => n + s.lost, 0),
              sent: c.lat.reduce((n, s) => n + s.sent, 0),
            }
          : null,
        rcodes: [...c.tput, ...c.lat].reduce<Record<string, number>>((acc, s) => {
          for (const [k, v] of Object.entries(s.rcodes)) acc[k] = (acc[k] ?? 0) + v;
          return acc;
        }, {}),
        vsDnsmasq: {
          qps: ratioTo(c, b, (s) => s.qps),
          p50: c.latency ? latRatioTo(c, b, (s) => s.lat_ms.p50) : null,
          p99: c.latency ? latRatioTo(c, b, (s) => s.lat_ms.p99) : null,
        },
        addedOverUpstreamMs: c.latency ? { p50: latDiff(c, a, (s) => s.lat_ms.p50), p99: latDiff(c, a, (s) => s.lat_ms.p99) } : null,
      };
    });

    const W = 30;
    say(`Results: median over ${opts.rounds} rounds (95% confidence interval of the median)`);
    say(`  ${'configuration'.padEnd(W + 9)}${'q/s (max)'.padStart(10)}${'q/s vs (b)'.padStart(24)}${'CPU us/q'.padStart(10)}`);
    for (const s of summary) {
      say(`  ${`${s.role.padEnd(8)} ${s.label}`.padEnd(W + 9)}${fmtInt(s.qps.median).padStart(10)}${fmtRatio(s.vsDnsmasq.qps).padStart(24)}${(s.cpuUsPerQuery.n ? s.cpuUsPerQuery.median.toFixed(1) : '-').padStart(10)}`);
    }
    say(`  q/s (max): dnsperf's rate with ${opts.outstanding} queries in flight; CPU us/q: the forwarder process's user+system time per answered query (kernel work done in softirq on other CPUs is not in it).`);
    say();
    say(`  at a fixed ${fmtInt(opts.rate)} q/s, latency in ms          ${'p50'.padStart(16)}${'p99'.padStart(18)}${'p99.9'.padStart(10)}${'p99 vs (b)'.padStart(22)}${'added p99 vs (a)'.padStart(24)}`);
    for (const s of summary) {
      if (!s.fixedRate) {
        say(`  ${`${s.role.padEnd(8)} ${s.label}`.padEnd(W + 9)}   throughput only (this configuration is not run at a fixed rate)`);
        continue;
      }
      const f = s.fixedRate;
      say(
        `  ${`${s.role.padEnd(8)} ${s.label}`.padEnd(W + 9)}${fmtStatMs(f.p50).padStart(16)}${fmtStatMs(f.p99).padStart(18)}${fmtMs(f.p999.median).padStart(10)}${fmtRatio(s.vsDnsmasq.p99 as Stat).padStart(22)}${(s.addedOverUpstreamMs ? fmtStatMs(s.addedOverUpstreamMs.p99) : '-').padStart(24)}`,
      );
    }
    say(`  pooled over all rounds (every query of every fixed-rate sample; lost queries count as slowest):`);
    for (const s of summary) {
      if (!s.fixedRate?.pooled) continue;
      const p = s.fixedRate.pooled;
      say(
        `    ${s.label.padEnd(W)} p50 ${fmtMs(p.p50)}, p90 ${fmtMs(p.p90)}, p99 ${fmtMs(p.p99)}, p99.9 ${fmtMs(p.p999)}, max ${fmtMs(p.max)}; achieved ${fmtInt(s.fixedRate.achievedQps.median)} q/s; lost ${fmtInt(s.fixedRate.lost)} of ${fmtInt(s.fixedRate.sent)}`,
      );
    }
    say(`  "lost" in a percentile: over that share of the sample's queries got no answer within ${opts.timeout} s (dnsperf -t), so the percentile is unbounded.`);
    say(`  added p99 = p99(row) - p99(a) in the same round. Response codes over all samples: ${summary.map((s) => `${s.id} ${JSON.stringify(s.rcodes)}`).join('; ')}`);
    say();

    // Fairness: the guard writes an element only when it extends the element's life by more than a second; with
    // every name repeating more than a second apart, every answer must have been written, as dnsmasq does.
    const dAllowed = statusAfter.guard.allowed - statusBefore.guard.allowed;
    const dElems = statusAfter.kernel.elements - statusBefore.kernel.elements;
    const dTx = statusAfter.kernel.transactions - statusBefore.kernel.transactions;
    const dAttr = {
      lookups: statusAfter.attribution.lookups - statusBefore.attribution.lookups,
      found: statusAfter.attribution.found - statusBefore.attribution.found,
      overBudget: statusAfter.attribution.overBudget - statusBefore.attribution.overBudget,
    };
    say('Same work (how the comparison is kept fair)');
    say(`  - one zone, one query file, one upstream setup; dnsmasq --cache-size=0 and Sluice both forward every query (the cached dnsmasq row is context only).`);
    say(
      `  - kernel set writes: dnsmasq adds every answer's address (one libnftables "add element" per address); Sluice during the rounds wrote ${fmtInt(dElems)} elements for ${fmtInt(dAllowed)} allowed answers (${(dElems / Math.max(1, dAllowed)).toFixed(3)} per answer) in ${fmtInt(dTx)} transactions (${(dElems / Math.max(1, dTx)).toFixed(1)} per transaction), ${statusAfter.kernel.failures - statusBefore.kernel.failures} failed.`,
    );
    say(`    (The guard skips a write that would not extend an element's life by over 1 s; the file has ${fmtInt(opts.names)} names, so at under ${fmtInt(opts.names)} q/s every name comes back after more than 1 s.)`);
    say(`  - both with an egress ruleset in their namespace (policy drop, conntrack, the set); (a) has none.`);
    say(`  - dnsmasq's --dns-forward-max raised from 150 to 4,096, Sluice's own ceiling on queries in flight (src/dns/guard-servers.ts).`);
    say(
      `  - Sluice also attributes each answered query to its process (the attribution probes when loaded, else sock_diag + /proc), within its own budget of lookups per second: during the rounds ${fmtInt(dAttr.lookups)} lookups (${fmtInt(dAttr.found)} found), ${fmtInt(dAttr.overBudget)} skipped over budget. dnsmasq does no such thing.`,
    );
    say(`  - the daemon's main thread during the rounds (its load came only while (c) was measured): ${healthLine(health)}`);
    say(`  - guard counters during the rounds: UDP queries dropped at its in-flight ceiling ${statusAfter.servers.udpDropped - statusBefore.servers.udpDropped}, upstream timeouts ${statusAfter.upstream.timeouts - statusBefore.upstream.timeouts}, upstream replies refused ${statusAfter.upstream.badReplies - statusBefore.upstream.badReplies}, queries answered SERVFAIL for want of an upstream answer ${statusAfter.guard.upstreamFailures - statusBefore.guard.upstreamFailures}.`);
    say();

    const c = summary.find((s) => s.id === 'sluice') as (typeof summary)[number];
    const root = summary.find((s) => s.id === 'sluice-root');
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const inside = (s: Stat, x: number) => (s.ciLow <= x && s.ciHigh >= x ? `, but ${x} is inside the interval` : '');
    say('Targets (reported, not asserted)');
    say(`  throughput, Sluice (c) / dnsmasq (b): ${fmtRatio(c.vsDnsmasq.qps)}  (target >= 1.5: ${met(c.vsDnsmasq.qps.median >= 1.5)}${inside(c.vsDnsmasq.qps, 1.5)})`);
    if (root) say(`    with the client running as root: ${fmtRatio(root.vsDnsmasq.qps)}  (target >= 1.5: ${met(root.vsDnsmasq.qps.median >= 1.5)})`);
    const added = c.addedOverUpstreamMs?.p99 as Stat;
    say(`  added p99 latency at ${fmtInt(opts.rate)} q/s, p99(c) - p99(a): ${fmtStatMs(added)} ms  (target < 2 ms: ${met(added.median < 2)}${inside(added, 2)})`);
    const pooledAdded = (c.fixedRate?.pooled?.p99 ?? NaN) - (summary.find((s) => s.id === 'upstream')?.fixedRate?.pooled?.p99 ?? NaN);
    say(`    pooled over all rounds: ${fmtMs(pooledAdded)} ms; dnsmasq (b) adds ${fmtStatMs(summary.find((s) => s.id === 'dnsmasq')?.addedOverUpstreamMs?.p99 as Stat)} ms`);
    say();

    // ------------------------------------------------------------ Zipf phase: caching forwarders
    let zipf: Record<string, unknown> | null = null;
    if (opts.zipfRounds > 0) {
      const zfile = join(tmp, 'zipf.txt');
      const ztext = zipfFile(opts.zipfNames, opts.zipfS, opts.zipfQueries);
      writeFileSync(zfile, ztext, { mode: 0o644 });
      const distinct = new Set(ztext.split('\n').filter(Boolean)).size;
      say(`Zipf phase: ${fmtInt(opts.zipfQueries)} lookups over ${fmtInt(opts.zipfNames)} names, P(rank r) ~ 1/r^${opts.zipfS} (${fmtInt(distinct)} distinct names in the file), TTL ${TTL} s`);
      const wD = await newWorld();
      const cachedPolicy = wD.policy(sluicePolicy('default'), 'bench-dns-cache.yaml');
      const zDaemon = await wD.spawnReady(wD.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', cachedPolicy, '--metrics', 'off'], { env: wD.env({ SLUICE_LOOP_WINDOW_MS: String(HEALTH_WINDOW_MS) }), readyText: 'running', timeoutMs: 30_000 });
      await ready(wD, UPSTREAM, 53, 'the Sluice guard with its cache');
      say(`  zipf-sluice:  world ${wD.id}: sluice daemon ${cachedPolicy} (as (c), dns.cache_size at its default ${DNS_DEFAULTS.cacheSize})`);
      const zdm = dmSpawn(5354, 10_000, 'allowed4');
      await ready(wB, '127.0.0.1', 5354, 'dnsmasq (Zipf)');
      say(`  zipf-dnsmasq: world ${wB.id}: ${dnsmasqArgv(5354, 10_000, 'allowed4').join(' ')}`);
      const zconfigs: Config[] = [];
      const zadd = (c: Omit<Config, 'tput' | 'lat' | 'pooled' | 'file' | 'rate'>) => zconfigs.push({ ...c, tput: [], lat: [], pooled: [], file: zfile, rate: opts.zipfRate });
      zadd({ id: 'zipf-dnsmasq', role: 'zipf', label: 'dnsmasq --nftset, cache 10000', description: 'dnsmasq --cache-size=10000 --nftset; cached answers add nothing to the set', world: wB, server: '127.0.0.1', port: 5354, uid: CLIENT_UID, latency: true, pid: () => zdm.pid });
      zadd({ id: 'zipf-sluice', role: 'zipf', label: 'sluice guard, cache', description: `as (c) with the answer cache (${DNS_DEFAULTS.cacheSize} entries)`, world: wD, server: UPSTREAM, port: 53, uid: CLIENT_UID, latency: true, pid: () => zDaemon.pid });
      let unboundNote = 'no unbound binary (install it, or pass --unbound PATH): no unbound row';
      if (opts.unbound) {
        const udir = join(tmp, 'unbound');
        mkdirSync(udir, { recursive: true });
        writeFileSync(join(udir, 'unbound.conf'), unboundConf(udir, 5355));
        const ub = wB.spawnIn(wB.client, [opts.unbound, '-d', '-c', join(udir, 'unbound.conf')]);
        let ubErr = '';
        ub.stderr?.on('data', (d: Buffer) => (ubErr = (ubErr + d.toString()).slice(-2000)));
        try {
          await ready(wB, '127.0.0.1', 5355, 'unbound');
          zadd({ id: 'zipf-unbound', role: 'zipf', label: 'unbound, 1 thread (no set)', description: 'unbound as a caching forwarder to NSD, 1 thread; fills no set', world: wB, server: '127.0.0.1', port: 5355, uid: CLIENT_UID, latency: true, pid: () => ub.pid });
          unboundNote = `zipf-unbound: world ${wB.id}: ${opts.unbound} -d -c ${join(udir, 'unbound.conf')} (127.0.0.1:5355, forward-zone "." to ${UPSTREAM}, module-config iterator, 1 thread)`;
        } catch (err) {
          unboundNote = `unbound did not start (${(err as Error).message.slice(0, 200)} ${ubErr.trim().slice(0, 300)}): no unbound row`;
        }
      }
      say(`  ${unboundNote}`);
      say('  warm-up: one pass over the Zipf file each (the caches fill as in steady state)');
      for (const c of zconfigs) {
        const p = parsePerf((await dnsperf(c, ['-n', '1', '-q', String(opts.outstanding)], 600)).stdout);
        say(`    ${c.label.padEnd(30)} ${fmtInt(p.completed)}/${fmtInt(p.sent)} answered, rcodes ${JSON.stringify(p.rcodes)}`);
      }
      const zBefore = (await wD.control('status')) as { components: { 'dns-guard': { cache: Record<string, number> | null } } };
      const zHealthWatch = watchHealth(wD);
      say(`  rounds: throughput q/s (in flight ${opts.outstanding}) | p99 ms at ${fmtInt(opts.zipfRate)} q/s`);
      for (let round = 0; round < opts.zipfRounds; round++) {
        const order = round % 2 === 0 ? zconfigs : [...zconfigs].reverse();
        say(`    ${String(round + 1).padStart(2)}/${opts.zipfRounds}: ${await measureRound(order, order, round)}`);
      }
      const zAfter = (await wD.control('status')) as { components: { 'dns-guard': { cache: Record<string, number> | null } } };
      const zHealth = await zHealthWatch.stop();
      const ref = zconfigs[0] as Config;
      const vs = (c: Config, pickT: (s: ThroughputSample) => number, pickL: (s: LatencySample) => number) => {
        const q: number[] = [];
        const l: number[] = [];
        for (let r = 0; r < opts.zipfRounds; r++) {
          const x = c.tput.find((s) => s.round === r);
          const y = ref.tput.find((s) => s.round === r);
          if (x && y && pickT(y) > 0) q.push(pickT(x) / pickT(y));
          const xl = c.lat.find((s) => s.round === r);
          const yl = ref.lat.find((s) => s.round === r);
          if (xl && yl && pickL(yl) > 0) l.push(pickL(xl) / pickL(yl));
        }
        return { qps: stat(q), p99: stat(l) };
      };
      const zsummary = zconfigs.map((c) => ({
        id: c.id,
        label: c.label,
        description: c.description,
        qps: stat(c.tput.map((x) => x.qps)),
        cpuUsPerQuery: stat(c.tput.map((x) => x.cpuUsPerQuery).filter((x): x is number => x !== null)),
        p50: stat(c.lat.map((x) => x.lat_ms.p50)),
        p99: stat(c.lat.map((x) => x.lat_ms.p99)),
        pooled: percentiles(c.pooled),
        lost: c.lat.reduce((n, x) => n + x.lost, 0) + c.tput.reduce((n, x) => n + x.lost, 0),
        vsDnsmasq: vs(c, (x) => x.qps, (x) => x.lat_ms.p99),
      }));
      say(`  Zipf results: median over ${opts.zipfRounds} rounds (95% CI)`);
      say(`    ${'configuration'.padEnd(W)}${'q/s (max)'.padStart(10)}${'q/s vs dnsmasq'.padStart(24)}${'p50 ms'.padStart(18)}${'p99 ms'.padStart(18)}${'p99 vs dnsmasq'.padStart(24)}`);
      for (const z of zsummary) {
        say(`    ${z.label.padEnd(W)}${fmtInt(z.qps.median).padStart(10)}${fmtRatio(z.vsDnsmasq.qps).padStart(24)}${fmtStatMs(z.p50).padStart(18)}${fmtStatMs(z.p99).padStart(18)}${fmtRatio(z.vsDnsmasq.p99).padStart(24)}`);
      }
      const gc = (x: typeof zAfter) => x.components['dns-guard'].cache ?? {};
      const hits = (gc(zAfter).hits ?? 0) - (gc(zBefore).hits ?? 0);
      const misses = (gc(zAfter).misses ?? 0) - (gc(zBefore).misses ?? 0);
      say(`    the guard's cache during the rounds: ${fmtInt(hits)} hits, ${fmtInt(misses)} misses (hit ratio ${(hits / Math.max(1, hits + misses)).toFixed(4)}), ${fmtInt(gc(zAfter).size ?? 0)} entries`);
      const fastOf = (x: typeof zAfter): { answered: number; forwarded: number; dropped: number } => {
        const threads = (x.components['dns-guard'] as { fastPath?: { threads: { answered: number; forwarded: number; dropped: number }[] } | null }).fastPath?.threads ?? [];
        return { answered: threads.reduce((n, t) => n + t.answered, 0), forwarded: threads.reduce((n, t) => n + t.forwarded, 0), dropped: threads.reduce((n, t) => n + t.dropped, 0) };
      };
      const fa = fastOf(zAfter);
      const fb = fastOf(zBefore);
      say(`    the guard's fast path (cache hits answered on the listeners' own threads, native/dns_fast.c) during the rounds: ${fmtInt(fa.answered - fb.answered)} answered there, ${fmtInt(fa.forwarded - fb.forwarded)} handed to JS, ${fmtInt(fa.dropped - fb.dropped)} dropped${process.env.SLUICE_DNS_FAST === '0' ? ' (off: SLUICE_DNS_FAST=0)' : ''}`);
      say(`    the daemon's main thread during the rounds: ${healthLine(zHealth)}`);
      const zs = zsummary.find((z) => z.id === 'zipf-sluice');
      const others = zsummary.filter((z) => z.id !== 'zipf-sluice');
      if (zs && others.length > 0) {
        const bestP99 = Math.min(...others.map((z) => z.p99.median));
        const bestQps = Math.max(...others.map((z) => z.qps.median));
        say(`  Targets (reported, not asserted): the guard's p99 at ${fmtInt(opts.zipfRate)} q/s ${fmtMs(zs.p99.median)} ms against the best of the others ${fmtMs(bestP99)} ms (${met(zs.p99.median <= bestP99)}); throughput ${fmtInt(zs.qps.median)} against ${fmtInt(bestQps)} q/s (${met(zs.qps.median >= bestQps)})`);
      }
      say();
      zipf = {
        method: { names: opts.zipfNames, exponent: opts.zipfS, queries: opts.zipfQueries, distinct, rate: opts.zipfRate, rounds: opts.zipfRounds, unbound: unboundNote, sluicePolicy: sluicePolicy('default'), dnsmasq: dnsmasqArgv(5354, 10_000, 'allowed4').join(' ') },
        configurations: zsummary,
        guardCache: { hits, misses, after: gc(zAfter) },
        mainThread: zHealth,
        samples: Object.fromEntries(zconfigs.map((x) => [x.id, { throughput: x.tput, fixedRate: x.lat }])),
      };
    }

    // ------------------------------------------------------------ diagnostics
    let diagnostics: Record<string, unknown> | null = null;
    if (opts.diagnoseSeconds > 0) {
      say(`Diagnostics: where the guard's time goes (${opts.diagnoseSeconds} s per step; not part of the results above)`);
      diagnostics = {};
      const profDir = join(tmp, 'prof');
      mkdirSync(profDir, { recursive: true });
      const sl = configs.find((x) => x.id === 'sluice') as Config;
      const slRoot: Config = { ...sl, id: 'sluice-root', uid: 0 };
      const profile = async (tag: string, steps: { what: string; run: () => Promise<string> }[]) => {
        const dir = join(profDir, tag);
        mkdirSync(dir, { recursive: true });
        daemon.kill('SIGTERM');
        if (!(await waitExit(daemon, 15_000))) throw new Error('the daemon did not stop on SIGTERM');
        daemon = await startDaemon(['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=500']);
        await ready(wC, UPSTREAM, 53, 'the Sluice guard (profiled)');
        const lines: string[] = [];
        for (const s of steps) lines.push(`${s.what}: ${await s.run()}`);
        daemon.kill('SIGTERM');
        if (!(await waitExit(daemon, 15_000))) throw new Error('the profiled daemon did not stop on SIGTERM');
        // One profile per thread: CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main one.
        const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
        const file = files.find((f) => f.split('.')[4] === '0');
        if (!file) throw new Error(`no CPU profile of the main thread written in ${dir}`);
        const sum = summarizeProfile(join(dir, file));
        const others = files.filter((f) => f !== file).map((f) => summarizeProfile(join(dir, f)));
        say(`  profile "${tag}" (node --cpu-prof on the daemon), load: ${lines.join('; ')}`);
        if (others.length) say(`    worker threads (query attribution) busy ${others.map((o) => `${fmtInt(o.busyMs)} ms`).join(', ')} over the same time`);
        say(`    daemon main thread busy ${fmtInt(sum.busyMs)} ms of ${fmtInt(sum.totalMs)} ms; share of busy time (inclusive; nested rows overlap):`);
        for (const bk of sum.buckets) say(`      ${bk.pct.toFixed(1).padStart(5)}%  ${bk.what}`);
        say(`    top self time:`);
        for (const f of sum.self.slice(0, 8)) say(`      ${f.pct.toFixed(1).padStart(5)}%  ${f.fn}`);
        say(`    event loop held by one call (consecutive samples inside it):`);
        for (const st of sum.stretches) if (st.count) say(`      ${st.what}: ${st.count} times, median ${fmtMs(st.medianMs)} ms, longest ${fmtMs(st.maxMs)} ms`);
        daemon = await startDaemon();
        await ready(wC, UPSTREAM, 53, 'the Sluice guard');
        return { summary: sum, load: lines };
      };
      const tputStep = (cfg: Config) => async () => {
        const t = await throughput(cfg, opts.diagnoseSeconds);
        return `${fmtInt(t.qps)} q/s at ${opts.outstanding} in flight`;
      };
      let timeline: { windowMs: number; slowWindows: { atS: number; maxMs: number; over10ms: number }[] } | null = null;
      const rateStep = async () => {
        const secs = Math.max(opts.diagnoseSeconds, 11);
        const { perf, lat } = await fixedRate(sl, secs);
        const pc = percentiles(lat);
        // Responses in arrival order at a fixed rate: index / rate ~ time. Windows of 100 ms with their worst latency.
        const per = Math.max(1, Math.round(opts.rate / 10));
        const windows: { atS: number; maxMs: number; over10ms: number }[] = [];
        for (let i = 0; i < lat.length; i += per) {
          const w = lat.slice(i, i + per).filter(Number.isFinite);
          windows.push({ atS: i / opts.rate, maxMs: w.length ? Math.max(...w) : Infinity, over10ms: w.filter((x) => x > 10).length });
        }
        const slow = windows.filter((w) => w.maxMs > 10);
        timeline = { windowMs: 100, slowWindows: slow };
        const worst = [...slow].sort((x, y) => y.maxMs - x.maxMs).slice(0, 6).sort((x, y) => x.atS - y.atS);
        const slowText = slow.length
          ? `${slow.length} of ${windows.length} had one; worst at ${worst.map((w) => `${w.atS.toFixed(1)} s (max ${fmtMs(w.maxMs)} ms)`).join(', ')}`
          : 'none';
        return `${fmtInt(perf.qps)} q/s fixed for ${secs} s, p50 ${fmtMs(pc.p50)} ms, p99 ${fmtMs(pc.p99)} ms, max ${fmtMs(pc.max)} ms; 100-ms windows with a response over 10 ms: ${slowText}`;
      };
      diagnostics.profileUnprivileged = await profile('client-uid-65534', [
        { what: `max throughput, uid ${CLIENT_UID}`, run: tputStep(sl) },
        { what: `fixed ${fmtInt(opts.rate)} q/s, uid ${CLIENT_UID}`, run: rateStep },
      ]);
      diagnostics.latencyTimeline = timeline;
      diagnostics.profileRoot = await profile('client-root', [{ what: 'max throughput, root', run: tputStep(slRoot) }]);

      // System calls per answered query: strace -c -f on the forwarder during a throughput run.
      if (spawnSync('sh', ['-c', 'command -v strace']).status === 0) {
        const perQuery: Record<string, { qps: number; answered: number; perQuery: { syscall: string; calls: number; errors: number }[] }> = {};
        const sysRows = async (cfg: Config, pid: number | undefined, tag: string) => {
          if (!pid) return;
          const { value, counts } = await straceAround(pid, tmp, tag, () => throughput(cfg, opts.diagnoseSeconds));
          const n = Math.max(1, value.completed);
          perQuery[tag] = { qps: value.qps, answered: value.completed, perQuery: counts.slice(0, 8).map((x) => ({ syscall: x.syscall, calls: x.calls / n, errors: x.errors / n })) };
          say(
            `  syscalls per answered query, ${tag} (strace -c -f, ${fmtInt(value.completed)} answered at ${fmtInt(value.qps)} q/s under strace): ${counts
              .slice(0, 7)
              .map((x) => `${x.syscall} ${(x.calls / n).toFixed(2)}${x.errors ? ` (${(x.errors / n).toFixed(2)} failed)` : ''}`)
              .join(', ')}`,
          );
        };
        await sysRows(b, dm.pid, 'dnsmasq');
        say('    (dnsmasq, read with strace -f -e trace=network: per answer a fresh random-port upstream socket (socket, sendto, recvfrom, close), and libnftables\' netlink');
        say('     generation check (sendto + recvmsg) and one batch carrying the element (sendmsg): one kernel transaction per answer; sendmsg also sends the reply)');
        const cached = configs.find((x) => x.id === 'dnsmasq-cached');
        if (cached) await sysRows(cached, dmCached?.pid, 'dnsmasq-cached');
        await sysRows(sl, daemon.pid, 'sluice');
        await sysRows(slRoot, daemon.pid, 'sluice-root');
        diagnostics.syscalls = perQuery;
      } else {
        say('  strace is not installed: system-call counts skipped');
      }
      say();
    }

    // ------------------------------------------------------------ output
    const outDir = join(ROOT, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `dns-${started.toISOString().replace(/[:.]/g, '-')}.json`);
    const report = {
      benchmark: 'dns',
      provenance: prov,
      started: started.toISOString(),
      finished: finished.toISOString(),
      machine: { kernel: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, node: process.version, loadavgAtEnd: loadavg(), dnsperf: dnsperfVersion, dnsmasq: dnsmasqVersion, nsd: nsdVersion },
      options: opts,
      method: {
        zone: `${opts.names} names h<i>.${SUFFIX}, one A record each, distinct addresses from ${addrOf(0)}, TTL ${TTL}`,
        queries: 'one file, every name once, fixed shuffled order; dnsperf starts at its top each sample',
        throughput: `dnsperf -l ${opts.seconds} -q ${opts.outstanding} -c ${opts.clients} -t ${opts.timeout}`,
        latency: `dnsperf -l ${opts.latencySeconds} -Q ${opts.rate} -q ${RATE_OUTSTANDING} -c ${opts.clients} -t ${opts.timeout} -v; percentiles over every query sent, lost = slowest`,
        clientUid: CLIENT_UID,
        order: `round-robin, serpentine (even rounds ${RUN_ORDER.join(' ')}, odd rounds reversed); per round all fixed-rate samples, then all throughput samples, 0.5 s apart`,
        dnsmasq: dnsmasqArgv(53, 0, 'allowed4').join(' '),
        dnsmasqRuleset: dnsmasqRuleset(),
        sluicePolicy: sluicePolicy(),
      },
      configurations: summary,
      guardDuringRounds: {
        allowed: dAllowed,
        elementsWritten: dElems,
        transactions: dTx,
        attribution: dAttr,
        udpDropped: statusAfter.servers.udpDropped - statusBefore.servers.udpDropped,
        upstreamTimeouts: statusAfter.upstream.timeouts - statusBefore.upstream.timeouts,
        upstreamBadReplies: statusAfter.upstream.badReplies - statusBefore.upstream.badReplies,
        upstreamFailures: statusAfter.guard.upstreamFailures - statusBefore.guard.upstreamFailures,
        mainThread: health,
        statusAfter,
      },
      diagnostics,
      zipf,
      samples: Object.fromEntries(configs.map((x) => [x.id, { throughput: x.tput, fixedRate: x.lat }])),
    };
    writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
    say(`Wrote ${outFile}`);
    say(`  load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    shuttingDown = true;
    await teardown(worlds, say);
    // BENCH_KEEP_TMP=1: the daemon's CPU profiles (diagnostics), configs and query files stay, for a closer look.
    if (process.env.BENCH_KEEP_TMP === '1') say(`  kept ${tmp} (BENCH_KEEP_TMP=1)`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}

/** Destroys the Worlds and checks that nothing they ran is left: every process seen in their namespaces has ended, and the namespaces are gone. */
async function teardown(worlds: World[], say: (s?: string) => void): Promise<void> {
  const namespaces = worlds.flatMap((w) => [w.client, w.world]);
  const pids = new Set<number>();
  for (const ns of namespaces) {
    for (const p of (spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean)) pids.add(Number(p));
  }
  for (const w of worlds) await w.destroy();
  const state = (pid: number): string | null => {
    try {
      const t = readFileSync(`/proc/${pid}/stat`, 'latin1');
      return t.slice(t.lastIndexOf(')') + 2, t.lastIndexOf(')') + 3);
    } catch {
      return null;
    }
  };
  let left: number[] = [];
  for (let i = 0; i < 50; i++) {
    // Zombies of our own children are reaped by this event loop; others by init: give both a moment.
    left = [...pids].filter((p) => state(p) !== null);
    if (left.length === 0) break;
    await sleep(100);
  }
  const listed = (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '').split('\n').map((l) => l.split(' ')[0]);
  const nsLeft = namespaces.filter((ns) => listed.includes(ns));
  if (worlds.length === 0) return;
  say(
    `Teardown: ${worlds.length} Worlds destroyed; ${namespaces.length} namespaces, ${nsLeft.length ? `LEFT: ${nsLeft.join(' ')}` : 'all deleted'}; ${pids.size} processes had run in them, ${left.length ? `STILL PRESENT: ${left.map((p) => `${p} (${state(p)})`).join(' ')}` : 'all ended'}`,
  );
}

run(main);
