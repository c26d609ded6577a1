/**
 * Tamper findings for the Overview chart's time axis, read from the state
 * directory's journal: the watchdog writes a `tamper-restore` line when it
 * put the table back (by the one table writer) and a `tamper` line when it
 * did not (policy `tamper: alert`, a failed restore, a change undone before
 * it looked). The journal is root's, but its fields are treated as data of
 * any shape: only well-formed times, short strings and booleans come out.
 */

/** One tamper finding: when, whether the table was put back, who changed it (as the kernel's notifications told) and what changed (the first lines). */
export interface TamperMark {
  /** Milliseconds since the epoch (the journal line's `at`). */
  time: number;
  restored: boolean;
  by: string[];
  changes: string[];
}

/** Marks in a window are at most this many (the newest kept): a chart has ~360 buckets. */
export const MAX_TAMPER_MARKS = 200;
const MAX_LINES = 3;
const MAX_TEXT = 200;

const texts = (v: unknown): string[] =>
  Array.isArray(v)
    ? v
        .filter((x): x is string => typeof x === 'string')
        .slice(0, MAX_LINES)
        .map((x) => (x.length > MAX_TEXT ? `${x.slice(0, MAX_TEXT - 1)}…` : x))
    : [];

/** The journal's tamper lines within [since, until] (until: now, when absent), oldest first, at most `max` (the newest). */
export function tamperMarks(journal: readonly Record<string, unknown>[], window: { since: number; until?: number }, max = MAX_TAMPER_MARKS): TamperMark[] {
  const until = window.until ?? Number.POSITIVE_INFINITY;
  const out: TamperMark[] = [];
  for (const e of journal) {
    if (e.event !== 'tamper' && e.event !== 'tamper-restore') continue;
    const time = typeof e.at === 'string' ? Date.parse(e.at) : Number.NaN;
    if (!Number.isFinite(time) || time < window.since || time > until) continue;
    out.push({ time, restored: e.event === 'tamper-restore', by: texts(e.by), changes: texts(e.changes) });
  }
  out.sort((a, b) => a.time - b.time);
  return out.slice(-max);
}
