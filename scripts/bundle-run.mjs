#!/usr/bin/env node
// Writes dist/src/cli/run.bundle.js: everything `sluice run` loads, in one
// file. `sluice run` starts a command under its own policy, and its start-up
// is time a user waits for every confined command (issue 13: under 150 ms
// over the command alone); as ~60 modules, resolving, reading and compiling
// them one by one took ~50 ms of it.
//
// What stays files, imported from the bundle by paths rewritten relative to
// it: every module the CLI's entry (main.js) imports itself, so that there is
// one instance of each (an error class thrown on one side and tested with
// instanceof on the other is the same class), and the policy loader, which a
// run loads only for --policy (zod and yaml: ~650 kB an --allow run never
// parses). The bundle sits beside main.js, at the same depth under dist/src
// as every module it holds, so the paths they build from import.meta.url
// (the native addon, the BPF object, the shipped lists) resolve to the same
// files from it.
//
// main.js loads the bundle only while it is newer than commands/run.js (tsc
// rewrites that on every build): a build that skipped this step runs the
// compiled files, never a stale bundle.
import { build } from 'esbuild';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli');
const entry = join(cli, 'main.js');
const runCommand = join(cli, 'commands', 'run.js');
/** Loaded by `sluice run` only for --policy. */
const policyOnly = new Set([join(root, 'dist', 'src', 'policy', 'load-policy.js'), join(root, 'dist', 'src', 'system', 'users.js')]);
const relativeToCli = (target) => {
  const rel = relative(cli, target);
  return rel.startsWith('.') ? rel : `./${rel}`;
};

// The modules main.js loads before it knows the command: its static imports, all the way down.
const dynamicImportsOut = {
  name: 'dynamic-imports-out',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) => (a.kind === 'dynamic-import' ? { path: a.path, external: true } : undefined));
  },
};
const entryPass = await build({ entryPoints: [entry], bundle: true, write: false, platform: 'node', format: 'esm', packages: 'external', plugins: [dynamicImportsOut], metafile: true, logLevel: 'warning' });
const shared = new Set(Object.keys(entryPass.metafile.inputs).map((f) => resolve(root, f)));
if (!shared.has(entry) || shared.has(runCommand)) {
  console.error('bundle-run: main.js must load commands/run.js dynamically only');
  process.exit(1);
}

const stayFiles = {
  name: 'shared-modules-stay-files',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      const target = resolve(dirname(a.importer), a.path);
      if (shared.has(target) || (a.kind === 'dynamic-import' && policyOnly.has(target))) return { path: relativeToCli(target), external: true };
      return undefined;
    });
  },
};

const result = await build({
  entryPoints: [runCommand],
  outfile: join(cli, 'run.bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Node's own modules, and any package, stay imports.
  packages: 'external',
  plugins: [stayFiles],
  metafile: true,
  logLevel: 'warning',
  banner: { js: '// sluice: `sluice run`, bundled by scripts/bundle-run.mjs from the compiled files beside it (src/cli/commands/run.ts and what it loads).' },
});
const inputs = Object.keys(result.metafile.inputs).map((f) => resolve(root, f));
const wrong = inputs.filter((f) => shared.has(f) || policyOnly.has(f) || f.endsWith('/vendor/zod.js') || f.endsWith('/vendor/yaml.js'));
if (wrong.length > 0) {
  console.error(`bundle-run: in the bundle but must stay files: ${wrong.join(', ')}`);
  process.exit(1);
}
