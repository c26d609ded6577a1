/** Statistics and helpers the benchmarks share. */
import type { RunResult } from '../../test/world/world.js';

/** A command that must have succeeded; its output otherwise, in the error. */
export function check(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${(r.stderr.trim() || r.stdout.trim()).slice(0, 2000)}`);
  return r;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export interface Stat {
  median: number;
  /** Distribution-free 95% confidence interval of the median (order statistics); min and max below 6 values. */
  ciLow: number;
  ciHigh: number;
  min: number;
  max: number;
  n: number;
}

/** P(Binomial(n, 1/2) <= k). */
function binomHalfCdf(n: number, k: number): number {
  let term = 0.5 ** n;
  let sum = term;
  for (let i = 1; i <= k; i++) {
    term = (term * (n - i + 1)) / i;
    sum += term;
  }
  return sum;
}

/** Median with its distribution-free 95% confidence interval. */
export function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  // Largest k with P(Bin(n, 1/2) <= k - 1) <= 2.5%: [x(k), x(n-k+1)] covers the median with >= 95%.
  let k = 0;
  while (k + 1 <= n && binomHalfCdf(n, k) <= 0.025) k++;
  const lo = k >= 1 ? s[k - 1] : s[0];
  const hi = k >= 1 ? s[n - k] : s[n - 1];
  return { median: median(s), ciLow: lo ?? NaN, ciHigh: hi ?? NaN, min: s[0] ?? NaN, max: s[n - 1] ?? NaN, n };
}

export const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : String(n));
export const fmtRatio = (s: Stat) => (s.n ? `${s.median.toFixed(3)} (${s.ciLow.toFixed(2)}-${s.ciHigh.toFixed(2)})` : '-');

/**
 * Process handlers every benchmark installs: a command that exits before its
 * (empty) stdin is written raises a harmless EPIPE; anything else ends the run;
 * signals go through process.exit so the Worlds tear themselves down.
 */
export function installExitHandlers(): void {
  process.on('uncaughtException', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' && err.syscall === 'write') return;
    process.stderr.write(`bench: ${err.stack ?? String(err)}\n`);
    process.exit(1);
  });
  process.on('SIGINT', () => process.exit(130));
  process.on('SIGTERM', () => process.exit(143));
}

/** A bad option value: reported in one line, exit status 2. */
export class UsageError extends Error {}

/**
 * A numeric option: the flag's value, else the environment variable, else
 * the default; anything outside [min, max] (or not an integer when `int`)
 * is an error naming both.
 */
export function numOption(flag: string | undefined, env: string, def: number, range: { min: number; max?: number; int: boolean }): number {
  const raw = flag ?? process.env[env];
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  const max = range.max ?? Number.POSITIVE_INFINITY;
  if (!Number.isFinite(v) || v < range.min || v > max || (range.int && !Number.isInteger(v))) {
    const bounds = Number.isFinite(max) ? `from ${range.min} to ${max}` : `>= ${range.min}`;
    throw new UsageError(`bad value for ${env} / its flag: ${JSON.stringify(raw)} (a${range.int ? 'n integer' : ' number'} ${bounds})`);
  }
  return v;
}

/** Runs a benchmark's main: a usage error is one line and exit status 2, any other failure its stack and 1. */
export function run(main: () => Promise<void>): void {
  main().then(
    () => {
      process.exitCode = 0;
    },
    (err: unknown) => {
      // Bad flags (parseArgs) are usage errors too.
      if (err instanceof UsageError || String((err as NodeJS.ErrnoException)?.code ?? '').startsWith('ERR_PARSE_ARGS_')) {
        process.stderr.write(`bench: ${(err as Error).message} (--help lists the options)\n`);
        process.exitCode = 2;
        return;
      }
      process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
