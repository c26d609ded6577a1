import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { SluiceError } from '../errors.js';
import type { CountRow, EventQuery, EventStats, EventStore, LookupRow, PipelineCounters, RecordedEvent, RetentionLimits, StoredEvent, TimelineRow, Verdict } from './event-store.js';
import { ZERO_COUNTERS } from './event-store.js';
import { destinationKey } from './format-event.js';
import { containerOf } from '../system/containers.js';

/**
 * The embedded event store: one SQLite file in the state directory, in WAL
 * mode, written in batches (one transaction per batch, prepared statements).
 *
 * Durability: `synchronous=FULL` by default. In WAL mode, NORMAL already
 * survives a crash of the daemon (a commit has been written to the WAL file
 * when it returns; only an OS crash or power loss can lose the last
 * commits), while FULL also fsyncs the WAL at every commit, so an event
 * `append` acknowledged is on disk even across a power loss. Because the
 * daemon writes batches (hundreds to thousands of events per commit), FULL
 * costs one fsync per batch, not per event; bench:events measures both.
 */

/** 2: the `scope` column (gradual enforcement); 3: the `lookups` table. Older stores gain them on open. */
const SCHEMA_VERSION = 3;

/** Lookups aggregated per day, name, verdict and asker; '' and -1 stand for "unknown" (NULLs are never equal in a key). */
const LOOKUPS_TABLE = `
  CREATE TABLE IF NOT EXISTS lookups (
    day INTEGER NOT NULL, name TEXT NOT NULL, verdict TEXT NOT NULL,
    uid INTEGER NOT NULL, unit TEXT NOT NULL, cgroup TEXT NOT NULL, process TEXT NOT NULL,
    count INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (day, name, verdict, uid, unit, cgroup, process)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS lookups_last ON lookups (last);
`;

const COLUMNS = [
  'time', 'verdict', 'rule', 'family', 'proto', 'src', 'dst', 'sport', 'dport', 'icmp_type', 'iface', 'uid', 'user',
  'pid', 'exe', 'exe_base', 'cmdline', 'comm', 'unit', 'cgroup', 'hostname', 'attribution', 'scope',
] as const;

type Row = Record<(typeof COLUMNS)[number], string | number | null> & { id: number };

export interface SqliteStoreOptions {
  /** Open an existing store only (the CLI never creates one). */
  mustExist?: boolean;
  synchronous?: 'full' | 'normal';
  /**
   * A read-only connection to an existing store (implies mustExist): no
   * pragma that writes, no migration (a store of another schema version is
   * refused), and append fails. For readers that must never write, such as
   * the dashboard's suggestion worker.
   */
  readonly?: boolean;
}

function toRow(e: RecordedEvent): unknown[] {
  const p = e.process;
  const exeBase = p?.exe ? p.exe.slice(p.exe.lastIndexOf('/') + 1) : null;
  return [
    Math.round(e.time), e.verdict, e.rule, e.family, e.proto, e.src, e.dst, e.sport ?? null, e.dport ?? null, e.icmpType ?? null,
    e.iface ?? null, e.uid ?? null, e.user ?? null, p?.pid ?? null, p?.exe ?? null, exeBase, p?.cmdline ?? null, p?.comm ?? null,
    p?.unit ?? null, p?.cgroup ?? null, e.hostname ?? null, e.attribution ?? null, e.scope ?? null,
  ];
}

function fromRow(r: Row): StoredEvent {
  const e: StoredEvent = {
    id: r.id,
    time: Number(r.time),
    verdict: r.verdict as Verdict,
    rule: String(r.rule),
    ...(r.scope !== null && r.scope !== undefined ? { scope: String(r.scope) } : {}),
    family: Number(r.family) === 6 ? 6 : 4,
    proto: Number(r.proto),
    src: String(r.src),
    dst: String(r.dst),
  };
  if (r.sport !== null) e.sport = Number(r.sport);
  if (r.dport !== null) e.dport = Number(r.dport);
  if (r.icmp_type !== null) e.icmpType = Number(r.icmp_type);
  if (r.iface !== null) e.iface = String(r.iface);
  if (r.uid !== null) e.uid = Number(r.uid);
  if (r.user !== null) e.user = String(r.user);
  if (r.pid !== null) {
    const p: NonNullable<StoredEvent['process']> = { pid: Number(r.pid) };
    if (r.exe !== null) p.exe = String(r.exe);
    if (r.cmdline !== null) p.cmdline = String(r.cmdline);
    if (r.comm !== null) p.comm = String(r.comm);
    if (r.unit !== null) p.unit = String(r.unit);
    if (r.cgroup !== null) {
      p.cgroup = String(r.cgroup);
      // Not stored: a function of the path, worked out again on the way out.
      const c = containerOf(p.cgroup);
      if (c) p.container = c;
    }
    e.process = p;
  }
  if (r.hostname !== null) e.hostname = String(r.hostname);
  if (r.attribution !== null) e.attribution = r.attribution as StoredEvent['attribution'];
  return e;
}

/** One row of scanFlows (see there for the columns). */
export type FlowRow = [
  time: number,
  verdict: string,
  rule: string,
  dst: string,
  proto: number,
  dport: number | null,
  icmpType: number | null,
  iface: string | null,
  uid: number | null,
  user: string | null,
  process: string | null,
  unit: string | null,
  cgroup: string | null,
  hostname: string | null,
  scope: string | null,
];

/** The SQLite implementation of EventStore. */
export class SqliteStore implements EventStore {
  private db: Database.Database;
  private insert: Database.Statement;
  private saveCounter: Database.Statement;
  private appendTx: (events: RecordedEvent[], counters?: PipelineCounters, lookups?: LookupRow[]) => void;
  private upsertLookup: Database.Statement | undefined;
  private cache = new Map<string, Database.Statement>();

  /** Opens (and creates, unless mustExist or readonly) the store at `path`. */
  constructor(readonly path: string, opts: SqliteStoreOptions = {}) {
    try {
      if (!opts.mustExist && !opts.readonly) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      this.db = new Database(path, { fileMustExist: Boolean(opts.mustExist || opts.readonly), readonly: opts.readonly ?? false });
    } catch (err) {
      throw openError(path, err);
    }
    try {
      if (opts.readonly) {
        this.db.pragma('busy_timeout = 5000');
        const version = Number(this.db.pragma('user_version', { simple: true }));
        if (version !== SCHEMA_VERSION) throw new SluiceError('EEVENTSTORE', `Event store schema ${version} is not this Sluice's (${SCHEMA_VERSION}), and a read-only reader does not migrate it: ${this.path}`);
      } else {
        // Incremental auto-vacuum must be chosen before the first table exists; it lets retention give space back.
        this.db.pragma('auto_vacuum = INCREMENTAL');
        this.db.pragma('journal_mode = WAL');
        this.db.pragma(`synchronous = ${opts.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
        // The CLI reads while the daemon writes; WAL lets readers run, this covers checkpoints and schema set-up.
        this.db.pragma('busy_timeout = 5000');
        this.migrate();
      }
    } catch (err) {
      this.db.close();
      throw openError(path, err);
    }
    this.insert = this.db.prepare(`INSERT INTO events (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`);
    this.saveCounter = this.db.prepare('INSERT INTO pipeline (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value');
    this.appendTx = this.db.transaction((events: RecordedEvent[], counters?: PipelineCounters, lookups?: LookupRow[]) => {
      for (const e of events) this.insert.run(toRow(e));
      if (counters) for (const [k, v] of Object.entries(counters)) this.saveCounter.run(k, v);
      if (lookups && lookups.length > 0) {
        this.upsertLookup ??= this.db.prepare(
          `INSERT INTO lookups (day, name, verdict, uid, unit, cgroup, process, count, first, last) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (day, name, verdict, uid, unit, cgroup, process) DO UPDATE SET count = count + excluded.count, first = min(first, excluded.first), last = max(last, excluded.last)`,
        );
        for (const l of lookups) this.upsertLookup.run(l.day, l.name, l.verdict, l.uid ?? -1, l.unit ?? '', l.cgroup ?? '', l.process ?? '', l.count, Math.round(l.first), Math.round(l.last));
      }
    });
  }

  private migrate(): void {
    const version = Number(this.db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) {
      throw new SluiceError('EEVENTSTORE', `Event store schema ${version} is newer than this Sluice understands (${SCHEMA_VERSION}): ${this.path}`);
    }
    if (version === SCHEMA_VERSION) return;
    if (version === 1 || version === 2) {
      this.db.exec(`${version === 1 ? 'ALTER TABLE events ADD COLUMN scope TEXT;' : ''} ${LOOKUPS_TABLE} PRAGMA user_version = ${SCHEMA_VERSION};`);
      return;
    }
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL, verdict TEXT NOT NULL, rule TEXT NOT NULL,
        family INTEGER NOT NULL, proto INTEGER NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL,
        sport INTEGER, dport INTEGER, icmp_type INTEGER, iface TEXT, uid INTEGER, user TEXT,
        pid INTEGER, exe TEXT, exe_base TEXT, cmdline TEXT, comm TEXT, unit TEXT, cgroup TEXT,
        hostname TEXT, attribution TEXT, scope TEXT
      );
      CREATE INDEX IF NOT EXISTS events_time ON events (time);
      CREATE TABLE IF NOT EXISTS pipeline (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      ${LOOKUPS_TABLE}
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
  }

  private stmt(sql: string): Database.Statement {
    let s = this.cache.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.cache.set(sql, s);
    }
    return s;
  }

  append(events: RecordedEvent[], counters?: PipelineCounters, lookups?: LookupRow[]): void {
    if (events.length === 0 && !counters && (lookups?.length ?? 0) === 0) return;
    this.appendTx(events, counters, lookups);
  }

  *scanLookups(q: { since: number; until: number }): Generator<LookupRow> {
    const s = this.stmt('SELECT day, name, verdict, uid, unit, cgroup, process, count, first, last FROM lookups WHERE last >= ? AND first < ? ORDER BY day, name');
    for (const r of s.iterate(q.since, q.until) as IterableIterator<{ day: number; name: string; verdict: string; uid: number; unit: string; cgroup: string; process: string; count: number; first: number; last: number }>) {
      yield {
        day: Number(r.day),
        name: String(r.name),
        verdict: r.verdict === 'would-block' ? 'would-block' : 'allowed',
        uid: Number(r.uid) >= 0 ? Number(r.uid) : null,
        unit: r.unit === '' ? null : String(r.unit),
        cgroup: r.cgroup === '' ? null : String(r.cgroup),
        process: r.process === '' ? null : String(r.process),
        count: Number(r.count),
        first: Number(r.first),
        last: Number(r.last),
      };
    }
  }

  private where(q: EventQuery): { sql: string; params: unknown[] } {
    const parts: string[] = [];
    const params: unknown[] = [];
    if (q.since !== undefined) parts.push('time >= ?') && params.push(q.since);
    if (q.until !== undefined) parts.push('time < ?') && params.push(q.until);
    if (q.verdict !== undefined) parts.push('verdict = ?') && params.push(q.verdict);
    if (q.rule !== undefined) parts.push('rule = ?') && params.push(q.rule);
    if (q.afterId !== undefined) parts.push('id > ?') && params.push(q.afterId);
    if (q.process !== undefined) {
      parts.push('pid IS NOT NULL AND (comm = ? OR exe = ? OR exe_base = ?)');
      params.push(q.process, q.process, q.process);
    }
    return { sql: parts.length > 0 ? `WHERE ${parts.join(' AND ')}` : '', params };
  }

  query(q: EventQuery): StoredEvent[] {
    const { sql, params } = this.where(q);
    const newest = q.limit !== undefined && q.afterId === undefined;
    const order = newest ? 'DESC' : 'ASC';
    const limit = q.limit !== undefined ? ' LIMIT ?' : '';
    const rows = this.stmt(`SELECT id, ${COLUMNS.join(', ')} FROM events ${sql} ORDER BY id ${order}${limit}`).all(
      ...params,
      ...(q.limit !== undefined ? [Math.max(0, Math.floor(q.limit))] : []),
    ) as Row[];
    const out = rows.map(fromRow);
    return newest ? out.reverse() : out;
  }

  /**
   * Every event in the window, oldest first, streamed one row at a time
   * (better-sqlite3's iterate): memory stays flat however many there are.
   * The caller must finish or break out of the loop before writing.
   */
  *scan(q: Pick<EventQuery, 'since' | 'until'>): Generator<StoredEvent> {
    const { sql, params } = this.where(q);
    for (const r of this.stmt(`SELECT id, ${COLUMNS.join(', ')} FROM events ${sql} ORDER BY id`).iterate(...params) as IterableIterator<Row>) yield fromRow(r);
  }

  /**
   * The same stream as scan, as rows of the columns a flow summary needs, in
   * this order: time, verdict, rule, dst, proto, dport, icmp_type, iface,
   * uid, user, process name (executable base name, else comm), unit,
   * cgroup, hostname, scope. Arrays, not objects: a million rows in a second or two.
   */
  *scanFlows(q: Pick<EventQuery, 'since' | 'until'>): Generator<FlowRow> {
    const { sql, params } = this.where(q);
    const s = this.db.prepare(`SELECT time, verdict, rule, dst, proto, dport, icmp_type, iface, uid, user, coalesce(exe_base, comm), unit, cgroup, hostname, scope FROM events ${sql} ORDER BY id`).raw(true);
    yield* s.iterate(...params) as IterableIterator<FlowRow>;
  }

  /** The time of the oldest event kept (null when empty): how far back the history reaches. Uses the time index. */
  firstTime(): number | null {
    const r = this.stmt('SELECT min(time) AS t FROM events').get() as { t: number | null };
    return r.t === null ? null : Number(r.t);
  }

  stats(q: Pick<EventQuery, 'since' | 'until'>, n = 10): EventStats {
    const { sql, params } = this.where(q);
    const head = this.stmt(`SELECT count(*) AS total, count(pid) AS attributed, min(time) AS first, max(time) AS last FROM events ${sql}`).get(...params) as {
      total: number;
      attributed: number;
      first: number | null;
      last: number | null;
    };
    const byVerdict: Record<Verdict, number> = { blocked: 0, 'would-block': 0, allowed: 0 };
    const byRule = (this.stmt(`SELECT rule, verdict, count(*) AS count FROM events ${sql} GROUP BY rule, verdict ORDER BY count DESC, rule, verdict`).all(...params) as {
      rule: string;
      verdict: Verdict;
      count: number;
    }[]).map((r) => ({ rule: r.rule, verdict: r.verdict, count: r.count }));
    for (const r of byRule) if (r.verdict in byVerdict) byVerdict[r.verdict] += r.count;
    const dests = this.stmt(
      `SELECT family, dst, proto, dport, icmp_type, count(*) AS count FROM events ${sql} GROUP BY family, dst, proto, dport, icmp_type ORDER BY count DESC, dst, proto, dport LIMIT ?`,
    ).all(...params, n) as { family: number; dst: string; proto: number; dport: number | null; icmp_type: number | null; count: number }[];
    const byDestination: CountRow[] = dests.map((d) => ({
      key: destinationKey({ family: d.family === 6 ? 6 : 4, dst: d.dst, proto: d.proto, ...(d.dport !== null ? { dport: d.dport } : {}), ...(d.icmp_type !== null ? { icmpType: d.icmp_type } : {}) }),
      count: d.count,
    }));
    const byProcess = (this.stmt(
      `SELECT coalesce(exe, comm, '(unknown)') AS key, count(*) AS count FROM events ${sql} GROUP BY key ORDER BY count DESC, key LIMIT ?`,
    ).all(...params, n) as CountRow[]).map((r) => ({ key: r.key, count: r.count }));
    return { total: head.total, byVerdict, byRule, byDestination, byProcess, attributed: head.attributed, first: head.first, last: head.last };
  }

  timeline(q: Pick<EventQuery, 'since' | 'until'>, bucketMs: number): TimelineRow[] {
    const { sql, params } = this.where(q);
    const b = Math.max(1, Math.floor(bucketMs));
    const rows = this.stmt(`SELECT time - (time % ?) AS t, verdict, count(*) AS count FROM events ${sql} GROUP BY t, verdict ORDER BY t, verdict`).all(b, ...params) as { t: number; verdict: Verdict; count: number }[];
    return rows.map((r) => ({ time: r.t, verdict: r.verdict, count: r.count }));
  }

  counters(): PipelineCounters {
    const out: PipelineCounters = { ...ZERO_COUNTERS };
    for (const r of this.stmt('SELECT name, value FROM pipeline').all() as { name: string; value: number }[]) {
      if (r.name in out) out[r.name as keyof PipelineCounters] = Number(r.value);
    }
    return out;
  }

  sizeBytes(): number {
    const pageSize = Number(this.db.pragma('page_size', { simple: true }));
    const pages = Number(this.db.pragma('page_count', { simple: true }));
    const free = Number(this.db.pragma('freelist_count', { simple: true }));
    return (pages - free) * pageSize;
  }

  retain(limits: RetentionLimits, now = Date.now()): number {
    let deleted = 0;
    let lookupsGone = 0;
    if (limits.maxAgeMs !== undefined) {
      deleted += this.stmt('DELETE FROM events WHERE time < ?').run(now - limits.maxAgeMs).changes;
      lookupsGone += this.stmt('DELETE FROM lookups WHERE last < ?').run(now - limits.maxAgeMs).changes;
    }
    if (limits.maxBytes !== undefined) {
      // Delete the oldest in chunks until the pages in use fit. A bounded number of rounds: each removes
      // at least a tenth of what is left, so a size too small for even one event ends with an empty store.
      for (let round = 0; round < 64 && this.sizeBytes() > limits.maxBytes; round++) {
        const count = Number((this.stmt('SELECT count(*) AS n FROM events').get() as { n: number }).n);
        if (count === 0) {
          // Only lookups left: the oldest day goes.
          const r = this.stmt('DELETE FROM lookups WHERE day = (SELECT min(day) FROM lookups)').run();
          if (r.changes === 0) break;
          lookupsGone += r.changes;
          continue;
        }
        const excess = this.sizeBytes() - limits.maxBytes;
        const perRow = this.sizeBytes() / count;
        const chunk = Math.min(count, Math.max(Math.ceil(count / 10), Math.ceil(excess / Math.max(perRow, 1))));
        deleted += this.stmt('DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)').run(chunk).changes;
      }
    }
    if (deleted > 0) {
      // Lookups older than the oldest event kept: the history the flows reach back to bounds them too.
      const first = this.firstTime();
      if (first !== null) lookupsGone += this.stmt('DELETE FROM lookups WHERE last < ?').run(first).changes;
    }
    if (deleted > 0 || lookupsGone > 0) this.db.pragma('incremental_vacuum');
    return deleted;
  }

  lastId(): number {
    // AUTOINCREMENT never reuses an id, even after retention emptied the table, so followers never miss one.
    const r = this.stmt("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get() as { seq: number } | undefined;
    return r ? Number(r.seq) : 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function openError(path: string, err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const e = err as { code?: string; message?: string };
  const code = e.code && /^E[A-Z]+$/.test(e.code) ? e.code : (e.code ?? 'ERROR');
  return new SluiceError('EEVENTSTORE', `Cannot open event store: ${code}: ${path}${e.message && !e.message.includes(path) ? ` (${e.message})` : ''}`, { cause: err });
}
