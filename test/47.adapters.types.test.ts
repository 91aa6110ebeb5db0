// What a TypeScript app sees of `session-pgsql/express`: the declarations the package ships
// (emitted from lib/ into a throwaway package) must type-check in an app that has no
// @types/express-session (strict, skipLibCheck off), and still be accepted as express-session's
// Store where those types are installed. No server is needed.
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const TSC = require.resolve('typescript/bin/tsc', { paths: [ROOT] });

function tsc(args: string[]): { status: number | null; output: string } {
  const r = spawnSync(process.execPath, [TSC, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const APP_WITHOUT_TYPES = `
import { ExpressStore, type ExpressSessionData } from 'session-pgsql/express';
const store = new ExpressStore({ db: 'dbname=app' }, { touchAfter: 0 });
store.get('id', (err: unknown, sess?: ExpressSessionData | null) => {
  console.log(err, sess?.cookie.expires, sess?.['views']);
});
const done: Promise<void> | void = store.destroy('id');
const middleware = store.guard();
store.on('connect', () => {});
console.log(done, middleware, store.sessionFor({})?.info().sessionId);
`;

const APP_WITH_TYPES = `
import session from 'express-session';
import { ExpressStore } from 'session-pgsql/express';
declare module 'express-session' {
  interface SessionData { views: number }
}
const store = new ExpressStore({ db: 'dbname=app' });
const middleware = session({ store, secret: 'secret', resave: false, saveUninitialized: false });
store.get('id', (_err, sess) => console.log(sess?.views));
console.log(middleware);
`;

describe('47 adapters: the types of session-pgsql/express', function () {
  this.timeout(120_000);
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spg-types-'));
    const pkg = path.join(dir, 'node_modules', 'session-pgsql');
    fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    fs.writeFileSync(
      path.join(pkg, 'package.json'),
      JSON.stringify({ name: manifest.name, main: manifest.main, exports: manifest.exports }),
    );
    const emitted = tsc([
      '-p',
      path.join(ROOT, 'tsconfig.json'),
      '--emitDeclarationOnly',
      '--sourceMap',
      'false',
      '--outDir',
      path.join(pkg, 'dist'),
    ]);
    expect(emitted.status, emitted.output).to.equal(0);
    // Node's own types, as every TypeScript app on Node has them.
    fs.mkdirSync(path.join(dir, 'node_modules', '@types'));
    fs.symlinkSync(
      path.join(ROOT, 'node_modules', '@types', 'node'),
      path.join(dir, 'node_modules', '@types', 'node'),
    );
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  function check(source: string): { status: number | null; output: string } {
    fs.writeFileSync(path.join(dir, 'app.ts'), source);
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'node16',
          moduleResolution: 'node16',
          target: 'ES2022',
          noEmit: true,
          skipLibCheck: false,
          esModuleInterop: true,
          types: ['node'],
        },
        files: ['app.ts'],
      }),
    );
    return tsc(['-p', dir]);
  }

  it('type-checks in an app without @types/express-session (strict, skipLibCheck: false)', () => {
    expect(fs.existsSync(path.join(dir, 'node_modules', '@types', 'express-session'))).to.equal(
      false,
    );
    const r = check(APP_WITHOUT_TYPES);
    expect(r.status, r.output).to.equal(0);
  });

  it("is accepted as express-session's Store where @types/express-session is installed", () => {
    fs.symlinkSync(
      path.join(ROOT, 'node_modules', '@types', 'express-session'),
      path.join(dir, 'node_modules', '@types', 'express-session'),
    );
    const r = check(APP_WITH_TYPES);
    expect(r.status, r.output).to.equal(0);
  });
});
