#!/usr/bin/env node
// Runs Sluice's two test tiers and prints one summary line.
//
//   node scripts/run-tests.mjs              both tiers
//   node scripts/run-tests.mjs unit         fast tests, no privileges
//   node scripts/run-tests.mjs integration  real kernel, network namespaces, root
//
// The integration tier never skips: if it cannot run (not root, no nft, no
// network namespaces) that is a failure with the reason, so CI goes red
// instead of silently passing without it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const want = process.argv[2] ?? 'all';
if (!['all', 'unit', 'integration'].includes(want)) {
  console.error(`usage: run-tests.mjs [unit|integration]`);
  process.exit(2);
}

function walk(dir, suffix) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) {
      if (e !== 'node_modules') out.push(...walk(p, suffix));
    } else if (e.endsWith(suffix)) out.push(p);
  }
  return out.sort();
}

/** The TypeScript source a compiled file under dist/ came from. */
const sourceOf = (js) => join(root, relative(join(root, 'dist'), js).replace(/\.js$/, '.ts'));

/**
 * Compiled tests whose source still exists. A test deleted from test/ leaves
 * its .js in dist/; running it would test code nobody can read.
 */
function findTests(dir) {
  const all = walk(dir, '.test.js');
  const gone = all.filter((js) => !existsSync(sourceOf(js)));
  if (gone.length > 0) {
    console.error(`run-tests: not running ${gone.length} compiled test(s) whose source is gone: ${gone.map((g) => relative(root, g)).join(', ')}`);
  }
  return all.filter((js) => !gone.includes(js));
}

/**
 * Sources newer than their build (or never built): tests run from dist/, so
 * they would pass or fail on code that is no longer what the sources say.
 */
function staleBuild() {
  const stale = [];
  for (const top of ['src', 'test', 'bench']) {
    for (const ts of walk(join(root, top), '.ts')) {
      if (ts.endsWith('.d.ts')) continue;
      const js = join(root, 'dist', relative(root, ts)).replace(/\.ts$/, '.js');
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) stale.push(relative(root, ts));
    }
  }
  return stale;
}

/** Why the integration tier cannot run here, or null. */
function integrationBlocker() {
  if (process.getuid?.() !== 0) return 'not running as root (network namespaces and nftables need it)';
  for (const tool of ['ip', 'nft', 'nsenter']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed (run make test, which installs it)`;
  }
  const name = `slt-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  const nft = spawnSync('ip', ['netns', 'exec', name, 'nft', 'list', 'ruleset'], { encoding: 'utf8' });
  spawnSync('ip', ['netns', 'del', name]);
  if (nft.status !== 0) return `nftables does not work in a namespace: ${nft.stderr.trim()}`;
  return null;
}

/** Removes namespaces left by earlier runs that died (their creator pid is gone). */
function sweepStaleNamespaces() {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0];
    const m = /^slt-(\d+)-/.exec(name ?? '');
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      alive = e.code === 'EPERM';
    }
    if (!alive) spawnSync('ip', ['netns', 'del', name]);
  }
}

function parseTap(text) {
  const get = (k) => Number(new RegExp(`^# ${k} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { tests: get('tests'), pass: get('pass'), fail: get('fail'), skipped: get('skipped'), todo: get('todo'), cancelled: get('cancelled') };
}

async function runTier(tier, files, concurrency) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tap-'));
  const tap = join(dir, 'out.tap');
  const args = [
    '--enable-source-maps',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=300000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ];
  const started = Date.now();
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit', cwd: root, env: { ...process.env, SLUICE_TEST_TIER: tier } });
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  const result = parseTap(existsSync(tap) ? readFileSync(tap, 'utf8') : '');
  rmSync(dir, { recursive: true, force: true });
  return { ...result, code, seconds: (Date.now() - started) / 1000 };
}

const stale = staleBuild();
if (stale.length > 0) {
  console.error(`run-tests: dist/ is older than ${stale.length} source file(s) (${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', ...' : ''}); run \`npm run build\` (npm test and make test build first)`);
  console.log(`\nSUMMARY FAILED: the build is stale, no test ran`);
  process.exit(1);
}

const results = {};
let failed = false;
const started = Date.now();

if (want === 'all' || want === 'unit') {
  const files = findTests(join(root, 'dist/test/unit'));
  if (files.length === 0) {
    console.error('run-tests: no unit tests found under dist/test/unit (did the build run?)');
    failed = true;
  } else {
    results.unit = await runTier('unit', files, 2);
  }
}

if (want === 'all' || want === 'integration') {
  const blocker = integrationBlocker();
  if (blocker) {
    console.error(`\nINTEGRATION TIER CANNOT RUN: ${blocker}\nThis is a failure, not a skip.`);
    results.integration = { tests: 0, pass: 0, fail: 1, skipped: 0, todo: 0, cancelled: 0, code: 1, seconds: 0, blocked: blocker };
  } else {
    sweepStaleNamespaces();
    const files = findTests(join(root, 'dist/test/integration'));
    if (files.length === 0) {
      console.error('run-tests: no integration tests found under dist/test/integration');
      failed = true;
    } else {
      results.integration = await runTier('integration', files, 2);
    }
  }
}

const parts = [];
let total = 0;
for (const [tier, r] of Object.entries(results)) {
  total += r.pass;
  parts.push(`${tier}: ${r.pass} passed, ${r.fail} failed, ${r.skipped + r.todo} skipped, ${r.cancelled} cancelled (${r.seconds.toFixed(1)}s)`);
  if (r.code !== 0 || r.fail > 0 || r.cancelled > 0 || r.tests === 0) failed = true;
  // A skipped integration test would hide a kernel behaviour nobody checked.
  if (tier === 'integration' && r.skipped + r.todo > 0) failed = true;
}
const secs = ((Date.now() - started) / 1000).toFixed(1);
console.log(`\nSUMMARY ${failed ? 'FAILED' : 'PASSED'}: ${parts.join(' | ')} | ${total} passed in ${secs}s`);
process.exit(failed ? 1 : 0);
