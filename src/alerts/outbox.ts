import Database from 'better-sqlite3';
import type { AlertMessage } from './rollup.js';

/** A queued alert. */
export interface OutboxRow {
  id: number;
  route: string;
  message: AlertMessage;
  created: number;
  attempts: number;
  nextAt: number;
  lastError: string | null;
}

/** Per route: what was delivered, retried and given up, what waits, and since when. */
export interface RouteCounters {
  delivered: number;
  retried: number;
  failed: number;
  queued: number;
  oldestQueued: string | null;
  lastError: string | null;
}

/** After this many failed attempts or this long in the queue an alert is given up (counted as failed, and logged). */
export const MAX_ATTEMPTS = 200;
export const MAX_AGE_MS = 7 * 86_400_000;
/** Alerts held per route at most; beyond it the oldest is given up (counted). */
export const MAX_QUEUED = 100_000;
/** Destination pairs new-destination remembers on disk. */
export const MAX_SEEN = 1_000_000;

/** Backoff after `attempts` failures: 1 s, 2 s, 4 s ... at most 5 minutes. */
export function backoffMs(attempts: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.min(20, Math.max(0, attempts - 1)));
}

/**
 * The durable alert queue (alerts.db in the state directory): an alert is
 * stored before any delivery is tried, and leaves the queue only when its
 * sink took it or it was given up (counted as failed). It survives daemon
 * restarts; per-route counters are kept with it.
 */
export class Outbox {
  private db: Database.Database;
  /** Rows queued per route, counted once per route and then kept (a COUNT over a long queue costs milliseconds). */
  private queued = new Map<string, number>();

  constructor(readonly path: string) {
    this.db = new Database(path);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(`
        CREATE TABLE IF NOT EXISTS outbox (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          route TEXT NOT NULL,
          body TEXT NOT NULL,
          created INTEGER NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          next_at INTEGER NOT NULL,
          last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS outbox_route ON outbox (route, id);
        CREATE TABLE IF NOT EXISTS counters (route TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (route, name));
        CREATE TABLE IF NOT EXISTS seen (who TEXT NOT NULL, destination TEXT NOT NULL, first INTEGER NOT NULL, PRIMARY KEY (who, destination)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS seen_first ON seen (first);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  private bump(route: string, name: 'delivered' | 'retried' | 'failed', by = 1): void {
    this.db.prepare('INSERT INTO counters (route, name, value) VALUES (?, ?, ?) ON CONFLICT (route, name) DO UPDATE SET value = value + excluded.value').run(route, name, by);
  }

  private queuedCount(route: string): number {
    let n = this.queued.get(route);
    if (n === undefined) {
      n = (this.db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE route = ?').get(route) as { n: number }).n;
      this.queued.set(route, n);
    }
    return n;
  }

  /** Deletes a row, keeping the route's count (counted before the delete, when not known yet). */
  private forget(id: number, route: string): void {
    const n = this.queuedCount(route);
    if (this.db.prepare('DELETE FROM outbox WHERE id = ?').run(id).changes > 0) this.queued.set(route, Math.max(0, n - 1));
  }

  /** Stores an alert for `route`; deliverable at once. Returns its id. */
  enqueue(route: string, message: AlertMessage, now = Date.now()): number {
    return this.enqueueMany([message], now)[0] as number;
  }

  /**
   * Stores alerts (each for its `route`) in one transaction: a window closing
   * on thousands of keys is one disk sync, not thousands. Past MAX_QUEUED a
   * route's oldest alerts are given up, counted.
   */
  enqueueMany(messages: AlertMessage[], now = Date.now()): number[] {
    if (messages.length === 0) return [];
    const insert = this.db.prepare('INSERT INTO outbox (route, body, created, next_at) VALUES (?, ?, ?, ?)');
    // Counts change in a copy, kept only once the transaction committed (a failed one changes nothing).
    const counts = new Map<string, number>();
    for (const m of messages) if (!counts.has(m.route)) counts.set(m.route, this.queuedCount(m.route));
    const ids = this.db.transaction(() => {
      const out: number[] = [];
      for (const m of messages) {
        const n = counts.get(m.route) ?? 0;
        let kept = n;
        if (n >= MAX_QUEUED) {
          const over = n - MAX_QUEUED + 1;
          this.db.prepare('DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE route = ? ORDER BY id LIMIT ?)').run(m.route, over);
          this.bump(m.route, 'failed', over);
          kept = n - over;
        }
        out.push(Number(insert.run(m.route, JSON.stringify(m), now, now).lastInsertRowid));
        counts.set(m.route, kept + 1);
      }
      return out;
    })();
    for (const [route, n] of counts) this.queued.set(route, n);
    return ids;
  }

  /** The oldest alert of `route` due now, if any (alerts of one route go out in order). */
  next(route: string, now = Date.now()): OutboxRow | null {
    const head = this.db.prepare('SELECT id, route, body, created, attempts, next_at, last_error FROM outbox WHERE route = ? ORDER BY id LIMIT 1');
    // Rows this version cannot read (not JSON, or not an alert's object: a damaged file, another
    // version's rows) are given up, counted, all in one transaction and one loop: one sync and one
    // stack frame for thousands of them, not one each (30,000 overflowed the stack, and took seconds).
    const take = this.db.transaction((): OutboxRow | null => {
      let unreadable = 0;
      try {
        for (;;) {
          const r = head.get(route) as { id: number; route: string; body: string; created: number; attempts: number; next_at: number; last_error: string | null } | undefined;
          if (!r || r.next_at > now) return null;
          let message: unknown;
          try {
            message = JSON.parse(r.body);
          } catch {
            message = undefined;
          }
          if (typeof message === 'object' && message !== null && !Array.isArray(message)) {
            return { id: r.id, route: r.route, message: message as AlertMessage, created: r.created, attempts: r.attempts, nextAt: r.next_at, lastError: r.last_error };
          }
          this.forget(r.id, route);
          unreadable++;
        }
      } finally {
        if (unreadable > 0) this.bump(route, 'failed', unreadable);
      }
    });
    try {
      return take();
    } catch (err) {
      this.queued.delete(route); // rolled back: counted again from the table next time
      throw err;
    }
  }

  delivered(id: number, route: string): void {
    this.db.transaction(() => {
      this.forget(id, route);
      this.bump(route, 'delivered');
    })();
  }

  /** A failed attempt: retried after the backoff, or given up (true) when it has been tried too long. */
  failedAttempt(row: OutboxRow, error: string, now = Date.now()): boolean {
    const attempts = row.attempts + 1;
    if (attempts >= MAX_ATTEMPTS || now - row.created >= MAX_AGE_MS) {
      this.giveUp(row.id, row.route);
      return true;
    }
    this.db.transaction(() => {
      this.db.prepare('UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?').run(attempts, now + backoffMs(attempts), error.slice(0, 500), row.id);
      this.bump(row.route, 'retried');
    })();
    return false;
  }

  private giveUp(id: number, route: string): void {
    this.db.transaction(() => {
      this.forget(id, route);
      this.bump(route, 'failed');
      this.db.prepare("INSERT INTO counters (route, name, value) VALUES (?, 'given_up_at', ?) ON CONFLICT (route, name) DO UPDATE SET value = excluded.value").run(route, Date.now());
    })();
  }

  /** When the next alert of `route` is due (ms since the epoch), or null when none waits. */
  nextDue(route: string): number | null {
    const r = this.db.prepare('SELECT next_at FROM outbox WHERE route = ? ORDER BY id LIMIT 1').get(route) as { next_at: number } | undefined;
    return r ? r.next_at : null;
  }

  /** Cheap at any queue length: the counters table, the kept count, and the head of the queue (the oldest, the one being retried). */
  counters(route: string): RouteCounters {
    const values = new Map((this.db.prepare('SELECT name, value FROM counters WHERE route = ?').all(route) as { name: string; value: number }[]).map((r) => [r.name, r.value]));
    const head = this.db.prepare('SELECT created, last_error FROM outbox WHERE route = ? ORDER BY id LIMIT 1').get(route) as { created: number; last_error: string | null } | undefined;
    return {
      delivered: values.get('delivered') ?? 0,
      retried: values.get('retried') ?? 0,
      failed: values.get('failed') ?? 0,
      queued: this.queuedCount(route),
      oldestQueued: head ? new Date(head.created).toISOString() : null,
      lastError: head?.last_error ?? null,
    };
  }

  /** Gives up every alert of a route (one removed from the policy: its sink is no longer known), counted; how many. */
  dropRoute(route: string): number {
    return this.db.transaction(() => {
      const n = this.db.prepare('DELETE FROM outbox WHERE route = ?').run(route).changes;
      if (n > 0) this.bump(route, 'failed', n);
      this.queued.set(route, 0);
      return n;
    })();
  }

  /** Every route with rows or counters (a route removed from the policy may still have alerts waiting). */
  routes(): string[] {
    return (this.db.prepare('SELECT route FROM outbox UNION SELECT route FROM counters ORDER BY route').all() as { route: string }[]).map((r) => r.route);
  }

  /**
   * The (who, destination) pairs seen so far, the newest `limit`, and since
   * when pairs are being recorded (the first call records it: now).
   */
  seen(limit: number, now = Date.now()): { since: number; pairs: { who: string; destination: string }[] } {
    this.db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('seen_since', ?)").run(String(now));
    const since = Number((this.db.prepare("SELECT value FROM meta WHERE key = 'seen_since'").get() as { value: string }).value);
    const pairs = (this.db.prepare('SELECT who, destination FROM seen ORDER BY first DESC LIMIT ?').all(limit) as { who: string; destination: string }[]).reverse();
    return { since: Number.isFinite(since) ? since : now, pairs };
  }

  /**
   * Records pairs seen for the first time, in one transaction. At most
   * `max` are kept: past it the oldest go (a process asking for endless
   * distinct names under a wildcard rule cannot fill the disk).
   */
  addSeen(pairs: readonly { who: string; destination: string; first: number }[], max = MAX_SEEN): void {
    if (pairs.length === 0) return;
    const insert = this.db.prepare('INSERT OR IGNORE INTO seen (who, destination, first) VALUES (?, ?, ?)');
    // Counted again after a transaction that failed (its rows are not there).
    const counted = this.seenRows;
    this.seenRows = undefined;
    this.db.transaction(() => {
      let added = 0;
      for (const p of pairs) added += insert.run(p.who, p.destination, p.first).changes;
      let rows = counted === undefined ? (this.db.prepare('SELECT COUNT(*) AS n FROM seen').get() as { n: number }).n : counted + added;
      if (rows > max) {
        this.db.prepare('DELETE FROM seen WHERE (who, destination) IN (SELECT who, destination FROM seen ORDER BY first LIMIT ?)').run(rows - max);
        rows = max;
      }
      this.seenRows = rows;
    })();
  }

  /** Rows in `seen`, counted once and then kept. */
  private seenRows: number | undefined;

  close(): void {
    this.db.close();
  }
}
