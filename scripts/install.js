#!/usr/bin/env node
'use strict';
// The package's `install` script (also what `npm rebuild session-pgsql` runs);
// `--addon-only` skips step 2 (`npm run build:native`).
//
// 1. Builds the addon in a staging directory and swaps it into build/ only when the build
//    succeeded: `node-gyp rebuild` deletes build/ before compiling, so a rebuild that fails
//    (a missing compiler or libpq-dev after an upgrade) would otherwise leave an app that
//    worked with no addon at all.
// 2. In a git checkout only, compiles lib/ to dist/. The published tarball ships dist/ and is
//    never compiled at install time: the consumer's own `typescript` (found by walking up
//    node_modules) would compile lib/ without our devDependencies' types and fail.
//
// A checkout is told apart by test/, which `files` in package.json never ships (the tarball
// test asserts it); `.git` would miss source archives, and "dist/ present" would keep a stale
// dist/ in a checkout after lib/ changed.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const BUILD = path.join(ROOT, 'build');
const STAGE = path.join(ROOT, 'build-staging');
const PREVIOUS = path.join(ROOT, 'build-previous');
// What binding.gyp reads at configure time, relative to its own directory.
const GYP_INPUTS = ['binding.gyp', 'native', path.join('scripts', 'find-libpq.js')];

function isCheckout() {
  return fs.existsSync(path.join(ROOT, 'test'));
}

// This package's node-gyp dependency first (the version we test with), then the one npm runs
// scripts with, then whatever is on PATH.
function nodeGypCommand() {
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js', { paths: [ROOT] })];
  } catch {
    const bundled = process.env.npm_config_node_gyp;
    if (bundled && fs.existsSync(bundled)) return [process.execPath, bundled];
    return [process.platform === 'win32' ? 'node-gyp.cmd' : 'node-gyp'];
  }
}

function buildAddon() {
  fs.rmSync(STAGE, { recursive: true, force: true });
  fs.rmSync(PREVIOUS, { recursive: true, force: true });
  for (const input of GYP_INPUTS) {
    fs.cpSync(path.join(ROOT, input), path.join(STAGE, input), { recursive: true });
  }
  const [command, ...prefix] = nodeGypCommand();
  // Compile the files in parallel unless the user chose a job count.
  const jobs = process.env.JOBS || process.env.npm_config_jobs ? [] : ['--jobs', 'max'];
  const result = spawnSync(command, [...prefix, 'rebuild', ...jobs], {
    cwd: STAGE,
    stdio: 'inherit',
  });
  const built = path.join(STAGE, 'build', 'Release', 'session_pgsql.node');
  if (result.status !== 0 || !fs.existsSync(built)) {
    fs.rmSync(STAGE, { recursive: true, force: true });
    const kept = fs.existsSync(path.join(BUILD, 'Release', 'session_pgsql.node'));
    console.error(
      `session-pgsql: building the native addon failed${result.error ? ` (${result.error.message})` : ''}. ` +
        'It needs a C++17 compiler, make, python3 and libpq >= 14 with its headers ' +
        '(Debian/Ubuntu: apt-get install build-essential python3 libpq-dev). ' +
        (kept ? 'The previous build in build/ is kept unchanged.' : 'There was no previous build.'),
    );
    return result.status || 1;
  }
  // Two renames: build/ is missing only between them, and the old build is restored if the
  // second one fails.
  const hadBuild = fs.existsSync(BUILD);
  if (hadBuild) fs.renameSync(BUILD, PREVIOUS);
  try {
    fs.renameSync(path.join(STAGE, 'build'), BUILD);
  } catch (err) {
    if (hadBuild) fs.renameSync(PREVIOUS, BUILD);
    throw err;
  }
  fs.rmSync(PREVIOUS, { recursive: true, force: true });
  fs.rmSync(STAGE, { recursive: true, force: true });
  return 0;
}

function main() {
  const status = buildAddon();
  if (status !== 0) return status;
  if (!isCheckout() || process.argv.includes('--addon-only')) return 0;
  return (
    spawnSync(process.execPath, [path.join(__dirname, 'build-ts.js')], { stdio: 'inherit' })
      .status ?? 1
  );
}

if (require.main === module) process.exitCode = main();

module.exports = { nodeGypCommand };
