/**
 * Everything the code accepts is documented: every key of the policy schema
 * in the README's Policy (or DNS guard) section, every command-line flag in
 * its command reference, which is `sluice --help` word for word.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import type { z } from 'zod';
import { COMMANDS, GLOBAL_OPTIONS, POLICY_OPTION, usage } from '../../src/cli/spec.js';
import { policySchema } from '../../src/policy/schema.js';
import { openApiDocument } from '../../src/daemon/dashboard-openapi.js';
import { ROOT } from '../support/fixtures.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The text of the README section under `## title`, up to the next `## ` heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has a "## ${title}" section`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  element?: z.ZodType;
  options?: z.ZodType[];
}
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Every key path of a schema: `mode`, `log.rate`, `rules.to`, `dns.ttl_max`... (through optionals, lists and unions). */
function keyPaths(schema: z.ZodType, prefix: string[] = []): string[][] {
  const d = defOf(schema);
  if (d.type === 'optional' || d.type === 'nullable' || d.type === 'default') return d.innerType ? keyPaths(d.innerType, prefix) : [];
  if (d.type === 'array') return d.element ? keyPaths(d.element, prefix) : [];
  if (d.type === 'union') return (d.options ?? []).flatMap((o) => keyPaths(o, prefix));
  if (d.type !== 'object') return [];
  return Object.entries(d.shape ?? {}).flatMap(([k, v]) => [[...prefix, k], ...keyPaths(v, [...prefix, k])]);
}

/** `key` is documented in `text`: as a YAML key (`  key:`, `- key:`) or in backquotes (`key`, `parent.key`). */
function documents(text: string, path: string[]): boolean {
  const key = path.at(-1) ?? '';
  const k = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const parent = path.length > 1 ? `${path[path.length - 2]}.` : '';
  return new RegExp(`^\\s*(- )?${k}:`, 'm').test(text) || new RegExp(`\`(${parent.replace('.', '\\.')})?${k}(\`|:| )`).test(text);
}

describe('unit: the README documents what the code accepts', () => {
  it('the schema walk finds every section and key (so a pass means something)', () => {
    const paths = keyPaths(policySchema as unknown as z.ZodType).map((p) => p.join('.'));
    for (const p of ['mode', 'log.user_burst', 'rules.comment', 'dns.ttl_max', 'dns.guard', 'flows.replies']) assert.ok(paths.includes(p), p);
    assert.ok(paths.length >= 38, `${paths.length} keys`);
    assert.equal(documents('  ttl_max: 5\n', ['dns', 'ttl_max']), true);
    assert.equal(documents('the `dns.guard` key', ['dns', 'guard']), true);
    assert.equal(documents('a guard and a ttl_max', ['dns', 'ttl_max']), false, 'prose is not documentation of a key');
  });

  it('every key of the policy schema is in the Policy section, dns: keys in the DNS guard section', () => {
    const policy = section('Policy');
    const dns = section('DNS guard');
    const missing = keyPaths(policySchema as unknown as z.ZodType).filter((p) => !documents(p[0] === 'dns' ? dns : policy, p) && !(p.length === 1 && documents(dns, p)));
    assert.deepEqual(missing.map((p) => p.join('.')), [], 'keys the loader accepts that the README does not document');
  });

  it('the command reference is `sluice --help`, and names every flag of every command', () => {
    const commands = section('Commands');
    assert.ok(commands.includes(usage()), 'README "## Commands" holds the output of sluice --help, unchanged (regenerate it from src/cli/spec.ts)');
    for (const c of COMMANDS.filter((x) => x.section !== 'hidden')) {
      const line = commands.split('\n').find((l) => l.startsWith(`  ${c.name} `));
      assert.ok(line, `sluice ${c.name} is in the command reference`);
      for (const o of c.options) assert.ok(line.includes(`--${o.name}`), `sluice ${c.name} --${o.name} is documented on its line`);
    }
    for (const o of [...GLOBAL_OPTIONS, POLICY_OPTION]) assert.ok(commands.includes(`--${o.name}`), `--${o.name} is documented`);
  });

  it('ttl_max is documented as what it is: a cap on client TTLs, with the kernel keeping addresses ttl_grace longer', () => {
    const dns = section('DNS guard');
    assert.ok(dns.includes('max(min(TTL, ttl_max), ttl_floor) + ttl_grace'), 'the lifetime of a learned address, exactly');
    assert.ok(dns.includes('ttl_max` + `ttl_grace'), 'its bound');
    assert.doesNotMatch(dns, /never more than ttl_max/, 'not the old claim that ttl_max bounds the lifetime');
  });

  it("the Dashboard section's API list names every endpoint of the API (its OpenAPI document), method and path", () => {
    const paths = openApiDocument('x', 'c').paths as Record<string, Record<string, unknown>>;
    assert.ok(Object.keys(paths).length >= 14);
    for (const [path, item] of Object.entries(paths)) {
      for (const method of Object.keys(item)) {
        const p = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        assert.match(README, new RegExp(`^${method.toUpperCase()} ${p}(\\?| |$)`, 'm'), `${method.toUpperCase()} ${path} in the README's API list`);
      }
    }
  });

  it("the README's mutation table is mutation/scores.json's, row for row (scripts/mutation-table.mjs prints it)", async () => {
    const { mutationTable } = (await import(pathToFileURL(join(ROOT, 'scripts/mutation-table.mjs')).href)) as { mutationTable: (s: unknown) => string };
    const scores = JSON.parse(readFileSync(join(ROOT, 'mutation/scores.json'), 'utf8')) as Record<string, unknown>;
    assert.ok(Object.keys(scores).length > 0);
    const table = mutationTable(scores);
    assert.ok(README.includes(table), `README's table differs from scores.json; paste this in:\n${table}`);
    assert.equal(table.split('\n').length, Object.keys(scores).length + 2, 'a row per module');
  });

  it('scripts/mutate.mjs rewrites the table in place after each module: a stale row is replaced, the rest of the README kept', async () => {
    const { withMutationTable } = (await import(pathToFileURL(join(ROOT, 'scripts/mutation-table.mjs')).href)) as { withMutationTable: (readme: string, s: unknown) => string };
    const scores = JSON.parse(readFileSync(join(ROOT, 'mutation/scores.json'), 'utf8')) as Record<string, { score: number }>;
    assert.equal(withMutationTable(README, scores), README, 'in sync: unchanged');
    const [first] = Object.keys(scores);
    assert.ok(first);
    const stale = { ...scores, [first]: { ...scores[first], score: 1.5 } };
    const rewritten = withMutationTable(README, stale);
    assert.ok(rewritten.includes(`| \`${first}\` | 1.5% (`));
    assert.equal(rewritten.length - README.length, '1.5'.length - String(scores[first]?.score).length, 'only that cell changed');
    assert.throws(() => withMutationTable('# no table here\n', scores), /no mutation table/);
  });
});

