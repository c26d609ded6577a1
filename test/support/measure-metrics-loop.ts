/**
 * Measures how long a /metrics scrape blocks the event loop that answers DNS,
 * before and after scrapes moved to a worker thread. Run as root inside a
 * test network namespace (it writes table inet sluice there):
 *
 *   node measure-metrics-loop.js RULES SCRAPES
 *
 * It applies a policy of RULES rules (one kernel counter each), then serves
 * SCRAPES sequential scrapes from another process in two ways, on the same
 * registry and table:
 *  - before: the request handled on the event loop, as the daemon used to
 *    (kernel counter dump, labelling and rendering inside the handler);
 *  - after: MetricsServer (worker thread), the event loop only taking a
 *    snapshot of in-process values (snapshotMinMs 0: one per scrape, the
 *    worst case; the daemon's default coalesces to one per 250 ms).
 * For each it prints the event loop's time spent per scrape and its delay
 * histogram (perf_hooks monitorEventLoopDelay) while the scrapes ran. Numbers
 * only: nothing here passes or fails on time.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import { MetricsServer } from '../../src/daemon/metrics-server.js';
import { Registry, renderExposition } from '../../src/runtime/metrics.js';
import { kernelCounterFamilies, type KernelMetricsContext } from '../../src/daemon/kernel-counter-metrics.js';
import { KernelNetfilter } from '../../src/netfilter/kernel-netfilter.js';
import { parsePolicy } from '../../src/policy/load-policy.js';

const [rulesText, scrapesText] = process.argv.slice(2);
const RULES = Number(rulesText ?? 2000);
const SCRAPES = Number(scrapesText ?? 200);
const LOOP = fileURLToPath(new URL('./scrape-loop.js', import.meta.url));

const lines = ['mode: enforce', 'rules:'];
for (let i = 0; i < RULES; i++) lines.push(`  - name: r${i}`, `    to: [198.18.${Math.floor(i / 250)}.${i % 250}]`, '    ports: [443/tcp]');
const policy = parsePolicy(Buffer.from(`${lines.join('\n')}\n`), 'measure.yaml', { lookupUsers: () => new Map() });
const { ruleset } = compileRuleset(policy, { cgroups: new Map() });
const nf = new KernelNetfilter();
nf.replace(ruleset);
const context: KernelMetricsContext = { mode: policy.mode, defaultAction: policy.defaultAction, actions: Object.fromEntries(policy.rules.map((r) => [r.name, r.action])) };

// In-process values of about the daemon's size: ~40 families.
const registry = new Registry();
for (let f = 0; f < 40; f++) {
  const c = registry.counter(`sluice_measure_${f}_total`, 'A stand-in for an in-process counter');
  for (let s = 0; s < 4; s++) c.inc({ stage: `s${s}` }, f * s);
}

function scrapeFrom(path: string): Promise<{ ok: number; failed: number; ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOOP, path, String(SCRAPES)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(JSON.parse(out) as { ok: number; failed: number; ms: number; bytes: number }));
  });
}

interface Result {
  scrapes: { ok: number; failed: number; ms: number; bytes: number };
  /** Event-loop time spent on scrapes, per scrape (ms). */
  blockedPerScrapeMs: { mean: number; max: number };
  /** The event loop's delay while the scrapes ran (ms). */
  loopDelayMs: { mean: number; p99: number; max: number };
}

async function measure(path: string, spent: () => { total: number; max: number; n: number }): Promise<Result> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const scrapes = await scrapeFrom(path);
  h.disable();
  const s = spent();
  const ms = (ns: number) => Math.round((ns / 1e6) * 1000) / 1000;
  return {
    scrapes,
    blockedPerScrapeMs: { mean: Math.round((s.total / Math.max(1, s.n)) * 1000) / 1000, max: Math.round(s.max * 1000) / 1000 },
    loopDelayMs: { mean: ms(h.mean), p99: ms(h.percentile(99)), max: ms(h.max) },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'sluice-measure-'));
try {
  // Before: everything in the request handler, on the event loop.
  const spentBefore = { total: 0, max: 0, n: 0 };
  const old = createServer((_req, res) => {
    const t0 = performance.now();
    const text = renderExposition([...registry.snapshot(), ...kernelCounterFamilies(nf.counters(TABLE_NAME), context)]);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(text);
    const dt = performance.now() - t0;
    spentBefore.total += dt;
    spentBefore.max = Math.max(spentBefore.max, dt);
    spentBefore.n++;
  });
  const oldPath = join(dir, 'old.sock');
  await new Promise<void>((r) => old.listen(oldPath, () => r()));
  const before = await measure(oldPath, () => spentBefore);
  await new Promise<void>((r) => old.close(() => r()));

  // After: the worker thread; the event loop only snapshots in-process values.
  const server = new MetricsServer({ registry, unixPath: join(dir, 'new.sock'), tcp: null, table: TABLE_NAME, context: () => context, snapshotMinMs: 0 });
  await server.start();
  const after = await measure(join(dir, 'new.sock'), () => ({ total: server.stats.snapshotMs, max: server.stats.snapshotMaxMs, n: server.stats.snapshots }));
  await server.stop();

  process.stdout.write(`${JSON.stringify({ rules: RULES, counters: ruleset.counters.length, before, after })}\n`);
} finally {
  nf.remove(TABLE_NAME);
  nf.close();
  rmSync(dir, { recursive: true, force: true });
}
