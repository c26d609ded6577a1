#!/usr/bin/env node
// Lists the mutants of the last `npm run mutate` that no test killed (survived or not covered),
// one line each: status, file:line, mutator, the original line and its replacement.
//   node scripts/mutation-survivors.mjs [reports/mutation/mutation.json]
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'reports/mutation/mutation.json';
const report = JSON.parse(readFileSync(file, 'utf8'));
let n = 0;
for (const [path, f] of Object.entries(report.files)) {
  const lines = f.source.split('\n');
  for (const m of f.mutants) {
    if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
    const line = m.location.start.line;
    const orig = (lines[line - 1] ?? '').trim().slice(0, 120);
    const repl = String(m.replacement ?? '').replace(/\s+/g, ' ').slice(0, 80);
    console.log(`${m.status}\t${path}:${line}:${m.location.start.column}\t${m.mutatorName}\t${orig}\t=> ${repl}`);
    n++;
  }
}
console.error(`${n} mutant(s) not killed`);
