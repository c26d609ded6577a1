/**
 * Apply benchmark (issue 14): how long loading a large blocklist takes, from
 * command start to exit, for Sluice and its peers, on the same content.
 *
 *   npm run bench:apply [-- --sizes 10000,100000,1000000 --reps N --big-reps N --iptables-timeout S]
 *   (or BENCH_APPLY_SIZES, BENCH_APPLY_REPS, BENCH_APPLY_BIG_REPS, BENCH_IPTABLES_TIMEOUT)
 *
 * For each size N, the same N distinct addresses (IPv4 hosts from
 * 198.18.0.0/15 while they last, 131,072 of them, then IPv6 hosts from
 * 2001:db8::/32; so 10k and 100k are all IPv4, 1M is 131,072 IPv4 and
 * 868,928 IPv6), as a deny list, loaded by:
 *   - sluice apply of a policy with the addresses as a YAML `to:` list;
 *   - sluice apply of a policy whose rule reads them from a list file (`to_file:`);
 *   - nft -f of an equivalent set-based ruleset (one hash set per family, one
 *     rule each): the kernel work Sluice also does, without Sluice;
 *   - iptables-restore (and ip6tables-restore for the IPv6 part) of the same
 *     list as linear rules, one a line, ufw-style: what Sluice replaces.
 * Each load runs in a network namespace of its own, created for it and
 * deleted after (so every load starts from no table, and nothing ever
 * touches the host's ruleset); Sluice gets a fresh state directory each
 * time. The time is the wall time from spawning the command (nsenter into
 * the namespace, the same for every tool) to its exit. Rounds rotate the
 * order of the tools; the reported figure is the median per tool and size,
 * and the ratios are against the peers measured in the same run. No traffic
 * is sent. No timing is asserted: this prints and records numbers (JSON in
 * bench/out/), it does not pass or fail.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';

interface Opts {
  sizes: number[];
  reps: number;
  bigReps: number;
  iptablesTimeout: number;
}

function parseOpts(argv: string[]): Opts {
  const get = (name: string, env: string, dflt: string): string => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : (process.env[env] ?? dflt);
  };
  const int = (s: string, what: string) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a whole number above 0: ${s}`);
    return n;
  };
  return {
    sizes: get('sizes', 'BENCH_APPLY_SIZES', '10000,100000,1000000').split(',').map((s) => int(s, '--sizes')),
    reps: int(get('reps', 'BENCH_APPLY_REPS', '5'), '--reps'),
    bigReps: int(get('big-reps', 'BENCH_APPLY_BIG_REPS', '2'), '--big-reps'),
    iptablesTimeout: int(get('iptables-timeout', 'BENCH_IPTABLES_TIMEOUT', '300'), '--iptables-timeout'),
  };
}

const NET_BASE = (198 << 24) | (18 << 16);
const NET_SIZE = 1 << 17;

/** The i-th address of the list: a permutation of 198.18.0.0/15, then IPv6 hosts in 2001:db8::/32. */
function address(i: number): { family: 4 | 6; text: string } {
  if (i < NET_SIZE) {
    const a = (NET_BASE + ((i * 40503 + 12345) % NET_SIZE)) >>> 0;
    return { family: 4, text: `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}` };
  }
  return { family: 6, text: `2001:db8::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}` };
}

interface Content {
  v4: string[];
  v6: string[];
}

function content(n: number): Content {
  const out: Content = { v4: [], v6: [] };
  for (let i = 0; i < n; i++) {
    const a = address(i);
    (a.family === 4 ? out.v4 : out.v6).push(a.text);
  }
  return out;
}

/** The files each tool loads, written once per size. */
function writeInputs(dir: string, n: number, c: Content): Record<string, string> {
  const all = [...c.v4, ...c.v6];
  const files: Record<string, string> = {
    yaml: join(dir, `policy-${n}.yaml`),
    listPolicy: join(dir, `list-policy-${n}.yaml`),
    list: join(dir, `feed-${n}.txt`),
    nft: join(dir, `ruleset-${n}.nft`),
    iptables: join(dir, `rules-${n}.v4`),
    ip6tables: join(dir, `rules-${n}.v6`),
  };
  const head = 'version: 1\nmode: enforce\ndefault: allow\nrules:\n  - name: feed\n    action: deny\n';
  writeFileSync(files.yaml as string, `${head}    to:\n${all.map((a) => `      - ${a}\n`).join('')}`);
  writeFileSync(files.list as string, `# bench/apply.ts: ${n} addresses\n${all.join('\n')}\n`, { mode: 0o644 });
  writeFileSync(files.listPolicy as string, `${head}    to_file: feed-${n}.txt\n`);
  const set = (name: string, type: string, list: string[]) => (list.length === 0 ? '' : `  set ${name} {\n    type ${type}\n    elements = { ${list.join(',\n')} }\n  }\n`);
  writeFileSync(
    files.nft as string,
    `table inet bench {\n${set('a4', 'ipv4_addr', c.v4)}${set('a6', 'ipv6_addr', c.v6)}  chain output {\n    type filter hook output priority filter; policy accept;\n${c.v4.length ? '    ip daddr @a4 reject\n' : ''}${c.v6.length ? '    ip6 daddr @a6 reject\n' : ''}  }\n}\n`,
  );
  const linear = (list: string[], len: number) => ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...list.map((a) => `-A OUTPUT -d ${a}/${len} -j REJECT`), 'COMMIT', ''].join('\n');
  writeFileSync(files.iptables as string, linear(c.v4, 32));
  writeFileSync(files.ip6tables as string, linear(c.v6, 128));
  return files;
}

interface Run {
  code: number | null;
  ms: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs argv in the namespace; the wall time from spawn to exit. */
function runIn(ns: string, argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - started;
      clearTimeout(timer);
      resolve({ code, ms, stdout, stderr, timedOut });
    });
  });
}

function mustRun(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err}`))));
  });
}

type Tool = 'sluice-yaml' | 'sluice-list' | 'nft' | 'iptables';
const TOOLS: Tool[] = ['sluice-yaml', 'sluice-list', 'nft', 'iptables'];
const LABEL: Record<Tool, string> = {
  'sluice-yaml': 'sluice apply, YAML to:',
  'sluice-list': 'sluice apply, to_file',
  nft: 'nft -f (set-based)',
  iptables: 'iptables-restore (linear)',
};

interface Sample {
  ms: number;
  /** Sluice's own figure for its kernel transaction (from --json), when it ran. */
  transactionMs?: number;
  /** iptables: the IPv4 and IPv6 parts' times (summed in ms). */
  parts?: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const fmt = (ms: number) => (Number.isNaN(ms) ? '-' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');

async function main(): Promise<void> {
  const opts = parseOpts(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench:apply needs root: it creates network namespaces');
  const prov = provenance('npm run bench:apply');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  say(`bench:apply: command start to exit, sizes ${opts.sizes.join(', ')}; ${opts.reps} rounds (${opts.bigReps} at 1,000,000 and above)`);
  say(`commit ${prov.commit ?? '?'}${prov.dirty ? ' (sources differ from it)' : ''}; kernel ${prov.kernel}; ${prov.cpus} CPUs; node ${prov.node}`);
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-apply-'));
  const nsPrefix = `sba-${process.pid}-`;
  let nsCount = 0;
  const live = new Set<string>();
  const cleanup = () => {
    for (const ns of live) spawn('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results: Record<string, Record<Tool, Sample[]> & { skipped?: Partial<Record<Tool, string>> }> = {};
  try {
    for (const n of opts.sizes) {
      const c = content(n);
      const files = writeInputs(tmp, n, c);
      const reps = n >= 1_000_000 ? opts.bigReps : opts.reps;
      const per = { 'sluice-yaml': [], 'sluice-list': [], nft: [], iptables: [] } as Record<Tool, Sample[]> & { skipped?: Partial<Record<Tool, string>> };
      results[String(n)] = per;
      say();
      say(`${n.toLocaleString('en-US')} addresses (${c.v4.length.toLocaleString('en-US')} IPv4, ${c.v6.length.toLocaleString('en-US')} IPv6):`);
      for (let round = 0; round < reps; round++) {
        // The order rotates each round, so no tool always runs first (or after the biggest).
        const order = TOOLS.map((_, k) => TOOLS[(k + round) % TOOLS.length] as Tool);
        for (const tool of order) {
          if (per.skipped?.[tool]) continue;
          const ns = `${nsPrefix}${nsCount++}`;
          await mustRun(['ip', 'netns', 'add', ns]);
          live.add(ns);
          try {
            const sample = await measure(tool, ns, files, tmp, opts, n);
            if ('skip' in sample) {
              per.skipped = { ...per.skipped, [tool]: sample.skip };
              say(`  ${LABEL[tool].padEnd(28)} ${sample.skip}: left out`);
            } else {
              per[tool].push(sample);
              say(`  round ${round + 1} ${LABEL[tool].padEnd(28)} ${fmt(sample.ms).padStart(8)}${sample.transactionMs !== undefined ? ` (kernel transaction ${fmt(sample.transactionMs)})` : ''}`);
            }
          } finally {
            await mustRun(['ip', 'netns', 'del', ns]);
            live.delete(ns);
          }
        }
      }
    }

    say();
    say('Medians, command start to exit (ratios: Sluice / peer, in this run):');
    say(`  ${'addresses'.padStart(10)}  ${TOOLS.map((t) => LABEL[t].padStart(26)).join('')}  ${'yaml/nft'.padStart(9)} ${'list/nft'.padStart(9)} ${'yaml/ipt'.padStart(9)} ${'list/ipt'.padStart(9)}`);
    const summary: Record<string, unknown> = {};
    for (const n of opts.sizes) {
      const per = results[String(n)] as Record<Tool, Sample[]>;
      const med = Object.fromEntries(TOOLS.map((t) => [t, median(per[t].map((s) => s.ms))])) as Record<Tool, number>;
      const tx = Object.fromEntries((['sluice-yaml', 'sluice-list'] as const).map((t) => [t, median(per[t].flatMap((s) => (s.transactionMs === undefined ? [] : [s.transactionMs])))]));
      say(
        `  ${n.toLocaleString('en-US').padStart(10)}  ${TOOLS.map((t) => fmt(med[t]).padStart(26)).join('')}  ${ratio(med['sluice-yaml'], med.nft).padStart(9)} ${ratio(med['sluice-list'], med.nft).padStart(9)} ${ratio(med['sluice-yaml'], med.iptables).padStart(9)} ${ratio(med['sluice-list'], med.iptables).padStart(9)}`,
      );
      summary[String(n)] = {
        medianMs: med,
        transactionMedianMs: tx,
        ratios: {
          yamlVsNft: med['sluice-yaml'] / med.nft,
          listVsNft: med['sluice-list'] / med.nft,
          yamlVsIptables: med['sluice-yaml'] / med.iptables,
          listVsIptables: med['sluice-list'] / med.iptables,
        },
        skipped: (results[String(n)] as { skipped?: unknown }).skipped ?? {},
      };
    }
    say('  (iptables: iptables-restore of the IPv4 part plus ip6tables-restore of the IPv6 part, each timed from start to exit)');
    const outDir = join(ROOT, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `apply-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      outFile,
      `${JSON.stringify(
        {
          bench: 'apply',
          provenance: prov,
          options: opts,
          method: {
            content: 'N distinct hosts: a permutation of 198.18.0.0/15 (up to 131,072), then 2001:db8::/32; a deny list',
            namespaces: 'a new network namespace per load, deleted after; a fresh Sluice state directory per load',
            timing: 'wall time from spawning nsenter into the namespace to the exit of the command',
            order: 'tools rotate each round',
            iptables: 'iptables-restore (v4) + ip6tables-restore (v6), sequential, times summed; linear -A OUTPUT -d ADDR -j REJECT rules',
            nft: 'nft -f: table inet bench, one hash set per family, ip/ip6 daddr @set reject in an output hook chain',
          },
          summary,
          samples: results,
        },
        null,
        2,
      )}\n`,
    );
    say();
    say(`Wrote ${outFile}`);
  } finally {
    cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** One load of one tool in namespace `ns`: its sample, or why it was left out. */
async function measure(tool: Tool, ns: string, files: Record<string, string>, tmp: string, opts: Opts, n: number): Promise<Sample | { skip: string }> {
  const sluice = join(ROOT, 'bin', 'sluice');
  if (tool === 'sluice-yaml' || tool === 'sluice-list') {
    const state = join(tmp, `state-${ns}`);
    try {
      const r = await runIn(ns, [process.execPath, sluice, 'apply', (tool === 'sluice-yaml' ? files.yaml : files.listPolicy) as string, '--json'], { ...process.env, SLUICE_STATE_DIR: state }, 600_000);
      if (r.code !== 0) throw new Error(`sluice apply (${tool}, ${n}) failed (${r.code}): ${r.stderr.slice(0, 2000)}${r.stdout.slice(0, 2000)}`);
      const json = JSON.parse(r.stdout) as { ms?: number; elements?: number };
      if ((json.elements ?? 0) < n) throw new Error(`sluice apply loaded ${json.elements} elements, not ${n}`);
      return { ms: r.ms, ...(json.ms !== undefined ? { transactionMs: json.ms } : {}) };
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  }
  if (tool === 'nft') {
    const r = await runIn(ns, ['nft', '-f', files.nft as string], process.env, 600_000);
    if (r.code !== 0) throw new Error(`nft -f (${n}) failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
    return { ms: r.ms };
  }
  const parts: number[] = [];
  let budget = opts.iptablesTimeout * 1000;
  for (const [cmd, file, count] of [
    ['iptables-restore', files.iptables, n >= NET_SIZE ? NET_SIZE : n],
    ['ip6tables-restore', files.ip6tables, Math.max(0, n - NET_SIZE)],
  ] as const) {
    if (count === 0) continue;
    const r = await runIn(ns, [cmd, file as string], process.env, budget);
    if (r.timedOut) return { skip: `${cmd} did not finish within ${opts.iptablesTimeout} s (killed)` };
    if (r.code !== 0) throw new Error(`${cmd} (${n}) failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
    parts.push(r.ms);
    budget -= r.ms;
  }
  return { ms: parts.reduce((a, b) => a + b, 0), parts };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:apply: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
