// Expiry precision: a session is never served after the expiry the framework asked for, to the
// millisecond (the table keeps whole Unix seconds, rounded up, so the row never ends first; the
// adapter refuses the session at the exact time). And express's touch(): a reload after an
// actual touch shows the refreshed cookie, as express-session's MemoryStore does.
import { expect } from 'chai';
import express from 'express';
import session from 'express-session';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import Fastify, { type FastifyInstance } from 'fastify';
import Koa from 'koa';
import koaSession from 'koa-session';
import http from 'node:http';
import { ExpressStore, type ExpressSessionData } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { KoaStore } from '../lib/koa';
import { db, uniqueTable } from './support/db';
import { closeServer, CookieJar, listen, type HttpResponse } from './support/http';
import { isTombstone, storedRow } from './support/rows';
import { sleep } from './support/wait';

const QUICK = { gcInterval: 0, vacuumInterval: 0 };

/** GET without storing what the response sets, then keep only the cookies' name=value. */
/**
 * Replays the jar's cookie on GET `path` every 50 ms until `until` (epoch ms; at most 200 requests):
 * every request sent at or after `expiry` must get a fresh session (`isOriginal` false), and some
 * request before it must have been served the original session.
 */
async function expectNeverServedAfter(
  jar: CookieJar,
  path: string,
  expiry: number,
  until: number,
  isOriginal: (res: HttpResponse) => boolean,
): Promise<void> {
  let servedBefore = 0;
  for (let i = 0; i < 200 && Date.now() < until; i++) {
    const sent = Date.now();
    const res = await jar.get(path, { save: false });
    expect(res.status, res.text).to.equal(200);
    if (sent >= expiry) {
      expect(isOriginal(res), `served ${sent - expiry} ms after the cookie's expiry`).to.equal(
        false,
      );
    } else if (isOriginal(res)) {
      servedBefore++;
    }
    await sleep(50);
  }
  expect(servedBefore, 'requests before the expiry that got the session').to.be.above(0);
}

describe('46 adapters: expiry precision, and touch', function () {
  this.timeout(60_000);
  const httpServers: http.Server[] = [];
  const fastifyApps: FastifyInstance[] = [];
  const closables: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    await Promise.all(httpServers.splice(0).map((s) => closeServer(s)));
    await Promise.all(fastifyApps.splice(0).map((a) => a.close()));
    await Promise.all(closables.splice(0).map((s) => s.close()));
  });

  async function expressApp(
    table: string,
    maxAge: number,
    touchAfter?: number,
  ): Promise<{ jar: CookieJar; store: ExpressStore }> {
    const store = new ExpressStore(
      { db: db(1), table, ...QUICK },
      touchAfter === undefined ? {} : { touchAfter },
    );
    closables.push(store);
    const app = express();
    app.use(
      session({
        store,
        secret: 'expiry test secret',
        resave: false,
        saveUninitialized: false,
        cookie: { maxAge },
      }),
    );
    app.get('/count', (req, res) => {
      req.session.views = (req.session.views ?? 0) + 1;
      res.json({ id: req.sessionID, views: req.session.views });
    });
    app.get('/peek', (req, res) => {
      res.json({ id: req.sessionID, views: req.session.views ?? null });
    });
    const server = http.createServer(app);
    httpServers.push(server);
    return { jar: new CookieJar(await listen(server)), store };
  }

  describe('express', () => {
    it('maxAge 1500 ms: never served at or after cookie.expires', async () => {
      const table = uniqueTable('t46');
      const { jar } = await expressApp(table, 1500);
      const { id } = (await jar.visitKeepingCookies('/count')).json();
      const expiry = Date.parse(JSON.parse((await storedRow(table, id))!.sess_data).cookie.expires);
      await expectNeverServedAfter(jar, '/peek', expiry, expiry + 2500, (res) => {
        return res.json().id === id;
      });
      // The row outlives the cookie (whole seconds, rounded up): the adapter refused the session.
      expect((await storedRow(table, id))!.sess_expire * 1000).to.be.at.least(expiry);
    });

    it('touch (touchAfter 0): a reload shows the refreshed cookie.expires', async () => {
      const table = uniqueTable('t46');
      const { jar, store } = await expressApp(table, 60_000, 0);
      const { id } = (await jar.get('/count')).json();
      const before = (await store.get(id)) as ExpressSessionData;
      await sleep(200);
      const sent = Date.now();
      expect((await jar.get('/peek')).json()).to.deep.equal({ id, views: 1 });
      const done = Date.now();
      const after = (await store.get(id)) as ExpressSessionData;
      const expires = Date.parse(String(after.cookie.expires));
      expect(expires, 'refreshed').to.be.above(Date.parse(String(before.cookie.expires)));
      expect(expires).to.be.within(sent + 60_000, done + 60_000);
      expect(after.views).to.equal(1);
    });

    it('touch stores the cookie into the session as stored now: a concurrent change survives', async () => {
      const table = uniqueTable('t46');
      const { jar, store } = await expressApp(table, 60_000, 0);
      const { id } = (await jar.get('/count')).json();
      const loaded = (await store.get(id)) as ExpressSessionData;
      // Another request changes the session meanwhile.
      await store.set(id, { ...loaded, views: 9 });
      const cookie = { ...loaded.cookie, expires: new Date(Date.now() + 120_000).toISOString() };
      await store.touch(id, { ...loaded, cookie });
      const now = (await store.get(id)) as ExpressSessionData;
      expect(now.views, 'the concurrent change').to.equal(9);
      expect(now.cookie.expires, 'the touched cookie').to.equal(cookie.expires);
    });

    it('touch does not bring back a destroyed session', async () => {
      const table = uniqueTable('t46');
      const { jar, store } = await expressApp(table, 60_000, 0);
      const { id } = (await jar.get('/count')).json();
      const loaded = (await store.get(id)) as ExpressSessionData;
      await store.destroy(id);
      const cookie = { ...loaded.cookie, expires: new Date(Date.now() + 120_000).toISOString() };
      await store.touch(id, { ...loaded, cookie });
      expect(await store.get(id)).to.equal(null);
      expect(isTombstone(await storedRow(table, id))).to.equal(true);
    });

    it('a session touched before its first expiry is served after it (the refreshed expiry counts)', async () => {
      const table = uniqueTable('t46');
      const { jar } = await expressApp(table, 1500, 0);
      const { id } = (await jar.visitKeepingCookies('/count')).json();
      const first = Date.parse(JSON.parse((await storedRow(table, id))!.sess_data).cookie.expires);
      await sleep(Math.max(0, first - Date.now() - 700));
      expect((await jar.get('/peek', { save: false })).json()).to.deep.equal({ id, views: 1 });
      await sleep(Math.max(0, first + 200 - Date.now()));
      expect((await jar.get('/peek', { save: false })).json()).to.deep.equal({ id, views: 1 });
    });
  });

  describe('fastify', () => {
    it('maxAge 1500 ms (rolling: false): never served at or after the cookie expiry', async () => {
      const table = uniqueTable('t46');
      const store = new FastifyStore({ db: db(1), table, ...QUICK });
      closables.push(store);
      const app = Fastify();
      fastifyApps.push(app);
      await app.register(fastifyCookie);
      await app.register(fastifySession, {
        secret: 'a fastify expiry test secret of at least 32 characters',
        store,
        rolling: false,
        saveUninitialized: false,
        cookie: { secure: false, maxAge: 1500 },
      });
      app.get('/count', async (request) => {
        request.session.set('views', 1);
        return { id: request.session.sessionId };
      });
      app.get('/peek', async (request) => ({ views: request.session.get('views') ?? null }));
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      const jar = new CookieJar(`http://127.0.0.1:${port}/`);
      const { id } = (await jar.visitKeepingCookies('/count')).json();
      const expiry = Date.parse(JSON.parse((await storedRow(table, id))!.sess_data).cookie.expires);
      expect((await storedRow(table, id))!.sess_expire * 1000).to.be.at.least(expiry);
      await expectNeverServedAfter(jar, '/peek', expiry, expiry + 2500, (res) => {
        return res.json().views === 1;
      });
    });
  });

  describe('koa', () => {
    async function koaApp(
      table: string,
      options: { maxAge: number; rolling: boolean },
    ): Promise<{ jar: CookieJar; store: KoaStore }> {
      const store = new KoaStore({ db: db(1), table, ...QUICK });
      closables.push(store);
      const app = new Koa();
      app.keys = ['koa expiry test key'];
      app.use(koaSession({ store, ...options }, app));
      app.use(async (ctx) => {
        if (ctx.path === '/count') ctx.session!.views = 1;
        ctx.body = { views: ctx.session!.views ?? null };
      });
      const server = http.createServer(app.callback());
      httpServers.push(server);
      return { jar: new CookieJar(await listen(server)), store };
    }

    it('maxAge 1500 ms: never served at or after _expire', async () => {
      const table = uniqueTable('t46');
      const { jar } = await koaApp(table, { maxAge: 1500, rolling: false });
      await jar.visitKeepingCookies('/count');
      const key = jar.cookie('koa.sess')!;
      const expiry = JSON.parse((await storedRow(table, key))!.sess_data)._expire as number;
      await expectNeverServedAfter(jar, '/peek', expiry, expiry + 2500, (res) => {
        return res.json().views === 1;
      });
    });

    it('rolling: an expiry refreshed by changed: false is never served after the refreshed cookie expiry', async () => {
      const table = uniqueTable('t46');
      const { jar, store } = await koaApp(table, { maxAge: 3000, rolling: true });
      const started = Date.now();
      await jar.visitKeepingCookies('/count');
      const key = jar.cookie('koa.sess')!;
      const first = JSON.parse((await storedRow(table, key))!.sess_data)._expire as number;
      // An unchanged request 1.1 s or more later, in the second half of a second: the refreshed
      // expiry (now + 3 s) then falls there too, where rounding to the nearest second is late.
      await sleep(1100 - (Date.now() - started));
      await sleep((1550 - (Date.now() % 1000)) % 1000);
      const sent = Date.now();
      const peek = await jar.get('/peek', { save: false });
      expect(peek.json()).to.deep.equal({ views: 1 });
      const latest = Date.now() + 3000; // the refreshed cookie ends at or before this
      expect(sent + 3000, 'the refresh is later than the first expiry').to.be.above(first);
      const refreshed = (await store.get(key))._expire as number;
      expect(refreshed, 'what the store reports').to.be.above(first).and.at.most(latest);
      await sleep(latest - Date.now() + 20);
      const after = await jar.get('/peek', { save: false });
      expect(after.json(), 'served after the refreshed expiry').to.deep.equal({ views: null });
    });
  });
});
