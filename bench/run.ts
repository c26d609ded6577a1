/**
 * `sluice run` start-up benchmark (issue 13): what a short command pays for
 * running under `sluice run`, and what any `sluice` command pays to start.
 *
 *   npm run bench:run [-- --reps N]   (or BENCH_RUN_REPS; default 20)
 *
 * Two comparisons, each alternating its two sides round by round, medians
 * with their 95% confidence intervals, and the ratio and the difference in
 * milliseconds against the baseline measured in the same run:
 *   - `true` run directly against `sluice run -- true` (namespace, veth,
 *     table, guard, report and cleanup included). Both are started the same
 *     way, by nsenter into a network namespace made for the benchmark that
 *     plays the host (nothing touches the machine's own namespace), and timed
 *     from spawn to exit. Target: under 150 ms added.
 *   - `node -e 0` against `sluice --version`: the cost of starting the CLI.
 *     Target: at most 1.5 times.
 * No timing is asserted: this prints and records numbers (JSON in bench/out/).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';
import { installExitHandlers, stat, type Stat } from './lib/stats.js';

function wall(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const [cmd, ...rest] = argv;
    const p = spawn(cmd as string, rest, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => {
      const ms = performance.now() - start;
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}: ${err.slice(0, 2000)}`));
      else resolve(ms);
    });
  });
}

function must(argv: string[]): Promise<void> {
  return wall(argv).then(() => undefined);
}

const fmt = (s: Stat) => `${s.median.toFixed(1)} ms (${s.ciLow.toFixed(1)}-${s.ciHigh.toFixed(1)})`;

async function main(): Promise<void> {
  installExitHandlers();
  if (process.getuid?.() !== 0) throw new Error('bench:run needs root: it creates a network namespace');
  const i = process.argv.indexOf('--reps');
  const reps = Number(i >= 0 ? process.argv[i + 1] : (process.env.BENCH_RUN_REPS ?? 20));
  if (!Number.isInteger(reps) || reps < 3) throw new Error(`--reps must be a whole number of at least 3: ${reps}`);
  const prov = provenance('npm run bench:run');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  say(`bench:run: ${reps} rounds, sides alternating; commit ${prov.commit ?? '?'}${prov.dirty ? ' (sources differ from it)' : ''}; kernel ${prov.kernel}; ${prov.cpus} CPUs; node ${prov.node}`);
  const ns = `sbr-${process.pid}`;
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-bench-run-'));
  const env = { ...process.env, SLUICE_RUN_DIR: join(tmp, 'run'), SLUICE_RUN_NET4: '198.18.192.0/18', SLUICE_RUN_NET6: '2001:db8:5c::/48' };
  const sluice = join(ROOT, 'bin/sluice');
  await must(['ip', 'netns', 'add', ns]);
  try {
    await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    const inNs = (argv: string[]) => ['nsenter', `--net=/run/netns/${ns}`, '--', ...argv];
    const direct: number[] = [];
    const run: number[] = [];
    const node0: number[] = [];
    const version: number[] = [];
    // One of each first, not counted: page cache, the addon's first load.
    await wall(inNs([process.execPath, sluice, 'run', '--dns-upstream', '198.18.0.53', '--', 'true']), env);
    await wall([process.execPath, sluice, '--version']);
    for (let r = 0; r < reps; r++) {
      const a = () => wall(inNs(['true']), env).then((ms) => direct.push(ms));
      const b = () => wall(inNs([process.execPath, sluice, 'run', '--dns-upstream', '198.18.0.53', '--', 'true']), env).then((ms) => run.push(ms));
      const c = () => wall([process.execPath, '-e', '0']).then((ms) => node0.push(ms));
      const d = () => wall([process.execPath, sluice, '--version']).then((ms) => version.push(ms));
      for (const f of r % 2 === 0 ? [a, b, c, d] : [b, a, d, c]) await f();
    }
    const sDirect = stat(direct);
    const sRun = stat(run);
    const sNode = stat(node0);
    const sVersion = stat(version);
    say();
    say(`  true, directly             ${fmt(sDirect)}`);
    say(`  sluice run -- true         ${fmt(sRun)}`);
    say(`    added: ${(sRun.median - sDirect.median).toFixed(1)} ms (target < 150 ms); ratio ${(sRun.median / sDirect.median).toFixed(1)}x`);
    say(`  node -e 0                  ${fmt(sNode)}`);
    say(`  sluice --version           ${fmt(sVersion)}`);
    say(`    ratio: ${(sVersion.median / sNode.median).toFixed(2)}x node -e 0 (target <= 1.5x); added ${(sVersion.median - sNode.median).toFixed(1)} ms`);
    const outDir = join(ROOT, 'bench', 'out');
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `run-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(
      outFile,
      `${JSON.stringify(
        {
          bench: 'run',
          provenance: prov,
          reps,
          method: 'wall time from spawn to exit; sides alternate each round; `true` and `sluice run -- true` both via nsenter into a namespace made for the benchmark',
          summary: {
            directMs: sDirect,
            runMs: sRun,
            runAddedMs: sRun.median - sDirect.median,
            nodeMs: sNode,
            versionMs: sVersion,
            versionRatio: sVersion.median / sNode.median,
          },
          samples: { direct, run, node0, version },
        },
        null,
        2,
      )}\n`,
    );
    say(`\nwrote ${outFile}`);
  } finally {
    await wall(['ip', 'netns', 'del', ns]).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:run: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
