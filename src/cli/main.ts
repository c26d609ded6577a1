import { readFileSync, statSync } from 'node:fs';
import { NetlinkError, PolicyError, SluiceError, UsageError, formatIssue } from '../errors.js';
import type { Context } from './context.js';
import { EXIT } from './exit.js';
import { guardOutput } from './output.js';
import { parseCommandLine, usage } from './spec.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * `sluice run`'s modules as one file (scripts/bundle-run.mjs: ~25 ms less of
 * start-up) while it is newer than the compiled command it was made from
 * (tsc rewrites that on every build); else the compiled files.
 */
function runModule(): string {
  try {
    if (statSync(new URL('./run.bundle.js', import.meta.url)).mtimeMs >= statSync(new URL('./commands/run.js', import.meta.url)).mtimeMs) return './run.bundle.js';
  } catch {
    /* no bundle: the files */
  }
  return './commands/run.js';
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  // State, snapshots, the event database: readable by the owner only.
  process.umask(0o077);
  // A reader that went away (`| head`) ends the output, not the command (output.ts).
  guardOutput();
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    return report(err, argv.includes('--json'));
  }
  const { name: command, args, values } = parsed;
  if (values.version) {
    process.stdout.write(`sluice ${version()}\n`);
    return EXIT.ok;
  }
  if (values.help || !command) {
    process.stdout.write(`${usage()}\n`);
    return command || values.help ? EXIT.ok : EXIT.usage;
  }
  // Values as declared in spec.ts: strings, booleans, and integers already range-checked.
  const str = (k: string) => values[k] as string | undefined;
  const int = (k: string) => values[k] as number | undefined;
  const flag = (k: string) => values[k] === true;
  const opt = <T>(k: string, v: T | undefined) => (v === undefined ? {} : { [k]: v });
  if (command === 'run') {
    // `sluice run` loads only what it uses (no Context: its policy, kernel access and output are its own), so it starts fast.
    try {
      const command = (await import(runModule())) as typeof import('./commands/run.js');
      return await command.run({ json: flag('json'), values, rest: parsed.rest ?? [] });
    } catch (err) {
      return report(err, flag('json'));
    }
  }
  // Loaded after --version and --help, which need none of it.
  const { Context: ContextClass } = await import('./context.js');
  const ctx: Context = new ContextClass({ json: flag('json') });
  const onePolicy = () => {
    if (args[0] !== undefined && str('policy') !== undefined) throw new UsageError(`\`sluice ${command}\` takes one policy, as POLICY or --policy, not both: ${JSON.stringify(args[0])}, ${JSON.stringify(str('policy'))}`);
    return opt('policy', args[0] ?? str('policy'));
  };
  try {
    let code: number;
    // Each command loads only its own modules: `sluice apply` does not pay for the daemon's.
    switch (command) {
      case 'check':
        code = (await import('./commands/check.js')).check(ctx, onePolicy());
        break;
      case 'plan':
        code = (await import('./commands/plan.js')).plan(ctx, { ...onePolicy(), full: flag('full') });
        break;
      case 'apply':
        code = await (await import('./commands/apply.js')).apply(ctx, { ...onePolicy(), ...opt('confirm', int('confirm')) });
        break;
      case 'confirm':
        code = (await import('./commands/confirm.js')).confirm(ctx);
        break;
      case 'explain':
        code = (await import('./commands/explain.js')).explain(ctx, {
          positionals: args,
          ...opt('user', str('user')),
          ...opt('service', str('service')),
          ...opt('iface', str('iface')),
          ...opt('sport', int('sport')),
          ...opt('icmpType', int('icmp-type')),
          ...opt('policy', str('policy')),
        });
        break;
      case 'dashboard':
        code = (await import('./commands/dashboard.js')).dashboard(ctx);
        break;
      case 'status':
        code = (await import('./commands/status.js')).status(ctx);
        break;
      case 'off':
        code = await (await import('./commands/off.js')).off(ctx);
        break;
      case 'restore':
        code = await (await import('./commands/restore.js')).restore(ctx);
        break;
      case 'daemon':
        code = await (await import('./commands/daemon.js')).daemon(ctx, { ...onePolicy(), ...opt('metrics', str('metrics')), ...opt('metricsTokenFile', str('metrics-token-file')) });
        ctx.close();
        // Stopped: exit now rather than when the last stray handle lets the event loop drain.
        process.exit(code);
      case 'dns':
        code = await (await import('./commands/dns.js')).dns(ctx, { follow: flag('follow'), ...opt('limit', int('limit')) });
        break;
      case 'alerts':
        code = await (await import('./commands/alerts.js')).alerts(ctx, args[0]);
        break;
      case 'log':
        code = await (await import('./commands/log.js')).log(ctx, {
          follow: flag('follow'),
          ...opt('since', str('since')),
          ...opt('verdict', str('verdict')),
          ...opt('process', str('process')),
          ...opt('rule', str('rule')),
          ...opt('limit', int('limit')),
        });
        break;
      case 'connections':
        code = await (await import('./commands/connections.js')).connections(ctx);
        break;
      case 'top':
        code = await (await import('./commands/top.js')).top(ctx, opt('interval', int('interval')));
        break;
      case 'stats':
        code = await (await import('./commands/stats.js')).stats(ctx, { ...opt('since', str('since')), ...opt('limit', int('limit')) });
        break;
      case 'suggest':
        code = await (await import('./commands/suggest.js')).suggest(ctx, { ...onePolicy(), ...opt('since', str('since')), ...opt('out', str('out')), ...opt('check', str('check')), ...opt('stableDays', int('stable-days')) });
        break;
      case '_apply-candidate':
        code = await (await import('./commands/apply-candidate.js')).applyCandidate(ctx, args[0] ?? '');
        break;
      case '_rollback':
        code = await (await import('./commands/confirm.js')).rollbackTimer(ctx, args[0] ?? '');
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
