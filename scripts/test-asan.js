#!/usr/bin/env node
'use strict';
// `npm run test:asan [-- test files or mocha arguments]`: the test suite (or the files named)
// against the addon built with AddressSanitizer and UndefinedBehaviorSanitizer.
//
// 1. Builds the addon in .tmp/asan/ (a copy of binding.gyp, native/ and scripts/find-libpq.js,
//    with the sanitizer flags added), so build/Release stays as it is. Later runs rebuild only
//    what changed.
// 2. Runs scripts/run-tests.js with the sanitizer runtime preloaded into node (LD_PRELOAD: the
//    runtime must be loaded before anything else, and node itself is not instrumented), and
//    SPG_ADDON_PATH, which lib/native.ts loads instead of build/Release. dist/ must be current
//    (`npm run build:ts`). Without arguments it runs every test file but the package tarball
//    test, which installs the package elsewhere and checks its own build of the addon.
//
// Only node processes get the runtime: this file is also preloaded into every node process
// (NODE_OPTIONS --require), where it takes LD_PRELOAD out of the environment and gives it back
// to the node processes they start. In other programs the runtime can hang them before main():
// PostgreSQL's tools and pgrep deadlock in textdomain().
//
// Leak detection is off: V8 keeps memory until exit by design. The first undefined behaviour
// halts the process, with a stack trace, so no report goes unnoticed. Exit status is the run's.
const fs = require('node:fs');
const path = require('node:path');
const { nodeGypCommand } = require('./install.js');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const DIR = path.join(ROOT, '.tmp', 'asan');
const GYP_INPUTS = ['native', path.join('scripts', 'find-libpq.js')];
const SANITIZE = '-fsanitize=address,undefined';
const ADDON = path.join(DIR, 'build', 'Release', 'session_pgsql.node');

function fail(message) {
  process.stderr.write(`test-asan: ${message}\n`);
  process.exit(1);
}

// binding.gyp with the sanitizer flags (and frame pointers and debug info, for readable stacks).
function sanitizedGyp() {
  let gyp;
  try {
    gyp = JSON.parse(fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8'));
  } catch (err) {
    fail(`binding.gyp is not plain JSON, so the sanitizer flags cannot be added: ${err.message}`);
  }
  for (const target of gyp.targets) {
    target.cflags = [...(target.cflags || []), SANITIZE, '-fno-omit-frame-pointer', '-g'];
    target.ldflags = [...(target.ldflags || []), SANITIZE];
  }
  return `${JSON.stringify(gyp, null, 2)}\n`;
}

function build() {
  fs.mkdirSync(DIR, { recursive: true });
  for (const input of GYP_INPUTS) {
    // why: kept timestamps let make rebuild only the files that changed since the last run.
    fs.cpSync(path.join(ROOT, input), path.join(DIR, input), {
      recursive: true,
      preserveTimestamps: true,
    });
  }
  const gyp = sanitizedGyp();
  const gypFile = path.join(DIR, 'binding.gyp');
  if (!fs.existsSync(gypFile) || fs.readFileSync(gypFile, 'utf8') !== gyp) {
    fs.writeFileSync(gypFile, gyp);
  }
  const env = { ...process.env };
  // Outside npm, the nodedir of the npm configuration (npm passes it to scripts by itself).
  if (!env.npm_config_nodedir) {
    const got = spawnSync('npm', ['config', 'get', 'nodedir'], { cwd: ROOT, encoding: 'utf8' });
    const nodedir = (got.stdout || '').trim();
    if (got.status === 0 && nodedir && nodedir !== 'undefined' && nodedir !== 'null') {
      env.npm_config_nodedir = nodedir;
    }
  }
  const [command, ...prefix] = nodeGypCommand();
  const jobs = env.JOBS || env.npm_config_jobs ? [] : ['--jobs', 'max'];
  for (const step of [['configure'], ['build', ...jobs]]) {
    const result = spawnSync(command, [...prefix, ...step], { cwd: DIR, env, stdio: 'inherit' });
    if (result.status !== 0) fail(`node-gyp ${step[0]} failed in ${DIR}`);
  }
  if (!fs.existsSync(ADDON)) fail(`the build left no ${ADDON}`);
}

function runtime() {
  const got = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' });
  const file = (got.stdout || '').trim();
  // gcc prints the bare name when it has no such library.
  if (got.status !== 0 || !path.isAbsolute(file) || !fs.existsSync(file)) {
    fail(
      'no AddressSanitizer runtime: `gcc -print-file-name=libasan.so` found none (Debian: libasan8)',
    );
  }
  return file;
}

// Every test file but two, when no argument names any: the tarball test (it installs the package
// elsewhere and checks that copy's own addon) and the demo test (`npm start` starts its own
// PostgreSQL through npm and a shell, and that server never comes up with the runtime preloaded;
// plain `npm test` runs it).
function testArgs(args) {
  if (args.some((a) => /\.test\.ts$/.test(a))) return args;
  const files = fs
    .readdirSync(path.join(ROOT, 'test'))
    .filter((f) => /\.test\.ts$/.test(f) && !/^(43|70)\./.test(f))
    .sort()
    .map((f) => path.join('test', f));
  return [...files, ...args];
}

function main() {
  const libasan = runtime();
  build();
  const env = {
    ...process.env,
    SPG_ADDON_PATH: ADDON,
    SPG_ASAN_RUNTIME: libasan,
    LD_PRELOAD: libasan,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS || ''} --require ${JSON.stringify(__filename)}`,
    ASAN_OPTIONS: 'detect_leaks=0',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
  };
  process.stdout.write(`test-asan: running the tests with ${path.relative(ROOT, ADDON)}\n`);
  const result = spawnSync(
    process.execPath,
    [path.join(__dirname, 'run-tests.js'), ...testArgs(process.argv.slice(2))],
    { cwd: ROOT, env, stdio: 'inherit' },
  );
  if (result.error) fail(`could not run the tests: ${result.error.message}`);
  process.exit(result.status === null ? 1 : result.status);
}

// In each node process of the run (preloaded): the runtime for node children only.
function hookChildren(runtimeFile) {
  delete process.env.LD_PRELOAD;
  const childProcess = require('node:child_process');
  const isNode = (file) => file === process.execPath || path.basename(String(file)) === 'node';
  // spawn, execFile, exec and fork all come here with their options normalized.
  const spawn = childProcess.ChildProcess.prototype.spawn;
  childProcess.ChildProcess.prototype.spawn = function (options) {
    if (options && isNode(options.file) && Array.isArray(options.envPairs)) {
      options.envPairs = options.envPairs.filter((pair) => !pair.startsWith('LD_PRELOAD='));
      options.envPairs.push(`LD_PRELOAD=${runtimeFile}`);
    }
    return spawn.call(this, options);
  };
  // The synchronous ones: (file, [args], [options]).
  for (const name of ['spawnSync', 'execFileSync']) {
    const original = childProcess[name];
    childProcess[name] = function (file, ...rest) {
      if (isNode(file)) {
        let at = rest.findIndex((a) => a !== null && typeof a === 'object' && !Array.isArray(a));
        if (at < 0) {
          at = Array.isArray(rest[0]) ? 1 : 0;
          rest.splice(at, 0, {});
        }
        const options = rest[at];
        rest[at] = {
          ...options,
          env: { ...(options.env || process.env), LD_PRELOAD: runtimeFile },
        };
      }
      return original.call(this, file, ...rest);
    };
  }
}

if (require.main === module) {
  main();
} else if (process.env.SPG_ASAN_RUNTIME) {
  hookChildren(process.env.SPG_ASAN_RUNTIME);
}
