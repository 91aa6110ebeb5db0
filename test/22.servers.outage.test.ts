// Outages with real servers (docs/behaviour.md, Outages): a server killed under load, sessions
// written on a fallback while their home was down, destroy wherever a session lives, and every
// server down at once. These tests crash (pg_ctl stop -m immediate) and restart test servers;
// every test leaves all servers running.
import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { SessionPgsql, SessionPgsqlError, type Session } from '../lib';
import { clusters, newId, query, restartAll, uniqueTable } from './support/db';
import { fastRecovery } from './support/handlers';
import { closedPort } from './support/net';
import { rowsOn } from './support/rows';
import { rejection } from './support/errors';
import { sleep, waitUntil } from './support/wait';
import { idHomedOn } from './support/users';

/** Codes an operation may fail with while servers are down: each means "try again later". */
const RETRYABLE = [
  'SPG_NO_SERVER',
  'SPG_CONNECTION_LOST',
  'SPG_CONNECT_FAILED',
  'SPG_CONNECT_TIMEOUT',
  'SPG_TIMEOUT',
];

/** Where the row of `id` is stored, as a list of server indexes. */
async function whereIs(table: string, id: string): Promise<number[]> {
  const found: number[] = [];
  for (const i of [0, 1, 2]) if ((await rowsOn(i, table, [id])).has(id)) found.push(i);
  return found;
}

async function waitUp(h: SessionPgsql, index: number, ms = 5_000): Promise<void> {
  await waitUntil(`server ${index} to be up`, ms, () => h.status().servers[index]!.state === 'up');
}

describe('servers: outages', function () {
  this.timeout(120_000);
  let handler: SessionPgsql | null = null;

  afterEach(async () => {
    await handler?.close();
    handler = null;
    await restartAll();
  });

  after(restartAll);

  it('a server killed under steady load: only in-flight operations may fail, and it is used again once back', async () => {
    const KILLED = 1;
    const USERS = 32;
    const LOAD_MS = 6_000;
    const KILL_AT_MS = 2_000;
    const table = uniqueTable('out');
    const h = (handler = new SessionPgsql(fastRecovery(table)));
    await h.open();

    // Each virtual user owns one session; a third of them live on the server we kill.
    const users = Array.from({ length: USERS }, (_, u) => {
      const id = idHomedOn(h, u % 3);
      return { id, home: u % 3, seq: 0, acked: '', pending: null as string | null };
    });
    const failures: Array<{ at: number; user: number; op: string; code: string }> = [];
    const wrong: string[] = [];
    let operations = 0;
    let killStart = Infinity;
    let killDone = Infinity;
    let running = true;

    const loop = async (u: number) => {
      const user = users[u]!;
      while (running) {
        let op = 'read';
        try {
          const s: Session = await h.read(user.id, { address: `10.0.0.${u}` });
          operations += 1;
          // What a read may return: the last acknowledged write, or the write whose outcome
          // is unknown (it failed); a session homed on the dead server may read as new.
          const allowed = [user.acked, user.pending];
          const homeDown = user.home === KILLED && performance.now() >= killStart;
          if (!allowed.includes(s.data) && !(homeDown && s.data === '')) {
            wrong.push(
              `user ${u} (home ${user.home}) read ${JSON.stringify(s.data)}, ` +
                `expected ${JSON.stringify(user.acked)} at ${Math.round(performance.now() - killStart)} ms after the kill`,
            );
          }
          user.acked = s.data;
          user.pending = null;
          op = 'write';
          const data = `user ${u} write ${++user.seq}`;
          user.pending = data;
          await h.write(s, data);
          operations += 1;
          user.acked = data;
          user.pending = null;
        } catch (err) {
          const e = err as SessionPgsqlError;
          failures.push({ at: performance.now(), user: u, op, code: String(e.code) });
          await sleep(10);
        }
      }
    };

    const started = performance.now();
    const load = Promise.all(users.map((_, u) => loop(u)));
    await sleep(KILL_AT_MS);
    const opsBeforeKill = operations;
    killStart = performance.now();
    const killWall = Date.now() / 1000;
    await clusters()[KILLED]!.stop({ mode: 'immediate' });
    killDone = performance.now();
    await sleep(Math.max(0, LOAD_MS - (performance.now() - started)));
    running = false;
    await load;
    const opsAfterKill = operations - opsBeforeKill;

    // Failures are allowed only for the operations in flight at the kill: within ~1 s of it.
    const late = failures.filter((f) => f.at < killStart || f.at > killDone + 1_000);
    expect(
      late.map((f) => `${f.op} of user ${f.user}: ${f.code} at ${Math.round(f.at - killStart)} ms`),
      'operations that failed outside the kill window',
    ).to.deep.equal([]);
    expect(wrong, 'reads that returned the wrong data').to.deep.equal([]);
    // The load really ran on, and the live servers carried it.
    expect(opsAfterKill, 'operations completed after the kill').to.be.greaterThan(USERS * 10);
    const during = h.status();
    expect(during.servers[KILLED]!.state).to.not.equal('up');
    expect(during.servers[KILLED]!.failures).to.be.greaterThan(0);
    expect(during.servers[KILLED]!.lastError).to.not.equal(null);
    // `since`: when the state last changed (Unix seconds), i.e. at the kill
    expect(during.servers[KILLED]!.since).to.be.at.least(killWall - 1);

    // Sessions homed on the live servers kept their data, on their home.
    for (const user of users.filter((x) => x.home !== KILLED)) {
      const s = await h.read(user.id);
      expect(s.data).to.equal(user.acked);
      expect(s.info().serverId).to.equal(user.home);
      expect((await rowsOn(user.home, table, [user.id])).get(user.id)).to.equal(user.acked);
    }

    // Restart: the server is used again within a few seconds.
    await clusters()[KILLED]!.start();
    const restarted = Date.now();
    await waitUp(h, KILLED);
    expect(Date.now() - restarted, 'ms until the restarted server is up').to.be.below(3_000);
    const opsBefore = h.status().servers[KILLED]!.operations;
    const fresh = Array.from({ length: 5 }, () => idHomedOn(h, KILLED));
    for (const id of fresh) {
      const s = await h.read(id);
      await h.write(s, `fresh ${id}`);
    }
    const onKilled = await rowsOn(KILLED, table, fresh);
    for (const id of fresh) expect(onKilled.get(id)).to.equal(`fresh ${id}`);
    expect(h.status().servers[KILLED]!.operations).to.be.greaterThan(opsBefore);
  });

  it('with no server up, gc(), vacuum(), list() and clear() fail as retryable, like session operations', async () => {
    const db = `host=127.0.0.1 port=${await closedPort()} dbname=none user=none connect_timeout=2`;
    const h = (handler = new SessionPgsql({ db, table: uniqueTable('out'), gcInterval: 0 }));
    await h.open().catch(() => {});
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['gc', () => h.gc()],
      ['vacuum', () => h.vacuum()],
      ['list', () => h.list()],
      ['clear', () => h.clear()],
    ];
    for (const [name, call] of calls) {
      const err = await rejection(call());
      expect(RETRYABLE, `${name}(): ${err.code}`).to.include(err.code);
      expect(err.retryable, `${name}() retryable`).to.equal(true);
    }
  });

  describe('a session written during an outage', () => {
    const K = 2; // the server that goes down
    const F = 0; // the fallback of the sessions below

    it('created during the outage is read back intact (and moved home) once its home returns', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);

      await clusters()[K]!.stop({ mode: 'immediate' });
      const s = await h.read(id, { address: '198.51.100.7' });
      expect(s.isNew).to.equal(true);
      s.setField('user:42');
      s.addError('warning', 'written during the outage');
      expect(await h.write(s, 'written while home was down')).to.equal(true);
      expect((await rowsOn(F, table, [id])).get(id)).to.equal('written while home was down');
      expect((await h.read(id)).data).to.equal('written while home was down');

      await clusters()[K]!.start();
      await waitUp(h, K);
      const back = await h.read(id);
      expect(back.data).to.equal('written while home was down');
      expect(back.getField()).to.equal('user:42');
      expect(back.info().accesses).to.equal(2);
      expect(back.info().addressCreated).to.equal('198.51.100.7');
      expect(back.info().warnings).to.equal(1);
      expect(back.info().serverId).to.equal(K);
      // moved home: on K now, and gone from the fallback
      await waitUntil('the stray copy to leave the fallback', 2_000, async () => {
        return (await whereIs(table, id)).join() === String(K);
      });
      expect((await rowsOn(K, table, [id])).get(id)).to.equal('written while home was down');
      // and it lives on normally at home
      expect(await h.write(back, 'after the return')).to.equal(true);
      expect((await h.read(id)).data).to.equal('after the return');
      expect(await whereIs(table, id)).to.deep.equal([K]);
    });

    it('updated during the outage reads back the update, not the copy at home from before', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);
      const s0 = await h.read(id);
      await h.write(s0, 'before the outage');
      expect(await whereIs(table, id)).to.deep.equal([K]);

      await clusters()[K]!.stop({ mode: 'immediate' });
      // The home is down: the session is unavailable (reads as new) and the request's write
      // goes to the fallback. That write was acknowledged and must not be lost.
      const s1 = await h.read(id);
      expect(s1.data).to.equal('');
      expect(await h.write(s1, 'updated during the outage')).to.equal(true);
      expect((await rowsOn(F, table, [id])).get(id)).to.equal('updated during the outage');

      await clusters()[K]!.start();
      await waitUp(h, K);
      const back = await h.read(id);
      expect(
        back.data,
        'the acknowledged write made during the outage is hidden by the older row at home',
      ).to.equal('updated during the outage');
      expect(back.info().serverId).to.equal(K);
    });
  });

  it('a session written on its last fallback while two servers were down is found once both return', async () => {
    const table = uniqueTable('out');
    const h = (handler = new SessionPgsql(fastRecovery(table)));
    await h.open();
    const id = idHomedOn(h, 0, 1); // order [0, 1, 2]
    await Promise.all([0, 1].map((i) => clusters()[i]!.stop({ mode: 'immediate' })));
    expect(await h.write(id, 'written on server 2')).to.equal(true);
    expect((await rowsOn(2, table, [id])).get(id)).to.equal('written on server 2');
    await Promise.all([0, 1].map((i) => clusters()[i]!.start()));
    await waitUp(h, 0);
    await waitUp(h, 1);
    const back = await h.read(id);
    expect(back.data, 'the session written on server 2 during the double outage').to.equal(
      'written on server 2',
    );
    expect(back.info().serverId).to.equal(0);
  });

  describe('destroy removes a session wherever it lives', () => {
    const K = 1;
    const F = 2;

    it('on the fallback, while the home is down', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h.write(id, 'on the fallback');
      expect((await rowsOn(F, table, [id])).has(id)).to.equal(true);
      expect(await h.destroy(id)).to.equal(true);
      // What stays on the fallback is a tombstone: no data, expired for every reader.
      const [stone] = await query<{ sess_data: string; sess_expire: string }>(
        F,
        `SELECT sess_data, sess_expire FROM "${table}" WHERE sess_id = $1`,
        [id],
      );
      expect(stone?.sess_data ?? '').to.equal('');
      if (stone) expect(Number(stone.sess_expire)).to.be.below(0);
      expect((await h.read(id)).isNew).to.equal(true);
      await clusters()[K]!.start();
      await waitUp(h, K);
      expect((await h.read(id)).isNew).to.equal(true);
    });

    it('at home before the outage, destroyed during it: the home row does not come back', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);
      await h.write(id, 'written at home');
      expect(await whereIs(table, id)).to.deep.equal([K]);
      await clusters()[K]!.stop({ mode: 'immediate' });
      expect(await h.destroy(id)).to.equal(true);
      await clusters()[K]!.start();
      await waitUp(h, K);
      const s = await h.read(id);
      expect(s.isNew, 'the destroyed session reads as new').to.equal(true);
      expect(s.data).to.equal('');
      // The tombstone moved home and hides the old row; nothing is left on the fallback.
      expect((await rowsOn(F, table, [id])).has(id)).to.equal(false);
    });

    it('on the fallback, after the home returned and before any read moved it home', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h.write(id, 'stray copy');
      await clusters()[K]!.start();
      await waitUp(h, K);
      expect(await whereIs(table, id)).to.deep.equal([F]);
      expect(await h.destroy(id)).to.equal(true);
      expect(await whereIs(table, id)).to.deep.equal([]);
      const s = await h.read(id); // the look-aside must not bring it back
      expect(s.isNew).to.equal(true);
      expect(s.data).to.equal('');
    });

    it('at home and on the fallback at once', async () => {
      const table = uniqueTable('out');
      const h = (handler = new SessionPgsql(fastRecovery(table)));
      await h.open();
      const id = idHomedOn(h, K, F);
      await h.write(id, 'at home');
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h.write(id, 'on the fallback');
      await clusters()[K]!.start();
      await waitUp(h, K);
      expect(await whereIs(table, id)).to.deep.equal([K, F].sort());
      expect(await h.destroy(id)).to.equal(true);
      expect(await whereIs(table, id)).to.deep.equal([]);
      expect((await h.read(id)).isNew).to.equal(true);
    });
  });

  it('every server down: operations reject promptly with a retryable code, and succeed again when one returns', async () => {
    const table = uniqueTable('out');
    const h = (handler = new SessionPgsql(fastRecovery(table)));
    await h.open();
    const known = newId();
    await h.write(known, 'stored before');

    await Promise.all(clusters().map((c) => c.stop({ mode: 'immediate' })));

    const attempt = async (name: string, op: () => Promise<unknown>) => {
      const t0 = performance.now();
      let error: unknown = null;
      try {
        await op();
      } catch (err) {
        error = err;
      }
      const ms = performance.now() - t0;
      expect(error, `${name} succeeded with every server down`).to.be.instanceOf(SessionPgsqlError);
      const e = error as SessionPgsqlError;
      expect(RETRYABLE, `${name}: ${e.code} ${e.message}`).to.include(e.code);
      expect(e.retryable, `${name}: ${e.code} retryable`).to.equal(true);
      expect(ms, `${name} took ${Math.round(ms)} ms to reject`).to.be.below(1_000);
      return e.code;
    };
    // Sequential operations for 1.5 s (the first ones discover the outage), then a burst.
    const codes = new Set<string>();
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      const id = newId();
      codes.add(await attempt('read', () => h.read(known)));
      codes.add(await attempt('write', () => h.write(id, 'x')));
      codes.add(await attempt('touch', () => h.touch(known)));
      codes.add(await attempt('destroy', () => h.destroy(id)));
    }
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        attempt(`concurrent op ${i}`, () =>
          i % 2 ? h.read(newId()) : h.write(newId(), 'concurrent'),
        ),
      ),
    );
    for (const s of h.status().servers) expect(s.state).to.not.equal('up');

    // One server returns (the other two stay down): every session is served by it.
    const BACK = 1;
    await clusters()[BACK]!.start();
    const t0 = Date.now();
    const probe = newId();
    await waitUntil('an operation to succeed', 5_000, async () => {
      try {
        await h.write(probe, 'after the return');
        return true;
      } catch {
        return false;
      }
    });
    expect(Date.now() - t0).to.be.below(5_000);
    const ids = [0, 1, 2].map((home) => idHomedOn(h, home));
    for (const id of ids) {
      expect(await h.write(id, `only ${BACK} is up`)).to.equal(true);
      const s = await h.read(id);
      expect(s.data).to.equal(`only ${BACK} is up`);
      expect(s.info().serverId).to.equal(BACK);
    }
    expect((await rowsOn(BACK, table, ids)).size).to.equal(3);
    const st = h.status();
    expect(st.servers[BACK]!.state).to.equal('up');
    for (const i of [0, 2]) expect(st.servers[i]!.state).to.not.equal('up');
  });
});
