/**
 * Worker-thread entry for DNS query attribution: reading the socket table and
 * /proc/PID/fd happens here, on another core, never on the event loop that
 * answers queries. Messages in: { id, clients }; out: { id, found, stats }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { native } from '../native/native.js';
import type { ProbeMaps } from '../monitor/kernel-attribution.js';
import { QueryAttribution, type QueryClient } from './query-attribution.js';

const port = parentPort;
if (!port) throw new Error('attribution-thread runs as a worker thread');
const data = (workerData ?? {}) as { perSecond?: number; procRoot?: string; probes?: { maps: ProbeMaps; netns: bigint } };
try {
  // Below the event loop that answers queries, when both want the same CPU.
  native().setThreadNice(10);
} catch {
  /* not fatal: attribution still works, at normal priority */
}
const attribution = new QueryAttribution(data.perSecond ?? 500, { procRoot: data.procRoot, exclude: [process.pid], ...(data.probes ? { probes: data.probes } : {}) });

port.on('message', (m: { id: number; clients: QueryClient[] }) => {
  const found = attribution.identify(m.clients);
  port.postMessage({ id: m.id, found: found.map((x) => x ?? null), stats: attribution.stats });
});
port.on('close', () => attribution.close());
