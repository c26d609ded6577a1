import { UsageError } from '../errors.js';
import { DURATION_MS } from '../policy/parse-values.js';

/** YYYY-MM-DD, optionally [T or space]HH:MM[:SS[.fff]], optionally Z or ±HH[:]MM. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * Parses `--since`: a duration back from now (`90s`, `15m`, `1h`, `7d`, `2w`)
 * or an absolute ISO 8601 time (`2026-12-04`, `2026-12-04T10:00`,
 * `2026-12-04 10:00:30+01:00`); without a zone the time is UTC, as `sluice log`
 * prints it. Every field is checked (no 30 February, no 25:00, no trailing
 * text); a start before 1970 means "from the beginning". Returns ms since the epoch.
 */
export function parseSince(text: string, now = Date.now()): number {
  const t = text.trim();
  const d = /^(\d{1,9})([smhdw])$/.exec(t);
  if (d) return Math.max(0, now - Number(d[1]) * DURATION_MS[d[2] as 's' | 'm' | 'h' | 'd' | 'w']);
  const m = ISO.exec(t);
  if (m) {
    const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map((v) => Number(v ?? 0)) as number[];
    const frac = m[7] ? Number(`0.${m[7]}`) * 1000 : 0;
    const valid =
      month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month) && hour <= 23 && minute <= 59 && second <= 59;
    const zone = m[8] ? zoneOffset(m[8]) : 0;
    if (valid && zone !== null) {
      const at = new Date(0);
      at.setUTCFullYear(year, month - 1, day); // not Date.UTC, which reads years 0-99 as 1900-1999
      at.setUTCHours(hour, minute, second, Math.floor(frac));
      return Math.max(0, at.getTime() - zone);
    }
  }
  throw new UsageError(`Bad --since value: ${JSON.stringify(text)} (want a duration such as 30m, 1h, 7d, 2w, or a time such as 2026-12-04 or 2026-12-04T10:00Z)`);
}

function daysIn(year: number, month: number): number {
  const last = new Date(0);
  last.setUTCFullYear(year, month, 0);
  return last.getUTCDate();
}

/** `Z`, `+01:00`, `-0530` -> ms east of UTC; null when out of range. */
function zoneOffset(z: string): number | null {
  if (z.toUpperCase() === 'Z') return 0;
  const h = Number(z.slice(1, 3));
  const min = Number(z.slice(-2));
  if (h > 23 || min > 59) return null;
  return (z[0] === '-' ? -1 : 1) * (h * 60 + min) * 60_000;
}

/** Parses a verdict filter; accepts the names `log` prints. */
export function parseVerdict(text: string): 'blocked' | 'would-block' | 'allowed' {
  if (text === 'blocked' || text === 'would-block' || text === 'allowed') return text;
  throw new UsageError(`Bad --verdict value: ${JSON.stringify(text)} (want blocked, would-block or allowed)`);
}
