/** At most `perSecond` units in each one-second window; what is over is refused and counted by the caller. */
export class PerSecondBudget {
  private windowStart = 0;
  private used = 0;

  constructor(readonly perSecond: number) {}

  take(n: number, now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used + n > this.perSecond) return false;
    this.used += n;
    return true;
  }
}
