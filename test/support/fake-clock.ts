import type { Clock } from '../../src/runtime/clock.js';

interface Timer {
  id: number;
  at: number;
  fn: () => void;
  every?: number;
}

/**
 * A clock that moves only when told (advance): timers run in the order of
 * their time (and of their creation at the same time), each with now() at
 * its time. As in Node, a timeout of less than 1 ms waits 1 ms; an
 * immediate runs at the current time, after the timers already due.
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, Timer>();

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    return this.add(fn, Math.max(1, ms));
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  setInterval(fn: () => void, ms: number): unknown {
    const id = this.add(fn, Math.max(1, ms));
    (this.timers.get(id) as Timer).every = Math.max(1, ms);
    return id;
  }

  clearInterval(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  setImmediate(fn: () => void): void {
    this.add(fn, 0);
  }

  /** Timers and immediates waiting to run. */
  get pending(): number {
    return this.timers.size;
  }

  /** The time the next timer is due, or undefined. */
  next(): number | undefined {
    return this.first()?.at;
  }

  /** Moves the time `ms` on, running every timer due on the way at its own time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 1_000_000) throw new Error('FakeClock: timers keep rescheduling without time passing');
      const next = this.first();
      if (!next || next.at > end) break;
      this.t = next.at;
      if (next.every !== undefined) next.at += next.every;
      else this.timers.delete(next.id);
      next.fn();
    }
    this.t = end;
  }

  private add(fn: () => void, ms: number): number {
    const id = ++this.seq;
    this.timers.set(id, { id, at: this.t + ms, fn });
    return id;
  }

  private first(): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers.values()) if (!best || x.at < best.at || (x.at === best.at && x.id < best.id)) best = x;
    return best;
  }
}
