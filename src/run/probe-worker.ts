/**
 * Loads the kernel attribution probes for one `sluice run` on a thread of
 * its own, started as the run command starts: loading (the worker's own
 * start, BTF, the verifier) takes 100 ms or more, and goes on side by side
 * with loading the run's modules and making its network and guard. The
 * connect hook is attached to the run's cgroup when the main thread names it
 * ({ attach: path }), which may be before or after the load finished; the
 * answer ({ attached }) is sent once both are done. The maps' file
 * descriptors belong to the process, so the main thread reads them directly;
 * this thread only holds the programs attached until told to let go (or the
 * process exits, which detaches them too).
 */
import { parentPort } from 'node:worker_threads';
import { attachProbesToCgroup, loadProbes, unloadProbes } from '../monitor/kernel-attribution.js';

// SLUICE_RUN_PROBE_DELAY_MS (tests): a slow load, to show the command waits for the probes.
const delay = Number(process.env.SLUICE_RUN_PROBE_DELAY_MS ?? 0);
if (Number.isInteger(delay) && delay > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Math.min(delay, 10_000));
// Small maps: one run's flows and execs, not a host's (preallocated LRU maps cost time to make).
// No cgroup yet: the tracepoints are attached now, the connect hook when the run's cgroup is named.
const state = loadProbes({ cgroupRoot: '', flowsMax: 4096, execsMax: 1024 });
parentPort?.postMessage(state.loaded ? { loaded: true, maps: state.maps } : { loaded: false, reason: state.reason });
parentPort?.on('message', (m: unknown) => {
  if (m === 'close') {
    unloadProbes();
    parentPort?.close();
    return;
  }
  const path = (m as { attach?: unknown } | null)?.attach;
  if (typeof path !== 'string') return;
  if (!state.loaded) {
    parentPort?.postMessage({ attached: false, reason: state.reason });
    return;
  }
  try {
    attachProbesToCgroup(path);
    parentPort?.postMessage({ attached: true });
  } catch (err) {
    parentPort?.postMessage({ attached: false, reason: `the probes' connect hook on the run's cgroup: ${(err as Error).message.split('\n')[0]}` });
  }
});
