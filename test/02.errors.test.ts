// SessionPgsqlError: its fields, and that every failure the library reports is one, with a
// stable code, `retryable` and `server` where they apply; errors settled by the native core
// carry the awaiting caller's stack; `code`'s type still offers the SPG_* codes to editors.
// Most need no server (the connection failures go to a port nothing listens on); the stacks of
// server-side failures use test server 0.
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { ErrorCode, SessionPgsql, SessionPgsqlError } from '../lib';
import { db, query, uniqueTable } from './support/db';
import { rejection, thrown } from './support/errors';

const DEAD = 'host=127.0.0.1 port=1 dbname=x user=y';
const ID = 'abcdefghijklmnopqrstuvwxyz012345';

describe('02 SessionPgsqlError', () => {
  describe('the class', () => {
    it('is an Error with name, message, code and retryable false by default', () => {
      const err = new SessionPgsqlError('something failed', ErrorCode.Timeout);
      expect(err).to.be.instanceOf(Error);
      expect(err).to.be.instanceOf(SessionPgsqlError);
      expect(err.name).to.equal('SessionPgsqlError');
      expect(err.message).to.equal('something failed');
      expect(err.code).to.equal('SPG_TIMEOUT');
      expect(err.retryable).to.equal(false);
      expect(err.server).to.equal(undefined);
      expect(err.stack).to.be.a('string').and.include('something failed');
      expect(String(err)).to.equal('SessionPgsqlError: something failed');
    });

    it('carries server, retryable and the server-side diagnostics when given', () => {
      const err = new SessionPgsqlError('lost', ErrorCode.ConnectionLost, {
        server: 2,
        retryable: true,
        severity: 'ERROR',
        detail: 'd',
        hint: 'h',
        table: 'php_session',
        column: 'sess_id',
        constraint: 'php_session_pkey',
      });
      expect(err.code).to.equal('SPG_CONNECTION_LOST');
      expect(err.server).to.equal(2);
      expect(err.retryable).to.equal(true);
      expect(err).to.include({
        severity: 'ERROR',
        detail: 'd',
        hint: 'h',
        table: 'php_session',
        column: 'sess_id',
        constraint: 'php_session_pkey',
      });
    });

    it('keeps server 0 (a falsy index) and accepts a SQLSTATE as code', () => {
      const err = new SessionPgsqlError('denied', '42501', { server: 0 });
      expect(err.code).to.equal('42501');
      expect(err.server).to.equal(0);
      expect(err.retryable).to.equal(false);
    });
  });

  describe('what the library throws', () => {
    it('an invalid option: SPG_INVALID_OPTION, not retryable, no server', () => {
      const err = thrown(() => new SessionPgsql({ maxLifetime: -1 }));
      expect(err.code).to.equal(ErrorCode.InvalidOption);
      expect(err.retryable).to.equal(false);
      expect(err.server).to.equal(undefined);
    });

    it('an invalid id: a rejected promise (not a synchronous throw) with SPG_INVALID_ID', async () => {
      const handler = new SessionPgsql({ db: DEAD });
      try {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = handler.read('bad id!');
        }).to.not.throw();
        const err = await rejection(promise!);
        expect(err.code).to.equal(ErrorCode.InvalidId);
        expect(err.retryable).to.equal(false);
        for (const op of [
          () => handler.write('bad id!', 'x'),
          () => handler.touch('bad id!'),
          () => handler.destroy('bad id!'),
        ]) {
          expect((await rejection(op())).code).to.equal(ErrorCode.InvalidId);
        }
      } finally {
        await handler.close();
      }
    });

    it('a refused connection: SPG_CONNECT_FAILED, retryable, server = its index', async () => {
      const handler = new SessionPgsql({ db: DEAD, connectTimeout: 2, retryMinDelay: 5 });
      try {
        const err = await rejection(handler.open());
        expect(err.code).to.equal(ErrorCode.ConnectFailed);
        expect(err.retryable).to.equal(true);
        expect(err.server).to.equal(0);
      } finally {
        await handler.close();
      }
    });

    it('no server usable among several: SPG_NO_SERVER, retryable', async () => {
      const handler = new SessionPgsql({
        db: `${DEAD};host=127.0.0.1 port=2 dbname=x`,
        connectTimeout: 2,
        retryMinDelay: 5,
      });
      try {
        const err = await rejection(handler.open());
        expect(err.code).to.equal(ErrorCode.NoServer);
        expect(err.retryable).to.equal(true);
        const read = await rejection(handler.read(ID));
        expect(read.code).to.equal(ErrorCode.NoServer);
        expect(read.retryable).to.equal(true);
      } finally {
        await handler.close();
      }
    });

    it('an operation on a closed handler: SPG_CLOSED, not retryable', async () => {
      const handler = new SessionPgsql({ db: DEAD });
      await handler.close();
      for (const op of [
        () => handler.open(),
        () => handler.read(ID),
        () => handler.write(ID, 'x'),
        () => handler.touch(ID),
        () => handler.destroy(ID),
        () => handler.gc(),
      ]) {
        const err = await rejection(op());
        expect(err.code).to.equal(ErrorCode.Closed);
        expect(err.retryable).to.equal(false);
      }
    });

    it('a bad argument: SPG_INVALID_ARGUMENT', async () => {
      const handler = new SessionPgsql({ db: DEAD });
      try {
        const err = await rejection(handler.write(ID, 42 as unknown as string));
        expect(err.code).to.equal(ErrorCode.InvalidArgument);
        expect(err.retryable).to.equal(false);
        const touch = await rejection(handler.touch(ID, Number.NaN));
        expect(touch.code).to.equal(ErrorCode.InvalidArgument);
      } finally {
        await handler.close();
      }
    });
  });

  describe('stacks: an error settled by the native core names the code that awaited it', () => {
    // Named functions, so the stack can be searched for them.
    async function openTheStore(handler: SessionPgsql): Promise<void> {
      await handler.open();
    }
    async function saveTheCart(handler: SessionPgsql, id: string): Promise<void> {
      await handler.write(id, 'too long for the check');
    }

    function expectCallerFrames(err: SessionPgsqlError, caller: string, method: string): void {
      const frames = err.stack!.split('\n').slice(1);
      expect(err.stack!.split('\n')[0]).to.equal(`SessionPgsqlError: ${err.message}`);
      expect(
        frames.some((f) => f.includes(`SessionPgsql.${method}`)),
        err.stack,
      ).to.equal(true);
      expect(
        frames.some((f) => f.includes(caller)),
        err.stack,
      ).to.equal(true);
      expect(
        frames.some((f) => f.includes(path.basename(__filename))),
        err.stack,
      ).to.equal(true);
    }

    it('a refused connection (settled from a libpq callback)', async () => {
      const handler = new SessionPgsql({ db: DEAD, connectTimeout: 2, retryMinDelay: 5 });
      try {
        const err = await rejection(openTheStore(handler));
        expect(err.code).to.equal(ErrorCode.ConnectFailed);
        expectCallerFrames(err, 'openTheStore', 'open');
      } finally {
        await handler.close();
      }
    });

    it('a missing table and a SQLSTATE from a real server', async function () {
      // The one test here that needs a server: `npm test` runs it, `npm run test:unit` cannot.
      if (!process.env.SESSION_PGSQL_TEST_DB) this.skip();
      const table = uniqueTable();
      const missing = new SessionPgsql({ db: db(1), table, createTable: false, gcInterval: 0 });
      const handler = new SessionPgsql({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      try {
        const err = await rejection(openTheStore(missing));
        expect(err.code).to.equal(ErrorCode.TableMissing);
        expectCallerFrames(err, 'openTheStore', 'open');

        await handler.open();
        await query(0, `ALTER TABLE ${table} ADD CHECK (length(sess_data) < 5)`);
        const check = await rejection(saveTheCart(handler, ID));
        expect(check.code).to.equal('23514');
        expectCallerFrames(check, 'saveTheCart', 'write');
      } finally {
        await Promise.all([missing.close(), handler.close()]);
        await query(0, `DROP TABLE IF EXISTS ${table}`);
      }
    });
  });

  describe('the type of `code`', () => {
    // What an editor sees: completions and diagnostics from the TypeScript language service.
    function service(source: string) {
      const file = path.join(__dirname, '__code_type_probe.ts');
      const options: ts.CompilerOptions = {
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        esModuleInterop: true,
        skipLibCheck: true,
        types: ['node'],
        noEmit: true,
      };
      const host: ts.LanguageServiceHost = {
        getCompilationSettings: () => options,
        getScriptFileNames: () => [file],
        getScriptVersion: () => '1',
        getScriptSnapshot: (name) => {
          if (name === file) return ts.ScriptSnapshot.fromString(source);
          const text = ts.sys.readFile(name);
          return text === undefined ? undefined : ts.ScriptSnapshot.fromString(text);
        },
        getCurrentDirectory: () => path.join(__dirname, '..'),
        getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
        fileExists: ts.sys.fileExists,
        readFile: ts.sys.readFile,
        readDirectory: ts.sys.readDirectory,
        directoryExists: ts.sys.directoryExists,
        getDirectories: ts.sys.getDirectories,
      };
      return { file, ls: ts.createLanguageService(host) };
    }

    it("offers the SPG_* codes after `err.code === '` and accepts any SQLSTATE", function () {
      this.timeout(60_000);
      const source = [
        "import { SessionPgsqlError } from '../lib';",
        'export function probe(err: SessionPgsqlError): boolean {',
        "  if (err.code === '57P01') return true;",
        "  return err.code === '';",
        '}',
      ].join('\n');
      const { file, ls } = service(source);
      const at = source.indexOf("=== '';") + "=== '".length;
      const names = (ls.getCompletionsAtPosition(file, at, {})?.entries ?? []).map((e) => e.name);
      expect(names).to.include.members(Object.values(ErrorCode));
      const problems = [...ls.getSyntacticDiagnostics(file), ...ls.getSemanticDiagnostics(file)];
      expect(
        problems.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')),
      ).to.deep.equal([]);
    });
  });
  describe('one list of codes', () => {
    // The native core names its codes in native/errors.h; ErrorCode is the list users see. The
    // codes only the facade raises (before or without the addon) are the difference.
    const FACADE_ONLY = ['SPG_INVALID_ID', 'SPG_ADDON_UNAVAILABLE'];

    it("native/errors.h's codes are ErrorCode's, less the facade's own", () => {
      const header = fs.readFileSync(path.join(__dirname, '../native/errors.h'), 'utf8');
      const native = [...header.matchAll(/constexpr const char\* k\w+ = "(SPG_\w+)"/g)].map(
        (m) => m[1],
      );
      expect(native).to.have.length.above(10);
      const facade = Object.values(ErrorCode).filter((c) => !FACADE_ONLY.includes(c));
      expect([...native].sort()).to.deep.equal([...facade].sort());
    });

    it('docs/api.md documents every code under its own heading', () => {
      const api = fs.readFileSync(path.join(__dirname, '../docs/api.md'), 'utf8');
      const headings = [...api.matchAll(/^### `(SPG_\w+)`/gm)].map((m) => m[1]);
      expect([...headings].sort()).to.deep.equal(Object.values(ErrorCode).sort());
    });
  });
});
