// session-pgsql/express driven by express 5 + express-session over real HTTP on loopback, with a
// cookie jar: what a browser sees, and the rows the store leaves in the table.
import { expect } from 'chai';
import express from 'express';
import session from 'express-session';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { ExpressStore, type ExpressStoreOptions } from '../lib/express';
import type { SessionPgsqlOptions } from '../lib/options';
import { clusters, db, newId, query, servers, uniqueTable } from './support/db';
import { storedKey } from './support/hash-mode';
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
import { isTombstone, storedRow } from './support/rows';
import { sleep, waitUntil } from './support/wait';
import { rejection } from './support/errors';

const SECRET = 'express adapter test secret';
const COOKIE = 'connect.sid';
const RESTART_SERVER = 2;

/** cookie-signature's sign(): what express-session puts after "s:". */
function sign(value: string, secret: string): string {
  return `${value}.${createHmac('sha256', secret).update(value).digest('base64').replace(/=+$/, '')}`;
}

/** The session id inside the jar's connect.sid cookie. */
function sidOf(jar: CookieJar): string {
  const raw = jar.cookie(COOKIE);
  expect(raw, 'connect.sid cookie').to.be.a('string');
  const value = decodeURIComponent(raw!);
  expect(value.startsWith('s:'), `signed cookie ${value}`).to.equal(true);
  return value.slice(2, value.lastIndexOf('.'));
}

async function count(table: string, server = 0): Promise<number> {
  const [r] = await query<{ n: string }>(server, `SELECT count(*) AS n FROM "${table}"`);
  return Number(r!.n);
}

/** A callback-style store method as a promise. */
function call<T>(fn: (cb: (err?: any, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}

interface App {
  url: string;
  server: http.Server;
  store: ExpressStore;
  jar(): CookieJar;
}

/** Everything the tests start, closed after each test (servers first, then stores, then handlers). */
const servers_: http.Server[] = [];
const stores: ExpressStore[] = [];

async function cleanup(): Promise<void> {
  await Promise.all(servers_.splice(0).map((s) => closeServer(s)));
  await Promise.all(stores.splice(0).map((s) => s.close()));
}

function makeStore(
  options: SessionPgsqlOptions,
  storeOptions: ExpressStoreOptions = {},
): ExpressStore {
  const store = new ExpressStore(
    { gcInterval: 0, vacuumInterval: 0, connectTimeout: 2, ...options },
    storeOptions,
  );
  stores.push(store);
  return store;
}

async function startApp(
  store: ExpressStore,
  sessionOptions: Partial<session.SessionOptions> = {},
): Promise<App> {
  const app = express();
  app.use(
    session({
      store,
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 3600_000 },
      ...sessionOptions,
    }),
  );
  app.get('/count', (req, res) => {
    req.session.views = (req.session.views ?? 0) + 1;
    res.json({ id: req.sessionID, views: req.session.views });
  });
  // Reads the session without changing it: express-session then calls store.touch().
  app.get('/peek', (req, res) => {
    res.json({ id: req.sessionID, views: req.session.views ?? null });
  });
  app.post('/logout', (req, res, next) => {
    req.session.destroy((err) => (err ? next(err) : res.json({ ok: true })));
  });
  app.post('/regenerate', (req, res, next) => {
    const views = req.session.views;
    const before = req.sessionID;
    req.session.regenerate((err) => {
      if (err) return next(err);
      req.session.views = views;
      res.json({ before, id: req.sessionID, views });
    });
  });
  // ?value=…[&modify=1]: setField on the loaded session; modify also changes the session data.
  app.post('/field', (req, res) => {
    const s = store.sessionFor(req);
    if (!s) {
      res.status(409).json({ error: 'no stored session' });
      return;
    }
    s.setField(String(req.query.value));
    if (req.query.modify) req.session.note = String(req.query.value);
    res.json({ ok: true });
  });
  app.get('/info', (req, res) => {
    res.json({ views: req.session.views ?? null, info: store.sessionFor(req)?.info() ?? null });
  });
  // A quiet error handler: errors become a 500 JSON body (no stack on stderr). An error after
  // the response was sent (a new session's save at its end) goes to express, as its docs say.
  app.use(
    (err: Error, _req: express.Request, res: express.Response, next: express.NextFunction) => {
      if (res.headersSent) return next(err);
      const { code = null, retryable = null } = err as SessionPgsqlError;
      res.status(500).json({ error: err.message, code, retryable });
    },
  );
  const server = http.createServer(app);
  servers_.push(server);
  const url = await listen(server);
  return { url, server, store, jar: () => new CookieJar(url) };
}

/** GET /count (or `path`): the session id and its views. */
function views(jar: CookieJar, path = '/count'): Promise<{ id: string; views: number }> {
  return okJson(jar, path);
}

describe('40 adapters: express (express-session over HTTP)', function () {
  this.timeout(60_000);
  afterEach(cleanup);
  const handlers = handlerFactory(); // closed after cleanup()

  describe('sessions across requests', () => {
    const table = uniqueTable('t40');
    let app: App;
    beforeEach(async () => {
      app = await startApp(makeStore({ db: db(1), table }));
    });

    it('a counter survives requests: one id, one row, the data and counter updated', async () => {
      const jar = app.jar();
      expect(await views(jar)).to.include({ views: 1 });
      const id = sidOf(jar);
      expect(await views(jar)).to.deep.equal({ id, views: 2 });
      expect(await views(jar)).to.deep.equal({ id, views: 3 });
      expect(sidOf(jar)).to.equal(id);
      const r = await storedRow(table, id);
      expect(r, 'row').to.not.equal(undefined);
      expect(JSON.parse(r!.sess_data)).to.include({ views: 3 });
      // express-session recomputes originalMaxAge from the stored expiry: a ms may be lost.
      expect(JSON.parse(r!.sess_data).cookie.originalMaxAge).to.be.closeTo(3600_000, 1000);
      expect(r!.sess_counter).to.equal(3);
    });

    it('the expiry comes from cookie.expires', async () => {
      const jar = app.jar();
      await views(jar);
      const r = await storedRow(table, sidOf(jar));
      const expires = Date.parse(JSON.parse(r!.sess_data).cookie.expires) / 1000;
      expect(r!.sess_expire).to.be.closeTo(expires, 1);
      expect(r!.sess_expire).to.be.closeTo(Date.now() / 1000 + 3600, 30);
    });

    it('stores the request IP in sess_addr_created', async () => {
      const jar = app.jar();
      await views(jar);
      const r = await storedRow(table, sidOf(jar));
      expect(r!.sess_addr_created).to.equal('127.0.0.1');
    });

    it('destroy (logout) leaves a tombstone; the next request starts a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      expect(await storedRow(table, id)).to.not.equal(undefined);
      const out = await jar.post('/logout');
      expect(out.status, out.text).to.equal(200);
      expect(isTombstone(await storedRow(table, id)), 'row after logout is a tombstone').to.equal(
        true,
      );
      const next = await views(jar);
      expect(next.views).to.equal(1);
      expect(next.id).to.not.equal(id);
    });

    it('regenerate issues a new id; the old row is a tombstone, the new one holds the data', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const old = sidOf(jar);
      const res = await jar.post('/regenerate');
      expect(res.status, res.text).to.equal(200);
      const body = res.json();
      expect(body.before).to.equal(old);
      expect(body.id).to.not.equal(old);
      expect(sidOf(jar)).to.equal(body.id);
      expect(isTombstone(await storedRow(table, old)), 'old row is a tombstone').to.equal(true);
      const fresh = await storedRow(table, body.id);
      expect(JSON.parse(fresh!.sess_data)).to.include({ views: 2 });
      expect(await views(jar)).to.deep.equal({ id: body.id, views: 3 });
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
      const res = await views(jar);
      expect(res.views).to.equal(1);
      expect(res.id).to.not.equal(id);
      expect(sidOf(jar)).to.equal(res.id);
    });
  });

  describe('a short cookie maxAge', () => {
    const table = uniqueTable('t40');

    it('a cookie replayed after its maxAge gets a fresh session', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { cookie: { maxAge: 1000 } });
      const jar = app.jar();
      await jar.visitKeepingCookies('/count');
      const id = sidOf(jar);
      expect((await storedRow(table, id))!.sess_expire).to.be.closeTo(Date.now() / 1000 + 1, 2);
      await sleep(2500);
      // The jar still sends the old cookie, as a client with a stale cookie would.
      const res = await views(jar);
      expect(res.views).to.equal(1);
      expect(res.id).to.not.equal(id);
    });
  });

  describe('touch', () => {
    const table = uniqueTable('t40');

    it('touchAfter 0: an unmodified request moves sess_expire and the stored cookie.expires forward; the app data stays', async () => {
      const app = await startApp(makeStore({ db: db(1), table }, { touchAfter: 0 }));
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      const peek = await views(jar, '/peek');
      expect(peek).to.deep.equal({ id, views: 1 });
      const after = (await storedRow(table, id))!;
      expect(after.sess_expire, 'sess_expire').to.be.above(before.sess_expire);
      // A touch stores the refreshed cookie (a reload shows it, as with MemoryStore).
      const [was, is] = [JSON.parse(before.sess_data), JSON.parse(after.sess_data)];
      expect(Date.parse(is.cookie.expires), 'cookie.expires').to.be.above(
        Date.parse(was.cookie.expires),
      );
      expect({ ...is, cookie: null }, 'app data').to.deep.equal({ ...was, cookie: null });
      // The session is still the same one afterwards.
      expect(await views(jar)).to.deep.equal({ id, views: 2 });
    });

    it('default touchAfter (60 s): a touch within 60 s of the last write changes nothing', async () => {
      const app = await startApp(makeStore({ db: db(1), table }));
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.deep.equal({ id, views: 1 });
      const after = (await storedRow(table, id))!;
      expect(after).to.deep.equal(before);
    });
  });

  describe('touch with a browser-session cookie (no cookie.maxAge, the express-session default)', () => {
    const table = uniqueTable('t40');

    it('the expiry is maxLifetime', async () => {
      const app = await startApp(makeStore({ db: db(1), table, maxLifetime: 777 }), {
        cookie: {},
      });
      const jar = app.jar();
      await views(jar);
      expect((await storedRow(table, sidOf(jar)))!.sess_expire).to.be.closeTo(
        Date.now() / 1000 + 777,
        30,
      );
    });

    it('touchAfter 0: an unmodified request moves sess_expire forward without rewriting data', async () => {
      const app = await startApp(makeStore({ db: db(1), table }, { touchAfter: 0 }), {
        cookie: {},
      });
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.deep.equal({ id, views: 1 });
      const after = (await storedRow(table, id))!;
      expect(after.sess_expire, 'sess_expire').to.be.above(before.sess_expire);
      expect(after.sess_data, 'sess_data').to.equal(before.sess_data);
      expect(after.sess_modified, 'sess_modified').to.equal(before.sess_modified);
    });

    it('default touchAfter (60 s): a touch within 60 s of the last write changes nothing', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { cookie: {} });
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.deep.equal({ id, views: 1 });
      expect(await storedRow(table, id)).to.deep.equal(before);
    });
  });

  describe('sessionFor(req): the per-session functions', () => {
    const table = uniqueTable('t40');
    let app: App;
    beforeEach(async () => {
      app = await startApp(makeStore({ db: db(1), table }));
    });

    it('is undefined for a session created by this request', async () => {
      const jar = app.jar();
      const res = await jar.get('/info');
      expect(res.status).to.equal(200);
      expect(res.json().info).to.equal(null);
    });

    it('gives the Session: info() describes the stored row', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      const res = await jar.get('/info');
      expect(res.status, res.text).to.equal(200);
      const { info } = res.json();
      expect(info).to.include({ sessionId: id, accesses: 3, addressCreated: '127.0.0.1' });
      expect(info.expires).to.be.closeTo(Date.now() / 1000 + 3600, 30);
    });

    it('setField in one request (session also modified) shows in info().custom next time and in sess_custom', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const set = await jar.post('/field?value=user:42&modify=1');
      expect(set.status, set.text).to.equal(200);
      const res = await jar.get('/info');
      expect(res.json().info).to.include({ sessionId: id, custom: 'user:42' });
      expect((await storedRow(table, id))!.sess_custom).to.equal('user:42');
    });

    it('setField alone (the session data unchanged) is stored too: setField forces the next write', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const set = await jar.post('/field?value=user:7');
      expect(set.status, set.text).to.equal(200);
      expect((await storedRow(table, id))!.sess_custom, 'sess_custom').to.equal('user:7');
      const res = await jar.get('/info');
      expect(res.json().info).to.include({ sessionId: id, custom: 'user:7' });
    });
  });

  describe('tampered and malformed cookies', () => {
    const table = uniqueTable('t40');
    let app: App;
    beforeEach(async () => {
      app = await startApp(makeStore({ db: db(1), table }));
    });

    async function expectFresh(res: HttpResponse, jar: CookieJar, not?: string): Promise<void> {
      expect(res.status, res.text.slice(0, 300)).to.equal(200);
      const body = res.json();
      expect(body.views).to.equal(1);
      if (not) expect(body.id).to.not.equal(not);
      expect(sidOf(jar)).to.equal(body.id);
      expect(await storedRow(table, body.id)).to.not.equal(undefined);
    }

    it('control: a cookie the test signs for a live id is accepted (the signing below is genuine)', async () => {
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const other = app.jar();
      other.setCookie(COOKIE, encodeURIComponent(`s:${sign(id, SECRET)}`));
      expect(await views(other)).to.deep.equal({ id, views: 2 });
    });

    it('a bad signature gets a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      jar.setCookie(COOKIE, encodeURIComponent(`s:${id}.${'A'.repeat(43)}`));
      await expectFresh(await jar.get('/count'), jar, id);
      expect(JSON.parse((await storedRow(table, id))!.sess_data)).to.include({ views: 2 });
    });

    it('a cookie signed with another secret gets a fresh session', async () => {
      const jar = app.jar();
      const id = newId();
      jar.setCookie(COOKIE, encodeURIComponent(`s:${sign(id, 'another secret')}`));
      await expectFresh(await jar.get('/count'), jar, id);
    });

    for (const [what, value] of [
      ['a garbage value', 'garbage'],
      ['an unsigned value', encodeURIComponent('s:')],
      ['a bare id without "s:"', newId()],
      ['bad percent-encoding', '%E0%A4%A'],
    ] as const) {
      it(`${what} gets a fresh session`, async () => {
        const jar = app.jar();
        jar.setCookie(COOKIE, value);
        await expectFresh(await jar.get('/count'), jar);
      });
    }

    for (const [what, id] of [
      ['too short for idPattern', 'short'],
      ['too long for idPattern', 'x'.repeat(300)],
      ['with characters idPattern refuses', 'bad id; with "quotes" and ü!'],
    ] as const) {
      it(`a validly signed id ${what} gets a fresh session, not an error`, async () => {
        const jar = app.jar();
        jar.setCookie(COOKIE, encodeURIComponent(`s:${sign(id, SECRET)}`));
        await expectFresh(await jar.get('/count'), jar, id);
      });
    }
  });

  describe('all, length, clear', () => {
    const table = uniqueTable('t40');

    it('all() lists live sessions keyed by id, length() counts them, clear() removes every row', async () => {
      const app = await startApp(makeStore({ db: db(1), table }));
      const store = app.store;
      expect(await call<number>((cb) => store.length(cb))).to.equal(0);
      expect(await call((cb) => store.all(cb))).to.deep.equal({});

      const ids: string[] = [];
      for (let i = 1; i <= 3; i++) {
        const jar = app.jar();
        for (let n = 0; n < i; n++) await views(jar);
        ids.push(sidOf(jar));
      }
      const all = await call<Record<string, session.SessionData>>((cb) => store.all(cb));
      // Keyed by id; with hashIds (the suite's hashed mode) by reference: the stored key.
      const refs = ids.map(storedKey);
      expect(Object.keys(all).sort()).to.deep.equal([...refs].sort());
      refs.forEach((ref, i) => expect(all[ref]).to.include({ views: i + 1 }));
      expect(all[refs[0]!]!.cookie.originalMaxAge).to.be.closeTo(3600_000, 1000);
      expect(await call<number>((cb) => store.length(cb))).to.equal(3);

      // An expired row is not a live session.
      await query(0, `UPDATE "${table}" SET sess_expire = 1 WHERE sess_id = $1`, [ids[0]]);
      expect(Object.keys(await call((cb) => store.all(cb))).sort()).to.deep.equal(
        refs.slice(1).sort(),
      );
      expect(await call<number>((cb) => store.length(cb))).to.equal(2);

      await call((cb) => store.clear(cb));
      expect(await count(table)).to.equal(0);
      expect(await call<number>((cb) => store.length(cb))).to.equal(0);
      expect(await call((cb) => store.all(cb))).to.deep.equal({});
    });
  });

  describe('all and length with rows that are not express sessions', () => {
    const table = uniqueTable('t40');

    it('length() counts the sessions all() returns (a row of PHP-serialized data is in neither or both)', async () => {
      const app = await startApp(makeStore({ db: db(1), table }));
      const store = app.store;
      const jar = app.jar();
      await views(jar);
      // The table is the PHP extension's: a PHP application may share it.
      const php = newId();
      expect(await store.handler.write(php, 'views|i:3;')).to.equal(true);
      const all = await call<Record<string, session.SessionData>>((cb) => store.all(cb));
      const length = await call<number>((cb) => store.length(cb));
      expect(length, `length() vs all(): ${JSON.stringify(Object.keys(all))}`).to.equal(
        Object.keys(all).length,
      );
      expect(all).to.have.property(storedKey(sidOf(jar)));
    });
  });

  describe('construction', () => {
    const table = uniqueTable('t40');

    it('from options: opens its own handler (up with no request, "connect" emitted); close() closes it', async () => {
      const store = makeStore({ db: db(1), table });
      let connected = 0;
      store.on('connect', () => connected++);
      expect(store.handler).to.be.instanceOf(SessionPgsql);
      await waitUntil(
        'the store to open its handler',
        10_000,
        () => store.handler.status().servers[0]!.state === 'up',
      );
      await waitUntil("'connect'", 2000, () => connected === 1);
      const app = await startApp(store);
      const jar = app.jar();
      await views(jar);
      expect(await views(jar)).to.include({ views: 2 });
      await closeServer(app.server);

      await store.close();
      const error = await rejection(store.handler.read(newId()));
      expect(error.code, 'read after store.close()').to.equal('SPG_CLOSED');
    });

    it('from an existing SessionPgsql: uses it, and close() leaves it open', async () => {
      const handler = await handlers.open({ table });
      const store = new ExpressStore(handler);
      stores.push(store);
      expect(store.handler).to.equal(handler);
      const app = await startApp(store);
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      // The handler sees what the store wrote.
      expect(JSON.parse((await handler.read(id)).data)).to.include({ views: 2 });
      await closeServer(app.server);

      await store.close();
      const s = await handler.read(id);
      expect(JSON.parse(s.data)).to.include({ views: 2 });
      expect(await handler.write(newId(), '{}')).to.equal(true);
      expect(handler.status().servers[0]!.state).to.equal('up');
    });
  });

  describe(`its server restarting (test server ${RESTART_SERVER})`, function () {
    const table = uniqueTable('t40');
    const cluster = clusters()[RESTART_SERVER]!;

    afterEach(async () => {
      if (!cluster.isRunning()) await cluster.start();
    });

    function restartStore(): ExpressStore {
      return makeStore({ db: servers()[RESTART_SERVER]!, table });
    }

    // 'disconnect' makes express-session run requests without req.session (a silent logout,
    // or a TypeError in the app): the store fails the operations instead.
    it("never emits 'disconnect' when its only server goes down; 'connect' when it returns", async () => {
      const store = restartStore();
      const events: string[] = [];
      store.on('connect', () => events.push('connect'));
      store.on('disconnect', () => events.push('disconnect'));
      const state = () => store.handler.status().servers[0]!.state;
      await waitUntil("the first 'connect'", 10_000, () => events.length === 1);
      expect(events).to.deep.equal(['connect']);
      try {
        await cluster.stop({ mode: 'fast' });
        await waitUntil('the server seen down', 10_000, () => state() !== 'up');
        await sleep(300);
        expect(events, 'after the server stopped').to.deep.equal(['connect']);
      } finally {
        await cluster.start();
      }
      await waitUntil("'connect' after the server started", 15_000, () => events.length === 2);
      expect(events).to.deep.equal(['connect', 'connect']);
    });

    it("with two servers, one going down emits no 'disconnect' (and its return no second 'connect')", async () => {
      const store = makeStore({ db: `${servers()[0]};${servers()[RESTART_SERVER]}`, table });
      const events: string[] = [];
      store.on('connect', () => events.push('connect'));
      store.on('disconnect', () => events.push('disconnect'));
      const state = (i: number) => store.handler.status().servers[i]!.state;
      await waitUntil('both servers up', 10_000, () => state(0) === 'up' && state(1) === 'up');
      try {
        await cluster.stop({ mode: 'fast' });
        await waitUntil('server 1 seen down', 10_000, () => state(1) !== 'up');
        await sleep(500);
        expect(events, 'after one of two servers went down').to.deep.equal(['connect']);
      } finally {
        await cluster.start();
      }
      await waitUntil('server 1 up again', 15_000, () => state(1) === 'up');
      await sleep(200);
      expect(events).to.deep.equal(['connect']);
    });

    it('requests during the outage fail (500, a retryable code); afterwards the same session continues', async () => {
      const app = await startApp(restartStore());
      const jar = app.jar();
      await views(jar);
      expect(await views(jar)).to.include({ views: 2 });
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
        (res) => res.status === 200 && res.json().id === id,
      );
      expect(last!.status, `not back 15 s after the restart: ${last!.text}`).to.equal(200);
      expect(last!.json()).to.deep.equal({ id, views: 3 });
      expect(await views(jar)).to.deep.equal({ id, views: 4 });
      expect(JSON.parse((await storedRow(table, id, RESTART_SERVER))!.sess_data)).to.include({
        views: 4,
      });
    });
  });
});
