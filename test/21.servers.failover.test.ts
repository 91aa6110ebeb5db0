// Failover with real servers (docs/behaviour.md, Several servers): failoverMode keeps every session on
// the first live server in list order, and rendezvous placement stores each session on its home.
// These tests stop and start test server 0; every test leaves all servers running.
import { expect } from 'chai';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { clusters, newId, restartAll, uniqueTable } from './support/db';
import { fastRecovery } from './support/handlers';
import { rowsOn } from './support/rows';
import { sleep, waitUntil } from './support/wait';

/** Reads then writes a new session the way a request does; resolves to the Session's server. */
async function store(h: SessionPgsql, id: string, data: string): Promise<void> {
  const s = await h.read(id, { address: '192.0.2.1' });
  expect(s.data).to.equal('');
  expect(await h.write(s, data)).to.equal(true);
}

describe('servers: failover with real servers', function () {
  this.timeout(90_000);
  let handler: SessionPgsql | null = null;

  afterEach(async () => {
    await handler?.close();
    handler = null;
    await restartAll();
  });

  after(restartAll);

  describe('failoverMode', () => {
    it('stores every session on server 0 while it lives', async () => {
      const table = uniqueTable('fo');
      const h = (handler = new SessionPgsql({ ...fastRecovery(table), failoverMode: true }));
      await h.open();
      const ids = Array.from({ length: 20 }, () => newId());
      for (const id of ids) await store(h, id, `data of ${id}`);
      const on0 = await rowsOn(0, table, ids);
      expect([...on0.keys()].sort()).to.deep.equal([...ids].sort());
      for (const id of ids) expect(on0.get(id)).to.equal(`data of ${id}`);
      expect((await rowsOn(1, table, ids)).size).to.equal(0);
      expect((await rowsOn(2, table, ids)).size).to.equal(0);
      for (const id of ids) expect((await h.read(id)).info().serverId).to.equal(0);
    });

    it('moves to server 1 within seconds of stopping server 0, and back once it returns', async () => {
      const table = uniqueTable('fo');
      const h = (handler = new SessionPgsql({ ...fastRecovery(table), failoverMode: true }));
      await h.open();
      const before = newId();
      await store(h, before, 'before the outage');
      expect((await rowsOn(0, table, [before])).get(before)).to.equal('before the outage');

      await clusters()[0]!.stop({ mode: 'fast' });
      const stopped = Date.now();

      // The first write after the stop may have to discover the outage; within a few
      // seconds writes land on server 1.
      const first = newId();
      const failures: string[] = [];
      for (;;) {
        try {
          await h.write(first, 'first write during the outage');
          break;
        } catch (err) {
          failures.push(`${(err as SessionPgsqlError).code} after ${Date.now() - stopped} ms`);
          expect((err as SessionPgsqlError).retryable, String(err)).to.equal(true);
          if (Date.now() - stopped > 3_000) throw new Error(`writes keep failing: ${failures}`);
          await sleep(50);
        }
      }
      expect(Date.now() - stopped, `failures: ${failures.join(', ')}`).to.be.below(3_000);

      const during = Array.from({ length: 10 }, () => newId());
      for (const id of during) await store(h, id, `outage ${id}`);
      const on1 = await rowsOn(1, table, [first, ...during]);
      expect(on1.size).to.equal(during.length + 1);
      for (const id of during) expect(on1.get(id)).to.equal(`outage ${id}`);
      expect((await rowsOn(2, table, [first, ...during])).size).to.equal(0);
      for (const id of during) {
        const s = await h.read(id);
        expect(s.data).to.equal(`outage ${id}`);
        expect(s.info().serverId).to.equal(1);
      }
      const st = h.status();
      expect(st.servers[0]!.state).to.not.equal('up');
      expect(st.servers[0]!.failures).to.be.greaterThan(0);
      expect(st.servers[1]!.state).to.equal('up');

      await clusters()[0]!.start();
      const started = Date.now();
      await waitUntil(
        'server 0 to be up again',
        5_000,
        () => h.status().servers[0]!.state === 'up',
      );
      expect(Date.now() - started).to.be.below(5_000);

      // New sessions go back to server 0 ...
      const after = Array.from({ length: 10 }, () => newId());
      for (const id of after) await store(h, id, `after ${id}`);
      const back = await rowsOn(0, table, after);
      expect(back.size).to.equal(after.length);
      expect((await rowsOn(1, table, after)).size).to.equal(0);
      // ... the session stored on 0 before the outage is still there ...
      expect((await h.read(before)).data).to.equal('before the outage');
      // ... and the sessions written on 1 meanwhile are found (and moved home).
      for (const id of during) expect((await h.read(id)).data).to.equal(`outage ${id}`);
      const home = await rowsOn(0, table, during);
      expect(home.size).to.equal(during.length);
    });

    it('uses server 1 from the start when server 0 is down at open()', async () => {
      const table = uniqueTable('fo');
      await clusters()[0]!.stop({ mode: 'immediate' });
      const h = (handler = new SessionPgsql({ ...fastRecovery(table), failoverMode: true }));
      await h.open();
      const ids = Array.from({ length: 5 }, () => newId());
      for (const id of ids) await store(h, id, `x ${id}`);
      expect((await rowsOn(1, table, ids)).size).to.equal(ids.length);
      expect(h.status().servers[0]!.state).to.not.equal('up');

      await clusters()[0]!.start();
      await waitUntil('server 0 to come up', 5_000, () => h.status().servers[0]!.state === 'up');
      const later = newId();
      await store(h, later, 'later');
      expect((await rowsOn(0, table, [later])).get(later)).to.equal('later');
    });
  });

  describe('rendezvous placement', () => {
    it('stores each session on its home, serversFor(id)[0], and nowhere else', async () => {
      const table = uniqueTable('rv');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const ids = Array.from({ length: 60 }, () => newId());
      await Promise.all(ids.map((id) => store(h, id, `rv ${id}`)));
      const rows = await Promise.all([0, 1, 2].map((i) => rowsOn(i, table, ids)));
      for (const id of ids) {
        const home = h.serversFor(id)[0]!;
        for (const i of [0, 1, 2]) {
          if (i === home) expect(rows[i]!.get(id), `${id} on its home ${i}`).to.equal(`rv ${id}`);
          else expect(rows[i]!.has(id), `${id} (home ${home}) also on ${i}`).to.equal(false);
        }
        const s = await h.read(id);
        expect(s.data).to.equal(`rv ${id}`);
        expect(s.info().serverId).to.equal(home);
      }
      // 60 ids over 3 servers: each server is home to some of them
      for (const i of [0, 1, 2])
        expect(rows[i]!.size, `sessions on server ${i}`).to.be.greaterThan(0);
      const st = h.status();
      for (const i of [0, 1, 2]) {
        expect(st.servers[i]!.state).to.equal('up');
        expect(st.servers[i]!.operations).to.be.greaterThan(0);
      }
    });

    it('a plain upsert by id lands on the home too', async () => {
      const table = uniqueTable('rv');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const ids = Array.from({ length: 30 }, () => newId());
      await Promise.all(ids.map((id) => h.write(id, `plain ${id}`)));
      const rows = await Promise.all([0, 1, 2].map((i) => rowsOn(i, table, ids)));
      for (const id of ids) {
        const home = h.serversFor(id)[0]!;
        expect(rows[home]!.get(id)).to.equal(`plain ${id}`);
        expect(rows.filter((r) => r.has(id)).length).to.equal(1);
      }
    });
  });
});
