/**
 * Worker-thread entry for the dashboard (see dashboard-component.ts). All
 * of its work happens here, never on the event loop that answers DNS:
 * connections, HTTP parsing and checks, event-store queries (its own
 * read-only use of the SQLite file, which WAL lets run beside the daemon's
 * writer), the kernel read behind "live or drifted", explain (the applied
 * policy parsed here from its snapshot), and the live streams' fan-out.
 * The main thread sends batches of live events (only while a stream is
 * open), and the policy in force when it changes.
 *
 * Messages in: { t: 'events', events, dropped }, { t: 'policy', policy },
 * { t: 'health', id, families, context }, { t: 'stop' }.
 * Out: { t: 'listening', host, port }, { t: 'failed', message }, { t: 'watchers', n },
 * { t: 'want-health', id }.
 */
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { getRequestListener } from '@hono/node-server';
import type { EventQuery } from '../events/event-store.js';
import { SqliteStore } from '../events/sqlite-store.js';
import { eventStorePath } from '../events/store-component.js';
import { sameRuleset } from '../netfilter/compare-ruleset.js';
import { KernelNetfilter } from '../netfilter/kernel-netfilter.js';
import type { Policy } from '../policy/policy.js';
import { loadAppliedPolicy } from '../state/load-applied-policy.js';
import { allowLadder, type Ladder } from '../learn/allow-ladder.js';
import { hostFactsFor } from '../system/compile-env.js';
import { StateStore } from '../state/state-store.js';
import { ConnectionGate } from './connection-gate.js';
import { dashboardApp, type DashboardSources, type DashboardWho, type Outcome } from './dashboard-app.js';
import type { ApplyRequest, RollbackRequest } from './dashboard-apply.js';
import { textDiff } from '../policy/text-diff.js';
import { writeCandidate } from '../state/candidate-request.js';
import { confirmPending } from '../state/confirm-pending.js';
import type { Parsed, SuggestRequest } from './dashboard-query.js';
import { SUGGEST_WORKER, SuggestRunner, type SuggestAnswer } from './dashboard-suggest-runner.js';
import { DashboardCredentials } from './dashboard-auth.js';
import { explainForDashboard } from './dashboard-explain.js';
import { dashboardHealth, type DashboardHealth } from './dashboard-health.js';
import { kernelCounterFamilies, kernelMetricsContext, type KernelMetricsContext } from './kernel-counter-metrics.js';
import { dashboardRules, type DashboardRules } from './dashboard-rules.js';
import type { Family } from '../runtime/metrics.js';
import { LiveHub, type LiveEvent } from './dashboard-live.js';
import { tamperMarks } from './dashboard-tamper.js';
import type { DashboardPolicyInfo, DashboardThreadConfig } from './dashboard-component.js';

const port = parentPort;
if (!port) throw new Error('dashboard-thread runs as a worker thread');
const cfg = workerData as DashboardThreadConfig;

const gate = new ConnectionGate(cfg.limits);
const refused = new Map<string, number>();
const hub = new LiveHub(undefined, (n) => port.postMessage({ t: 'watchers', n }));
let forwardedDrops = 0;
let policyInfo: DashboardPolicyInfo | null = cfg.policy;
const state = new StateStore(cfg.stateDir);

let nf: KernelNetfilter | null | undefined;
function netfilter(): KernelNetfilter | null {
  if (nf === undefined) {
    try {
      nf = cfg.table ? new KernelNetfilter() : null;
    } catch {
      nf = null;
    }
  }
  return nf;
}

let store: SqliteStore | null = null;
/** The event store, opened on first use (null until the daemon has written one). */
function events(): SqliteStore | null {
  if (store) return store;
  try {
    store = new SqliteStore(eventStorePath(cfg.stateDir), { readonly: true });
  } catch {
    store = null;
  }
  return store;
}

/** "live or drifted" reads the whole table from the kernel: at most once per this long. */
const TABLE_CHECK_MS = 3_000;
let tableCheck: { at: number; table: string } | null = null;

function tableState(): string {
  if (tableCheck && Date.now() - tableCheck.at < TABLE_CHECK_MS) return tableCheck.table;
  let table = 'unknown';
  try {
    const applied = state.applied();
    const k = netfilter();
    const live = k && cfg.table ? k.read(cfg.table) : null;
    if (k) table = !live ? (applied ? 'missing' : 'off') : !applied ? 'unmanaged' : sameRuleset(applied.ruleset, live) ? 'live' : 'drifted';
  } catch {
    table = 'unknown';
  }
  tableCheck = { at: Date.now(), table };
  return table;
}

let explainPolicy: { sha256: string; loaded: NonNullable<ReturnType<typeof loadAppliedPolicy>> } | null = null;
/** The applied policy, parsed from its snapshot once per policy (with its text and a parser for edits of it). */
function appliedLoaded(): NonNullable<ReturnType<typeof loadAppliedPolicy>> | null {
  const applied = state.applied();
  if (!applied) return null;
  if (explainPolicy?.sha256 !== applied.sha256) {
    const loaded = loadAppliedPolicy(state);
    explainPolicy = loaded ? { sha256: loaded.applied.sha256, loaded } : null;
  }
  return explainPolicy?.loaded ?? null;
}
const appliedPolicy = (): Policy | null => appliedLoaded()?.policy ?? null;

/** "Allow this" for one stored event: the ladder, on the applied policy, with the window's blocked events for the impact. */
function allow(args: { event: number; since: number; until: number }): Parsed<Ladder> | null {
  const store = events();
  if (!store) return null;
  const event = store.query({ afterId: args.event - 1, limit: 1 })[0];
  if (!event || event.id !== args.event) return null;
  const loaded = appliedLoaded();
  if (!loaded) return { ok: false, error: 'no policy is applied' };
  try {
    const ladder = allowLadder({ event, existing: { policy: loaded.policy, text: loaded.text }, parse: loaded.parse, history: store.scanFlows({ since: args.since, until: args.until }), since: args.since, until: args.until, facts: hostFactsFor(loaded.policy) });
    const from = `applied ${loaded.applied.sha256.slice(0, 16)}`;
    return { ok: true, value: { ...ladder, applied: loaded.applied.sha256, steps: ladder.steps.map((st) => ({ ...st, diff: textDiff(loaded.text, st.policy, from, `with ${st.rule.name}`) })) } };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** The last suggestions computed, reused for a few seconds (a reload, a second tab): each costs a scan of the window. */
const SUGGEST_REUSE_MS = 30_000;
let lastSuggest: { key: string; at: number; value: Record<string, unknown> } | null = null;

/** Computes the Suggestions in a worker of their own, one at a time (dashboard-suggest-runner.ts). */
const suggestRunner = new SuggestRunner({ stateDir: cfg.stateDir, ...SUGGEST_WORKER, ...cfg.suggest });

/**
 * The Suggestions page: `sluice suggest` and `--check` against the applied
 * policy, bounded (dashboard-suggest.ts), computed off this thread so the
 * other pages and the live streams go on meanwhile.
 */
async function suggest(req: SuggestRequest): Promise<SuggestAnswer> {
  let key: string;
  try {
    key = `${req.sinceText}|${req.stableDays}|${appliedLoaded()?.applied.sha256 ?? '-'}`;
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  if (lastSuggest && lastSuggest.key === key && Date.now() - lastSuggest.at < SUGGEST_REUSE_MS) return { ok: true, value: { ...lastSuggest.value, reused: true } };
  const r = await suggestRunner.run(req, key);
  if (r.ok && lastSuggest?.key !== key) lastSuggest = { key, at: Date.now(), value: r.value };
  return r;
}

/** The sluice command line the dashboard runs applies through (`sluice _apply-candidate`). */
const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** An apply that takes longer than this is reported as failed (the process is left to finish: it holds the state lock). */
const APPLY_TIMEOUT_MS = 60_000;
/** One apply from the dashboard at a time. */
let applying = false;


/**
 * Applies `text` as a candidate through `sluice _apply-candidate` (the CLI's
 * own apply with --confirm: its rollback timer, its journal line, the
 * daemon told through its control socket), read as the applied policy's
 * file, refused (409) unless `expectApplied` is still what is applied.
 */
async function applyCandidate(text: string, expectApplied: string, confirm: number, who: DashboardWho, what: Record<string, unknown>): Promise<Outcome> {
  const applied = state.applied();
  if (!applied || applied.sha256 !== expectApplied) return { status: 409, body: { error: 'the applied policy changed since this page was computed; reload it', applied: applied?.sha256 ?? null } };
  if (applying) return { status: 409, body: { error: 'another apply from the dashboard is in progress' } };
  applying = true;
  let request: string | undefined;
  try {
    const w = writeCandidate(state, text, { policyFile: applied.policyFile, expectApplied, unlessChangedFrom: expectApplied, confirm, by: { ...who, ...what } });
    request = w.request;
    const r = await runCli(['_apply-candidate', w.request, '--json']);
    let out: Record<string, unknown> = {};
    try {
      out = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      out = {};
    }
    if (r.code === 0 && out.applied === true) {
      tableCheck = null;
      return { status: 200, body: { applied: true, sha256: out.sha256, mode: out.mode, confirmBy: out.confirmBy, verified: out.verified, warnings: out.warnings } };
    }
    if (out.stale === true) return { status: 409, body: { error: 'the applied policy changed since this page was computed; reload it' } };
    const message = typeof out.error === 'string' ? out.error : typeof (out.error as { message?: unknown } | undefined)?.message === 'string' ? String((out.error as { message: string }).message) : r.stderr.trim().split('\n').pop() || 'the apply failed';
    return { status: 500, body: { error: message } };
  } catch (err) {
    return { status: 500, body: { error: (err as Error).message } };
  } finally {
    applying = false;
    if (request) rmSync(request, { force: true });
  }
}

/** Runs the sluice CLI (argv, never a shell) with this state directory; its output and exit code. */
function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // Not systemd's: the readiness and watchdog sockets and passed descriptors are the daemon's own.
    const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_STATE_DIR: cfg.stateDir };
    for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete env[k];
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-1_000_000)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-100_000)));
    const timer = setTimeout(() => resolve({ code: -1, stdout, stderr: `${stderr}\nthe apply took longer than ${APPLY_TIMEOUT_MS / 1000} s` }), APPLY_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** "Allow this", applied: the chosen step's policy, recomputed here from the event (never taken from the request). */
async function applyStep(req: ApplyRequest, who: DashboardWho): Promise<Outcome> {
  const loaded = appliedLoaded();
  if (!loaded) return { status: 409, body: { error: 'no policy is applied' } };
  if (loaded.applied.sha256 !== req.applied) return { status: 409, body: { error: 'the applied policy changed since this page was computed; reload it', applied: loaded.applied.sha256 } };
  const now = Date.now();
  const ladder = allow({ event: req.event, since: now - 7 * 86_400_000, until: now });
  if (ladder === null) return { status: 404, body: { error: `no event ${req.event} in the store` } };
  if (!ladder.ok) return { status: 400, body: { error: ladder.error } };
  const step = ladder.value.steps.find((st) => st.id === req.step);
  if (!step) return { status: 400, body: { error: `step ${req.step} is not offered for event ${req.event}${ladder.value.refused ? `: ${ladder.value.refused}` : ''}` } };
  return applyCandidate(step.policy, req.applied, req.confirm, who, { event: req.event, step: req.step, rule: step.rule.name });
}

/** "Roll back to this one": an earlier applied version's snapshot, applied again with a confirmation window. */
async function rollbackTo(req: RollbackRequest, who: DashboardWho): Promise<Outcome> {
  const bytes = state.policySnapshot(req.to);
  if (!bytes) return { status: 404, body: { error: `no snapshot of version ${req.to.slice(0, 16)} is kept` } };
  return applyCandidate(bytes.toString('utf8'), req.applied, req.confirm, who, { rollbackTo: req.to });
}

/** Confirms what is pending (the same function `sluice confirm` runs), naming who. */
function confirmNow(who: DashboardWho): Outcome {
  const r = confirmPending(state, { ...who });
  if (!r.confirmed) return { status: 409, body: { error: 'nothing is waiting for confirmation' } };
  return { status: 200, body: { confirmed: true, late: r.late ?? false, ...(r.wroteBack ? { wroteBack: r.wroteBack } : {}) } };
}

/** The journal events that put a policy in force (or took it out). */
const VERSION_EVENTS = new Set(['apply', 'rollback', 'reload', 'daemon-start', 'off', 'confirm']);
const MAX_VERSIONS = 50;

/** The policy page: applied versions (newest first) with who, when, hash, mode and the diff against the one before, and what is pending. */
function policyPage(): Record<string, unknown> {
  // The newest MiB of the journal is plenty for the last MAX_VERSIONS versions.
  const entries = state.readJournal(1024 * 1024).filter((e) => VERSION_EVENTS.has(String(e.event)));
  const versions: Record<string, unknown>[] = [];
  let prevSha: string | null = null;
  for (const e of entries) {
    const sha = typeof e.sha256 === 'string' && /^[0-9a-f]{64}$/.test(e.sha256) ? e.sha256 : null;
    const row: Record<string, unknown> = { at: e.at, event: e.event, by: e.by ?? null, sha256: sha, mode: e.mode ?? null, ...(e.event === 'confirm' && e.wroteBack ? { wroteBack: e.wroteBack } : {}) };
    if (sha !== null && sha !== prevSha) {
      const before = prevSha ? state.policySnapshot(prevSha) : null;
      const after = state.policySnapshot(sha);
      row.diff = typeof e.diff === 'string' ? e.diff : after ? textDiff(before?.toString('utf8') ?? '', after.toString('utf8'), prevSha ? prevSha.slice(0, 16) : 'nothing', sha.slice(0, 16)) : null;
      row.kept = after !== null;
    }
    if (sha !== null) prevSha = sha;
    else if (e.event === 'off') prevSha = null;
    versions.push(row);
  }
  const applied = state.applied();
  return {
    applied: applied ? { sha256: applied.sha256, mode: applied.mode, file: applied.policyFile, at: applied.appliedAt } : null,
    pending: pendingInfo(),
    rules: rulesWithCounters(),
    versions: versions.slice(-MAX_VERSIONS).reverse(),
  };
}

/** The applied policy's rules with their kernel hit counters (dashboard-rules.ts); null: none applied, or its snapshot unreadable. */
function rulesWithCounters(): DashboardRules | null {
  let policy: Policy | null;
  try {
    policy = appliedPolicy();
  } catch {
    return null;
  }
  return policy ? dashboardRules(policy, kernelFamilies(kernelMetricsContext(policy))) : null;
}

/** What waits for confirmation: its deadline, the seconds left and what a rollback restores; null: nothing. */
function pendingInfo(): Record<string, unknown> | null {
  let pending;
  try {
    pending = state.pending();
  } catch {
    return null;
  }
  return pending ? { deadline: pending.deadline, secondsLeft: Math.max(0, Math.round((Date.parse(pending.deadline) - Date.now()) / 1000)), rollbackTo: pending.previousState?.sha256 ?? null } : null;
}

/** The main thread answers a health request with its registry's snapshot; it never takes longer than this. */
const HEALTH_TIMEOUT_MS = 2_000;
let healthId = 0;
const healthWaiters = new Map<number, (m: { families: Family[]; context: KernelMetricsContext | null } | null) => void>();

/** The health page's figures: the main thread's values, and the kernel's counters read here. */
async function health(): Promise<DashboardHealth | null> {
  const id = ++healthId;
  const snapshot = await new Promise<{ families: Family[]; context: KernelMetricsContext | null } | null>((resolve) => {
    const timer = setTimeout(() => {
      healthWaiters.delete(id);
      resolve(null);
    }, HEALTH_TIMEOUT_MS);
    healthWaiters.set(id, (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    port?.postMessage({ t: 'want-health', id });
  });
  if (!snapshot) return null;
  return dashboardHealth(snapshot.families, snapshot.context ? kernelFamilies(snapshot.context) : null, Date.now());
}

/**
 * The kernel's named counters (one read of the table's counter objects) as
 * the metric families `/metrics` exposes: the health page and the Policy
 * page's rules read them so. null: no table, or the read failed.
 */
function kernelFamilies(context: KernelMetricsContext): Family[] | null {
  const k = netfilter();
  if (!k || !cfg.table) return null;
  try {
    return kernelCounterFamilies(k.counters(cfg.table), context);
  } catch {
    return null;
  }
}

const sources: DashboardSources = {
  status: () => ({
    policy: policyInfo,
    table: tableState(),
    pending: pendingInfo(),
    suggesting: suggestRunner.busy ? { startedAt: suggestRunner.busy.startedAt } : null,
    dashboard: { connections: gate.size, liveStreams: hub.size, liveDropped: hub.dropped + forwardedDrops, refused: Object.fromEntries(refused), refusedConnections: Object.fromEntries(gate.refused) },
    now: Date.now(),
  }),
  events: (q: EventQuery) => events()?.query(q) ?? null,
  stats: (q, top) => events()?.stats(q, top) ?? null,
  timeline: (q, bucketMs) => events()?.timeline(q, bucketMs) ?? null,
  // The newest MiB of the journal: a tamper line is a few hundred bytes, an apply's with its diff a few KiB.
  tamper: (q) => tamperMarks(state.readJournal(1024 * 1024), q),
  health,
  allow,
  applyStep,
  rollbackTo,
  confirm: confirmNow,
  policy: policyPage,
  suggest,
  explain: (args) => {
    const policy = appliedPolicy();
    if (!policy) return { ok: false, error: 'no policy is applied' };
    return explainForDashboard(policy, args, cfg.table ? netfilter() : null);
  },
};

const assetsDir = new URL('./dashboard-assets/', import.meta.url);
const assets = {
  html: readFileSync(new URL('index.html', assetsDir), 'utf8'),
  js: readFileSync(new URL('app.js', assetsDir), 'utf8'),
  css: readFileSync(new URL('app.css', assetsDir), 'utf8'),
};

let version = 'unknown';
try {
  version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? version;
} catch {
  // A package without its package.json: the document says unknown.
}

const app = dashboardApp({
  version,
  listen: cfg.listen,
  credentials: new DashboardCredentials(cfg.token, cfg.listen.port),
  sources,
  live: hub,
  assets,
  refused,
  // The uid the connection gate found for this request's socket.
  peerOf: (c) => gate.peerOf((c.env as { incoming?: { socket?: Socket } } | undefined)?.incoming?.socket),
  remoteOf: (c) => {
    const sock = (c.env as { incoming?: { socket?: Socket } } | undefined)?.incoming?.socket;
    return sock?.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort ?? ''}` : 'unknown';
  },
});
const http = createHttpServer(
  { maxHeaderSize: cfg.limits.maxHeaderBytes, headersTimeout: cfg.limits.headersTimeoutMs, requestTimeout: cfg.limits.headersTimeoutMs },
  getRequestListener(app.fetch, { errorHandler: () => new Response('internal error', { status: 500 }) }),
);
http.on('clientError', (_err, sock) => sock.destroy());
const server = createServer((sock) => {
  if (gate.admit(sock)) http.emit('connection', sock);
});
server.maxConnections = cfg.limits.total;

port.on('message', (m: { t: 'events'; events: LiveEvent[]; dropped: number } | { t: 'policy'; policy: DashboardPolicyInfo | null } | { t: 'health'; id: number; families: Family[]; context: KernelMetricsContext | null } | { t: 'stop' }) => {
  if (m.t === 'health') {
    const waiter = healthWaiters.get(m.id);
    healthWaiters.delete(m.id);
    waiter?.({ families: m.families, context: m.context });
  } else if (m.t === 'events') {
    forwardedDrops += m.dropped;
    hub.publish(m.events);
  } else if (m.t === 'policy') {
    policyInfo = m.policy;
    tableCheck = null;
  } else if (m.t === 'stop') {
    hub.close();
    suggestRunner.stop();
    server.close();
    http.close();
    gate.close();
    store?.close();
    nf?.close();
    port.close();
  }
});

server.once('error', (err) => port.postMessage({ t: 'failed', message: err.message }));
server.listen(cfg.listen.port, cfg.listen.host, () => {
  const a = server.address() as AddressInfo;
  port.postMessage({ t: 'listening', host: a.address, port: a.port });
});
