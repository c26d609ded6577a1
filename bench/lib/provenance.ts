/**
 * Where a benchmark's numbers come from: the commit they measured (and
 * whether the working tree differed from it), the command, the machine's
 * kernel and cores. Every report carries it, so a figure quoted in the README
 * can be traced to its stored output under bench/results/.
 */
import { spawnSync } from 'node:child_process';
import { cpus, release } from 'node:os';
import { ROOT } from '../../test/world/world.js';

export interface Provenance {
  commit: string | null;
  /** The sources (tracked or new) differed from the commit when the run started. */
  dirty: boolean;
  command: string;
  kernel: string;
  cpus: number;
  node: string;
}

export function provenance(command: string): Provenance {
  const git = (args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const rev = git(['rev-parse', 'HEAD']);
  // Untracked files count too: a new source file changes what was measured.
  // (Benchmark output, bench/out and bench/results, is not a source.)
  const status = git(['status', '--porcelain', '--', 'src', 'bench', 'native', 'test', 'package.json', 'binding.gyp', ':(exclude)bench/out', ':(exclude)bench/results']);
  return {
    commit: rev.status === 0 ? rev.stdout.trim() : null,
    dirty: status.status !== 0 || status.stdout.trim() !== '',
    command,
    kernel: release(),
    cpus: cpus().length,
    node: process.version,
  };
}
