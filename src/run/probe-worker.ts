/**
 * Loads the kernel attribution probes for one `sluice run` on a thread of
 * its own, while the main thread makes the run's network and guard: loading
 * (BTF, the verifier) takes most of 100 ms, and the two go side by side on
 * two cores. The maps' file descriptors belong to the process, so the main
 * thread reads them directly; this thread only holds the programs attached
 * until told to let go (or the process exits, which detaches them too).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadProbes, unloadProbes } from '../monitor/kernel-attribution.js';

const { cgroup } = workerData as { cgroup: string };
// Small maps: one run's flows and execs, not a host's (preallocated LRU maps cost time to make).
const state = loadProbes({ cgroupRoot: cgroup, flowsMax: 4096, execsMax: 1024 });
parentPort?.postMessage(state.loaded ? { loaded: true, maps: state.maps } : { loaded: false, reason: state.reason });
parentPort?.on('message', (m) => {
  if (m === 'close') {
    unloadProbes();
    parentPort?.close();
  }
});
