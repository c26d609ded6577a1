/**
 * Unit: a policy text nested deeper than any policy needs is refused before
 * yaml composes it. Two such texts parsed in one process used to abort it
 * (V8: "RegExpCompiler Allocation failed", no catch sees it): a daemon
 * reloading a policy, or a dashboard worker reading one, died instead of
 * refusing it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PolicyError } from '../../src/errors.js';
import { MAX_YAML_DEPTH, parseDocumentChecked, TOO_DEEP, yamlTooDeep } from '../../src/policy/yaml-depth.js';
import { policyFrom } from '../support/fixtures.js';

const flow = (k: number) => `${'['.repeat(k)}x${']'.repeat(k)}`;
const maps = (k: number) => `${'{a: '.repeat(k)}x${'}'.repeat(k)}`;
const compact = (k: number) => `${'- '.repeat(k)}x\n`;
const block = (k: number) => `${Array.from({ length: k }, (_, i) => `${' '.repeat(i)}a${i}:`).join('\n')} x\n`;

describe('unit: YAML nesting depth', () => {
  it(`${MAX_YAML_DEPTH} collections inside each other pass, one more is refused where it passes the limit, in every form`, () => {
    assert.equal(MAX_YAML_DEPTH, 64);
    for (const [form, make] of Object.entries({ flow, maps, compact, block })) {
      assert.equal(yamlTooDeep(make(64)), null, `${form} 64`);
      const at = yamlTooDeep(make(65));
      assert.notEqual(at, null, `${form} 65`);
      assert.equal(yamlTooDeep(make(65), 65), null, `${form} 65 with a limit of 65`);
    }
    // The place: the scalar 65 flow lists down.
    assert.equal(yamlTooDeep(flow(65)), 65);
    assert.equal(yamlTooDeep(`a: 1\n---\nb: ${flow(70)}\n`), 3 + 5 + 3 + 65, 'a later document is measured too');
  });

  it('brackets in quoted scalars, comments and block scalars are not nesting', () => {
    const text = `a: "${'['.repeat(200)}"\nb: '${'{'.repeat(200)}'\n# ${'['.repeat(200)}\nc: |\n  ${'- '.repeat(200)}\n`;
    assert.equal(yamlTooDeep(text), null);
  });

  it('a policy refuses it with the file and place; the shipped policies and deep-ish real ones pass', () => {
    assert.throws(() => policyFrom(`mode: enforce\nrules: ${flow(100)}\n`, 'p.yaml'), (e: unknown) => e instanceof PolicyError && e.issues.length === 1 && e.issues[0]?.message === TOO_DEEP && e.issues[0]?.line === 2 && e.issues[0]?.column === 7 + 65);
    for (const f of readdirSync('policies').filter((n) => n.endsWith('.yaml'))) assert.equal(yamlTooDeep(readFileSync(join('policies', f), 'utf8')), null, f);
    const alerts = 'mode: enforce\nalerts:\n  - name: a\n    on: [blocked]\n    sinks:\n      - webhook: {url: "https://198.18.0.1/x", headers: {X-A: [b]}}\nrules:\n  - name: w\n    to: [198.18.0.1]\n    ports: [443/tcp]\n';
    assert.equal(yamlTooDeep(alerts), null);
  });

  it('parseDocumentChecked (the policy file as it is on disk, for suggest and the dashboard) refuses the same with a PolicyError', () => {
    assert.throws(() => parseDocumentChecked(`x:\n  y:\n    ${compact(80)}`, 'f.yaml'), (e: unknown) => e instanceof PolicyError && e.issues[0]?.file === 'f.yaml' && e.issues[0]?.line === 3 && e.issues[0]?.message === TOO_DEEP);
    assert.deepEqual(parseDocumentChecked('a: [1, {b: 2}]\n').toJS(), { a: [1, { b: 2 }] });
  });

  it('one process parses deep texts one after the other and refuses each: it does not abort', () => {
    const fixtures = new URL('../support/fixtures.js', import.meta.url).href;
    const script = `
      const { policyFrom } = await import(${JSON.stringify(fixtures)});
      const texts = ['[', '- ', '{a: '].flatMap((open) => [1950, 5000, 12000].map((k) => open.repeat(k) + 'x' + (open === '- ' ? '' : (open === '[' ? ']' : '}').repeat(k))));
      let refused = 0;
      for (const t of texts) {
        try { policyFrom('rules:\\n  ' + t + '\\n'); } catch (e) { if (/nests too deeply/.test(String(e.message))) refused++; else throw e; }
      }
      console.log('refused', refused);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr.slice(0, 400)}`);
    assert.equal(r.stdout.trim(), 'refused 9');
  });
});
