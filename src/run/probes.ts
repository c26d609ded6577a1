/**
 * The kernel attribution probes of one `sluice run`: loaded on libuv's
 * thread pool (the native loader's loadAsync: BTF, the verifier and
 * attaching take 100 ms or more, much of it waiting on the kernel), started
 * as the run command starts, so the load goes on beside loading the run's
 * modules and making its network and guard, without a thread of Node's of
 * its own to start. Their connect hook is attached to the run's cgroup once
 * both the load and the cgroup are done; the command waits for that, not
 * for more. The maps are read on this thread (ProbeReader).
 */
import { attachProbesToCgroup, loadProbesAsync, unloadProbes, type ProbeMaps } from '../monitor/kernel-attribution.js';

export type ProbeLoaded = { loaded: true; maps: ProbeMaps } | { loaded: false; reason: string };
export type ProbeAttached = { attached: true } | { attached: false; reason: string };

export interface ProbeLoad {
  /** The probes loaded (the tracepoints attached; not yet the connect hook), or why not. */
  loaded: Promise<ProbeLoaded>;
  /** Attaches the connect hook to the run's cgroup: settled once the probes are loaded and it is attached, or why not. */
  attach(cgroup: string): Promise<ProbeAttached>;
  /** Detaches everything (after the load, if it is still going). */
  close(): Promise<void>;
}

export function startProbes(): ProbeLoad {
  // SLUICE_RUN_PROBE_DELAY_MS (tests): a slow load, to show the command waits for the probes.
  const delay = Number(process.env.SLUICE_RUN_PROBE_DELAY_MS ?? 0);
  const started = Number.isInteger(delay) && delay > 0 ? new Promise<void>((r) => setTimeout(r, Math.min(delay, 10_000))) : Promise.resolve();
  // Small maps: one run's flows and execs, not a host's (preallocated LRU maps cost time to make).
  // No cgroup yet: the tracepoints are attached now, the connect hook when the run's cgroup is named.
  const loaded: Promise<ProbeLoaded> = started
    .then(() => loadProbesAsync({ cgroupRoot: '', flowsMax: 4096, execsMax: 1024 }))
    .then(
      (s) => (s.loaded ? { loaded: true as const, maps: s.maps } : { loaded: false as const, reason: s.reason }),
      (err: unknown) => ({ loaded: false as const, reason: `the probe loader failed: ${(err as Error).message}` }),
    );
  return {
    loaded,
    async attach(cgroup: string): Promise<ProbeAttached> {
      const s = await loaded;
      if (!s.loaded) return { attached: false, reason: s.reason };
      try {
        attachProbesToCgroup(cgroup);
        return { attached: true };
      } catch (err) {
        return { attached: false, reason: `the probes' connect hook on the run's cgroup: ${(err as Error).message.split('\n')[0]}` };
      }
    },
    async close(): Promise<void> {
      await loaded;
      unloadProbes();
    },
  };
}
