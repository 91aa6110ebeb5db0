// SessionPgsqlError: its fields, and that every failure the library reports is one, with a
// stable code, `retryable` and `server` where they apply. No server is needed: the
// connection failures below go to a port nothing listens on.
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, SessionPgsqlError } from '../lib';
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
});
