// session-pgsql/koa driven by koa 3 + koa-session 7 (external store) over real HTTP on loopback,
// with a cookie jar. koa-session keeps the session id in the signed cookie `koa.sess`
// (signature in `koa.sess.sig`), passes the store maxAge + 10 s, and says `changed: false` when
// it saves unchanged data (rolling, renew): the store then only refreshes the expiry.
import { expect } from 'chai';
import Koa from 'koa';
import session, { type CreateSessionOptions } from 'koa-session';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { KoaStore } from '../lib/koa';
import type { SessionPgsqlOptions } from '../lib/options';
import { clusters, db, newId, query, servers, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import {
  closeServer,
  CookieJar,
  expectOutageErrors,
  listen,
  okJson,
  pollUntilBack,
  type HttpResponse,
} from './support/http';
import { columnsOf, isTombstone, storedRow, type StoredRow } from './support/rows';
import { sleep, waitUntil } from './support/wait';
import { rejection } from './support/errors';

const KEYS = ['koa adapter test key'];
const COOKIE = 'koa.sess';
const RESTART_SERVER = 2;

/** What Keygrip (koa's cookie signer, sha1) puts in `<name>.sig` for `<name>=<value>`. */
function signature(name: string, value: string, key: string): string {
  return createHmac('sha1', key)
    .update(`${name}=${value}`)
    .digest('base64')
    .replace(/\/|\+|=/g, (c) => ({ '/': '_', '+': '-', '=': '' })[c]!);
}

/** Puts a session id cookie in the jar, signed with `key`. */
function plant(jar: CookieJar, id: string, key = KEYS[0]!): void {
  jar.setCookie(COOKIE, id);
  jar.setCookie(`${COOKIE}.sig`, signature(COOKIE, id, key));
}

function sidOf(jar: CookieJar): string {
  const raw = jar.cookie(COOKIE);
  expect(raw, 'koa.sess cookie').to.be.a('string');
  return raw!;
}

/** The application's part of stored session data (without koa-session's `_` fields). */
function appData(r: StoredRow | undefined): Record<string, unknown> {
  expect(r, 'row').to.not.equal(undefined);
  const data = JSON.parse(r!.sess_data) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(data).filter(([k]) => !k.startsWith('_')));
}

/** Everything the tests start, closed after each test (servers first, then stores, then handlers). */
const httpServers: http.Server[] = [];
const stores: KoaStore[] = [];

async function cleanup(): Promise<void> {
  await Promise.all(httpServers.splice(0).map((s) => closeServer(s)));
  await Promise.all(stores.splice(0).map((s) => s.close()));
}

function makeStore(options: SessionPgsqlOptions): KoaStore {
  const store = new KoaStore({ gcInterval: 0, vacuumInterval: 0, connectTimeout: 2, ...options });
  stores.push(store);
  return store;
}

interface App {
  url: string;
  server: http.Server;
  jar(): CookieJar;
}

async function startApp(store: KoaStore, options: CreateSessionOptions = {}): Promise<App> {
  const app = new Koa();
  app.keys = KEYS;
  app.silent = true;
  // Errors (from the store, through koa-session) become a quiet 500 JSON body.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      ctx.status = 500;
      const { code = null, retryable = null } = err as SessionPgsqlError;
      ctx.body = { error: (err as Error).message, code, retryable };
    }
  });
  app.use(session({ store, maxAge: 3600_000, ...options }, app));
  app.use(async (ctx) => {
    const s = ctx.session;
    if (ctx.method === 'GET' && ctx.path === '/count') {
      s.views = (s.views ?? 0) + 1;
      ctx.body = { views: s.views };
    } else if (ctx.method === 'GET' && ctx.path === '/peek') {
      ctx.body = { views: s.views ?? null };
    } else if (ctx.method === 'POST' && ctx.path === '/logout') {
      ctx.session = null;
      ctx.body = { ok: true };
    } else if (ctx.method === 'POST' && ctx.path === '/regenerate') {
      await s.regenerate();
      ctx.body = { views: s.views ?? null };
    } else {
      ctx.status = 404;
    }
  });
  const server = http.createServer(app.callback());
  httpServers.push(server);
  const url = await listen(server);
  return { url, server, jar: () => new CookieJar(url) };
}

/** GET /count (or `path`): the session's views. */
async function views(jar: CookieJar, path = '/count'): Promise<number | null> {
  return (await okJson(jar, path)).views;
}

describe('42 adapters: koa (koa-session over HTTP)', function () {
  this.timeout(60_000);
  afterEach(cleanup);
  const handlers = handlerFactory(); // closed after cleanup()

  describe('sessions across requests', () => {
    const table = uniqueTable('t42');
    let app: App;
    beforeEach(async () => {
      app = await startApp(makeStore({ db: db(1), table }));
    });

    it('a counter survives requests: one id, one row, the data and counter updated', async () => {
      const jar = app.jar();
      expect(await views(jar)).to.equal(1);
      const id = sidOf(jar);
      expect(await views(jar)).to.equal(2);
      expect(await views(jar)).to.equal(3);
      expect(sidOf(jar)).to.equal(id);
      const r = await storedRow(table, id);
      expect(appData(r)).to.deep.equal({ views: 3 });
      expect(r!.sess_counter).to.equal(3);
      expect(r!.sess_addr_created).to.equal('127.0.0.1');
      // koa-session passes maxAge + 10 s to the store.
      expect(r!.sess_expire).to.be.closeTo(Date.now() / 1000 + 3610, 30);
    });

    it('destroy (ctx.session = null) leaves a tombstone; the next request starts a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      const out = await jar.post('/logout');
      expect(out.status, out.text).to.equal(200);
      expect(isTombstone(await storedRow(table, id)), 'row after logout is a tombstone').to.equal(
        true,
      );
      expect(jar.cookie(COOKIE), 'cookie cleared').to.equal(undefined);
      // A client that replays the old cookie gets a fresh session too.
      plant(jar, id);
      expect(await views(jar)).to.equal(1);
      expect(sidOf(jar)).to.not.equal(id);
    });

    it('regenerate issues a new id; the old row is a tombstone, the new one holds the data', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const old = sidOf(jar);
      const res = await jar.post('/regenerate');
      expect(res.status, res.text).to.equal(200);
      expect(res.json().views).to.equal(2);
      const fresh = sidOf(jar);
      expect(fresh).to.not.equal(old);
      expect(isTombstone(await storedRow(table, old)), 'old row is a tombstone').to.equal(true);
      expect(appData(await storedRow(table, fresh))).to.deep.equal({ views: 2 });
      expect(await views(jar)).to.equal(3);
      expect(sidOf(jar)).to.equal(fresh);
    });

    it('an expired session (sess_expire in the past) gives a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      await query(0, `UPDATE "${table}" SET sess_expire = $2 WHERE sess_id = $1`, [
        id,
        Math.floor(Date.now() / 1000) - 60,
      ]);
      expect(await views(jar)).to.equal(1);
      expect(sidOf(jar)).to.not.equal(id);
    });
  });

  describe('expiry', () => {
    const table = uniqueTable('t42');

    it('a cookie replayed after a short maxAge gets a fresh session', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { maxAge: 1000 });
      const jar = app.jar();
      await jar.visitKeepingCookies('/count');
      const id = sidOf(jar);
      expect((await storedRow(table, id))!.sess_expire).to.be.closeTo(Date.now() / 1000 + 11, 2);
      await sleep(2500);
      expect(await views(jar)).to.equal(1);
      expect(sidOf(jar)).to.not.equal(id);
    });

    it("maxAge 'session' stores the session for maxLifetime", async () => {
      const app = await startApp(makeStore({ db: db(1), table, maxLifetime: 777 }), {
        maxAge: 'session',
      });
      const jar = app.jar();
      await views(jar);
      expect(await views(jar)).to.equal(2);
      expect((await storedRow(table, sidOf(jar)))!.sess_expire).to.be.closeTo(
        Date.now() / 1000 + 777,
        30,
      );
    });
  });

  describe('changed: false (rolling and renew saves of unchanged data)', () => {
    const table = uniqueTable('t42');

    it('rolling: an unchanged request only moves sess_expire; sess_data and sess_modified stay', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { rolling: true });
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.equal(1);
      const after = (await storedRow(table, id))!;
      expect(after.sess_expire, 'sess_expire').to.be.above(before.sess_expire);
      expect(after.sess_data, 'sess_data').to.equal(before.sess_data);
      expect(after.sess_modified, 'sess_modified').to.equal(before.sess_modified);
      expect(after.sess_counter, 'sess_counter').to.equal(before.sess_counter);
      expect(await views(jar)).to.equal(2);
      expect(sidOf(jar)).to.equal(id);
    });

    it('renew: an unchanged request in the second half of maxAge only moves sess_expire', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { renew: true, maxAge: 4000 });
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(2300);
      expect(await views(jar, '/peek')).to.equal(1);
      const after = (await storedRow(table, id))!;
      expect(after.sess_expire, 'sess_expire').to.be.above(before.sess_expire);
      expect(after.sess_data, 'sess_data').to.equal(before.sess_data);
      expect(after.sess_modified, 'sess_modified').to.equal(before.sess_modified);
    });

    it('without rolling or renew an unchanged request writes nothing', async () => {
      const app = await startApp(makeStore({ db: db(1), table }));
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      // The columns this check has always compared.
      const watched = [
        'sess_id',
        'sess_data',
        'sess_modified',
        'sess_expire',
        'sess_counter',
        'sess_addr_created',
      ] as const;
      const before = columnsOf(await storedRow(table, id), watched)!;
      await sleep(1100);
      expect(await views(jar, '/peek')).to.equal(1);
      expect(columnsOf(await storedRow(table, id), watched)).to.deep.equal(before);
    });

    it('changed: false on a session whose row is gone stores it again (store called directly)', async () => {
      const store = makeStore({ db: db(1), table });
      const id = newId();
      await store.set(id, { views: 5 }, 60_000, { changed: true });
      expect(await store.get(id)).to.deep.equal({ views: 5 });
      // The row vanishes between koa-session's get() and its set(changed: false).
      await query(0, `DELETE FROM "${table}" WHERE sess_id = $1`, [id]);
      await store.set(id, { views: 5 }, 60_000, { changed: false });
      expect(appData(await storedRow(table, id))).to.deep.equal({ views: 5 });
      expect((await storedRow(table, id))!.sess_expire).to.be.closeTo(Date.now() / 1000 + 60, 5);
    });

    // koa-session keeps its own expiry, `_expire`, inside the session data and rejects a session
    // whose `_expire` has passed. A rolling (or renewing) save of unchanged data refreshes the
    // cookie and, through changed: false, the row's sess_expire, but not the stored `_expire`.

    /** A session written once, then only read at 2 s and 4.5 s of a 4 s rolling maxAge, lives on. */
    async function expectReadSessionLives(app: App): Promise<void> {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      await sleep(2000);
      expect(await views(jar, '/peek'), 'read 2 s in').to.equal(1);
      await sleep(2500);
      // 4.5 s after the write, 2.5 s after the last access: well within the rolled maxAge.
      expect(await views(jar, '/peek'), 'read 4.5 s in (2.5 s after the last access)').to.equal(1);
      expect(sidOf(jar)).to.equal(id);
    }

    it('rolling: a session only read (never changed) lives on past its first maxAge', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), {
        rolling: true,
        maxAge: 4000,
      });
      await expectReadSessionLives(app);
    });

    it('control: the same rolling session lives on when unchanged saves are full writes', async () => {
      // The same store, except that it never takes the changed: false shortcut.
      class FullWriteStore extends KoaStore {
        override set(key: string, sess: unknown, maxAge?: number | 'session', opts = {}) {
          return super.set(key, sess, maxAge, { ...opts, changed: true });
        }
      }
      const store = new FullWriteStore({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      stores.push(store);
      const app = await startApp(store, { rolling: true, maxAge: 4000 });
      await expectReadSessionLives(app);
    });

    it('renew: a session renewed in its second half lives on past its first maxAge', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { renew: true, maxAge: 4000 });
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      await sleep(2300);
      expect(await views(jar, '/peek'), 'read 2.3 s in (renewed)').to.equal(1);
      await sleep(2200);
      expect(await views(jar, '/peek'), 'read 4.5 s in (2.2 s after the renewal)').to.equal(1);
      expect(sidOf(jar)).to.equal(id);
    });
  });

  describe('tampered and malformed cookies', () => {
    const table = uniqueTable('t42');
    let app: App;
    beforeEach(async () => {
      app = await startApp(makeStore({ db: db(1), table }));
    });

    async function expectFresh(res: HttpResponse, jar: CookieJar, not?: string): Promise<void> {
      expect(res.status, res.text.slice(0, 300)).to.equal(200);
      expect(res.json().views).to.equal(1);
      const id = sidOf(jar);
      if (not) expect(id).to.not.equal(not);
      expect(appData(await storedRow(table, id))).to.deep.equal({ views: 1 });
    }

    it('control: a cookie the test signs for a live id is accepted (the signing below is genuine)', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const other = app.jar();
      plant(other, id);
      expect(await views(other)).to.equal(2);
    });

    it('a bad signature gets a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      jar.setCookie(`${COOKIE}.sig`, 'A'.repeat(27));
      await expectFresh(await jar.get('/count'), jar, id);
      expect(appData(await storedRow(table, id))).to.deep.equal({ views: 2 });
    });

    it('a cookie signed with another key gets a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const other = app.jar();
      plant(other, id, 'another key');
      await expectFresh(await other.get('/count'), other, id);
    });

    it('a missing signature cookie gets a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      jar.deleteCookie(`${COOKIE}.sig`);
      await expectFresh(await jar.get('/count'), jar, id);
    });

    it('a garbage value gets a fresh session', async () => {
      const jar = app.jar();
      jar.setCookie(COOKIE, 'garbage');
      jar.setCookie(`${COOKIE}.sig`, 'garbage');
      await expectFresh(await jar.get('/count'), jar);
    });

    it('a signed id with no row gets a fresh session with a new id', async () => {
      const jar = app.jar();
      const id = newId();
      plant(jar, id);
      await expectFresh(await jar.get('/count'), jar, id);
    });

    for (const [what, id] of [
      ['too short for idPattern', 'short'],
      ['too long for idPattern', 'x'.repeat(300)],
      ['with characters idPattern refuses', 'not a valid id: spaces & "symbols"!'],
    ] as const) {
      it(`a validly signed id ${what} gets a fresh session, not an error`, async () => {
        const jar = app.jar();
        plant(jar, id);
        await expectFresh(await jar.get('/count'), jar, id);
      });
    }
  });

  describe('construction', () => {
    const table = uniqueTable('t42');

    it('from options: opens its own handler with no request; close() closes it', async () => {
      const store = makeStore({ db: db(1), table });
      expect(store.handler).to.be.instanceOf(SessionPgsql);
      await waitUntil(
        'the store to open its handler',
        10_000,
        () => store.handler.status().servers[0]!.state === 'up',
      );
      const app = await startApp(store);
      const jar = app.jar();
      await views(jar);
      expect(await views(jar)).to.equal(2);
      await closeServer(app.server);

      await store.close();
      const error = await rejection(store.handler.read(newId()));
      expect(error.code, 'read after store.close()').to.equal('SPG_CLOSED');
    });

    it('from an existing SessionPgsql: uses it, and close() leaves it open', async () => {
      const handler = await handlers.open({ table });
      const store = new KoaStore(handler);
      stores.push(store);
      expect(store.handler).to.equal(handler);
      const app = await startApp(store);
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      expect(JSON.parse((await handler.read(id)).data)).to.include({ views: 2 });
      await closeServer(app.server);

      await store.close();
      expect(JSON.parse((await handler.read(id)).data)).to.include({ views: 2 });
      expect(await handler.write(newId(), '{}')).to.equal(true);
    });
  });

  describe(`its server restarting (test server ${RESTART_SERVER})`, () => {
    const table = uniqueTable('t42');
    const cluster = clusters()[RESTART_SERVER]!;

    afterEach(async () => {
      if (!cluster.isRunning()) await cluster.start();
    });

    it('requests during the outage fail (500, a retryable code); afterwards the same session continues', async () => {
      const app = await startApp(makeStore({ db: servers()[RESTART_SERVER]!, table }));
      const jar = app.jar();
      await views(jar);
      expect(await views(jar)).to.equal(2);
      const id = sidOf(jar);

      try {
        await cluster.stop({ mode: 'fast' });
        await expectOutageErrors(jar);
      } finally {
        await cluster.start();
      }

      const last = await pollUntilBack(
        jar,
        '/count',
        (res) => res.status === 200 && res.json().views !== 1,
      );
      expect(last!.status, `not back 15 s after the restart: ${last!.text}`).to.equal(200);
      expect(last!.json().views).to.equal(3);
      expect(await views(jar)).to.equal(4);
      expect(sidOf(jar)).to.equal(id);
      expect(appData(await storedRow(table, id, RESTART_SERVER))).to.deep.equal({ views: 4 });
    });
  });
});
