#!/usr/bin/env node
// The README's mutation table, from mutation/scores.json: one row per module, in the file's order.
// `node scripts/mutation-table.mjs` prints it; scripts/mutate.mjs writes it into README.md after each
// module (a run over several modules would otherwise fail its own dry run on the docs test);
// test/unit/docs-complete.test.ts checks the README holds it.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The markdown table (header included) for the scores as scripts/mutate.mjs writes them. */
export function mutationTable(scores) {
  const rows = ['| module | mutants killed | left | run | time |', '|---|---|---|---|---|'];
  for (const [m, s] of Object.entries(scores)) {
    const detected = s.killed + s.timeout;
    const valid = detected + s.survived + s.noCoverage;
    rows.push(`| \`${m}\` | ${s.score}% (${detected} of ${valid}) | ${s.survived} survived, ${s.noCoverage} without coverage | ${s.date} | ${(s.seconds / 60).toFixed(1)} min |`);
  }
  return rows.join('\n');
}

/**
 * The README with its mutation table replaced by the one for these scores (the table runs from its
 * header line to the first blank line). Throws when the README has no table to replace.
 */
export function withMutationTable(readme, scores) {
  const start = readme.indexOf('| module | mutants killed | left | run | time |');
  if (start < 0) throw new Error('README.md has no mutation table (its header line is missing)');
  const end = readme.indexOf('\n\n', start);
  return readme.slice(0, start) + mutationTable(scores) + (end < 0 ? '\n' : readme.slice(end));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const scores = JSON.parse(readFileSync(new URL('../mutation/scores.json', import.meta.url), 'utf8'));
  process.stdout.write(`${mutationTable(scores)}\n`);
}
