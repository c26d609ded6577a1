import { writeFileSync } from 'node:fs';
import { SystemError, UsageError } from '../../errors.js';
import { EXIT } from '../exit.js';
import type { OptionValue } from '../spec.js';

/**
 * `sluice run [--allow DEST[:PORT[/PROTO]]]... [--policy FILE] -- COMMAND...`
 * and `sluice run --cleanup`. Loads only what a run needs: no Context, no
 * state directory, no event store (a run touches none of them).
 */

function list(v: OptionValue | undefined): string[] {
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** The user the command runs as: the one who called sudo, else the caller. */
function commandUser(): { uid: number; gid: number } | undefined {
  const uid = process.env.SUDO_UID;
  const gid = process.env.SUDO_GID;
  if (uid === undefined || gid === undefined || !/^[0-9]{1,10}$/.test(uid) || !/^[0-9]{1,10}$/.test(gid)) return undefined;
  if (Number(uid) === 0) return undefined;
  return { uid: Number(uid), gid: Number(gid) };
}

/** SLUICE_RUN_TRACE=1: the end of a run on stderr, in ms since the process started (run.ts traces the rest). */
function trace(what: string): void {
  if (process.env.SLUICE_RUN_TRACE === '1') process.stderr.write(`sluice run: ${performance.now().toFixed(1)} ms after the process: ${what}\n`);
}

function writeOut(file: string, text: string): void {
  try {
    writeFileSync(file, text, { mode: 0o644 });
  } catch (err) {
    throw new SystemError('EREPORT', `Cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export async function run(opts: { json: boolean; values: Record<string, OptionValue | undefined>; rest: string[] }): Promise<number> {
  const v = opts.values;
  const flag = (k: string) => v[k] === true;
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  if (process.getuid?.() !== 0) {
    throw new SystemError('ENOTROOT', 'sluice run needs root (it makes a network namespace and nftables rules); nothing was run. Try: sudo sluice run ...');
  }
  const { KernelNetfilter } = await import('../../netfilter/kernel-netfilter.js');
  if (flag('cleanup')) {
    if (opts.rest.length > 0) throw new UsageError('`sluice run --cleanup` runs no command');
    const { cleanupRuns } = await import('../../run/run.js');
    const nf = new KernelNetfilter();
    try {
      const { removed, failed } = cleanupRuns(nf);
      if (opts.json) process.stdout.write(`${JSON.stringify({ removed, failed }, null, 2)}\n`);
      else {
        process.stdout.write(removed.length === 0 ? 'sluice run: nothing left behind\n' : removed.map((r) => `removed run ${r.id} (pid ${r.pid}, started ${r.startedAt}): ${r.netns}, ${r.hostIf}, ${r.table}\n`).join(''));
        for (const f of failed) process.stderr.write(`sluice run: could not remove ${f}\n`);
      }
      return failed.length > 0 ? EXIT.failed : EXIT.ok;
    } finally {
      nf.close();
    }
  }
  if (opts.rest.length === 0) throw new UsageError('`sluice run` needs a command after `--`: sluice run [--allow DEST]... -- COMMAND [ARG...]');

  const [{ runPolicy, parseUpstreams }, { startProbes }] = await Promise.all([import('../../run/run-policy.js'), import('../../run/probes.js')]);
  let file;
  const policyFile = str('policy');
  if (policyFile !== undefined) {
    const [{ loadPolicyFile }, { lookupUsers }] = await Promise.all([import('../../policy/load-policy.js'), import('../../system/users.js')]);
    file = loadPolicyFile(policyFile, { lookupUsers });
  }
  const policy = runPolicy(file, list(v.allow), flag('audit'));
  let upstreams = parseUpstreams(list(v['dns-upstream']));
  if (upstreams.length === 0) {
    const { resolvConfUpstreams } = await import('../../system/resolv-conf.js');
    // The host's own resolver, a local stub included: the guard runs on the host and can reach it.
    upstreams = resolvConfUpstreams(undefined, { loopback: true });
  }
  if (upstreams.length === 0) throw new SystemError('ENOUPSTREAM', 'No resolver in /etc/resolv.conf for the run\'s DNS guard; give one with --dns-upstream ADDR. Nothing was run.');

  // The attribution probes take 100 ms or more to load (a thread's start, BTF, the verifier): started
  // once the run is accepted, they load while this thread loads the run's modules and makes its
  // network (the command still waits until their connect hook is on its cgroup).
  const probes = startProbes();
  let nf;
  let runConfined;
  try {
    ({ runConfined } = await import('../../run/run.js'));
    nf = new KernelNetfilter();
  } catch (err) {
    await probes.close();
    throw err;
  }
  // What only the end needs (the report's text, the suggested policy) is loaded while the command runs.
  let reportModule: Promise<typeof import('../../run/run-report.js')> | undefined;
  const loadReport = () => (reportModule ??= import('../../run/run-report.js'));
  let result;
  try {
    const user = commandUser();
    result = await runConfined(nf, {
      policy,
      argv: opts.rest,
      upstreams,
      ipv6: !flag('no-ipv6'),
      ...(user ? { user } : {}),
      notice: (t) => process.stderr.write(`sluice run: ${t}\n`),
      probes,
      onStarted: () => void loadReport().catch(() => undefined),
    });
  } finally {
    trace('run done');
    nf.close();
  }
  trace('netlink closed');
  const { report } = result;
  const { formatRunReport, formatRunMarkdown, suggestRunPolicy } = await loadReport();
  // stdout is the command's: the report goes to stderr (and to the files asked for).
  process.stderr.write(`${opts.json ? JSON.stringify(report, null, 2) : formatRunReport(report)}\n`);
  const reportFile = str('report');
  if (reportFile !== undefined) writeOut(reportFile, `${JSON.stringify(report, null, 2)}\n`);
  const md = str('report-md');
  if (md !== undefined) writeOut(md, formatRunMarkdown(report));
  if (flag('suggest')) process.stderr.write(`\n${suggestRunPolicy(report)}`);
  trace('report written');
  if (process.env.SLUICE_RUN_TRACE === '1') process.once('exit', () => trace('exit'));
  const blocked = report.summary.attemptsBlocked > 0 || report.summary.namesBlocked > 0;
  if (flag('fail-on-block') && blocked && result.exitCode === 0) return EXIT.failed;
  return result.exitCode;
}
