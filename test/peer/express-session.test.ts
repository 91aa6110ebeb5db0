// express-session's own test/session.js (see README.md for the tag and commit), unmodified,
// with every store it makes being our ExpressStore (harness/express-session.js).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { HOOK, MOCHA, parseMochaJson, peerSuite, SUITES } from './harness/peer';

const DIR = path.join(SUITES, 'express-session');

peerSuite("express-session's test/session.js with ExpressStore", {
  suite: 'express-session',
  table: 'express',
  dir: 'express-session/test/session.js',
  // What its test/support/gencert.sh makes before its npm test: a certificate for the https test.
  prepare() {
    const fixtures = path.join(DIR, 'test', 'fixtures');
    if (fs.existsSync(path.join(fixtures, 'server.crt'))) return;
    fs.mkdirSync(fixtures, { recursive: true });
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-nodes', '-newkey', 'rsa:2048', '-days', '3650'],
        ...[
          '-keyout',
          path.join(fixtures, 'server.key'),
          '-out',
          path.join(fixtures, 'server.crt'),
        ],
        ...['-subj', '/C=US/ST=Illinois/L=Chicago/O=node-express-session/CN=express-session.local'],
      ],
      { stdio: 'ignore' },
    );
  },
  // Its npm test: mocha --require test/support/env --check-leaks --no-exit test/ (default timeout).
  args: (results) => [
    MOCHA,
    '--no-config',
    ...['--require', path.join(DIR, 'test', 'support', 'env.js')],
    ...['--require', HOOK],
    '--check-leaks',
    ...['--reporter', 'json', '--reporter-option', `output=${results}`],
    path.join(DIR, 'test', 'session.js'),
  ],
  parse: parseMochaJson,
  rejections: 'rethrow',
});
