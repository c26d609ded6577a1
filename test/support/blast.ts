/**
 * bench/tools/blast.c (the blocked-traffic generator), compiled into a fresh
 * directory anyone may run from (uid 65534 runs it; the world's directory is
 * root's alone); its path. The caller removes dirname(path). Benches and
 * integration tests share it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../world/world.js';

export function compileBlast(): string {
  const bin = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  chmodSync(bin, 0o755);
  const blast = join(bin, 'blast');
  const cc = spawnSync('cc', ['-O2', '-o', blast, join(ROOT, 'bench/tools/blast.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cannot compile blast.c: ${cc.stderr}`);
  return blast;
}
