/**
 * A small internet in network namespaces, for integration tests.
 *
 *   client ns  eth0 198.18.0.2/24 2001:db8::2/64 ---- w0 198.18.0.1 2001:db8::1  world ns
 *              tun0 198.19.0.2/24 ------------------- w1 198.19.0.1              (the HOSTS below are
 *              default via eth0; 198.19.200.0/24 via tun0                         on the world's lo)
 *
 * Sluice runs in the client namespace. Only 198.18.0.0/15 and 2001:db8::/32
 * are used, and nothing is routed out of the two namespaces. Every process
 * started here is tracked and killed, and both namespaces are deleted, on
 * destroy(), on process exit, and by the test runner's sweep of dead runs.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST_WORLD = fileURLToPath(new URL('./', import.meta.url));

export const HOSTS = {
  gw4: '198.18.0.1',
  client4: '198.18.0.2',
  dns4: '198.18.0.53',
  api4: '198.18.1.10',
  api4b: '198.18.1.11',
  meta4: '198.18.1.254',
  other4: '198.18.2.20',
  net3: '198.18.3.30',
  tun4: '198.19.200.10',
  gw6: '2001:db8::1',
  client6: '2001:db8::2',
  dns6: '2001:db8::53',
  api6: '2001:db8:1::10',
  other6: '2001:db8:2::20',
} as const;

/** Every address the world answers on. */
export const SERVER_ADDRS: string[] = Object.entries(HOSTS)
  .filter(([k]) => !k.startsWith('client'))
  .map(([, v]) => v);

export const TCP_PORTS = [22, 53, 80, 443, 853, 8080, 8443];
export const UDP_PORTS = [53, 123, 5000, 60500];
/** A TCP port whose server echoes and keeps the connection open (for tests of long-lived flows). */
export const ECHO_PORT = 9000;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ProbeResult {
  target: string;
  ok: boolean;
  ms: number;
  error?: string;
  reply?: string;
}

const live = new Set<World>();
process.on('exit', () => {
  for (const w of live) w.destroySync();
});

let counter = 0;

function run(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...rest] = argv;
    if (!cmd) return reject(new Error('empty argv'));
    const child = spawn(cmd, rest, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    // A command may exit before reading its input; that is not an error here.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and throws with its output when it fails. */
/** Stops a process with SIGTERM and waits for it to exit; nothing when it is not running. */
export async function stopChild(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exited;
}

/** Collects each line of a stream that parses as JSON (the daemon's log lines on stderr) into `into`. */
export function collectJsonLines<T>(stream: NodeJS.ReadableStream | null | undefined, into: T[]): void {
  let buf = '';
  stream?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        into.push(JSON.parse(line) as T);
      } catch {
        // Not a JSON line.
      }
    }
  });
}

export async function must(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export class World {
  readonly id: string;
  readonly client: string;
  readonly world: string;
  readonly tmp: string;
  readonly stateDir: string;
  private procs = new Set<ChildProcess>();
  private cgroups: string[] = [];
  private destroyed = false;

  private constructor() {
    this.id = `slt-${process.pid}-${++counter}`;
    this.client = `${this.id}-c`;
    this.world = `${this.id}-w`;
    this.tmp = mkdtempSync(join(tmpdir(), `${this.id}-`));
    this.stateDir = join(this.tmp, 'state');
  }

  /**
   * Builds the namespaces and starts the servers; with `dns`, a real DNS
   * server (NSD) answers on 198.18.0.53 and 2001:db8::53, serving
   * `dnsZone` (default: testZone()).
   */
  static async create(opts: { servers?: boolean; dns?: boolean; dnsZone?: string; links?: boolean } = {}): Promise<World> {
    const w = new World();
    live.add(w);
    try {
      await w.build(opts.links !== false);
      if (opts.servers !== false) await w.startServers(opts.dns ?? false);
      if (opts.dns) {
        const { startDnsServer } = await import('./dns-server.js');
        await startDnsServer(w, opts.dnsZone);
      }
    } catch (err) {
      await w.destroy();
      throw err;
    }
    return w;
  }

  /**
   * `links: false` leaves both namespaces with loopback only: no veth, so no
   * DAD solicitations or MLD reports that a test counting packets
   * would see at some random moment.
   */
  private async build(links: boolean): Promise<void> {
    const c = this.client;
    const s = this.world;
    const ip = (...a: string[]) => must(['ip', ...a]);
    await ip('netns', 'add', c);
    await ip('netns', 'add', s);
    await ip('-n', c, 'link', 'set', 'lo', 'up');
    await ip('-n', s, 'link', 'set', 'lo', 'up');
    mkdirSync(this.stateDir, { recursive: true });
    if (!links) return;
    await ip('link', 'add', 'eth0', 'netns', c, 'type', 'veth', 'peer', 'name', 'w0', 'netns', s);
    await ip('link', 'add', 'tun0', 'netns', c, 'type', 'veth', 'peer', 'name', 'w1', 'netns', s);
    for (const [ns, dev] of [[c, 'eth0'], [c, 'tun0'], [s, 'w0'], [s, 'w1']] as const) {
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
    // nodad: IPv6 addresses usable at once, without duplicate address detection.
    await ip('-n', c, 'addr', 'add', '198.18.0.2/24', 'dev', 'eth0');
    await ip('-n', c, 'addr', 'add', '2001:db8::2/64', 'dev', 'eth0', 'nodad');
    await ip('-n', c, 'addr', 'add', '198.19.0.2/24', 'dev', 'tun0');
    await ip('-n', s, 'addr', 'add', '198.18.0.1/24', 'dev', 'w0');
    await ip('-n', s, 'addr', 'add', '2001:db8::1/64', 'dev', 'w0', 'nodad');
    await ip('-n', s, 'addr', 'add', '198.19.0.1/24', 'dev', 'w1');
    for (const h of [HOSTS.dns4, HOSTS.api4, HOSTS.api4b, HOSTS.meta4, HOSTS.other4, HOSTS.net3, HOSTS.tun4]) {
      await ip('-n', s, 'addr', 'add', `${h}/32`, 'dev', 'lo');
    }
    for (const h of [HOSTS.dns6, HOSTS.api6, HOSTS.other6]) {
      await ip('-n', s, 'addr', 'add', `${h}/128`, 'dev', 'lo', 'nodad');
    }
    await ip('-n', c, 'route', 'add', 'default', 'via', HOSTS.gw4, 'dev', 'eth0');
    await ip('-n', c, '-6', 'route', 'add', 'default', 'via', HOSTS.gw6, 'dev', 'eth0');
    await ip('-n', c, 'route', 'add', '198.19.200.0/24', 'via', '198.19.0.1', 'dev', 'tun0');
  }

  private async startServers(dns: boolean): Promise<void> {
    // With a DNS server, port 53 belongs to it.
    const tcp = dns ? TCP_PORTS.filter((p) => p !== 53) : TCP_PORTS;
    const addrs = dns ? SERVER_ADDRS.filter((a) => a !== HOSTS.dns4 && a !== HOSTS.dns6) : SERVER_ADDRS;
    await this.spawnReady(this.world, [process.execPath, join(DIST_WORLD, 'servers.js'), '--tcp', tcp.join(','), '--udp', UDP_PORTS.join(','), '--addrs', addrs.join(','), '--echo', String(ECHO_PORT)]);
  }

  /** Starts a long-running process in a namespace and waits for "ready" on its stdout (`onSpawn` sees it first, to read what it says before that). */
  async spawnReady(ns: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; readyText?: string; timeoutMs?: number; onSpawn?: (child: ChildProcess) => void } = {}): Promise<ChildProcess> {
    const child = this.spawnIn(ns, argv, opts.env ? { env: opts.env } : {});
    opts.onSpawn?.(child);
    const ready = opts.readyText ?? 'ready';
    await new Promise<void>((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready: ${err}`)), opts.timeoutMs ?? 15_000);
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes(ready)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${argv.join(' ')} exited (${code}): ${err}`));
      });
    });
    return child;
  }

  /** `sluice daemon POLICY --metrics off` in the client namespace, once it says it is running (its stderr drained); killed on destroy. */
  startDaemon(policyFile: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
    return this.spawnReady(this.client, [process.execPath, join(ROOT, 'bin/sluice'), 'daemon', policyFile, '--metrics', 'off'], { env: this.env(env), readyText: 'sluice daemon: running' }).then((d) => {
      d.stderr?.resume();
      return d;
    });
  }

  /** Starts a process in a namespace (its stdin a pipe if asked); it is killed on destroy. */
  spawnIn(ns: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; stdin?: boolean } = {}): ChildProcess {
    const prefix = ['nsenter', `--net=/run/netns/${ns}`];
    if (opts.uid !== undefined) prefix.push(`--setuid=${opts.uid}`, `--setgid=${opts.uid}`);
    const child = spawn(prefix[0] as string, [...prefix.slice(1), '--', ...argv], { env: opts.env ?? process.env, stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: true });
    this.procs.add(child);
    child.on('exit', () => this.procs.delete(child));
    return child;
  }

  /** Makes a whole prefix local to the world namespace (AnyIP): TCP servers on :: answer every address in it. */
  async addLocalRange(cidr: string): Promise<void> {
    await must(['ip', '-n', this.world, 'route', 'add', 'local', cidr, 'dev', 'lo']);
  }

  /** Runs a command in a namespace (default: the client). */
  exec(argv: string[], opts: { ns?: string; uid?: number; input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
    const prefix = ['nsenter', `--net=/run/netns/${opts.ns ?? this.client}`];
    if (opts.cwd !== undefined) prefix.push(`--wd=${opts.cwd}`);
    if (opts.uid !== undefined) prefix.push(`--setuid=${opts.uid}`, `--setgid=${opts.uid}`);
    return run([...prefix, '--', ...argv], opts);
  }

  /** Environment for Sluice commands: this world's own state directory. */
  env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { ...process.env, SLUICE_STATE_DIR: this.stateDir, ...extra };
  }

  /** Runs `sluice ARGS` in the client namespace. */
  sluice(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return this.exec([process.execPath, join(ROOT, 'bin/sluice'), ...args], { env: this.env(opts.env) });
  }

  /** A call to this world's daemon over its control socket, made from the client namespace as the CLI would; the reply, parsed. */
  async control(method: string): Promise<unknown> {
    const r = await this.exec([
      process.execPath,
      '-e',
      `import(${JSON.stringify(join(ROOT, 'dist/src/runtime/control-server.js'))}).then(async (m) => console.log(JSON.stringify(await m.controlCall(${JSON.stringify(join(this.stateDir, 'control.sock'))}, ${JSON.stringify(method)}))))`,
    ]);
    if (r.code !== 0) throw new Error(`control call ${method} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  }

  /** `sluice ARGS --json`, parsed. */
  async sluiceJson<T = Record<string, unknown>>(args: string[]): Promise<{ code: number; json: T; stderr: string }> {
    const r = await this.sluice([...args, '--json']);
    let json: T;
    try {
      json = JSON.parse(r.stdout) as T;
    } catch {
      throw new Error(`sluice ${args.join(' ')} --json printed no JSON (${r.code}): ${r.stdout} ${r.stderr}`);
    }
    return { code: r.code, json, stderr: r.stderr };
  }

  /** Writes a policy file into this world's directory and returns its path. */
  policy(yaml: string, name = 'policy.yaml'): string {
    const p = join(this.tmp, name);
    writeFileSync(p, yaml);
    return p;
  }

  /** Tries connections from the client namespace. */
  async probe(targets: string[], opts: { uid?: number; cgroup?: string; timeoutMs?: number } = {}): Promise<ProbeResult[]> {
    const argv = [process.execPath, join(DIST_WORLD, 'probe.js'), '--timeout', String(opts.timeoutMs ?? 1500)];
    if (opts.cgroup) argv.push('--cgroup', opts.cgroup);
    const r = await this.exec([...argv, ...targets], opts.uid !== undefined ? { uid: opts.uid } : {});
    if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
    return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProbeResult);
  }

  /** Connection outcome per target, as a map target -> ok. */
  async reach(targets: string[], opts: { uid?: number; cgroup?: string; timeoutMs?: number } = {}): Promise<Record<string, boolean>> {
    const out: Record<string, boolean> = {};
    for (const r of await this.probe(targets, opts)) out[r.target] = r.ok;
    return out;
  }

  /** nft in the client namespace: an independent view of the kernel state. */
  nft(args: string[], input?: string): Promise<string> {
    return this.exec(['nft', ...args], input !== undefined ? { input } : {}).then((r) => {
      if (r.code !== 0) throw new Error(`nft ${args.join(' ')} failed: ${r.stderr}`);
      return r.stdout;
    });
  }

  /** Creates a cgroup v2 directory (removed on destroy) and returns its absolute path. */
  makeCgroup(root: string, relPath: string): string {
    const dir = join(root, relPath);
    mkdirSync(dir, { recursive: true });
    const parts = relPath.split('/').filter(Boolean);
    for (let i = parts.length; i > 0; i--) this.cgroups.push(join(root, ...parts.slice(0, i)));
    return dir;
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }

  /** Synchronous teardown, safe to call twice and from an exit handler. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) {
      try {
        if (p.pid) process.kill(-p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // Processes that outlived their group (e.g. rollback timers) still hold the namespace.
    for (const ns of [this.client, this.world]) {
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
      for (const pid of pids.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      spawnSync('ip', ['netns', 'del', ns]);
    }
    for (const dir of this.cgroups) {
      try {
        if (existsSync(join(dir, 'cgroup.procs'))) {
          // Move stragglers to the root so the directory can be removed.
          const procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
          for (const pid of procs) {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              /* gone */
            }
          }
        }
        rmdirSync(dir);
      } catch {
        /* best effort; an empty cgroup is harmless */
      }
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }
}
