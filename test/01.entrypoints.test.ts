// The package's entry points: the built main (dist/) must load with require() and import, and
// export the public API. No server is needed.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
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
});
