/**
 * What each attribution probe costs per run, from the kernel's own BPF
 * statistics (kernel.bpf_stats_enabled, switched on for the measurement and
 * back to what it was): back-to-back TCP connects (bench/tools/connload.c)
 * with the probes attached, then run_time_ns / run_cnt per program, and the
 * runs per connect.
 *
 *   node dist/bench/probe-cost.js [SECONDS]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadProbes, unloadProbes } from '../src/monitor/kernel-attribution.js';
import { HOSTS, ROOT, World } from '../test/world/world.js';

const seconds = Number(process.argv[2] ?? 3);
const SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
const dir = mkdtempSync(join(tmpdir(), 'probe-cost-'));
const tool = (name: string) => {
  const out = join(dir, name);
  const r = spawnSync('cc', ['-O2', '-o', out, join(ROOT, 'bench/tools', `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return out;
};
const connload = tool('connload');
const acceptd = tool('acceptd');
const before = readFileSync(SYSCTL, 'utf8').trim();
const w = await World.create({ servers: false });
try {
  await w.spawnReady(w.world, [acceptd, HOSTS.api4, '443']);
  const st = loadProbes();
  if (!st.loaded) throw new Error(`probes did not load: ${st.reason}`);
  writeFileSync(SYSCTL, '1');
  const read = () => {
    const r = spawnSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' });
    const progs = JSON.parse(r.stdout) as { name?: string; run_time_ns?: number; run_cnt?: number }[];
    const mine = new Map<string, { ns: number; n: number }>();
    for (const p of progs) if (p.name && ['tcp_syn_sent', 'tcp_connect4', 'tcp_connect6', 'tcp_connect_cb', 'udp_sent', 'process_exec'].includes(p.name)) mine.set(p.name, { ns: p.run_time_ns ?? 0, n: p.run_cnt ?? 0 });
    return mine;
  };
  const a = read();
  const r = await w.exec([connload, HOSTS.api4, '443', String(seconds), '250'], { timeoutMs: (seconds + 30) * 1000 });
  const b = read();
  writeFileSync(SYSCTL, before);
  const conns = (JSON.parse(r.stdout) as { connects?: number; total?: number }) as Record<string, unknown>;
  const total = Number(conns.connects ?? conns.total ?? conns.count ?? NaN);
  console.log(`connload: ${JSON.stringify(conns).slice(0, 200)}`);
  for (const [name, v] of b) {
    const o = a.get(name) ?? { ns: 0, n: 0 };
    const n = v.n - o.n;
    const ns = v.ns - o.ns;
    console.log(`${name.padEnd(16)} runs ${String(n).padStart(9)}  ${(n ? ns / n : 0).toFixed(0).padStart(6)} ns/run  ${Number.isFinite(total) && total > 0 ? `${(n / total).toFixed(2)} runs/connect, ${(ns / total).toFixed(0)} ns/connect` : ''}`);
  }
} finally {
  writeFileSync(SYSCTL, before);
  unloadProbes();
  await w.destroy();
  rmSync(dir, { recursive: true, force: true });
}
