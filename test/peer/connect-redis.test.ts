// connect-redis's store lifecycle test (index_test.ts, lifecycleTest(); see README.md for the
// tag and commit), written here for ExpressStore after it: the same calls in the same order with the same
// expectations. What had to change, and why:
// - Redis's TTL of key sess:<id> is read here as the row's sess_expire (Unix seconds) minus
//   now, with pg: the handler's own read() would apply the core's idPattern to ids like '123',
//   which only the adapters waive. The table keeps whole seconds (a row may end up to a second
//   after the cookie; the adapter refuses the session at the cookie's exact expiry), so each
//   TTL bound gets one more second: >= maxLifetime - 2 (Redis: ttl - 1), <= 61 (Redis: 60).
// - connect-redis's all() returns [{ id, ...session }] and it has ids(); express-session's store
//   API (and ours) returns all() as { id: session }: ids are its keys, entries its values.
// - load() gives its 1000 sessions an expiry 60 s ahead instead of 1 s, so a slow machine
//   cannot let some expire before they are counted (no timing assertions).
// - The "defaults" test checks RedisStore's own options (prefix, ttl, scanCount...): not ported.
import { expect } from 'chai';
import { Cookie } from 'express-session';
import type { SessionData } from 'express-session';
import { ExpressStore } from '../../lib/express';
import { SessionPgsql } from '../../lib';
import { db, query, uniqueTable } from '../support/db';
import { peerIt } from './harness/peer';

type Callback<T> = (err?: any, value?: T) => void;
function call<T = unknown>(fn: (cb: Callback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));
}

describe("connect-redis's store lifecycle with ExpressStore", function () {
  const table = uniqueTable('peer_redis');
  let handler: SessionPgsql;
  let store: ExpressStore;

  before(async () => {
    handler = new SessionPgsql({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
    store = new ExpressStore(handler);
  });
  after(async () => {
    await handler.close();
    await query(0, `DROP TABLE IF EXISTS "${table}"`);
  });

  /** Seconds until session `id` expires in the table (what Redis's TTL says of its key). */
  async function ttl(id: string): Promise<number> {
    const [row] = await query<{ e: string }>(
      0,
      `SELECT sess_expire AS e FROM "${table}" WHERE sess_id = $1`,
      [id],
    );
    expect(row, `row of session ${id}`).to.not.equal(undefined);
    return Number(row!.e) - Date.now() / 1000;
  }
  const get = (id: string) => call<SessionData | null>((cb) => store.get(id, cb));
  const set = (id: string, sess: unknown) => call((cb) => store.set(id, sess as SessionData, cb));
  const touch = (id: string, sess: unknown) =>
    call((cb) => store.touch(id, sess as SessionData, cb));
  const destroy = (id: string) => call((cb) => store.destroy(id, cb));
  const length = () => call<number>((cb) => store.length(cb));
  const all = () => call<Record<string, SessionData>>((cb) => store.all(cb));
  const clear = () => call((cb) => store.clear(cb));

  async function load(count: number): Promise<void> {
    const cookie = new Cookie();
    for (let sid = 0; sid < count; sid++) {
      cookie.expires = new Date(Date.now() + 60_000);
      await set(`s${sid}`, { cookie });
    }
  }

  peerIt('connect-redis', 'lifecycle', async function () {
    this.timeout(120_000);
    await clear();

    const sess = { foo: 'bar', cookie: { originalMaxAge: null } };
    await set('123', sess);
    expect(await get('123')).to.deep.equal(sess);

    // No cookie expiry: connect-redis uses its ttl (one day), we the handler's maxLifetime.
    const maxLifetime = handler.status().maxLifetime;
    expect(await ttl('123')).to.be.at.least(maxLifetime - 2);

    const expires = new Date(Date.now() + 60 * 1000);
    await set('456', { cookie: { originalMaxAge: null, expires } });
    expect(await ttl('456')).to.be.at.most(61);

    const expires2 = new Date(Date.now() + 90 * 1000);
    await touch('456', { cookie: { originalMaxAge: null, expires: expires2 } });
    expect(await ttl('456')).to.be.above(60);

    expect(await length()).to.equal(2); // stored two keys length

    expect(Object.keys(await all()).sort()).to.deep.equal(['123', '456']);

    const everything = await all();
    expect(
      Object.keys(everything)
        .sort()
        .map((id) => ({ id, ...everything[id] })),
    ).to.deep.equal([
      { id: '123', foo: 'bar', cookie: { originalMaxAge: null } },
      { id: '456', cookie: { originalMaxAge: null, expires: expires.toISOString() } },
    ]);

    await destroy('456');
    expect(await length()).to.equal(1); // one key remains

    await clear();
    expect(await length()).to.equal(0); // no keys remain

    const count = 1000;
    await load(count);
    expect(await length()).to.equal(count);

    await clear();
    expect(await length()).to.equal(0);

    await set('789', { cookie: { originalMaxAge: null, expires: new Date(Date.now() + 90_000) } });
    expect(await length()).to.equal(1);

    // Expires in the past.
    await set('789', { cookie: { originalMaxAge: null, expires: new Date(Date.now() - 90_000) } });
    expect(await length()).to.equal(0); // no key remains and that includes session 789
  });
});
