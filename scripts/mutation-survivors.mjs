#!/usr/bin/env node
// Lists the mutants that no test killed (survived or not covered), one line each: status,
// file:line:column, mutator, the mutated sub-expression as it was and what it became.
//   node scripts/mutation-survivors.mjs [reports/mutation/mutation.json]
//   node scripts/mutation-survivors.mjs mutation/<module>.incremental.json   (the committed record: no run needed)
// With an incremental file, a line is marked "(source changed)" when the file on disk is no
// longer the source the mutants were recorded against (their places may have moved).
import { existsSync, readFileSync } from 'node:fs';

const file = process.argv[2] ?? 'reports/mutation/mutation.json';
const report = JSON.parse(readFileSync(file, 'utf8'));

/** The text between two Stryker locations (lines 1-based, columns 1-based in reports), newlines folded. */
function slice(lines, start, end) {
  if (start.line === end.line) return lines[start.line - 1]?.slice(start.column - 1, end.column - 1) ?? '';
  const parts = [lines[start.line - 1]?.slice(start.column - 1) ?? ''];
  for (let l = start.line + 1; l < end.line; l++) parts.push(lines[l - 1] ?? '');
  parts.push(lines[end.line - 1]?.slice(0, end.column - 1) ?? '');
  return parts.join('\n');
}
const fold = (s, max) => {
  const one = String(s ?? '').replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
};

let n = 0;
for (const [path, f] of Object.entries(report.files)) {
  const lines = f.source.split('\n');
  const moved = existsSync(path) && readFileSync(path, 'utf8') !== f.source ? ' (source changed)' : '';
  for (const m of f.mutants) {
    if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
    const { start, end } = m.location;
    console.log(`${m.status}\t${path}:${start.line}:${start.column}${moved}\t${m.mutatorName}\t${fold(slice(lines, start, end), 100)}\t=> ${fold(m.replacement, 80)}`);
    n++;
  }
}
console.error(`${n} mutant(s) not killed`);
