import { randomBytes } from 'node:crypto';

/**
 * A fast path for the long lists of a large policy (100,000 addresses under
 * `to:`), which the yaml package parses at about 10 microseconds an item
 * (tokens, CST, nodes, then JS values). Runs of block-sequence items that
 * are plain or simply quoted scalars, one a line, at one indentation, are
 * taken out of the text before parsing: the first item of a run becomes a
 * placeholder (a random token), the others blank lines, so every other line
 * keeps its line and column. Flow sequences of such scalars
 * (`to: [198.18.0.1, 198.18.0.2, ...]`, on one line or wrapped) are taken
 * the same way: `[placeholder]` in place of their content, the lines kept,
 * and the columns after a one-line sequence's `]` mapped back (originalPos).
 * After parsing, each placeholder, found as an exact list element, is
 * replaced by its run's values.
 *
 * Only values YAML itself reads as strings are taken: quoted, or plain with
 * a `.`, `:` or `/` and not a number (198.18.0.1, 2001:db8::1,
 * 198.18.0.0/15, api.example.com; never 1.5, 443, true or null). Anything
 * the placeholder trick could change the meaning of (a run inside a block
 * scalar or a quoted string, a multi-line plain scalar, directives, an alias
 * that would share a run) shows up as a placeholder that is not exactly a
 * list element, a placeholder met twice or not at all, or as a parse error,
 * and the caller then parses the original text instead: the fast path never
 * changes what a policy means, only how fast it is read.
 */

/** A run of one-line list items taken out of the text. */
export interface BulkRun {
  values: string[];
  /** 1-based line and column of each value, as in the original text. */
  lines: Uint32Array;
  columns: Uint32Array;
}

export interface BulkText {
  /** The text with each run's lines taken out and a placeholder item in their place. */
  text: string;
  runs: Map<string, BulkRun>;
  nonce: string;
  /** The original line of a line of `text` (1-based): lines after a run moved up by its length. */
  originalLine(line: number): number;
  /** The original line and column of a place in `text` (1-based): also columns after a one-line flow sequence taken out. */
  originalPos(line: number, column: number): { line: number; column: number };
}

/** Runs shorter than this are left to YAML (no gain, and small policies keep exactly the old path). */
export const MIN_RUN = 256;

// Characters of a value taken: letters, digits and _ . : / * - (addresses, prefixes, ranges, names, wildcards).
const VALUE = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/*-') VALUE[c.charCodeAt(0)] = 1;
// A plain scalar YAML would read as a number (core schema: 1.5, 1e3, 1.).
const NUMBER = /^[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?$/;

/**
 * A scalar YAML reads as a string, at `i`: quoted (only value characters
 * inside), or plain with a `.`, `:` or `/` and not a number. Returns its value
 * and where it ends (after the closing quote), or null.
 */
function scalar(text: string, i: number, to: number): { value: string; end: number } | null {
  const q = text.charCodeAt(i);
  const quote = q === 39 || q === 34 ? q : 0;
  if (quote) i++;
  const vs = i;
  let sep = false;
  while (i < to) {
    const c = text.charCodeAt(i);
    if (c >= 128 || VALUE[c] !== 1) break;
    if (c === 46 || c === 58 || c === 47) sep = true;
    i++;
  }
  const ve = i;
  if (ve === vs) return null;
  if (quote) {
    if (text.charCodeAt(i) !== quote) return null;
    i++;
  } else {
    // Plain: no alias or anchor start, a . : or / in it (not a port, a word, true or null), no final colon
    // (`- 2001:db8::` is a map to YAML), and not a number.
    const first = text.charCodeAt(vs);
    if (first === 42 || first === 45 || first === 46 || first === 58 || first === 47) return null;
    if (!sep || text.charCodeAt(ve - 1) === 58) return null;
  }
  const value = text.slice(vs, ve);
  if (!quote && NUMBER.test(value)) return null;
  return { value, end: i };
}

/** One line as a list item: its indentation, value and the value's column; or null when it is anything else. */
function item(text: string, from: number, to: number): { indent: number; value: string; column: number } | null {
  let i = from;
  while (i < to && text.charCodeAt(i) === 32) i++;
  const indent = i - from;
  if (text.charCodeAt(i) !== 45 || text.charCodeAt(i + 1) !== 32) return null;
  i += 2;
  while (i < to && text.charCodeAt(i) === 32) i++;
  const column = i - from + 1;
  const s = scalar(text, i, to);
  if (!s) return null;
  i = s.end;
  // Then only blanks, and perhaps a comment after at least one blank; a CR at the end is fine.
  let blank = false;
  while (i < to && text.charCodeAt(i) === 32) {
    i++;
    blank = true;
  }
  let end = to;
  if (end > i && text.charCodeAt(end - 1) === 13) end--;
  if (i < end && !(blank && text.charCodeAt(i) === 35)) return null;
  return { indent, value: s.value, column };
}

/** A flow sequence of scalars taken (see flowRun). */
interface FlowRun extends BulkRun {
  /** Offsets of the `[` and the `]`. */
  open: number;
  close: number;
}

/**
 * The flow sequence that opens at `open` (a `[`, on line `lineNo` starting at
 * `lineStart`) when it is nothing but scalars as `scalar` takes them, commas
 * and blanks: `[198.18.0.1, 198.18.0.2, ...]`, on one line or several. Lines
 * after the first must hold their items further right than the block the
 * sequence is in (past the line's indentation and any `- `), stricter than
 * YAML; a comment, a tab, an empty entry, a scalar continued on the next line
 * (a line after an item must start with `,` or `]`) or anything else, and it
 * is left to YAML (null).
 */
function flowRun(text: string, open: number, lineStart: number, lineNo: number, minRun: number): FlowRun | null {
  // The indentation the sequence's continuation lines must exceed: the line's own, and its `- ` sequence markers.
  let base = lineStart;
  for (;;) {
    while (text.charCodeAt(base) === 32) base++;
    if (text.charCodeAt(base) === 45 && text.charCodeAt(base + 1) === 32) base += 2;
    else break;
  }
  const minIndent = base - lineStart;
  const values: string[] = [];
  const lines: number[] = [];
  const columns: number[] = [];
  const n = text.length;
  let i = open + 1;
  let line = lineNo;
  let ls = lineStart;
  // Blanks and line breaks before an item or the end; false when a line's content is not indented enough.
  const space = (): boolean => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 32) i++;
      else if (c === 10 || (c === 13 && text.charCodeAt(i + 1) === 10)) {
        i += c === 13 ? 2 : 1;
        line++;
        ls = i;
        while (text.charCodeAt(i) === 32) i++;
        const d = text.charCodeAt(i);
        // (A line that starts with the closing `]` is left as it is: YAML judges its place as in the original.)
        if (d !== 10 && d !== 13 && d !== 93 && i - ls <= minIndent) return false;
      } else return true;
    }
  };
  if (!space()) return null;
  if (text.charCodeAt(i) === 93) return null;
  for (;;) {
    if (i >= n) return null;
    const s = scalar(text, i, n);
    if (!s) return null;
    values.push(s.value);
    lines.push(line);
    columns.push(i - ls + 1);
    i = s.end;
    // After an item: blanks (line breaks too: a plain scalar does not go on past a line that starts with , or ]), then a comma or the end.
    if (!space()) return null;
    const c = text.charCodeAt(i);
    if (c === 93) break;
    if (c !== 44) return null;
    i++;
    if (!space()) return null;
    if (text.charCodeAt(i) === 93) break;
  }
  if (values.length < minRun) return null;
  return { values, lines: Uint32Array.from(lines), columns: Uint32Array.from(columns), open, close: i };
}

/** Columns moved on one line of the text by flow sequences taken out of it: from column `from` of the new text on, add `by`. */
type ColumnShift = { from: number; by: number };

/**
 * Takes the long flow sequences of scalars out of `text`. On one line,
 * `[a, b, ...]` becomes `[placeholder]`, and the columns after it on that
 * line move left (recorded in `shifts`, by original line). On several
 * lines, the first line ends with `[placeholder`, the lines of items become
 * empty and the last line keeps blanks up to its `]`: every line and column
 * stays where it was.
 */
function extractFlow(text: string, nonce: string, runs: Map<string, BulkRun>, minRun: number, shifts: Map<number, ColumnShift[]>): string {
  const chunks: string[] = [];
  let copied = 0;
  let lineNo = 1;
  let lineStart = 0;
  let counted = 0;
  let at = text.indexOf('[');
  while (at >= 0) {
    // The line of the `[`.
    for (let k = text.indexOf('\n', counted); k >= 0 && k < at; k = text.indexOf('\n', k + 1)) {
      lineNo++;
      lineStart = k + 1;
    }
    counted = at;
    const run = flowRun(text, at, lineStart, lineNo, minRun);
    if (!run) {
      at = text.indexOf('[', at + 1);
      continue;
    }
    const token = `__sluice_bulk_${nonce}_${runs.size}__`;
    runs.set(token, { values: run.values, lines: run.lines, columns: run.columns });
    chunks.push(text.slice(copied, run.open + 1), token);
    const lastBreak = text.lastIndexOf('\n', run.close);
    if (lastBreak > run.open) {
      let breaks = 0;
      for (let k = text.indexOf('\n', run.open); k >= 0 && k <= lastBreak; k = text.indexOf('\n', k + 1)) breaks++;
      chunks.push('\n'.repeat(breaks), ' '.repeat(run.close - lastBreak - 1));
    } else {
      // One line: what follows the `]` moves left by what was taken out (less the placeholder).
      const list = shifts.get(lineNo) ?? [];
      const before = list.length > 0 ? (list[list.length - 1] as ColumnShift).by : 0;
      const closeColumn = run.close - lineStart + 1;
      const by = before + (run.close - run.open - 1 - token.length);
      list.push({ from: closeColumn - by, by });
      shifts.set(lineNo, list);
    }
    copied = run.close;
    at = text.indexOf('[', run.close);
  }
  if (copied === 0) return text;
  chunks.push(text.slice(copied));
  return chunks.join('');
}

/** True for a line of blanks, or blanks and a comment. */
function blankOrComment(text: string, from: number, to: number): boolean {
  let i = from;
  while (i < to && text.charCodeAt(i) === 32) i++;
  return i === to || text.charCodeAt(i) === 35 || (i === to - 1 && text.charCodeAt(i) === 13);
}

/**
 * Takes the long runs of one-line list items out of `text`. Null when there
 * is nothing worth taking (or the text uses directives, which can change
 * how scalars are read).
 */
export function extractBulk(text: string, minRun = MIN_RUN): BulkText | null {
  if (/^%/m.test(text)) return null;
  const nonce = randomBytes(8).toString('hex');
  const runs = new Map<string, BulkRun>();
  // Flow sequences first: they keep every line where it was, so the block runs' lines below are the original lines.
  const shifts = new Map<number, ColumnShift[]>();
  text = extractFlow(text, nonce, runs, minRun, shifts);
  const chunks: string[] = [];
  let copied = 0;
  // Breakpoints: from text line `at` on, add `shift` to get the original line.
  const breaks: { at: number; shift: number }[] = [];
  let removed = 0;
  // The run being collected.
  let indent = -1;
  let runStart = 0;
  let runFirstLine = 0;
  let lastItemEnd = 0;
  let lastItemLine = 0;
  let values: string[] = [];
  let lines: number[] = [];
  let columns: number[] = [];
  const flush = () => {
    if (indent >= 0 && values.length >= minRun) {
      const token = `__sluice_bulk_${nonce}_${runs.size}__`;
      chunks.push(text.slice(copied, runStart), `${' '.repeat(indent)}- ${token}`);
      copied = lastItemEnd;
      removed += lastItemLine - runFirstLine;
      breaks.push({ at: runFirstLine + 1 - (removed - (lastItemLine - runFirstLine)), shift: removed });
      runs.set(token, { values, lines: Uint32Array.from(lines), columns: Uint32Array.from(columns) });
    }
    indent = -1;
    values = [];
    lines = [];
    columns = [];
  };
  let pos = 0;
  let lineNo = 0;
  const n = text.length;
  while (pos <= n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    lineNo++;
    const it = item(text, pos, end);
    if (it) {
      // An item at another indentation ends the run and starts the next.
      if (indent >= 0 && it.indent !== indent) flush();
      if (indent < 0) {
        indent = it.indent;
        runStart = pos;
        runFirstLine = lineNo;
      }
      values.push(it.value);
      lines.push(lineNo);
      columns.push(it.column);
      lastItemEnd = end;
      lastItemLine = lineNo;
    } else if (!(indent >= 0 && blankOrComment(text, pos, end))) {
      // Blank and comment lines inside a run stay in it (taken out with it when they are between items).
      flush();
    }
    if (end === n) break;
    pos = end + 1;
  }
  flush();
  if (runs.size === 0) return null;
  chunks.push(text.slice(copied));
  const originalLine = (line: number): number => {
    let shift = 0;
    for (const b of breaks) {
      if (line >= b.at) shift = b.shift;
      else break;
    }
    return line + shift;
  };
  return {
    text: chunks.join(''),
    runs,
    nonce,
    originalLine,
    originalPos(line: number, column: number): { line: number; column: number } {
      const original = originalLine(line);
      let by = 0;
      for (const sh of shifts.get(original) ?? []) if (column >= sh.from) by = sh.by;
      return { line: original, column: column + by };
    },
  };
}

/** Where each element of a list with runs put back comes from: a run (position kept) or the parsed document (its index there). */
export type Segment = { start: number; length: number; run: BulkRun } | { start: number; length: 1; docIndex: number };

/**
 * Puts the runs' values back in place of their placeholders, in the parsed
 * value. Returns, per list that had runs (by its path, final indices,
 * joined with NUL), where its elements came from; or null when a
 * placeholder is anywhere but exactly a list element, or not found at all:
 * then the text must be parsed the slow way.
 */
export function expandBulk(raw: unknown, bulk: BulkText): Map<string, Segment[]> | null {
  const marker = `__sluice_bulk_${bulk.nonce}_`;
  const sources = new Map<string, Segment[]>();
  let used = 0;
  let stray = false;
  // A value met twice (a YAML alias, perhaps of itself) is declined: a run put back in one place would not be in the other.
  const seen = new Set<object>();
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (typeof v === 'string') {
      if (v.includes(marker)) stray = true;
      return v;
    }
    if (stray) return v;
    if (v && typeof v === 'object') {
      if (seen.has(v)) {
        stray = true;
        return v;
      }
      seen.add(v);
    }
    if (Array.isArray(v)) {
      let hasRun = false;
      for (const x of v) if (typeof x === 'string' && bulk.runs.has(x)) hasRun = true;
      if (!hasRun) return v.map((x, i) => walk(x, [...path, i]));
      const out: unknown[] = [];
      const segs: Segment[] = [];
      v.forEach((x, i) => {
        const run = typeof x === 'string' ? bulk.runs.get(x) : undefined;
        if (run) {
          used++;
          segs.push({ start: out.length, length: run.values.length, run });
          for (const s of run.values) out.push(s);
        } else {
          segs.push({ start: out.length, length: 1, docIndex: i });
          out.push(walk(x, [...path, out.length]));
        }
      });
      sources.set(path.join('\0'), segs);
      return out;
    }
    if (v && typeof v === 'object') {
      if (v instanceof Date) return v;
      const o = v as Record<string, unknown>;
      for (const k of Object.keys(o)) {
        if (k.includes(marker)) stray = true;
        o[k] = walk(o[k], [...path, k]);
      }
      return o;
    }
    return v;
  };
  const root = walk(raw, []);
  if (stray || used !== bulk.runs.size || root !== raw) return null;
  return sources;
}
