/**
 * The build bundles zod and yaml into dist/src/vendor/ (scripts/bundle-vendor.mjs):
 * each a single module with nothing left to resolve, so a command that reads a
 * policy does not load ~170 files. A build that skipped the step would still
 * work, only slower to start: these tests are what notices.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../support/fixtures.js';
import { z } from '../../src/vendor/zod.js';
import { parseDocument } from '../../src/vendor/yaml.js';

/** The module specifiers a compiled file imports, static or dynamic. */
function imports(text: string): string[] {
  return [...text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)].map((m) => (m[1] ?? m[2]) as string);
}

describe('unit: vendored packages', () => {
  for (const name of ['zod', 'yaml']) {
    it(`dist/src/vendor/${name}.js is one bundled module that imports only Node's own`, () => {
      const text = readFileSync(join(ROOT, 'dist', 'src', 'vendor', `${name}.js`), 'utf8');
      assert.ok(text.startsWith('// sluice: bundled'), `${name}.js is not the bundle: did the build run scripts/bundle-vendor.mjs?`);
      assert.deepEqual(imports(text).filter((s) => !s.startsWith('node:')), []);
    });
  }

  it('the check sees an import of the package (so a pass means something)', () => {
    assert.deepEqual(imports("export { z } from 'zod';\nconst m = await import('yaml');\nimport { createRequire } from 'node:module';"), ['zod', 'yaml', 'node:module']);
  });

  it("zod keeps its English messages without the locales", () => {
    const r = z.strictObject({ a: z.string() }).safeParse({ a: 1, b: 2 });
    assert.equal(r.success, false);
    const messages = r.error?.issues.map((i) => i.message).sort();
    assert.deepEqual(messages, ['Invalid input: expected string, received number', 'Unrecognized key: "b"']);
  });

  it('yaml parses with positions, as the policy loader needs', () => {
    const doc = parseDocument('rules:\n  - name: a\n', { keepSourceTokens: true });
    assert.deepEqual(doc.toJS(), { rules: [{ name: 'a' }] });
    assert.equal(doc.errors.length, 0);
  });
});
