import { Hono, type Context } from 'hono';
import type { EventQuery, EventStats, StoredEvent, TimelineRow } from '../events/event-store.js';
import type { SuggestAnswer } from './dashboard-suggest-runner.js';
import type { ListenAddress } from '../policy/listen-address.js';
import { cookieValue, hostAllowed, sameOrigin, type DashboardCredentials } from './dashboard-auth.js';
import type { DashboardHealth } from './dashboard-health.js';
import type { TamperMark } from './dashboard-tamper.js';
import type { LiveHub } from './dashboard-live.js';
import { openApiDocument } from './dashboard-openapi.js';
import type { Ladder } from '../learn/allow-ladder.js';
import { MAX_BODY_BYTES, parseApplyBody, parseConfirmBody, parseRollbackBody, readBody, type ApplyRequest, type RollbackRequest } from './dashboard-apply.js';
import { eventsCsv, parseAllowQuery, parseEventsQuery, parseExplainQuery, parseStatsQuery, parseSuggestQuery, type Parsed, type SuggestRequest } from './dashboard-query.js';

/**
 * The dashboard's HTTP application (Hono): the checks every request goes
 * through, in this order, then the read-only API and the three static
 * files. It knows nothing of threads or the kernel: what it reads comes in
 * through DashboardSources, so unit tests drive it with app.request().
 *
 * 1. Host must be the listen address (or localhost:PORT): 403 otherwise
 *    (DNS rebinding), before anything else, credentials included.
 * 2. Methods other than GET and HEAD must come from the dashboard's own
 *    origin (Origin header): 403 otherwise (cross-site requests).
 * 3. `?token=` on any page: right, a session cookie and a redirect to the
 *    same path without it (so the token leaves the address bar and history);
 *    wrong, 401.
 * 4. Every other request needs the cookie or `Authorization: Bearer`: 401.
 * 5. Methods other than GET and HEAD also need the CSRF token in
 *    `X-Sluice-CSRF` (from `GET /api/session`), and with the cookie, a
 *    peer (local user) that signed in with the link: 403 otherwise.
 * Every response: a strict Content-Security-Policy (no inline script: the
 * script is a file), nosniff, no referrer, no caching, no framing, and no
 * CORS headers at all.
 */

export interface DashboardSources {
  status(): Promise<Record<string, unknown>> | Record<string, unknown>;
  /** Null when nothing was recorded yet (no event store). */
  events(q: EventQuery): StoredEvent[] | null;
  stats(q: { since: number; until?: number }, top: number): EventStats | null;
  timeline(q: { since: number; until?: number }, bucketMs: number): TimelineRow[] | null;
  /** The tamper watchdog's findings in the window (from the journal), for the Overview chart's time axis. Optional: without it, none. */
  tamper?(q: { since: number; until?: number }): TamperMark[];
  /** The health page's figures; null when the daemon did not answer in time. Optional: without it, /api/health answers 503. */
  health?(): Promise<DashboardHealth | null>;
  /** "Allow this": the ladder of rules for one stored event (already form-checked arguments); null: no such event. */
  allow?(args: { event: number; since: number; until: number }): Promise<Parsed<Ladder> | null> | Parsed<Ladder> | null;
  /** Applies one step of "allow this" (the form-checked body) with a confirmation window, on behalf of `who`. */
  applyStep?(req: ApplyRequest, who: DashboardWho): Promise<Outcome> | Outcome;
  /** Applies an earlier version again (its snapshot), with a confirmation window. */
  rollbackTo?(req: RollbackRequest, who: DashboardWho): Promise<Outcome> | Outcome;
  /** Confirms what is pending (as `sluice confirm`). */
  confirm?(who: DashboardWho): Promise<Outcome> | Outcome;
  /** The policy page: applied versions from the journal with their diffs, and what is pending. */
  policy?(): Promise<Record<string, unknown>> | Record<string, unknown>;
  /** The Suggestions page: `sluice suggest` and its `--check` for a (form-checked) window; an error is a 500 with its message. */
  suggest?(req: SuggestRequest): Promise<SuggestAnswer> | SuggestAnswer;
  /** `sluice explain`'s answer for these (already form-checked) arguments. */
  explain(args: { dest: string; port?: string; user?: string }): Promise<Parsed<Record<string, unknown>>> | Parsed<Record<string, unknown>>;
}

/** A state-changing request's answer: its status and JSON body. */
export interface Outcome {
  status: 200 | 400 | 404 | 409 | 500 | 503;
  body: Record<string, unknown>;
}

/** Who made a state-changing request, for the journal. */
export interface DashboardWho {
  via: 'dashboard';
  /** `session` (the cookie the sign-in link set) or `dashboard token` (Authorization: Bearer). */
  auth: 'session' | 'dashboard token';
  /** The uid owning the peer socket. */
  peer: string;
  /** The peer's address and port. */
  remote: string;
}

export interface DashboardAssets {
  html: string;
  js: string;
  css: string;
}

export interface DashboardAppOptions {
  listen: ListenAddress;
  credentials: DashboardCredentials;
  sources: DashboardSources;
  live: LiveHub;
  assets: DashboardAssets;
  /** Counts refusals by reason (`host`, `origin`, `token`, `auth`, `rate`), for the status page and tests. */
  refused?: Map<string, number>;
  /** Who sent a request (the thread: the uid owning the peer socket); failed sign-ins are limited per peer. */
  peerOf?: (c: Context) => string;
  limiter?: SignInLimiter;
  /** The peers that signed in with the link (kept by the caller across app instances; tests). */
  signedIn?: Set<string>;
  /** The peer's address and port, for the journal. */
  remoteOf?: (c: Context) => string;
  /** Sluice's version, for the OpenAPI document. */
  version?: string;
}

/**
 * Failed sign-ins (a wrong token in the link or the Authorization header,
 * a wrong session cookie) are limited per peer: after `max` in a window,
 * every request of that peer that presents credentials is refused (429),
 * right ones included (or the limit would still tell a guesser when it
 * guessed right), until the window ends. Other users are not affected. The
 * token's 256 bits make guessing hopeless anyway; this keeps a guesser
 * from being a flood in the refusal counts and the CPU.
 */
export class SignInLimiter {
  private readonly failures = new Map<string, { start: number; count: number }>();

  constructor(
    readonly max = 10,
    readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The peer may present credentials now. */
  allowed(peer: string): boolean {
    const f = this.failures.get(peer);
    if (!f) return true;
    if (this.now() - f.start >= this.windowMs) {
      this.failures.delete(peer);
      return true;
    }
    return f.count < this.max;
  }

  failed(peer: string): void {
    const t = this.now();
    const f = this.failures.get(peer);
    if (!f || t - f.start >= this.windowMs) this.failures.set(peer, { start: t, count: 1 });
    else f.count++;
    // Bounded: peers are uids, but a map that only grows is a map nobody should trust.
    if (this.failures.size > 10_000) this.failures.clear();
  }
}

/** The tab's icon: a sluice gate (the page links it, so browsers do not ask for /favicon.ico). */
const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0550ae"/><path d="M3 4h10v3H3zM3 9h10v3H3z" fill="#fff"/></svg>';

export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** Where to send a browser after it signed in: the same path, if it is a plain one (never `//host` or `/\host`, which a browser reads as another site), without the token. */
export function afterSignIn(url: URL): string {
  const path = /^\/(?![/\\])[A-Za-z0-9._~\-/]*$/.test(url.pathname) ? url.pathname : '/';
  const rest = new URLSearchParams(url.searchParams);
  rest.delete('token');
  const q = rest.toString();
  return q ? `${path}?${q}` : path;
}

export function dashboardApp(opts: DashboardAppOptions): Hono {
  const { listen, credentials, sources, live, assets } = opts;
  const refused = opts.refused ?? new Map<string, number>();
  const peerOf = opts.peerOf ?? (() => 'unknown');
  const limiter = opts.limiter ?? new SignInLimiter();
  /** The local users (peers) that signed in with the token link: the only ones whose cookie may change anything. */
  const signedIn = opts.signedIn ?? new Set<string>();
  const refuse = (c: Context, status: 401 | 403 | 429, reason: string, message: string) => {
    refused.set(reason, (refused.get(reason) ?? 0) + 1);
    return c.json({ error: message }, status, status === 401 ? { 'www-authenticate': 'Bearer realm="sluice dashboard"' } : status === 429 ? { 'retry-after': String(Math.ceil(limiter.windowMs / 1000)) } : {});
  };
  const app = new Hono();

  app.use('*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });

  app.use('*', async (c, next) => {
    if (!hostAllowed(c.req.header('host'), listen)) return refuse(c, 403, 'host', 'this dashboard answers only at its own address');
    const m = c.req.method;
    if (m !== 'GET' && m !== 'HEAD' && !sameOrigin(c.req.header('origin'), c.req.header('host'), listen)) return refuse(c, 403, 'origin', 'cross-origin request refused');
    const url = new URL(c.req.url);
    const authorization = c.req.header('authorization');
    const cookie = cookieValue(c.req.header('cookie'), credentials.cookieName);
    const presented = url.searchParams.has('token') || !!authorization || cookie !== null;
    const peer = peerOf(c);
    if (presented && !limiter.allowed(peer)) return refuse(c, 429, 'rate', 'too many failed sign-ins from this user; wait a minute');
    if (url.searchParams.has('token')) {
      if (m !== 'GET' || !credentials.tokenMatches(url.searchParams.get('token'))) {
        limiter.failed(peer);
        return refuse(c, 401, 'token', 'wrong token: run `sluice dashboard` as root for the sign-in link');
      }
      // Peers are local uids: a handful. Bounded all the same.
      if (signedIn.size >= 1_000) signedIn.clear();
      signedIn.add(peer);
      return c.body(null, 303, { location: afterSignIn(url), 'set-cookie': credentials.setCookie() });
    }
    if (!credentials.authorized(authorization, c.req.header('cookie'))) {
      if (presented) limiter.failed(peer);
      return refuse(c, 401, 'auth', 'sign in with the link `sluice dashboard` prints (as root)');
    }
    // A state-changing request also carries the CSRF token, which only a signed-in GET can read
    // (/api/session): the cookie alone, which a forged request would ride on, is not enough.
    if (m !== 'GET' && m !== 'HEAD') {
      if (!credentials.csrfMatches(c.req.header('x-sluice-csrf'))) return refuse(c, 403, 'csrf', 'missing or wrong CSRF token (X-Sluice-CSRF, from GET /api/session)');
      // The session cookie reaches every port of this host (cookies are per host): a server another
      // local user runs there can receive it, and with it read the API. It cannot change anything:
      // a change made with the cookie must come from a local user that signed in with the link
      // (which holds the token) since this thread started. The bearer token is its own proof.
      if (!authorization && !signedIn.has(peer)) return refuse(c, 403, 'session-peer', 'to make changes, sign in with the link `sluice dashboard` prints (as root) from this browser');
    }
    await next();
  });

  const remoteOf = opts.remoteOf ?? (() => 'unknown');
  const who = (c: Context): DashboardWho => ({ via: 'dashboard', auth: c.req.header('authorization') ? 'dashboard token' : 'session', peer: peerOf(c), remote: remoteOf(c) });
  /** The JSON body of a POST, read within its bound, then parsed by `parse`; or the refusal. */
  const body = async <T>(c: Context, parse: (text: string) => Parsed<T>): Promise<{ ok: true; value: T } | { ok: false; res: Response }> => {
    const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
    const r = await readBody(c.req.raw);
    if (!r.ok) return { ok: false, res: c.json({ error: r.why === 'too-large' ? `the body is larger than ${MAX_BODY_BYTES} bytes` : 'the body is not UTF-8' }, r.why === 'too-large' ? 413 : 400) };
    if (r.text !== '' && type !== 'application/json') return { ok: false, res: c.json({ error: 'want Content-Type: application/json' }, 415) };
    const p = parse(r.text);
    return p.ok ? { ok: true, value: p.value } : { ok: false, res: c.json({ error: p.error }, 400) };
  };
  const answer = (c: Context, o: Outcome) => c.json(o.body, o.status);

  app.get('/api/session', (c) => c.json({ csrf: credentials.csrf, auth: c.req.header('authorization') ? 'dashboard token' : 'session' }));

  app.post('/api/allow/apply', async (c) => {
    const b = await body(c, parseApplyBody);
    if (!b.ok) return b.res;
    if (!sources.applyStep) return c.json({ error: 'not available here' }, 503);
    return answer(c, await sources.applyStep(b.value, who(c)));
  });

  app.post('/api/policy/rollback', async (c) => {
    const b = await body(c, parseRollbackBody);
    if (!b.ok) return b.res;
    if (!sources.rollbackTo) return c.json({ error: 'not available here' }, 503);
    return answer(c, await sources.rollbackTo(b.value, who(c)));
  });

  app.post('/api/confirm', async (c) => {
    const b = await body(c, parseConfirmBody);
    if (!b.ok) return b.res;
    if (!sources.confirm) return c.json({ error: 'not available here' }, 503);
    return answer(c, await sources.confirm(who(c)));
  });

  app.get('/api/policy', async (c) => {
    if ([...new URL(c.req.url).searchParams.keys()].length > 0) return c.json({ error: 'this endpoint takes no query parameters' }, 400);
    return sources.policy ? c.json(await sources.policy()) : c.json({ error: 'not available here' }, 503);
  });

  app.get('/', (c) => c.body(assets.html, 200, { 'content-type': 'text/html; charset=utf-8' }));
  app.get('/app.js', (c) => c.body(assets.js, 200, { 'content-type': 'text/javascript; charset=utf-8' }));
  app.get('/app.css', (c) => c.body(assets.css, 200, { 'content-type': 'text/css; charset=utf-8' }));
  app.get('/favicon.svg', (c) => c.body(FAVICON, 200, { 'content-type': 'image/svg+xml' }));

  app.get('/api/status', async (c) => c.json(await sources.status()));

  app.get('/api/events', (c) => {
    const p = parseEventsQuery(new URL(c.req.url).searchParams);
    if (!p.ok) return c.json({ error: p.error }, 400);
    const events = sources.events(p.value.query) ?? [];
    if (p.value.format === 'csv') {
      return c.body(eventsCsv(events), 200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="sluice-events.csv"' });
    }
    return c.json({ events, limit: p.value.query.limit, since: p.value.query.since });
  });

  app.get('/api/stats', (c) => {
    const p = parseStatsQuery(new URL(c.req.url).searchParams);
    if (!p.ok) return c.json({ error: p.error }, 400);
    const window = { since: p.value.since, ...(p.value.until !== undefined ? { until: p.value.until } : {}) };
    // At most ~360 buckets, at least a minute each.
    const span = (p.value.until ?? Date.now()) - p.value.since;
    const bucketMs = Math.max(60_000, Math.ceil(span / 360 / 60_000) * 60_000);
    return c.json({ since: p.value.since, bucketMs, stats: sources.stats(window, p.value.limit), timeline: sources.timeline(window, bucketMs) ?? [], tamper: sources.tamper?.(window) ?? [] });
  });

  app.get('/api/explain', async (c) => {
    const p = parseExplainQuery(new URL(c.req.url).searchParams);
    if (!p.ok) return c.json({ error: p.error }, 400);
    const r = await sources.explain(p.value);
    return r.ok ? c.json(r.value) : c.json({ error: r.error }, 400);
  });

  app.get('/api/health', async (c) => {
    const h = sources.health ? await sources.health() : null;
    return h ? c.json(h) : c.json({ error: 'the daemon did not answer; try again' }, 503);
  });

  app.get('/api/allow', async (c) => {
    const p = parseAllowQuery(new URL(c.req.url).searchParams);
    if (!p.ok) return c.json({ error: p.error }, 400);
    const r = sources.allow ? await sources.allow(p.value) : { ok: false as const, error: 'not available here' };
    if (r === null) return c.json({ error: `no event ${p.value.event} in the store` }, 404);
    return r.ok ? c.json(r.value) : c.json({ error: r.error }, 400);
  });

  app.get('/api/suggest', async (c) => {
    const p = parseSuggestQuery(new URL(c.req.url).searchParams);
    if (!p.ok) return c.json({ error: p.error }, 400);
    if (!sources.suggest) return c.json({ error: 'not available here' }, 503);
    const r = await sources.suggest(p.value);
    if (r.ok) return c.json(r.value);
    // Busy with another window, or over its time or heap: come back later.
    return r.retryAfter !== undefined ? c.json({ error: r.error, ...(r.busy ? { busy: true } : {}) }, 503, { 'retry-after': String(r.retryAfter) }) : c.json({ error: r.error }, 500);
  });

  const openapi = openApiDocument(opts.version ?? 'unknown', credentials.cookieName);
  app.get('/api/openapi.json', (c) => c.json(openapi));

  app.get('/api/live', (c) => {
    const stream = live.open();
    if (!stream) return c.json({ error: 'too many live streams open' }, 503);
    return c.body(stream, 200, { 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no' });
  });

  app.notFound((c) => c.json({ error: 'not found' }, 404));
  // Nothing of an internal error reaches the client.
  app.onError((_err, c) => c.json({ error: 'internal error' }, 500));
  return app;
}
