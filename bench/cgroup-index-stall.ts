/**
 * How long the collector's cgroup index holds the event loop while it
 * rebuilds, on a synthetic tree: the asynchronous walk (src/monitor/
 * cgroup-index.ts) against the synchronous walk it replaced (reproduced
 * below), in the same run, interleaved. Prints the longest stall of the loop
 * (largest gap between 1 ms timer ticks) and the walk's duration for each,
 * and their ratios. Never a pass/fail: machines are shared and noisy.
 *
 *   node dist/bench/cgroup-index-stall.js [--dirs 10000] [--rounds 5] [--root DIR]
 *
 * --root walks an existing tree (e.g. the cgroup2 mount) instead of making one.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, type Dirent } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CgroupIndex } from '../src/monitor/cgroup-index.js';

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: cgroup-index-stall.js [--dirs N] [--rounds N] [--root DIR]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let dirs = 10_000;
let rounds = 5;
let given: string | undefined;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = args[i + 1];
  if (a === '--dirs' && v && /^\d+$/.test(v)) dirs = Number(args[++i]);
  else if (a === '--rounds' && v && /^\d+$/.test(v)) rounds = Number(args[++i]);
  else if (a === '--root' && v) given = args[++i];
  else if (a === '--help') usage('');
  else usage(`unknown argument: ${a}`);
}

/** The synchronous walk the index used before (readdirSync and statSync on the loop), same bounds. */
function syncWalk(root: string): Map<bigint, string> {
  const byId = new Map<bigint, string>();
  let frontier = ['/'];
  let seen = 0;
  for (let depth = 0; depth <= 12 && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (const rel of frontier) {
      try {
        byId.set(statSync(join(root, rel), { bigint: true }).ino, rel);
      } catch {
        continue;
      }
      let entries: Dirent[];
      try {
        entries = readdirSync(join(root, rel), { withFileTypes: true });
      } catch {
        continue;
      }
      for (const e of entries) {
        if (!e.isDirectory()) continue;
        if (++seen > 50_000) return byId;
        next.push(rel === '/' ? `/${e.name}` : `${rel}/${e.name}`);
      }
    }
    frontier = next;
  }
  return byId;
}

/** Runs `work` while a 1 ms timer ticks; the longest gap between ticks is the longest the loop was held. */
async function measure(work: () => Promise<void> | void): Promise<{ stallMs: number; wallMs: number }> {
  let last = performance.now();
  let worst = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
  }, 1);
  await new Promise((r) => setTimeout(r, 20));
  last = performance.now();
  worst = 0;
  const start = performance.now();
  await work();
  const wallMs = performance.now() - start;
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(tick);
  worst = Math.max(worst, performance.now() - last);
  return { stallMs: worst, wallMs };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

let root = given;
if (!root) {
  // Prefer memory (as cgroupfs is): /dev/shm when there is one.
  let base = tmpdir();
  try {
    if (statSync('/dev/shm').isDirectory()) base = '/dev/shm';
  } catch {
    /* tmpdir */
  }
  root = mkdtempSync(join(base, 'sluice-cgstall-'));
  const perSlice = 100;
  for (let i = 0; i * perSlice < dirs; i++) {
    for (let j = 0; j < perSlice && i * perSlice + j < dirs; j++) mkdirSync(join(root, `s${i}.slice`, `u${j}.service`), { recursive: true });
  }
}
const tree = root;
try {
  const count = syncWalk(tree).size;
  const sync: { stallMs: number; wallMs: number }[] = [];
  const async_: { stallMs: number; wallMs: number }[] = [];
  const idle: { stallMs: number; wallMs: number }[] = [];
  for (let r = 0; r < rounds; r++) {
    // The loop doing nothing as long as a walk takes: what the machine itself adds (scheduling, other load).
    idle.push(await measure(() => new Promise((res) => setTimeout(res, 500))));
    sync.push(
      await measure(() => {
        syncWalk(tree);
      }),
    );
    async_.push(
      await measure(async () => {
        const idx = new CgroupIndex(tree);
        idx.path(0n);
        await idx.rebuilding();
      }),
    );
  }
  const row = (name: string, xs: { stallMs: number; wallMs: number }[]) =>
    `${name.padEnd(28)} longest stall ${median(xs.map((x) => x.stallMs)).toFixed(1).padStart(8)} ms (max ${Math.max(...xs.map((x) => x.stallMs)).toFixed(1)})  walk ${median(xs.map((x) => x.wallMs)).toFixed(0).padStart(6)} ms`;
  process.stdout.write(`cgroup index rebuild, ${count} directories, ${rounds} rounds (medians)\n`);
  process.stdout.write(`${row('idle loop (baseline)', idle)}\n${row('synchronous walk (before)', sync)}\n${row('asynchronous walk (now)', async_)}\n`);
  process.stdout.write(
    `ratio now/before: longest stall ${(median(async_.map((x) => x.stallMs)) / median(sync.map((x) => x.stallMs))).toFixed(3)}, walk time ${(median(async_.map((x) => x.wallMs)) / median(sync.map((x) => x.wallMs))).toFixed(2)}\n`,
  );
} finally {
  if (!given) rmSync(tree, { recursive: true, force: true });
}
