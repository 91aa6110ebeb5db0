// Writes of what a request changed (WriteOptions.merge) and logouts that stay logouts
// (DestroyOptions.logout, WriteOptions.loaded), on real servers: keys two writers changed both
// survive, the whole data is stored where there is nothing to merge into, stale versions change
// nothing, a logout's tombstone refuses the late write of a request that read the session before
// it, outages included (docs/behaviour.md, "Concurrent requests and logouts").
import { expect } from 'chai';
import { ErrorCode, SessionPgsql, type SessionPgsqlOptions } from '../lib';
import { clusters, newId, query, restartAll, uniqueTable } from './support/db';
import { rejection } from './support/errors';
import { fastRecovery, handlerFactory } from './support/handlers';
import { rowsOn } from './support/rows';
import { waitUntil } from './support/wait';

const NOW = 'floor(extract(epoch from now()))::bigint';

describe('29 handler: patch writes and logouts', () => {
  let table: string;
  const handlers = handlerFactory();
  function make(options: SessionPgsqlOptions = {}): Promise<SessionPgsql> {
    return handlers.open({ table, maxLifetime: 600, ...options });
  }
  async function stored(id: string, server = 0) {
    const [row] = await query<{ sess_data: string; sess_expire: string; sess_version: string }>(
      server,
      `SELECT sess_data, sess_expire, sess_version FROM "${table}" WHERE sess_id = $1`,
      [id],
    );
    return row;
  }
  async function storedJson(id: string): Promise<unknown> {
    return JSON.parse((await stored(id))!.sess_data);
  }
  async function setData(id: string, data: string): Promise<void> {
    await query(0, `UPDATE "${table}" SET sess_data = $2 WHERE sess_id = $1`, [id, data]);
  }

  beforeEach(() => {
    table = uniqueTable('pw');
  });

  describe('merge', () => {
    it('two writers that read the same session and change different keys both keep theirs', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"cart":[],"theme":"light","n":1}');
      const a = await h.read(id);
      const b = await h.read(id);
      // a adds to the cart, b changes the theme and removes n: each writes its whole view too.
      expect(
        await h.write(a, '{"cart":["book"],"theme":"light","n":1}', {
          merge: { changed: '{"cart":["book"]}' },
        }),
      ).to.equal(true);
      expect(
        await h.write(b, '{"cart":[],"theme":"dark"}', {
          merge: { changed: '{"theme":"dark"}', removed: ['n'] },
        }),
      ).to.equal(true);
      expect(await storedJson(id)).to.deep.equal({ cart: ['book'], theme: 'dark' });
      // Without merge the later write replaces the whole session, as before.
      const c = await h.read(id);
      await h.write(c, '{"only":true}');
      expect(await storedJson(id)).to.deep.equal({ only: true });
    });

    it('the same key: the write the server runs last wins', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"theme":"light","x":1}');
      const a = await h.read(id);
      const b = await h.read(id);
      await h.write(a, '{"theme":"red","x":1}', { merge: { changed: '{"theme":"red"}' } });
      await h.write(b, '{"theme":"blue","x":1}', { merge: { changed: '{"theme":"blue"}' } });
      expect(await storedJson(id)).to.deep.equal({ theme: 'blue', x: 1 });
    });

    it('writes merged into one statement each merge into their own stored session', async () => {
      const h = await make();
      const ids = Array.from({ length: 24 }, () => newId());
      await Promise.all(ids.map((id) => h.write(id, '{"x":0}')));
      // What each stored session holds besides: only a merge keeps it.
      await query(0, `UPDATE "${table}" SET sess_data = '{"x":0,"kept":"by the server"}'`);
      await Promise.all(
        ids.map((id, i) =>
          h.write(id, `{"x":${i}}`, { merge: { changed: `{"x":${i}}` }, loaded: true }),
        ),
      );
      for (const [i, id] of ids.entries()) {
        expect(await storedJson(id)).to.deep.equal({ x: i, kept: 'by the server' });
      }
    });

    it('stores the whole data where there is no live row to merge into', async () => {
      const h = await make();
      const fresh = newId();
      await h.write(fresh, '{"a":1,"b":2}', { merge: { changed: '{"a":1}' } });
      expect(await storedJson(fresh)).to.deep.equal({ a: 1, b: 2 });
      const expired = newId();
      await h.write(expired, '{"old":true}');
      await query(0, `UPDATE "${table}" SET sess_expire = ${NOW} - 10 WHERE sess_id = $1`, [
        expired,
      ]);
      await h.write(expired, '{"a":1,"b":2}', { merge: { changed: '{"a":1}' } });
      expect(await storedJson(expired)).to.deep.equal({ a: 1, b: 2 });
    });

    it('stored data that is no JSON object never makes the write fail: it is replaced whole', async () => {
      const h = await make();
      const cases = ['not json', '{broken', '[1,2]', '5', '', '{"nul":"\\u0000"}'];
      const ids = cases.map(() => newId());
      await Promise.all(ids.map((id) => h.write(id, '{}')));
      for (const [i, id] of ids.entries()) await setData(id, cases[i]!);
      // Alone, then all at once (one merged statement that fails, then each alone).
      for (const id of ids) {
        expect(
          await h.write(id, '{"a":1,"b":2}', { merge: { changed: '{"a":1}' }, loaded: true }),
        ).to.equal(true);
        expect(await storedJson(id)).to.deep.equal({ a: 1, b: 2 });
      }
      for (const [i, id] of ids.entries()) await setData(id, cases[i]!);
      const good = newId();
      await h.write(good, '{"z":0,"kept":1}');
      await Promise.all([
        ...ids.map((id) => h.write(id, '{"c":3}', { merge: { changed: '{"c":3}' } })),
        h.write(good, '{"z":1}', { merge: { changed: '{"z":1}' } }),
      ]);
      for (const id of ids) expect(await storedJson(id)).to.deep.equal({ c: 3 });
      expect(await storedJson(good)).to.deep.equal({ z: 1, kept: 1 });
    });

    it('a patch that jsonb cannot hold is written whole instead', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"a":1}');
      await h.write(id, '{"a":1,"b":"\\u0000"}', { merge: { changed: '{"b":"\\u0000"}' } });
      expect(await storedJson(id)).to.deep.equal({ a: 1, b: '\u0000' });
    });

    it('a stale write (version not above the row) changes no data', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"a":1}');
      await query(
        0,
        `UPDATE "${table}" SET sess_version = 9223372036854775000 WHERE sess_id = $1`,
        [id],
      );
      await h.write(id, '{"a":2,"b":2}', { merge: { changed: '{"a":2,"b":2}' } });
      await h.write(id, '{"a":3}', { merge: { changed: '{}', removed: ['a'] }, loaded: true });
      expect(await storedJson(id)).to.deep.equal({ a: 1 });
    });

    it('a stale write with what it read stores the keys nobody changed since; a key changed since stays', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"a":1,"b":1,"c":1}');
      // A later write (another process, a higher version) ran first and changed b.
      await setData(id, '{"a":1,"b":"newer","c":1}');
      await query(
        0,
        `UPDATE "${table}" SET sess_version = 9223372036854775000 WHERE sess_id = $1`,
        [id],
      );
      // This request read b = 1 and c = 1; it sets a and b, removes c, adds d.
      await h.write(id, '{"a":2,"b":2,"d":2}', {
        merge: {
          changed: '{"a":2,"b":2,"d":2}',
          removed: ['c'],
          read: '{"a":1,"b":1,"c":1}',
        },
        loaded: true,
      });
      expect(await storedJson(id)).to.deep.equal({ a: 2, b: 'newer', d: 2 });
      // The same through the merged statement.
      const ids = [newId(), newId(), newId()];
      await Promise.all(ids.map((other) => h.write(other, '{"a":1,"b":1}')));
      await query(
        0,
        `UPDATE "${table}" SET sess_data = '{"a":1,"b":"newer"}', sess_version = 9223372036854775000 WHERE sess_id = ANY($1)`,
        [ids],
      );
      await Promise.all(
        ids.map((other) =>
          h.write(other, '{"a":2,"b":2}', {
            merge: { changed: '{"a":2,"b":2}', read: '{"a":1,"b":1}' },
          }),
        ),
      );
      for (const other of ids) {
        expect(await storedJson(other)).to.deep.equal({ a: 2, b: 'newer' });
      }
    });

    it('an unchanged patch of a live session is skipped by the short circuit', async () => {
      const h = await make({ shortCircuit: true });
      const id = newId();
      await h.write(id, '{"a":1}');
      await setData(id, '{"a": 1}'); // as jsonb writes it: not the text the request has
      const s = await h.read(id);
      expect(await h.write(s, '{"a":1}', { merge: { changed: '{}' } })).to.equal(false);
      expect(await h.write(s, '{"a":1}')).to.equal(true);
    });

    it('refuses a malformed merge option with SPG_INVALID_ARGUMENT', async () => {
      const h = await make();
      const id = newId();
      for (const merge of [null, 'x', { changed: 1 }, { changed: '{}', removed: 'a' }]) {
        const err = await rejection(h.write(id, '{}', { merge: merge as never }));
        expect(err.code).to.equal(ErrorCode.InvalidArgument);
      }
      for (const key of [1, 'a\0b', '\ud800']) {
        const err = await rejection(
          h.write(id, '{}', { merge: { changed: '{}', removed: [key as string] } }),
        );
        expect(err.code).to.equal(ErrorCode.InvalidArgument);
      }
      const err = await rejection(h.write(id, '{}', { loaded: 'yes' as never }));
      expect(err.code).to.equal(ErrorCode.InvalidArgument);
      const err2 = await rejection(h.destroy(id, { logout: 1 as never }));
      expect(err2.code).to.equal(ErrorCode.InvalidArgument);
      for (const created of [-1, 'now', Number.NaN, 9e15]) {
        const err3 = await rejection(
          h.write(id, '{}', { loaded: true, created: created as never }),
        );
        expect(err3.code).to.equal(ErrorCode.InvalidArgument);
        expect(err3.message).to.include('"created"');
      }
      expect((await h.read(id)).isNew, 'a refused write stores nothing').to.equal(true);
      // Keys with quotes and backslashes are removed as they are.
      await h.write(id, '{"a\\"b":1,"c\\\\d":2,"e":3}');
      await h.write(id, '{"e":3}', { merge: { changed: '{}', removed: ['a"b', 'c\\d'] } });
      expect(await storedJson(id)).to.deep.equal({ e: 3 });
    });
  });

  describe('logout', () => {
    it('a write of a session read before the logout stores nothing; a new session still inserts', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{"user":"ann"}');
      const before = await h.read(id);
      const whole = await h.read(id);
      expect(await h.destroy(id, { logout: true })).to.equal(true);
      await h.write(before, '{"user":"ann","cart":[1]}', { merge: { changed: '{"cart":[1]}' } });
      await h.write(whole, '{"user":"ann","late":true}');
      expect(await h.touch(id)).to.equal(false);
      const after = await h.read(id);
      expect(after.isNew || after.expired).to.equal(true);
      expect(after.data).to.equal('');
      expect(Number((await stored(id))!.sess_expire)).to.be.below(0);
      // A write that did not read it live (a new session under that id) is a plain upsert.
      await h.write(id, '{"user":"bob"}');
      expect(await storedJson(id)).to.deep.equal({ user: 'bob' });
    });

    it('holds against a write issued after it that ran first, and lasts as long as the session would have', async () => {
      const h = await make();
      const id = newId();
      const end = Math.floor(Date.now() / 1000) + 30 * 86_400;
      await h.write(id, '{"user":"ann"}', { expires: end });
      // The row's version is above the logout's: as if a later write had run before it.
      await query(
        0,
        `UPDATE "${table}" SET sess_version = 9223372036854775000 WHERE sess_id = $1`,
        [id],
      );
      await h.destroy(id, { logout: true });
      const row = (await stored(id))!;
      expect(row.sess_data).to.equal('');
      expect(Number(row.sess_expire)).to.be.at.most(-end);
      expect((await h.read(id)).data).to.equal('');
    });

    it('late writes merged into one statement each stay refused; a new session among them inserts', async () => {
      const h = await make();
      const ids = Array.from({ length: 12 }, () => newId());
      await Promise.all(ids.map((id) => h.write(id, '{"user":"ann"}')));
      const sessions = await Promise.all(ids.map((id) => h.read(id)));
      await Promise.all(ids.map((id) => h.destroy(id, { logout: true })));
      const fresh = newId();
      await Promise.all([
        // whole writes (no patch in the batch), then patches
        ...sessions.map((s) => h.write(s, '{"user":"ann","late":1}')),
        h.write(fresh, '{"user":"bob"}', { loaded: false }),
      ]);
      await Promise.all(
        sessions.map((s) => h.write(s, '{"late":2}', { merge: { changed: '{"late":2}' } })),
      );
      for (const id of ids) expect((await stored(id))!.sess_data).to.equal('');
      expect(await storedJson(fresh)).to.deep.equal({ user: 'bob' });
    });

    it('a plain destroy() still deletes the row', async () => {
      const h = await make();
      const id = newId();
      await h.write(id, '{}');
      expect(await h.destroy(id)).to.equal(true);
      expect(await stored(id)).to.equal(undefined);
    });
  });

  describe('logout during outages', function () {
    this.timeout(120_000);
    const K = 1; // the home server that goes down
    const F = 2; // the server standing in for it
    let h: SessionPgsql | null = null;

    afterEach(async () => {
      await h?.close();
      h = null;
      await restartAll();
    });

    async function homedSession(): Promise<string> {
      h = new SessionPgsql(fastRecovery(table));
      await h.open();
      for (;;) {
        const id = newId();
        const order = h.serversFor(id);
        if (order[0] === K && order[1] === F) {
          await h.write(id, '{"user":"ann"}');
          return id;
        }
      }
    }
    async function back(): Promise<void> {
      await clusters()[K]!.start();
      await waitUntil(
        'the home server to be up',
        10_000,
        () => h!.status().servers[K]!.state === 'up',
      );
    }
    /** Moves the session's stored creation `seconds` into the past at home. */
    async function createdEarlier(id: string, seconds: number): Promise<void> {
      await query(K, `UPDATE "${table}" SET sess_created = sess_created - $2 WHERE sess_id = $1`, [
        id,
        seconds,
      ]);
    }
    async function createdOn(server: number, id: string): Promise<number | null> {
      const [row] = await query<{ sess_created: string }>(
        server,
        `SELECT sess_created FROM "${table}" WHERE sess_id = $1`,
        [id],
      );
      return row ? Number(row.sess_created) : null;
    }
    async function loggedOut(id: string): Promise<void> {
      const s = await h!.read(id);
      expect(s.data, 'the logged-out session came back').to.equal('');
      for (const server of [0, 1, 2]) {
        const data = (await rowsOn(server, table, [id])).get(id);
        expect(data ?? '', `server ${server}`).to.equal('');
      }
    }

    it('home down during the logout and during the late write, then back', async () => {
      const id = await homedSession();
      const s = await h!.read(id);
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h!.destroy(id, { logout: true });
      await h!.write(s, '{"user":"ann","cart":[1]}', { merge: { changed: '{"cart":[1]}' } });
      expect((await h!.read(id)).data).to.equal('');
      await back();
      await loggedOut(id);
    });

    it('home down during the logout, back before the late write', async () => {
      const id = await homedSession();
      const s = await h!.read(id);
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h!.destroy(id, { logout: true });
      await back();
      await h!.write(s, '{"user":"ann","cart":[1]}', { merge: { changed: '{"cart":[1]}' } });
      await loggedOut(id);
    });

    it('a copy stored on the stand-in keeps the created time the writer read, merged writes too', async () => {
      const id = await homedSession();
      const more: string[] = [];
      while (more.length < 3) {
        const other = newId();
        if (h!.serversFor(other)[0] === K) more.push(other);
      }
      for (const other of more) await h!.write(other, '{"user":"bob"}');
      for (const [i, each] of [id, ...more].entries()) await createdEarlier(each, 100 * (i + 1));
      const read = await Promise.all([id, ...more].map((each) => h!.read(each)));
      await clusters()[K]!.stop({ mode: 'immediate' });
      // Written at once, so group commit may merge them into one statement.
      await Promise.all(
        read.map((s) =>
          h!.write(s, '{"user":"x","late":true}', { merge: { changed: '{"late":true}' } }),
        ),
      );
      for (const s of read) {
        const server = h!.serversFor(s.id).find((i) => i !== K)!;
        expect(await createdOn(server, s.id), `session ${s.id}`).to.equal(s.info().created);
      }
      // Given for an id, `created` is what the new row keeps; without `loaded` it is unused.
      const plain = newId();
      await h!.write(plain, '{}', { loaded: true, created: 1_000_000 });
      const at = h!.serversFor(plain).find((i) => i !== K)!;
      expect(await createdOn(at, plain)).to.equal(1_000_000);
      const fresh = newId();
      await h!.write(fresh, '{}', { created: 1_000_000 });
      expect(
        await createdOn(
          h!.serversFor(fresh).find((i) => i !== K)!,
          fresh,
        ),
      ).to.be.above(1_000_000);
    });

    it('a server down during the logout, standing in for home during the late write: the logout holds when home returns', async () => {
      // Both servers that saw the logout go down, then the one that missed it returns and
      // takes the late write: it has no tombstone to refuse it with. Home's tombstone, written
      // after the session was created, ends that copy when home is back.
      const id = await homedSession();
      await createdEarlier(id, 100);
      const s = await h!.read(id);
      await clusters()[F]!.stop({ mode: 'immediate' });
      expect(await h!.destroy(id, { logout: true })).to.equal(true);
      await Promise.all([K, 0].map((i) => clusters()[i]!.stop({ mode: 'immediate' })));
      await clusters()[F]!.start();
      await waitUntil(
        'the stand-in to be up',
        10_000,
        () => h!.status().servers[F]!.state === 'up',
      );
      await h!.write(s, '{"user":"ann","cart":[1]}', { merge: { changed: '{"cart":[1]}' } });
      await clusters()[0]!.start();
      await back();
      await loggedOut(id);
      expect(
        (await rowsOn(F, table, [id])).has(id),
        'the copy on the stand-in is dropped',
      ).to.equal(false);
    });

    it('home up during the logout, down during the late write, then back', async () => {
      const id = await homedSession();
      const s = await h!.read(id);
      await h!.destroy(id, { logout: true });
      await clusters()[K]!.stop({ mode: 'immediate' });
      await h!.write(s, '{"user":"ann","late":true}');
      expect((await h!.read(id)).data).to.equal('');
      await back();
      await loggedOut(id);
    });
  });
});
