#!/usr/bin/env node
// Mutation testing, one module at a time, each with its own incremental file
// (mutation/<module>.incremental.json, committed): a later run re-tests only
// the mutants whose code or covering tests changed. Prints the score per
// module and writes mutation/scores.json.
//
//   node scripts/mutate.mjs                  every module of stryker.config.json's "mutate"
//   node scripts/mutate.mjs src/dns/rebinding.ts [...]
//   node scripts/mutate.mjs --chunk-lines 260 src/policy/load-policy.ts
//       in ranges of whole top-level statements of at most 260 lines: after each range its results
//       are in the module's incremental file (a stopped run keeps what it finished, and the next run
//       re-uses it) and its survivors in reports/mutation/<module>.<start>-<end>.json
//   ... --resume              only the ranges not finished against this text (the record keeps which
//       are, sluiceFinished); the score is written once every statement's range is finished
//   ... --reuse RECORD        Stryker re-uses results from RECORD (a record of an earlier text of the
//       module, say from git) instead of the module's own
//
// Score = (killed + timed out) / (killed + timed out + survived + no coverage).
// `node scripts/mutation-survivors.mjs reports/mutation/<module>.json` lists what lived.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { chunkRanges, hashTestSources, mergeRange, scoreOf, unfinished, withoutChangedTests } from './mutation-chunks.mjs';
import { mutationTable, withMutationTable } from './mutation-table.mjs';

const root = new URL('..', import.meta.url).pathname;
const config = JSON.parse(readFileSync(join(root, 'stryker.config.json'), 'utf8'));
const args = process.argv.slice(2);
let chunkLines = null;
const ci = args.indexOf('--chunk-lines');
if (ci >= 0) {
  chunkLines = Number(args[ci + 1]);
  if (!Number.isInteger(chunkLines) || chunkLines < 20) {
    console.error(`mutate: --chunk-lines needs a whole number of lines, at least 20: ${args[ci + 1] ?? '(none)'}`);
    process.exit(2);
  }
  args.splice(ci, 2);
}
/** --resume (with --chunk-lines): the ranges with a statement not yet finished against this text, only. */
const ri0 = args.indexOf('--resume');
const resume = ri0 >= 0;
if (resume) {
  if (chunkLines === null) {
    console.error('mutate: --resume goes with --chunk-lines');
    process.exit(2);
  }
  args.splice(ri0, 1);
}
/** --reuse RECORD: the record Stryker re-uses results from (another text's, say), instead of the module's own. */
let reuseFrom = null;
const ri = args.indexOf('--reuse');
if (ri >= 0) {
  reuseFrom = args[ri + 1];
  if (!reuseFrom || !existsSync(reuseFrom)) {
    console.error(`mutate: --reuse needs a record file: ${reuseFrom ?? '(none)'}`);
    process.exit(2);
  }
  args.splice(ri, 2);
}
const modules = args.length > 0 ? args : config.mutate;
for (const m of modules) {
  if (!config.mutate.includes(m)) {
    console.error(`mutate: ${m} is not one of the modules in stryker.config.json: ${config.mutate.join(', ')}`);
    process.exit(2);
  }
}
// The compiled tests are what Stryker runs (and what a record's test hashes are of): built from the sources first.
const build = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (build.status !== 0) {
  console.error('mutate: npm run build failed');
  process.exit(1);
}
mkdirSync(join(root, 'mutation'), { recursive: true });
mkdirSync(join(root, 'reports/mutation'), { recursive: true });
const scoresFile = join(root, 'mutation/scores.json');
const scores = existsSync(scoresFile) ? JSON.parse(readFileSync(scoresFile, 'utf8')) : {};
const stryker = join(root, 'reports/mutation/mutation.json');
let failed = false;

/** One Stryker run over `mutate` (a module, or MODULE:START-END) with this incremental file; its report's path, or null. */
function strykerRun(mutate, incrementalFile) {
  rmSync(stryker, { force: true });
  const r = spawnSync('npx', ['--no-install', 'stryker', 'run', '--mutate', mutate, '--incrementalFile', incrementalFile, '--reporters', 'json,html,progress-append-only'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    // Property tests run a fifth of their cases under mutation (each mutant re-runs every test
    // file that covers it; the fuzzers dominate). Conservative: a mutant only the full fuzz
    // would catch counts as survived. SLUICE_FUZZ_SCALE=1 npm run mutate for the full count.
    env: { ...process.env, SLUICE_FUZZ_SCALE: process.env.SLUICE_FUZZ_SCALE ?? '0.2' },
  });
  if (r.status !== 0 || !existsSync(stryker)) {
    console.error(`mutate: stryker failed on ${mutate} (exit ${r.status})`);
    return null;
  }
  return stryker;
}

const sha256 = (text) => createHash('sha256').update(text).digest('hex');
/** A compiled test file's sha256 now, or null when it is gone. */
const testHash = (file) => {
  try {
    return sha256(readFileSync(join(root, file), 'utf8'));
  } catch {
    return null;
  }
};

/**
 * The module's record as Stryker is to see it (written to `to`, or nothing there without a record): test
 * files changed since it was made left out (mutation-chunks.mjs, withoutChangedTests). Records from
 * before test hashes were kept are taken as they are.
 */
function prepareRecord(record, to) {
  if (!existsSync(record)) {
    rmSync(to, { force: true });
    return;
  }
  const { record: ready, changed } = withoutChangedTests(JSON.parse(readFileSync(record, 'utf8')), testHash, true);
  if (changed.length > 0) console.log(`mutate: ${changed.length} test file(s) changed since the record was made: what they killed is tested again (${changed.slice(0, 5).join(', ')}${changed.length > 5 ? ', ...' : ''})`);
  writeFileSync(to, JSON.stringify(ready));
}

/** A whole module in one Stryker run; its record (test files as hashes) written; the report's path, or null. */
function wholeRun(m, name) {
  const record = join(root, `mutation/${name}.incremental.json`);
  const scratch = join(root, `reports/mutation/${name}.run.incremental.json`);
  prepareRecord(record, scratch);
  const out = strykerRun(m, scratch);
  rmSync(scratch, { force: true });
  if (!out) return null;
  writeFileSync(record, JSON.stringify(hashTestSources(JSON.parse(readFileSync(out, 'utf8')), sha256)));
  return out;
}

/**
 * The module in ranges: each range's run starts from the module's incremental record as it was before
 * this run (so Stryker re-uses what is still valid there, comparing sources itself) and writes its own;
 * its results then replace that range's in the record.
 * The module's report is the record once every range is done; null if a range failed or the source
 * changed while it ran.
 */
function chunkedRun(m, name) {
  const record = join(root, `mutation/${name}.incremental.json`);
  const scratch = join(root, `reports/mutation/${name}.range.incremental.json`);
  const before = join(root, `reports/mutation/${name}.before.incremental.json`);
  prepareRecord(reuseFrom ?? record, before);
  const text = readFileSync(join(root, m), 'utf8');
  const all = chunkRanges(text, chunkLines);
  // Statement by statement, so that ranges of another size finished earlier count.
  const openIn = () => unfinished(existsSync(record) ? JSON.parse(readFileSync(record, 'utf8')) : null, chunkRanges(text, 1));
  const opened = openIn();
  const ranges = resume ? all.filter((r) => opened.some((st) => st.start >= r.start && st.end <= r.end)) : all;
  console.log(`mutate: ${m} in ${all.length} ranges: ${all.map((r) => `${r.start}-${r.end}`).join(', ')}${resume ? `; not finished yet: ${ranges.map((r) => `${r.start}-${r.end}`).join(', ') || 'none'}` : ''}`);
  let stale = false;
  for (const [i, range] of ranges.entries()) {
    if (existsSync(before)) copyFileSync(before, scratch);
    else rmSync(scratch, { force: true });
    console.log(`mutate: ${m}, range ${i + 1} of ${ranges.length}: lines ${range.start}-${range.end}`);
    const out = strykerRun(`${m}:${range.start}-${range.end}`, scratch);
    if (!out) return null;
    const part = hashTestSources(JSON.parse(readFileSync(out, 'utf8')), sha256);
    const base = existsSync(record) ? JSON.parse(readFileSync(record, 'utf8')) : null;
    const merged = mergeRange(base, part, m, range);
    stale ||= merged.stale && i > 0;
    writeFileSync(record, JSON.stringify(merged.report));
    writeFileSync(join(root, `reports/mutation/${name}.${range.start}-${range.end}.json`), JSON.stringify(part));
    // The range's own mutants (Stryker's report also holds the rest of the module, re-used from the record).
    const { count, score } = scoreOf(part, m, range);
    console.log(`mutate: ${m} lines ${range.start}-${range.end}: ${score}% (${count.Survived ?? 0} survived, ${count.NoCoverage ?? 0} without coverage); survivors: node scripts/mutation-survivors.mjs reports/mutation/${name}.${range.start}-${range.end}.json`);
  }
  rmSync(scratch, { force: true });
  rmSync(before, { force: true });
  if (stale) {
    console.error(`mutate: ${m} changed while its ranges ran: the earlier ranges' results were dropped; run it again`);
    return null;
  }
  // The score needs every range finished against this text (in this run or, with --resume, in earlier ones).
  const open = openIn();
  if (open.length > 0) {
    const left = all.filter((r) => open.some((st) => st.start >= r.start && st.end <= r.end));
    console.log(`mutate: ${m}: ranges still to run: ${left.map((r) => `${r.start}-${r.end}`).join(', ')} (no score until they are)`);
    return 'partial';
  }
  writeFileSync(stryker, readFileSync(record));
  return stryker;
}

for (const m of modules) {
  const name = basename(m, '.ts');
  const started = Date.now();
  console.log(`mutate: ${m} ...`);
  const report = chunkLines === null ? wholeRun(m, name) : chunkedRun(m, name);
  const seconds = Math.round((Date.now() - started) / 1000);
  if (!report) {
    failed = true;
    continue;
  }
  if (report === 'partial') continue;
  copyFileSync(report, join(root, `reports/mutation/${name}.json`));
  const { count, score } = scoreOf(JSON.parse(readFileSync(report, 'utf8')), m);
  scores[m] = { score, killed: count.Killed ?? 0, timeout: count.Timeout ?? 0, survived: count.Survived ?? 0, noCoverage: count.NoCoverage ?? 0, seconds, date: new Date().toISOString().slice(0, 10) };
  writeFileSync(scoresFile, `${JSON.stringify(scores, null, 2)}\n`);
  // The README's table follows at once: the next module's dry run includes the docs test that compares them.
  const readme = join(root, 'README.md');
  writeFileSync(readme, withMutationTable(readFileSync(readme, 'utf8'), scores));
}

console.log('\nmodule                                  score  killed timeout survived nocov  seconds');
for (const [m, s] of Object.entries(scores)) {
  console.log(`${m.padEnd(38)} ${String(s.score).padStart(6)}% ${String(s.killed).padStart(7)} ${String(s.timeout).padStart(7)} ${String(s.survived).padStart(8)} ${String(s.noCoverage).padStart(5)} ${String(s.seconds).padStart(8)}`);
}
console.log(`\nThe README's table (written into README.md; docs-complete.test checks it):\n${mutationTable(scores)}`);
process.exit(failed ? 1 : 0);
