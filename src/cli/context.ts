import type { CompileResult } from '../compile/compile-ruleset.js';
import { compileForHost, compileForHostAsync } from '../system/compile-env.js';
import { SystemError } from '../errors.js';
import { KernelNetfilter } from '../netfilter/kernel-netfilter.js';
import type { Netfilter } from '../netfilter/netfilter.js';
import { loadPolicyFile, loadPolicyWithBytes, type ListBytes } from '../policy/load-policy.js';
import { controlCall } from '../runtime/control-server.js';
import { setHostnameSource } from '../events/hostnames.js';
import { LearnedState } from '../dns/learned-state.js';
import { join } from 'node:path';
import { TABLE_NAME } from '../compile/ruleset.js';
import type { Policy } from '../policy/policy.js';
import { defaultPolicyPath, StateStore } from '../state/state-store.js';
import { lookupUsers } from '../system/users.js';
import { openedFromKernel, type OpenedLookup } from '../monitor/opened.js';
import { parseAddr } from '../net/ip.js';

/** What every command gets: parsed flags, output helpers, and lazily opened resources. */
export class Context {
  readonly json: boolean;
  readonly state: StateStore;
  private nf: Netfilter | undefined;
  private readonly lines: string[] = [];

  /** `state` and `netfilter` are for tests (a temporary directory, the fake kernel); by default the real ones. */
  constructor(opts: { json: boolean; state?: StateStore; netfilter?: Netfilter }) {
    this.json = opts.json;
    this.state = opts.state ?? new StateStore();
    this.nf = opts.netfilter;
  }

  /**
   * The kernel interface, opened on first use (needs CAP_NET_ADMIN to write).
   * `owner`: the daemon's (it holds an owned table; see KernelNetfilter).
   */
  netfilter(opts: { owner?: boolean } = {}): Netfilter {
    if (!this.nf) {
      try {
        this.nf = new KernelNetfilter({ owner: opts.owner === true });
      } catch (err) {
        throw new SystemError('ENETFILTER', `Cannot talk to nftables: ${(err as Error).message}`, { cause: err });
      }
    }
    return this.nf;
  }

  close(): void {
    this.nf?.close();
  }

  /** Loads and validates a policy (the given path or the default). */
  loadPolicy(path?: string): Policy {
    return loadPolicyFile(path ?? defaultPolicyPath(), { lookupUsers });
  }

  /** Loads a policy and keeps its bytes, for applying (the state directory snapshots them). */
  loadPolicyForApply(path?: string, as?: string): { policy: Policy; bytes: Buffer; lists: ListBytes[] } {
    const file = path ?? defaultPolicyPath();
    return loadPolicyWithBytes(file, { lookupUsers }, as ?? file);
  }

  /**
   * Names destinations for CLI views (connections, top) from the DNS guard's
   * saved learned state: the daemon's names, as of its last save (every 5 s).
   */
  /**
   * What the DNS guard opened, for naming connections: the rules from the
   * kernel's DNS sets, the names from the running daemon (its guard's record),
   * or from its saved state when it is down.
   */
  async openedAddresses(): Promise<OpenedLookup> {
    let rs = null;
    try {
      rs = this.netfilter().read(TABLE_NAME, { elements: 'dynamic' })?.ruleset ?? null;
    } catch {
      /* no table, or not allowed to read it: nothing opened to name */
    }
    let namesFor: (family: 4 | 6, addr: bigint) => string[];
    try {
      const learned = (await controlCall(this.state.controlSocket, 'dns.learned', {}, 2_000)) as { address: string; names: string[] }[];
      const byAddr = new Map<string, string[]>();
      for (const e of Array.isArray(learned) ? learned : []) {
        const a = typeof e?.address === 'string' ? parseAddr(e.address) : null;
        if (a && Array.isArray(e.names)) byAddr.set(`${a.family}/${a.value}`, e.names.filter((n): n is string => typeof n === 'string'));
      }
      namesFor = (family, addr) => byAddr.get(`${family}/${addr}`) ?? [];
    } catch {
      const saved = LearnedState.load(join(this.state.dir, 'learned.json'));
      namesFor = (family, addr) => saved.namesFor(family, addr);
    }
    return openedFromKernel(rs, namesFor);
  }

  useSavedHostnames(): void {
    const learned = LearnedState.load(join(this.state.dir, 'learned.json'));
    setHostnameSource((family, addr) => learned.namesFor(family, addr)[0]);
  }

  /**
   * The kernel interface for a command that replaces or removes the table
   * (apply, off, a rollback). A table the daemon owns (policy
   * `owned_table`) only its socket may change: the daemon is asked to let go
   * of it first, and takes it back when told of the change (notifyDaemon),
   * or by itself 10 s later. Without a daemon to ask, the write is refused
   * with the reason (ETABLEOWNED).
   */
  async tableWriter(): Promise<Netfilter> {
    const nf = this.netfilter();
    const live = nf.read(TABLE_NAME, { elements: 'none' });
    if (live?.owner === undefined) return nf;
    try {
      await controlCall(this.state.controlSocket, 'release', {}, 5_000);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENODAEMON') throw new SystemError('ETABLEOWNED', `The daemon owns table inet ${TABLE_NAME} and did not let go of it: ${(err as Error).message}`, { cause: err });
    }
    return nf;
  }

  /** Tells a running daemon to adopt what is applied now. Returns false when no daemon runs. */
  async notifyDaemon(): Promise<boolean> {
    try {
      await controlCall(this.state.controlSocket, 'sync', {}, 5_000);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'ENODAEMON') return false;
      this.say(`warning: the daemon did not take the change: ${(err as Error).message}`);
      return true;
    }
  }

  /** Gathers what the compiler needs from this host (cgroups, DNS upstreams, the encrypted-DNS list) and compiles. */
  compile(policy: Policy): CompileResult {
    return compileForHost(policy);
  }

  /** The same, with the host asked off the event loop (the daemon, whose loop also answers DNS). */
  compileAsync(policy: Policy): Promise<CompileResult> {
    return compileForHostAsync(policy);
  }

  /** Text for people (suppressed with --json). */
  say(text = ''): void {
    if (!this.json) this.lines.push(text);
  }

  /** Structured output for --json (ignored otherwise). */
  result(data: unknown): void {
    if (this.json) process.stdout.write(`${JSON.stringify(data, bigintJson, 2)}\n`);
  }

  flush(): void {
    if (this.lines.length > 0) process.stdout.write(`${this.lines.join('\n')}\n`);
    this.lines.length = 0;
  }
}

export function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString() : v;
}

/** Exit statuses: 0 fine, 1 failed, 2 bad usage, 3 not in the expected state (drift, nothing live). */
export { EXIT } from './exit.js';
