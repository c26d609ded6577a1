/**
 * Worker-thread entry for one computation of the dashboard's Suggestions
 * (see dashboard-suggest-runner.ts, which starts it from the dashboard's
 * thread and ends it when it runs over its time or heap). It opens its own
 * read-only connection to the event store and loads the applied policy
 * from the state directory's snapshot itself (a parser is not something a
 * message can carry), computes once, posts the answer and ends.
 *
 * workerData: { stateDir, req, limits }. Posts one message:
 * { ok: true, value } or { ok: false, error }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStore } from '../events/sqlite-store.js';
import { eventStorePath } from '../events/store-component.js';
import { loadAppliedPolicy } from '../state/load-applied-policy.js';
import { StateStore } from '../state/state-store.js';
import type { SuggestRequest } from './dashboard-query.js';
import { suggestForDashboard, type SuggestLimits } from './dashboard-suggest.js';

/** What the runner hands this worker. */
export interface SuggestWorkerData {
  stateDir: string;
  req: SuggestRequest;
  limits: Pick<SuggestLimits, 'budgetMs' | 'maxFlows'>;
}

const port = parentPort;
if (!port) throw new Error('dashboard-suggest-worker runs as a worker thread');
const data = workerData as SuggestWorkerData;

let store: SqliteStore | null = null;
try {
  try {
    store = new SqliteStore(eventStorePath(data.stateDir), { readonly: true });
  } catch {
    // Nothing recorded yet (or a store this reader does not read): the answer says store: false.
    store = null;
  }
  const loaded = loadAppliedPolicy(new StateStore(data.stateDir));
  const base = loaded ? { policy: loaded.policy, text: loaded.text, sha256: loaded.applied.sha256, file: loaded.applied.policyFile, parse: loaded.parse } : null;
  port.postMessage({ ok: true, value: suggestForDashboard(store, base, data.req, data.limits) });
} catch (err) {
  port.postMessage({ ok: false, error: (err as Error).message });
} finally {
  store?.close();
}
