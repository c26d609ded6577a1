/**
 * Golden files: policy in (test/golden/NN-*.yaml), ruleset out (NN-*.nft, in
 * nft syntax). One per construct. Regenerate after an intended change with
 * UPDATE_GOLDEN=1 and review the diff like code.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { renderRuleset } from '../../src/compile/render-nft.js';
import { lineDiff } from '../../src/netfilter/compare-ruleset.js';
import { compileFrom, GOLDEN_DIR, readGolden } from '../support/fixtures.js';

const cases = readdirSync(GOLDEN_DIR).filter((f) => /^\d\d-.*\.yaml$/.test(f));

describe('unit: compiler golden files', () => {
  it('there is a golden case for every construct', () => {
    assert.ok(cases.length >= 11, `expected at least 11 golden policies, found ${cases.length}`);
  });

  for (const yamlFile of cases) {
    const nftFile = yamlFile.replace(/\.yaml$/, '.nft');
    it(`${yamlFile} compiles to ${nftFile}`, () => {
      const { ruleset, warnings } = compileFrom(readGolden(yamlFile), yamlFile);
      const warningText = warnings.map((w) => `# warning: ${w}\n`).join('');
      const actual = `${warningText}${renderRuleset(ruleset)}`;
      const path = join(GOLDEN_DIR, nftFile);
      // Writing a golden file never passes: UPDATE_GOLDEN=1 in CI (or a missing file) cannot turn a
      // changed ruleset green; the change is reviewed and the run repeated without it.
      const expected = existsSync(path) ? readGolden(nftFile) : null;
      if (actual !== expected && (process.env.UPDATE_GOLDEN === '1' || expected === null)) {
        writeFileSync(path, actual);
        assert.fail(`wrote ${expected === null ? 'missing' : 'changed'} golden file ${nftFile}; review the diff and run again without UPDATE_GOLDEN`);
      }
      if (expected === null) return;
      if (actual !== expected) {
        assert.fail(`${nftFile} differs (- expected, + actual):\n${lineDiff(expected.split('\n'), actual.split('\n')).join('\n')}`);
      }
    });
  }
});
