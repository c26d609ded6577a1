#!/usr/bin/env node
// Replaces the compiled re-exports in dist/src/vendor/ (zod.js, yaml.js) with
// the packages bundled into them, one file each (see src/vendor/zod.ts).
// Every command that reads a policy loads zod and yaml: as packages they are
// ~170 files to resolve and compile, about 0.2 s of CPU per command on this
// machine's cores; bundled, two. zod's locales (error messages in 50
// languages, only reachable through z.locales, which Sluice does not call)
// are left out; its English messages are in the bundle.
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'dist', 'src', 'vendor');

const noLocales = {
  name: 'zod-without-locales',
  setup(b) {
    b.onResolve({ filter: /\/locales\/index\.js$/ }, (a) => (a.importer.includes('/node_modules/zod/') ? { path: 'zod-locales', namespace: 'sluice-empty' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'sluice-empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

for (const name of ['zod', 'yaml']) {
  // tsc's source map is of the re-export, not of the bundle.
  rmSync(join(dir, `${name}.js.map`), { force: true });
  const file = join(dir, `${name}.js`);
  const text = readFileSync(file, 'utf8');
  // Already bundled (tsc did not re-emit it): nothing to do.
  if (text.startsWith('// sluice: bundled')) continue;
  await build({
    entryPoints: [file],
    outfile: file,
    allowOverwrite: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // yaml's package is CommonJS for Node: its require() calls need a require in an ES module.
    banner: { js: "// sluice: bundled by scripts/bundle-vendor.mjs\nimport { createRequire as sluiceCreateRequire } from 'node:module';\nconst require = sluiceCreateRequire(import.meta.url);" },
    plugins: [noLocales],
    legalComments: 'inline',
    logLevel: 'warning',
  });
}
