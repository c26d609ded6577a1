/**
 * Tamper-to-restore: how long the table stays changed when another process
 * changes it while `sluice daemon` runs. Four kinds of tamper, COUNT each,
 * done with `nft` in the client namespace of a World (test/world/world.ts:
 * only 198.18.0.0/15 and loopback; the machine's own namespace is never
 * touched): the table deleted, the first jump of the output chain deleted,
 * an accept rule inserted at the top of it, an address added to a DNS-filled
 * set. Each is timed on one nf_tables notification socket, from nft's
 * transaction to the daemon's restoring one (bench/tamper-probe.ts).
 *
 * Baseline, same run: the same ruleset written straight through netlink by
 * the probe (one replace, no detection): the ratio is what detection, the
 * check under the state lock and the read-back add to a bare restore.
 *
 *   npm run bench:tamper [-- --count N --addresses N]   (BENCH_COUNT, BENCH_ADDRESSES)
 *
 * Nothing is asserted; results also go to bench/out/tamper-*.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, World } from '../test/world/world.js';
import { provenance } from './lib/provenance.js';
import { check, fmtInt, installExitHandlers, numOption, quantile, run, stat } from './lib/stats.js';

async function main(): Promise<void> {
  installExitHandlers();
  const { values } = parseArgs({ options: { count: { type: 'string' }, addresses: { type: 'string' }, help: { type: 'boolean' } } });
  if (values.help) {
    process.stdout.write('usage: npm run bench:tamper [-- --count N (100) --addresses N (10000)]\n');
    return;
  }
  const COUNT = numOption(values.count, 'BENCH_COUNT', 100, { min: 5, max: 10_000, int: true });
  const ADDRESSES = numOption(values.addresses, 'BENCH_ADDRESSES', 10_000, { min: 1, max: 32_000, int: true });
  const prov = provenance('npm run bench:tamper');
  const say = (s = '') => process.stdout.write(`${s}\n`);
  say(`Tamper-to-restore: ${COUNT} tampers of each kind; the policy has a DNS rule and ${fmtInt(ADDRESSES)} static addresses (commit ${prov.commit?.slice(0, 7) ?? '?'}${prov.dirty ? ', dirty' : ''}, Linux ${prov.kernel}, ${prov.cpus} cores)`);

  const w = await World.create({ servers: false });
  try {
    const addrs = Array.from({ length: ADDRESSES }, (_, i) => `198.19.${128 + (i >> 8)}.${i & 255}`);
    const policy = w.policy(`mode: enforce\ndns:\n  upstreams: [198.18.0.53]\nrules:\n  - name: api\n    to: [api.sluice.test]\n    ports: [443/tcp]\n  - name: lan\n    to: [${addrs.join(', ')}]\n`, 'tamper-bench.yaml');
    check(await w.sluice(['apply', policy]), 'sluice apply');
    const daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', '--metrics', 'off'], { env: w.env(), readyText: 'running', timeoutMs: 60_000 });
    const pid = Number(readFileSync(join(w.stateDir, 'daemon.pid'), 'utf8').trim());
    const set = /set (r_api_d4) \{/.exec((await w.exec(['nft', '-t', 'list', 'table', 'inet', 'sluice'])).stdout)?.[1];
    if (!set) throw new Error('no DNS set r_api_d4 in the table');
    const r = check(await w.exec([process.execPath, join(ROOT, 'dist/bench/tamper-probe.js'), '--count', String(COUNT), '--daemon-pid', String(pid), '--set', set], { timeoutMs: 600_000 }), 'tamper probe');
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) as string) as { results: Record<string, number[]>; baseline: number[]; lost: number };
    const exited = new Promise((res) => daemon.once('exit', res));
    daemon.kill('SIGTERM');
    await exited;

    const base = stat(out.baseline);
    const fmt = (x: number) => x.toFixed(1);
    say('');
    say(`  ${'tamper'.padEnd(22)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'max ms'.padStart(8)}   p50 / bare restore p50`);
    const rows: Record<string, { p50: number; p99: number; max: number; ratio: number; n: number }> = {};
    for (const [kind, xs] of Object.entries(out.results)) {
      const s = [...xs].sort((a, b) => a - b);
      const row = { p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s[s.length - 1] ?? NaN, ratio: quantile(s, 0.5) / base.median, n: s.length };
      rows[kind] = row;
      say(`  ${kind.padEnd(22)} ${fmt(row.p50).padStart(8)} ${fmt(row.p99).padStart(8)} ${fmt(row.max).padStart(8)}   ${row.ratio.toFixed(2)}`);
    }
    const all = Object.values(out.results).flat().sort((a, b) => a - b);
    say(`  ${'all'.padEnd(22)} ${fmt(quantile(all, 0.5)).padStart(8)} ${fmt(quantile(all, 0.99)).padStart(8)} ${fmt(all[all.length - 1] ?? NaN).padStart(8)}`);
    say(`  bare restore (the same ruleset written straight through netlink): p50 ${fmt(base.median)} ms (95% CI ${fmt(base.ciLow)}-${fmt(base.ciHigh)}), max ${fmt(base.max)} ms`);
    say(`  notifications lost at the probe: ${out.lost}`);
    mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
    const file = join(ROOT, 'bench/out', `tamper-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify({ benchmark: 'tamper', provenance: prov, finished: new Date().toISOString(), count: COUNT, addresses: ADDRESSES, rows, baselineMs: base, samples: out }, null, 2));
    say(`  results: ${file}`);
  } finally {
    await w.destroy();
  }
}

run(main);
