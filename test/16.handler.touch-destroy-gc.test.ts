// touch() refreshes only the expiry of a live session; destroy() deletes; gc() removes expired
// rows (and only those) on every server, in batches, honouring keepExpired's grace period.
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';
import { rejection } from './support/errors';
import { handlerFactory } from './support/handlers';
import { idsIn, sessionRow } from './support/rows';

const LIFETIME = 100;
const NOW = 'floor(extract(epoch from now()))::bigint';

describe('16 handler: touch(), destroy(), gc()', () => {
  let table: string;
  const handlers = handlerFactory();
  /** An open handler on this test's table (server 0, housekeeping timers off). */
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: LIFETIME, ...options });
  }
  function row(id: string, server = 0) {
    return sessionRow(table, id, server);
  }
  function ids(server = 0): Promise<string[]> {
    return idsIn(table, server);
  }
  /** Sets sess_expire to now + offset seconds (database clock). */
  async function expireIn(id: string, offset: number, server = 0): Promise<void> {
    await query(
      server,
      `UPDATE ${table} SET sess_expire = ${NOW} + $2::bigint WHERE sess_id = $1`,
      [id, offset],
    );
  }

  beforeEach(() => {
    table = uniqueTable();
  });

  describe('touch()', () => {
    it('refreshes sess_expire to now + maxLifetime; data, counter and modified unchanged', async () => {
      const handler = await make();
      const id = newId();
      const s = await handler.read(id, { address: '192.0.2.1' });
      s.setField('c');
      await handler.write(s, 'data');
      await query(0, `UPDATE ${table} SET sess_modified = 2000 WHERE sess_id = $1`, [id]);
      await expireIn(id, 10);
      const before = (await row(id))!;
      expect(await handler.touch(id)).to.equal(true);
      const after = (await row(id))!;
      const [now] = await query<{ now: string }>(0, `SELECT ${NOW} AS now`);
      expect(Number(after.sess_expire)).to.be.within(
        Number(now!.now) + LIFETIME - 5,
        Number(now!.now) + LIFETIME,
      );
      expect({ ...after, sess_expire: null }).to.deep.equal({ ...before, sess_expire: null });
      expect(after.sess_modified).to.equal('2000');
      expect(after.sess_counter).to.equal(1);
      expect(after.sess_data).to.equal('data');
    });

    it('with expires: sets exactly that time', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      const expires = Math.floor(Date.now() / 1000) + 99999;
      expect(await handler.touch(id, expires)).to.equal(true);
      expect(Number((await row(id))!.sess_expire)).to.equal(expires);
    });

    it('a missing id resolves false and creates nothing', async () => {
      const handler = await make();
      expect(await handler.touch(newId())).to.equal(false);
      expect(await ids()).to.deep.equal([]);
    });

    it('an expired id resolves false and is not revived', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      await expireIn(id, -5);
      const before = (await row(id))!;
      expect(await handler.touch(id)).to.equal(false);
      expect(await row(id)).to.deep.equal(before);
      expect((await handler.read(id)).expired).to.equal(true);
    });

    it('a bad expires rejects SPG_INVALID_ARGUMENT and changes nothing', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      const before = (await row(id))!;
      for (const expires of [Number.NaN, Number.NEGATIVE_INFINITY, '100' as unknown as number]) {
        expect((await rejection(handler.touch(id, expires))).code).to.equal(
          ErrorCode.InvalidArgument,
        );
      }
      expect(await row(id)).to.deep.equal(before);
    });
  });

  describe('destroy()', () => {
    it('removes the row and resolves true; again or for a missing id resolves false', async () => {
      const handler = await make();
      const [a, b] = [newId(), newId()];
      await handler.write(a, 'a');
      await handler.write(b, 'b');
      expect(await handler.destroy(a)).to.equal(true);
      expect(await ids()).to.deep.equal([b]);
      expect(await handler.destroy(a)).to.equal(false);
      expect(await handler.destroy(newId())).to.equal(false);
      expect(await ids()).to.deep.equal([b]);
      const s = await handler.read(a);
      expect(s.isNew).to.equal(true);
      expect(s.data).to.equal('');
    });

    it('removes an expired row too', async () => {
      const handler = await make();
      const id = newId();
      await handler.write(id, 'x');
      await expireIn(id, -100);
      expect(await handler.destroy(id)).to.equal(true);
      expect(await ids()).to.deep.equal([]);
    });

    it('with 3 servers: removes the row wherever the id maps', async () => {
      const handler = await make({ db: db(3) });
      const all = Array.from({ length: 9 }, () => newId());
      await Promise.all(all.map((id) => handler.write(id, 'x')));
      for (const id of all) expect(await handler.destroy(id), id).to.equal(true);
      for (let i = 0; i < 3; i++) expect(await ids(i)).to.deep.equal([]);
    });
  });

  describe('gc()', () => {
    it('removes expired rows, and only those, resolving their count', async () => {
      const handler = await make();
      const live = Array.from({ length: 5 }, () => newId());
      const dead = Array.from({ length: 7 }, () => newId());
      await Promise.all([...live, ...dead].map((id) => handler.write(id, 'x')));
      for (const [i, id] of dead.entries()) await expireIn(id, -1 - i * 1000);
      await expireIn(live[0]!, 2); // about to expire, not yet
      expect(await handler.gc()).to.equal(7);
      expect(await ids()).to.deep.equal([...live].sort());
      expect(await handler.gc()).to.equal(0);
      expect(await ids()).to.have.length(5);
    });

    it('on an empty table resolves 0', async () => {
      const handler = await make();
      expect(await handler.gc()).to.equal(0);
    });

    it('keepExpired: keeps rows expired less than maxLifetime ago, removes older ones', async () => {
      const handler = await make({ keepExpired: true });
      const recent = [newId(), newId()];
      const old = [newId(), newId(), newId()];
      const live = newId();
      await Promise.all([...recent, ...old, live].map((id) => handler.write(id, 'x')));
      await expireIn(recent[0]!, -10);
      await expireIn(recent[1]!, -(LIFETIME - 10));
      await expireIn(old[0]!, -(LIFETIME + 10));
      await expireIn(old[1]!, -1000);
      await expireIn(old[2]!, -100000);
      expect(await handler.gc()).to.equal(3);
      expect(await ids()).to.deep.equal([...recent, live].sort());
      // the kept rows still carry their metadata for the returning visitor
      const s = await handler.read(recent[0]!);
      expect(s.expired).to.equal(true);
      expect(s.info().accesses).to.equal(2);
    });

    it('without keepExpired the same recently expired rows are removed', async () => {
      const handler = await make();
      const recent = newId();
      await handler.write(recent, 'x');
      await expireIn(recent, -10);
      expect(await handler.gc()).to.equal(1);
      expect(await ids()).to.deep.equal([]);
    });

    it('empties a table of 2500 expired rows (several batches)', async function () {
      this.timeout(60_000);
      const handler = await make();
      const keep = newId();
      await handler.write(keep, 'live');
      await query(
        0,
        `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
           sess_expire, sess_counter, sess_error, sess_warning, sess_notice, sess_custom)
         SELECT 'expired-row-' || lpad(g::text, 8, '0'), 'SID', 'd', 1000, 1000, 1000 + g, 1, 0, 0, 0, ''
         FROM generate_series(1, 2500) g`,
      );
      expect(await handler.gc()).to.equal(2500);
      expect(await ids()).to.deep.equal([keep]);
    });

    it('with 3 servers: runs on every server and sums the counts', async () => {
      const handler = await make({ db: db(3) });
      const counts = [3, 4, 5];
      for (const [server, n] of counts.entries()) {
        await query(
          server,
          `INSERT INTO ${table} (sess_id, sess_name, sess_data, sess_created, sess_modified,
             sess_expire, sess_counter, sess_error, sess_warning, sess_notice, sess_custom)
           SELECT 'gc-' || $1::text || '-' || lpad(g::text, 20, '0'), 'SID', 'd', 1, 1, 1, 1, 0, 0, 0, ''
           FROM generate_series(1, $2::int) g`,
          [server, n],
        );
      }
      expect(await handler.gc()).to.equal(12);
      for (let i = 0; i < 3; i++) expect(await ids(i)).to.deep.equal([]);
    });

    it('gc() runs whenever called, not throttled by gcInterval', async () => {
      const handler = await make({ gcInterval: 3600 });
      await handler.gc(); // a run now: no interval-driven run can claim this hour any more
      for (let round = 0; round < 3; round++) {
        const id = newId();
        await handler.write(id, 'x');
        await expireIn(id, -1);
        expect(await handler.gc(), `round ${round}`).to.equal(1);
      }
    });
  });
});
