/**
 * `sluice suggest` over a large history: 1,000,000 stored events.
 *
 *   npm run bench:suggest [-- --events N]      (default 1,000,000)
 *
 * Fills an event store in a temporary state directory (7 days of audit-mode
 * traffic: 20 users, 8 services, 6,000 names under 1,500 domains, 40
 * processes, 5 ports, each name mostly reached by one sender and program on
 * one port and a tenth of events from anyone; 90% would-block, 10% allowed),
 * then runs, each in
 * its own process under /usr/bin/time (wall time and peak RSS):
 *
 *   scan      the baseline: the same rows streamed with better-sqlite3's iterate and counted, nothing else
 *   suggest   `sluice suggest --since 30d --out FILE` (the command as a user runs it)
 *   check     `sluice suggest --check FILE --since 30d`
 *
 * and prints each against the scan (the floor any suggest over the store
 * pays). Nothing here passes or fails on time; the JSON goes to bench/out/.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RecordedEvent } from '../src/events/event-store.js';
import { SqliteStore } from '../src/events/sqlite-store.js';
import { ROOT } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';

const { values } = parseArgs({ options: { events: { type: 'string' } } });
const TOTAL = Number(values.events ?? process.env.BENCH_EVENTS ?? 1_000_000);
if (!Number.isSafeInteger(TOTAL) || TOTAL < 1) throw new Error(`bad --events: ${values.events}`);

/** A small deterministic generator (xorshift32), so every run stores the same history. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

function fill(path: string): number {
  const r = rng(20261206);
  const store = new SqliteStore(path, { synchronous: 'normal' });
  const now = Date.now();
  const start = now - 7 * 86_400_000;
  const ports = [443, 443, 443, 80, 123, 8080, 53];
  const procs = Array.from({ length: 40 }, (_, i) => ({ exe: `/usr/bin/prog${i}`, comm: `prog${i}` }));
  const units = Array.from({ length: 8 }, (_, i) => `svc${i}.service`);
  const t0 = performance.now();
  let batch: RecordedEvent[] = [];
  for (let i = 0; i < TOTAL; i++) {
    // Skewed: a few names take most of the traffic, as real workloads do.
    const n = Math.floor(6000 * r() ** 3);
    const host = `h${n}.d${n % 1500}.example${n % 7}.com`;
    // Each name is mostly reached by one program of one sender on one port (a workload talks to its own
    // hosts), with a tenth of the events from anyone, anywhere, so the distinct flows are many but not all.
    const stray = r() < 0.1;
    const pick = (k: number) => (stray ? Math.floor(r() * k) : n % k);
    const port = ports[pick(ports.length)] as number;
    const sender = pick(28);
    const svc = sender < 8;
    const p = procs[pick(procs.length)] as { exe: string; comm: string };
    const uid = svc ? 0 : 1000 + sender - 8;
    const unit = units[sender % units.length] as string;
    const e: RecordedEvent = {
      time: start + Math.floor((i / TOTAL) * 7 * 86_400_000),
      verdict: r() < 0.9 ? 'would-block' : 'allowed',
      rule: '#default',
      family: 4,
      proto: port === 123 || port === 53 ? 17 : 6,
      src: '198.18.0.2',
      dst: `198.18.${(n >> 8) & 0xff}.${n & 0xff}`,
      sport: 30000 + (i % 30000),
      dport: port,
      uid,
      user: svc ? 'root' : `user${uid - 1000}`,
      process: { pid: 100 + (i % 5000), exe: p.exe, comm: p.comm, ...(svc ? { unit, cgroup: `/system.slice/${unit}` } : { cgroup: `/user.slice/user-${uid}.slice/session-1.scope` }) },
      hostname: host,
      attribution: 'kernel',
    };
    batch.push(e);
    if (batch.length === 20_000) {
      store.append(batch);
      batch = [];
    }
  }
  store.append(batch);
  store.close();
  return performance.now() - t0;
}

interface Timed {
  seconds: number;
  peakRssMiB: number;
  code: number;
  stderr: string;
}

/** Runs argv under /usr/bin/time: wall seconds and peak RSS of the process. */
function timed(argv: string[], env: NodeJS.ProcessEnv): Timed {
  const r = spawnSync('/usr/bin/time', ['-f', 'TIME %e %M', ...argv], { env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const m = /TIME ([\d.]+) (\d+)\s*$/.exec(r.stderr);
  if (!m) throw new Error(`no /usr/bin/time output from ${argv.join(' ')}: ${r.stderr.slice(-500)}`);
  return { seconds: Number(m[1]), peakRssMiB: Number(m[2]) / 1024, code: r.status ?? -1, stderr: r.stderr.replace(/TIME [\d.]+ \d+\s*$/, '').trim() };
}

// For profiling: only fill a store at this path, and stop.
if (process.env.BENCH_SUGGEST_FILL_ONLY) {
  fill(process.env.BENCH_SUGGEST_FILL_ONLY);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-suggest-'));
try {
  const prov = provenance(`npm run bench:suggest -- --events ${TOTAL}`);
  const db = join(dir, 'events.db');
  const fillMs = fill(db);
  const env = { ...process.env, SLUICE_STATE_DIR: dir, SLUICE_POLICY: join(dir, 'none.yaml') };
  const scanScript = `const D=(await import(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3/lib/index.js'))})).default; const db=new D(${JSON.stringify(db)},{readonly:true}); let n=0; for (const r of db.prepare('SELECT * FROM events WHERE time >= ? ORDER BY id').iterate(0)) n++; console.log(n);`;
  const scan = timed([process.execPath, '--input-type=module', '-e', scanScript], env);
  const out = join(dir, 'suggested.yaml');
  const sluice = join(ROOT, 'bin/sluice');
  const suggest = timed([process.execPath, sluice, 'suggest', '--since', '30d', '--out', out], env);
  const check = timed([process.execPath, sluice, 'suggest', '--check', out, '--since', '30d'], env);
  const ruleCount = suggest.code === 0 ? (spawnSync('grep', ['-c', '^  - name:', out], { encoding: 'utf8' }).stdout.trim() || '0') : '-';
  const lines = [
    `bench:suggest  ${TOTAL.toLocaleString('en')} stored events (7 days), store ${(statSync(db).size / 1048576).toFixed(0)} MiB, filled in ${(fillMs / 1000).toFixed(1)} s`,
    `machine: ${prov.cpus} cores, Linux ${prov.kernel}, Node ${prov.node}, commit ${prov.commit?.slice(0, 7) ?? '?'}${prov.dirty ? ' (dirty)' : ''}; shared with other jobs`,
    '',
    'phase     seconds  x scan  peak RSS   exit',
    `scan      ${scan.seconds.toFixed(2).padStart(7)}  ${'1.00'.padStart(6)}  ${scan.peakRssMiB.toFixed(0).padStart(5)} MiB  ${scan.code}`,
    `suggest   ${suggest.seconds.toFixed(2).padStart(7)}  ${(suggest.seconds / scan.seconds).toFixed(2).padStart(6)}  ${suggest.peakRssMiB.toFixed(0).padStart(5)} MiB  ${suggest.code}   (${ruleCount} rules)`,
    `check     ${check.seconds.toFixed(2).padStart(7)}  ${(check.seconds / scan.seconds).toFixed(2).padStart(6)}  ${check.peakRssMiB.toFixed(0).padStart(5)} MiB  ${check.code}`,
    '',
    `suggest's summary (stderr):\n${suggest.stderr || '(none)'}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const outDir = join(ROOT, 'bench/out');
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `suggest-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ provenance: prov, events: TOTAL, fillMs, scan, suggest, check, rules: ruleCount }, null, 2)}\n`);
  process.stdout.write(`results: ${file}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
