// Connections per server (docs/api.md Options `connections`; one by default): each operation takes the least busy connection,
// except that an operation on a session with operations still pending follows them, so one
// session's operations run in the order they were issued. Reads issued together share a Sync;
// each still resolves with its own row. open() and reset() resolve once every connection is up.
//
// Evidence of which connection a write used: rows written by one batch share one transaction,
// hence one `xmin`; batches on two connections are two transactions.
import { expect } from 'chai';
import type { SessionPgsql, SessionPgsqlOptions } from '../lib';
import { db, newId, query, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import { addSlowCommit } from './support/triggers';
import { sleep } from './support/wait';

describe('61 connections per server', function () {
  this.timeout(60_000);

  let table: string;
  const handlers = handlerFactory();

  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ db: db(1), table, ...options });
  }

  /** Rows written per transaction (xmin) among the rows of `ids`. */
  async function transactionSizes(ids: string[]): Promise<number[]> {
    const found = await query<{ xmin: string; n: string }>(
      0,
      `SELECT xmin::text AS xmin, count(*) AS n FROM ${table} WHERE sess_id = ANY($1) GROUP BY 1`,
      [ids],
    );
    return found.map((r) => Number(r.n)).sort((a, b) => a - b);
  }

  /** Backends of this test's table's handler, by application_name. */
  async function backends(app: string): Promise<number> {
    const rows = await query<{ n: string }>(
      0,
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1`,
      [app],
    );
    return Number(rows[0]!.n);
  }

  beforeEach(() => {
    table = uniqueTable('t61');
  });

  it('opens one connection by default, and `connections` many when told', async () => {
    const one = `spg61_one_${newId().slice(0, 8).replace(/-/g, '_')}`;
    const four = `spg61_four_${newId().slice(0, 8).replace(/-/g, '_')}`;
    await make({ db: `${db(1)} application_name=${one}` });
    const h = await make({ db: `${db(1)} application_name=${four}`, connections: 4 });
    expect(await backends(one), 'default').to.equal(1);
    expect(await backends(four), 'connections: 4').to.equal(4);
    expect(h.status().servers[0]!.state, 'up once open() resolves').to.equal('up');
  });

  it('open() and reset() resolve once every one of 4 connections is up', async () => {
    const h = handlers.make({ db: db(1), table, connections: 4 });
    expect(await h.reset()).to.equal(true);
    expect(h.status().servers[0]!.state).to.equal('up');
    await h.write(newId(), 'x');
  });

  it('with connections: 2, 40 writes issued together spread over both: two batches of 20', async () => {
    const h = await make({ maxBatch: 64, connections: 2 });
    const ids = Array.from({ length: 40 }, () => newId());
    const stored = await Promise.all(ids.map((id, i) => h.write(id, `data ${i}`)));
    expect(stored.every((s) => s === true)).to.equal(true);
    expect(await transactionSizes(ids)).to.deep.equal([20, 20]);
  });

  it('with one connection (the default) the same 40 writes commit in one batch', async () => {
    const h = await make({ maxBatch: 64 });
    const ids = Array.from({ length: 40 }, () => newId());
    await Promise.all(ids.map((id, i) => h.write(id, `data ${i}`)));
    expect(await transactionSizes(ids)).to.deep.equal([40]);
  });

  it('one session’s operations issued together run in order, whatever the connections', async () => {
    for (const connections of [1, 2, 3]) {
      const h = await make({ connections });
      const ids = Array.from({ length: 12 }, () => newId());
      await Promise.all(ids.map((id) => h.write(id, 'v0')));
      // For every id in one tick: read, write v1, read, write v2, read, destroy, read. Busy
      // neighbours in the same tick make the least busy connection change between them.
      const seen = ids.map((id) => {
        const filler = Array.from({ length: 3 }, () => h.write(newId(), 'filler'));
        const steps = [
          h.read(id).then((s) => s.data),
          h.write(id, 'v1').then(String),
          h.read(id).then((s) => s.data),
          h.write(id, 'v2').then(String),
          h.read(id).then((s) => s.data),
          h.destroy(id).then(String),
          h.read(id).then((s) => (s.isNew ? 'gone' : s.data)),
        ];
        return Promise.all([...steps, ...filler]).then((all) => all.slice(0, steps.length));
      });
      for (const [i, steps] of (await Promise.all(seen)).entries()) {
        expect(steps, `session ${i} with ${connections} connections`).to.deep.equal([
          'v0',
          'true',
          'v1',
          'true',
          'v2',
          'true',
          'gone',
        ]);
      }
    }
  });

  it('300 reads issued together (merged per group) each get their own row', async () => {
    const h = await make({ maxBatch: 64 });
    const ids = Array.from({ length: 300 }, () => newId());
    await Promise.all(ids.map((id, i) => h.write(id, `row ${i}`)));
    const expired = ids.slice(0, 10);
    await query(0, `UPDATE ${table} SET sess_expire = 1 WHERE sess_id = ANY($1)`, [expired]);
    const missing = Array.from({ length: 20 }, () => newId());
    // Some ids twice, so a group may read one session more than once.
    const all = [...ids, ...missing, ...ids.slice(100, 140)].sort(() => Math.random() - 0.5);
    const sessions = await Promise.all(all.map((id) => h.read(id)));
    sessions.forEach((s, i) => {
      const id = all[i]!;
      const n = ids.indexOf(id);
      if (n < 0 || expired.includes(id)) {
        expect(s.isNew, `never written or expired: ${id}`).to.equal(true);
        expect(s.expired, id).to.equal(n >= 0);
        expect(s.data).to.equal('');
      } else {
        expect(s.isNew, id).to.equal(false);
        expect(s.data, id).to.equal(`row ${n}`);
      }
    });
  });

  it('ids and data with quotes, backslashes, commas, braces and NULL survive merged writes and reads', async () => {
    const h = await make({ maxBatch: 64, idPattern: /^[^\0]{1,64}$/ });
    const odd = ['a"b', 'a\\b', 'a,b', '{ab}', 'NULL', 'null', ' spaced ', 'é漢🙂', "it's", '\\"'];
    const ids = odd.map((p, i) => `${p}#${i}#${newId().slice(0, 8)}`);
    const data = odd.map((p) => `${p} | ${JSON.stringify({ p })}`);
    expect(await Promise.all(ids.map((id, i) => h.write(id, data[i]!)))).to.deep.equal(
      ids.map(() => true),
    );
    const sessions = await Promise.all(ids.map((id) => h.read(id)));
    expect(sessions.map((s) => s.data)).to.deep.equal(data);
    const stored = await query<{ sess_id: string; sess_data: string }>(
      0,
      `SELECT sess_id, sess_data FROM ${table} ORDER BY sess_id`,
    );
    expect(stored.map((r) => [r.sess_id, r.sess_data])).to.have.deep.members(
      ids.map((id, i) => [id, data[i]]),
    );
  });

  it('with connections: 2, a read does not wait for a commit in flight on the other', async () => {
    // A deferred trigger holds the commit of a batch writing 'slow-commit' for 2 s.
    const h = await make({ connections: 2 });
    const other = newId();
    await h.write(other, 'other');
    await addSlowCommit(table, 2);
    const slow = h.write(newId(), 'slow-commit');
    await sleep(200);
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      expect((await h.read(other)).data).to.equal('other');
      expect(Date.now() - t0, `ms for read ${i}`).to.be.below(1000);
    }
    expect(await slow).to.equal(true);
  });

  it('a batch is answered a few at a time, in order, and continuations run in between', async () => {
    // 40 writes share one batch; their promises resolve in the order issued. A continuation of
    // the first write issues a read, which the server answers while later writes of the batch
    // are still being resolved: it must see the whole batch committed (it reads the last id).
    const h = await make({ maxBatch: 64 });
    const ids = Array.from({ length: 40 }, () => newId());
    const order: number[] = [];
    let seenFromFirst: string | undefined;
    const writes = ids.map((id, i) =>
      h.write(id, `data ${i}`).then(async () => {
        order.push(i);
        if (i === 0) seenFromFirst = (await h.read(ids[39]!)).data;
      }),
    );
    await Promise.all(writes);
    expect(order).to.deep.equal(ids.map((_, i) => i));
    expect(seenFromFirst).to.equal('data 39');
  });
});
