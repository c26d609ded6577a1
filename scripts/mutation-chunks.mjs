// A long module's mutation run in pieces (scripts/mutate.mjs --chunk-lines N): Stryker mutates one
// range of lines at a time, and after each range its results go into the module's incremental record
// (mutation/<module>.incremental.json), so a run stopped part-way keeps every range it finished (the
// next run re-uses them through Stryker's incremental mode) and the survivors of the first ranges can
// be read while the rest runs. Stryker writes its record only at the end of a run: a two-hour module
// run in one piece that is stopped leaves nothing.
//
// Ranges are whole top-level statements: Stryker takes a mutant into a range only when the mutated
// node lies wholly inside it (locationIncluded), so a range boundary inside a function would leave
// that function's block mutants out of every range.
import ts from 'typescript';

/**
 * 1-based inclusive line ranges covering every top-level statement of a TypeScript source, in order,
 * each at most `maxLines` long unless one statement alone is longer.
 */
export function chunkRanges(source, maxLines) {
  if (!Number.isInteger(maxLines) || maxLines < 1) throw new Error(`chunk size must be a whole number of lines, at least 1: ${maxLines}`);
  const sf = ts.createSourceFile('m.ts', source, ts.ScriptTarget.Latest, true);
  const line = (pos) => sf.getLineAndCharacterOfPosition(pos).line + 1;
  const ranges = [];
  for (const st of sf.statements) {
    const start = line(st.getStart(sf));
    const end = line(st.getEnd());
    const last = ranges[ranges.length - 1];
    if (last && end - last.start + 1 <= maxLines) last.end = end;
    else ranges.push({ start, end });
  }
  return ranges;
}

/** Whether a mutant's location (Stryker's: 1-based lines) lies inside a line range. */
function inRange(mutant, range) {
  return mutant.location.start.line >= range.start && mutant.location.end.line <= range.end;
}

/**
 * The module's record with one range's results put in: `base` (the record so far, or null) keeps its
 * mutants outside `range`, `part` (Stryker's report of that range's run) gives those inside. Base's
 * mutants are kept only when base was made from the same source text (`stale` says they were dropped:
 * their places are the old text's). Tests are matched by file and name (a test file in `part` replaces
 * base's tests of that file), and every mutant's coveredBy/killedBy is re-pointed at the merged list
 * (each run numbers its tests and mutants afresh); mutant ids are renumbered in order of place.
 */
export function mergeRange(base, part, file, range) {
  const partFile = part.files?.[file];
  if (!partFile) throw new Error(`the range's report has no entry for ${file}`);
  const baseFile = base?.files?.[file];
  const stale = baseFile !== undefined && baseFile.source !== partFile.source;
  const tests = new Map(); // `${testFile}\0${name}` -> { file, test (without id), meta (the file's source or sha256) }
  const idMaps = new Map(); // report -> (old id -> key)
  const partTestFiles = new Set(Object.keys(part.testFiles ?? {}));
  for (const report of [base, part]) {
    if (!report) continue;
    const ids = new Map();
    for (const [tf, entry] of Object.entries(report.testFiles ?? {})) {
      const replaced = report === base && partTestFiles.has(tf);
      for (const t of entry.tests ?? []) {
        const key = `${tf}\0${t.name}`;
        ids.set(t.id, key);
        if (replaced) continue;
        const { id: _id, ...rest } = t;
        const { tests: _tests, ...meta } = entry;
        tests.set(key, { file: tf, test: rest, meta });
      }
    }
    idMaps.set(report, ids);
  }
  const keys = [...tests.keys()];
  const newId = new Map(keys.map((k, i) => [k, String(i)]));
  const remap = (report, list) => list.flatMap((id) => {
    const to = newId.get(idMaps.get(report).get(id));
    return to === undefined ? [] : [to];
  });
  const pick = (report, keep) =>
    (report?.files?.[file]?.mutants ?? []).filter(keep).map((m) => {
      const out = { ...m };
      if (m.coveredBy !== undefined) out.coveredBy = remap(report, m.coveredBy);
      if (m.killedBy !== undefined) out.killedBy = remap(report, m.killedBy);
      return out;
    });
  const mutants = [...(stale ? [] : pick(base, (m) => !inRange(m, range))), ...pick(part, (m) => inRange(m, range))];
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const s = (m) => m.location.start;
  const e = (m) => m.location.end;
  mutants.sort((a, b) => s(a).line - s(b).line || s(a).column - s(b).column || e(a).line - e(b).line || e(a).column - e(b).column || cmp(a.mutatorName, b.mutatorName) || cmp(a.replacement ?? '', b.replacement ?? ''));
  mutants.forEach((m, i) => (m.id = String(i)));
  const testFiles = {};
  for (const k of keys) {
    const { file: tf, test, meta } = tests.get(k);
    testFiles[tf] ??= { ...meta, tests: [] };
    testFiles[tf].tests.push({ id: newId.get(k), ...test });
  }
  // The ranges finished against this text (a record of another text had its mutants dropped above).
  const finished = addSpan(stale ? [] : (base?.sluiceFinished ?? []), range);
  return { report: { ...part, files: { [file]: { ...partFile, mutants } }, testFiles, sluiceFinished: finished }, stale };
}

/** Line spans (1-based, inclusive) with one more, merged where they overlap or touch, in order. */
export function addSpan(spans, range) {
  const all = [...spans.map(([a, b]) => [a, b]), [range.start, range.end]].sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const [a, b] of all) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** The ranges (of chunkRanges, any size) not yet inside a finished span of the record. */
export function unfinished(record, ranges) {
  const spans = record?.sluiceFinished ?? [];
  return ranges.filter((r) => !spans.some(([a, b]) => a <= r.start && r.end <= b));
}

/** Counts per status of one module's mutants (those inside `range` when given), and the score as scripts/mutate.mjs computes it. */
export function scoreOf(report, file, range) {
  const count = {};
  for (const m of report.files?.[file]?.mutants ?? []) if (range === undefined || inRange(m, range)) count[m.status] = (count[m.status] ?? 0) + 1;
  const detected = (count.Killed ?? 0) + (count.Timeout ?? 0);
  const valid = detected + (count.Survived ?? 0) + (count.NoCoverage ?? 0);
  return { count, score: valid === 0 ? 100 : Math.round((1000 * detected) / valid) / 10 };
}

// Test files in a module's record. The tap runner reports one test per file, so Stryker's own check
// that a test is unchanged (it diffs each test file's source, stored in the record) works file by
// file; but those sources (the compiled tests, 3 MB) in every committed record would be most of it.
// The record keeps each test file's sha256 instead: before a run, a test file whose compiled text no
// longer has that hash is left out of the record given to Stryker, so what it killed is tested again
// (and a survivor it covers, as "added"), exactly as Stryker does when a source differs.

/** The record with each test file's source replaced by its sha256 (`hash` maps a text to it). */
export function hashTestSources(report, hash) {
  const testFiles = {};
  for (const [tf, entry] of Object.entries(report.testFiles ?? {})) {
    const { source, ...rest } = entry;
    testFiles[tf] = source === undefined ? rest : { ...rest, sha256: hash(source) };
  }
  return { ...report, testFiles };
}

/**
 * The record to hand Stryker: test files whose current text (`currentHash(file)`: its sha256, or
 * null when it is gone) is not the one the record was made with are left out. A record's test
 * files without a hash (made before hashes were kept) are taken as they are when `adoptUnhashed`.
 * Returns the record and the test files left out.
 */
export function withoutChangedTests(record, currentHash, adoptUnhashed = false) {
  const testFiles = {};
  const changed = [];
  for (const [tf, entry] of Object.entries(record.testFiles ?? {})) {
    const now = currentHash(tf);
    const same = entry.sha256 === undefined ? adoptUnhashed && now !== null : entry.sha256 === now;
    if (same) testFiles[tf] = entry;
    else changed.push(tf);
  }
  return { record: { ...record, testFiles }, changed };
}
