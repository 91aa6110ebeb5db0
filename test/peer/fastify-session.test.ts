// @fastify/session's own tests that build their app with test/TestStore.js (directly or through
// test/util.js's buildFastify), unmodified, with TestStore being our FastifyStore.
import path from 'node:path';
import { HOOK, parseJsonLines, peerSuite, SUITES } from './harness/peer';

const DIR = path.join(SUITES, 'fastify-session', 'test');
const FILES = ['base', 'cookie', 'expiration', 'session', 'store'].map((f) => `${f}.test.js`);

peerSuite("@fastify/session's tests with FastifyStore", {
  suite: '@fastify/session',
  table: 'fastify',
  dir: 'fastify-session/test/TestStore.js',
  // Its npm test: node --test (one process per file).
  args: (results) => [
    ...['--require', HOOK],
    '--test',
    `--test-reporter=${path.join(__dirname, 'harness', 'node-test-reporter.mjs')}`,
    `--test-reporter-destination=${results}`,
    ...FILES.map((f) => path.join(DIR, f)),
  ],
  parse: parseJsonLines,
  extraEnv: { SESSION_PGSQL_PEER_RUNNER: 'node:test' },
});
