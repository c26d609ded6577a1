import { existsSync } from 'node:fs';
import type { EventQuery, StoredEvent } from '../../events/event-store.js';
import { formatEventLine } from '../../events/format-event.js';
import { SqliteStore } from '../../events/sqlite-store.js';
import { eventStorePath } from '../../events/store-component.js';
import { parseSince, parseVerdict } from '../../events/time-window.js';
import { bigintJson, EXIT, type Context } from '../context.js';
import { onStop } from '../output.js';

export interface LogArgs {
  follow?: boolean;
  since?: string;
  verdict?: string;
  process?: string;
  rule?: string;
  /** The newest N (parsed by the command line: an integer from 1). */
  limit?: number;
}

/** The store of this state directory for reading, or null when nothing was recorded yet. */
export function openStoreForReading(stateDir: string): SqliteStore | null {
  const path = eventStorePath(stateDir);
  if (!existsSync(path)) return null;
  return new SqliteStore(path, { mustExist: true });
}

function print(ctx: Context, e: StoredEvent, follow: boolean): void {
  if (ctx.json) {
    if (follow) process.stdout.write(`${JSON.stringify(e, bigintJson)}\n`);
  } else process.stdout.write(`${formatEventLine(e)}\n`);
}

/**
 * `sluice log [--follow] [--since 1h] [--verdict V] [--process NAME] [--rule R] [--limit N] [--json]`:
 * events from the store, oldest first (the newest `--limit`, default 100).
 * Reads the SQLite file directly, so it works whether or not the daemon
 * runs; `--follow` then tails the file (JSON lines with --json) until interrupted.
 */
export async function log(ctx: Context, args: LogArgs): Promise<number> {
  const q: EventQuery = {};
  if (args.since !== undefined) q.since = parseSince(args.since);
  if (args.verdict !== undefined) q.verdict = parseVerdict(args.verdict);
  if (args.process !== undefined) q.process = args.process;
  if (args.rule !== undefined) q.rule = args.rule;
  q.limit = args.limit ?? 100;

  let store = openStoreForReading(ctx.state.dir);
  const events = store ? store.query(q) : [];
  if (!args.follow) {
    if (ctx.json) ctx.result({ events, store: eventStorePath(ctx.state.dir) });
    else if (events.length === 0) ctx.say(store ? 'No events match.' : `No events recorded yet (no store at ${eventStorePath(ctx.state.dir)}; the daemon writes it)`);
    else for (const e of events) ctx.say(formatEventLine(e));
    store?.close();
    return EXIT.ok;
  }

  for (const e of events) print(ctx, e, true);
  let after = events.at(-1)?.id ?? store?.lastId() ?? 0;
  const stop = new Promise<void>((resolve) => onStop(resolve));
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  // Polls the file: readers never block the daemon's writer in WAL mode, and this works without the daemon.
  while (!stopped) {
    await Promise.race([new Promise((r) => setTimeout(r, 250)), stop]);
    if (stopped) break;
    store ??= openStoreForReading(ctx.state.dir);
    if (!store) continue;
    const { limit: _l, ...filter } = q;
    for (;;) {
      const batch = store.query({ ...filter, afterId: after, limit: 1000 });
      for (const e of batch) print(ctx, e, true);
      if (batch.length > 0) after = (batch.at(-1) as StoredEvent).id;
      if (batch.length < 1000) break;
    }
  }
  store?.close();
  return EXIT.ok;
}
