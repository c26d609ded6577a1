/**
 * Worker-thread entry for GET /metrics (see metrics-server.ts). Everything a
 * scrape costs happens here, never on the event loop that answers DNS:
 * accepting and parsing connections, authentication, reading the kernel's
 * counters (a netlink dump whose size grows with the number of rules), and
 * rendering the text. The main thread only hands over a snapshot of its
 * in-process values, at most one per SNAPSHOT_MIN_MS.
 *
 * Messages in: { t: 'snapshot', id, families, context } and { t: 'stop' }.
 * Out: { t: 'listening', unix, tcp }, { t: 'failed', message }, { t: 'want', id }.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, renameSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { KernelNetfilter } from '../netfilter/kernel-netfilter.js';
import { ConnectionGate } from './connection-gate.js';
import { kernelCounterFamilies, type KernelMetricsContext } from './kernel-counter-metrics.js';
import { renderExposition, type Family } from '../runtime/metrics.js';
import type { MetricsThreadConfig } from './metrics-server.js';

const port = parentPort;
if (!port) throw new Error('metrics-thread runs as a worker thread');
const cfg = workerData as MetricsThreadConfig;
const limits = cfg.limits;

/** Connections are counted per peer: the uid owning the peer's socket for TCP (sock_diag), one bucket for the root-only Unix socket. */
const gate = new ConnectionGate(limits);
/** Connections over the Unix socket: only root can open it (mode 0600), so they need no token. */
const viaUnix = new WeakSet<Socket>();
const stats = { requests: new Map<string, number>(), kernelReadErrors: 0 };
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

let nf: KernelNetfilter | null | undefined;
const expected = cfg.tcp ? createHash('sha256').update(cfg.tcp.token).digest() : null;

/** Admits a connection or closes it at once; every admitted one has an idle timeout and a lifetime. */
function admit(sock: Socket, kind: 'unix' | 'tcp'): boolean {
  // The Unix socket's only peer is root (mode 0600): the total cap alone applies there.
  if (!gate.admit(sock, kind === 'unix' ? { peer: 'unix', perPeer: false } : {})) return false;
  if (kind === 'unix') viaUnix.add(sock);
  return true;
}

/** Constant-time check of `Authorization: Bearer <token>` (both sides hashed, so lengths never leak). */
function authorized(req: IncomingMessage): boolean {
  if (!expected || viaUnix.has(req.socket)) return true;
  const h = req.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer ([\x21-\x7e]{1,512})$/.exec(h) : null;
  if (!m) return false;
  return timingSafeEqual(createHash('sha256').update(m[1] as string).digest(), expected);
}

// A snapshot of the main thread's values is asked for once, however many scrapes wait for it.
let nextId = 1;
let pending: { id: number; waiters: ((s: { families: Family[]; context: KernelMetricsContext | null }) => void)[] } | null = null;
function mainSnapshot(): Promise<{ families: Family[]; context: KernelMetricsContext | null }> {
  return new Promise((resolve) => {
    if (!pending) {
      pending = { id: nextId++, waiters: [] };
      port?.postMessage({ t: 'want', id: pending.id });
    }
    pending.waiters.push(resolve);
  });
}

function kernelFamilies(context: KernelMetricsContext | null): Family[] {
  if (!cfg.table || !context) return [];
  if (nf === undefined) {
    try {
      nf = new KernelNetfilter();
    } catch {
      nf = null;
    }
  }
  if (!nf) return [];
  try {
    return kernelCounterFamilies(nf.counters(cfg.table), context);
  } catch {
    stats.kernelReadErrors++;
    return [];
  }
}

function ownFamilies(): Family[] {
  return [
    { name: 'sluice_metrics_requests_total', help: 'Metrics requests, by HTTP status', type: 'counter', samples: [...stats.requests].map(([code, value]) => ({ labels: { code }, value })) },
    {
      name: 'sluice_metrics_connections_refused_total',
      help: 'Metrics connections closed at once: over the per-peer (uid) or the total connection limit',
      type: 'counter',
      samples: [...gate.refused].map(([reason, value]) => ({ labels: { reason }, value })),
    },
    { name: 'sluice_metrics_connections', help: 'Metrics connections open now', type: 'gauge', samples: [{ labels: {}, value: gate.size }] },
    { name: 'sluice_metrics_kernel_read_errors_total', help: 'Scrapes whose kernel counter read failed (those metrics were left out)', type: 'counter', samples: [{ labels: {}, value: stats.kernelReadErrors }] },
  ];
}

function reply(res: ServerResponse, code: number, body: string, headers: Record<string, string> = {}): void {
  bump(stats.requests, String(code));
  res.writeHead(code, { 'content-type': code === 200 ? 'text/plain; version=0.0.4; charset=utf-8' : 'text/plain; charset=utf-8', connection: 'close', ...headers });
  res.end(body);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  // Authentication before anything else: without the token, nothing is learnt, not even which paths exist.
  if (!authorized(req)) return reply(res, 401, 'unauthorized\n', { 'www-authenticate': 'Bearer realm="sluice"' });
  const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
  if (hasBody) return reply(res, 413, 'a metrics request has no body\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics') return reply(res, 404, 'not found\n');
  const snap = await mainSnapshot();
  const text = renderExposition([...snap.families, ...kernelFamilies(snap.context), ...ownFamilies()]);
  return reply(res, 200, req.method === 'HEAD' ? '' : text);
}

const http = createHttpServer({ maxHeaderSize: limits.maxHeaderBytes }, (req, res) => {
  handle(req, res).catch(() => {
    if (!res.headersSent) reply(res, 500, 'internal error\n');
    else res.destroy();
  });
});
http.on('clientError', (_err, sock: Socket) => {
  bump(stats.requests, '400');
  sock.destroy();
});

const servers: Server[] = [];

function listen(server: Server, arg: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    if (typeof arg === 'string') server.listen(arg, () => resolve());
    else server.listen(arg.port, arg.host, () => resolve());
  });
}

async function start(): Promise<void> {
  let unix: string | null = null;
  if (cfg.unixPath) {
    // Bound under a temporary name, made root-only, then renamed into place: the
    // socket is never reachable at its real path with a wider mode.
    const tmp = `${cfg.unixPath}.${process.pid}.tmp`;
    rmSync(tmp, { force: true });
    const s = createServer((sock) => {
      if (admit(sock, 'unix')) http.emit('connection', sock);
    });
    s.maxConnections = limits.total;
    await listen(s, tmp);
    chmodSync(tmp, 0o600);
    renameSync(tmp, cfg.unixPath);
    servers.push(s);
    unix = cfg.unixPath;
  }
  let tcp: { host: string; port: number } | null = null;
  if (cfg.tcp) {
    const s = createServer((sock) => {
      if (admit(sock, 'tcp')) http.emit('connection', sock);
    });
    await listen(s, { host: cfg.tcp.host, port: cfg.tcp.port });
    servers.push(s);
    const a = s.address() as AddressInfo;
    tcp = { host: a.address, port: a.port };
  }
  port?.postMessage({ t: 'listening', unix, tcp });
}

port.on('message', (m: { t: 'snapshot'; id: number; families: Family[]; context: KernelMetricsContext | null } | { t: 'stop' }) => {
  if (m.t === 'snapshot') {
    if (!pending || pending.id !== m.id) return;
    const waiters = pending.waiters;
    pending = null;
    for (const w of waiters) w({ families: m.families, context: m.context });
  } else if (m.t === 'stop') {
    for (const s of servers) s.close();
    gate.close();
    if (cfg.unixPath) rmSync(cfg.unixPath, { force: true });
    nf?.close();
    port.close();
  }
});

start().catch((err: unknown) => port.postMessage({ t: 'failed', message: (err as Error).message }));
