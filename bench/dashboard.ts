/**
 * The dashboard's Live page under load: does it stay smooth with 1,000
 * events a second arriving, and is the page's memory bounded?
 *
 *   npm run bench:dashboard [-- --seconds S] [--rate R]     (default 60 s per phase, 1000 events/s)
 *
 * One World; `sluice daemon` enforces in the client namespace with the
 * dashboard on and a log budget far above the rate. Debian's Chromium
 * (playwright-core, inside the namespace) signs in and opens the Live page.
 * Two phases in the same run, with the same page: idle (no events: the
 * baseline), then the load: bench/tools/blast.c sends R blocked UDP
 * datagrams a second as uid 65534, each one a stored event and a row on the
 * page. Measured in the page: frame intervals (requestAnimationFrame; 16.7 ms
 * at 60 Hz is smooth), long tasks (the browser's PerformanceObserver: main-
 * thread tasks over 50 ms), rows added, and, through the DevTools protocol,
 * the JS heap and DOM node count at the end of each phase. The report
 * prints the load phase against the idle one.
 *
 * Frame timing in a headless browser is the compositor's, with no display:
 * it shows main-thread stalls (what a user feels as jank), not paint cost.
 * Results go to bench/out/.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { launchIn } from '../test/support/browser.js';
import { HOSTS, ROOT, World } from '../test/world/world.js';
import { compileBlast } from '../test/support/blast.js';
import { provenance } from './lib/provenance.js';
import { installExitHandlers, numOption, run } from './lib/stats.js';

installExitHandlers();

const NOBODY = 65534;
const PORT = 9330;
const ORIGIN = `http://127.0.0.1:${PORT}`;

const POLICY = `
mode: enforce
block_with: drop
log:
  rate: 1000000
  burst: 1000000
  user_rate: 1000000
  user_burst: 1000000
dashboard:
  listen: 127.0.0.1:${PORT}
rules:
  - name: dns
    to: [${HOSTS.dns4}]
    ports: [53]
`;

/** Installed in the page: frame intervals, long tasks and rows added, since the last reset. */
const PROBE = `(() => {
  const s = window.__bench = { frames: [], longTasks: [], rows: 0, running: true };
  let last = performance.now();
  const tick = (t) => { if (!s.running) return; s.frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) s.longTasks.push(e.duration); }).observe({ type: 'longtask', buffered: false });
  new MutationObserver((ms) => { for (const m of ms) s.rows += m.addedNodes.length; }).observe(document.querySelector('#live-table tbody'), { childList: true });
  window.__benchReset = () => { s.frames = []; s.longTasks = []; s.rows = 0; last = performance.now(); };
})()`;

interface PhaseResult {
  phase: string;
  seconds: number;
  rate: number;
  rowsAdded: number;
  frames: number;
  frameP50: number;
  frameP99: number;
  frameMax: number;
  longTasks: number;
  longTaskMs: number;
  heapUsedMiB: number;
  domNodes: number;
  tableRows: number;
}

const q = (xs: number[], p: number) => {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number;
};

async function main(): Promise<void> {
  const prov = provenance('npm run bench:dashboard');
  const { values } = parseArgs({ args: process.argv.slice(2), options: { seconds: { type: 'string' }, rate: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    process.stdout.write('npm run bench:dashboard [-- --seconds S] [--rate R]\n  --seconds  seconds per phase (BENCH_SECONDS, default 60; 600 for the ten-minute memory figure)\n  --rate     events a second in the load phase (default 1000)\n');
    return;
  }
  const SECONDS = numOption(values.seconds, 'BENCH_SECONDS', 60, { min: 5, max: 3600, int: false });
  const RATE = numOption(values.rate, 'BENCH_RATE', 1000, { min: 1, max: 100_000, int: true });
  const blast = compileBlast();

  const w = await World.create({ servers: false });
  let daemon: ChildProcess | undefined;
  const browser = await launchIn(w.client, w.tmp);
  const results: PhaseResult[] = [];
  try {
    daemon = await w.spawnReady(w.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', w.policy(POLICY), '--metrics', 'off'], { env: w.env(), readyText: 'sluice daemon: running' });
    daemon.stderr?.resume();
    const token = readFileSync(join(w.stateDir, 'dashboard.token'), 'utf8').trim();
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(`${ORIGIN}/?token=${token}`);
    await page.goto(`${ORIGIN}/#live`);
    await page.locator('#live-state').filter({ hasText: 'Live.' }).waitFor();
    await page.evaluate(PROBE);
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Performance.enable');

    console.log(`bench:dashboard  the Live page with ${RATE} events/s arriving, against the same page idle; ${SECONDS} s per phase; ${cpus().length} cores (${cpus()[0]?.model ?? '?'})`);
    console.log('phase   events/s  rows added  frames  frame p50   p99       max        long tasks (ms)   JS heap    DOM nodes  rows kept');
    for (const phase of [
      { name: 'idle', rate: 0 },
      { name: 'load', rate: RATE },
    ]) {
      await page.evaluate('window.__benchReset()');
      const t0 = Date.now();
      if (phase.rate > 0) {
        const r = await w.exec([blast, 'udp', HOSTS.other4, '5000', String(Math.round(phase.rate * SECONDS)), String(phase.rate)], { uid: NOBODY, timeoutMs: (SECONDS + 60) * 1000 });
        if (r.code !== 0) throw new Error(`blast: ${r.stderr}`);
      } else await new Promise((r) => setTimeout(r, SECONDS * 1000));
      // The last batches reach the page within a second.
      await new Promise((r) => setTimeout(r, 1_000));
      const seconds = (Date.now() - t0) / 1000;
      const s = (await page.evaluate('({ frames: window.__bench.frames, longTasks: window.__bench.longTasks, rows: window.__bench.rows, kept: document.querySelectorAll("#live-table tbody tr").length })')) as { frames: number[]; longTasks: number[]; rows: number; kept: number };
      await cdp.send('HeapProfiler.collectGarbage');
      const m = (await cdp.send('Performance.getMetrics')).metrics;
      const metric = (n: string) => m.find((x) => x.name === n)?.value ?? 0;
      const res: PhaseResult = {
        phase: phase.name,
        seconds,
        rate: phase.rate,
        rowsAdded: s.rows,
        frames: s.frames.length,
        frameP50: q(s.frames, 0.5),
        frameP99: q(s.frames, 0.99),
        frameMax: q(s.frames, 1),
        longTasks: s.longTasks.length,
        longTaskMs: s.longTasks.reduce((a, b) => a + b, 0),
        heapUsedMiB: metric('JSHeapUsedSize') / 1048576,
        domNodes: metric('Nodes'),
        tableRows: s.kept,
      };
      results.push(res);
      const ms = (x: number) => `${x.toFixed(1)} ms`.padEnd(10);
      console.log(
        `${res.phase.padEnd(8)}${String(res.rate).padStart(8)}  ${String(res.rowsAdded).padStart(10)}  ${String(res.frames).padStart(6)}  ${ms(res.frameP50)}${ms(res.frameP99)}${ms(res.frameMax)} ${`${res.longTasks} (${res.longTaskMs.toFixed(0)})`.padEnd(17)} ${`${res.heapUsedMiB.toFixed(1)} MiB`.padEnd(10)} ${String(res.domNodes).padStart(9)}  ${String(res.tableRows).padStart(9)}`,
      );
    }
    const [idle, load] = results as [PhaseResult, PhaseResult];
    console.log(`\nload vs idle: frame p99 ${(load.frameP99 / Math.max(idle.frameP99, 0.001)).toFixed(2)}x, long tasks ${load.longTasks} vs ${idle.longTasks}, JS heap ${(load.heapUsedMiB / Math.max(idle.heapUsedMiB, 0.001)).toFixed(2)}x, rows kept ${load.tableRows} (the page keeps at most 500)`);
    console.log(`rows added ${load.rowsAdded} of ${Math.round(RATE * SECONDS)} sent (${((100 * load.rowsAdded) / Math.max(1, RATE * SECONDS)).toFixed(1)}%)`);
  } finally {
    await browser.close().catch(() => undefined);
    await w.destroy();
    rmSync(dirname(blast), { recursive: true, force: true });
  }
  mkdirSync(join(ROOT, 'bench/out'), { recursive: true });
  const out = join(ROOT, 'bench/out', `dashboard-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, JSON.stringify({ benchmark: 'dashboard', provenance: prov, finished: new Date().toISOString(), seconds: SECONDS, rate: RATE, phases: results }, null, 2));
  console.log(`\nresults: ${out}`);
}

run(main);
