/**
 * Ruleset A/B: what a few nftables rulesets, written as nft text, cost a new
 * outbound TCP connection, each against the minimal stateful ruleset measured
 * in the same round. The tool for finding where a compiled ruleset's time
 * goes: dump Sluice's table (`nft list table inet sluice` in a namespace),
 * change one thing per file, and compare.
 *
 *   npm run bench:ruleset-ab -- [--rounds N] [--seconds S] FILE.nft ...
 *
 * Each file gets its own World (client and world namespaces, test/world/
 * world.ts), loaded with `nft -f` in the client namespace only; the world
 * runs bench/tools/acceptd.c on 198.18.1.10:443 and the client runs
 * bench/tools/connload.c (blocking connect + RST close, one at a time), as
 * bench:datapath does. Rounds go round-robin in serpentine order over: no
 * firewall, the minimal ruleset, then the files. Printed per file: the median
 * over the rounds of its rate / the minimal ruleset's rate in the same round,
 * and of its client CPU per connect minus the minimal's (us; the softirq work
 * of the packet path is on that CPU). A file must allow 198.18.1.10:443/tcp
 * (checked before the rounds). Nothing is asserted.
 *
 * nft text cannot say everything Sluice writes over netlink (`meta mark set
 * socket cgroupv2 level N` does not parse in nft 1.0.6): leave such lines out
 * of the block chains, which an allowed connection never enters.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { HOSTS, ROOT, World } from '../test/world/world.js';
import { check, installExitHandlers, median, numOption, run, UsageError } from './lib/stats.js';
import { provenance } from './lib/provenance.js';

const SERVER = HOSTS.api4;
const PORT = 443;
const SLICE_MS = 50;

const MINIMAL_NFT = `table inet bench_minimal {
  chain output {
    type filter hook output priority 0; policy drop;
    ct state established,related accept
    ip daddr ${SERVER} tcp dport ${PORT} accept
  }
}
`;

const USAGE = `Usage: npm run bench:ruleset-ab -- [--rounds N] [--seconds S] FILE.nft ...

  --rounds N    rounds (default 16)
  --seconds S   load per sample, seconds (default 0.5)`;

interface Sample {
  slices: number[];
  slice_ms: number;
  rate: number;
  cpu_us_per_connect: number;
  errors: number;
}

installExitHandlers();

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ args: process.argv.slice(2), strict: true, allowPositionals: true, options: { rounds: { type: 'string' }, seconds: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positionals.length === 0) throw new UsageError('name at least one ruleset file (nft text)');
  const rounds = numOption(values.rounds, 'BENCH_ROUNDS', 16, { min: 1, int: true });
  const seconds = numOption(values.seconds, 'BENCH_SECONDS', 0.5, { min: 0.05, int: false });
  const say = (s = '') => process.stdout.write(`${s}\n`);
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-ab-'));
  const worlds: World[] = [];
  try {
    const tools = { connload: join(tmp, 'connload'), acceptd: join(tmp, 'acceptd') };
    for (const [name, bin] of Object.entries(tools)) {
      const r = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, join(ROOT, 'bench', 'tools', `${name}.c`)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gcc ${name}.c failed: ${r.stderr}`);
    }
    const configs: { name: string; text: string | null; world?: World; rate: number[]; cpu: number[] }[] = [
      { name: 'no firewall', text: null, rate: [], cpu: [] },
      { name: 'minimal stateful', text: MINIMAL_NFT, rate: [], cpu: [] },
      ...positionals.map((f) => ({ name: basename(f), text: readFileSync(f, 'utf8'), rate: [], cpu: [] })),
    ];
    say(`Ruleset A/B, ${new Date().toISOString()}: kernel ${release()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`);
    say(`  ${rounds} rounds x ${seconds} s per ruleset, serpentine; connload to ${SERVER}:${PORT}`);
    for (const c of configs) {
      const w = await World.create({ servers: false });
      worlds.push(w);
      c.world = w;
      await w.spawnReady(w.world, [tools.acceptd, SERVER, String(PORT)]);
      if (c.text !== null) check(await w.exec(['nft', '-f', '-'], { input: c.text }), `loading ${c.name}`);
      const reach = await w.reach([`tcp:${SERVER}:${PORT}`], { timeoutMs: 1000 });
      if (reach[`tcp:${SERVER}:${PORT}`] !== true) throw new Error(`${c.name}: ${SERVER}:${PORT} is not reachable: the ruleset must allow it`);
    }
    const load = async (w: World): Promise<Sample> => JSON.parse(check(await w.exec([tools.connload, SERVER, String(PORT), String(seconds), String(SLICE_MS)]), 'connload').stdout) as Sample;
    const rateOf = (s: Sample) => (s.slices.length ? (median(s.slices) * 1000) / s.slice_ms : s.rate);
    for (const c of configs) await load(c.world as World);
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? configs : [...configs].reverse();
      const got = new Map<(typeof configs)[number], Sample>();
      for (const c of order) got.set(c, await load(c.world as World));
      const min = got.get(configs[1] as (typeof configs)[number]) as Sample;
      for (const c of configs) {
        const s = got.get(c) as Sample;
        c.rate.push(rateOf(s) / rateOf(min));
        c.cpu.push(s.cpu_us_per_connect - min.cpu_us_per_connect);
      }
      say(`  round ${round + 1}/${rounds}`);
    }
    say();
    say('ruleset                            rate / minimal   CPU per connect - minimal (us)');
    for (const c of configs) say(`  ${c.name.padEnd(32)} ${median(c.rate).toFixed(3).padStart(14)}   ${median(c.cpu).toFixed(2).padStart(8)}`);
    const outDir = join(ROOT, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, `ruleset-ab-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, `${JSON.stringify({ benchmark: 'ruleset-ab', provenance: provenance('npm run bench:ruleset-ab'), rounds, seconds, results: configs.map((c) => ({ name: c.name, rateVsMinimal: c.rate, cpuMinusMinimalUs: c.cpu })) }, null, 2)}\n`);
    say(`Wrote ${out}`);
  } finally {
    for (const w of worlds) await w.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }
}

run(main);
