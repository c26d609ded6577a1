/**
 * The test runner cannot run stale code: a build older than its sources is
 * refused, and a compiled test whose source was deleted does not run. Each
 * case runs the real scripts/run-tests.mjs in a throwaway project tree.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ROOT } from '../support/fixtures.js';

const PASSING = `import { it } from 'node:test'; it('passes', () => {});\n`;
const FAILING = `import { it } from 'node:test'; it('fails', () => { throw new Error('stale code ran'); });\n`;

describe('unit: the test runner refuses stale code', () => {
  let dir: string;
  const put = (rel: string, text: string, mtimeSec?: number) => {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
    if (mtimeSec !== undefined) utimesSync(p, mtimeSec, mtimeSec);
  };
  const run = () => {
    const r = spawnSync(process.execPath, [join(dir, 'scripts/run-tests.mjs'), 'unit'], { encoding: 'utf8', env: { ...process.env, NODE_TEST_CONTEXT: undefined } });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-runner-'));
    mkdirSync(join(dir, 'scripts'));
    copyFileSync(join(ROOT, 'scripts/run-tests.mjs'), join(dir, 'scripts/run-tests.mjs'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
    const t = Date.now() / 1000 - 100;
    put('src/a.ts', 'export const a = 1;\n', t);
    put('dist/src/a.js', 'export const a = 1;\n', t + 10);
    put('test/unit/ok.test.ts', '// source\n', t);
    put('dist/test/unit/ok.test.js', PASSING, t + 10);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('control: a fresh build runs and passes', () => {
    const r = run();
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUMMARY PASSED: unit: 1 passed, 0 failed/);
  });

  it('a compiled test whose source was deleted does not run, and is named', () => {
    put('dist/test/unit/deleted.test.js', FAILING, Date.now() / 1000);
    const r = run();
    assert.equal(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /stale code ran/);
    assert.match(r.out, /not running 1 compiled test\(s\) whose source is gone: dist\/test\/unit\/deleted\.test\.js/);
    assert.match(r.out, /SUMMARY PASSED: unit: 1 passed, 0 failed/);
  });

  it('a source newer than its build, or never built, fails the run before any test', () => {
    put('src/a.ts', 'export const a = 2;\n', Date.now() / 1000);
    let r = run();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /dist\/ is older than 1 source file\(s\) \(src\/a\.ts\)/);
    assert.match(r.out, /SUMMARY FAILED: the build is stale/);
    assert.doesNotMatch(r.out, /# pass|passes/);

    put('dist/src/a.js', 'export const a = 2;\n', Date.now() / 1000 + 10);
    put('test/unit/new.test.ts', '// never built\n');
    r = run();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /older than 1 source file\(s\) \(test\/unit\/new\.test\.ts\)/);
  });
});
