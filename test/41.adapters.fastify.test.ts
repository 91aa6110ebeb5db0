// session-pgsql/fastify driven by fastify 5 + @fastify/cookie + @fastify/session over real HTTP
// on loopback, with a cookie jar. @fastify/session never calls touch(): with `rolling` (its
// default) every request that carries the cookie is a full set(), without it an unmodified
// request writes nothing.
import { expect } from 'chai';
import Fastify, { type FastifyInstance } from 'fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySession, { type FastifySessionOptions } from '@fastify/session';
import { SessionPgsql, SessionPgsqlError } from '../lib';
import { FastifyStore } from '../lib/fastify';
import type { SessionPgsqlOptions } from '../lib/options';
import { clusters, db, newId, query, servers, uniqueTable } from './support/db';
import { handlerFactory } from './support/handlers';
import {
  CookieJar,
  expectOutageErrors,
  okJson,
  pollUntilBack,
  type HttpResponse,
} from './support/http';
import { columnsOf, isTombstone, storedRow, type StoredRow } from './support/rows';
import { sleep, waitUntil } from './support/wait';
import { rejection } from './support/errors';

const SECRET = 'a fastify adapter test secret of at least 32 characters';
const COOKIE = 'sessionId';
const RESTART_SERVER = 2;

/** The session id inside the jar's signed sessionId cookie (`<id>.<signature>`). */
function sidOf(jar: CookieJar): string {
  const raw = jar.cookie(COOKIE);
  expect(raw, 'sessionId cookie').to.be.a('string');
  const value = decodeURIComponent(raw!);
  return value.slice(0, value.lastIndexOf('.'));
}

/** The application's part of stored session data (without the cookie). */
function appData(r: StoredRow | undefined): Record<string, unknown> {
  expect(r, 'row').to.not.equal(undefined);
  const { cookie: _cookie, ...rest } = JSON.parse(r!.sess_data);
  return rest;
}

/** Everything the tests start, closed after each test (apps first, then stores, then handlers). */
const apps: FastifyInstance[] = [];
const stores: FastifyStore[] = [];

async function cleanup(): Promise<void> {
  await Promise.all(apps.splice(0).map((a) => a.close()));
  await Promise.all(stores.splice(0).map((s) => s.close()));
}

function makeStore(options: SessionPgsqlOptions): FastifyStore {
  const store = new FastifyStore({
    gcInterval: 0,
    vacuumInterval: 0,
    connectTimeout: 2,
    ...options,
  });
  stores.push(store);
  return store;
}

async function startApp(
  store: FastifyStore,
  sessionOptions: Partial<FastifySessionOptions> = {},
): Promise<{ url: string; jar(): CookieJar }> {
  const app = Fastify();
  apps.push(app);
  // Errors (from the store, through @fastify/session) become a quiet 500 JSON body.
  app.setErrorHandler(async (err, _request, reply) => {
    const { code = null, retryable = null } = err as unknown as SessionPgsqlError;
    return reply.status(500).send({ error: (err as Error).message, code, retryable });
  });
  await app.register(fastifyCookie);
  await app.register(fastifySession, {
    secret: SECRET,
    store,
    saveUninitialized: false,
    ...sessionOptions,
    cookie: { secure: false, maxAge: 3600_000, ...sessionOptions.cookie },
  });
  app.get('/count', async (request) => {
    const views = (request.session.get('views') ?? 0) + 1;
    request.session.set('views', views);
    return { id: request.session.sessionId, views };
  });
  app.get('/peek', async (request) => ({
    id: request.session.sessionId,
    views: request.session.get('views') ?? null,
  }));
  app.post('/logout', async (request) => {
    await request.session.destroy();
    return { ok: true };
  });
  app.post('/regenerate', async (request) => {
    const before = request.session.sessionId;
    await request.session.regenerate(['views']);
    return { before, id: request.session.sessionId, views: request.session.get('views') };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const url = `http://127.0.0.1:${port}/`;
  return { url, jar: () => new CookieJar(url) };
}

/** GET /count (or `path`): the session id and its views. */
function views(jar: CookieJar, path = '/count'): Promise<{ id: string; views: number }> {
  return okJson(jar, path);
}

describe('41 adapters: fastify (@fastify/session over HTTP)', function () {
  this.timeout(60_000);
  afterEach(cleanup);
  const handlers = handlerFactory(); // closed after cleanup()

  describe('sessions across requests', () => {
    const table = uniqueTable('t41');
    let app: { url: string; jar(): CookieJar };
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
      expect(appData(r)).to.deep.equal({ views: 3 });
      expect(JSON.parse(r!.sess_data).cookie).to.include({ originalMaxAge: 3600_000 });
      expect(r!.sess_counter).to.equal(3);
      expect(r!.sess_expire).to.be.closeTo(Date.now() / 1000 + 3600, 30);
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
      expect(sidOf(jar)).to.equal(next.id);
    });

    it('regenerate issues a new id; the old row is a tombstone, the new one holds the kept fields', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const old = sidOf(jar);
      const res = await jar.post('/regenerate');
      expect(res.status, res.text).to.equal(200);
      const body = res.json();
      expect(body).to.include({ before: old, views: 2 });
      expect(body.id).to.not.equal(old);
      expect(sidOf(jar)).to.equal(body.id);
      expect(isTombstone(await storedRow(table, old)), 'old row is a tombstone').to.equal(true);
      expect(appData(await storedRow(table, body.id))).to.deep.equal({ views: 2 });
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

  describe('expiry', () => {
    const table = uniqueTable('t41');

    it('a cookie replayed after a short maxAge gets a fresh session', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { cookie: { maxAge: 1000 } });
      const jar = app.jar();
      await jar.visitKeepingCookies('/count');
      const id = sidOf(jar);
      expect((await storedRow(table, id))!.sess_expire).to.be.closeTo(Date.now() / 1000 + 1, 2);
      await sleep(2500);
      const res = await views(jar);
      expect(res.views).to.equal(1);
      expect(res.id).to.not.equal(id);
    });

    it('without a cookie maxAge the expiry is maxLifetime', async () => {
      const app = await startApp(makeStore({ db: db(1), table, maxLifetime: 777 }), {
        cookie: { maxAge: undefined },
      });
      const jar = app.jar();
      await views(jar);
      expect((await storedRow(table, sidOf(jar)))!.sess_expire).to.be.closeTo(
        Date.now() / 1000 + 777,
        30,
      );
    });
  });

  describe('refreshing the expiry (no touch in @fastify/session)', () => {
    const table = uniqueTable('t41');

    it('rolling (the default): an unmodified request moves sess_expire forward, the app data unchanged', async () => {
      const app = await startApp(makeStore({ db: db(1), table }));
      const jar = app.jar();
      await views(jar);
      const id = sidOf(jar);
      const before = (await storedRow(table, id))!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.deep.equal({ id, views: 1 });
      const after = (await storedRow(table, id))!;
      expect(after.sess_expire, 'sess_expire').to.be.above(before.sess_expire);
      expect(appData(after)).to.deep.equal(appData(before));
    });

    it('rolling: false: an unmodified request leaves the row as it was', async () => {
      const app = await startApp(makeStore({ db: db(1), table }), { rolling: false });
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
      ] as const;
      const before = columnsOf(await storedRow(table, id), watched)!;
      await sleep(1600);
      expect(await views(jar, '/peek')).to.deep.equal({ id, views: 1 });
      expect(columnsOf(await storedRow(table, id), watched)).to.deep.equal(before);
      expect(await views(jar)).to.deep.equal({ id, views: 2 });
    });
  });

  describe('tampered and malformed cookies', () => {
    const table = uniqueTable('t41');
    let app: { url: string; jar(): CookieJar };
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
      other.setCookie(COOKIE, encodeURIComponent(fastifyCookie.sign(id, SECRET)));
      expect(await views(other)).to.deep.equal({ id, views: 2 });
    });

    it('a bad signature gets a fresh session', async () => {
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      jar.setCookie(COOKIE, encodeURIComponent(`${id}.${'A'.repeat(43)}`));
      await expectFresh(await jar.get('/count'), jar, id);
      expect(appData(await storedRow(table, id))).to.deep.equal({ views: 2 });
    });

    it('a cookie signed with another secret gets a fresh session', async () => {
      const jar = app.jar();
      const id = newId();
      const other = fastifyCookie.sign(id, 'another secret of at least thirty-two chars');
      jar.setCookie(COOKIE, encodeURIComponent(other));
      await expectFresh(await jar.get('/count'), jar, id);
    });

    for (const [what, value] of [
      ['a garbage value', 'garbage'],
      ['a bare id without a signature', newId()],
      ['an empty signature', `${newId()}.`],
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
        jar.setCookie(COOKIE, encodeURIComponent(fastifyCookie.sign(id, SECRET)));
        await expectFresh(await jar.get('/count'), jar, id);
      });
    }
  });

  describe('construction', () => {
    const table = uniqueTable('t41');

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
      expect(await views(jar)).to.include({ views: 2 });
      await apps.pop()!.close();

      await store.close();
      const error = await rejection(store.handler.read(newId()));
      expect(error.code, 'read after store.close()').to.equal('SPG_CLOSED');
    });

    it('from an existing SessionPgsql: uses it, and close() leaves it open', async () => {
      const handler = await handlers.open({ table });
      const store = new FastifyStore(handler);
      stores.push(store);
      expect(store.handler).to.equal(handler);
      const app = await startApp(store);
      const jar = app.jar();
      await views(jar);
      await views(jar);
      const id = sidOf(jar);
      expect(JSON.parse((await handler.read(id)).data)).to.include({ views: 2 });
      await apps.pop()!.close();

      await store.close();
      expect(JSON.parse((await handler.read(id)).data)).to.include({ views: 2 });
      expect(await handler.write(newId(), '{}')).to.equal(true);
    });
  });

  describe(`its server restarting (test server ${RESTART_SERVER})`, () => {
    const table = uniqueTable('t41');
    const cluster = clusters()[RESTART_SERVER]!;

    afterEach(async () => {
      if (!cluster.isRunning()) await cluster.start();
    });

    it('requests during the outage fail (500, a retryable code); afterwards the same session continues', async () => {
      const app = await startApp(makeStore({ db: servers()[RESTART_SERVER]!, table }));
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
      expect(appData(await storedRow(table, id, RESTART_SERVER))).to.deep.equal({ views: 4 });
    });
  });
});
