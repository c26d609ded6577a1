#!/usr/bin/env node
// Copies the files tsc does not emit (the dashboard's HTML, script and style
// sheet) from src/ to dist/src/, beside the compiled code that serves them.
import { cpSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const dir of ['src/daemon/dashboard-assets']) {
  mkdirSync(join(root, 'dist', dir), { recursive: true });
  cpSync(join(root, dir), join(root, 'dist', dir), { recursive: true });
}
