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

type Op = { k: ' ' | '-' | '+'; line: string };

function lines(text: string): string[] {
  if (text === '') return [];
  const l = text.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}

function middleOps(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0 || n * m > MAX_CELLS) return [...a.map((line): Op => ({ k: '-', line })), ...b.map((line): Op => ({ k: '+', line }))];
  // lcs[i][j]: the LCS length of a[i..] and b[j..], in one typed array.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) lcs[i * w + j] = a[i] === b[j] ? (lcs[(i + 1) * w + j + 1] ?? 0) + 1 : Math.max(lcs[(i + 1) * w + j] ?? 0, lcs[i * w + j + 1] ?? 0);
  }
  const out: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ k: ' ', line: a[i] as string });
      i++;
      j++;
    } else if ((lcs[(i + 1) * w + j] ?? 0) >= (lcs[i * w + j + 1] ?? 0)) out.push({ k: '-', line: a[i++] as string });
    else out.push({ k: '+', line: b[j++] as string });
  }
  while (i < n) out.push({ k: '-', line: a[i++] as string });
  while (j < m) out.push({ k: '+', line: b[j++] as string });
  return out;
}

/** The unified diff from `before` to `after` (labelled `fromName`, `toName`); '' when equal. */
export function textDiff(before: string, after: string, fromName = 'before', toName = 'after'): string {
  const a = lines(before);
  const b = lines(after);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  if (head === a.length && head === b.length) return '';
  const ops: Op[] = [
    ...a.slice(0, head).map((line): Op => ({ k: ' ', line })),
    ...middleOps(a.slice(head, a.length - tail), b.slice(head, b.length - tail)),
    ...a.slice(a.length - tail).map((line): Op => ({ k: ' ', line })),
  ];
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
