import { SluiceError } from '../errors.js';
import type { FlowRow } from '../events/sqlite-store.js';
import type { LookupRow } from '../events/event-store.js';
import type { Policy } from '../policy/policy.js';
import { Observations } from './observations.js';
import { promotions, type PromotionReport } from './promote.js';
import { suggestPolicy, type SuggestOptions, type Suggestion } from './suggest-policy.js';

/** What suggest reads from an event store (SqliteStore gives both). */
export interface FlowSource {
  scanFlows(q: { since: number; until: number }): Iterable<FlowRow>;
  /** The time of the oldest event kept, or null. */
  firstTime(): number | null;
  /** Resolved lookups overlapping the window (names resolved, connected to or not); a source without them gives flows only. */
  scanLookups?(q: { since: number; until: number }): Iterable<LookupRow>;
}

const DAY_MS = 86_400_000;

export interface ScanOptions {
  since: number;
  until: number;
  /** Gradual enforcement: also the promotions of this policy over the last `stableDays` (the same scan). */
  promotions?: { policy: Policy; stableDays: number };
  /** At most this many distinct flows (Observations' bound; default its own). */
  maxFlows?: number;
  /** Stop reading after this long (ms); the result then says where it stopped. Default: no limit (the CLI). */
  budgetMs?: number;
  now?: () => number;
}

export interface ScanResult {
  obs: Observations;
  /** Absent when not asked for, or when the scan was cut (a cut scan cannot say that something saw no would-block). */
  promo?: PromotionReport;
  /** Null when every row of the window was read; else the time of the row the budget stopped at: what follows it was not read. */
  cutAt: number | null;
  /** Rows read (the promotions' longer window included). */
  rows: number;
}

/**
 * One pass over the store for `sluice suggest` and the dashboard's
 * suggestions: the window's events folded into distinct flows, and, when
 * asked, the promotions (`--stable-days`) from the same rows (the scan
 * starts at the earlier of the two windows; each sees only its own rows).
 * Rows come in id order, streamed, never held. With a budget, the scan
 * stops when the time is up and says where; the promotions are then left
 * out, since an unread would-block could make something look stable.
 */
export function scanWindow(store: FlowSource, opts: ScanOptions): ScanResult {
  const obs = opts.maxFlows !== undefined ? new Observations(opts.maxFlows) : new Observations();
  const now = opts.now ?? Date.now;
  const start = now();
  const promoSince = opts.promotions ? opts.until - opts.promotions.stableDays * DAY_MS : opts.since;
  const from = Math.min(opts.since, promoSince);
  let cutAt: number | null = null;
  let rows = 0;
  const since = opts.since;
  const budget = opts.budgetMs;
  function* rowsOf(): Generator<FlowRow> {
    for (const r of store.scanFlows({ since: from, until: opts.until })) {
      // The clock is read every 1,024 rows: cheap next to the rows themselves.
      rows++;
      if (budget !== undefined && (rows & 1023) === 0 && now() - start > budget) {
        cutAt = r[0];
        return;
      }
      if (r[0] >= since) obs.addRow(r);
      yield r;
    }
  }
  let promo: PromotionReport | undefined;
  if (opts.promotions) {
    promo = promotions(opts.promotions.policy, rowsOf(), { stableDays: opts.promotions.stableDays, until: opts.until, historyFrom: store.firstTime() });
  } else {
    const it = rowsOf();
    while (!it.next().done) {
      // Observations fold the rows as they pass.
    }
  }
  // The names resolved in the window (aggregated per day, so a row counts when its day overlaps the window).
  if (cutAt === null && store.scanLookups) {
    let n = 0;
    for (const l of store.scanLookups({ since: opts.since, until: opts.until })) {
      if (budget !== undefined && (++n & 1023) === 0 && now() - start > budget) {
        cutAt = l.first;
        break;
      }
      obs.addLookup(l);
    }
  }
  return { obs, ...(promo && cutAt === null ? { promo } : {}), cutAt, rows };
}

/**
 * suggestPolicy, and what it wrote loaded back with Sluice's own loader
 * (`parse`: the same options `sluice apply` would read it with): a
 * suggestion that does not load is a bug, refused here, never shown or
 * written. Returns the loaded policy too, for `--check`'s replay.
 */
export function checkedSuggestion(obs: Observations, opts: SuggestOptions, parse: (text: string) => Policy): { suggestion: Suggestion; policy: Policy } {
  const suggestion = suggestPolicy(obs, opts);
  try {
    return { suggestion, policy: parse(suggestion.yaml) };
  } catch (err) {
    throw new SluiceError('EINTERNAL', `The suggested policy does not load (a bug in suggest): ${(err as Error).message}`, { cause: err });
  }
}
