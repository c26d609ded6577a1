/**
 * Queries in flight, overall and per client, with a ceiling on each: one
 * client (a user, as the kernel marks its queries with its uid) may hold
 * at most `share` of the `total`, so a user flooding the guard with
 * queries that never get answered cannot use up the slots every other
 * user's queries need. Over either ceiling a query is refused (the caller
 * drops and counts it), never queued.
 */
export class InflightShares<K> {
  private held = new Map<K, number>();
  private all = 0;
  /** Queries refused because their client held its share. */
  overShare = 0;
  /** Queries refused because the total was reached. */
  overTotal = 0;

  constructor(
    readonly total: number,
    readonly share: number,
  ) {}

  /** Takes a slot for `key`; false (counted) when the total or the key's share is used up. */
  take(key: K): boolean {
    if (this.all >= this.total) {
      this.overTotal++;
      return false;
    }
    const n = this.held.get(key) ?? 0;
    if (n >= this.share) {
      this.overShare++;
      return false;
    }
    this.held.set(key, n + 1);
    this.all++;
    return true;
  }

  /** Gives back a slot taken for `key`. */
  give(key: K): void {
    const n = this.held.get(key) ?? 0;
    if (n <= 1) this.held.delete(key);
    else this.held.set(key, n - 1);
    if (n > 0) this.all--;
  }

  /** Queries in flight now. */
  get inflight(): number {
    return this.all;
  }

  /** Queries `key` holds now. */
  holding(key: K): number {
    return this.held.get(key) ?? 0;
  }
}
