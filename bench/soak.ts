/**
 * Soak benchmark: the daemon under steady load for a long time. Does its
 * memory level off, does anything leak (file descriptors), is any query or
 * event lost, and where do its rare slow answers come from?
 *
 *   npm run bench:soak [-- --minutes M --rate QPS --names N --blocked N ...]   (--help lists all,
 *   each also as an environment variable: BENCH_MINUTES, BENCH_RATE, ...)
 *
 * One World (test/world/world.ts: only 198.18.0.0/15, 2001:db8::/32 and
 * loopback; the machine's own namespace and ruleset are never touched). NSD
 * on 198.18.0.53 in its world namespace serves NAMES names
 * h<i>.bench.sluice.test (one A record each, TTL 3600), as in bench/dns.ts.
 * `sluice daemon` runs in enforce mode in the client namespace with one DNS
 * rule for *.bench.sluice.test (the guard on), a log budget above the offered
 * blocked rate, and an alerts: route sending `blocked` alerts (window 60 s)
 * to a webhook receiver on the client namespace's loopback. Then, for
 * MINUTES minutes, all at once:
 *
 *   DNS       dnsperf -Q RATE -v as uid 65534 against 198.18.0.53:53 (the kernel
 *             redirects it to the guard), in 60 s chunks so that every minute has
 *             its own sent / answered / lost and latency percentiles (every response's
 *             latency; a lost query counts as slower than any answer)
 *   blocked   one long-lived sender (bench/tools/blast.c, uid 65534) sending UDP
 *             datagrams at BLOCKED/s to 198.18.2.20:5000, which no rule allows,
 *             plus ONESHOTS short-lived blast processes a second (one datagram each,
 *             to port 5001); both count exactly what they sent
 *   scrapes   GET /metrics over the daemon's Unix socket every 10 s
 *   samples   every 30 s: VmRSS (and its anon/file/shmem parts), open fds, CPU seconds
 *             from /proc/PID, and the daemon's own heap and learned-address gauges
 *             from its metrics
 *
 * Baseline, same run, before the daemon starts: the same dnsperf load against
 * NSD directly (no ruleset) for BASELINE seconds: the latency floor.
 *
 * Where a slow answer comes from: the daemon runs with a small preloaded probe
 * (written to the run's temporary directory, loaded with node --import, main
 * thread only) that records every second the event loop's longest delay
 * (perf_hooks.monitorEventLoopDelay) and the process's memory (heap used and
 * total, external, array buffers, RSS), and every garbage collection longer
 * than 10 ms (PerformanceObserver 'gc'). Each minute's slowest answer is
 * placed in time (dnsperf paces its queries, so a response's index / RATE is
 * about when it came) and set beside what happened within 2 s of it: event
 * loop stalls, collections, scrapes, samples, daemon log lines, webhook
 * deliveries, the dnsperf chunk boundaries. --no-probe runs the daemon bare.
 *
 * At the end: a per-minute table, the totals (queries; blocked attempts sent
 * against events stored + held back by the kernel's log budget + counted
 * losses: "unaccounted" must be 0; alert messages and their counts against
 * blocked events stored), and an RSS verdict (slope over the second half of
 * the run after a 3-minute warm-up against the first half). Nothing is
 * asserted: it prints and records numbers, also to bench/out/soak-*.json.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { startDnsServer, ZONE } from '../test/world/dns-server.js';
import { formatAddr } from '../src/net/ip.js';
import { compileBlast } from '../test/support/blast.js';
import { scrapeMetrics } from '../test/support/monitor-helpers.js';
import { HOSTS, ROOT, World, type RunResult } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';
import { check, fmtInt, installExitHandlers, numOption, quantile, run } from './lib/stats.js';

installExitHandlers();

const UPSTREAM = HOSTS.dns4;
const SUFFIX = `bench.${ZONE}`;
const TTL = 3600;
/** dnsperf and the blocked senders run as this uid: ordinary unprivileged clients. */
const CLIENT_UID = 65534;
/** Names start at 198.18.16.0, clear of the world's own hosts (as in bench/dns.ts). */
const ADDR_BASE = (198 << 24) | (18 << 16) | (16 << 8);
/** Sluice's dynamic sets hold at most 65,536 elements; stay below (as bench/dns.ts). */
const MAX_NAMES = 65_000;
/** The blocked destination: no rule allows it; the long-lived sender and the one-shots use different ports. */
const BLOCKED_DST = HOSTS.other4;
const BLOCKED_PORT = 5000;
const ONESHOT_PORT = 5001;
/** The webhook receiver, on the client namespace's loopback (as in test/integration/alerts.test.ts). */
const HOOK_PORT = 18_641;
const ALERT_WINDOW_S = 60;
/** dnsperf's in-flight ceiling at the fixed rate (as bench/dns.ts). */
const OUTSTANDING = 2000;
const CHUNK_S = 60;
const SCRAPE_EVERY_MS = 10_000;
const SAMPLE_EVERY_MS = 30_000;
const WARMUP_MIN = 3;
/** What counts as "near" a slow answer when looking for its cause. */
const NEAR_MS = 2000;

// ---------------------------------------------------------------- options

const USAGE = `Usage: npm run bench:soak [-- OPTIONS]

  --minutes M            how long the load runs, minutes (BENCH_MINUTES, default 30; 1 for a smoke run)
  --rate QPS             DNS queries per second through the guard (BENCH_RATE, default 2000)
  --names N              distinct names in the zone and the query file (BENCH_NAMES, default 20000,
                         at most ${MAX_NAMES.toLocaleString('en-US')})
  --blocked N            blocked datagrams per second from the long-lived sender (BENCH_BLOCKED, default 500)
  --oneshots N           one-shot blocked sender processes per second, one datagram each (BENCH_ONESHOTS, default 3)
  --baseline-seconds S   the same dnsperf load against NSD directly before the daemon starts;
                         0 skips it (BENCH_BASELINE_SECONDS, default 60)
  --timeout S            dnsperf query timeout, seconds (BENCH_TIMEOUT, default 5: above the guard's
                         2 s upstream retry, so a retried query is slow, not lost)
  --clients N            dnsperf clients (UDP sockets) (BENCH_CLIENTS, default 8)
  --no-probe             run the daemon without the event-loop/GC probe (BENCH_NO_PROBE=1)
  -h, --help             this help`;

interface Options {
  minutes: number;
  rate: number;
  names: number;
  blocked: number;
  oneshots: number;
  baselineSeconds: number;
  timeout: number;
  clients: number;
  probe: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      minutes: { type: 'string' },
      rate: { type: 'string' },
      names: { type: 'string' },
      blocked: { type: 'string' },
      oneshots: { type: 'string' },
      'baseline-seconds': { type: 'string' },
      timeout: { type: 'string' },
      clients: { type: 'string' },
      'no-probe': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  return {
    minutes: numOption(values.minutes, 'BENCH_MINUTES', 30, { min: 1, max: 24 * 60, int: true }),
    rate: numOption(values.rate, 'BENCH_RATE', 2000, { min: 1, max: 100_000, int: true }),
    names: numOption(values.names, 'BENCH_NAMES', 20_000, { min: 100, max: MAX_NAMES, int: true }),
    blocked: numOption(values.blocked, 'BENCH_BLOCKED', 500, { min: 0, max: 100_000, int: true }),
    oneshots: numOption(values.oneshots, 'BENCH_ONESHOTS', 3, { min: 0, max: 50, int: true }),
    baselineSeconds: numOption(values['baseline-seconds'], 'BENCH_BASELINE_SECONDS', 60, { min: 0, max: 3600, int: true }),
    timeout: numOption(values.timeout, 'BENCH_TIMEOUT', 5, { min: 1, max: 60, int: true }),
    clients: numOption(values.clients, 'BENCH_CLIENTS', 8, { min: 1, max: 256, int: true }),
    probe: !values['no-probe'] && process.env.BENCH_NO_PROBE !== '1',
  };
}

// ---------------------------------------------------------------- zone, policy, probe

const ipv4 = (n: number): string => formatAddr(4, BigInt(n));
const nameOf = (i: number) => `h${i}.${SUFFIX}`;
const addrOf = (i: number) => ipv4(ADDR_BASE + i);

/** The zone of bench/dns.ts: NAMES names, one A record each, distinct addresses. */
function benchZone(n: number): string {
  const lines = [`$ORIGIN ${ZONE}.`, `$TTL ${TTL}`, `@ IN SOA ns.${ZONE}. host.${ZONE}. 1 3600 600 86400 60`, '@ IN NS ns', `ns IN A ${UPSTREAM}`];
  for (let i = 0; i < n; i++) lines.push(`h${i}.bench ${TTL} IN A ${addrOf(i)}`);
  return `${lines.join('\n')}\n`;
}

/** Every name once, in the fixed pseudo-random order of bench/dns.ts; dnsperf loops over it. */
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

/**
 * The daemon's policy: the DNS rule, a log budget above the offered blocked
 * rate (shared and per user: the blocked senders all run as one uid), and the
 * alerts route. What the budget still holds back is counted by the kernel.
 */
function soakPolicy(o: Options): string {
  const offered = o.blocked + o.oneshots;
  const userRate = Math.max(1000, offered * 2);
  const rate = userRate * 2;
  return `# bench/soak.ts: one domain rule (the DNS guard on), blocked alerts to a local webhook
version: 1
mode: enforce
log: {rate: ${rate}, burst: ${rate * 5}, user_rate: ${userRate}, user_burst: ${userRate * 5}}
dns:
  upstreams: [${UPSTREAM}]
rules:
  - name: bench
    to: ["*.${SUFFIX}"]
    ports: [443/tcp]
alerts:
  - name: soak
    sink: {webhook: "http://127.0.0.1:${HOOK_PORT}/hook"}
    on: [blocked]
    window: ${ALERT_WINDOW_S}s
`;
}

/** The webhook receiver: one JSON line per request, {t, body}; "ready" once listening. */
const RECEIVER = `
const http = require('node:http');
http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    process.stdout.write(JSON.stringify({ t: Date.now(), body }) + '\\n');
    res.end('ok');
  });
}).listen(${HOOK_PORT}, '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

/**
 * Loaded into the daemon with node --import (main thread only: worker threads
 * inherit execArgv). Appends JSON lines to $SLUICE_SOAK_PROBE: every second
 * {t, loopMaxMs, loopP99Ms, heapUsed, heapTotal, external, arrayBuffers, rss};
 * every collection of 10 ms or more {t, gc, ms}. Its own cost: one
 * memoryUsage() and one small synchronous append a second.
 */
const PROBE = `
import { isMainThread } from 'node:worker_threads';
import { monitorEventLoopDelay, PerformanceObserver, performance } from 'node:perf_hooks';
import { appendFileSync } from 'node:fs';
const out = process.env.SLUICE_SOAK_PROBE;
if (isMainThread && out) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const write = (o) => { try { appendFileSync(out, JSON.stringify(o) + '\\n'); } catch {} };
  const kinds = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weakcb', 16: 'minor-mark-sweep' };
  setInterval(() => {
    const m = process.memoryUsage();
    write({ t: Date.now(), loopMaxMs: h.max / 1e6, loopP99Ms: h.percentile(99) / 1e6, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss });
    h.reset();
  }, 1000).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.duration >= 10) write({ t: Math.round(performance.timeOrigin + e.startTime), gc: kinds[e.detail?.kind] ?? String(e.detail?.kind), ms: e.duration });
    }
  }).observe({ entryTypes: ['gc'] });
}
`;

// ---------------------------------------------------------------- parsing

/** What dnsperf printed, parsed (as bench/dns.ts). */
interface Perf {
  sent: number;
  completed: number;
  lost: number;
  runSeconds: number;
  qps: number;
  rcodes: Record<string, number>;
}

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

/** Sum of every sample of a metric whose labels include all of `want` (Prometheus text format). */
function metric(text: string, name: string, want: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    const labels = line[name.length] === '{' ? line.slice(name.length + 1, line.indexOf('}')) : '';
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

/** The pipeline numbers of one scrape: the kernel's counter of blocked packets and where each record went. */
interface Pipeline {
  kernelBlocked: number;
  stored: number;
  suppressed: number;
  nflogLost: number;
  dropped: number;
  malformed: number;
  dnsAnswered: number;
  upstreamTimeouts: number;
  learned: number;
  heap: number;
  rssMetric: number;
  cpuMetric: number;
  storeBytes: number;
  alertsDelivered: number;
  alertsQueued: number;
}

function pipeline(m: string): Pipeline {
  return {
    kernelBlocked: metric(m, 'sluice_rule_packets_total', { action: 'deny', mode: 'enforce', rule: '#default' }),
    stored: metric(m, 'sluice_events_stored_total', { verdict: 'blocked' }),
    suppressed: metric(m, 'sluice_log_suppressed_total', { kind: 'block' }),
    nflogLost: metric(m, 'sluice_nflog_lost_records_total'),
    dropped: metric(m, 'sluice_events_dropped_total'),
    malformed: metric(m, 'sluice_nflog_malformed_total'),
    dnsAnswered: metric(m, 'sluice_dns_queries_total'),
    upstreamTimeouts: metric(m, 'sluice_dns_upstream_timeouts_total'),
    learned: metric(m, 'sluice_dns_learned_addresses'),
    heap: metric(m, 'process_heap_bytes'),
    rssMetric: metric(m, 'process_resident_memory_bytes'),
    cpuMetric: metric(m, 'process_cpu_seconds_total'),
    storeBytes: metric(m, 'sluice_event_store_bytes'),
    alertsDelivered: metric(m, 'sluice_alerts_delivered_total'),
    alertsQueued: metric(m, 'sluice_alerts_queued'),
  };
}

// ---------------------------------------------------------------- /proc

interface ProcSample {
  rssKb: number;
  /** VmHWM: the peak RSS so far. */
  hwmKb: number;
  anonKb: number;
  fileKb: number;
  shmemKb: number;
  fds: number;
  cpuS: number;
  threads: number;
}

/** RSS (and its parts), open fds, CPU seconds (utime + stime, all threads) and threads of a process; null when gone. */
function procSample(pid: number): ProcSample | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const tck = 100; // USER_HZ on Linux
    return {
      rssKb: kb('VmRSS'),
      hwmKb: kb('VmHWM'),
      anonKb: kb('RssAnon'),
      fileKb: kb('RssFile'),
      shmemKb: kb('RssShmem'),
      fds: readdirSync(`/proc/${pid}/fd`).length,
      cpuS: (Number(f[11]) + Number(f[12])) / tck,
      threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN),
    };
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x; NaN under 2 points. */
function slope(pts: { x: number; y: number }[]): number {
  const n = pts.length;
  if (n < 2) return NaN;
  const mx = pts.reduce((s, p) => s + p.x, 0) / n;
  const my = pts.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den > 0 ? num / den : NaN;
}

const MB = 1024 * 1024;
const fmtMs = (ms: number) => (!Number.isFinite(ms) ? 'lost' : ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
const fmtMB = (b: number) => (Number.isFinite(b) ? (b / MB).toFixed(1) : '-');
const fmtSlope = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(3)} MB/min` : 'n/a');

function percentiles(lat: number[]) {
  const s = [...lat].sort((a, b) => a - b);
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99), p999: quantile(s, 0.999), max: s[s.length - 1] ?? NaN };
}

// ---------------------------------------------------------------- the benchmark

/** Something that happened during the run, for placing slow answers and memory steps. */
interface Happening {
  t: number;
  what: string;
}

interface Minute {
  minute: number;
  startedAt: string;
  sent: number;
  answered: number;
  lost: number;
  qps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** About when the slowest answer came (ms since the epoch) and what happened within NEAR_MS of it. */
  maxAt: number;
  maxNear: string[];
  rcodes: Record<string, number>;
  cpuPct: number;
  rssMB: number;
  heapMB: number;
  fds: number;
  learned: number;
  storedPerS: number;
  upstreamTimeouts: number;
}

async function main(): Promise<void> {
  const opts = options();
  const started = new Date();
  const prov = provenance('npm run bench:soak');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  for (const tool of ['dnsperf', 'nsd', 'cc']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (scripts/setup.sh installs it)`);
  }
  const dp = spawnSync('dnsperf', ['-h'], { encoding: 'utf8' });
  const dnsperfVersion = /Version (\S+)/.exec(`${dp.stdout ?? ''}${dp.stderr ?? ''}`)?.[1] ?? '?';

  // Files uid 65534 reads and runs: a directory everyone may read.
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-soak-'));
  chmodSync(tmp, 0o755);
  const qfile = join(tmp, 'queries.txt');
  writeFileSync(qfile, queryFile(opts.names), { mode: 0o644 });
  const onefile = join(tmp, 'one.txt');
  writeFileSync(onefile, `${nameOf(0)} A\n`, { mode: 0o644 });
  const blast = compileBlast();
  const probeFile = join(tmp, 'probe.mjs');
  writeFileSync(probeFile, PROBE, { mode: 0o644 });
  const probeOut = join(tmp, 'probe.jsonl');

  let w: World | undefined;
  let daemon: ChildProcess | undefined;
  let receiver: ChildProcess | undefined;
  let stopping = false;
  const timers: NodeJS.Timeout[] = [];
  try {
    say(`Sluice soak benchmark, ${started.toISOString()} (commit ${prov.commit?.slice(0, 7) ?? '?'}${prov.dirty ? ', dirty' : ''})`);
    say(`  kernel ${release()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}, dnsperf ${dnsperfVersion}, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    say(`  ${opts.minutes} min: DNS ${fmtInt(opts.rate)} q/s over ${fmtInt(opts.names)} names (dnsperf -Q ${opts.rate} -c ${opts.clients} -t ${opts.timeout} -v, uid ${CLIENT_UID}, ${CHUNK_S} s chunks) through the kernel redirect to the guard;`);
    say(`  blocked: ${fmtInt(opts.blocked)} UDP datagrams/s from one sender to ${BLOCKED_DST}:${BLOCKED_PORT} + ${opts.oneshots} one-shot senders/s to :${ONESHOT_PORT} (uid ${CLIENT_UID});`);
    say(`  metrics scraped every ${SCRAPE_EVERY_MS / 1000} s; RSS/fds/CPU sampled every ${SAMPLE_EVERY_MS / 1000} s; alerts: blocked, window ${ALERT_WINDOW_S} s, webhook on 127.0.0.1:${HOOK_PORT}; probe ${opts.probe ? 'on' : 'off'}`);
    say();

    // ------------------------------------------------------------ setup
    w = await World.create({ servers: false });
    const world = w;
    await startDnsServer(world, benchZone(opts.names));
    const dnsperf = async (args: string[], limitS: number): Promise<RunResult> =>
      check(
        await world.exec(['dnsperf', '-s', UPSTREAM, '-p', '53', '-d', qfile, '-c', String(opts.clients), '-t', String(opts.timeout), ...args], {
          uid: CLIENT_UID,
          timeoutMs: (limitS + opts.timeout + 60) * 1000,
        }),
        'dnsperf',
      );
    const ready = async (what: string): Promise<void> => {
      for (let i = 0; i < 100; i++) {
        const r = await world.exec(['dnsperf', '-s', UPSTREAM, '-p', '53', '-d', onefile, '-n', '1', '-t', '1']);
        if (/Queries completed:\s+1 /.test(r.stdout)) return;
        await sleep(100);
      }
      throw new Error(`${what} does not answer on ${UPSTREAM}:53`);
    };
    await ready('NSD');
    say(`Setup: world ${world.id}, NSD on ${UPSTREAM} serving ${fmtInt(opts.names)} names h<i>.${SUFFIX} (TTL ${TTL})`);

    // ------------------------------------------------------------ baseline
    let baseline: { perf: Perf; p50: number; p99: number; p999: number; max: number } | null = null;
    if (opts.baselineSeconds > 0) {
      const r = await dnsperf(['-l', String(opts.baselineSeconds), '-Q', String(opts.rate), '-q', String(OUTSTANDING), '-v'], opts.baselineSeconds);
      const perf = parsePerf(r.stdout);
      const lat = parseVerbose(r.stdout);
      for (let i = lat.length; i < perf.sent; i++) lat.push(Infinity);
      baseline = { perf, ...percentiles(lat) };
      say(
        `Baseline: the same load against NSD directly, no ruleset, ${opts.baselineSeconds} s: ${fmtInt(perf.qps)} q/s, ${fmtInt(perf.completed)}/${fmtInt(perf.sent)} answered, ${perf.lost} lost; p50 ${fmtMs(baseline.p50)} ms, p99 ${fmtMs(baseline.p99)} ms, p99.9 ${fmtMs(baseline.p999)} ms, max ${fmtMs(baseline.max)} ms`,
      );
    }

    // ------------------------------------------------------------ receiver and daemon
    const happenings: Happening[] = [];
    const alerts: { t: number; trigger: string; count: number; destination?: string; who?: string }[] = [];
    receiver = await world.spawnReady(world.client, [process.execPath, '-e', RECEIVER]);
    {
      let buf = '';
      receiver.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.startsWith('{')) continue;
          const got = JSON.parse(line) as { t: number; body: string };
          const a = (JSON.parse(got.body) as { sluice: { trigger: string; count: number; destination?: string; who?: string } }).sluice;
          alerts.push({ t: got.t, trigger: a.trigger, count: a.count, ...(a.destination ? { destination: a.destination } : {}), ...(a.who ? { who: a.who } : {}) });
          happenings.push({ t: got.t, what: `webhook got a ${a.trigger} alert (count ${a.count})` });
        }
      });
    }
    const policyFile = world.policy(soakPolicy(opts), 'soak.yaml');
    const nodeArgs = opts.probe ? ['--import', `file://${probeFile}`] : [];
    const daemonLog: { t: number; line: string }[] = [];
    daemon = await world.spawnReady(world.client, [process.execPath, ...nodeArgs, join(ROOT, 'bin/sluice'), 'daemon', policyFile], {
      env: world.env(opts.probe ? { SLUICE_SOAK_PROBE: probeOut } : {}),
      readyText: 'running',
      timeoutMs: 60_000,
      onSpawn: (child) => {
        // The daemon's log lines (JSON on stderr), with when they arrived.
        let buf = '';
        child.stderr?.on('data', (d: Buffer) => {
          buf += d.toString();
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const t = Date.now();
            daemonLog.push({ t, line });
            let msg = line;
            try {
              const j = JSON.parse(line) as { level?: string; message?: string };
              msg = `${j.level ?? '?'}: ${j.message ?? line}`;
            } catch {
              // Not a JSON line: kept as it is.
            }
            happenings.push({ t, what: `daemon log ${msg.slice(0, 100)}` });
          }
        });
      },
    });
    daemon.stdout?.resume();
    const daemonChild = daemon;
    daemonChild.on('exit', (code, signal) => {
      if (!stopping) say(`  WARNING: the daemon exited (${code ?? signal}) during the run`);
    });
    const pid = Number(readFileSync(join(world.stateDir, 'daemon.pid'), 'utf8').trim());
    const daemonStarted = Date.now();
    await ready('the Sluice guard (through the redirect)');
    say(`Daemon: pid ${pid}, sluice daemon ${policyFile} (enforce; rule bench: to ["*.${SUFFIX}"] ports [443/tcp]; metrics on ${join(world.stateDir, 'metrics.sock')})`);
    say(`  policy: ${soakPolicy(opts).split('\n').filter((l) => l.startsWith('log:')).join('')}`);
    say();

    // ------------------------------------------------------------ background load and observation
    const loadStart = Date.now();
    const tRel = (t: number) => (t - loadStart) / 1000;

    // Metrics scrapes every 10 s (kept parsed; the raw text only of the first and last).
    const scrapes: { t: number; ms: number; p: Pipeline }[] = [];
    let firstScrape = '';
    let lastScrape = '';
    const scrape = async (): Promise<Pipeline | null> => {
      const t = Date.now();
      try {
        const text = await scrapeMetrics(world);
        const ms = Date.now() - t;
        if (!firstScrape) firstScrape = text;
        lastScrape = text;
        const p = pipeline(text);
        scrapes.push({ t, ms, p });
        happenings.push({ t, what: `metrics scrape (${ms} ms)` });
        return p;
      } catch (err) {
        happenings.push({ t, what: `metrics scrape FAILED: ${(err as Error).message}` });
        return null;
      }
    };
    const p0 = await scrape();
    timers.push(setInterval(() => void scrape(), SCRAPE_EVERY_MS));

    // /proc samples every 30 s, with the heap and learned-address gauges of the latest scrape.
    const samples: ({ t: number; min: number; heap: number; learned: number } & ProcSample)[] = [];
    const sample = () => {
      const t = Date.now();
      const s = procSample(pid);
      if (!s) return;
      const last = scrapes[scrapes.length - 1]?.p;
      samples.push({ t, min: tRel(t) / 60, heap: last?.heap ?? NaN, learned: last?.learned ?? NaN, ...s });
      happenings.push({ t, what: 'RSS/fd/CPU sample' });
    };
    sample();
    timers.push(setInterval(sample, SAMPLE_EVERY_MS));

    // The long-lived blocked sender: BLOCKED/s for the whole run.
    const blockedCount = opts.blocked * opts.minutes * 60;
    const longSender =
      opts.blocked > 0
        ? world.exec([blast, 'udp', BLOCKED_DST, String(BLOCKED_PORT), String(blockedCount), String(opts.blocked)], { uid: CLIENT_UID, timeoutMs: (opts.minutes * 60 + 120) * 1000 })
        : Promise.resolve<RunResult>({ code: 0, stdout: '{"sent":0,"errors":0,"seconds":0}', stderr: '' });

    // One-shot senders: ONESHOTS processes a second, one datagram each; every one's own count is added up.
    let oneshotSent = 0;
    let oneshotRuns = 0;
    let oneshotFailed = 0;
    const oneshotPending = new Set<Promise<void>>();
    if (opts.oneshots > 0) {
      timers.push(
        setInterval(() => {
          const p = world
            .exec([blast, 'udp', BLOCKED_DST, String(ONESHOT_PORT), '1', '0'], { uid: CLIENT_UID, timeoutMs: 30_000 })
            .then((r) => {
              oneshotRuns++;
              const sent = (JSON.parse(r.stdout || '{}') as { sent?: number }).sent;
              if (r.code !== 0 || sent === undefined) oneshotFailed++;
              else oneshotSent += sent;
            })
            .catch(() => {
              oneshotFailed++;
            })
            .finally(() => oneshotPending.delete(p));
          oneshotPending.add(p);
        }, 1000 / opts.oneshots),
      );
    }

    // ------------------------------------------------------------ the DNS load, minute by minute
    say(`Load: ${opts.minutes} chunks of ${CHUNK_S} s`);
    const minutes: Minute[] = [];
    const pooled: number[] = [];
    let cpuPrev = procSample(pid)?.cpuS ?? NaN;
    let tPrev = Date.now();
    let pipePrev = p0;
    for (let m = 0; m < opts.minutes; m++) {
      const t0 = Date.now();
      happenings.push({ t: t0, what: `dnsperf chunk ${m + 1} starts` });
      const r = await dnsperf(['-l', String(CHUNK_S), '-Q', String(opts.rate), '-q', String(OUTSTANDING), '-v'], CHUNK_S);
      const t1 = Date.now();
      happenings.push({ t: t1, what: `dnsperf chunk ${m + 1} ended` });
      const perf = parsePerf(r.stdout);
      const lat = parseVerbose(r.stdout);
      for (let i = lat.length; i < perf.sent; i++) lat.push(Infinity);
      for (const x of lat) pooled.push(x);
      const pc = percentiles(lat);
      // The slowest answer, placed in time: responses come in about the order the paced queries left.
      let iMax = -1;
      for (let i = 0; i < lat.length; i++) if (Number.isFinite(lat[i] as number) && (iMax < 0 || (lat[i] as number) > (lat[iMax] as number))) iMax = i;
      const maxAt = iMax >= 0 ? t0 + (iMax / opts.rate) * 1000 : NaN;
      const maxLat = iMax >= 0 ? (lat[iMax] as number) : NaN;
      // What happened from when that query left (about maxAt - its latency) to NEAR_MS after its answer.
      const near = Number.isFinite(maxAt)
        ? happenings
            .filter((h) => h.t >= maxAt - maxLat - NEAR_MS && h.t <= maxAt + NEAR_MS && !h.what.startsWith('RSS/fd'))
            .sort((a, b) => a.t - b.t)
            .map((h) => `${((h.t - maxAt) / 1000).toFixed(2)} s: ${h.what}`)
        : [];
      const ps = procSample(pid);
      const now = Date.now();
      const cpuPct = ps ? (100 * (ps.cpuS - cpuPrev)) / ((now - tPrev) / 1000) : NaN;
      cpuPrev = ps?.cpuS ?? NaN;
      const pipeNow = await scrape();
      const storedPerS = pipeNow && pipePrev ? (pipeNow.stored - pipePrev.stored) / ((now - tPrev) / 1000) : NaN;
      const upstreamTimeouts = pipeNow && pipePrev ? pipeNow.upstreamTimeouts - pipePrev.upstreamTimeouts : NaN;
      tPrev = now;
      pipePrev = pipeNow ?? pipePrev;
      const row: Minute = {
        minute: m + 1,
        startedAt: new Date(t0).toISOString(),
        sent: perf.sent,
        answered: perf.completed,
        lost: perf.lost,
        qps: perf.completed / Math.max(1e-9, perf.runSeconds),
        p50: pc.p50,
        p99: pc.p99,
        p999: pc.p999,
        max: pc.max,
        maxAt,
        maxNear: near,
        rcodes: perf.rcodes,
        cpuPct,
        rssMB: ps ? ps.rssKb / 1024 : NaN,
        heapMB: (pipeNow?.heap ?? NaN) / MB,
        fds: ps?.fds ?? NaN,
        learned: pipeNow?.learned ?? NaN,
        storedPerS,
        upstreamTimeouts,
      };
      minutes.push(row);
      say(
        `  ${String(m + 1).padStart(3)}/${opts.minutes}  ${fmtInt(row.qps)} q/s answered, ${row.lost} lost, p50 ${fmtMs(row.p50)} p99 ${fmtMs(row.p99)} max ${fmtMs(row.max)} ms (at +${tRel(maxAt).toFixed(1)} s); RSS ${row.rssMB.toFixed(1)} MB, heap ${row.heapMB.toFixed(1)} MB, ${row.fds} fds, CPU ${row.cpuPct.toFixed(1)}%, ${fmtInt(row.storedPerS)} events/s stored (${((t1 - t0) / 1000).toFixed(1)} s)`,
      );
    }
    const loadEnd = Date.now();

    // ------------------------------------------------------------ stop the load, drain, collect
    for (const t of timers) clearInterval(t);
    timers.length = 0;
    const longResult = await longSender;
    await Promise.all([...oneshotPending]);
    const long = JSON.parse(longResult.stdout || '{}') as { sent?: number; errors?: number; seconds?: number };
    if (longResult.code !== 0 || long.sent === undefined) throw new Error(`the blocked sender failed (${longResult.code}): ${longResult.stderr}`);
    const blockedSent = long.sent + oneshotSent;
    say();
    say(`Load stopped at +${tRel(loadEnd).toFixed(0)} s; the long-lived sender sent ${fmtInt(long.sent)} in ${(long.seconds ?? 0).toFixed(1)} s; ${fmtInt(oneshotRuns)} one-shot senders ran (${oneshotFailed} failed), sending ${fmtInt(oneshotSent)}`);

    // Drain: until every blocked packet the kernel counted is stored, held back or counted lost (at most 30 s).
    let pEnd = (await scrape()) as Pipeline;
    for (let i = 0; i < 300; i++) {
      pEnd = (await scrape()) ?? pEnd;
      if (pEnd.stored + pEnd.suppressed + pEnd.nflogLost + pEnd.dropped + pEnd.malformed >= pEnd.kernelBlocked) break;
      await sleep(100);
    }
    // The last alert window closes up to ALERT_WINDOW_S after the last event: wait for the counts to add up (or the window and 20 s more).
    const alertSum = () => alerts.filter((a) => a.trigger === 'blocked').reduce((s, a) => s + a.count, 0);
    const alertDeadline = Date.now() + (ALERT_WINDOW_S + 20) * 1000;
    say(`Waiting for the last alert window (up to ${ALERT_WINDOW_S + 20} s) ...`);
    while (alertSum() < pEnd.stored && Date.now() < alertDeadline) await sleep(500);
    pEnd = (await scrape()) ?? pEnd;
    const statsJson = await world.sluiceJson<{
      events: { total: number; byVerdict: Record<string, number> } | null;
      pipeline: { records: number; seqGaps: number; overflows: number; collectorDrops: number; storeDrops: number; malformed: number } | null;
      kernel: Record<string, { packets: number }> | null;
    }>(['stats', '--since', '24h']);
    const endSample = procSample(pid);

    // ------------------------------------------------------------ probe: stalls, collections, memory
    type ProbeLine = { t: number; loopMaxMs?: number; loopP99Ms?: number; heapUsed?: number; heapTotal?: number; external?: number; arrayBuffers?: number; rss?: number; gc?: string; ms?: number };
    const probe: ProbeLine[] = opts.probe && existsSync(probeOut) ? readFileSync(probeOut, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProbeLine) : [];
    const perSecond = probe.filter((p) => p.loopMaxMs !== undefined && p.t >= loadStart && p.t <= loadEnd);
    const gcs = probe.filter((p) => p.gc !== undefined && p.t >= loadStart && p.t <= loadEnd);
    const stalls = [...perSecond].sort((a, b) => (b.loopMaxMs ?? 0) - (a.loopMaxMs ?? 0)).slice(0, 8);
    const gcLongest = [...gcs].sort((a, b) => (b.ms ?? 0) - (a.ms ?? 0)).slice(0, 5);
    const nearOf = (t: number, span = NEAR_MS) =>
      happenings
        .filter((h) => Math.abs(h.t - t) <= span && !h.what.startsWith('RSS/fd'))
        .concat(gcs.filter((g) => Math.abs(g.t - t) <= span).map((g) => ({ t: g.t, what: `GC ${g.gc} ${(g.ms ?? 0).toFixed(0)} ms` })))
        .sort((a, b) => a.t - b.t)
        .map((h) => `${((h.t - t) / 1000).toFixed(2)} s: ${h.what}`)
        .slice(0, 12);
    // RSS steps at 1-s resolution (the probe), the largest rises.
    const steps: { t: number; mb: number }[] = [];
    for (let i = 1; i < perSecond.length; i++) {
      const a = perSecond[i - 1] as ProbeLine;
      const b = perSecond[i] as ProbeLine;
      if (a.rss !== undefined && b.rss !== undefined) steps.push({ t: b.t, mb: (b.rss - a.rss) / MB });
    }
    const bigSteps = [...steps].sort((a, b) => b.mb - a.mb).slice(0, 6).sort((a, b) => a.t - b.t);

    // ------------------------------------------------------------ report
    const finished = new Date();
    say();
    say('Per minute (RSS, fds: at the minute\'s end; heap: the daemon\'s process_heap_bytes, V8 heap used; CPU: share of one core over the minute)');
    say(`  ${'min'.padStart(4)} ${'RSS MB'.padStart(8)} ${'heap MB'.padStart(8)} ${'fds'.padStart(5)} ${'CPU %'.padStart(6)} ${'q/s ans'.padStart(8)} ${'lost'.padStart(6)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'max ms'.padStart(7)} ${'ev/s'.padStart(6)} ${'learned'.padStart(8)} ${'up t/o'.padStart(6)}`);
    for (const r of minutes) {
      say(
        `  ${String(r.minute).padStart(4)} ${r.rssMB.toFixed(1).padStart(8)} ${r.heapMB.toFixed(1).padStart(8)} ${String(r.fds).padStart(5)} ${r.cpuPct.toFixed(1).padStart(6)} ${fmtInt(r.qps).padStart(8)} ${String(r.lost).padStart(6)} ${fmtMs(r.p50).padStart(7)} ${fmtMs(r.p99).padStart(7)} ${fmtMs(r.max).padStart(7)} ${fmtInt(r.storedPerS).padStart(6)} ${fmtInt(r.learned).padStart(8)} ${String(r.upstreamTimeouts).padStart(6)}`,
      );
    }
    say('  ev/s: blocked events stored per second; learned: sluice_dns_learned_addresses; up t/o: the guard\'s upstream timeouts in the minute');
    say(`  minute 1 includes the cold start: the daemon had just started, and in the first ${Math.ceil(opts.names / opts.rate)} s every name is new to the guard and its set`);
    say();

    say('Samples every 30 s (minutes since the load started)');
    say(`  ${'t min'.padStart(6)} ${'RSS MB'.padStart(8)} ${'anon'.padStart(7)} ${'file'.padStart(6)} ${'shmem'.padStart(6)} ${'heap MB'.padStart(8)} ${'fds'.padStart(5)} ${'thr'.padStart(4)} ${'CPU s'.padStart(8)} ${'learned'.padStart(8)}`);
    for (const s of samples) {
      say(
        `  ${s.min.toFixed(2).padStart(6)} ${(s.rssKb / 1024).toFixed(1).padStart(8)} ${(s.anonKb / 1024).toFixed(1).padStart(7)} ${(s.fileKb / 1024).toFixed(1).padStart(6)} ${(s.shmemKb / 1024).toFixed(1).padStart(6)} ${fmtMB(s.heap).padStart(8)} ${String(s.fds).padStart(5)} ${String(s.threads).padStart(4)} ${s.cpuS.toFixed(1).padStart(8)} ${fmtInt(s.learned).padStart(8)}`,
      );
    }
    say();

    // Totals: queries.
    const qSent = minutes.reduce((s, r) => s + r.sent, 0);
    const qAnswered = minutes.reduce((s, r) => s + r.answered, 0);
    const qLost = minutes.reduce((s, r) => s + r.lost, 0);
    const all = percentiles(pooled);
    const worst = [...minutes].sort((a, b) => b.max - a.max)[0];
    // The first minute holds the cold start (every name new to the guard and its set): the slowest answer after it too.
    const worstWarm = [...minutes].filter((r) => r.minute > 1).sort((a, b) => b.max - a.max)[0];
    say('Totals');
    say(`  DNS queries: sent ${fmtInt(qSent)}, answered ${fmtInt(qAnswered)}, lost ${fmtInt(qLost)} (dnsperf -t ${opts.timeout} s)`);
    say(`    over the whole run: p50 ${fmtMs(all.p50)} ms, p99 ${fmtMs(all.p99)} ms, p99.9 ${fmtMs(all.p999)} ms, max ${fmtMs(all.max)} ms`);
    if (baseline) {
      const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');
      say(
        `    against NSD directly (baseline, same load, ${opts.baselineSeconds} s before the daemon started): p50 ${ratio(all.p50, baseline.p50)}, p99 ${ratio(all.p99, baseline.p99)}, max ${ratio(all.max, baseline.max)} (baseline p50 ${fmtMs(baseline.p50)}, p99 ${fmtMs(baseline.p99)}, max ${fmtMs(baseline.max)} ms)`,
      );
    }
    const dnsGuard = pEnd.dnsAnswered - (p0?.dnsAnswered ?? 0);
    say(`    the guard's own count (sluice_dns_queries_total) over the load: ${fmtInt(dnsGuard)}; upstream timeouts ${fmtInt(pEnd.upstreamTimeouts - (p0?.upstreamTimeouts ?? 0))}`);

    // Totals: blocked attempts.
    const d = (k: keyof Pipeline) => pEnd[k] - (p0?.[k] ?? 0);
    const stored = d('stored');
    const suppressed = d('suppressed');
    const losses = d('nflogLost') + d('dropped') + d('malformed');
    const unaccounted = blockedSent - stored - suppressed - losses;
    const storeBlocked = statsJson.json.events?.byVerdict.blocked ?? NaN;
    say(`  blocked attempts: sent ${fmtInt(blockedSent)} (long-lived ${fmtInt(long.sent)}, one-shots ${fmtInt(oneshotSent)}); the kernel counted ${fmtInt(d('kernelBlocked'))} blocked packets (#default deny)`);
    say(`    stored ${fmtInt(stored)} (sluice_events_stored_total; the store itself, sluice stats: ${fmtInt(storeBlocked)} blocked events), held back by the log budget ${fmtInt(suppressed)} (kernel counters), counted losses ${fmtInt(losses)} (NFLOG gaps ${d('nflogLost')}, dropped ${d('dropped')}, malformed ${d('malformed')})`);
    say(`    unaccounted = sent - stored - held back - counted losses = ${fmtInt(unaccounted)}${unaccounted === 0 ? '' : '  <-- NOT 0'}`);
    const pl = statsJson.json.pipeline;
    if (pl) say(`    sluice stats pipeline (cumulative): records ${fmtInt(pl.records)}, seqGaps ${pl.seqGaps}, overflows ${pl.overflows}, collectorDrops ${pl.collectorDrops}, storeDrops ${pl.storeDrops}, malformed ${pl.malformed}`);
    const blockedAlerts = alerts.filter((a) => a.trigger === 'blocked');
    say(`  alerts: ${blockedAlerts.length} blocked messages received by the webhook (${alerts.length} in all), counts summing to ${fmtInt(alertSum())}, against ${fmtInt(pEnd.stored)} blocked events stored since the daemon started: difference ${fmtInt(alertSum() - pEnd.stored)}`);
    say(`    sluice_alerts_delivered_total ${fmtInt(pEnd.alertsDelivered)}, queued ${pEnd.alertsQueued}`);
    say();

    // RSS verdict.
    const fullPts = samples.map((s) => ({ x: s.min, y: s.rssKb / 1024 }));
    const endMin = fullPts[fullPts.length - 1]?.x ?? 0;
    const warm = endMin >= WARMUP_MIN + 2 ? WARMUP_MIN : 0;
    const mid = warm + (endMin - warm) / 2;
    const firstHalf = fullPts.filter((p) => p.x >= warm && p.x <= mid);
    const secondHalf = fullPts.filter((p) => p.x >= mid);
    const s1 = slope(firstHalf);
    const s2 = slope(secondHalf);
    const rss1 = minutes[0]?.rssMB ?? NaN;
    const rssEnd = minutes[minutes.length - 1]?.rssMB ?? NaN;
    let verdict: string;
    if (!Number.isFinite(s1) || !Number.isFinite(s2)) verdict = 'not enough samples for a slope';
    else if (warm === 0) verdict = `no verdict: the run is too short (slopes ${fmtSlope(s1)} then ${fmtSlope(s2)}, warm-up included)`;
    else if (s2 <= 0.1) verdict = `growth stops: no rise in the second half (${fmtSlope(s2)}, at most +0.1 MB/min)`;
    else if (s2 < s1 / 2) verdict = `growth slows (second half ${fmtSlope(s2)} against ${fmtSlope(s1)}) but has not stopped within the run`;
    else verdict = `growth does NOT stop: second half ${fmtSlope(s2)} against ${fmtSlope(s1)} (about ${(s2 * 60 * 24).toFixed(0)} MB a day at that rate)`;
    say('RSS verdict');
    say(`  minute 1 ${rss1.toFixed(1)} MB, last minute ${rssEnd.toFixed(1)} MB (${(rssEnd / rss1).toFixed(3)}x minute 1); peak RSS (VmHWM) ${((endSample?.hwmKb ?? NaN) / 1024).toFixed(1)} MB`);
    say(`  slope after ${warm} min warm-up: first half (${warm.toFixed(1)}-${mid.toFixed(1)} min, ${firstHalf.length} samples) ${fmtSlope(s1)}, second half (${mid.toFixed(1)}-${endMin.toFixed(1)} min, ${secondHalf.length} samples) ${fmtSlope(s2)}`);
    if (warm === 0) say(`  (the run is too short for the ${WARMUP_MIN}-minute warm-up and two halves after it: slopes over the whole run, not a verdict on whether growth stops)`);
    say(`  => ${verdict}`);
    const fd0 = samples[0]?.fds ?? NaN;
    const fdMax = Math.max(...samples.map((s) => s.fds));
    say(`  file descriptors: ${fd0} at the start, ${samples[samples.length - 1]?.fds ?? NaN} at the end, at most ${fdMax}`);
    say();

    // Where the slow answers came from.
    say('Slow answers and event-loop stalls');
    if (worst) {
      say(`  the slowest answer: ${fmtMs(worst.max)} ms in minute ${worst.minute}, at about +${tRel(worst.maxAt).toFixed(1)} s after the load started (+${((worst.maxAt - daemonStarted) / 1000).toFixed(1)} s after the daemon started); within ${NEAR_MS / 1000} s of it:`);
      for (const n of nearOf(worst.maxAt, NEAR_MS + Math.ceil(worst.max))) say(`    ${n}`);
    }
    if (worstWarm && worstWarm !== worst) {
      say(`  the slowest answer after minute 1: ${fmtMs(worstWarm.max)} ms in minute ${worstWarm.minute}, at about +${tRel(worstWarm.maxAt).toFixed(1)} s (daemon +${((worstWarm.maxAt - daemonStarted) / 1000).toFixed(1)} s); within ${NEAR_MS / 1000} s of it:`);
      for (const n of nearOf(worstWarm.maxAt, NEAR_MS + Math.ceil(worstWarm.max))) say(`    ${n}`);
    }
    if (opts.probe) {
      say(`  the daemon's event loop (probe, per second): longest delays`);
      for (const s of stalls) {
        say(`    +${tRel(s.t).toFixed(0)} s (daemon +${((s.t - daemonStarted) / 1000).toFixed(0)} s): max ${fmtMs(s.loopMaxMs ?? NaN)} ms in the second before`);
        // The stall was somewhere in the second before the probe's line: what happened then.
        if ((s.loopMaxMs ?? 0) >= 100) for (const n of nearOf(s.t - 500, 1000).slice(0, 6)) say(`      ${n}`);
      }
      const loopMaxes = perSecond.map((p) => p.loopMaxMs ?? 0).sort((a, b) => a - b);
      say(`    per-second loop maxima over the run: median ${fmtMs(quantile(loopMaxes, 0.5))} ms, p99 ${fmtMs(quantile(loopMaxes, 0.99))} ms, seconds over 100 ms: ${loopMaxes.filter((x) => x > 100).length}, over 500 ms: ${loopMaxes.filter((x) => x > 500).length}`);
      say(`  garbage collections of 10 ms or more: ${gcs.length}; longest ${gcLongest.map((g) => `${g.gc} ${(g.ms ?? 0).toFixed(0)} ms at +${tRel(g.t).toFixed(0)} s`).join(', ') || 'none'}`);
      const lastMem = perSecond[perSecond.length - 1];
      const firstMem = perSecond.find((p) => p.t - loadStart >= WARMUP_MIN * 60_000) ?? perSecond[0];
      if (lastMem && firstMem) {
        const f = (p: ProbeLine, k: 'heapUsed' | 'heapTotal' | 'external' | 'arrayBuffers' | 'rss') => fmtMB(p[k] ?? NaN);
        say(`  memory (probe), +${tRel(firstMem.t).toFixed(0)} s -> end: rss ${f(firstMem, 'rss')} -> ${f(lastMem, 'rss')} MB, heap used ${f(firstMem, 'heapUsed')} -> ${f(lastMem, 'heapUsed')}, heap total ${f(firstMem, 'heapTotal')} -> ${f(lastMem, 'heapTotal')}, external ${f(firstMem, 'external')} -> ${f(lastMem, 'external')}, array buffers ${f(firstMem, 'arrayBuffers')} -> ${f(lastMem, 'arrayBuffers')}`);
      }
      say(`  largest one-second RSS rises: ${bigSteps.map((s) => `+${s.mb.toFixed(2)} MB at +${tRel(s.t).toFixed(0)} s`).join(', ') || 'none'}`);
    } else {
      say('  (probe off: no event-loop delays, collections or per-second memory)');
    }
    say(`  daemon log lines during the run: ${daemonLog.length}${daemonLog.length ? `; last: ${daemonLog[daemonLog.length - 1]?.line.slice(0, 200)}` : ''}`);
    say();

    // ------------------------------------------------------------ output
    const outDir = join(ROOT, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `soak-${started.toISOString().replace(/[:.]/g, '-')}.json`);
    const report = {
      benchmark: 'soak',
      provenance: prov,
      started: started.toISOString(),
      finished: finished.toISOString(),
      machine: { kernel: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? null, node: process.version, loadavgAtEnd: loadavg(), dnsperf: dnsperfVersion },
      options: opts,
      method: {
        zone: `${opts.names} names h<i>.${SUFFIX}, one A record each from ${addrOf(0)}, TTL ${TTL}; NSD on ${UPSTREAM}`,
        dns: `dnsperf -s ${UPSTREAM} -l ${CHUNK_S} -Q ${opts.rate} -q ${OUTSTANDING} -c ${opts.clients} -t ${opts.timeout} -v as uid ${CLIENT_UID}, one chunk per minute, redirected to the guard by the kernel`,
        blocked: `blast udp ${BLOCKED_DST} ${BLOCKED_PORT} ${blockedCount} ${opts.blocked} (one process) + ${opts.oneshots}/s blast udp ${BLOCKED_DST} ${ONESHOT_PORT} 1 0, uid ${CLIENT_UID}`,
        scrapes: `GET /metrics on STATE/metrics.sock every ${SCRAPE_EVERY_MS / 1000} s`,
        samples: `/proc/PID/status, /proc/PID/fd, /proc/PID/stat every ${SAMPLE_EVERY_MS / 1000} s`,
        probe: opts.probe ? PROBE : null,
        policy: soakPolicy(opts),
      },
      baseline,
      minutes,
      samples,
      scrapes,
      totals: {
        queries: { sent: qSent, answered: qAnswered, lost: qLost, latencyMs: all, guardCounted: dnsGuard },
        blocked: { sent: blockedSent, longLived: long, oneshots: { runs: oneshotRuns, failed: oneshotFailed, sent: oneshotSent }, kernel: d('kernelBlocked'), stored, storeBlocked, suppressed, losses, unaccounted },
        alerts: { messages: blockedAlerts.length, all: alerts.length, countSum: alertSum(), storedSinceStart: pEnd.stored, received: alerts },
      },
      rss: { minute1MB: rss1, lastMB: rssEnd, warmupMin: warm, firstHalfSlopeMBPerMin: s1, secondHalfSlopeMBPerMin: s2, verdict },
      probe: opts.probe ? { stalls, gcLongest, gcCount: gcs.length, bigSteps, perSecond, gcs } : null,
      daemonLog,
      statsJson: statsJson.json,
      endSample,
      metricsFirst: firstScrape,
      metricsLast: lastScrape,
    };
    writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
    say(`Wrote ${outFile}`);
    say(`  load average at the end ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    stopping = true;
    for (const t of timers) clearInterval(t);
    await teardown(w, daemon, receiver, say);
    rmSync(tmp, { recursive: true, force: true });
    rmSync(dirname(blast), { recursive: true, force: true });
  }
}

/** Stops the daemon (SIGTERM, as a service manager would) and the receiver, destroys the World, and says whether anything was left. */
async function teardown(w: World | undefined, daemon: ChildProcess | undefined, receiver: ChildProcess | undefined, say: (s?: string) => void): Promise<void> {
  if (!w) return;
  const pids = new Set<number>();
  for (const ns of [w.client, w.world]) {
    for (const p of (spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean)) pids.add(Number(p));
  }
  for (const p of [daemon, receiver]) {
    if (!p || p.exitCode !== null || p.signalCode !== null) continue;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([exited, sleep(15_000)]);
  }
  await w.destroy();
  let left: number[] = [];
  for (let i = 0; i < 50; i++) {
    left = [...pids].filter((p) => existsSync(`/proc/${p}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${p}/status`, 'utf8')));
    if (left.length === 0) break;
    await sleep(100);
  }
  const listed = (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '').split('\n').map((l) => l.split(' ')[0]);
  const nsLeft = [w.client, w.world].filter((ns) => listed.includes(ns));
  say(`Teardown: namespaces ${nsLeft.length ? `LEFT: ${nsLeft.join(' ')}` : 'deleted'}; ${pids.size} processes had run in them, ${left.length ? `STILL PRESENT: ${left.join(' ')}` : 'all ended'}`);
}

run(main);
