// Any id the framework hands the adapters works: express-session's genid, koa-session's prefix,
// genid and externalKey, @fastify/session's idGenerator. The id is stored verbatim in sess_id
// (escaped only when a text column cannot hold it: NUL, a lone surrogate, or a leading U+0001),
// and a hostile id is only data. The core's idPattern keeps applying to direct callers.
import { expect } from 'chai';
import express from 'express';
import session from 'express-session';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import Fastify, { type FastifyInstance } from 'fastify';
import Koa from 'koa';
import koaSession, { type CreateSessionOptions } from 'koa-session';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { SessionPgsqlError } from '../lib';
import { idFromStored, MAX_ID_BYTES, MAX_ID_LENGTH, storedId } from '../lib/adapter';
import { ExpressStore } from '../lib/express';
import { FastifyStore } from '../lib/fastify';
import { KoaStore } from '../lib/koa';
import { db, query, uniqueTable } from './support/db';
import { rejection, thrown } from './support/errors';
import { handlerFactory } from './support/handlers';
import { closeServer, CookieJar, listen } from './support/http';

/** The sess_id values of a table, in order. */
async function storedIds(table: string): Promise<string[]> {
  const rows = await query<{ sess_id: string }>(
    0,
    `SELECT sess_id FROM "${table}" ORDER BY sess_id`,
  );
  return rows.map((r) => r.sess_id);
}

/** The rows of a table; 0 when nothing ever reached the server to create it. */
async function rowCount(table: string): Promise<number> {
  const [exists] = await query<{ t: string | null }>(0, 'SELECT to_regclass($1) AS t', [table]);
  if (exists!.t === null) return 0;
  const [r] = await query<{ n: string }>(0, `SELECT count(*) AS n FROM "${table}"`);
  return Number(r!.n);
}

// Ids a framework may hand us. Each must store, reload and be found verbatim.
const ODD_IDS: Array<[string, () => string]> = [
  ["'user:' + uuid (express-session docs' genid)", () => `user:${randomUUID()}`],
  ['apple (shorter than the default idPattern)', () => 'apple'],
  ['%', () => '%'],
  ['req/… (a slash)', () => `req/${randomUUID()}`],
  ['unicode', () => `сессия-ü-日本-🙂-${randomUUID()}`],
  ['hostile SQL', () => `'; DROP TABLE php_session; -- " \\ ${randomUUID()}`],
  ['1024 characters of 2-byte unicode', () => 'é'.repeat(MAX_ID_LENGTH)],
];

const STATUS_OK = 200;

describe('44 adapters: any framework id (stored verbatim)', function () {
  this.timeout(60_000);
  const handlers = handlerFactory();

  describe('the stored form (storedId, idFromStored)', () => {
    const samples = [
      'abc',
      'user:1',
      'a\0b',
      '\0',
      '\0\0',
      '\u0001',
      '\u00010000',
      '\u0001a\u00010000b', // the escaped form of 'a\0b', as an id of its own
      '\u0001\u00010001',
      'x\uD800y', // a lone high surrogate
      '\uDC00', // a lone low surrogate
      '\uD83D\uDE42', // a surrogate pair (🙂): well-formed, verbatim
      '\uDE42\uD83D', // the same two code units, reversed: two lone surrogates
      '0000',
      'é'.repeat(MAX_ID_LENGTH),
    ];

    it('is verbatim for an id a text column holds, and round-trips every id', () => {
      for (const id of samples) {
        const stored = storedId(id);
        expect(idFromStored(stored), JSON.stringify(id)).to.equal(id);
        expect(stored.includes('\0'), `${JSON.stringify(id)} stored with a NUL`).to.equal(false);
        const utf8 = Buffer.from(stored, 'utf8').toString('utf8');
        expect(utf8, `${JSON.stringify(id)} stored well-formed (survives UTF-8)`).to.equal(stored);
      }
      for (const id of ['abc', 'user:1', '\uD83D\uDE42', '0000']) {
        expect(storedId(id)).to.equal(id);
      }
    });

    it('never maps two ids to one stored form, nor an escaped id onto a verbatim one', () => {
      const stored = samples.map(storedId);
      expect(new Set(stored).size).to.equal(samples.length);
      // An escaped form is never the stored form of the id that equals it.
      for (const s of stored) {
        if (s.startsWith('\u0001')) expect(storedId(s)).to.not.equal(s);
      }
    });

    it('refuses an empty id, one over 1024 characters, and one over 2048 bytes, naming the problem', () => {
      const empty = thrown(() => storedId(''));
      expect(empty.code).to.equal('SPG_INVALID_ID');
      expect(empty.message).to.match(/empty/);
      const long = thrown(() => storedId('x'.repeat(MAX_ID_LENGTH + 1)));
      expect(long.code).to.equal('SPG_INVALID_ID');
      expect(long.message).to.match(/1025 characters.*at most 1024/);
      // 1024 three-byte characters: PostgreSQL's btree could not index it.
      const wide = thrown(() => storedId('€'.repeat(MAX_ID_LENGTH)));
      expect(wide.code).to.equal('SPG_INVALID_ID');
      expect(wide.message).to.match(new RegExp(`3072 bytes.*at most ${MAX_ID_BYTES}`));
      expect(thrown(() => storedId(42)).code).to.equal('SPG_INVALID_ID');
    });
  });

  describe('express-session genid', () => {
    const servers: http.Server[] = [];
    const stores: ExpressStore[] = [];
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => closeServer(s)));
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });

    async function start(table: string, genid: () => string): Promise<CookieJar> {
      const store = new ExpressStore({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      stores.push(store);
      const app = express();
      app.use(session({ store, genid, secret: 's', resave: false, saveUninitialized: false }));
      app.get('/count', (req, res) => {
        req.session.views = (req.session.views ?? 0) + 1;
        res.json({ id: req.sessionID, views: req.session.views });
      });
      // Saves before answering, so a failed save is this request's error.
      app.get('/save', (req, res, next) => {
        req.session.views = 1;
        req.session.save((err) => (err ? next(err) : res.json({ id: req.sessionID })));
      });
      app.use(
        (err: Error, _req: express.Request, res: express.Response, next: express.NextFunction) => {
          if (res.headersSent) return next(err);
          res
            .status(500)
            .json({ code: (err as SessionPgsqlError).code ?? null, error: err.message });
        },
      );
      const server = http.createServer(app);
      servers.push(server);
      return new CookieJar(await listen(server));
    }

    for (const [what, make] of ODD_IDS) {
      it(`${what}: stores, reloads, and is sess_id verbatim`, async () => {
        const table = uniqueTable('t44');
        const id = make();
        const jar = await start(table, () => id);
        const first = await jar.get('/count');
        expect(first.status, first.text).to.equal(STATUS_OK);
        expect(first.json()).to.deep.equal({ id, views: 1 });
        const second = await jar.get('/count');
        expect(second.json()).to.deep.equal({ id, views: 2 });
        expect(await storedIds(table)).to.deep.equal([id]);
        const [row] = await query<{ sess_data: string }>(
          0,
          `SELECT sess_data FROM "${table}" WHERE sess_id = $1`,
          [id],
        );
        expect(JSON.parse(row!.sess_data)).to.include({ views: 2 });
      });
    }

    it('an id with NUL is stored escaped, reloads, and does not collide with its escaped form as an id', async () => {
      const table = uniqueTable('t44');
      const nul = 'a\0b';
      const lookalike = storedId(nul); // '\u0001a\u00010000b' used verbatim as another id
      const a = await start(table, () => nul);
      const b = await start(table, () => lookalike);
      for (let i = 1; i <= 2; i++) expect((await a.get('/count')).json().views).to.equal(i);
      for (let i = 1; i <= 3; i++) expect((await b.get('/count')).json().views).to.equal(i);
      expect((await a.get('/count')).json()).to.deep.equal({ id: nul, views: 3 });
      const ids = await storedIds(table);
      expect(ids).to.have.length(2);
      expect(ids.map(idFromStored).sort()).to.deep.equal([nul, lookalike].sort());
    });

    it('an over-long id: the save fails with SPG_INVALID_ID (a 500), nothing is stored, nothing crashes', async () => {
      const table = uniqueTable('t44');
      const jar = await start(table, () => 'x'.repeat(MAX_ID_LENGTH + 1));
      const res = await jar.get('/save');
      expect(res.status, res.text).to.equal(500);
      expect(res.json().code).to.equal('SPG_INVALID_ID');
      expect(res.json().error).to.match(/1025 characters/);
      expect(await rowCount(table)).to.equal(0);
    });

    it('the store takes any id on a borrowed handler whose idPattern refuses it; direct callers keep idPattern', async () => {
      const table = uniqueTable('t44');
      const handler = await handlers.open({ table, idPattern: /^[0-9a-f]{32}$/ });
      const store = new ExpressStore(handler);
      stores.push(store);
      await store.set('apple', { cookie: { originalMaxAge: null, expires: null }, views: 5 });
      expect(await store.get('apple')).to.include({ views: 5 });
      expect((await rejection(handler.read('apple'))).code).to.equal('SPG_INVALID_ID');
      expect((await rejection(handler.write('apple', '{}'))).code).to.equal('SPG_INVALID_ID');
      expect(await storedIds(table)).to.deep.equal(['apple']);
    });
  });

  describe('koa-session prefix, genid and externalKey', () => {
    const servers: http.Server[] = [];
    const stores: KoaStore[] = [];
    afterEach(async () => {
      await Promise.all(servers.splice(0).map((s) => closeServer(s)));
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });

    async function start(table: string, options: CreateSessionOptions): Promise<CookieJar> {
      const store = new KoaStore({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      stores.push(store);
      const app = new Koa();
      app.keys = ['koa ids test key'];
      app.silent = true;
      app.use(async (ctx, next) => {
        try {
          await next();
        } catch (err) {
          ctx.status = 500;
          ctx.body = { code: (err as SessionPgsqlError).code ?? null };
        }
      });
      app.use(koaSession({ store, maxAge: 3600_000, ...options }, app));
      app.use(async (ctx) => {
        ctx.session!.views = (ctx.session!.views ?? 0) + 1;
        ctx.body = { views: ctx.session!.views };
      });
      const server = http.createServer(app.callback());
      servers.push(server);
      return new CookieJar(await listen(server));
    }

    it("prefix 'sess:': the key is stored verbatim and the session reloads", async () => {
      const table = uniqueTable('t44');
      const jar = await start(table, { prefix: 'sess:' });
      expect((await jar.get('/')).json()).to.deep.equal({ views: 1 });
      expect((await jar.get('/')).json()).to.deep.equal({ views: 2 });
      const ids = await storedIds(table);
      expect(ids).to.have.length(1);
      expect(ids[0]).to.match(/^sess:[0-9a-f-]{36}$/);
      expect(jar.cookie('koa.sess')).to.equal(ids[0]);
    });

    for (const [what, make] of ODD_IDS) {
      it(`genid ${what}: stores, reloads, and is sess_id verbatim`, async () => {
        const table = uniqueTable('t44');
        const id = make();
        // koa's cookies refuse characters a cookie cannot carry: the id travels in a header.
        const jar = await start(table, {
          genid: () => id,
          externalKey: {
            get: (ctx) => {
              const raw = ctx.get('x-session');
              return raw ? decodeURIComponent(raw) : '';
            },
            set: (ctx, key) => ctx.set('x-session', encodeURIComponent(key)),
          },
        });
        const first = await jar.get('/');
        expect(first.status, first.text).to.equal(STATUS_OK);
        expect(first.json()).to.deep.equal({ views: 1 });
        const header = first.headers.get('x-session')!;
        expect(decodeURIComponent(header)).to.equal(id);
        const second = await jar.get('/', { headers: { 'x-session': header } });
        expect(second.json()).to.deep.equal({ views: 2 });
        expect(await storedIds(table)).to.deep.equal([id]);
      });
    }

    it('externalKey: a hostile key from a header is only data (no row, a fresh session)', async () => {
      const table = uniqueTable('t44');
      const jar = await start(table, {
        externalKey: {
          get: (ctx) => ctx.get('x-session'),
          set: (ctx, key) => ctx.set('x-session', key),
        },
      });
      await jar.get('/'); // creates the table and one session
      const hostile = `x'); DELETE FROM "${table}"; --`;
      const res = await jar.get('/', { headers: { 'x-session': hostile } });
      expect(res.json()).to.deep.equal({ views: 1 });
      expect(await rowCount(table)).to.equal(2);
      const long = await jar.get('/', { headers: { 'x-session': 'k'.repeat(5000) } });
      expect(long.status, long.text).to.equal(STATUS_OK);
      expect(long.json()).to.deep.equal({ views: 1 });
    });
  });

  describe('@fastify/session idGenerator', () => {
    const apps: FastifyInstance[] = [];
    const stores: FastifyStore[] = [];
    afterEach(async () => {
      await Promise.all(apps.splice(0).map((a) => a.close()));
      await Promise.all(stores.splice(0).map((s) => s.close()));
    });

    async function start(table: string, idGenerator: () => string): Promise<CookieJar> {
      const store = new FastifyStore({ db: db(1), table, gcInterval: 0, vacuumInterval: 0 });
      stores.push(store);
      const app = Fastify();
      apps.push(app);
      await app.register(fastifyCookie);
      await app.register(fastifySession, {
        secret: 'a fastify ids test secret of at least 32 characters',
        store,
        idGenerator,
        saveUninitialized: false,
        cookie: { secure: false, maxAge: 3600_000 },
      });
      app.get('/count', async (request) => {
        const views = (request.session.get('views') ?? 0) + 1;
        request.session.set('views', views);
        return { id: request.session.sessionId, views };
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as { port: number };
      return new CookieJar(`http://127.0.0.1:${port}/`);
    }

    for (const [what, make] of ODD_IDS) {
      it(`${what}: stores, reloads, and is sess_id verbatim`, async () => {
        const table = uniqueTable('t44');
        const id = make();
        const jar = await start(table, () => id);
        const first = await jar.get('/count');
        expect(first.status, first.text).to.equal(STATUS_OK);
        expect(first.json()).to.deep.equal({ id, views: 1 });
        expect((await jar.get('/count')).json()).to.deep.equal({ id, views: 2 });
        expect(await storedIds(table)).to.deep.equal([id]);
      });
    }
  });
});
