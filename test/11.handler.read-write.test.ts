// read() and write(): new sessions, byte-identical round trips, plain upserts by id, rows that
// vanished since the read, concurrent writers, and Sessions that share an id.
import { expect } from 'chai';
import { Session, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import { allStoredRows, storedRows, type StoredRow } from './support/rows';

describe('11 handler: read() and write()', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, ...options });
  }
  /** The row of `id`, or every row (by id) when omitted. */
  function rows(id?: string): Promise<StoredRow[]> {
    return id === undefined ? allStoredRows(table) : storedRows(table, id);
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('a new session', () => {
    it("read resolves to a Session: isNew, not expired, data ''", async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id, { address: '203.0.113.9' });
      expect(s).to.be.instanceOf(Session);
      expect(s.id).to.equal(id);
      expect(s.isNew).to.equal(true);
      expect(s.expired).to.equal(false);
      expect(s.data).to.equal('');
    });

    it('read alone stores nothing', async () => {
      const handler = await make();
      await handler.read(newId());
      await handler.read(newId(), { address: '1.2.3.4' });
      expect(await rows()).to.have.length(0);
    });

    it('write resolves true and stores one row; the next read gives the data back', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      expect(await handler.write(s, 'counter|i:1;')).to.equal(true);
      expect((await rows(id)).map((r) => r.sess_data)).to.deep.equal(['counter|i:1;']);
      const again = await handler.read(id);
      expect(again.isNew).to.equal(false);
      expect(again.expired).to.equal(false);
      expect(again.data).to.equal('counter|i:1;');
    });

    it("writing '' stores an empty string (not NULL) and reads back ''", async () => {
      const handler = await make();
      const id = newId();
      expect(await handler.write(await handler.read(id), '')).to.equal(true);
      const [row] = await rows(id);
      expect(row!.sess_data).to.equal('');
      const again = await handler.read(id);
      expect(again.isNew).to.equal(false);
      expect(again.data).to.equal('');
    });
  });

  describe('byte-identical round trips', () => {
    // ~560 KB of UTF-8: 1-, 2-, 3- and 4-byte characters, quotes and backslashes
    const big = Array.from({ length: 40000 }, (_, i) => `é${i % 10}😀"\\'日x`).join('');
    const PAYLOADS: Array<[string, string]> = [
      ['ASCII', 'hello world'],
      ['Latin-1 and CJK', 'héllo wörld — 日本語 Ελληνικά'],
      ['emoji and combining marks', '😀👍🏽👨‍👩‍👧 e\u0301 \u200b'],
      ['quotes', `it's "quoted" \`backticked\` ''doubled''`],
      ['backslashes', 'C:\\path\\to\\file \\n \\x00 \\\\ \\'],
      ['SQL-looking text', "'); DROP TABLE php_session; -- $1 $$ E'\\n'"],
      ['control characters and newlines', '\t\r\n\u0001\u001f\u007f line\nbreak'],
      ['PHP serialize format', 'a|a:2:{s:1:"x";i:1;s:1:"y";s:3:"ü";}b|b:1;'],
      ['JSON', JSON.stringify({ user: 42, roles: ['a', 'b'], nested: { q: 'x"y' } })],
      ['over 500 KB of mixed text', big],
    ];
    for (const [what, data] of PAYLOADS) {
      it(what, async () => {
        const handler = await make();
        const id = newId();
        expect(await handler.write(await handler.read(id), data)).to.equal(true);
        const s = await handler.read(id);
        expect(s.data.length).to.equal(data.length);
        expect(s.data === data, 'read back byte-identical').to.equal(true);
        const [row] = await rows(id);
        expect(row!.sess_data === data, 'stored byte-identical').to.equal(true);
      });
    }

    it('the 500 KB payload is over 500 KB of UTF-8', () => {
      expect(Buffer.byteLength(big)).to.be.greaterThan(500 * 1024);
    });

    it('a Session can be written again with other data', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      await handler.write(s, 'first');
      await handler.write(s, 'second ✓');
      expect((await handler.read(id)).data).to.equal('second ✓');
      expect((await rows(id))[0]!.sess_counter).to.equal(2);
    });
  });

  describe('write(id, data, options): a plain upsert without a read', () => {
    it('inserts a new row, then updates it', async () => {
      const handler = await make();
      const id = newId();
      expect(await handler.write(id, 'one')).to.equal(true);
      let [row] = await rows(id);
      expect(row!.sess_data).to.equal('one');
      expect(row!.sess_counter).to.equal(1);
      expect(await handler.write(id, 'two')).to.equal(true);
      [row] = await rows(id);
      expect(row!.sess_data).to.equal('two');
      expect(row!.sess_counter).to.equal(2);
      expect((await handler.read(id)).data).to.equal('two');
    });

    it('stores the given expires (Unix seconds) and address', async () => {
      const handler = await make({ maxLifetime: 100 });
      const id = newId();
      const expires = Math.floor(Date.now() / 1000) + 5000;
      await handler.write(id, 'x', { expires, address: '198.51.100.7' });
      let [row] = await rows(id);
      expect(row!.sess_expire).to.equal(expires);
      expect(row!.sess_addr_created).to.equal('198.51.100.7');
      await handler.write(id, 'y', { expires: expires + 10.2, address: '198.51.100.8' });
      [row] = await rows(id);
      expect(row!.sess_expire).to.be.within(expires + 10, expires + 11);
      expect(row!.sess_addr_modified).to.equal('198.51.100.8');
    });

    it('without expires, the row expires maxLifetime after the write', async () => {
      const handler = await make({ maxLifetime: 100 });
      const id = newId();
      await handler.write(id, 'x');
      const [row] = await rows(id);
      expect(row!.sess_expire - row!.sess_modified).to.equal(100);
    });

    it('rejects a non-finite or non-number expires', async () => {
      const handler = await make();
      const id = newId();
      for (const expires of [Number.NaN, Number.POSITIVE_INFINITY, '123' as unknown as number]) {
        const err = await handler.write(id, 'x', { expires }).then(
          () => null,
          (e: { code: string }) => e,
        );
        expect(err, String(expires)).to.not.equal(null);
        expect(err!.code).to.equal('SPG_INVALID_ARGUMENT');
      }
      expect(await rows()).to.have.length(0);
    });
  });

  describe('a row that vanished since the read is stored again', () => {
    it('after a delete by another process', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'before');
      const s = await handler.read(id);
      expect(s.isNew).to.equal(false);
      await query(0, `DELETE FROM ${table} WHERE sess_id = $1`, [id]);
      expect(await handler.write(s, 'after')).to.equal(true);
      const stored = await rows(id);
      expect(stored).to.have.length(1);
      expect(stored[0]!.sess_data).to.equal('after');
      expect((await handler.read(id)).data).to.equal('after');
    });

    it('after destroy(), even with the data unchanged and shortCircuit off', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'same');
      const s = await handler.read(id);
      expect(await handler.destroy(id)).to.equal(true);
      expect(await handler.write(s, 'same')).to.equal(true);
      expect((await rows(id)).map((r) => r.sess_data)).to.deep.equal(['same']);
    });

    it('with shortCircuit on and the data changed', async () => {
      const handler = await make({ shortCircuit: true });
      const id = newId();
      await handler.write(id, 'v1');
      const s = await handler.read(id);
      await query(0, `DELETE FROM ${table} WHERE sess_id = $1`, [id]);
      expect(await handler.write(s, 'v2')).to.equal(true);
      expect((await rows(id)).map((r) => r.sess_data)).to.deep.equal(['v2']);
    });
  });

  describe('concurrency', () => {
    it('20 Sessions writing the same new id at once all succeed; one row, counter 20', async () => {
      const handler = await make();
      const id = newId();
      const sessions = await Promise.all(Array.from({ length: 20 }, () => handler.read(id)));
      for (const s of sessions) expect(s.isNew).to.equal(true);
      const results = await Promise.allSettled(sessions.map((s, i) => handler.write(s, `w${i}`)));
      for (const r of results) {
        expect(r.status, r.status === 'rejected' ? String(r.reason) : '').to.equal('fulfilled');
        if (r.status === 'fulfilled') expect(r.value).to.equal(true);
      }
      const stored = await rows(id);
      expect(stored).to.have.length(1);
      expect(stored[0]!.sess_counter).to.equal(20);
      expect(sessions.map((_, i) => `w${i}`)).to.include(stored[0]!.sess_data);
    });

    it('20 handlers (separate connections) inserting the same new id at once all succeed', async () => {
      const many = await Promise.all(Array.from({ length: 20 }, () => make()));
      const id = newId();
      const sessions = await Promise.all(many.map((h) => h.read(id)));
      const results = await Promise.allSettled(many.map((h, i) => h.write(sessions[i]!, `h${i}`)));
      for (const r of results) {
        expect(r.status, r.status === 'rejected' ? String(r.reason) : '').to.equal('fulfilled');
      }
      const stored = await rows(id);
      expect(stored).to.have.length(1);
      expect(stored[0]!.sess_counter).to.equal(20);
    });

    it('N concurrent writes to an existing session increase sess_counter by N (no lost increments)', async () => {
      const many = await Promise.all(Array.from({ length: 5 }, () => make()));
      const id = newId();
      await many[0]!.write(id, 'start');
      await query(0, `UPDATE ${table} SET sess_counter = 40 WHERE sess_id = $1`, [id]);
      const sessions = await Promise.all(
        Array.from({ length: 25 }, (_, i) => many[i % many.length]!.read(id)),
      );
      for (const s of sessions) expect(s.info().accesses).to.equal(41);
      await Promise.all(sessions.map((s, i) => many[i % many.length]!.write(s, `n${i}`)));
      const [row] = await rows(id);
      expect(row!.sess_counter).to.equal(40 + 25);
    });

    it('100 different sessions written and read in parallel each keep their own data', async () => {
      const handler = await make();
      const ids = Array.from({ length: 100 }, () => newId());
      await Promise.all(ids.map((id, i) => handler.write(id, `data-${i}`)));
      const read = await Promise.all(ids.map((id) => handler.read(id)));
      expect(read.map((s) => s.data)).to.deep.equal(ids.map((_, i) => `data-${i}`));
    });
  });

  describe('two Sessions for the same id', () => {
    it("don't share counters, fields or errors", async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'shared');
      const [a, b] = await Promise.all([handler.read(id), handler.read(id)]);
      a!.setField('only-a');
      a!.addError('error', 'a failed');
      a!.addError('warning');
      expect(b!.getField()).to.equal('');
      expect(b!.info().custom).to.equal('');
      const errors = await b!.getError(true);
      expect(errors).to.deep.equal({ errors: 0, warnings: 0, notices: 0, message: '' });
      expect(a!.info().errors).to.equal(1);
      expect(a!.info().warnings).to.equal(1);
      // b's write carries none of a's changes
      await handler.write(b!, 'from b');
      const [row] = await query<Record<string, unknown>>(
        0,
        `SELECT sess_custom, sess_error, sess_warning, sess_err_message FROM ${table} WHERE sess_id = $1`,
        [id],
      );
      expect(row).to.deep.equal({
        sess_custom: '',
        sess_error: 0,
        sess_warning: 0,
        sess_err_message: null,
      });
      await handler.write(a!, 'from a');
      const [after] = await query<Record<string, unknown>>(
        0,
        `SELECT sess_custom, sess_error, sess_warning, sess_err_message, sess_counter FROM ${table} WHERE sess_id = $1`,
        [id],
      );
      expect(after).to.deep.equal({
        sess_custom: 'only-a',
        sess_error: 1,
        sess_warning: 1,
        sess_err_message: 'a failed',
        sess_counter: 3,
      });
    });
  });
});
