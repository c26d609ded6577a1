/**
 * Starting the kernel attribution probes of one `sluice run` (probe-worker.ts):
 * a module of its own, small, so the run command can start the worker before
 * it loads the rest of the run's modules.
 */
import { Worker } from 'node:worker_threads';
import type { ProbeMaps } from '../monitor/kernel-attribution.js';

export type ProbeLoaded = { loaded: true; maps: ProbeMaps } | { loaded: false; reason: string };
export type ProbeAttached = { attached: true } | { attached: false; reason: string };

export interface ProbeLoad {
  worker: Worker;
  /** The probes loaded (the tracepoints attached; not yet the connect hook), or why not. */
  loaded: Promise<ProbeLoaded>;
  /** Attaches the connect hook to the run's cgroup: settled once the probes are loaded and it is attached, or why not. */
  attach(cgroup: string): Promise<ProbeAttached>;
  /** Detaches everything and ends the worker. */
  close(): Promise<void>;
}

export function startProbes(): ProbeLoad {
  const worker = new Worker(new URL('./probe-worker.js', import.meta.url));
  // Until a run takes it, the worker does not keep the process alive (a refused start exits at once).
  worker.unref();
  let settleLoaded: (v: ProbeLoaded) => void = () => undefined;
  let settleAttached: (v: ProbeAttached) => void = () => undefined;
  const loaded = new Promise<ProbeLoaded>((r) => (settleLoaded = r));
  const attached = new Promise<ProbeAttached>((r) => (settleAttached = r));
  const fail = (reason: string) => {
    settleLoaded({ loaded: false, reason });
    settleAttached({ attached: false, reason });
  };
  worker.on('message', (m: ProbeLoaded | ProbeAttached) => {
    if ('loaded' in m) settleLoaded(m);
    else if ('attached' in m) settleAttached(m);
  });
  worker.once('error', (err) => fail(`the probe loader failed: ${err.message}`));
  worker.once('exit', () => fail('the probe loader exited'));
  return {
    worker,
    loaded,
    attach(cgroup: string) {
      worker.ref();
      worker.postMessage({ attach: cgroup });
      return attached;
    },
    async close() {
      worker.postMessage('close');
      await worker.terminate().catch(() => undefined);
    },
  };
}
