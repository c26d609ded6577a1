/**
 * A unified line diff of two policy texts (`--- a` / `+++ b` and hunks with
 * three lines of context), for the journal and the dashboard's policy page.
 * The common head and tail are trimmed first; what is left is compared with
 * a longest-common-subsequence table, which is bounded: beyond MAX_CELLS
 * the middle is shown as removed and added whole (still a correct diff,
 * only a longer one). Empty when the texts are equal.
 */

const MAX_CELLS = 4_000_000;
const CONTEXT = 3;

/** One line of a diff: kept (' '), removed ('-') or added ('+'). */
export type DiffOp = { k: ' ' | '-' | '+'; line: string };

function lines(text: string): string[] {
  if (text === '') return [];
  const l = text.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}

/**
 * The longest-common-subsequence diff of two line lists, every line as an
 * op: the common head and tail trimmed first (texts usually differ in a few
 * lines), the middle compared with an LCS table of at most `maxCells` cells
 * (beyond, the middle is removed and added whole: still a correct diff, only
 * a longer one). Where both a removal and an addition fit, `prefer` goes first.
 * The one line diff of the project: policy texts here, rulesets in
 * netfilter/compare-ruleset.ts.
 */
export function diffLines(a: readonly string[], b: readonly string[], opts: { maxCells?: number; prefer?: '-' | '+' } = {}): DiffOp[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  return [
    ...a.slice(0, head).map((line): DiffOp => ({ k: ' ', line })),
    ...middleOps(x, y, opts.maxCells ?? MAX_CELLS, opts.prefer ?? '-'),
    ...a.slice(a.length - tail).map((line): DiffOp => ({ k: ' ', line })),
  ];
}

function middleOps(a: string[], b: string[], maxCells: number, prefer: '-' | '+'): DiffOp[] {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0 || n * m > maxCells) return [...a.map((line): DiffOp => ({ k: '-', line })), ...b.map((line): DiffOp => ({ k: '+', line }))];
  // lcs[i][j]: the LCS length of a[i..] and b[j..], in one typed array.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) lcs[i * w + j] = a[i] === b[j] ? (lcs[(i + 1) * w + j + 1] ?? 0) + 1 : Math.max(lcs[(i + 1) * w + j] ?? 0, lcs[i * w + j + 1] ?? 0);
  }
  const out: DiffOp[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ k: ' ', line: a[i] as string });
      i++;
      j++;
      continue;
    }
    const down = lcs[(i + 1) * w + j] ?? 0; // dropping a[i] keeps this much in common
    const right = lcs[i * w + j + 1] ?? 0; // adding b[j] keeps this much
    const remove = prefer === '-' ? down >= right : down > right;
    if (remove) out.push({ k: '-', line: a[i++] as string });
    else out.push({ k: '+', line: b[j++] as string });
  }
  while (i < n) out.push({ k: '-', line: a[i++] as string });
  while (j < m) out.push({ k: '+', line: b[j++] as string });
  return out;
}

/** The unified diff from `before` to `after` (labelled `fromName`, `toName`); '' when equal. */
export function textDiff(before: string, after: string, fromName = 'before', toName = 'after'): string {
  const ops = diffLines(lines(before), lines(after));
  if (ops.every((op) => op.k === ' ')) return '';
  // Line numbers of each op in a and b (1-based, of the next line).
  const out = [`--- ${fromName}`, `+++ ${toName}`];
  let ai = 1;
  let bi = 1;
  const pos = ops.map((op) => {
    const p = { a: ai, b: bi };
    if (op.k !== '+') ai++;
    if (op.k !== '-') bi++;
    return p;
  });
  let k = 0;
  while (k < ops.length) {
    if (ops[k]?.k === ' ') {
      k++;
      continue;
    }
    let start = Math.max(0, k - CONTEXT);
    let end = k;
    // Extend while changes are within 2*CONTEXT of each other.
    for (;;) {
      while (end < ops.length && ops[end]?.k !== ' ') end++;
      let next = end;
      while (next < ops.length && ops[next]?.k === ' ') next++;
      if (next < ops.length && next - end <= 2 * CONTEXT) end = next;
      else break;
    }
    const stop = Math.min(ops.length, end + CONTEXT);
    const hunk = ops.slice(start, stop);
    const p = pos[start] ?? { a: ai, b: bi };
    const aLen = hunk.filter((o) => o.k !== '+').length;
    const bLen = hunk.filter((o) => o.k !== '-').length;
    out.push(`@@ -${aLen === 0 ? p.a - 1 : p.a},${aLen} +${bLen === 0 ? p.b - 1 : p.b},${bLen} @@`);
    for (const o of hunk) out.push(`${o.k}${o.line}`);
    k = stop;
    start = stop;
  }
  return `${out.join('\n')}\n`;
}
