/**
 * scripts/mutation-chunks.mjs: a long module's mutation run in ranges of
 * whole top-level statements, each range's results merged into the module's
 * incremental record as it finishes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import ts from 'typescript';
import { ROOT } from '../support/fixtures.js';

interface Range {
  start: number;
  end: number;
}
interface Mutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: string;
  coveredBy?: string[];
  killedBy?: string[];
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}
interface Report {
  files: Record<string, { source: string; language: string; mutants: Mutant[] }>;
  testFiles?: Record<string, { source?: string; sha256?: string; tests: { id: string; name: string }[] }>;
  schemaVersion?: string;
}
interface Chunks {
  chunkRanges(source: string, maxLines: number): Range[];
  mergeRange(base: Report | null, part: Report, file: string, range: Range): { report: Report; stale: boolean };
  scoreOf(report: Report, file: string, range?: Range): { count: Record<string, number>; score: number };
  hashTestSources(report: Report, hash: (text: string) => string): Report;
  withoutChangedTests(record: Report, currentHash: (file: string) => string | null, adoptUnhashed?: boolean): { record: Report; changed: string[] };
  addSpan(spans: [number, number][], range: Range): [number, number][];
  unfinished(record: (Report & { sluiceFinished?: [number, number][] }) | null, ranges: Range[]): Range[];
}
const chunks = (await import(pathToFileURL(join(ROOT, 'scripts/mutation-chunks.mjs')).href)) as Chunks;

/** Every top-level statement's first and last line (1-based). */
function statements(source: string): Range[] {
  const sf = ts.createSourceFile('m.ts', source, ts.ScriptTarget.Latest, true);
  const line = (pos: number) => sf.getLineAndCharacterOfPosition(pos).line + 1;
  return sf.statements.map((st) => ({ start: line(st.getStart(sf)), end: line(st.getEnd()) }));
}

describe('mutation ranges', () => {
  for (const module of ['src/policy/load-policy.ts', 'src/compile/compile-ruleset.ts', 'src/dns/rebinding.ts']) {
    for (const max of [20, 60, 260]) {
      it(`${module} in ranges of ${max} lines: each statement wholly inside exactly one range, ranges in order and at most ${max} lines unless one statement is longer`, () => {
        const source = readFileSync(join(ROOT, module), 'utf8');
        const ranges = chunks.chunkRanges(source, max);
        const sts = statements(source);
        assert.ok(sts.length > 3);
        for (const st of sts) {
          const holding = ranges.filter((r) => r.start <= st.start && st.end <= r.end);
          assert.equal(holding.length, 1, `statement at ${st.start}-${st.end} in ${holding.length} ranges`);
          // A range that cuts a statement would leave its mutants out of every range.
          assert.ok(!ranges.some((r) => (r.start > st.start && r.start <= st.end) || (r.end >= st.start && r.end < st.end)), `a range boundary inside ${st.start}-${st.end}`);
        }
        for (let i = 1; i < ranges.length; i++) assert.ok((ranges[i] as Range).start > (ranges[i - 1] as Range).end);
        for (const r of ranges) {
          const alone = sts.filter((st) => r.start <= st.start && st.end <= r.end);
          if (alone.length > 1) assert.ok(r.end - r.start + 1 <= max, `range ${r.start}-${r.end} holds ${alone.length} statements over ${max} lines`);
        }
        if (max === 20) assert.ok(ranges.length > 3, 'a long module is cut');
      });
    }
  }

  it('refuses a size that is not a whole number of lines', () => {
    assert.throws(() => chunks.chunkRanges('const a = 1;\n', 0), /whole number/);
    assert.throws(() => chunks.chunkRanges('const a = 1;\n', 2.5), /whole number/);
  });
});

const FILE = 'src/x.ts';
const SOURCE = 'line1\nline2\nline3\nline4\nline5\nline6\n';
function mutant(id: string, line: number, status: string, extra: Partial<Mutant> = {}): Mutant {
  return { id, mutatorName: 'BooleanLiteral', replacement: `r${line}`, status, location: { start: { line, column: 1 }, end: { line, column: 5 } }, ...extra };
}
function report(mutants: Mutant[], tests: Record<string, string[]>, source = SOURCE): Report {
  const testFiles: Report['testFiles'] = {};
  for (const [file, ids] of Object.entries(tests)) testFiles[file] = { tests: ids.map((id) => ({ id, name: file })) };
  return { schemaVersion: '1.0', files: { [FILE]: { source, language: 'typescript', mutants } }, testFiles };
}

describe("merging a range's results into the module's record", () => {
  // The record so far numbers test a.js "0" and b.js "1"; the range's run numbers them the other way
  // round and knows a third file.
  const base = report(
    [mutant('0', 1, 'Killed', { coveredBy: ['0', '1'], killedBy: ['0'] }), mutant('1', 3, 'Survived', { coveredBy: ['1'] }), mutant('2', 5, 'Killed', { coveredBy: ['1'], killedBy: ['1'] })],
    { 'a.js': ['0'], 'b.js': ['1'] },
  );
  const part = report([mutant('0', 3, 'Killed', { coveredBy: ['5', '7'], killedBy: ['7'] }), mutant('1', 4, 'NoCoverage', { coveredBy: [] })], { 'b.js': ['5'], 'a.js': ['7'], 'c.js': ['9'] });

  it("keeps the record's mutants outside the range, takes the range's inside it, and renumbers", () => {
    const { report: out, stale } = chunks.mergeRange(base, part, FILE, { start: 3, end: 4 });
    assert.equal(stale, false);
    const ms = (out.files[FILE] as Report['files'][string]).mutants;
    assert.deepEqual(
      ms.map((m) => [m.id, m.location.start.line, m.status]),
      [
        ['0', 1, 'Killed'],
        ['1', 3, 'Killed'],
        ['2', 4, 'NoCoverage'],
        ['3', 5, 'Killed'],
      ],
    );
    // Every test id points at the same file as before the merge.
    const name = new Map(Object.entries(out.testFiles ?? {}).flatMap(([f, e]) => e.tests.map((t) => [t.id, f] as const)));
    const names = (ids: string[] | undefined) => (ids ?? []).map((id) => name.get(id));
    assert.deepEqual(names(ms[0]?.coveredBy), ['a.js', 'b.js']);
    assert.deepEqual(names(ms[0]?.killedBy), ['a.js']);
    assert.deepEqual(names(ms[1]?.coveredBy), ['b.js', 'a.js']);
    assert.deepEqual(names(ms[1]?.killedBy), ['a.js']);
    assert.deepEqual(names(ms[3]?.killedBy), ['b.js']);
    assert.deepEqual([...name.values()].sort(), ['a.js', 'b.js', 'c.js']);
    assert.equal(new Set(name.keys()).size, 3, 'test ids unique');
    assert.equal((out.files[FILE] as Report['files'][string]).source, SOURCE);
  });

  it('without a record, the range alone', () => {
    const { report: out, stale } = chunks.mergeRange(null, part, FILE, { start: 3, end: 4 });
    assert.equal(stale, false);
    assert.deepEqual((out.files[FILE] as Report['files'][string]).mutants.map((m) => m.location.start.line), [3, 4]);
  });

  it("drops the record's mutants made from another text of the module, and says so", () => {
    const old = report(base.files[FILE]?.mutants ?? [], { 'a.js': ['0'], 'b.js': ['1'] }, `${SOURCE}changed\n`);
    const { report: out, stale } = chunks.mergeRange(old, part, FILE, { start: 3, end: 4 });
    assert.equal(stale, true);
    assert.deepEqual((out.files[FILE] as Report['files'][string]).mutants.map((m) => m.location.start.line), [3, 4]);
  });

  it("a mutant of the range's report outside the range is not taken (the range is the only authority inside it)", () => {
    const wide = report([...(part.files[FILE]?.mutants ?? []), mutant('2', 6, 'Survived', { coveredBy: [] })], { 'a.js': ['7'] });
    const { report: out } = chunks.mergeRange(base, wide, FILE, { start: 3, end: 4 });
    assert.deepEqual((out.files[FILE] as Report['files'][string]).mutants.map((m) => `${m.location.start.line}:${m.status}`), ['1:Killed', '3:Killed', '4:NoCoverage', '5:Killed']);
  });

  it('scores as scripts/mutate.mjs does: killed and timed out over those plus survived and without coverage', () => {
    const r = report([mutant('0', 1, 'Killed'), mutant('1', 2, 'Timeout'), mutant('2', 3, 'Survived'), mutant('3', 4, 'NoCoverage'), mutant('4', 5, 'CompileError'), mutant('5', 6, 'Ignored')], {});
    const { count, score } = chunks.scoreOf(r, FILE);
    assert.equal(score, 50);
    assert.equal(count.Killed, 1);
    assert.equal(count.CompileError, 1);
    assert.equal(chunks.scoreOf(report([], {}), FILE).score, 100);
    // One range's own: what Stryker's report of a range run holds beside it (the rest, re-used) is not counted.
    assert.deepEqual(chunks.scoreOf(r, FILE, { start: 3, end: 4 }), { count: { Survived: 1, NoCoverage: 1 }, score: 0 });
    assert.equal(chunks.scoreOf(r, FILE, { start: 1, end: 2 }).score, 100);
  });
});

describe("a record's test files: hashes instead of sources, and changed ones left out before a run", () => {
  const hash = (t: string) => `h(${t})`;
  const run: Report = {
    files: { [FILE]: { source: 'x', language: 'typescript', mutants: [] } },
    testFiles: { 'a.js': { source: 'A1', tests: [{ id: '0', name: 'a.js' }] }, 'b.js': { source: 'B1', tests: [{ id: '1', name: 'b.js' }] }, 'c.js': { tests: [{ id: '2', name: 'c.js' }] } },
  };

  it('keeps each test file as its hash, not its text; one without a text stays without a hash', () => {
    const out = chunks.hashTestSources(run, hash);
    assert.deepEqual(out.testFiles, { 'a.js': { sha256: 'h(A1)', tests: [{ id: '0', name: 'a.js' }] }, 'b.js': { sha256: 'h(B1)', tests: [{ id: '1', name: 'b.js' }] }, 'c.js': { tests: [{ id: '2', name: 'c.js' }] } });
    assert.equal(run.testFiles?.['a.js']?.source, 'A1', 'the report given is not changed');
  });

  it('leaves out a test file whose text changed or that is gone; keeps the unchanged; an unhashed one only when adopted', () => {
    const record = chunks.hashTestSources(run, hash);
    const now: Record<string, string | null> = { 'a.js': 'h(A1)', 'b.js': 'h(B2)', 'c.js': 'h(C)' };
    const strict = chunks.withoutChangedTests(record, (f) => now[f] ?? null);
    assert.deepEqual(Object.keys(strict.record.testFiles ?? {}), ['a.js']);
    assert.deepEqual(strict.changed, ['b.js', 'c.js']);
    const adopted = chunks.withoutChangedTests(record, (f) => now[f] ?? null, true);
    assert.deepEqual(Object.keys(adopted.record.testFiles ?? {}), ['a.js', 'c.js']);
    const gone = chunks.withoutChangedTests(record, (f) => (f === 'c.js' ? null : (now[f] ?? null)), true);
    assert.deepEqual(gone.changed, ['b.js', 'c.js'], 'an unhashed file that is gone is not adopted');
  });

  it("a merge keeps the hashes: the record's for the files the range did not run, the range's for those it did", () => {
    const base = chunks.hashTestSources(report([mutant('0', 1, 'Killed', { coveredBy: ['0'], killedBy: ['0'] })], { 'a.js': ['0'], 'b.js': ['1'] }), hash);
    base.testFiles = { 'a.js': { sha256: 'old-a', tests: [{ id: '0', name: 'a.js' }] }, 'b.js': { sha256: 'old-b', tests: [{ id: '1', name: 'b.js' }] } };
    const part = chunks.hashTestSources({ ...report([mutant('0', 3, 'Killed', { coveredBy: ['0'], killedBy: ['0'] })], { 'b.js': ['0'] }), testFiles: { 'b.js': { source: 'B2', tests: [{ id: '0', name: 'b.js' }] } } }, hash);
    const { report: out } = chunks.mergeRange(base, part, FILE, { start: 3, end: 3 });
    assert.equal(out.testFiles?.['a.js']?.sha256, 'old-a');
    assert.equal(out.testFiles?.['b.js']?.sha256, 'h(B2)');
  });
});

describe('which ranges a record has finished against its text (for --resume and the score)', () => {
  it('a merge adds its range to the finished spans; a record of another text starts them again', () => {
    const base = { ...report([mutant('0', 1, 'Killed')], {}), sluiceFinished: [[1, 2]] as [number, number][] };
    const part = report([mutant('0', 3, 'Killed')], {});
    assert.deepEqual((chunks.mergeRange(base, part, FILE, { start: 3, end: 4 }).report as { sluiceFinished?: unknown }).sluiceFinished, [[1, 4]]);
    const stale = chunks.mergeRange({ ...base, files: { [FILE]: { source: 'old', language: 'typescript', mutants: [] } } }, part, FILE, { start: 5, end: 6 });
    assert.equal(stale.stale, true);
    assert.deepEqual((stale.report as { sluiceFinished?: unknown }).sluiceFinished, [[5, 6]]);
  });

  it('spans merge where they overlap or touch, and stay apart across a gap', () => {
    assert.deepEqual(chunks.addSpan([[1, 10], [20, 30]], { start: 11, end: 12 }), [[1, 12], [20, 30]]);
    assert.deepEqual(chunks.addSpan([[20, 30]], { start: 1, end: 25 }), [[1, 30]]);
    assert.deepEqual(chunks.addSpan([[1, 10]], { start: 12, end: 13 }), [[1, 10], [12, 13]]);
  });

  it('a statement is finished only inside one finished span; without a record none is', () => {
    const rec = { ...report([], {}), sluiceFinished: [[1, 10], [14, 20]] as [number, number][] };
    const statements = [{ start: 1, end: 3 }, { start: 5, end: 10 }, { start: 12, end: 12 }, { start: 14, end: 20 }, { start: 19, end: 22 }];
    assert.deepEqual(chunks.unfinished(rec, statements), [{ start: 12, end: 12 }, { start: 19, end: 22 }]);
    assert.deepEqual(chunks.unfinished(null, statements), statements);
  });
});
