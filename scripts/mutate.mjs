#!/usr/bin/env node
// Mutation testing, one module at a time, each with its own incremental file
// (mutation/<module>.incremental.json, committed): a later run re-tests only
// the mutants whose code or covering tests changed. Prints the score per
// module and writes mutation/scores.json.
//
//   node scripts/mutate.mjs                  every module of stryker.config.json's "mutate"
//   node scripts/mutate.mjs src/dns/rebinding.ts [...]
//
// Score = (killed + timed out) / (killed + timed out + survived + no coverage).
// `node scripts/mutation-survivors.mjs reports/mutation/<module>.json` lists what lived.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { mutationTable, withMutationTable } from './mutation-table.mjs';

const root = new URL('..', import.meta.url).pathname;
const config = JSON.parse(readFileSync(join(root, 'stryker.config.json'), 'utf8'));
const modules = process.argv.length > 2 ? process.argv.slice(2) : config.mutate;
for (const m of modules) {
  if (!config.mutate.includes(m)) {
    console.error(`mutate: ${m} is not one of the modules in stryker.config.json: ${config.mutate.join(', ')}`);
    process.exit(2);
  }
}
mkdirSync(join(root, 'mutation'), { recursive: true });
mkdirSync(join(root, 'reports/mutation'), { recursive: true });
const scoresFile = join(root, 'mutation/scores.json');
const scores = existsSync(scoresFile) ? JSON.parse(readFileSync(scoresFile, 'utf8')) : {};
let failed = false;

for (const m of modules) {
  const name = basename(m, '.ts');
  const started = Date.now();
  console.log(`mutate: ${m} ...`);
  const r = spawnSync('npx', ['--no-install', 'stryker', 'run', '--mutate', m, '--incrementalFile', `mutation/${name}.incremental.json`, '--reporters', 'json,html,progress-append-only'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    // Property tests run a fifth of their cases under mutation (each mutant re-runs every test
    // file that covers it; the fuzzers dominate). Conservative: a mutant only the full fuzz
    // would catch counts as survived. SLUICE_FUZZ_SCALE=1 npm run mutate for the full count.
    env: { ...process.env, SLUICE_FUZZ_SCALE: process.env.SLUICE_FUZZ_SCALE ?? '0.2' },
  });
  const seconds = Math.round((Date.now() - started) / 1000);
  const report = join(root, 'reports/mutation/mutation.json');
  if (r.status !== 0 || !existsSync(report)) {
    console.error(`mutate: stryker failed on ${m} (exit ${r.status})`);
    failed = true;
    continue;
  }
  copyFileSync(report, join(root, `reports/mutation/${name}.json`));
  const count = {};
  for (const f of Object.values(JSON.parse(readFileSync(report, 'utf8')).files)) {
    for (const mu of f.mutants) count[mu.status] = (count[mu.status] ?? 0) + 1;
  }
  const detected = (count.Killed ?? 0) + (count.Timeout ?? 0);
  const valid = detected + (count.Survived ?? 0) + (count.NoCoverage ?? 0);
  const score = valid === 0 ? 100 : Math.round((1000 * detected) / valid) / 10;
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
