/**
 * Event pipeline benchmark: blocked traffic at rising rates through the real
 * kernel, NFLOG, the collector (attribution) and the SQLite store.
 *
 *   npm run bench:events [-- --seconds S] [--phases tcp:40000,udp:0,...] [--probes on|off|both] [--cpu-prof DIR]
 *                                            (BENCH_SECONDS, default 3 per phase; rate 0 = as fast as it goes)
 *
 * One World (client and world namespaces). The daemon runs in the client
 * namespace on an enforce policy whose log budget is far above the offered
 * rate (so the pipeline, not the kernel limit, is what is measured). A small
 * C sender (bench/tools/blast.c, compiled here) runs as uid 65534 and sends
 * blocked TCP connects (refused with a reset) or UDP datagrams at a fixed
 * rate. For each phase the kernel's own counter is the reference:
 *
 *   kernel packets = stored + suppressed (kernel limit) + lost (NFLOG sequence gaps) + dropped (queues) + malformed
 *
 * and the report prints ratios: stored / kernel, unaccounted / kernel, the
 * attributed fraction, events stored per second, the collector's CPU (share
 * of one core) and memory. One-shot phases fork a new process per attempt
 * (it sends once and exits). Every phase runs twice in the same run: with
 * the attribution probes, and with them off (SLUICE_EBPF=off: the socket
 * table alone, as before them), so the attributed fraction and the
 * collector's CPU are compared on the same machine at the same rates. A last section compares the store's durability
 * settings (synchronous FULL vs NORMAL) on the same batches.
 * Nothing here passes or fails on time; results also go to bench/out/.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteStore } from '../src/events/sqlite-store.js';
import type { RecordedEvent } from '../src/events/event-store.js';
import { scrapeMetrics } from '../test/support/monitor-helpers.js';
import { compileBlast } from '../test/support/blast.js';
import { provenance } from './lib/provenance.js';
import { HOSTS, ROOT, World } from '../test/world/world.js';
import { installExitHandlers, numOption, run } from './lib/stats.js';

installExitHandlers();

const NOBODY = 65534;

const POLICY = `
mode: enforce
block_with: reject
log:
  rate: 1000000
  burst: 1000000
  user_rate: 1000000
  user_burst: 1000000
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
`;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The daemon's metrics, over its root-only Unix socket. */
const metrics = (w: World): Promise<string> => scrapeMetrics(w);

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

interface Snapshot {
  kernel: number;
  stored: number;
  suppressed: number;
  lost: number;
  dropped: number;
  malformed: number;
  attributed: number;
  ambiguous: number;
  none: number;
  cpu: number;
  overflows: number;
}

function snapshot(m: string): Snapshot {
  return {
    kernel: metric(m, 'sluice_rule_packets_total', '{action="deny",mode="enforce",rule="#default"}'),
    stored: metric(m, 'sluice_events_stored_total', '{verdict="blocked"}'),
    suppressed: metric(m, 'sluice_log_suppressed_total', '{budget="shared",kind="block"}') + metric(m, 'sluice_log_suppressed_total', '{budget="user",kind="block"}'),
    lost: metric(m, 'sluice_nflog_lost_records_total'),
    dropped: metric(m, 'sluice_events_dropped_total', '{stage="collector"}') + metric(m, 'sluice_events_dropped_total', '{stage="store"}'),
    malformed: metric(m, 'sluice_nflog_malformed_total'),
    attributed: ['kernel', 'socket', 'cgroup', 'user'].reduce((s, k) => s + metric(m, 'sluice_events_attributed_total', `{method="${k}"}`), 0),
    ambiguous: metric(m, 'sluice_events_attributed_total', '{method="ambiguous"}'),
    none: metric(m, 'sluice_events_attributed_total', '{method="none"}'),
    cpu: metric(m, 'process_cpu_seconds_total'),
    overflows: metric(m, 'sluice_nflog_overflows_total'),
  };
}

function diff(a: Snapshot, b: Snapshot): Snapshot {
  const out = { ...b };
  for (const k of Object.keys(out) as (keyof Snapshot)[]) out[k] = b[k] - a[k];
  return out;
}

function rss(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

interface Phase {
  proto: 'tcp' | 'udp' | 'forktcp' | 'forkudp';
  rate: number;
}

async function main(): Promise<void> {
  const prov = provenance('npm run bench:events');
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { seconds: { type: 'string' }, phases: { type: 'string' }, probes: { type: 'string' }, 'cpu-prof': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'npm run bench:events [-- --seconds S] [--phases P,...] [--probes on|off|both] [--cpu-prof DIR]\n' +
        '  --seconds   seconds per phase (BENCH_SECONDS, default 3)\n' +
        '  --phases    only these phases, each KIND:RATE (tcp, udp, forktcp, forkudp; rate 0 = as fast as it goes)\n' +
        '  --probes    run with the attribution probes on, off, or both (default both)\n' +
        '  --cpu-prof  write the daemon\'s CPU profiles (node --cpu-prof) to DIR\n',
    );
    return;
  }
  const probeRuns = values.probes === undefined || values.probes === 'both' ? (['off', 'on'] as const) : values.probes === 'on' || values.probes === 'off' ? ([values.probes] as const) : undefined;
  if (!probeRuns) throw new Error(`--probes: on, off or both, not ${values.probes}`);
  const SECONDS = numOption(values.seconds, 'BENCH_SECONDS', 3, { min: 0.5, max: 600, int: false });
  const blast = compileBlast();

  const w = await World.create({ servers: false });
  let daemon: ChildProcess | undefined;
  const results: Record<string, unknown>[] = [];
  const wanted = values.phases !== undefined ? new Set(values.phases.split(',').map((x) => x.trim())) : undefined;
  const allPhases: Phase[] = [
    { proto: 'tcp', rate: 2_000 },
    { proto: 'tcp', rate: 5_000 },
    { proto: 'tcp', rate: 10_000 },
    { proto: 'tcp', rate: 20_000 },
    { proto: 'tcp', rate: 40_000 },
    { proto: 'tcp', rate: 0 },
    { proto: 'udp', rate: 20_000 },
    { proto: 'udp', rate: 50_000 },
    { proto: 'udp', rate: 0 },
    { proto: 'forktcp', rate: 100 },
    { proto: 'forktcp', rate: 500 },
    { proto: 'forktcp', rate: 1_000 },
    { proto: 'forkudp', rate: 500 },
    { proto: 'forkudp', rate: 1_000 },
  ];
  const phases = allPhases.filter((ph) => !wanted || wanted.has(`${ph.proto}:${ph.rate}`));
  if (phases.length === 0) throw new Error(`--phases ${values.phases}: no such phase (KIND:RATE, as listed in bench/events.ts)`);
  const byProbes = { on: new Map<string, { attributed: number; cpu: number }>(), off: new Map<string, { attributed: number; cpu: number }>() };
  try {
    const policy = w.policy(POLICY);
    for (const probes of probeRuns) {
      const prof = values['cpu-prof'] !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}/${probes}`] : [];
      daemon = await w.spawnReady(w.client, [process.execPath, ...prof, join(ROOT, 'bin/sluice'), 'daemon', policy], {
        env: w.env(probes === 'off' ? { SLUICE_EBPF: 'off' } : {}),
        readyText: 'sluice daemon: running',
      });
      let log = '';
      daemon.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
      const pid = Number(readFileSync(join(w.stateDir, 'daemon.pid'), 'utf8'));
      await sleep(500);
      // Loading the probes takes a moment (more on a busy machine): wait for them where they should load.
      let loaded = metric(await metrics(w), 'sluice_attribution_probes_loaded') === 1;
      for (let i = 0; probes === 'on' && !loaded && i < 100; i++) {
        await sleep(100);
        loaded = metric(await metrics(w), 'sluice_attribution_probes_loaded') === 1;
      }
      if ((probes === 'on') !== loaded) {
        const why = log.split('\n').filter((l) => l.includes('kernel attribution')).join('\n');
        throw new Error(`attribution probes ${loaded ? 'loaded' : 'not loaded'} where they should ${probes === 'on' ? '' : 'not '}be: ${why || log}`);
      }
      console.log(`\nbench:events  attribution probes ${probes.toUpperCase()}  ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${SECONDS}s per phase, sender uid ${NOBODY}, daemon pid ${pid}`);
      console.log('reference: the kernel counter of the rule (exact); ratios are of it\n');
      console.log('phase          offered/s  sent/s   kernel   stored  stored/kernel  unaccounted  supp+lost+drop  stored ev/s  attributed  collector CPU  RSS (peak)');
      for (const ph of phases) {
        const count = ph.rate > 0 ? Math.round(ph.rate * SECONDS) : 150_000;
        const before = snapshot(await metrics(w));
        const t0 = Date.now();
        const port = ph.proto.endsWith('tcp') ? '443' : '5000';
        const r = await w.exec([blast, ph.proto, HOSTS.other4, port, String(count), String(ph.rate)], { uid: NOBODY, timeoutMs: 300_000 });
        const sender = JSON.parse(r.stdout || '{}') as { sent?: number; seconds?: number };
        // Drain: wait until every packet the kernel counted is accounted for (or 30 s pass).
        let d = diff(before, snapshot(await metrics(w)));
        let tDrained = Date.now();
        for (let i = 0; i < 300; i++) {
          d = diff(before, snapshot(await metrics(w)));
          tDrained = Date.now();
          if (d.stored + d.suppressed + d.lost + d.dropped + d.malformed >= d.kernel) break;
          await sleep(100);
        }
        const mem = rss(pid);
        const wall = (tDrained - t0) / 1000;
        const accounted = d.stored + d.suppressed + d.lost + d.dropped + d.malformed;
        const unaccounted = d.kernel - accounted;
        const attributedFrac = d.attributed / Math.max(1, d.attributed + d.ambiguous + d.none);
        const label = `${ph.proto.replace('fork', 'one-shot ')} ${ph.rate > 0 ? (ph.rate >= 1000 ? `${ph.rate / 1000}k/s` : `${ph.rate}/s`) : 'max'}`;
        const sentRate = (sender.sent ?? 0) / Math.max(1e-9, sender.seconds ?? 1);
        console.log(
          `${label.padEnd(14)} ${String(ph.rate || 'max').padStart(9)} ${Math.round(sentRate).toString().padStart(8)} ${String(d.kernel).padStart(8)} ${String(d.stored).padStart(8)}  ${pct(d.stored / Math.max(1, d.kernel)).padStart(13)}  ${pct(unaccounted / Math.max(1, d.kernel)).padStart(11)}  ${`${d.suppressed}+${d.lost}+${d.dropped}`.padStart(14)}  ${Math.round(d.stored / wall).toString().padStart(11)}  ${pct(attributedFrac).padStart(10)}  ${pct(d.cpu / wall).padStart(13)}  ${mib(mem.rss)} (${mib(mem.hwm)})`,
        );
        byProbes[probes].set(label, { attributed: attributedFrac, cpu: d.cpu / wall });
        results.push({ probes, phase: label, offered: ph.rate, sentPerSec: sentRate, sent: sender.sent, ...d, unaccounted, wallSeconds: wall, storedPerSec: d.stored / wall, attributedFraction: attributedFrac, cpuShare: d.cpu / wall, rss: mem.rss, rssPeak: mem.hwm });
      }
      const st = await w.sluice(['stats', '--since', '1h']);
      console.log(`\nsluice stats (pipeline lines):\n${st.stdout.split('\n').filter((l) => /records|lost|rate limit|nothing lost/.test(l)).join('\n')}`);
      const exited = new Promise((res) => daemon?.once('exit', res));
      daemon.kill('SIGTERM');
      await exited;
      daemon = undefined;
    }
    console.log('\nprobes ON against OFF, same phases (attributed fraction; collector CPU ratio, target at most 1.2 at the same rate)');
    for (const [label, on] of byProbes.on) {
      const off = byProbes.off.get(label);
      if (!off) continue;
      console.log(`  ${label.padEnd(14)} attributed ${pct(on.attributed).padStart(8)} (off: ${pct(off.attributed).padStart(8)})   CPU on/off ${(on.cpu / Math.max(1e-9, off.cpu)).toFixed(2)}`);
    }
  } finally {
    daemon?.kill('SIGTERM');
    await w.destroy();
    rmSync(dirname(blast), { recursive: true, force: true });
  }

  // Durability setting: the same batches written with synchronous FULL and NORMAL.
  console.log('\nstore durability: 200,000 events in batches of 2,000 (the daemon flushes every 100 ms or 5,000 events)');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-store-bench-'));
  const ev: RecordedEvent = { time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.2.20', sport: 40000, dport: 443, uid: 65534, user: 'nobody', iface: 'eth0', process: { pid: 1234, exe: '/usr/bin/curl', cmdline: 'curl https://198.18.2.20/', comm: 'curl' }, attribution: 'user' };
  const rates: Record<string, number> = {};
  try {
    for (const sync of ['normal', 'full'] as const) {
      const s = new SqliteStore(join(dir, `${sync}.db`), { synchronous: sync });
      const batch = Array.from({ length: 2000 }, (_, i) => ({ ...ev, sport: 40000 + (i % 20000) }));
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 100; i++) s.append(batch);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      s.close();
      rates[sync] = 200_000 / secs;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`  synchronous=NORMAL ${Math.round(rates.normal ?? 0)} events/s; FULL ${Math.round(rates.full ?? 0)} events/s; FULL/NORMAL = ${((rates.full ?? 0) / (rates.normal ?? 1)).toFixed(2)}`);

  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  const out = join(ROOT, 'bench/out', `events-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ benchmark: 'events', provenance: prov, finished: new Date().toISOString(), seconds: SECONDS, phases: results, store: rates }, null, 2));
  console.log(`\nresults: ${out}`);
}

run(main);
