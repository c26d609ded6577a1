import { UsageError } from '../errors.js';

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Parses `--since`: a duration back from now (`90s`, `15m`, `1h`, `7d`, `2w`)
 * or an absolute ISO 8601 time. Returns ms since the epoch.
 */
export function parseSince(text: string, now = Date.now()): number {
  const m = /^(\d{1,9})([smhdw])$/.exec(text.trim());
  if (m) return now - Number(m[1]) * (UNITS[m[2] as string] as number);
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(text);
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`Bad --since value: ${JSON.stringify(text)} (want a duration such as 30m, 1h, 7d, or an ISO time)`);
}

/** Parses a verdict filter; accepts the names `log` prints. */
export function parseVerdict(text: string): 'blocked' | 'would-block' | 'allowed' {
  if (text === 'blocked' || text === 'would-block' || text === 'allowed') return text;
  throw new UsageError(`Bad --verdict value: ${JSON.stringify(text)} (want blocked, would-block or allowed)`);
}
