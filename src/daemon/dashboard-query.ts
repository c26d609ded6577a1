import { z } from '../vendor/zod.js';
import type { EventQuery, StoredEvent } from '../events/event-store.js';
import { parseSince, parseVerdict } from '../events/time-window.js';
import { DEFAULT_STABLE_DAYS } from '../learn/promote.js';

/**
 * The dashboard's query parameters, each treated as hostile: a closed set
 * of names (an unknown one is an error, not ignored), bounded lengths, no
 * control characters, numbers that are whole and in range, times through
 * the same parser `sluice log --since` uses. A parse either yields the
 * store's query or a message for a 400.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** Printable text of at most `max` characters (no control characters, which a name in a log line could carry). */
const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'control characters are not allowed');

const whole = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,9}$/, 'want a whole number')
    .transform(Number)
    .refine((n) => n >= min && n <= max, `want a whole number from ${min} to ${max}`);

/** A time (`1h`, `2026-12-04T10:00Z`) as `sluice log --since` reads it, relative to `now`. */
const time = (now: number) =>
  text(64).transform((s, ctx) => {
    try {
      return parseSince(s, now);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'want a duration such as 30m, 1h, 7d or a time such as 2026-12-04T10:00Z' });
      return z.NEVER;
    }
  });

const verdict = z.string().transform((s, ctx) => {
  try {
    return parseVerdict(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'want blocked, would-block or allowed' });
    return z.NEVER;
  }
});

/** Largest page of events one request returns (JSON or CSV). */
export const MAX_EVENTS = 10_000;

const eventsSchema = (now: number) =>
  z.strictObject({
    since: time(now).optional(),
    until: time(now).optional(),
    verdict: verdict.optional(),
    process: text(256).optional(),
    // Rule names (1-48 of a-z 0-9 . _ -) and the built-ins (#default, #encrypted-dns...).
    rule: z.string().regex(/^#?[a-z0-9][a-z0-9._-]{0,47}$/, 'not a rule name').optional(),
    limit: whole(1, MAX_EVENTS).optional(),
    after: whole(0, 999_999_999).optional(),
    format: z.enum(['json', 'csv']).optional(),
  });

const statsSchema = (now: number) =>
  z.strictObject({
    since: time(now).optional(),
    until: time(now).optional(),
    limit: whole(1, 100).optional(),
  });

const allowSchema = (now: number) =>
  z.strictObject({
    event: whole(1, 999_999_999),
    since: time(now).optional(),
  });

/** The widest window the dashboard's suggestions read, promotions included (the CLI has no such bound): the scan runs on the dashboard's thread. */
export const MAX_SUGGEST_DAYS = 31;
/** `--stable-days` when the request does not say: the command's default. */
export const SUGGEST_STABLE_DAYS = DEFAULT_STABLE_DAYS;

const suggestSchema = (now: number) =>
  z.strictObject({
    since: time(now).optional(),
    'stable-days': whole(1, MAX_SUGGEST_DAYS).optional(),
  });

/** The query parameters each endpoint takes, as its parser reads them (the OpenAPI document lists these; a test keeps the two equal). */
export const QUERY_PARAMS = {
  allow: () => Object.keys(allowSchema(0).shape),
  events: () => Object.keys(eventsSchema(0).shape),
  stats: () => Object.keys(statsSchema(0).shape),
  explain: () => Object.keys(explainSchema.shape),
  suggest: () => Object.keys(suggestSchema(0).shape),
};

const explainSchema = z.strictObject({
  dest: text(253),
  port: z
    .string()
    .regex(/^(?:[0-9]{1,5}(?:\/(?:tcp|udp))?|tcp|udp|icmp|icmpv6)$/, 'want PORT, PORT/tcp, PORT/udp, tcp, udp, icmp or icmpv6')
    .optional(),
  user: text(64).optional(),
});

/** Flattens URL query parameters, refusing a name given twice (which parser would win is a question not worth having). */
function single(params: URLSearchParams): Parsed<Record<string, string>> {
  const seen = new Map<string, string>();
  for (const [k, v] of params) {
    if (seen.size >= 16) return { ok: false, error: 'too many query parameters' };
    if (seen.has(k)) return { ok: false, error: `query parameter given twice: ${JSON.stringify(k.slice(0, 32))}` };
    seen.set(k, v);
  }
  // fromEntries makes own properties, `__proto__` included, so the strict schema sees and refuses it.
  return { ok: true, value: Object.fromEntries(seen) };
}

function run<T>(schema: z.ZodType<T>, params: URLSearchParams): Parsed<T> {
  const flat = single(params);
  if (!flat.ok) return flat;
  const r = schema.safeParse(flat.value);
  if (r.success) return { ok: true, value: r.data };
  const i = r.error.issues[0];
  const where = i?.path.length ? String(i.path[0]).slice(0, 32) : '';
  const what = i?.code === 'unrecognized_keys' ? `unknown query parameter: ${JSON.stringify(((i as { keys?: string[] }).keys ?? [])[0]?.slice(0, 32) ?? '')}` : `${where ? `${where}: ` : ''}${i?.message ?? 'invalid'}`;
  return { ok: false, error: what };
}

export interface EventsRequest {
  query: EventQuery;
  format: 'json' | 'csv';
}

/** `/api/events?since=&until=&verdict=&process=&rule=&limit=&after=&format=`: the newest `limit` (default 500) since `since` (default 1h). */
export function parseEventsQuery(params: URLSearchParams, now = Date.now()): Parsed<EventsRequest> {
  const r = run(eventsSchema(now), params);
  if (!r.ok) return r;
  const v = r.value;
  const query: EventQuery = { since: v.since ?? now - 3_600_000, limit: v.limit ?? 500 };
  if (v.until !== undefined) query.until = v.until;
  if (v.verdict !== undefined) query.verdict = v.verdict;
  if (v.process !== undefined) query.process = v.process;
  if (v.rule !== undefined) query.rule = v.rule;
  if (v.after !== undefined) query.afterId = v.after;
  return { ok: true, value: { query, format: v.format ?? 'json' } };
}

/** `/api/stats?since=&until=&limit=`: since defaults to 1h, the top 10. */
export function parseStatsQuery(params: URLSearchParams, now = Date.now()): Parsed<{ since: number; until?: number; limit: number }> {
  const r = run(statsSchema(now), params);
  if (!r.ok) return r;
  return { ok: true, value: { since: r.value.since ?? now - 3_600_000, ...(r.value.until !== undefined ? { until: r.value.until } : {}), limit: r.value.limit ?? 10 } };
}

/** `/api/explain?dest=&port=&user=`: checked here for form; the destination and user are then parsed as `sluice explain` parses them. */
export function parseExplainQuery(params: URLSearchParams): Parsed<{ dest: string; port?: string; user?: string }> {
  const r = run(explainSchema, params);
  if (!r.ok) return r;
  const { dest, port, user } = r.value;
  return { ok: true, value: { dest, ...(port !== undefined ? { port } : {}), ...(user !== undefined ? { user } : {}) } };
}

/**
 * One CSV cell (RFC 4180, always quoted). A cell that a spreadsheet would
 * read as a formula (starting with = + - @, or a tab or carriage return
 * that some strip first) is prefixed with ', so a process name such as
 * `=HYPERLINK(...)` stays text: names and hostnames come from whoever runs
 * a process or answers a DNS query (OWASP "CSV injection").
 */
export function csvCell(value: unknown): string {
  let s = value === undefined || value === null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export const CSV_COLUMNS = ['id', 'time', 'verdict', 'rule', 'proto', 'src', 'sport', 'dst', 'dport', 'hostname', 'uid', 'user', 'pid', 'exe', 'comm', 'unit', 'cmdline'] as const;

/** Events as CSV: a header line, then one line per event, CRLF line ends. */
export function eventsCsv(events: StoredEvent[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const e of events) {
    const row: unknown[] = [e.id, new Date(e.time).toISOString(), e.verdict, e.rule, e.proto, e.src, e.sport, e.dst, e.dport ?? e.icmpType, e.hostname, e.uid, e.user, e.process?.pid, e.process?.exe, e.process?.comm, e.process?.unit, e.process?.cmdline];
    lines.push(row.map(csvCell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** `/api/allow?event=ID&since=`: the event's id, and the window whose blocked events the impact figures count (default 7d). */
export function parseAllowQuery(params: URLSearchParams, now = Date.now()): Parsed<{ event: number; since: number; until: number }> {
  const r = run(allowSchema(now), params);
  if (!r.ok) return r;
  return { ok: true, value: { event: r.value.event, since: r.value.since ?? now - 7 * 86_400_000, until: now } };
}

export interface SuggestRequest {
  since: number;
  until: number;
  stableDays: number;
  /** The `since` as asked (`7d`), for the answer and the page's selector. */
  sinceText: string;
}

/**
 * `/api/suggest?since=7d&stable-days=14`: the window of `sluice suggest
 * --since` (default 7d), at most MAX_SUGGEST_DAYS back and not in the
 * future, and the days of `--stable-days` (1 to MAX_SUGGEST_DAYS, default
 * 14). The window ends now.
 */
export function parseSuggestQuery(params: URLSearchParams, now = Date.now()): Parsed<SuggestRequest> {
  const r = run(suggestSchema(now), params);
  if (!r.ok) return r;
  const since = r.value.since ?? now - 7 * 86_400_000;
  if (since < now - MAX_SUGGEST_DAYS * 86_400_000) return { ok: false, error: `since: at most ${MAX_SUGGEST_DAYS} days back here (sluice suggest --since reads any window)` };
  if (since >= now) return { ok: false, error: 'since: want a time in the past' };
  return { ok: true, value: { since, until: now + 1, stableDays: r.value['stable-days'] ?? SUGGEST_STABLE_DAYS, sinceText: params.get('since') ?? '7d' } };
}
