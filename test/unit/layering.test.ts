/**
 * Dependencies point down only: each folder of src/ may import its own
 * files and the layers below it, never one above. A layer that reaches up
 * makes cycles and hides what a component really needs (how the DNS guard
 * once imported the CLI). Fails on any new upward import.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../support/fixtures.js';

/** Bottom to top. A folder may import from its own entry and every earlier one. */
const LAYERS = ['vendor', 'errors', 'native', 'net', 'policy', 'compile', 'netfilter', 'system', 'state', 'runtime', 'events', 'alerts', 'monitor', 'dns', 'learn', 'daemon', 'run', 'cli'];

const SRC = join(ROOT, 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The layer of a file under src/: its top folder, or the file's own name for files at the top (errors.ts). */
function layerOf(file: string): string {
  const [top = '', rest] = relative(SRC, file).split('/');
  return rest === undefined ? top.replace(/\.ts$/, '') : top;
}

/** The imports of `file` (its text) that reach a layer above its own. */
function upwardImports(file: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
    const target = resolve(dirname(file), (m[1] ?? '').replace(/\.js$/, '.ts'));
    if (LAYERS.indexOf(layerOf(target)) > LAYERS.indexOf(layerOf(file))) out.push(`${relative(ROOT, file)} imports ${m[1]} (${layerOf(file)} -> ${layerOf(target)})`);
  }
  return out;
}

describe('unit: layering', () => {
  it('every folder of src/ is a known layer', () => {
    for (const f of files(SRC)) assert.ok(LAYERS.includes(layerOf(f)), `${relative(ROOT, f)}: layer ${layerOf(f)} is not in LAYERS`);
  });

  it('no import reaches a layer above its own', () => {
    assert.deepEqual(
      files(SRC).flatMap((f) => upwardImports(f, readFileSync(f, 'utf8'))),
      [],
    );
  });

  it('the check sees an upward import, static or dynamic (so a pass means something)', () => {
    const guard = join(SRC, 'dns/guard-component.ts');
    assert.deepEqual(upwardImports(guard, "import { daemon } from '../cli/commands/daemon.js';\nimport { x } from '../net/ip.js';"), ['src/dns/guard-component.ts imports ../cli/commands/daemon.js (dns -> cli)']);
    assert.equal(upwardImports(guard, "await import('../daemon/daemon.js');").length, 1);
  });
});
