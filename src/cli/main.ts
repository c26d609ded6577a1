import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { NetlinkError, PolicyError, SluiceError, UsageError, formatIssue } from '../errors.js';
import { apply } from './commands/apply.js';
import { check } from './commands/check.js';
import { confirm, rollbackTimer } from './commands/confirm.js';
import { connections } from './commands/connections.js';
import { daemon } from './commands/daemon.js';
import { dns } from './commands/dns.js';
import { explain } from './commands/explain.js';
import { log } from './commands/log.js';
import { off } from './commands/off.js';
import { plan } from './commands/plan.js';
import { restore } from './commands/restore.js';
import { stats } from './commands/stats.js';
import { status } from './commands/status.js';
import { top } from './commands/top.js';
import { Context, EXIT } from './context.js';

const USAGE = `Usage: sluice COMMAND [options]

Policy and ruleset:
  check   [POLICY]                    validate; every error as FILE:LINE:COL: message
  plan    [POLICY] [--full]           the ruleset that would be applied, and its diff against the live table
  apply   [POLICY] [--confirm SECS]   apply atomically; with --confirm, roll back unless confirmed in time
  confirm                             keep a policy applied with --confirm
  explain DEST [PORT[/PROTO]] [--user U] [--service UNIT] [--iface IF] [POLICY]
                                      the verdict for a destination, the rule that decides, and why
  status                              mode, policy hash, live or drifted, counters per rule
  off                                 remove Sluice's table: outbound is open again (and stays so across restarts)
  restore                             put the last applied ruleset back into the kernel (run at boot
                                      by sluice-restore.service, before the network is up)

Daemon:
  daemon  [POLICY] [--metrics unix|HOST:PORT|off] [--metrics-token-file FILE]
                                      run the DNS guard, event collector and metrics on the applied
                                      policy until SIGTERM; POLICY is applied only if this host never
                                      applied one; SIGHUP re-reads the applied policy's file.
                                      Metrics: GET /metrics on the root-only socket STATE/metrics.sock
                                      (curl --unix-socket STATE/metrics.sock http://localhost/metrics);
                                      with HOST:PORT (loopback) also over TCP, with the bearer token
                                      in STATE/metrics.token (generated) or FILE (root-only)
  dns     [--follow] [--limit N]      recent DNS queries: name, type, answer, verdict, rule, who asked

Monitoring:
  log [--follow] [--since 1h] [--verdict blocked|would-block|allowed] [--process NAME] [--rule R] [--limit N]
                                      blocked, would-block and allowed events with their process
  connections                         live outbound connections: process, pid, user, service, addresses, rule
  top [--interval S]                  live outbound activity by process and destination (one snapshot when piped)
  stats [--since 24h] [--limit N]     counts by verdict, rule, destination and process; kernel counters; losses

Options:
  --json        machine-readable output (every command)
  -h, --help    this help
  --version     print the version

POLICY defaults to $SLUICE_POLICY or /etc/sluice/policy.yaml; state lives in
$SLUICE_STATE_DIR or /var/lib/sluice. Exit status: 0 ok, 1 failed, 2 usage,
3 not live (status: drifted, missing or pending past its deadline).`;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  // State, snapshots, the event database: readable by the owner only.
  process.umask(0o077);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
        confirm: { type: 'string' },
        full: { type: 'boolean' },
        user: { type: 'string' },
        service: { type: 'string' },
        iface: { type: 'string' },
        policy: { type: 'string' },
        metrics: { type: 'string' },
        'metrics-token-file': { type: 'string' },
        follow: { type: 'boolean', short: 'f' },
        limit: { type: 'string' },
        since: { type: 'string' },
        verdict: { type: 'string' },
        process: { type: 'string' },
        rule: { type: 'string' },
        interval: { type: 'string' },
      },
    });
  } catch (err) {
    process.stderr.write(`sluice: ${(err as Error).message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;
  if (values.version) {
    process.stdout.write(`sluice ${version()}\n`);
    return EXIT.ok;
  }
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return command || values.help ? EXIT.ok : EXIT.usage;
  }
  const ctx = new Context({ json: values.json ?? false });
  const onePolicy = () => {
    if (args.length > 1) throw new UsageError(`${command} takes at most one policy file, got ${args.length}`);
    const p = args[0] ?? values.policy;
    return p === undefined ? {} : { policy: p };
  };
  const noArgs = () => {
    if (args.length > 0) throw new UsageError(`${command} takes no arguments`);
  };
  try {
    let code: number;
    switch (command) {
      case 'check':
        code = check(ctx, onePolicy());
        break;
      case 'plan':
        code = plan(ctx, { ...onePolicy(), full: values.full ?? false });
        break;
      case 'apply':
        code = await apply(ctx, { ...onePolicy(), ...(values.confirm !== undefined ? { confirm: values.confirm } : {}) });
        break;
      case 'confirm':
        noArgs();
        code = confirm(ctx);
        break;
      case 'explain':
        code = explain(ctx, {
          positionals: args,
          ...(values.user !== undefined ? { user: values.user } : {}),
          ...(values.service !== undefined ? { service: values.service } : {}),
          ...(values.iface !== undefined ? { iface: values.iface } : {}),
          ...(values.policy !== undefined ? { policy: values.policy } : {}),
        });
        break;
      case 'status':
        noArgs();
        code = status(ctx);
        break;
      case 'off':
        noArgs();
        code = await off(ctx);
        break;
      case 'restore':
        noArgs();
        code = restore(ctx);
        break;
      case 'daemon':
        code = await daemon(ctx, {
          ...onePolicy(),
          ...(values.metrics !== undefined ? { metrics: values.metrics } : {}),
          ...(values['metrics-token-file'] !== undefined ? { metricsTokenFile: values['metrics-token-file'] } : {}),
        });
        ctx.close();
        // Stopped: exit now rather than when the last stray handle lets the event loop drain.
        process.exit(code);
      case 'dns':
        noArgs();
        code = await dns(ctx, { follow: values.follow ?? false, ...(values.limit !== undefined ? { limit: values.limit } : {}) });
        break;
      case 'log':
        noArgs();
        code = await log(ctx, {
          follow: values.follow ?? false,
          ...(values.since !== undefined ? { since: values.since } : {}),
          ...(values.verdict !== undefined ? { verdict: values.verdict } : {}),
          ...(values.process !== undefined ? { process: values.process } : {}),
          ...(values.rule !== undefined ? { rule: values.rule } : {}),
          ...(values.limit !== undefined ? { limit: values.limit } : {}),
        });
        break;
      case 'connections':
        noArgs();
        code = connections(ctx);
        break;
      case 'top':
        noArgs();
        code = await top(ctx, values.interval !== undefined ? { interval: values.interval } : {});
        break;
      case 'stats':
        noArgs();
        code = stats(ctx, { ...(values.since !== undefined ? { since: values.since } : {}), ...(values.limit !== undefined ? { limit: values.limit } : {}) });
        break;
      case '_rollback':
        code = await rollbackTimer(ctx, args[0] ?? '');
        break;
      default:
        throw new UsageError(`Unknown command: ${JSON.stringify(command)} (see sluice --help)`);
    }
    ctx.flush();
    return code;
  } catch (err) {
    ctx.flush();
    return report(err, ctx.json);
  } finally {
    ctx.close();
  }
}

function report(err: unknown, json: boolean): number {
  const code = err instanceof UsageError ? EXIT.usage : EXIT.failed;
  if (json) {
    const body = err instanceof SluiceError ? err.toJSON() : { code: 'EINTERNAL', message: String((err as Error)?.message ?? err) };
    process.stdout.write(`${JSON.stringify({ error: body }, null, 2)}\n`);
  }
  if (err instanceof PolicyError) {
    for (const i of err.issues) process.stderr.write(`${formatIssue(i)}\n`);
    const n = err.issues.filter((i) => i.severity === 'error').length;
    process.stderr.write(`sluice: ${n} error${n === 1 ? '' : 's'} in the policy: nothing applied\n`);
  } else if (err instanceof NetlinkError && err.errno === 1) {
    process.stderr.write(`sluice: ${err.message}\n`);
  } else if (err instanceof SluiceError) {
    process.stderr.write(`sluice: ${err.message}\n`);
  } else {
    process.stderr.write(`sluice: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  return code;
}

// Run when executed directly (bin/sluice imports this module and calls main).
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sluice: internal error: ${String(err)}\n`);
      process.exitCode = EXIT.failed;
    },
  );
}
