// The column values a PHP deployment sharing the table sees after an insert and after an
// update (docs/operations.md, The table), with its bugs fixed: error counts of the
// inserting request are stored, custom can be cleared, the counter is incremented in SQL.
import { expect } from 'chai';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import { storedRows, type StoredRow } from './support/rows';

const LIFETIME = 100;

describe('12 handler: column values after insert and update', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: LIFETIME, sessionName: 'MYSESSID', ...options });
  }
  /** The one row of `id`, its times as numbers. */
  async function row(id: string): Promise<StoredRow> {
    const rows = await storedRows(table, id);
    expect(rows, `rows for ${id}`).to.have.length(1);
    return rows[0]!;
  }
  async function dbNow(): Promise<number> {
    const [r] = await query<{ now: number }>(0, 'SELECT extract(epoch from now())::float8 AS now');
    return r!.now;
  }
  // Makes the stored times old, so an update that refreshes them is visible.
  async function age(id: string): Promise<void> {
    await query(
      0,
      `UPDATE ${table} SET sess_created = 1000, sess_modified = 2000,
         sess_expire = floor(extract(epoch from now()))::bigint + 50 WHERE sess_id = $1`,
      [id],
    );
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('after the first write (INSERT)', () => {
    it('counter 1, created = modified = now (database clock), expire = now + maxLifetime', async () => {
      const handler = await make();
      const id = newId();
      const before = await dbNow();
      await handler.write(await handler.read(id, { address: '192.0.2.10' }), 'data');
      const after = await dbNow();
      const r = await row(id);
      expect(r.sess_counter).to.equal(1);
      expect(r.sess_created).to.equal(r.sess_modified);
      expect(r.sess_created).to.be.within(Math.floor(before), Math.ceil(after));
      expect(Math.abs(r.sess_created - Date.now() / 1000)).to.be.below(5);
      expect(r.sess_expire).to.equal(r.sess_modified + LIFETIME);
      expect(Number.isInteger(r.sess_created)).to.equal(true);
    });

    it('addr_created = the read address, addr_modified NULL, name = sessionName, data stored', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id, { address: '2001:db8::1' }), 'payload');
      const r = await row(id);
      expect(r.sess_addr_created).to.equal('2001:db8::1');
      expect(r.sess_addr_modified).to.equal(null);
      expect(r.sess_name).to.equal('MYSESSID');
      expect(r.sess_data).to.equal('payload');
      expect(r.sess_id).to.equal(id);
    });

    it("with no address given, addr_created is ''", async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id), 'x');
      expect((await row(id)).sess_addr_created).to.equal('');
    });

    it('the default sessionName is SID and the default maxLifetime is 1440', async () => {
      const handler = await make({ sessionName: undefined, maxLifetime: undefined });
      const id = newId();
      await handler.write(await handler.read(id), 'x');
      const r = await row(id);
      expect(r.sess_name).to.equal('SID');
      expect(r.sess_expire - r.sess_modified).to.equal(1440);
    });

    it("custom '' and error counts 0, err_message unset, when nothing was set", async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id), 'x');
      const r = await row(id);
      expect(r.sess_custom).to.equal('');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([0, 0, 0]);
      expect(r.sess_err_message === null || r.sess_err_message === '').to.equal(true);
    });

    it('error counts and message of this request ARE stored (the original dropped them)', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.addError('warning', 'first');
      s.addError(512);
      s.addError('notice', 'last message');
      s.addError('error');
      await handler.write(s, 'x');
      const r = await row(id);
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([1, 2, 1]);
      expect(r.sess_err_message).to.equal('last message');
      expect(r.sess_counter).to.equal(1);
    });

    it('custom as set with setField', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.setField('user:42');
      await handler.write(s, 'x');
      expect((await row(id)).sess_custom).to.equal('user:42');
    });
  });

  describe('after an update', () => {
    it('counter 2, created unchanged, modified = now, expire refreshed', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id, { address: '192.0.2.1' }), 'v1');
      await age(id);
      const before = await dbNow();
      const s = await handler.read(id, { address: '192.0.2.2' });
      expect(await handler.write(s, 'v2')).to.equal(true);
      const r = await row(id);
      expect(r.sess_counter).to.equal(2);
      expect(r.sess_created).to.equal(1000);
      expect(r.sess_modified).to.be.at.least(Math.floor(before));
      expect(Math.abs(r.sess_modified - Date.now() / 1000)).to.be.below(5);
      expect(r.sess_expire).to.equal(r.sess_modified + LIFETIME);
      expect(r.sess_data).to.equal('v2');
    });

    it('addr_modified = the new address; addr_created and name unchanged', async () => {
      const first = await make();
      const id = newId();
      await first.write(await first.read(id, { address: '192.0.2.1' }), 'v1');
      const other = await make({ sessionName: 'OTHERNAME' });
      await other.write(await other.read(id, { address: '198.51.100.2' }), 'v2');
      const r = await row(id);
      expect(r.sess_addr_created).to.equal('192.0.2.1');
      expect(r.sess_addr_modified).to.equal('198.51.100.2');
      expect(r.sess_name).to.equal('MYSESSID');
    });

    it('an address given to write() overrides the read address', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id, { address: '192.0.2.1' }), 'v1');
      const s = await handler.read(id, { address: '192.0.2.2' });
      await handler.write(s, 'v2', { address: '192.0.2.3' });
      expect((await row(id)).sess_addr_modified).to.equal('192.0.2.3');
    });

    it('expires given to write() is stored as is', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(await handler.read(id), 'v1');
      const expires = Math.floor(Date.now() / 1000) + 7777;
      await handler.write(await handler.read(id), 'v2', { expires });
      expect((await row(id)).sess_expire).to.equal(expires);
    });

    it('custom untouched when not set in this request', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.setField('keep me');
      await handler.write(s, 'v1');
      await handler.write(await handler.read(id), 'v2');
      expect((await row(id)).sess_custom).to.equal('keep me');
      // and also by a plain write(id, data)
      await handler.write(id, 'v3');
      expect((await row(id)).sess_custom).to.equal('keep me');
    });

    it("custom cleared with setField('') is stored as '' (the original could not clear it)", async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.setField('old');
      await handler.write(s, 'v1');
      const t = await handler.read(id);
      expect(t.getField()).to.equal('old');
      t.setField('');
      await handler.write(t, 'v1');
      expect((await row(id)).sess_custom).to.equal('');
      expect((await handler.read(id)).getField()).to.equal('');
    });

    it('err_message replaced only when addError had a message; counts accumulate', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.addError('error', 'm1');
      await handler.write(s, 'v1');

      const t = await handler.read(id);
      t.addError('warning'); // no message
      await handler.write(t, 'v2');
      let r = await row(id);
      expect(r.sess_err_message).to.equal('m1');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([1, 1, 0]);

      await handler.write(await handler.read(id), 'v3'); // no addError at all
      r = await row(id);
      expect(r.sess_err_message).to.equal('m1');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([1, 1, 0]);

      const u = await handler.read(id);
      u.addError(1024, 'm2');
      u.addError(256);
      await handler.write(u, 'v4');
      r = await row(id);
      expect(r.sess_err_message).to.equal('m2');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([2, 1, 1]);
      expect(r.sess_counter).to.equal(4);
    });

    it("an empty message replaces the stored one with ''", async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id);
      s.addError('error', 'old');
      await handler.write(s, 'v1');
      const t = await handler.read(id);
      t.addError('notice', '');
      await handler.write(t, 'v2');
      expect((await row(id)).sess_err_message).to.equal('');
    });

    it('a PHP-written row (NULL counters and custom) is updated as PHP would read it', async () => {
      const handler = await make();
      const id = newId();
      await query(
        0,
        `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified, sess_expire,
           sess_addr_created) VALUES ($1, 'PHPSESSID', 'php', 1000, 1000,
           floor(extract(epoch from now()))::bigint + 60, '10.0.0.1')`,
        [id],
      );
      const s = await handler.read(id, { address: '10.0.0.2' });
      expect(s.isNew).to.equal(false);
      expect(s.data).to.equal('php');
      expect(s.info().accesses).to.equal(1);
      expect(s.getField()).to.equal('');
      s.addError('warning');
      await handler.write(s, 'node');
      const r = await row(id);
      expect(r.sess_counter).to.equal(1);
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([0, 1, 0]);
      expect(r.sess_name).to.equal('PHPSESSID');
      expect(r.sess_created).to.equal(1000);
      expect(r.sess_addr_created).to.equal('10.0.0.1');
      expect(r.sess_addr_modified).to.equal('10.0.0.2');
    });
  });
});
