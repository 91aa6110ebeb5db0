// koa-session's own store tests (test/store.test.ts, test/externalkey.test.ts), unmodified, with
// their test/store.ts being our KoaStore.
import path from 'node:path';
import { HOOK, MOCHA, parseMochaJson, peerSuite, SUITES } from './harness/peer';

const DIR = path.join(SUITES, 'koa-session', 'test');

peerSuite("koa-session's store tests with KoaStore", {
  suite: 'koa-session',
  table: 'koa',
  dir: 'koa-session/test/store.test.ts',
  // Its npm test: egg-bin test, which is mocha with a TypeScript loader.
  args: (results) => [
    MOCHA,
    '--no-config',
    ...['--require', HOOK],
    ...['--timeout', '60000'],
    ...['--reporter', 'json', '--reporter-option', `output=${results}`],
    path.join(DIR, 'store.test.ts'),
    path.join(DIR, 'externalkey.test.ts'),
  ],
  parse: parseMochaJson,
  rejections: 'record',
});
