/**
 * Time for components that schedule their own work: the real clock in the
 * daemon, a fake one in tests (test/support/fake-clock.ts), so that timings
 * (a debounce, a retry, how long a busy guard may hold a check off) are
 * tested to the millisecond without sleeping.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** A repeating timer that does not keep the process alive (unref). */
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setImmediate(fn: () => void): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setImmediate: (fn) => void setImmediate(fn),
};
