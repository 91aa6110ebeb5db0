// The package's entry points: the built main (dist/) must load with require() and import, and
// export the public API. No server is needed.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

const pkg = require('../') as typeof import('../lib');

function runNode(
  args: string[],
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, timeout: timeoutMs, env: { ...process.env, NODE_OPTIONS: '' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('01 entry points', () => {
  describe("require('session-pgsql') (the built package main)", () => {
    it('resolves to the compiled dist/index.js named by package.json', () => {
      const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
      expect(require.resolve('../')).to.equal(path.join(ROOT, manifest.main));
      expect(fs.existsSync(path.join(ROOT, 'dist', 'index.js'))).to.equal(true);
      expect(fs.existsSync(path.join(ROOT, 'dist', 'index.d.ts'))).to.equal(true);
    });

    it('resolves by its package name too (self-reference through "exports")', () => {
      expect(require.resolve('session-pgsql')).to.equal(require.resolve('../'));
    });

    it('exports SessionPgsql, Session, SessionPgsqlError, ErrorCode and libpqVersion', () => {
      expect(pkg.SessionPgsql).to.be.a('function');
      expect(pkg.Session).to.be.a('function');
      expect(pkg.SessionPgsqlError).to.be.a('function');
      expect(pkg.ErrorCode).to.be.an('object');
      expect(pkg.libpqVersion).to.be.a('number');
    });

    it('reports a libpq with pipeline mode (libpqVersion >= 140000)', () => {
      expect(pkg.libpqVersion).to.be.at.least(140000);
      expect(Number.isInteger(pkg.libpqVersion)).to.equal(true);
    });

    it('ErrorCode holds the stable library codes, all distinct', () => {
      const codes = Object.values(pkg.ErrorCode);
      expect(new Set(codes).size).to.equal(codes.length);
      for (const code of codes) expect(code).to.match(/^SPG_[A-Z_]+$/);
      expect(pkg.ErrorCode).to.include({
        InvalidOption: 'SPG_INVALID_OPTION',
        InvalidId: 'SPG_INVALID_ID',
        InvalidArgument: 'SPG_INVALID_ARGUMENT',
        DataTooLarge: 'SPG_DATA_TOO_LARGE',
        DataHasNul: 'SPG_DATA_HAS_NUL',
        Closed: 'SPG_CLOSED',
        NoServer: 'SPG_NO_SERVER',
        TableMissing: 'SPG_TABLE_MISSING',
        TableInvalid: 'SPG_TABLE_INVALID',
      });
    });

    it('constructs a handler and throws its own SessionPgsqlError class', async () => {
      const handler = new pkg.SessionPgsql({ db: 'host=127.0.0.1 port=1 dbname=x' });
      try {
        expect(handler.status().numberOfServers).to.equal(1);
      } finally {
        await handler.close();
      }
      let caught: unknown;
      try {
        new pkg.SessionPgsql({ noSuchOption: 1 } as never);
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(pkg.SessionPgsqlError);
      expect(caught).to.be.instanceOf(Error);
      expect((caught as InstanceType<typeof pkg.SessionPgsqlError>).code).to.equal(
        pkg.ErrorCode.InvalidOption,
      );
    });
  });

  describe('import (ESM)', () => {
    it('named and namespace imports of the package work from an ES module', async function () {
      this.timeout(30_000);
      const script = `
        import * as ns from 'session-pgsql';
        import { SessionPgsql, Session, SessionPgsqlError, ErrorCode, libpqVersion } from 'session-pgsql';
        const handler = new SessionPgsql({ db: 'host=127.0.0.1 port=1 dbname=x' });
        const servers = handler.status().numberOfServers;
        await handler.close();
        let code = null;
        try { new SessionPgsql({ bogus: true }); } catch (err) {
          code = err instanceof SessionPgsqlError && err instanceof Error ? err.code : 'wrong class';
        }
        console.log(JSON.stringify({
          keys: Object.keys(ns).filter((k) => k !== 'default' && k !== '__esModule').sort(),
          types: [typeof SessionPgsql, typeof Session, typeof SessionPgsqlError, typeof ErrorCode],
          sameClass: ns.SessionPgsql === SessionPgsql,
          libpqVersion, servers, code,
        }));
      `;
      const { code, stdout, stderr } = await runNode(['--input-type=module', '-e', script]);
      expect(code, stderr).to.equal(0);
      const out = JSON.parse(stdout.trim().split('\n').pop()!);
      expect(out.keys).to.include.members([
        'ErrorCode',
        'Session',
        'SessionPgsql',
        'SessionPgsqlError',
        'libpqVersion',
      ]);
      expect(out.types).to.deep.equal(['function', 'function', 'function', 'object']);
      expect(out.sameClass).to.equal(true);
      expect(out.libpqVersion).to.be.at.least(140000);
      expect(out.servers).to.equal(1);
      expect(out.code).to.equal('SPG_INVALID_OPTION');
    });

    it('import() of the package from CommonJS gives the same exports', async function () {
      this.timeout(30_000);
      const script = `
        import('session-pgsql').then((m) => {
          const cjs = require('session-pgsql');
          console.log(JSON.stringify({
            same: m.SessionPgsql === cjs.SessionPgsql && m.SessionPgsqlError === cjs.SessionPgsqlError,
            version: m.libpqVersion,
          }));
        }, (err) => { console.error(err); process.exit(2); });
      `;
      const { code, stdout, stderr } = await runNode(['-e', script]);
      expect(code, stderr).to.equal(0);
      const out = JSON.parse(stdout.trim().split('\n').pop()!);
      expect(out.same).to.equal(true);
      expect(out.version).to.be.at.least(140000);
    });
  });

  // The compiled dist/ without build/, where npm leaves it when the install script did not
  // run: require() must say how to build the addon. (test/70 runs the printed commands.)
  describe('without the compiled addon', () => {
    let tmp = '';
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'session-pgsql-noaddon-'));
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    function install(project: string, allowScripts?: Record<string, boolean>): string {
      const pkgDir = path.join(project, 'node_modules', 'session-pgsql');
      fs.mkdirSync(pkgDir, { recursive: true });
      fs.cpSync(path.join(ROOT, 'dist'), path.join(pkgDir, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkgDir, 'package.json'));
      fs.writeFileSync(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'app', version: '1.0.0', ...(allowScripts && { allowScripts }) }),
      );
      return pkgDir;
    }

    async function requireError(cwd: string, id = 'session-pgsql') {
      const script = `try { require(${JSON.stringify(id)}); console.log('null'); } catch (err) {
        console.log(JSON.stringify({ name: err.name, code: err.code, message: err.message })); }`;
      const { code, stdout, stderr } = await new Promise<{
        code: number;
        stdout: string;
        stderr: string;
      }>((resolve) =>
        execFile(
          process.execPath,
          ['-e', script],
          { cwd, env: { ...process.env, NODE_OPTIONS: '' } },
          (err, out, errOut) => resolve({ code: err ? -1 : 0, stdout: out, stderr: errOut }),
        ),
      );
      expect(code, stderr).to.equal(0);
      return JSON.parse(stdout) as { name: string; code: string; message: string } | null;
    }

    it('throws SPG_ADDON_UNAVAILABLE naming the file, with the approve and rebuild commands', async () => {
      const project = path.join(tmp, 'plain');
      const pkgDir = install(project);
      const err = await requireError(project);
      expect(err).to.include({ name: 'SessionPgsqlError', code: 'SPG_ADDON_UNAVAILABLE' });
      expect(err!.message).to.include(path.join(pkgDir, 'build', 'Release', 'session_pgsql.node'));
      expect(err!.message).to.include(
        `, in ${project}:\n  npm install-scripts approve session-pgsql\n  npm rebuild session-pgsql\n`,
      );
      expect(err!.message).to.include('libpq-dev');
      expect(err!.message).to.not.include('npm pkg delete');
      // Every entry point goes through the same loader.
      expect(await requireError(project, 'session-pgsql/koa')).to.include({
        code: 'SPG_ADDON_UNAVAILABLE',
      });
    });

    it('names each allowScripts entry that denies the script, and the command removing it', async () => {
      const project = path.join(tmp, 'denied');
      install(project, {
        'session-pgsql@0.1.0': false,
        'file:/srv/pkgs/session-pgsql-0.1.0.tgz': false,
        'session-pgsql-other': false,
        'some-package': false,
        'session-pgsql@0.0.9': true,
      });
      const err = await requireError(project);
      expect(err).to.include({ code: 'SPG_ADDON_UNAVAILABLE' });
      const commands = err!.message.split('\n').filter((line) => line.startsWith('  '));
      expect(commands).to.deep.equal([
        "  npm pkg delete 'allowScripts[session-pgsql@0.1.0]'",
        "  npm pkg delete 'allowScripts[file:/srv/pkgs/session-pgsql-0.1.0.tgz]'",
        '  npm install-scripts approve session-pgsql',
        '  npm rebuild session-pgsql',
      ]);
      expect(err!.message).to.include('never overrides a denial');
    });

    it('in a checkout (no node_modules above it) says to run npm install there', async () => {
      const checkout = path.join(tmp, 'checkout');
      fs.mkdirSync(checkout);
      fs.cpSync(path.join(ROOT, 'dist'), path.join(checkout, 'dist'), { recursive: true });
      const err = await requireError(checkout, path.join(checkout, 'dist', 'index.js'));
      expect(err).to.include({ code: 'SPG_ADDON_UNAVAILABLE' });
      expect(err!.message).to.include(`run \`npm install\` in ${checkout}`);
    });
  });
});
