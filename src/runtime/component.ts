import type { CompileResult } from '../compile/compile-ruleset.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import type { Policy } from '../policy/policy.js';
import type { StateStore } from '../state/state-store.js';
import type { ControlServer } from './control-server.js';
import type { Registry } from './metrics.js';

/**
 * The contract between the daemon and its parts (the DNS guard, the event
 * store and collector, the service watch). Below all of them, so a part
 * implements it without importing the daemon that runs it: dependencies
 * point down only.
 */

/** What a daemon component gets: the current policy and the shared services. */
export interface Runtime {
  policy: Policy;
  compiled: CompileResult;
  netfilter: Netfilter;
  state: StateStore;
  control: ControlServer;
  metrics: Registry;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

/** A part of the daemon (DNS guard, event collector, watchdog...). */
export interface Component {
  readonly name: string;
  /**
   * Runs before the policy is written to the kernel, on start and on reload:
   * whatever the new ruleset will rely on (the DNS guard's sockets) must exist
   * first. Throwing here stops the start or the reload before the kernel changes.
   */
  prepare?(policy: Policy): Promise<void>;
  /** A reload that called prepare() was given up (the policy in force stays). */
  reloadAborted?(): void;
  start(rt: Runtime): Promise<void>;
  stop(): Promise<void>;
  /** The policy changed; rt holds the new one. Components that keep derived state rebuild it. */
  reload?(rt: Runtime): Promise<void>;
  /** A short status object for `sluice status` and the control socket. */
  status?(): Record<string, unknown>;
}

