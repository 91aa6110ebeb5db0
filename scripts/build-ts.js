#!/usr/bin/env node
'use strict';
// Compiles lib/ to dist/ in a checkout (`npm install` through scripts/install.js, `npm run
// build:ts`, prepack). Never run in a consumer's install: the tarball ships dist/, and not this
// file. Without TypeScript (e.g. `npm install --omit=dev`), an existing dist/ is kept.
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = join(__dirname, '..');
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  if (existsSync(join(root, 'dist', 'index.js'))) process.exit(0);
  console.error(
    'session-pgsql: TypeScript is needed to build dist/ from a git checkout (npm install)',
  );
  process.exit(1);
}
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], {
  stdio: 'inherit',
});
// The CLI is the package's bin: make it executable for `npx session-pgsql` in a checkout.
if (result.status === 0) require('node:fs').chmodSync(join(root, 'dist', 'cli.js'), 0o755);
process.exit(result.status ?? 1);
