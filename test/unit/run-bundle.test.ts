/**
 * Unit: `sluice run`'s bundle (scripts/bundle-run.mjs), as the build leaves
 * it. It must hold the run's modules and none of the CLI entry's (one
 * instance of each error class: main.ts tells a usage error from an internal
 * one with instanceof), nor the policy loader an --allow run never needs;
 * and the CLI must take it while it is newer than the compiled command, and
 * the compiled files once it is older (a build that skipped the bundle).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../world/world.js';

const CLI = join(ROOT, 'dist', 'src', 'cli');
const BUNDLE = join(CLI, 'run.bundle.js');

describe('unit: the run bundle', () => {
  it('is newer than the compiled command it was made from, so the CLI takes it', () => {
    assert.ok(statSync(BUNDLE).mtimeMs >= statSync(join(CLI, 'commands', 'run.js')).mtimeMs, 'npm run build writes the bundle after tsc');
  });

  it("holds the run's modules, imports the entry's shared modules (errors, exit) as files, and leaves the policy loader out", () => {
    const text = readFileSync(BUNDLE, 'utf8');
    // The run's own code is in it.
    assert.match(text, /async function runConfined\(/);
    assert.match(text, /\bKernelNetfilter = class\b/);
    // One SluiceError in the process: the bundle imports the compiled errors module, it does not define its classes.
    assert.doesNotMatch(text, /class SluiceError\b|class UsageError\b|class NetlinkError\b/);
    assert.match(text, /from "\.\.\/errors\.js"/);
    // --policy's loader is loaded from its files when asked for, not parsed by every run.
    assert.match(text, /import\("\.\.\/policy\/load-policy\.js"\)/);
    assert.doesNotMatch(text, /\bZodError\b|class Composer\b/);
  });

  it('a copy of the CLI whose bundle is older than its compiled command runs the compiled files, and with a fresh bundle the bundle', () => {
    // A throwaway copy of dist/src (the real one is shared with tests running beside this one).
    const dir = mkdtempSync(join(tmpdir(), 'sluice-bundle-'));
    try {
      cpSync(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
      const cli = join(dir, 'dist', 'src', 'cli');
      // Mark each side so that which one ran shows: an --allow that is refused names the module that refused it.
      const mark = (file: string, word: string) => {
        const p = join(cli, file);
        const t = readFileSync(p, 'utf8');
        const patched = t.replace(/^(export )?async function run\(opts\) \{$/m, (line) => `${line}\n    process.stderr.write('ran:${word}\\n');`);
        assert.notEqual(patched, t, `${file} has run()`);
        writeFileSync(p, patched);
      };
      mark('run.bundle.js', 'bundle');
      mark(join('commands', 'run.js'), 'files');
      const runWith = () => spawnSync(process.execPath, [join(cli, 'main.js'), 'run', '--allow', '198.18.0.0/33', '--', 'true'], { encoding: 'utf8' });
      const now = Date.now() / 1000;
      utimesSync(join(cli, 'commands', 'run.js'), now - 10, now - 10);
      utimesSync(join(cli, 'run.bundle.js'), now, now);
      const fresh = runWith();
      assert.match(fresh.stderr, /ran:bundle/, fresh.stderr);
      utimesSync(join(cli, 'run.bundle.js'), now - 20, now - 20);
      const stale = runWith();
      assert.match(stale.stderr, /ran:files/, stale.stderr);
      // Either way the refusal is a usage error (exit 2, not an internal error): one UsageError class.
      for (const r of [fresh, stale]) {
        if (process.getuid?.() === 0) {
          assert.equal(r.status, 2, r.stderr);
          assert.doesNotMatch(r.stderr, /internal error/);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
