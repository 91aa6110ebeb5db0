// Expired rows (sess_expire < now): without keepExpired they read as new and the next write
// replaces them; with keepExpired their metadata is kept and the row is updated.
import { expect } from 'chai';
import { SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { newId, query, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import { storedRows, type StoredRow } from './support/rows';

describe('14 handler: expired sessions and keepExpired', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: 100, ...options });
  }
  /** The one row of `id`. */
  async function row(id: string): Promise<StoredRow> {
    const rows = await storedRows(table, id);
    expect(rows).to.have.length(1);
    return rows[0]!;
  }
  /**
   * A session with metadata (counter 5, custom, errors, message, addresses, created 1000)
   * that expired 10 seconds ago.
   */
  async function expiredSession(handler: SessionPgsql): Promise<string> {
    const id = newId();
    const s = await handler.read(id, { address: '192.0.2.1' });
    s.setField('cust');
    s.addError('error', 'old message');
    s.addError('warning');
    await handler.write(s, 'old data');
    await handler.write(await handler.read(id, { address: '192.0.2.2' }), 'old data');
    await query(
      0,
      `UPDATE ${table} SET sess_counter = 5, sess_created = 1000, sess_modified = 2000,
         sess_expire = floor(extract(epoch from now()))::bigint - 10 WHERE sess_id = $1`,
      [id],
    );
    return id;
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('keepExpired false (default)', () => {
    it("read: expired true, isNew true, data '' and no metadata", async () => {
      const handler = await make();
      const id = await expiredSession(handler);
      const s = await handler.read(id, { address: '198.51.100.1' });
      expect(s.expired).to.equal(true);
      expect(s.isNew).to.equal(true);
      expect(s.data).to.equal('');
      const info = s.info();
      expect(info.accesses).to.equal(1);
      expect(info.custom).to.equal('');
      expect(info.created).to.equal(0);
      expect([info.errors, info.warnings, info.notices]).to.deep.equal([0, 0, 0]);
      expect(info.addressCreated).to.equal('');
      expect(s.getField()).to.equal('');
      expect((await s.getError(true)).message).to.equal('');
    });

    it('the next write replaces the row: counter 1, new created and address, custom cleared', async () => {
      const id = await expiredSession(await make());
      const handler = await make({ sessionName: 'NEWNAME' });
      const s = await handler.read(id, { address: '198.51.100.1' });
      expect(await handler.write(s, 'fresh')).to.equal(true);
      const r = await row(id);
      expect(r.sess_data).to.equal('fresh');
      expect(r.sess_counter).to.equal(1);
      expect(r.sess_created).to.not.equal(1000);
      expect(Math.abs(r.sess_created - Date.now() / 1000)).to.be.below(5);
      expect(r.sess_modified).to.equal(r.sess_created);
      expect(r.sess_expire).to.equal(r.sess_created + 100);
      expect(r.sess_addr_created).to.equal('198.51.100.1');
      expect(r.sess_addr_modified).to.equal(null);
      expect(r.sess_custom).to.equal('');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([0, 0, 0]);
      expect(r.sess_err_message === null || r.sess_err_message === '').to.equal(true);
      expect(r.sess_name).to.equal('NEWNAME');
    });

    it('the replacing write carries this request’s custom and errors only', async () => {
      const handler = await make();
      const id = await expiredSession(handler);
      const s = await handler.read(id);
      s.setField('new custom');
      s.addError('notice', 'new message');
      await handler.write(s, 'fresh');
      const r = await row(id);
      expect(r.sess_custom).to.equal('new custom');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([0, 0, 1]);
      expect(r.sess_err_message).to.equal('new message');
      expect(r.sess_counter).to.equal(1);
    });

    it('a plain write(id, data) over an expired row replaces it too', async () => {
      const handler = await make();
      const id = await expiredSession(handler);
      await handler.write(id, 'plain');
      const r = await row(id);
      expect(r.sess_counter).to.equal(1);
      expect(r.sess_created).to.not.equal(1000);
      expect(r.sess_custom).to.equal('');
    });

    it('a row with sess_expire exactly now - 1 is expired; now + 2 is not', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'edge');
      await query(
        0,
        `UPDATE ${table} SET sess_expire = floor(extract(epoch from now()))::bigint - 1 WHERE sess_id = $1`,
        [id],
      );
      expect((await handler.read(id)).expired).to.equal(true);
      await query(
        0,
        `UPDATE ${table} SET sess_expire = floor(extract(epoch from now()))::bigint + 2 WHERE sess_id = $1`,
        [id],
      );
      const live = await handler.read(id);
      expect(live.expired).to.equal(false);
      expect(live.data).to.equal('edge');
    });
  });

  describe('keepExpired true', () => {
    it("read: expired true, isNew false, data '' but the metadata is kept", async () => {
      const handler = await make({ keepExpired: true });
      const id = await expiredSession(handler);
      const s = await handler.read(id, { address: '198.51.100.1' });
      expect(s.expired).to.equal(true);
      expect(s.isNew).to.equal(false);
      expect(s.data).to.equal('');
      const info = s.info();
      expect(info.accesses).to.equal(6);
      expect(info.custom).to.equal('cust');
      expect(info.created).to.equal(1000);
      expect(info.modified).to.equal(2000);
      expect(info.expires).to.be.below(Date.now() / 1000);
      expect([info.errors, info.warnings, info.notices]).to.deep.equal([1, 1, 0]);
      expect(info.addressCreated).to.equal('192.0.2.1');
      expect(info.addressModified).to.equal('192.0.2.2');
      expect((await s.getError(true)).message).to.equal('old message');
      expect(handler.status().keepExpired).to.equal(true);
    });

    it('write updates the row: created kept, counter + 1, expire refreshed', async () => {
      const id = await expiredSession(await make({ keepExpired: true }));
      const handler = await make({ keepExpired: true, sessionName: 'NEWNAME' });
      const s = await handler.read(id, { address: '198.51.100.1' });
      expect(await handler.write(s, 'revived')).to.equal(true);
      const r = await row(id);
      expect(r.sess_data).to.equal('revived');
      expect(r.sess_counter).to.equal(6);
      expect(r.sess_created).to.equal(1000);
      expect(r.sess_modified).to.not.equal(2000);
      expect(r.sess_expire).to.equal(r.sess_modified + 100);
      expect(r.sess_expire).to.be.greaterThan(Date.now() / 1000);
      expect(r.sess_addr_created).to.equal('192.0.2.1');
      expect(r.sess_addr_modified).to.equal('198.51.100.1');
      expect(r.sess_custom).to.equal('cust');
      expect([r.sess_error, r.sess_warning, r.sess_notice]).to.deep.equal([1, 1, 0]);
      expect(r.sess_err_message).to.equal('old message');
      expect(r.sess_name).to.equal('SID'); // kept from the insert
      // and it reads as a live session again
      const again = await handler.read(id);
      expect(again.expired).to.equal(false);
      expect(again.data).to.equal('revived');
      expect(again.info().accesses).to.equal(7);
    });

    it('a plain write(id, data) over an expired row keeps the metadata too', async () => {
      const handler = await make({ keepExpired: true });
      const id = await expiredSession(handler);
      await handler.write(id, 'plain');
      const r = await row(id);
      expect(r.sess_counter).to.equal(6);
      expect(r.sess_created).to.equal(1000);
      expect(r.sess_custom).to.equal('cust');
    });

    it('a new id is still new (isNew true, expired false)', async () => {
      const handler = await make({ keepExpired: true });
      const s = await handler.read(newId());
      expect(s.isNew).to.equal(true);
      expect(s.expired).to.equal(false);
    });
  });
});
