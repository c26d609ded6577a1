/**
 * The dashboard's API described as OpenAPI 3.1, served at
 * `/api/openapi.json` (behind the same sign-in as the rest): one API for
 * the dashboard's page and for scripts. Written by hand next to the parsers
 * it describes (dashboard-query.ts); a unit test checks that every
 * parameter listed here is one the parser takes and the reverse, and that
 * every path answers.
 */

import { MAX_SUGGEST_DAYS, SUGGEST_STABLE_DAYS } from './dashboard-query.js';
import { DEFAULT_CONFIRM_S, MAX_BODY_BYTES, MAX_DASHBOARD_CONFIRM_S, STEP_IDS } from './dashboard-apply.js';

const str = (description: string, extra: Record<string, unknown> = {}) => ({ type: 'string', description, ...extra });
const param = (name: string, schema: Record<string, unknown>, required = false) => ({ name, in: 'query', required, schema });

const TIME = 'a duration back from now (30m, 1h, 7d) or a time (2026-12-04T10:00Z), as `sluice log --since` reads it';
const ERROR = { description: 'bad parameters: `{"error": "..."}`', content: { 'application/json': { schema: { type: 'object', properties: { error: { type: 'string' } }, required: ['error'] } } } };
const JSON_OK = (description: string) => ({ description, content: { 'application/json': { schema: { type: 'object' } } } });

/** The parameters per path, in the order the document lists them. */
export const OPENAPI_PARAMS: Record<'events' | 'stats' | 'explain' | 'allow' | 'suggest', ReturnType<typeof param>[]> = {
  suggest: [
    param('since', str(`the window, as \`sluice suggest --since\` (default 7d), at most ${MAX_SUGGEST_DAYS} days back: ${TIME}`)),
    param('stable-days', str(`promotions after this many days without would-block, as \`--stable-days\` (1 to ${MAX_SUGGEST_DAYS}, default ${SUGGEST_STABLE_DAYS})`, { pattern: '^[0-9]{1,9}$' })),
  ],
  allow: [
    param('event', str('the id of a stored blocked or would-block event (`id` in /api/events)', { pattern: '^[0-9]{1,9}$' }), true),
    param('since', str(`the window whose blocked events the impact figures count (default 7d): ${TIME}`)),
  ],
  events: [
    param('since', str(TIME)),
    param('until', str(TIME)),
    param('verdict', str('blocked, would-block or allowed', { enum: ['blocked', 'would-block', 'allowed'] })),
    param('process', str('a process name, executable or command line contains this (1-256 characters)', { maxLength: 256 })),
    param('rule', str('a rule name, or a built-in such as #default', { pattern: '^#?[a-z0-9][a-z0-9._-]{0,47}$' })),
    param('limit', str('at most this many events, 1 to 10000', { pattern: '^[0-9]{1,9}$' })),
    param('after', str('only events with an id above this one (paging, and the live view catching up)', { pattern: '^[0-9]{1,9}$' })),
    param('format', str('json (default) or csv', { enum: ['json', 'csv'] })),
  ],
  stats: [param('since', str(TIME)), param('until', str(TIME)), param('limit', str('at most this many rows per table, 1 to 100', { pattern: '^[0-9]{1,9}$' }))],
  explain: [
    param('dest', str('an address or a name (1-253 characters)', { maxLength: 253 }), true),
    param('port', str('PORT, PORT/tcp, PORT/udp, tcp, udp, icmp or icmpv6', { pattern: '^(?:[0-9]{1,5}(?:/(?:tcp|udp))?|tcp|udp|icmp|icmpv6)$' })),
    param('user', str('the sending user, by name or uid', { maxLength: 64 })),
  ],
};

/** A path's GET with one more response. */
function withResponse(path: { get: { responses: Record<string | number, unknown> } & Record<string, unknown> }, status: number, response: unknown) {
  return { get: { ...path.get, responses: { ...path.get.responses, [status]: response } } };
}

export function openApiDocument(version: string, cookieName: string): Record<string, unknown> {
  const secured = { security: [{ bearer: [] }, { session: [] }], responses: { 401: { description: 'no or wrong credentials' }, 403: { description: 'another Host, or a cross-origin request' }, 429: { description: 'too many failed sign-ins' } } };
  const get = (summary: string, ok: Record<string, unknown>, parameters: unknown[] = [], bad = false) => ({
    get: { summary, parameters, ...secured, responses: { 200: ok, ...(bad ? { 400: ERROR } : {}), ...secured.responses } },
  });
  const post = (summary: string, schema: Record<string, unknown>, ok: Record<string, unknown>, more: Record<number, unknown> = {}) => ({
    post: {
      summary,
      security: secured.security,
      parameters: [{ name: 'X-Sluice-CSRF', in: 'header', required: true, schema: { type: 'string' }, description: 'the CSRF token from GET /api/session' }],
      requestBody: { required: false, content: { 'application/json': { schema } } },
      responses: {
        200: ok,
        400: ERROR,
        ...more,
        401: { description: 'no or wrong credentials' },
        403: { description: 'another Host, another Origin, or no or a wrong CSRF token' },
        413: { description: `a body over ${MAX_BODY_BYTES} bytes` },
        415: { description: 'a body that is not application/json' },
        429: { description: 'too many failed sign-ins' },
        500: { description: 'the apply failed: `{"error": "..."}`' },
      },
    },
  });
  return {
    openapi: '3.1.0',
    info: { title: 'Sluice dashboard API', version, description: 'Every request needs the token (Authorization: Bearer, from `sluice dashboard`) or the session cookie the sign-in link sets; the Host must be the dashboard\'s own address. A POST also needs an Origin equal to the dashboard\'s own and the CSRF token of GET /api/session in `X-Sluice-CSRF`.' },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'STATE/dashboard.token, readable by root only' },
        session: { type: 'apiKey', in: 'cookie', name: cookieName, description: 'set by the sign-in link (HttpOnly, SameSite=Strict)' },
      },
    },
    paths: {
      '/api/status': get('The policy in force, table state (live or drifted), mode, counters, guard health, and what waits for confirmation (`pending`: deadline, secondsLeft, rollbackTo; null: nothing), and whether a suggestion is being computed (`suggesting`: startedAt; null: none)', JSON_OK('the daemon\'s status')),
      '/api/events': get('Stored events, newest first, filtered', { description: 'the events: `{events, limit, since}`, or CSV with `format=csv`', content: { 'application/json': { schema: { type: 'object' } }, 'text/csv': { schema: { type: 'string' } } } }, OPENAPI_PARAMS.events, true),
      '/api/stats': get(
        'Counts over a window: top destinations, processes and rules, a timeline of allowed, blocked and would-block, and the tamper watchdog\'s findings in the window (`tamper`, from the journal, oldest first, at most 200: when, whether the table was restored, who changed it as the kernel\'s notifications told, the first lines of what changed), for the same time axis',
        JSON_OK('`{since, bucketMs, stats, timeline: [{time, verdict, count}], tamper: [{time, restored, by, changes}]}`'),
        OPENAPI_PARAMS.stats,
        true,
      ),
      '/api/explain': get('The verdict for a destination, port and user, and the rule that decides it', JSON_OK('the explanation, as `sluice explain --json` gives it'), OPENAPI_PARAMS.explain, true),
      '/api/allow': withResponse(
        get(
          '"Allow this": from one blocked event, the rules that would let it through, narrowest first (this sender + name + port, the name, the zone, the address), each with the policy as it would be, its diff against the applied one, and what else it would let through, judged by `sluice explain`\'s interpreter. Nothing is applied here (POST /api/allow/apply does).',
          JSON_OK('`{event, applied, steps: [{id, title, rule, yaml, policy, diff, impact, warnings}], refused?, window}`'),
          OPENAPI_PARAMS.allow,
          true,
        ),
        404,
        { description: 'no such event in the store' },
      ),
      '/api/suggest': withResponse(
        withResponse(
        get(
          '`sluice suggest` against the applied policy, read-only: the rules for what the window\'s traffic needed and the policy does not allow (each with first and last seen, events, processes, distinct days, shared-zone names, and its YAML), the allow rules nothing needed (`neverHit`), the diff against the applied policy, `sluice suggest --check` of the result (would break, would block) and the promotions of `--stable-days`. Bounded: the scan stops after `limits.budgetMs` (then `complete` is false, `cutAt` says where, and neither `neverHit` nor promotions are given).',
          JSON_OK('`{window, applied, base, store, events, flows, overflow, unsupported, covered, complete, cutAt, rules: [{name, sender, principal, to, ports, events, first, last, days, processes, wildcards, shared, sharedZone, resolveOnly, yaml}], neverHit: [{rule, line}], check: {wouldBreak, wouldBlock, audited, resolved}, refusedNames: [{name, lookups, why}], promotions, diff, elapsedMs, limits}`'),
          OPENAPI_PARAMS.suggest,
          true,
        ),
        500,
        ERROR,
        ),
        503,
        { description: 'computed in a worker of its own, one window at a time: another window is being computed (`{"error": "...", "busy": true}`: the same request after `Retry-After` seconds will do; the page retries by itself), or this one ran over the worker\'s time (30 s) or heap (512 MiB) and was stopped (`{"error": "..."}`: a shorter window will do), each with `Retry-After` (seconds)' },
      ),
      '/api/session': get('The CSRF token for state-changing requests (send it as `X-Sluice-CSRF`), and how this request signed in', JSON_OK('`{csrf, auth: "session" | "dashboard token"}`')),
      '/api/policy': get(
        'The policy page: what is applied, the confirmation waiting (deadline, seconds left, what a rollback restores), and the applied versions from the journal, newest first: when, event, who (`by`: the command line with its uid, or the dashboard with its sign-in, peer uid and address), sha256, mode, and the diff against the version before; and the applied policy\'s rules (`rules`, null when none is applied), in order (at most 2,000 listed, `total` counts all), each with its action, what it matches (destinations, ports, senders and interfaces summarised), its own mode and the scopes it covers, and its kernel hit counters since the last apply (packets and bytes of new flows, the counters `/metrics` exposes; null when not read), the rules never hit, and what the default action took',
        JSON_OK('`{applied, pending, rules: {counted, mode, defaultAction, scopes, total, rules: [{name, action, line, to, ports, from, interfaces, mode, scopes, log, comment, packets, bytes}], neverHit, neverHitTotal, default: {action, packets, bytes}} | null, versions: [{at, event, by, sha256, mode, diff?, kept?}]}`'),
      ),
      '/api/allow/apply': post(
        '"Allow this", applied: the step `step` of the ladder for event `event`, recomputed on the server, applied as `sluice apply --confirm` applies (the candidate in the state directory, read as the policy file; the rollback timer; the daemon told), refused with 409 unless `applied` is still the applied policy. Confirm with POST /api/confirm within `confirm` seconds (default 120), or the policy before comes back. Journaled with who asked and the diff.',
        {
          type: 'object',
          additionalProperties: false,
          required: ['event', 'step', 'applied'],
          properties: {
            event: { type: 'integer', minimum: 1, maximum: 999_999_999, description: 'the blocked or would-block event (`id` in /api/events)' },
            step: { type: 'string', enum: [...STEP_IDS], description: 'a step the ladder of /api/allow offers for it' },
            applied: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'the applied policy the ladder was computed against (`applied` in /api/allow)' },
            confirm: { type: 'integer', minimum: 1, maximum: MAX_DASHBOARD_CONFIRM_S, description: `seconds until the automatic rollback (default ${DEFAULT_CONFIRM_S})` },
          },
        },
        JSON_OK('`{applied: true, sha256, mode, confirmBy, verified, warnings}`'),
        { 404: { description: 'no such event in the store' }, 409: { description: 'the applied policy changed since the ladder (or another apply from the dashboard is running)' } },
      ),
      '/api/confirm': post(
        'Keeps what is waiting for confirmation (as `sluice confirm`); an apply from the dashboard then has its policy written over the policy file, unless that file was edited since. Journaled with who confirmed.',
        { type: 'object', additionalProperties: false, properties: {} },
        JSON_OK('`{confirmed: true, late, wroteBack?: {file, written, reason?}}`'),
        { 409: { description: 'nothing is waiting for confirmation' } },
      ),
      '/api/policy/rollback': post(
        '"Roll back to this one": applies the kept snapshot of an earlier version again, with the same confirmation window and 409 check as /api/allow/apply',
        {
          type: 'object',
          additionalProperties: false,
          required: ['to', 'applied'],
          properties: {
            to: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'the version to go back to (`sha256` in /api/policy)' },
            applied: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'the applied policy now' },
            confirm: { type: 'integer', minimum: 1, maximum: MAX_DASHBOARD_CONFIRM_S, description: `seconds until the automatic rollback (default ${DEFAULT_CONFIRM_S})` },
          },
        },
        JSON_OK('`{applied: true, sha256, mode, confirmBy, verified, warnings}`'),
        { 404: { description: 'no snapshot of that version is kept' }, 409: { description: 'the applied policy changed meanwhile' } },
      ),
      '/api/health': withResponse(
        get(
          "The figures to trust the rest by: event accounting (kernel counters against stored, suppressed, lost, dropped and queued records), attribution by method, the DNS guard's answer time over the last minute and its cache, alert outboxes, event-loop delay and GC pauses, tamper restores",
          JSON_OK('the health figures (the same values /metrics exposes)'),
        ),
        503,
        { description: 'the daemon did not answer in time' },
      ),
      '/api/live': get('New events as they happen (Server-Sent Events, in batches)', { description: 'an event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }),
      '/api/openapi.json': get('This document', JSON_OK('OpenAPI 3.1')),
    },
  };
}
