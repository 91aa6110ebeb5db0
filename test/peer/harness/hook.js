'use strict';
// Preloaded (--require) into the processes that run the frameworks' own test suites. It swaps
// in our stores and nothing else: the suites' files run unmodified, and this hook redirects the
// modules they require:
//   express-session  `require('../')`           -> express-session with our store as its
//                                                   default store and as `MemoryStore`
//   @fastify/session `require('./TestStore')`   -> our FastifyStore (one table per instance)
//   koa-session      `import store from './store.js'` -> our KoaStore
//   the package under test (`..`, `../lib/...`, `../src/index.js`, `../session/cookie`)
//                                                -> the installed package in node_modules
//   `@eggjs/supertest` (koa-session's fork)       -> supertest, which it wraps
// Under mocha it also registers a root hook that closes our handlers after the run; under
// node:test a root after() hook does the same.
require('tsx/cjs');

const Module = require('node:module');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..', '..');
if (!process.env.SESSION_PGSQL_PEER_SUITES) {
  throw new Error('hook.js: SESSION_PGSQL_PEER_SUITES is not set');
}
// Real path: module file names are real paths, and the directory may be a symbolic link.
const SUITES = require('node:fs').realpathSync(process.env.SESSION_PGSQL_PEER_SUITES);

const PACKAGES = {
  'express-session': 'express-session',
  'fastify-session': '@fastify/session',
  'koa-session': 'koa-session',
};
const SWAPS = {
  'express-session': { '': path.join(__dirname, 'express-session.js') },
  'fastify-session': { 'test/TestStore': path.join(__dirname, 'fastify-test-store.js') },
  'koa-session': {
    'src/index.js': require.resolve('koa-session', { paths: [ROOT] }),
    'test/store.js': path.join(__dirname, 'koa-store.js'),
  },
};
const ALIASES = {
  '@eggjs/supertest': path.join(__dirname, 'eggjs-supertest.js'),
};

// SESSION_PGSQL_PEER_BASELINE=1 keeps the suites' own stores: every test should pass then,
// which shows that a failure with our store is not the harness's (express 5, supertest 7).
if (process.env.SESSION_PGSQL_PEER_BASELINE === '1') {
  delete SWAPS['express-session'][''];
  delete SWAPS['fastify-session']['test/TestStore'];
  delete SWAPS['koa-session']['test/store.js'];
}

const resolve = Module._resolveFilename;
Module._resolveFilename = function resolveFilename(request, parent, ...rest) {
  const from = parent && parent.filename;
  if (from && from.startsWith(SUITES + path.sep)) {
    const suite = path.relative(SUITES, from).split(path.sep)[0];
    if (ALIASES[request]) return ALIASES[request];
    if (request.startsWith('.') && PACKAGES[suite]) {
      const base = path.join(SUITES, suite);
      const rel = path
        .relative(base, path.resolve(path.dirname(from), request))
        .split(path.sep)
        .join('/');
      const swap = SWAPS[suite][rel] ?? SWAPS[suite][rel.replace(/\.js$/, '')];
      if (swap) return swap;
      if (!rel.startsWith('test/') && !rel.startsWith('..')) {
        const target = rel === '' ? PACKAGES[suite] : `${PACKAGES[suite]}/${rel}`;
        return resolve.call(this, target, { ...parent, paths: Module._nodeModulePaths(ROOT) });
      }
    }
  }
  return resolve.call(this, request, parent, ...rest);
};

async function closeAll() {
  await require('./stores.ts').closeAll();
}

// mocha: a root hook plugin; node:test: a root hook (only when this is a node:test process).
exports.mochaHooks = { afterAll: closeAll };
// Mocha re-emits a rejection from test code on process and, with no one listening, drops it.
//   rethrow: an uncaught exception then, which fails the running test. For callback-style suites,
//            where an assertion thrown in a store callback (ours settle from promises) would
//            otherwise only show as a timeout.
//   record:  for async/await suites (their assertions reject the test itself): a rejection that
//            outlives its test would land in whichever test runs next, so it is reported on its
//            own, as a failed test "unhandled rejection: <code>: <message>" in the results.
const REJECTIONS = process.env.SESSION_PGSQL_PEER_REJECTIONS;
if (REJECTIONS === 'rethrow') {
  process.on('unhandledRejection', (reason) => {
    throw reason;
  });
} else if (REJECTIONS) {
  const fs = require('node:fs');
  process.on('unhandledRejection', (reason) => {
    const err = reason instanceof Error ? reason : new Error(String(reason));
    const fullTitle = `unhandled rejection: ${err.code ?? err.name}: ${err.message}`;
    fs.appendFileSync(
      REJECTIONS,
      `${JSON.stringify({ fullTitle, state: 'failed', message: err.message, stack: err.stack })}\n`,
    );
  });
}
// NODE_TEST_CONTEXT: only in the per-file processes that `node --test` starts, not in itself.
if (process.env.SESSION_PGSQL_PEER_RUNNER === 'node:test' && process.env.NODE_TEST_CONTEXT) {
  require('node:test').after(closeAll);
}
