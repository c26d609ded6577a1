/**
 * What the attribution probes cost each TCP connect: back-to-back connects
 * (bench/tools/connload.c, the datapath benchmark's client) to a server in
 * another namespace, rounds alternating without the probes (the baseline)
 * and with them, no firewall, so that only the probes differ. Prints the
 * connection rate with the probes as a ratio of the rate without, and, from
 * the kernel's own BPF statistics (kernel.bpf_stats_enabled, on for the
 * measurement and set back to what it was), each program's runs and time a
 * connect. The statistics add two clock reads to every run, so their times
 * are upper bounds; the rate ratio is measured with them off.
 *
 *   npm run bench:probes [-- --rounds N --seconds S]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadProbes, unloadProbes } from '../src/monitor/kernel-attribution.js';
import { HOSTS, ROOT, World } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';
import { fmtRatio, median, stat } from './lib/stats.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '10' }, seconds: { type: 'string', default: '1' } } });
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
if (!Number.isInteger(rounds) || rounds < 1 || !(seconds > 0)) {
  console.error('usage: npm run bench:probes [-- --rounds N --seconds S]');
  process.exit(2);
}
const SYSCTL = '/proc/sys/kernel/bpf_stats_enabled';
const PROGRAMS = ['tcp_syn_sent', 'tcp_connect_cb', 'udp_sent', 'process_exec'];
const dir = mkdtempSync(join(tmpdir(), 'probe-cost-'));
const tool = (name: string): string => {
  const out = join(dir, name);
  const r = spawnSync('gcc', ['-O2', '-Wall', '-o', out, join(ROOT, 'bench/tools', `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}.c: ${r.stderr}`);
  return out;
};

/** run_time_ns and run_cnt of this object's programs, by name. */
function programStats(): Map<string, { ns: number; runs: number }> {
  const r = spawnSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bpftool prog show: ${r.stderr}`);
  const out = new Map<string, { ns: number; runs: number }>();
  for (const p of JSON.parse(r.stdout) as { name?: string; run_time_ns?: number; run_cnt?: number }[]) {
    if (p.name && PROGRAMS.includes(p.name)) out.set(p.name, { ns: p.run_time_ns ?? 0, runs: p.run_cnt ?? 0 });
  }
  return out;
}

const statsBefore = readFileSync(SYSCTL, 'utf8').trim();
const w = await World.create({ servers: false });
try {
  const connload = tool('connload');
  await w.spawnReady(w.world, [tool('acceptd'), HOSTS.api4, '443']);
  const load = async (secs: number): Promise<number> => {
    const r = await w.exec([connload, HOSTS.api4, '443', String(secs), '250'], { timeoutMs: (secs + 30) * 1000 });
    if (r.code !== 0) throw new Error(`connload: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { connects: number }).connects;
  };
  const prov = provenance('npm run bench:probes');
  console.log(`bench:probes: ${rounds} rounds x ${seconds} s each side, alternating; commit ${prov.commit ?? '?'}${prov.dirty ? ' (with changes)' : ''}; kernel ${release()}; ${cpus().length} CPUs; node ${process.version}`);
  const ratios: number[] = [];
  const without: number[] = [];
  const withProbes: number[] = [];
  await load(1); // warm-up
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    const got: Record<string, number> = {};
    for (const probes of order) {
      if (probes) {
        const st = loadProbes();
        if (!st.loaded) throw new Error(`the probes did not load: ${st.reason}`);
      }
      try {
        got[String(probes)] = (await load(seconds)) / seconds;
      } finally {
        if (probes) unloadProbes();
      }
    }
    without.push(got.false as number);
    withProbes.push(got.true as number);
    ratios.push((got.true as number) / (got.false as number));
    console.log(`  ${String(i + 1).padStart(2)}/${rounds}: without ${Math.round(got.false as number)}/s, with ${Math.round(got.true as number)}/s`);
  }
  console.log(`\nconnects/s without the probes (baseline): ${Math.round(median(without))}; with: ${Math.round(median(withProbes))}`);
  console.log(`rate with the probes / without: ${fmtRatio(stat(ratios))}`);

  // Per program, with the kernel's statistics on (a separate load: they slow every run a little).
  const st = loadProbes();
  if (!st.loaded) throw new Error(`the probes did not load: ${st.reason}`);
  try {
    writeFileSync(SYSCTL, '1');
    const a = programStats();
    const n = await load(seconds);
    const b = programStats();
    writeFileSync(SYSCTL, statsBefore);
    console.log(`\nper program, kernel.bpf_stats_enabled=1, ${n} connects:`);
    let total = 0;
    for (const [name, v] of b) {
      const o = a.get(name) ?? { ns: 0, runs: 0 };
      const runs = v.runs - o.runs;
      const ns = v.ns - o.ns;
      total += ns;
      console.log(`  ${name.padEnd(16)} ${(runs / n).toFixed(2).padStart(6)} runs a connect, ${(runs ? ns / runs : 0).toFixed(0).padStart(5)} ns a run, ${(ns / n).toFixed(0).padStart(5)} ns a connect`);
    }
    console.log(`  all programs: ${(total / n).toFixed(0)} ns a connect`);
  } finally {
    unloadProbes();
  }
} finally {
  writeFileSync(SYSCTL, statsBefore);
  await w.destroy();
  rmSync(dir, { recursive: true, force: true });
}
