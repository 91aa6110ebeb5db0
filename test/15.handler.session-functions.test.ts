// The per-session functions (the original session_pgsql_info/set_field/get_field/add_error/
// get_error) and the isolation of each request's state.
import { expect } from 'chai';
import {
  ErrorCode,
  SessionPgsql,
  SessionPgsqlError,
  type ErrorLevel,
  type SessionPgsqlOptions,
} from '../lib';
import { db, newId, query, servers, uniqueTable } from './support/db';
import { thrown } from './support/errors';
import { handlerFactory } from './support/handlers';
import { sessionRow } from './support/rows';

describe('15 handler: Session functions', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: 100, ...options });
  }
  function row(id: string, server = 0) {
    return sessionRow(table, id, server);
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('info()', () => {
    it('for a new session: accesses 1, zeros and empty strings, the server it maps to', async () => {
      const handler = await make();
      const id = newId();
      const info = (await handler.read(id, { address: '192.0.2.1' })).info();
      expect(info).to.deep.equal({
        sessionId: id,
        serverId: 0,
        server: handler.status().servers[0]!.server,
        accesses: 1,
        errors: 0,
        warnings: 0,
        notices: 0,
        created: 0,
        modified: 0,
        expires: 0,
        addressCreated: '',
        addressModified: '',
        custom: '',
      });
      const port = /port=(\d+)/.exec(servers()[0]!)![1]!;
      expect(info.server).to.include(`port=${port}`);
    });

    it('for an existing session: accesses = stored counter + 1, the stored values', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id, { address: '192.0.2.1' });
      s.setField('user:7');
      s.addError('warning', 'w');
      await handler.write(s, 'x');
      await handler.write(await handler.read(id, { address: '192.0.2.2' }), 'y');
      await query(
        0,
        `UPDATE ${table} SET sess_counter = 41, sess_created = 1000, sess_modified = 2000,
           sess_expire = 4000000000 WHERE sess_id = $1`,
        [id],
      );
      const info = (await handler.read(id, { address: '192.0.2.3' })).info();
      expect(info).to.deep.equal({
        sessionId: id,
        serverId: 0,
        server: handler.status().servers[0]!.server,
        accesses: 42,
        errors: 0,
        warnings: 1,
        notices: 0,
        created: 1000,
        modified: 2000,
        expires: 4000000000,
        addressCreated: '192.0.2.1',
        addressModified: '192.0.2.2',
        custom: 'user:7',
      });
    });

    it('includes this request’s setField and addError', async () => {
      const handler = await make();
      const s = await handler.read(newId());
      s.setField('now');
      s.addError('error');
      s.addError('notice');
      const info = s.info();
      expect(info.custom).to.equal('now');
      expect([info.errors, info.warnings, info.notices]).to.deep.equal([1, 0, 1]);
    });

    it('with 3 servers: serverId and server name where the row actually lives', async () => {
      const handler = await make({ db: db(3) });
      const ids = Array.from({ length: 12 }, () => newId());
      await Promise.all(ids.map((id) => handler.write(id, 'x')));
      const seen = new Set<number>();
      for (const id of ids) {
        const info = (await handler.read(id)).info();
        const holders: number[] = [];
        for (let i = 0; i < 3; i++) if (await row(id, i)) holders.push(i);
        expect(holders, id).to.deep.equal([info.serverId]);
        const port = /port=(\d+)/.exec(servers()[info.serverId]!)![1]!;
        expect(info.server).to.include(`port=${port}`);
        expect(info.server).to.equal(handler.status().servers[info.serverId]!.server);
        seen.add(info.serverId);
      }
      expect(seen.size, 'sessions spread over more than one server').to.be.greaterThan(1);
    });
  });

  describe('setField() / getField()', () => {
    it("getField is '' for a new session, the value set, then the stored value", async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      expect(s.getField()).to.equal('');
      s.setField('a');
      s.setField('b ü 😀');
      expect(s.getField()).to.equal('b ü 😀');
      await handler.write(s, 'x');
      expect((await handler.read(id)).getField()).to.equal('b ü 😀');
      expect((await row(id))!.sess_custom).to.equal('b ü 😀');
    });

    it('setField of a non-string throws SPG_INVALID_ARGUMENT and changes nothing', async () => {
      const handler = await make({ shortCircuit: true });
      const id = newId();
      const s0 = await handler.read(id);
      s0.setField('kept');
      await handler.write(s0, 'x');
      const s = await handler.read(id);
      for (const value of [42, null, undefined, {}, ['a']]) {
        const err = thrown(() => s.setField(value as unknown as string));
        expect(err.code).to.equal(ErrorCode.InvalidArgument);
      }
      expect(s.getField()).to.equal('kept');
      expect(await handler.write(s, 'x')).to.equal(false); // nothing was forced
    });
  });

  describe('addError()', () => {
    it('counts names and PHP E_* numbers: error 1 256, warning 2 512, notice 8 1024', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      const levels: ErrorLevel[] = [
        'error',
        1,
        256,
        'warning',
        2,
        512,
        'warning',
        'notice',
        8,
        1024,
      ];
      for (const level of levels) s.addError(level);
      expect(await s.getError()).to.deep.equal({ errors: 3, warnings: 4, notices: 3 });
      expect(s.info()).to.include({ errors: 3, warnings: 4, notices: 3 });
      await handler.write(s, 'x');
      const r = (await row(id))!;
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([3, 4, 3]);
    });

    it('adds to the stored counts', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      await query(
        0,
        `UPDATE ${table} SET sess_error = 10, sess_warning = 20, sess_notice = 30 WHERE sess_id = $1`,
        [id],
      );
      const s = await handler.read(id);
      expect(await s.getError()).to.deep.equal({ errors: 10, warnings: 20, notices: 30 });
      s.addError('notice');
      expect(await s.getError()).to.deep.equal({ errors: 10, warnings: 20, notices: 31 });
      await handler.write(s, 'x');
      expect((await row(id))!.sess_notice).to.equal(31);
    });

    const UNKNOWN: unknown[] = ['fatal', 'Error', 'ERROR', 4, 0, -1, 16, 1.5, '', null, true, {}];
    it(`an unknown level throws SPG_INVALID_ARGUMENT and changes nothing (${UNKNOWN.length} levels)`, async () => {
      const handler = await make({ shortCircuit: true });
      const id = newId();
      const first = await handler.read(id);
      first.addError('error', 'stored message');
      await handler.write(first, 'x');
      const s = await handler.read(id);
      for (const level of UNKNOWN) {
        const err = thrown(() => s.addError(level as ErrorLevel, 'ignored message'));
        expect(err.code, String(level)).to.equal(ErrorCode.InvalidArgument);
      }
      expect(await s.getError(true)).to.deep.equal({
        errors: 1,
        warnings: 0,
        notices: 0,
        message: 'stored message',
      });
      expect(await handler.write(s, 'x'), 'the next write is not forced').to.equal(false);
      expect((await row(id))!.sess_counter).to.equal(1);
    });

    it('level names inherited from Object.prototype are unknown levels too', async () => {
      const handler = await make({ shortCircuit: true });
      const id = newId();
      await handler.write(id, 'x');
      const s = await handler.read(id);
      for (const level of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
        let err: unknown = null;
        try {
          s.addError(level as ErrorLevel);
        } catch (e) {
          err = e;
        }
        expect(err, `addError(${JSON.stringify(level)}) must throw`).to.be.instanceOf(
          SessionPgsqlError,
        );
        expect((err as SessionPgsqlError).code).to.equal(ErrorCode.InvalidArgument);
      }
      expect(await s.getError()).to.deep.equal({ errors: 0, warnings: 0, notices: 0 });
    });

    it('a non-string message throws SPG_INVALID_ARGUMENT and counts nothing', async () => {
      const handler = await make();
      const s = await handler.read(newId());
      const err = thrown(() => s.addError('error', 42 as unknown as string));
      expect(err.code).to.equal(ErrorCode.InvalidArgument);
      expect(await s.getError(true)).to.deep.equal({
        errors: 0,
        warnings: 0,
        notices: 0,
        message: '',
      });
    });
  });

  describe('getError()', () => {
    it('without withMessage: the counts only', async () => {
      const handler = await make();
      const s = await handler.read(newId());
      s.addError('error', 'm');
      const result = await s.getError();
      expect(result).to.deep.equal({ errors: 1, warnings: 0, notices: 0 });
      expect(result).to.not.have.property('message');
      expect(await s.getError(false)).to.deep.equal({ errors: 1, warnings: 0, notices: 0 });
    });

    it("the message: from this request, else from the table, '' when there is none", async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      expect((await s.getError(true)).message).to.equal(''); // new session
      s.addError('warning', 'this request');
      expect((await s.getError(true)).message).to.equal('this request');
      await handler.write(s, 'x');

      const t = await handler.read(id);
      expect((await t.getError(true)).message).to.equal('this request'); // from the table
      t.addError('notice', 'newer');
      expect((await t.getError(true)).message).to.equal('newer');

      const other = newId();
      await handler.write(other, 'no message'); // row with a NULL message
      expect((await (await handler.read(other)).getError(true)).message).to.equal('');
    });

    it('the table message is read when asked (a change by another request shows)', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      const s = await handler.read(id);
      expect((await s.getError(true)).message).to.equal('');
      await query(0, `UPDATE ${table} SET sess_err_message = 'set elsewhere' WHERE sess_id = $1`, [
        id,
      ]);
      expect((await s.getError(true)).message).to.equal('set elsewhere');
    });
  });

  describe("a Session's state is its own", () => {
    it('two concurrent reads of one id: setField/addError on one never show on the other', async () => {
      const handler = await make();
      const id = newId();
      const seed = await handler.read(id);
      seed.setField('stored');
      seed.addError('error', 'stored message');
      await handler.write(seed, 'x');

      const [a, b] = await Promise.all([handler.read(id), handler.read(id)]);
      a!.setField('a only');
      a!.addError('warning', 'a message');
      a!.addError('notice');
      expect(b!.getField()).to.equal('stored');
      expect(b!.info()).to.include({
        custom: 'stored',
        errors: 1,
        warnings: 0,
        notices: 0,
        accesses: 2,
      });
      expect(await b!.getError(true)).to.deep.equal({
        errors: 1,
        warnings: 0,
        notices: 0,
        message: 'stored message',
      });
      b!.setField('b only');
      expect(a!.getField()).to.equal('a only');
      expect(a!.info()).to.include({ custom: 'a only', errors: 1, warnings: 1, notices: 1 });
    });

    it('a new session read after another request set errors starts from zero (original leaked them)', async () => {
      const handler = await make();
      const a = await handler.read(newId());
      a.addError('error', 'request A');
      a.setField('A');
      const b = await handler.read(newId());
      expect(b.info()).to.include({ errors: 0, warnings: 0, notices: 0, custom: '', accesses: 1 });
      expect(await b.getError(true)).to.deep.equal({
        errors: 0,
        warnings: 0,
        notices: 0,
        message: '',
      });
    });

    it('after a write, a Session read earlier keeps its own snapshot', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'v1');
      const [a, b] = await Promise.all([handler.read(id), handler.read(id)]);
      a!.setField('from a');
      await handler.write(a!, 'v2');
      expect(b!.data).to.equal('v1');
      expect(b!.getField()).to.equal('');
      expect(b!.info().accesses).to.equal(2);
    });
  });
});
